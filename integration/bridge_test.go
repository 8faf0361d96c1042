package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/redistest"
)

// capturedEmit is the message of the protocol spec, byte for byte, as
// python-socketio 5.15.0 (vantage6 4.14's Flask-SocketIO) publishes an emit of
// new_task to collaboration_2 on the "flask-socketio" channel.
const capturedEmit = `{"method": "emit", "event": "new_task", "data": {"id": 7, "parent_id": 3}, "binary": false, "namespace": "/tasks", "room": "collaboration_2", "skip_sid": null, "callback": null, "host_id": "d4d83077a12947328d207f93967f319d"}`

const queueChannel = "flask-socketio"

// publishPickled publishes an emit through the real python-socketio
// RedisManager of Debian (5.7.2), which pickles its messages: what an old
// vantage6 server sends, and what the bridge must skip.
func publishPickled(t *testing.T, redisURL string) {
	t.Helper()
	ok := exec.Command(python, "-c", "import socketio, redis").Run() == nil
	need(t, ok, "python3-socketio with python3-redis under "+python)
	script := `
import sys, socketio
mgr = socketio.RedisManager(sys.argv[1], channel=sys.argv[2], write_only=True)
mgr.emit("new_task", {"id": 666, "parent_id": None}, namespace="/tasks", room="collaboration_2")
`
	out, err := exec.Command(python, "-c", script, redisURL, queueChannel).CombinedOutput()
	if err != nil {
		t.Fatalf("python RedisManager emit: %v\n%s", err, out)
	}
}

// startBridgeReplicas starts replicas a, b and c of one cluster on r, with
// the queue's settings env, and waits until each is subscribed to the queue.
func startBridgeReplicas(t *testing.T, r *redistest.Server, env ...string) []*procServer {
	t.Helper()
	prefix := uniquePrefix(t)
	var replicas []*procServer
	for _, name := range []string{"a", "b", "c"} {
		replicas = append(replicas, startInstance(t, name, r.URL(), prefix, env...))
	}
	waitQueueSubscribed(t, 1, wait, replicas...)
	return replicas
}

// startBridgeClients connects, to replicas a, b and c, collaboration 2's
// clients (a node on each replica for organizations 21, 22 and 23, a UI
// user on b, a Go client on c) and, in others, collaboration 1's (a node on
// a, a UI user on c), which must get none of collaboration 2's events.
func startBridgeClients(t *testing.T, replicas []*procServer) (in2, others []*client) {
	t.Helper()
	for i, p := range replicas {
		n := startPyNode(t, p.server, "node2@"+p.name, clientOpts{token: nodeToken(t, int64(10+i), 2, int64(21+i), time.Hour)})
		n.waitEvent("sync", wait)
		in2 = append(in2, n)
	}
	ui := startUI(t, replicas[1].server, "ui2@b", clientOpts{token: userToken(t, 5, 21, []int64{2}, "collaboration", time.Hour)})
	ui.waitType("connect", wait)
	gc := startGoClient(t, replicas[2].server, "go@c", userToken(t, 6, 22, []int64{2}, "collaboration", time.Hour))
	gc.waitType("connect", wait)
	in2 = append(in2, ui, gc)
	other := startPyNode(t, replicas[0].server, "node1@a", clientOpts{token: nodeToken(t, 30, 1, 30, time.Hour)})
	other.waitEvent("sync", wait)
	otherUI := startUI(t, replicas[2].server, "ui1@c", clientOpts{token: userToken(t, 8, 30, []int64{1}, "collaboration", time.Hour)})
	otherUI.waitType("connect", wait)
	return in2, append(others, other, otherUI)
}

