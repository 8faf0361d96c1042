package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

const wait = 10 * time.Second

// TestVantage6NodeAndUI: a python-socketio node (header auth, polling then
// upgrade) and a Node socket.io-client UI (polling with extraHeaders, then
// upgrade) exchange every event of the protocol through the server.
func TestVantage6NodeAndUI(t *testing.T) {
	s := startServer(t, nil)

	ui := startUI(t, s, "ui", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)})
	ui.waitType("connect", wait)
	// An upgrade means the client started on polling (with extraHeaders).
	ui.wait(wait, "upgrade to websocket", func(m msg) bool { return m.Type == "upgrade" && m.Transport == "websocket" })
	jsonEq(t, ui.waitEvent("message", wait).Args[0], `"User <user5> joined room <collaboration_1>"`)

	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
	node.waitType("connect", wait)
	sync := node.waitEvent("sync", wait)
	if len(sync.Args) != 0 {
		t.Fatalf("sync has %d arguments, want none", len(sync.Args))
	}
	online := ui.waitEvent("node-online", wait)
	if len(online.Args) != 1 {
		t.Fatalf("node-online has %d arguments, want 1", len(online.Args))
	}
	jsonEq(t, online.Args[0], `{"id":3,"name":"org2-node3","org_id":2}`)
	ui.wait(wait, "join message of the node", func(m msg) bool {
		return m.Event == "message" && len(m.Args) == 1 && string(m.Args[0]) == `"Node <org2-node3> joined room <collaboration_1>"`
	})

	// The backend creates a task and kills runs.
	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":12,"parent_id":null}}`)
	nt := node.waitEvent("new_task", wait)
	if len(nt.Args) != 1 {
		t.Fatalf("new_task has %d arguments", len(nt.Args))
	}
	jsonEq(t, nt.Args[0], `{"id":12,"parent_id":null}`)
	kill := `{"kill_list":[{"task_id":12,"run_id":40,"organization_id":2}],"collaboration_id":1}`
	s.mustPublish(`{"event":"kill_containers","room":"collaboration_1","data":` + kill + `}`)
	jsonEq(t, node.waitEvent("kill_containers", wait).Args[0], kill)
	s.mustPublish(`{"event":"status_update","room":"collaboration_1","data":{"run_id":40}}`)
	jsonEq(t, ui.waitEvent("status_update", wait).Args[0], `{"run_id":40}`)

	// The node reports; the UI and the node itself see the relay.
	node.emit("ping", 0)
	node.emit("node_info_update", 0, map[string]any{"encryption": false, "allowed_algorithms": "all", "allowed_users": []int{1}, "database_labels": []string{"default"}})
	node.emit("node_metrics_update", 0, map[string]any{"cpu_percent": 12.5, "num_algorithm_containers": 1})
	node.emit("algorithm_status_change", 0, map[string]any{
		"node_id": 3, "status": "active", "run_id": 40, "task_id": 12,
		"collaboration_id": 1, "organization_id": 2, "parent_id": nil,
	})
	node.emit("algorithm_log", 0, map[string]any{"collaboration_id": 1, "run_id": 40, "task_id": 12, "log": "line\n"})
	want := `{"status":"active","run_id":40,"task_id":12,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}`
	for _, c := range []*client{ui, node} {
		asc := c.waitEvent("algorithm_status_change", wait)
		if len(asc.Args) != 1 {
			t.Fatalf("%s: algorithm_status_change has %d arguments", c.name, len(asc.Args))
		}
		jsonEq(t, asc.Args[0], want)
	}
	jsonEq(t, ui.waitEvent("algorithm_log", wait).Args[0], `{"run_id":40,"task_id":12,"log":"line\n"}`)

	// What the node said is kept and listed.
	testwait.For(t, wait, func() error {
		code, body := s.do("GET", "/api/v1/nodes", testPublishToken, "")
		if code != 200 {
			return fmt.Errorf("nodes: %d %s", code, body)
		}
		var resp struct {
			Nodes []struct {
				ID              json.RawMessage `json:"id"`
				Name            string          `json:"name"`
				OrganizationID  int64           `json:"organization_id"`
				CollaborationID int64           `json:"collaboration_id"`
				LastPing        *time.Time      `json:"last_ping"`
				LastConfig      json.RawMessage `json:"last_config"`
				LastMetrics     json.RawMessage `json:"last_metrics"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(body), &resp); err != nil {
			return err
		}
		if len(resp.Nodes) != 1 {
			return fmt.Errorf("want one node, got %s", body)
		}
		n := resp.Nodes[0]
		if string(n.ID) != "3" || n.Name != "org2-node3" || n.OrganizationID != 2 || n.CollaborationID != 1 {
			return fmt.Errorf("wrong node: %s", body)
		}
		if n.LastPing == nil || len(n.LastConfig) == 0 || string(n.LastConfig) == "null" || len(n.LastMetrics) == 0 || string(n.LastMetrics) == "null" {
			return fmt.Errorf("ping, config or metrics missing: %s", body)
		}
		if !strings.Contains(string(n.LastConfig), `"allowed_algorithms":"all"`) {
			return fmt.Errorf("config: %s", n.LastConfig)
		}
		return nil
	})
	if got := s.metric(`eventserver_events_received_total{event="ping"}`); got != 1 {
		t.Errorf("ping counted %v times, want 1", got)
	}

	// The node goes: the UI is told once.
	node.disconnect()
	off := ui.waitEvent("node-offline", wait)
	jsonEq(t, off.Args[0], `{"id":3,"name":"org2-node3","org_id":2}`)
	ui.wait(wait, "leave message", func(m msg) bool {
		return m.Event == "message" && string(m.Args[0]) == `"org2-node3 left room collaboration_1"`
	})
	if n := len(ui.events("node-online")); n != 1 {
		t.Errorf("ui got node-online %d times", n)
	}
	if n := len(ui.events("node-offline")); n != 1 {
		t.Errorf("ui got node-offline %d times", n)
	}
}

// barrier publishes a marker to the whole namespace and waits until every
// client got it: a client that got the marker got everything sent before it.
func barrier(t *testing.T, s *server, clients ...*client) {
	t.Helper()
	id := fmt.Sprintf(`"%d"`, time.Now().UnixNano())
	s.mustPublish(`{"event":"barrier","data":` + id + `}`)
	for _, c := range clients {
		c.wait(wait, "barrier", func(m msg) bool {
			return m.Event == "barrier" && len(m.Args) == 1 && string(m.Args[0]) == id
		})
	}
}

// TestIsolation: clients of other collaborations and organization-scoped
// users receive nothing that is not theirs.
func TestIsolation(t *testing.T) {
	s := startServer(t, nil)
	mk := func(name, tok string) *client {
		c := startUI(t, s, name, clientOpts{token: tok, transports: "websocket"})
		c.waitType("connect", wait)
		return c
	}
	u1 := mk("u1-collab1", userToken(t, 11, 2, []int64{1}, "collaboration", time.Hour))
	u2 := mk("u2-org2-in-c1", userToken(t, 12, 2, []int64{1}, "organization", time.Hour))
	u3 := mk("u3-org5-in-c1", userToken(t, 13, 5, []int64{1}, "organization", time.Hour))
	u4 := mk("u4-no-rule", userToken(t, 14, 2, []int64{1}, "", time.Hour))
	u5 := mk("u5-collab2", userToken(t, 15, 3, []int64{2}, "collaboration", time.Hour))
	ug := mk("ug-global", userToken(t, 16, 9, []int64{1, 2}, "global", time.Hour))
	a := startPyNode(t, s, "nodeA-c1-o2", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	a.waitEvent("sync", wait)
	b := startPyNode(t, s, "nodeB-c2-o3", clientOpts{token: nodeToken(t, 4, 2, 3, time.Hour), transports: "websocket"})
	b.waitEvent("sync", wait)
	all := []*client{u1, u2, u3, u4, u5, ug, a, b}
	barrier(t, s, all...)

	s.mustPublish(`{"event":"new_task","room":"collaboration_2","data":{"id":1,"parent_id":null}}`)
	s.mustPublish(`{"event":"status_update","room":"collaboration_1_organization_2","data":{"run_id":1}}`)
	a.emit("algorithm_status_change", 0, map[string]any{"node_id": 3, "status": "completed", "run_id": 5, "task_id": 6, "collaboration_id": 1, "organization_id": 2, "parent_id": nil})
	a.emit("algorithm_log", 0, map[string]any{"collaboration_id": 1, "run_id": 5, "task_id": 6, "log": "secret output of A"})
	barrier(t, s, all...)
	// A node that speaks for another collaboration is refused.
	a.emit("algorithm_status_change", 0, map[string]any{"node_id": 3, "status": "failed", "run_id": 7, "task_id": 8, "collaboration_id": 2, "organization_id": 2, "parent_id": nil})
	a.emit("algorithm_log", 0, map[string]any{"collaboration_id": 2, "run_id": 7, "task_id": 8, "log": "into c2"})
	a.emit("algorithm_status_change", 0, map[string]any{"node_id": 4, "status": "failed", "run_id": 7, "task_id": 8, "collaboration_id": 1, "organization_id": 2, "parent_id": nil})
	// A user's events lead to no action.
	u1.emit("algorithm_status_change", 0, map[string]any{"node_id": 3, "status": "failed", "run_id": 9, "task_id": 9, "collaboration_id": 1, "organization_id": 2, "parent_id": nil})
	barrier(t, s, all...)

	joinOf := func(names ...string) map[string]int {
		m := map[string]int{}
		for _, n := range names {
			m[n]++
		}
		return m
	}
	check := func(c *client, want map[string]int) {
		t.Helper()
		got := joinOf(c.eventNames()...)
		delete(got, "barrier")
		delete(got, "message")
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: got %s %d times, want %d (all: %v)", c.name, k, got[k], v, c.eventNames())
			}
			delete(got, k)
		}
		for k, v := range got {
			t.Errorf("%s: unexpected %s (%d times; all: %v)", c.name, k, v, c.eventNames())
		}
	}
	// node-online goes to every room of the node (the spec's table), which
	// includes all_nodes: node A sees B come online and the other way round.
	check(u1, map[string]int{"node-online": 1, "algorithm_status_change": 1, "algorithm_log": 1})
	check(u2, map[string]int{"node-online": 1, "status_update": 1})
	check(u3, nil)
	check(u4, nil)
	check(u5, map[string]int{"node-online": 1, "new_task": 1})
	check(ug, map[string]int{"node-online": 2, "new_task": 1, "algorithm_status_change": 1, "algorithm_log": 1})
	check(a, map[string]int{"sync": 1, "node-online": 1, "status_update": 1, "algorithm_status_change": 1, "algorithm_log": 1})
	check(b, map[string]int{"sync": 1, "new_task": 1})

	// Room messages: a collaboration's joins reach only that collaboration,
	// never all_nodes.
	for _, c := range all {
		for _, m := range c.events("message") {
			var text string
			_ = json.Unmarshal(m.Args[0], &text)
			if strings.Contains(text, "all_nodes") {
				t.Errorf("%s: join/leave of all_nodes announced: %q", c.name, text)
			}
			if c == b && strings.Contains(text, "org2-node3") {
				t.Errorf("node B learnt of node A: %q", text)
			}
			if c == u4 || (c == u3 && text != "User <user13> joined room <collaboration_1_organization_5>") {
				t.Errorf("%s got a room message: %q", c.name, text)
			}
		}
	}
	if got := s.metric(`eventserver_events_refused_total{event="algorithm_status_change",reason="not_own"}`); got != 2 {
		t.Errorf("not_own refusals of algorithm_status_change: %v, want 2", got)
	}
	if got := s.metric(`eventserver_events_refused_total{event="algorithm_log",reason="not_own"}`); got != 1 {
		t.Errorf("not_own refusals of algorithm_log: %v, want 1", got)
	}
	if got := s.metric(`eventserver_events_refused_total{event="algorithm_status_change",reason="not_node"}`); got != 1 {
		t.Errorf("user event refusals: %v, want 1", got)
	}
}

// TestMalformedPayloads: bad input is logged and dropped, never relayed,
// and the server keeps serving the same socket.
func TestMalformedPayloads(t *testing.T) {
	s := startServer(t, nil)
	ui := startUI(t, s, "ui", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	ui.waitType("connect", wait)
	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
	node.waitEvent("sync", wait)
	node.emit("algorithm_status_change", 0, "not an object")
	node.emit("algorithm_status_change", 0)
	node.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": "forty", "task_id": 1})
	node.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": 1.5, "task_id": 1})
	node.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": 1, "task_id": 1, "parent_id": "x"})
	node.emit("algorithm_status_change", 0, map[string]any{"run_id": 1, "task_id": 1}, "extra")
	node.emit("algorithm_log", 0, map[string]any{"run_id": 1, "task_id": 1, "log": 42})
	node.emit("node_info_update", 0, []int{1, 2})
	node.emit("no_such_event", 0, map[string]any{"x": 1})
	node.emit("message", 0, strings.Repeat("é", 3000))
	// Still alive and relaying.
	node.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": 1, "task_id": 2})
	asc := ui.waitEvent("algorithm_status_change", wait)
	jsonEq(t, asc.Args[0], `{"status":"active","run_id":1,"task_id":2,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}`)
	barrier(t, s, ui, node)
	if n := len(ui.events("algorithm_status_change")) + len(ui.events("algorithm_log")); n != 1 {
		t.Errorf("ui got %d relays, want 1: %v", n, ui.eventNames())
	}
	if got := s.metric(`eventserver_events_refused_total{event="algorithm_status_change",reason="malformed"}`); got != 6 {
		t.Errorf("malformed algorithm_status_change: %v, want 6", got)
	}
}

// TestAuthFailures: expired, wrong-secret and missing tokens get the event
// vantage6 expects, with no arguments, no rooms, and a disconnect after the
// grace.
func TestAuthFailures(t *testing.T) {
	s := startServer(t, nil)
	watcher := startUI(t, s, "watcher", clientOpts{token: userToken(t, 1, 2, []int64{1}, "global", time.Hour), transports: "websocket"})
	watcher.waitType("connect", wait)

	expired := mintAt(t, time.Now().Add(-2*time.Hour), map[string]any{ // exp an hour ago, beyond any leeway
		"client_type": "node", "sub": 3, "name": "n", "collaboration_id": 1, "organization_id": 2})
	wrong := strings.Replace(nodeToken(t, 3, 1, 2, time.Hour), ".", ".x", 1)
	cases := []struct {
		name, event string
		o           clientOpts
		py          bool
	}{
		{"py-expired", "expired_token", clientOpts{token: expired}, true},
		{"py-invalid", "invalid_token", clientOpts{token: wrong}, true},
		{"py-missing", "invalid_token", clientOpts{authMode: "none"}, true},
		{"ui-expired-auth", "expired_token", clientOpts{token: expired, authMode: "auth"}, false},
		{"ui-invalid-polling", "invalid_token", clientOpts{token: "garbage", transports: "polling"}, false},
	}
	var cs []*client
	for _, tc := range cases {
		var c *client
		if tc.py {
			c = startPyNode(t, s, tc.name, tc.o)
		} else {
			c = startUI(t, s, tc.name, tc.o)
		}
		ev := c.waitEvent(tc.event, wait)
		if len(ev.Args) != 0 {
			t.Errorf("%s: %s has %d arguments, want none", tc.name, tc.event, len(ev.Args))
		}
		cs = append(cs, c)
	}
	// Namespace-wide and room emits skip them while they wait for the kick.
	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":1,"parent_id":null}}`)
	s.mustPublish(`{"event":"status_update","data":{"run_id":1}}`)
	watcher.waitEvent("status_update", wait)
	for _, c := range cs {
		c.waitType("disconnect", wait)
		if names := c.eventNames(); len(names) != 1 {
			t.Errorf("%s: got %v, want only its token event", c.name, names)
		}
	}
	if n := len(watcher.events("node-online")); n != 0 {
		t.Errorf("a node with a bad token came online (%d)", n)
	}
	// Tokens never reach the logs, not even bad ones.
	logs := s.logText()
	if !strings.Contains(logs, "authentication failed") {
		t.Fatalf("no auth failure logged:\n%s", logs)
	}
	for _, secret := range []string{expired, wrong, "garbage", testSecret, testPublishToken} {
		for _, part := range strings.Split(secret, ".") {
			if len(part) > 8 && strings.Contains(logs, part) {
				t.Errorf("the logs contain (part of) a token or secret: %q", part)
			}
		}
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="expired"}`); got != 2 {
		t.Errorf("expired failures %v, want 2", got)
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="missing"}`); got != 1 {
		t.Errorf("missing failures %v, want 1", got)
	}
}

// TestTokenExpiryAndRefresh: a token that expires while connected gets
// expired_token; refresh_token with a fresh token keeps the socket and its
// rooms, without it the socket is disconnected after the grace.
func TestTokenExpiryAndRefresh(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.JWTLeeway = 0; c.AuthGrace = 1500 * time.Millisecond })
	ui := startUI(t, s, "ui", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	ui.waitType("connect", wait)

	keeper := startPyNode(t, s, "keeper", clientOpts{token: nodeToken(t, 3, 1, 2, 2*time.Second)})
	leaver := startPyNode(t, s, "leaver", clientOpts{token: nodeToken(t, 4, 1, 3, 2*time.Second)})
	keeper.waitEvent("sync", wait)
	leaver.waitEvent("sync", wait)

	// Before expiry: a refresh with another node's token, a bad token and a
	// malformed argument are refused through the ack.
	keeper.emit("refresh_token", 1, map[string]any{"token": nodeToken(t, 4, 1, 3, time.Hour)})
	keeper.emit("refresh_token", 2, map[string]any{"token": "nope"})
	keeper.emit("refresh_token", 3, "nope")
	for id, want := range map[int]string{1: `{"ok":false,"error":"identity_mismatch"}`, 2: `{"ok":false,"error":"invalid_token"}`, 3: `{"ok":false,"error":"malformed"}`} {
		a := keeper.wait(wait, fmt.Sprint("ack ", id), func(m msg) bool { return m.Type == "ack" && m.ID == id })
		jsonEq(t, a.Args[0], want)
	}

	keeper.waitEvent("expired_token", wait)
	leaver.waitEvent("expired_token", wait)
	keeper.emit("refresh_token", 4, map[string]any{"token": nodeToken(t, 3, 1, 2, time.Hour)})
	a := keeper.wait(wait, "ack 4", func(m msg) bool { return m.Type == "ack" && m.ID == 4 })
	var ack struct {
		OK  bool  `json:"ok"`
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(a.Args[0], &ack); err != nil || !ack.OK || ack.Exp < time.Now().Add(50*time.Minute).Unix() {
		t.Fatalf("refresh ack %s", a.Args[0])
	}

	leaver.waitType("disconnect", wait)
	ui.waitEvent("node-offline", wait)
	// The keeper outlived the grace that removed the leaver and is still in its rooms.
	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":99,"parent_id":null}}`)
	jsonEq(t, keeper.waitEvent("new_task", wait).Args[0], `{"id":99,"parent_id":null}`)
	for _, m := range keeper.snapshot() {
		if m.Type == "disconnect" {
			t.Fatal("keeper was disconnected")
		}
	}
	offs := ui.events("node-offline")
	if len(offs) != 1 {
		t.Fatalf("node-offline %d times", len(offs))
	}
	jsonEq(t, offs[0].Args[0], `{"id":4,"name":"org3-node4","org_id":3}`)
}

// TestPublishAPIEndToEnd: zero and several arguments, several rooms, except.
func TestPublishAPIEndToEnd(t *testing.T) {
	s := startServer(t, nil)
	n1 := startPyNode(t, s, "n1", clientOpts{token: nodeToken(t, 1, 1, 1, time.Hour), transports: "websocket"})
	n2 := startPyNode(t, s, "n2", clientOpts{token: nodeToken(t, 2, 2, 2, time.Hour), transports: "websocket"})
	n3 := startPyNode(t, s, "n3", clientOpts{token: nodeToken(t, 3, 3, 3, time.Hour), transports: "websocket"})
	for _, c := range []*client{n1, n2, n3} {
		c.waitEvent("sync", wait)
	}
	s.mustPublish(`{"event":"sync","room":"collaboration_1","args":[]}`)
	s.mustPublish(`{"event":"multi","rooms":["collaboration_1","collaboration_2"],"except":["collaboration_2_organization_2"],"args":[1,"two",{"three":3}]}`)
	s.mustPublish(`{"event":"all","namespace":"/tasks","data":null}`)
	s.mustPublish(`{"event":"one_null","room":"collaboration_1","args":[null]}`)
	barrier(t, s, n1, n2, n3)
	if got := len(n1.events("sync")); got != 2 {
		t.Errorf("n1 got sync %d times, want 2", got)
	}
	if ev := n1.events("sync"); len(ev) == 2 && len(ev[1].Args) != 0 {
		t.Errorf("published sync has %d arguments", len(ev[1].Args))
	}
	m := n1.events("multi")
	if len(m) != 1 || len(m[0].Args) != 3 {
		t.Fatalf("n1 multi: %+v", m)
	}
	jsonEq(t, m[0].Args[2], `{"three":3}`)
	if len(n2.events("multi")) != 0 || len(n3.events("multi")) != 0 {
		t.Errorf("except or rooms ignored: n2 %v, n3 %v", n2.eventNames(), n3.eventNames())
	}
	// "data": null is no argument (as python-socketio's emit(event)); an
	// explicit "args": [null] is one null.
	for _, c := range []*client{n1, n2, n3} {
		if ev := c.events("all"); len(ev) != 1 || len(ev[0].Args) != 0 {
			t.Errorf("%s: namespace-wide with data null: %+v, want once with no argument", c.name, ev)
		}
	}
	if ev := n1.events("one_null"); len(ev) != 1 || len(ev[0].Args) != 1 || string(ev[0].Args[0]) != "null" {
		t.Errorf("args [null]: %+v, want one null argument", ev)
	}
	// The sockets API says who is in a room.
	code, body := s.do("GET", "/api/v1/sockets?room=collaboration_1&room=collaboration_2", testPublishToken, "")
	var socks struct {
		Sockets []struct {
			ID    string            `json:"id"`
			Rooms []string          `json:"rooms"`
			Data  map[string]string `json:"data"`
		} `json:"sockets"`
	}
	if err := json.Unmarshal([]byte(body), &socks); code != 200 || err != nil || len(socks.Sockets) != 2 {
		t.Fatalf("sockets: %d %s", code, body)
	}
	for _, sk := range socks.Sockets {
		if sk.Data["client_type"] != "node" || (sk.Data["client_id"] != "1" && sk.Data["client_id"] != "2") || sk.Data["instance"] != "test" {
			t.Errorf("socket data %v", sk.Data)
		}
	}
	code, body = s.publish(`{"event":"x","room":7}`)
	if code != http.StatusBadRequest || !strings.Contains(body, `"field":"room"`) {
		t.Errorf("bad room: %d %s", code, body)
	}
}

// TestPublicKeyTokens: with EVENTSERVER_JWT_PUBLIC_KEY_FILE only (as with
// Keycloak for vantage6 5), RS256 tokens with a string sub are accepted and
// HS256 tokens are refused.
func TestPublicKeyTokens(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(t.TempDir(), "kc.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *config.Config) { c.JWTSecret = ""; c.JWTPublicKeyFile = pemFile })
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"client_type": "node", "sub": "3f2c9a4e-kc", "name": "kc-node", "collaboration_id": 1, "organization_id": 2,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "typ": "Bearer",
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	ui := startUI(t, s, "ui", clientOpts{token: tok, transports: "websocket"})
	ui.waitEvent("sync", wait) // a node, as far as the server is concerned
	hs := startUI(t, s, "hs256", clientOpts{token: nodeToken(t, 4, 1, 2, time.Hour), transports: "websocket"})
	hs.waitEvent("invalid_token", wait)
	code, body := s.do("GET", "/api/v1/nodes", testPublishToken, "")
	if code != 200 || !strings.Contains(body, `"id":"3f2c9a4e-kc"`) {
		t.Fatalf("nodes: %d %s", code, body)
	}
}

// TestHeartbeatsKeepLastSeen: Engine.IO heartbeats move a node's last_seen;
// without ping events it still turns stale (vantage6's rule).
func TestHeartbeatsKeepLastSeen(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.PresenceStale = time.Second })
	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	node.waitEvent("sync", wait)
	testwait.For(t, wait, func() error {
		code, body := s.do("GET", "/api/v1/nodes", testPublishToken, "")
		var resp struct {
			Nodes []struct {
				ConnectedSince time.Time `json:"connected_since"`
				LastSeen       time.Time `json:"last_seen"`
				Stale          bool      `json:"stale"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil || len(resp.Nodes) != 1 {
			return fmt.Errorf("nodes: %d %s", code, body)
		}
		n := resp.Nodes[0]
		if !n.LastSeen.After(n.ConnectedSince) || !n.Stale {
			return fmt.Errorf("want a heartbeat after connect and stale without ping events: %s", body)
		}
		return nil
	})
}
