package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	redisadapter "github.com/eventserver/eventserver/pkg/adapter/redis"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// shardSubscribers is PUBSUB SHARDNUMSUB of channel, summed over the
// running nodes of rc.
func shardSubscribers(t *testing.T, rc *redistest.Cluster, channel string) int64 {
	t.Helper()
	var n atomic.Int64
	cl := rc.Client()
	err := cl.ForEachMaster(context.Background(), func(ctx context.Context, c *goredis.Client) error {
		m, err := c.PubSubShardNumSub(ctx, channel).Result()
		n.Add(m[channel])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n.Load()
}

// TestShardedMixedCluster: eventserver processes (EVENTSERVER_REDIS_URL
// redis+cluster://, EVENTSERVER_REDIS_SUBSCRIPTION_MODE=dynamic) and Node
// socket.io servers with createShardedAdapter share a 3-master Redis
// Cluster (one replica each): every broadcast shape both ways,
// fetchSockets and serverSideEmit with ack both ways, room channels
// subscribed and released (PUBSUB SHARDCHANNELS, SHARDNUMSUB), and
// delivery resumes after a graceful failover (the slot of a room channel
// moves) and after the master of the namespace's channel is killed and its
// replica promoted.
func TestShardedMixedCluster(t *testing.T) {
	needNodeCluster(t)
	rc := redistest.StartCluster(t, 3, 1)
	prefix := uniquePrefix(t)
	// A client that goes away unannounced (polling) is noticed within 3 s.
	env := []string{"EVENTSERVER_REDIS_SUBSCRIPTION_MODE=dynamic", "EVENTSERVER_PING_INTERVAL=1s", "EVENTSERVER_PING_TIMEOUT=2s"}
	g1 := startInstance(t, "g1", rc.URL(), prefix, env...)
	g2 := startInstance(t, "g2", rc.URL(), prefix, env...)
	var nodes []string
	for i := range rc.Addrs() {
		nodes = append(nodes, rc.NodeURL(i))
	}
	n1 := startNodeServer(t, strings.Join(nodes, ","), prefix, "--cluster", "--sharded", "dynamic")

	u1 := startGoClient(t, g1.server, "u1@g1", userToken(t, 5, 9, []int64{1}, "collaboration", time.Hour))
	u1Sid := u1.waitType("connect", wait).Sid
	u2 := startGoClient(t, g2.server, "u2@g2", userToken(t, 6, 9, []int64{2}, "collaboration", time.Hour))
	u2Sid := u2.waitType("connect", wait).Sid
	nc1 := startUIAuth(t, n1.URL, "nc1@n1", map[string]any{"rooms": []string{"collaboration_1"}, "data": map[string]any{"who": "node-side"}})
	nc1Sid := nc1.waitType("connect", wait).Sid
	nc2 := startUIAuth(t, n1.URL, "nc2@n1", map[string]any{"rooms": []string{"collaboration_2"}})
	nc2Sid := nc2.waitType("connect", wait).Sid
	all := []*client{u1, u2, nc1, nc2}

	ns := prefix + "#/tasks#"
	room1 := ns + "collaboration_1#"
	// A room's channel has one subscriber per server with a member.
	testwait.For(t, wait, func() error {
		if n := shardSubscribers(t, rc, room1); n != 2 {
			return fmt.Errorf("subscribers of %s: %d, want 2 (g1 and n1)", room1, n)
		}
		if n := shardSubscribers(t, rc, ns); n != 3 {
			return fmt.Errorf("subscribers of %s: %d, want 3", ns, n)
		}
		return nil
	})
	var chs []string
	for _, addr := range rc.Addrs() {
		cl := goredis.NewClient(&goredis.Options{Addr: addr})
		more, err := cl.PubSubShardChannels(context.Background(), prefix+"#*").Result()
		_ = cl.Close()
		if err != nil {
			t.Fatal(err)
		}
		chs = append(chs, more...)
	}
	for _, ch := range []string{ns, room1, ns + "collaboration_2#"} {
		if !slices.Contains(chs, ch) {
			t.Errorf("PUBSUB SHARDCHANNELS lacks %s: %v", ch, chs)
		}
	}
	if got := n1.mustCall(map[string]any{"cmd": "serverCount"})["count"]; got != float64(3) {
		t.Fatalf("Node sees %v servers, want 3", got)
	}
	barrier(t, g1.server, all...)

	// Go -> Node.
	g2.mustPublish(`{"event":"go-room","room":"collaboration_1","data":1}`)
	g2.mustPublish(`{"event":"go-multi","rooms":["collaboration_1","collaboration_2","nobody"],"data":2}`)
	g2.mustPublish(`{"event":"go-except","rooms":["collaboration_1","collaboration_2"],"except":["collaboration_2"],"data":3}`)
	g1.mustPublish(`{"event":"go-all","args":[4,"four"]}`)
	g1.mustPublish(`{"event":"go-sid","room":"` + nc2Sid + `","data":5}`)
	// Node -> Go.
	n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_1"}, "event": "node-room", "args": []any{6}})
	n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_2", "collaboration_1"}, "event": "node-multi", "args": []any{7}})
	n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_1", "collaboration_2"}, "except": []string{"collaboration_2"}, "event": "node-except", "args": []any{8}})
	n1.mustCall(map[string]any{"cmd": "emit", "event": "node-all", "args": []any{map[string]any{"x": []any{1, "y", nil}}}})
	n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{u2Sid}, "event": "node-sid", "args": []any{9}})
	barrier(t, g2.server, all...)

	want := map[*client][]string{
		u1:  {"go-room", "go-multi", "go-except", "go-all", "node-room", "node-multi", "node-except", "node-all"},
		u2:  {"go-multi", "go-all", "node-multi", "node-all", "node-sid"},
		nc1: {"go-room", "go-multi", "go-except", "go-all", "node-room", "node-multi", "node-except", "node-all"},
		nc2: {"go-multi", "go-all", "go-sid", "node-multi", "node-all"},
	}
	for c, events := range want {
		var got []string
		for _, n := range c.eventNames() {
			if strings.HasPrefix(n, "go-") || strings.HasPrefix(n, "node-") && n != "node-online" && n != "node-offline" {
				got = append(got, n)
			}
		}
		slices.Sort(got)
		exp := slices.Clone(events)
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			t.Errorf("%s: got %v, want %v (each exactly once)", c.name, got, exp)
		}
	}
	jsonEq(t, mustMarshal(t, nc1.events("go-all")[0].Args), `[4,"four"]`)
	jsonEq(t, mustMarshal(t, u1.events("node-all")[0].Args), `[{"x":[1,"y",null]}]`)

	// fetchSockets, each way.
	socks := n1.mustCall(map[string]any{"cmd": "fetchSockets", "rooms": []string{"collaboration_1"}})["sockets"].([]any)
	var ids []string
	for _, s := range socks {
		ids = append(ids, s.(map[string]any)["id"].(string))
	}
	slices.Sort(ids)
	exp := []string{nc1Sid, u1Sid}
	slices.Sort(exp)
	if !slices.Equal(ids, exp) {
		t.Errorf("Node fetchSockets(collaboration_1): %v, want %v", ids, exp)
	}
	code, body := g2.do("GET", "/api/v1/sockets?room=collaboration_1", testPublishToken, "")
	if code != 200 || !strings.Contains(body, nc1Sid) || !strings.Contains(body, `"who":"node-side"`) || !strings.Contains(body, u1Sid) {
		t.Errorf("Go fetchSockets(collaboration_1): %d %s", code, body)
	}

	// serverSideEmit with ack, each way.
	ans := n1.mustCall(map[string]any{"cmd": "serverSideEmitWithAck", "event": "eventserver:instance", "timeout": 4000})
	if r := string(mustMarshal(t, ans["responses"])); ans["ok"] != true || !strings.Contains(r, `"instance":"g1"`) || !strings.Contains(r, `"instance":"g2"`) {
		t.Errorf("Node -> Go serverSideEmitWithAck: %v", ans)
	}
	code, body = g1.do("GET", "/api/v1/instances", testPublishToken, "")
	if code != 200 || strings.Contains(body, "incomplete") || !strings.Contains(body, `"instance":"g2"`) || !strings.Contains(body, `"from":"node"`) {
		t.Errorf("Go -> Node serverSideEmitWithAck: %d %s", code, body)
	}

	// Broadcasts with acknowledgements, each way: Node -> a Go client of
	// g2 (client count and ack come back through g2's adapter); Go (a bare
	// server with the sharded adapter) -> a Go client of the Node server.
	ans = n1.mustCall(map[string]any{"cmd": "emitWithAck", "rooms": []string{u2Sid}, "event": "are-you-there", "args": []any{1}, "timeout": 3000})
	if ans["ok"] != true || fmt.Sprint(ans["responses"]) != "[u2@g2]" {
		t.Errorf("Node -> Go emitWithAck: %v", ans)
	}
	acker := goClient(t, n1.URL, "acker@n1", nil, map[string]any{"rooms": []string{"ackroom"}})
	acker.waitType("connect", wait)
	io := inProcessAdapterServer(t, rc.URL(), prefix, redisadapter.ModeDynamic)
	done := make(chan string, 1)
	io.Of("/tasks").To("ackroom").Timeout(3*time.Second).EmitWithAck(func(res []any, err error) {
		done <- fmt.Sprint(res, err)
	}, "ack-me", 11)
	select {
	case got := <-done:
		if got != "[acker@n1] <nil>" {
			t.Errorf("Go -> Node emitWithAck: %s", got)
		}
	case <-time.After(wait):
		t.Fatal("Go -> Node emitWithAck never completed")
	}

	// socketsJoin from Node reaches the Go sockets.
	n1.mustCall(map[string]any{"cmd": "socketsJoin", "rooms": []string{"collaboration_2"}, "join": []string{"extra"}})
	testwait.For(t, wait, func() error {
		code, body := g1.do("GET", "/api/v1/sockets?room=extra", testPublishToken, "")
		if code != 200 || !strings.Contains(body, u2Sid) || !strings.Contains(body, nc2Sid) {
			return fmt.Errorf("sockets in extra: %d %s", code, body)
		}
		return nil
	})

	// The room channel is released by each server when its last member
	// leaves.
	u1.disconnect()
	testwait.For(t, wait, func() error {
		if n := shardSubscribers(t, rc, room1); n != 1 {
			return fmt.Errorf("subscribers of %s after u1 left: %d, want 1", room1, n)
		}
		return nil
	})
	nc1.disconnect()
	testwait.For(t, wait, func() error {
		if n := shardSubscribers(t, rc, room1); n != 0 {
			return fmt.Errorf("subscribers of %s after nc1 left: %d, want 0", room1, n)
		}
		return nil
	})

	resumes := func(what string, send func(seq int), to *client, event string) {
		t.Helper()
		seq := 0
		testwait.For(t, 30*time.Second, func() error {
			if len(to.events(event)) > 0 {
				return nil
			}
			seq++
			send(seq)
			time.Sleep(100 * time.Millisecond)
			return fmt.Errorf("%s: %s never got %q", what, to.name, event)
		})
	}

	// Graceful failover (CLUSTER FAILOVER) of the master of collaboration_2's
	// channel: the master becomes a replica; Go servers keep receiving (on
	// the replica, which gets the shard's messages, or, after a
	// sunsubscribe, on the new master) and publish to the new master.
	room2 := ns + "collaboration_2#"
	master, err := rc.MasterOf(room2)
	if err != nil {
		t.Fatal(err)
	}
	rc.Failover(master)
	resumes("Node -> Go after a graceful failover", func(seq int) {
		n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_2"}, "event": "node-moved", "args": []any{seq}})
	}, u2, "node-moved")
	resumes("Go -> Go after a graceful failover", func(seq int) {
		g1.mustPublish(fmt.Sprintf(`{"event":"go-go-moved","room":"collaboration_2","data":%d}`, seq))
	}, u2, "go-go-moved")
	// Go -> Node is not checked here: in our runs the node-redis 4.7.1
	// cluster client of n1 lost its subscription of the moved channel
	// (PUBSUB SHARDNUMSUB counts g2 only).

	// The master of the namespace's channel dies; its replica takes over.
	master, err = rc.MasterOf(ns)
	if err != nil {
		t.Fatal(err)
	}
	rc.Kill(master)
	testwait.For(t, 30*time.Second, func() error {
		if now, err := rc.MasterOf(ns); err != nil || now == master {
			return fmt.Errorf("the master of %s is still %s (%v)", ns, now, err)
		}
		return nil
	})
	rc.WaitOK(30 * time.Second)
	resumes("Go -> Go after a master died", func(seq int) {
		g1.mustPublish(fmt.Sprintf(`{"event":"go-after","args":[%d]}`, seq))
	}, u2, "go-after")
	// The node-redis 4.7 cluster client does not follow a dead master (it
	// keeps dialing its address): Go <-> Node is shown with a Node server
	// started after the failover.
	n2 := startNodeServer(t, strings.Join(nodes, ","), prefix, "--cluster", "--sharded", "dynamic")
	nc3 := startUIAuth(t, n2.URL, "nc3@n2", map[string]any{"rooms": []string{"collaboration_2"}})
	nc3.waitType("connect", wait)
	resumes("Go -> Node after a master died", func(seq int) {
		g2.mustPublish(fmt.Sprintf(`{"event":"go-after-n2","args":[%d]}`, seq))
	}, nc3, "go-after-n2")
	resumes("Node -> Go after a master died", func(seq int) {
		n2.mustCall(map[string]any{"cmd": "emit", "event": "node-after", "args": []any{seq}})
	}, u2, "node-after")
	waitReadyz(t, g1.URL, 200)
	waitReadyz(t, g2.URL, 200)

	// disconnectSockets from Node reaches the Go sockets.
	n2.mustCall(map[string]any{"cmd": "disconnectSockets", "rooms": []string{"extra"}, "close": true})
	u2.waitType("disconnect", wait)
}
