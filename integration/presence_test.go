package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// nodesOf returns GET /api/v1/nodes of one instance.
func nodesOf(t *testing.T, s *server) []map[string]any {
	t.Helper()
	code, body := s.do("GET", "/api/v1/nodes", testPublishToken, "")
	if code != http.StatusOK {
		t.Fatalf("nodes: %d %s", code, body)
	}
	var resp struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Nodes
}

// TestClusterPresence: users watching from other replicas see exactly one
// node-online and one node-offline per real transition, whichever replica
// noticed, and nothing for a node that moves or closes one of two sockets.
// (Instances run with grace 3s, refresh 300ms, TTL 1.2s.)
func TestClusterPresence(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	const grace = 3 * time.Second
	g := "EVENTSERVER_PRESENCE_GRACE=" + grace.String()
	a := startInstance(t, "a", r.URL(), prefix, g)
	b := startInstance(t, "b", r.URL(), prefix, g)
	c := startInstance(t, "c", r.URL(), prefix, g)
	watcher := startUI(t, c.server, "watcher@c", clientOpts{token: userToken(t, 1, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	watcher.waitType("connect", wait)
	count := func(ev string) int { return len(watcher.events(ev)) }

	// Online once; the nodes API of every replica knows it.
	n1 := startPyNode(t, a.server, "node3@a", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	n1.waitEvent("sync", wait)
	watcher.waitEvent("node-online", wait)
	n1.emit("ping", 0)
	n1.emit("node_info_update", 0, map[string]any{"allowed_algorithms": "all"})
	for _, s := range []*procServer{a, b, c} {
		testwait.For(t, wait, func() error {
			nodes := nodesOf(t, s.server)
			if len(nodes) != 1 || nodes[0]["instance"] != "a" || nodes[0]["last_ping"] == nil || nodes[0]["last_config"] == nil {
				return fmt.Errorf("%s: nodes %v", s.name, nodes)
			}
			return nil
		})
	}

	// A second socket of the same node on b, then the first one closes:
	// no notice.
	n1b := startPyNode(t, b.server, "node3@b", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	n1b.waitEvent("sync", wait)
	n1.disconnect()
	// A move: the node's socket on b closes and it reconnects on c within
	// the grace: no notice. The python client on c is started (and its
	// first socket closed again) beforehand, so that only its reconnect,
	// not a python start-up on a loaded machine, falls within the grace.
	n1c := startPyNode(t, c.server, "node3@c", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	n1c.waitEvent("sync", wait)
	n1c.leave()
	n1c.waitType("disconnected", wait)
	n1b.disconnect()
	n1c.reconnect()
	testwait.For(t, wait, func() error {
		if n := len(n1c.events("sync")); n != 2 {
			return fmt.Errorf("node3@c: %d sync, want 2 (the reconnect's)", n)
		}
		return nil
	})
	// Wait past the grace, with a barrier, then count.
	deadline := time.Now().Add(grace + 500*time.Millisecond)
	testwait.For(t, wait, func() error {
		if time.Now().Before(deadline) {
			return fmt.Errorf("grace not over")
		}
		return nil
	})
	barrier(t, b.server, watcher)
	if on, off := count("node-online"), count("node-offline"); on != 1 || off != 0 {
		t.Fatalf("after a second socket and a move: node-online %d, node-offline %d; want 1 and 0", on, off)
	}

	// A clean disconnect: one node-offline within the grace plus a second.
	start := time.Now()
	n1c.disconnect()
	watcher.waitEvent("node-offline", wait)
	d := time.Since(start)
	t.Logf("clean disconnect: node-offline after %s (grace %s)", d, grace)
	if d > grace+time.Second+time.Second {
		t.Errorf("node-offline after %s, want within the grace (%s) + the sweep (1s) + 1s", d, grace)
	}

	// SIGKILL of the node's replica: one node-offline within TTL + sweep + 1s,
	// decided by a survivor.
	n2 := startPyNode(t, b.server, "node4@b", clientOpts{token: nodeToken(t, 4, 1, 3, time.Hour), transports: "websocket"})
	n2.waitEvent("sync", wait)
	watcher.wait(wait, "node-online of node 4", func(m msg) bool {
		return m.Event == "node-online" && string(m.Args[0]) == `{"id":4,"name":"org3-node4","org_id":3}`
	})
	start = time.Now()
	b.stop(syscall.SIGKILL)
	watcher.wait(wait, "node-offline of node 4", func(m msg) bool {
		return m.Event == "node-offline" && string(m.Args[0]) == `{"id":4,"name":"org3-node4","org_id":3}`
	})
	d = time.Since(start)
	t.Logf("replica killed: node-offline after %s (TTL 1.2s, sweep 1s)", d)
	if d > 1200*time.Millisecond+time.Second+time.Second {
		t.Errorf("node-offline after the replica died: %s, want within TTL + sweep + 1s", d)
	}
	barrier(t, a.server, watcher)
	if on, off := count("node-online"), count("node-offline"); on != 2 || off != 2 {
		t.Errorf("node-online %d, node-offline %d; want 2 and 2: %v", on, off, watcher.eventNames())
	}
	if nodes := nodesOf(t, a.server); len(nodes) != 0 {
		t.Errorf("nodes after all went: %v", nodes)
	}
	// Each node went offline once: the flapping gauge, aggregated with max
	// over the live replicas, says 1.
	if most := max(a.server.metric("eventserver_presence_node_offline_max"), c.server.metric("eventserver_presence_node_offline_max")); most != 1 {
		t.Errorf("eventserver_presence_node_offline_max over the live replicas = %v, want 1", most)
	}
}
