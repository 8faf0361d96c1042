package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/pkg/redistest"
)

// Parity with the vantage6 4.14 node and UI (issue 15). The UI here is
// socket.io-client with its automatic reconnection on, as the 4.14 UI has
// it, and no expired_token handler: like the 4.14 UI it never reconnects
// after a server disconnect. The node is python-socketio with the 4.14
// node's zero-argument handlers of sync, expired_token and invalid_token.

// noHandlerErrors fails when the node's zero-argument handlers raised (the
// real node would have crashed).
func noHandlerErrors(t *testing.T, c *client) {
	t.Helper()
	for _, m := range c.snapshot() {
		if m.Type == "handler_error" {
			t.Errorf("%s: a vantage6 node handler raised: %+v", c.name, m)
		}
	}
}

// count returns how many messages of c match.
func count(c *client, match func(msg) bool) int {
	n := 0
	for _, m := range c.snapshot() {
		if match(m) {
			n++
		}
	}
	return n
}

func isType(typ string) func(msg) bool { return func(m msg) bool { return m.Type == typ } }

// TestUserTokenExpiryKeep: by default a connected user whose token expires
// is told expired_token once and keeps its socket and rooms (as 4.14), while
// a node is disconnected after the grace (the real node logs in again). A
// refresh after the expiry still works and re-arms it.
func TestUserTokenExpiryKeep(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.JWTLeeway = 0 })
	ui := startUI(t, s, "ui", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", 2*time.Second), reconnect: true})
	ui.waitType("connect", wait)
	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, 2*time.Second), v6Handlers: true})
	node.waitEvent("sync", wait)

	if n := len(ui.waitEvent("expired_token", wait).Args); n != 0 {
		t.Fatalf("expired_token has %d arguments, want none", n)
	}
	// The node's token expires later than the UI's: once the node is gone
	// (after its grace), the UI's grace has passed too.
	node.waitEvent("expired_token", wait)
	node.waitType("disconnect", wait)
	ui.waitEvent("node-offline", wait)

	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":7,"parent_id":null}}`)
	jsonEq(t, ui.waitEvent("new_task", wait).Args[0], `{"id":7,"parent_id":null}`)
	barrier(t, s, ui)
	if n := count(ui, isType("disconnect")); n != 0 {
		t.Fatalf("the UI was disconnected: %s", ui.describe())
	}
	if n := len(ui.events("expired_token")); n != 1 {
		t.Errorf("expired_token %d times, want once", n)
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="expired_while_connected_kept"}`); got != 1 {
		t.Errorf("kept expiries %v, want 1", got)
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="expired_while_connected"}`); got != 1 {
		t.Errorf("disconnecting expiries %v, want 1 (the node)", got)
	}
	if !strings.Contains(s.logText(), "keeping the socket and its rooms") {
		t.Error("no log line for the kept expiry")
	}

	// A client that can refresh does so, after the expiry, and the expiry
	// is armed again with the new token.
	ui.emit("refresh_token", 1, map[string]any{"token": userToken(t, 5, 2, []int64{1}, "collaboration", 2*time.Second)})
	a := ui.wait(wait, "ack 1", func(m msg) bool { return m.Type == "ack" && m.ID == 1 })
	var ack struct {
		OK  bool  `json:"ok"`
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(a.Args[0], &ack); err != nil || !ack.OK || ack.Exp < time.Now().Unix() {
		t.Fatalf("refresh after expiry: %s", a.Args[0])
	}
	ui.wait(wait, "a second expired_token", func(m msg) bool { return len(ui.events("expired_token")) == 2 })
	s.mustPublish(`{"event":"status_update","room":"collaboration_1","data":{"run_id":1}}`)
	ui.waitEvent("status_update", wait)
	if n := count(ui, isType("disconnect")); n != 0 {
		t.Fatalf("the UI was disconnected: %s", ui.describe())
	}
	noHandlerErrors(t, node)
}

