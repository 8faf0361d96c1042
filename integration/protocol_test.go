package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gosio "github.com/zishang520/socket.io/clients/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"

	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/pkg/testsupport/testclient"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// startGoClient connects the Go Socket.IO client to /tasks.
func startGoClient(t *testing.T, s *server, name, token string) *client {
	t.Helper()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	return goClient(t, s.URL, name, h, nil)
}

// goClient connects the Go client to url's /tasks with the given headers and
// auth. When the server asks for an ack, the client answers with its name.
// The socket connects on a Manager already open (testclient.OpenManager).
func goClient(t *testing.T, url, name string, headers http.Header, auth map[string]any) *client {
	t.Helper()
	c := &client{t: t, name: name}
	opts := gosio.DefaultOptions()
	opts.SetTransports(types.NewSet(gosio.Polling, gosio.WebSocket))
	opts.SetReconnection(false)
	opts.SetForceNew(true)
	opts.SetAutoConnect(false)
	if headers != nil {
		opts.SetExtraHeaders(headers)
	}
	if auth != nil {
		opts.SetAuth(auth)
	}
	m := testclient.OpenManager(t, url, name, opts)
	sock := m.Socket("/tasks", opts)
	_ = sock.On("connect", func(...any) { c.add(msg{Type: "connect", Sid: sock.Id()}) })
	_ = sock.On("disconnect", func(args ...any) { c.add(msg{Type: "disconnect", Reason: fmt.Sprint(args...)}) })
	sock.OnAny(func(args ...any) {
		m := msg{Type: "event", Args: []json.RawMessage{}}
		m.Event, _ = args[0].(string)
		if ack, ok := args[len(args)-1].(func([]any, error)); ok {
			args = args[:len(args)-1]
			ack([]any{name}, nil)
		}
		for _, a := range args[1:] {
			b, _ := json.Marshal(a)
			m.Args = append(m.Args, b)
		}
		c.add(m)
	})
	c.emitFn = func(event string, _ int, args ...any) { _ = sock.Emit(event, args...) }
	c.stop = func() { sock.Disconnect() }
	t.Cleanup(c.stop)
	sock.Connect()
	return c
}

// TestGoClient: the Go client is a user of collaboration 1 and sees what a
// python node does, including the node's arrival and departure.
func TestGoClient(t *testing.T) {
	s := startServer(t, nil)
	g := startGoClient(t, s, "go-user", userToken(t, 7, 2, []int64{1}, "collaboration", time.Hour))
	g.waitType("connect", wait)
	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
	node.waitEvent("sync", wait)
	jsonEq(t, g.waitEvent("node-online", wait).Args[0], `{"id":3,"name":"org2-node3","org_id":2}`)
	node.emit("algorithm_status_change", 0, map[string]any{"status": "completed", "run_id": 1, "task_id": 2, "collaboration_id": 1, "node_id": 3, "organization_id": 2, "parent_id": 1})
	jsonEq(t, g.waitEvent("algorithm_status_change", wait).Args[0],
		`{"status":"completed","run_id":1,"task_id":2,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":1}`)
	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":5,"parent_id":null}}`)
	g.waitEvent("new_task", wait)
	node.disconnect()
	g.waitEvent("node-offline", wait)
}

// eioPoll is a bare Engine.IO v4 polling session, to see packets in the
// order the server writes them.
type eioPoll struct {
	t    *testing.T
	base string
	sid  string
}

func (e *eioPoll) req(method, body string, hdr http.Header) string {
	e.t.Helper()
	u := e.base + "/socket.io/?EIO=4&transport=polling"
	if e.sid != "" {
		u += "&sid=" + e.sid
	}
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("%s: %d %s", method, resp.StatusCode, b)
	}
	return string(b)
}

