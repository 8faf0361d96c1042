package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/redisconn"
	redisadapter "github.com/eventserver/eventserver/pkg/adapter/redis"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// TestMixedCluster: Go eventserver instances and Node socket.io 4.8 servers
// with @socket.io/redis-adapter 8 on one Redis and one prefix, in each
// direction: room, multi-room, except and namespace-wide broadcasts,
// fetchSockets, serverSideEmit with ack, broadcast with ack; and
// @socket.io/redis-emitter publishing into the Go instances.
func TestMixedCluster(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	g1 := startInstance(t, "g1", r.URL(), prefix)
	g2 := startInstance(t, "g2", r.URL(), prefix)
	n1 := startNodeServer(t, r.URL(), prefix)
	em := startEmitter(t, r.URL(), prefix)

	user := startGoClient(t, g2.server, "user@g2", userToken(t, 5, 9, []int64{1}, "collaboration", time.Hour))
	user.waitType("connect", wait)
	nc := startUIAuth(t, n1.URL, "c1@n1", map[string]any{"rooms": []string{"collaboration_1"}, "data": map[string]any{"who": "node-side"}})
	ncSid := nc.waitType("connect", wait).Sid
	nco := startUIAuth(t, n1.URL, "c1o2@n1", map[string]any{"rooms": []string{"collaboration_1_organization_2"}})
	nco.waitType("connect", wait)
	n1.waitEvent(wait, "both Node-side sockets", func(m map[string]any) bool {
		return m["type"] == "connection" && m["auth"] != nil && strings.Contains(string(mustMarshal(t, m["auth"])), "organization_2")
	})
	py := startPyNode(t, g1.server, "py-node@g1", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	pySid := py.waitType("connect", wait).Sid
	py.waitEvent("sync", wait)
	// node-online of the Go node reaches the Node side once, through its rooms.
	for _, c := range []*client{nc, nco, user} {
		jsonEq(t, c.waitEvent("node-online", wait).Args[0], `{"id":3,"name":"org2-node3","org_id":2}`)
	}
	all := []*client{py, user, nc, nco}
	barrier(t, g1.server, all...)

	if got := n1.mustCall(map[string]any{"cmd": "serverCount"})["count"]; got != float64(3) {
		t.Fatalf("Node sees %v servers, want 3", got)
	}

	// Go -> Node.
	g2.mustPublish(`{"event":"go-room","room":"collaboration_1","data":1}`)
	g2.mustPublish(`{"event":"go-multi","rooms":["collaboration_1","collaboration_1_organization_2","nobody"],"data":2}`)
	g2.mustPublish(`{"event":"go-except","rooms":["collaboration_1","collaboration_1_organization_2"],"except":["collaboration_1_organization_2"],"data":3}`)
	g1.mustPublish(`{"event":"go-all","args":[4,"four"]}`)
	// Node -> Go.
	n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_1"}, "event": "node-room", "args": []any{5}})
	n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_1_organization_2", "collaboration_1"}, "event": "node-multi", "args": []any{6}})
	n1.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_1"}, "except": []string{"collaboration_1_organization_2"}, "event": "node-except", "args": []any{7}})
	n1.mustCall(map[string]any{"cmd": "emit", "event": "node-all", "args": []any{map[string]any{"x": []any{1, "y", nil}}}})
	// Emitter -> Go and Node.
	em.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"collaboration_1"}, "event": "em-room", "args": []any{8}})
	em.mustCall(map[string]any{"cmd": "emit", "rooms": []string{pySid}, "event": "em-sid", "args": []any{9}})
	em.mustCall(map[string]any{"cmd": "emit", "except": []string{"all_nodes"}, "event": "em-except", "args": []any{10}})
	em.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"all_nodes", "collaboration_1_organization_2"}, "event": "em-multi", "args": []any{11}})
	em.mustCall(map[string]any{"cmd": "emit", "event": "em-all", "args": []any{}})
	barrier(t, g2.server, all...)

	want := map[*client][]string{
		py:   {"go-room", "go-multi", "go-all", "node-room", "node-multi", "node-all", "em-room", "em-sid", "em-multi", "em-all"},
		user: {"go-room", "go-multi", "go-except", "go-all", "node-room", "node-multi", "node-except", "node-all", "em-room", "em-except", "em-all"},
		nc:   {"go-room", "go-multi", "go-except", "go-all", "node-room", "node-multi", "node-except", "node-all", "em-room", "em-except", "em-all"},
		nco:  {"go-multi", "go-all", "node-multi", "node-all", "em-except", "em-multi", "em-all"},
	}
	for c, events := range want {
		var got []string
		for _, n := range c.eventNames() {
			if strings.HasPrefix(n, "go-") || strings.HasPrefix(n, "node-") && n != "node-online" && n != "node-offline" || strings.HasPrefix(n, "em-") {
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
	jsonEq(t, mustMarshal(t, nc.events("go-all")[0].Args), `[4,"four"]`)
	jsonEq(t, mustMarshal(t, py.events("node-all")[0].Args), `[{"x":[1,"y",null]}]`)
	jsonEq(t, mustMarshal(t, py.events("em-all")[0].Args), `[]`)

	// The emitter's serverSideEmit reaches every Go instance.
	sse := `eventserver_redis_adapter_messages_received_total{type="server_side_emit"}`
	before := g1.metric(sse) + g2.metric(sse)
	em.mustCall(map[string]any{"cmd": "serverSideEmit", "event": "from-emitter", "args": []any{"z"}})
	testwait.For(t, wait, func() error {
		if got := g1.metric(sse) + g2.metric(sse); got != before+2 {
			return fmt.Errorf("server-side emits received by g1 and g2: %v, want %v", got, before+2)
		}
		return nil
	})
	for _, c := range []*client{nc, nco, user} {
		if n := len(c.events("node-online")); n != 1 {
			t.Errorf("%s: node-online %d times", c.name, n)
		}
	}

	// fetchSockets, each way.
	socks := n1.mustCall(map[string]any{"cmd": "fetchSockets", "rooms": []string{"collaboration_1"}})["sockets"].([]any)
	var ids []string
	for _, s := range socks {
		m := s.(map[string]any)
		ids = append(ids, m["id"].(string))
		if m["id"] == pySid {
			jsonEq(t, mustMarshal(t, m["data"]), `{"client_type":"node","client_id":"3","name":"org2-node3","instance":"g1"}`)
		}
	}
	if len(socks) != 3 || !slices.Contains(ids, pySid) || !slices.Contains(ids, ncSid) {
		t.Errorf("Node fetchSockets(collaboration_1): %v", socks)
	}
	code, body := g2.do("GET", "/api/v1/sockets?room=collaboration_1", testPublishToken, "")
	if code != 200 || !strings.Contains(body, ncSid) || !strings.Contains(body, `"who":"node-side"`) || !strings.Contains(body, pySid) {
		t.Errorf("Go fetchSockets(collaboration_1): %d %s", code, body)
	}

	// serverSideEmit with ack, each way.
	ans := n1.mustCall(map[string]any{"cmd": "serverSideEmitWithAck", "event": "eventserver:instance", "timeout": 3000})
	if ans["ok"] != true || !strings.Contains(string(mustMarshal(t, ans["responses"])), `"instance":"g1"`) || !strings.Contains(string(mustMarshal(t, ans["responses"])), `"instance":"g2"`) {
		t.Errorf("Node -> Go serverSideEmitWithAck: %v", ans)
	}
	code, body = g1.do("GET", "/api/v1/instances", testPublishToken, "")
	if code != 200 || strings.Contains(body, "incomplete") || !strings.Contains(body, `"instance":"g2"`) || !strings.Contains(body, `"from":"node"`) {
		t.Errorf("Go -> Node serverSideEmitWithAck: %d %s", code, body)
	}

	// Broadcast with ack and client counts, Node -> Go: the python node on
	// g1 answers through g1's adapter.
	ans = n1.mustCall(map[string]any{"cmd": "emitWithAck", "rooms": []string{"all_nodes"}, "event": "are-you-there", "args": []any{1}, "timeout": 3000})
	if ans["ok"] != true || len(ans["responses"].([]any)) != 1 {
		t.Errorf("Node -> Go emitWithAck: %v", ans)
	}

	// Broadcast with ack, Go -> Node: a Go server with our adapter asks a Go
	// client connected to the Node server.
	goAck := goClient(t, n1.URL, "acker@n1", nil, map[string]any{"rooms": []string{"ackroom"}})
	goAck.waitType("connect", wait)
	io := inProcessAdapterServer(t, r.URL(), prefix, redisadapter.ModeClassic)
	done := make(chan string, 1)
	io.Of("/tasks").To("ackroom").Timeout(3*time.Second).EmitWithAck(func(res []any, err error) {
		done <- fmt.Sprint(res, err)
	}, "ack-me", 11)
	select {
	case got := <-done:
		if got != "[acker@n1] <nil>" { // one response per client: its first argument
			t.Errorf("Go -> Node emitWithAck: %s", got)
		}
	case <-time.After(wait):
		t.Fatal("Go -> Node emitWithAck never completed")
	}

	// The emitter's socketsJoin and disconnectSockets reach Go sockets.
	em.mustCall(map[string]any{"cmd": "socketsJoin", "rooms": []string{"collaboration_1"}, "join": []string{"extra"}})
	testwait.For(t, wait, func() error {
		code, body := g1.do("GET", "/api/v1/sockets?room=extra", testPublishToken, "")
		var resp struct {
			Sockets []json.RawMessage `json:"sockets"`
		}
		if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil || len(resp.Sockets) != 3 {
			return fmt.Errorf("sockets in extra: %d %s", code, body)
		}
		return nil
	})
	em.mustCall(map[string]any{"cmd": "disconnectSockets", "rooms": []string{"extra"}, "close": true})
	py.waitType("disconnect", wait)
	user.waitType("disconnect", wait)
	nc.waitType("disconnect", wait)
}

// inProcessAdapterServer is a bare Go Socket.IO server with our Redis
// adapter in mode (no eventserver logic), for what the eventserver never
// does itself, such as a broadcast with ack.
func inProcessAdapterServer(t *testing.T, redisURL, prefix string, mode redisadapter.Mode) *socketio.Server {
	t.Helper()
	client, _, err := redisconn.NewClient(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := redisadapter.NewClusterBroker(redisadapter.Config{Client: client, Prefix: prefix, Mode: mode, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	io, err := socketio.NewServer(socketio.Config{Adapter: b.New})
	if err != nil {
		t.Fatal(err)
	}
	io.Of("/tasks")
	t.Cleanup(func() {
		_ = io.Shutdown(context.Background())
		_ = b.Shutdown(context.Background())
		_ = client.Close()
	})
	testwait.Until(t, wait, "adapter ready", b.Ready)
	return io
}