// TestUserTokenExpiryDisconnect: with EVENTSERVER_USER_TOKEN_EXPIRY=disconnect
// an expired user is disconnected after the grace unless it refreshes; the
// 4.14 UI then stays disconnected (what "keep" avoids).
func TestUserTokenExpiryDisconnect(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.JWTLeeway = 0; c.UserTokenExpiry = "disconnect" })
	keeper := startUI(t, s, "keeper", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", 2*time.Second), reconnect: true, transports: "websocket"})
	leaver := startUI(t, s, "leaver", clientOpts{token: userToken(t, 6, 2, []int64{1}, "collaboration", 2*time.Second), reconnect: true})
	keeper.waitType("connect", wait)
	leaver.waitType("connect", wait)

	keeper.waitEvent("expired_token", wait)
	keeper.emit("refresh_token", 1, map[string]any{"token": userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)})
	a := keeper.wait(wait, "ack 1", func(m msg) bool { return m.Type == "ack" && m.ID == 1 })
	if !strings.Contains(string(a.Args[0]), `"ok":true`) {
		t.Fatalf("refresh after expiry: %s", a.Args[0])
	}

	leaver.waitEvent("expired_token", wait)
	d := leaver.waitType("disconnect", wait)
	if d.Reason != "io server disconnect" {
		t.Errorf("leaver disconnect reason %q, want io server disconnect", d.Reason)
	}
	// The keeper outlived the grace, and the leaver did not come back.
	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":8,"parent_id":null}}`)
	keeper.waitEvent("new_task", wait)
	barrier(t, s, keeper)
	if n := count(keeper, isType("disconnect")); n != 0 {
		t.Errorf("keeper was disconnected: %s", keeper.describe())
	}
	if n := count(leaver, isType("connect")); n != 1 || len(leaver.events("new_task")) != 0 {
		t.Errorf("leaver: %s, want one connect and no new_task", leaver.describe())
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="expired_while_connected"}`); got != 2 {
		t.Errorf("disconnecting expiries %v, want 2", got)
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="expired_while_connected_kept"}`); got != 0 {
		t.Errorf("kept expiries %v, want 0", got)
	}
}

// TestDataNullIsNoArgument: a backend that passes data=None through the
// publish API reaches the real node's zero-argument handlers without a
// crash; an explicit [null] is one argument (and would crash it, which the
// harness sees).
func TestDataNullIsNoArgument(t *testing.T) {
	s := startServer(t, nil)
	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), v6Handlers: true})
	node.waitEvent("sync", wait)
	s.mustPublish(`{"event":"sync","room":"collaboration_1","data":null}`)
	node.wait(wait, "second sync", func(msg) bool { return len(node.events("sync")) == 2 })
	noHandlerErrors(t, node)
	if ev := node.events("sync"); len(ev[1].Args) != 0 {
		t.Fatalf("sync with data null has %d arguments", len(ev[1].Args))
	}
	// The check above can fail: one null argument crashes on_sync.
	s.mustPublish(`{"event":"sync","room":"collaboration_1","args":[null]}`)
	e := node.waitType("handler_error", wait)
	if e.Event != "sync" || !strings.Contains(e.Message, "argument") {
		t.Errorf("handler_error %+v, want a TypeError of sync", e)
	}
}