// TestConnectAckBeforeSync: the namespace CONNECT ack reaches a node before
// sync (a node that gets sync first crashes: vantage6 issue 1333).
func TestConnectAckBeforeSync(t *testing.T) {
	s := startServer(t, nil)
	hdr := http.Header{"Authorization": {"Bearer " + nodeToken(t, 3, 1, 2, time.Hour)}}
	e := &eioPoll{t: t, base: s.URL}
	open := e.req("GET", "", hdr)
	if !strings.HasPrefix(open, "0{") {
		t.Fatalf("open packet %q", open)
	}
	var hs struct {
		Sid          string   `json:"sid"`
		PingInterval int      `json:"pingInterval"`
		PingTimeout  int      `json:"pingTimeout"`
		Upgrades     []string `json:"upgrades"`
		MaxPayload   int      `json:"maxPayload"`
	}
	if err := json.Unmarshal([]byte(open[1:]), &hs); err != nil {
		t.Fatal(err)
	}
	if hs.PingInterval != 1000 || hs.PingTimeout != 2000 || hs.MaxPayload != 1000000 || len(hs.Upgrades) != 1 || hs.Upgrades[0] != "websocket" {
		t.Errorf("handshake %+v", hs)
	}
	e.sid = hs.Sid
	if got := e.req("POST", "40/tasks,", hdr); got != "ok" {
		t.Fatalf("post connect: %q", got)
	}
	var packets []string
	deadline := time.Now().Add(wait)
	for len(packets) < 2 && time.Now().Before(deadline) {
		for _, p := range strings.Split(e.req("GET", "", hdr), "\x1e") {
			if strings.HasPrefix(p, "4") { // Socket.IO packets; skip Engine.IO pings
				packets = append(packets, p)
			}
		}
	}
	if len(packets) < 2 {
		t.Fatalf("packets %q", packets)
	}
	if !strings.HasPrefix(packets[0], `40/tasks,{"sid":"`) {
		t.Fatalf("first packet %q, want the CONNECT ack", packets[0])
	}
	if packets[1] != `42/tasks,["sync"]` {
		t.Fatalf("second packet %q, want sync with no arguments", packets[1])
	}
}

// TestCORSPreflight: a browser UI on another origin may connect with
// Authorization on polling; another origin may not read responses.
func TestCORSPreflight(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.CORSOrigins = []string{"https://ui.example.org"} })
	pre := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", s.URL+"/socket.io/?EIO=4&transport=polling", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := pre("https://ui.example.org")
	if resp.StatusCode != http.StatusNoContent ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://ui.example.org" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.EqualFold(resp.Header.Get("Access-Control-Allow-Headers"), "authorization") {
		t.Fatalf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = pre("https://evil.example")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// The real request then carries the Authorization header and gets the echo.
	req, _ := http.NewRequest("GET", s.URL+"/socket.io/?EIO=4&transport=polling", nil)
	req.Header.Set("Origin", "https://ui.example.org")
	req.Header.Set("Authorization", "Bearer "+userToken(t, 1, 1, []int64{1}, "global", time.Hour))
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 || r2.Header.Get("Access-Control-Allow-Origin") != "https://ui.example.org" || r2.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("polling open: %d %v", r2.StatusCode, r2.Header)
	}
	// And socket.io-client with extraHeaders and an Origin connects through it.
	ui := startUI(t, s, "ui", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour), transports: "polling"})
	ui.waitEvent("message", wait)
}

// TestDrain: on shutdown the instance reports not ready, disconnects its
// clients and stops serving.
func TestDrain(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.ShutdownDelay = 300 * time.Millisecond
		c.DrainTimeout = 300 * time.Millisecond
	})
	var cs []*client
	for i := int64(1); i <= 3; i++ {
		c := startPyNode(t, s, fmt.Sprint("n", i), clientOpts{token: nodeToken(t, i, 1, i, time.Hour), transports: "websocket"})
		c.waitEvent("sync", wait)
		cs = append(cs, c)
	}
	if got := s.metric(`eventserver_connections{client_type="node",transport="websocket"}`); got != 3 {
		t.Errorf("connections gauge %v, want 3", got)
	}
	done := make(chan error, 1)
	go func() { done <- s.app.Shutdown(t.Context()) }()
	testwait.For(t, wait, func() error {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return nil // already closed
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d during shutdown", resp.StatusCode)
		}
		return nil
	})
	for _, c := range cs {
		c.waitType("disconnect", wait)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}