// TestFlaskSocketIOBridge: three replicas subscribe to vantage6's
// Flask-SocketIO queue; what the vantage6 server publishes there reaches each
// permitted client of the cluster exactly once, whichever replica holds it,
// and what cannot be used is skipped and counted on every replica.
func TestFlaskSocketIOBridge(t *testing.T) {
	r := redistest.Start(t)
	replicas := startBridgeReplicas(t, r, "EVENTSERVER_V6_QUEUE_CHANNEL="+queueChannel)
	in2, others := startBridgeClients(t, replicas)
	orgUser := startUI(t, replicas[0].server, "ui-org21@a", clientOpts{token: userToken(t, 7, 21, []int64{2}, "organization", time.Hour)})
	orgUser.waitType("connect", wait)

	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	publish := func(payload string) {
		t.Helper()
		n, err := rdb.Publish(ctx, queueChannel, payload).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Three replicas (and nothing else) listen on the channel.
		if n != 3 {
			t.Fatalf("PUBLISH reached %d subscribers, want the 3 replicas", n)
		}
	}

	// What vantage6 4.14 publishes, then what cannot be used.
	publish(capturedEmit)
	publishPickled(t, r.URL())
	publish(`{"method": "emit", "event": "new_task", "data": {"id": 8`)
	publish(`{"method": "emit", "event": "new_task", "data": {"id": 9, "parent_id": null}, "binary": false, "namespace": "/tasks", "room": "q8bqM4SR3NVbtaxuAAAB", "skip_sid": null, "callback": null, "host_id": "h"}`)
	publish(`{"method": "nonsense", "namespace": "/tasks", "host_id": "h"}`)
	publish(`{"method": "enter_room", "sid": "q8bqM4SR3NVbtaxuAAAB", "room": "collaboration_2", "namespace": "/tasks", "host_id": "h"}`)
	// An organization room (only the organization-scoped user of that
	// organization and its node), several arguments (python-socketio 5.15.1+
	// sends a list), and a namespace-wide emit with no data.
	publish(`{"method": "emit", "event": "kill_containers", "data": [{"collaboration_id": 2, "organization_id": 21}], "binary": false, "namespace": "/tasks", "room": "collaboration_2_organization_21", "skip_sid": null, "callback": null, "host_id": "h"}`)
	publish(`{"method": "emit", "event": "status_update", "data": [{"run_id": 1}, "second"], "binary": false, "namespace": "/tasks", "room": ["collaboration_2"], "skip_sid": null, "callback": null, "host_id": "h"}`)
	publish(`{"method": "emit", "event": "queue-barrier", "data": null, "binary": false, "namespace": "/tasks", "room": null, "skip_sid": null, "callback": null, "host_id": "h"}`)

	all := append(append([]*client{orgUser}, in2...), others...)
	for _, cl := range all {
		cl.waitEvent("queue-barrier", wait)
	}
	// Messages on one channel arrive in order: everything before the
	// barrier has been handled.
	for _, cl := range in2 {
		got := cl.events("new_task")
		if len(got) != 1 {
			t.Errorf("%s: new_task %d times, want once: %v", cl.name, len(got), got)
			continue
		}
		jsonEq(t, got[0].Args[0], `{"id":7,"parent_id":3}`)
		su := cl.events("status_update")
		if len(su) != 1 || len(su[0].Args) != 2 {
			t.Errorf("%s: status_update %v, want once with two arguments", cl.name, su)
		} else {
			jsonEq(t, su[0].Args[0], `{"run_id":1}`)
			jsonEq(t, su[0].Args[1], `"second"`)
		}
	}
	for _, cl := range []*client{orgUser, in2[0]} { // organization 21: its user and its node (node 10 on a)
		if kc := cl.events("kill_containers"); len(kc) != 1 {
			t.Errorf("%s: kill_containers %d times, want once", cl.name, len(kc))
		}
	}
	for _, cl := range append(append([]*client{}, in2[1:]...), others...) {
		if kc := cl.events("kill_containers"); len(kc) != 0 {
			t.Errorf("%s (not organization 21) got kill_containers", cl.name)
		}
	}
	for _, cl := range others {
		if n := len(cl.events("new_task")) + len(cl.events("status_update")); n != 0 {
			t.Errorf("%s (collaboration 1) got collaboration 2's events: %v", cl.name, cl.eventNames())
		}
	}
	if n := len(orgUser.events("new_task")); n != 0 {
		t.Errorf("organization-scoped user got the collaboration's new_task")
	}

	// Each replica skipped and counted what it could not use.
	for _, p := range replicas {
		for series, want := range map[string]float64{
			`eventserver_v6_queue_messages_total{method="emit",outcome="delivered"}`:     4,
			`eventserver_v6_queue_messages_total{method="-",outcome="pickled"}`:          1,
			`eventserver_v6_queue_messages_total{method="-",outcome="not_json"}`:         1,
			`eventserver_v6_queue_messages_total{method="emit",outcome="unknown_room"}`:  1,
			`eventserver_v6_queue_messages_total{method="-",outcome="unknown_method"}`:   1,
			`eventserver_v6_queue_messages_total{method="enter_room",outcome="ignored"}`: 1,
		} {
			if got := p.metric(series); got != want {
				t.Errorf("%s: %s = %v, want %v", p.name, series, got, want)
			}
		}
		if logs := p.logText(); !strings.Contains(logs, "pickled message") || !strings.Contains(logs, "not JSON") {
			t.Errorf("%s: the skipped messages were not logged", p.name)
		}
	}
}