// TestAdminNamespace: /admin serves global-scope users with
// node-status-changed (no argument) once per node online and offline;
// other users, nodes and bad tokens are told invalid_token and disconnected
// and never get it.
func TestAdminNamespace(t *testing.T) {
	// A grace long enough that the refused sockets are still there at the
	// first transition.
	s := startServer(t, func(c *config.Config) { c.AuthGrace = 4 * time.Second })
	admin := startUI(t, s, "admin", clientOpts{token: userToken(t, 1, 2, []int64{1, 2}, "global", time.Hour), namespace: "/admin", reconnect: true})
	admin.waitType("connect", wait)
	refused := map[string]clientOpts{
		"collab-user": {token: userToken(t, 2, 2, []int64{1}, "collaboration", time.Hour)},
		"node":        {token: nodeToken(t, 4, 1, 3, time.Hour)},
		"no-token":    {authMode: "none"},
		"bad-token":   {token: "garbage"},
	}
	var others []*client
	for name, o := range refused {
		o.namespace = "/admin"
		c := startUI(t, s, name, o)
		if n := len(c.waitEvent("invalid_token", wait).Args); n != 0 {
			t.Errorf("%s: invalid_token with %d arguments", name, n)
		}
		others = append(others, c)
	}
	tasksUI := startUI(t, s, "tasks-ui", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)})
	tasksUI.waitType("connect", wait)

	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), v6Handlers: true})
	node.waitEvent("sync", wait)
	ev := admin.waitEvent("node-status-changed", wait)
	if len(ev.Args) != 0 {
		t.Fatalf("node-status-changed has %d arguments, want none", len(ev.Args))
	}
	// A second connection of the same node is no transition.
	node2 := startPyNode(t, s, "node-again", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
	node2.waitEvent("sync", wait)
	node2.disconnect()
	node.disconnect()
	tasksUI.waitEvent("node-offline", wait)
	admin.wait(wait, "second node-status-changed", func(msg) bool { return len(admin.events("node-status-changed")) == 2 })

	for _, c := range others {
		c.waitType("disconnect", wait)
		if names := c.eventNames(); len(names) != 1 {
			t.Errorf("%s got %v, want only invalid_token", c.name, names)
		}
	}
	if n := len(tasksUI.events("node-status-changed")); n != 0 {
		t.Errorf("/tasks got node-status-changed %d times", n)
	}
	// No more than one notice per transition: a third transition is the third.
	node3 := startPyNode(t, s, "node-other", clientOpts{token: nodeToken(t, 4, 1, 3, time.Hour)})
	node3.waitEvent("sync", wait)
	admin.wait(wait, "third node-status-changed", func(msg) bool { return len(admin.events("node-status-changed")) >= 3 })
	barrier(t, s, tasksUI)
	if n := len(admin.events("node-status-changed")); n != 3 {
		t.Errorf("node-status-changed %d times for 3 transitions", n)
	}
	if n := count(admin, isType("disconnect")); n != 0 {
		t.Errorf("admin was disconnected: %s", admin.describe())
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="not_admin"}`); got != 2 {
		t.Errorf("not_admin refusals %v, want 2", got)
	}
}

// TestParityAcrossReplicas: the four differences on three instances of one
// Redis: the join text, data null, the /admin notice exactly once per
// transition on every instance, and an expired UI kept in its rooms.
func TestParityAcrossReplicas(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	a := startInstance(t, "a", r.URL(), prefix, "EVENTSERVER_JWT_LEEWAY=0s")
	b := startInstance(t, "b", r.URL(), prefix, "EVENTSERVER_JWT_LEEWAY=0s")
	c := startInstance(t, "c", r.URL(), prefix, "EVENTSERVER_JWT_LEEWAY=0s")

	globalTok := userToken(t, 1, 2, []int64{1, 2}, "global", time.Hour)
	adminA := startUI(t, a.server, "admin@a", clientOpts{token: globalTok, namespace: "/admin", reconnect: true})
	adminC := startUI(t, c.server, "admin@c", clientOpts{token: globalTok, namespace: "/admin", reconnect: true})
	adminA.waitType("connect", wait)
	adminC.waitType("connect", wait)
	ui := startUI(t, a.server, "ui@a", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", 3*time.Second), reconnect: true})
	ui.waitType("connect", wait)

	node := startPyNode(t, b.server, "node@b", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), v6Handlers: true})
	node.waitEvent("sync", wait)
	ui.wait(wait, "join text", func(m msg) bool {
		return m.Event == "message" && string(m.Args[0]) == `"Node <org2-node3> joined room <collaboration_1>"`
	})
	for _, ad := range []*client{adminA, adminC} {
		if ev := ad.waitEvent("node-status-changed", wait); len(ev.Args) != 0 {
			t.Errorf("%s: node-status-changed with arguments", ad.name)
		}
	}

	// data null published on c reaches the node on b without an argument.
	c.mustPublish(`{"event":"sync","room":"collaboration_1","data":null}`)
	node.wait(wait, "second sync", func(msg) bool { return len(node.events("sync")) == 2 })
	noHandlerErrors(t, node)

	// The UI's token expires; it stays in its rooms for events from b.
	ui.waitEvent("expired_token", wait)
	node.disconnect()
	ui.waitEvent("node-offline", wait) // presence grace (1s) is longer than the auth grace (700ms)
	b.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":9,"parent_id":null}}`)
	jsonEq(t, ui.waitEvent("new_task", wait).Args[0], `{"id":9,"parent_id":null}`)
	if n := count(ui, isType("disconnect")); n != 0 {
		t.Fatalf("the expired UI was disconnected: %s", ui.describe())
	}
	ui.wait(wait, "left text", func(m msg) bool {
		return m.Event == "message" && string(m.Args[0]) == `"org2-node3 left room collaboration_1"`
	})

	for _, ad := range []*client{adminA, adminC} {
		ad.wait(wait, "offline notice", func(msg) bool { return len(ad.events("node-status-changed")) >= 2 })
	}
	// A third transition, then exactly three notices on each instance.
	other := startPyNode(t, c.server, "other@c", clientOpts{token: nodeToken(t, 4, 2, 3, time.Hour)})
	other.waitEvent("sync", wait)
	for _, ad := range []*client{adminA, adminC} {
		ad.wait(wait, "third notice", func(msg) bool { return len(ad.events("node-status-changed")) >= 3 })
	}
	barrier(t, b.server, ui, other)
	for _, ad := range []*client{adminA, adminC} {
		if n := len(ad.events("node-status-changed")); n != 3 {
			t.Errorf("%s: node-status-changed %d times for 3 transitions", ad.name, n)
		}
	}
	if !strings.Contains(a.logText(), "keeping the socket and its rooms") {
		t.Errorf("a: no log line for the kept expiry:\n%s", tail(a.logText(), 20))
	}
}
