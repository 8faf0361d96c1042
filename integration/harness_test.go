// Package integration runs the real server and real clients: python-socketio
// (what vantage6 nodes use), the Node socket.io-client (what the UI uses) and
// the Go client.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/internal/app"
	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

const (
	testSecret       = "test-secret-not-for-production"
	testPublishToken = "publish-token-0123456789"
)

// server is one in-process eventserver on a random port.
type server struct {
	t    testing.TB
	app  *app.App
	URL  string
	cfg  *config.Config
	logs *observer.ObservedLogs
}

// logText renders every log entry the server wrote, with its fields.
func (s *server) logText() string {
	var b strings.Builder
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, e := range s.logs.All() {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err == nil {
			b.Write(buf.Bytes())
			buf.Free()
		}
	}
	return b.String()
}

// startServer starts a server; mutate adjusts the configuration first.
func startServer(t testing.TB, mutate func(*config.Config)) *server {
	t.Helper()
	env := map[string]string{
		"EVENTSERVER_LISTEN":         "127.0.0.1:0",
		"EVENTSERVER_JWT_SECRET":     testSecret,
		"EVENTSERVER_PUBLISH_TOKEN":  testPublishToken,
		"EVENTSERVER_AUTH_GRACE":     "700ms",
		"EVENTSERVER_SHUTDOWN_DELAY": "0s",
		"EVENTSERVER_DRAIN_TIMEOUT":  "200ms",
		"EVENTSERVER_PING_INTERVAL":  "1s",
		"EVENTSERVER_PING_TIMEOUT":   "2s",
		"EVENTSERVER_INSTANCE_ID":    "test",
		"EVENTSERVER_PRESENCE_GRACE": "300ms",
	}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	// Every entry is kept (to check what reaches the logs); with
	// EVENTSERVER_TEST_LOGS set they are also printed.
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	if os.Getenv("EVENTSERVER_TEST_LOGS") != "" {
		log = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	}
	a, err := app.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run() }()
	s := &server{t: t, app: a, URL: "http://" + a.Addr().String(), cfg: cfg, logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitReadyz(t, s.URL, http.StatusOK)
	return s
}

// waitReadyz waits until GET /readyz answers status.
func waitReadyz(t testing.TB, base string, status int) {
	t.Helper()
	testwait.For(t, wait, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			return fmt.Errorf("readyz: %d, want %d", resp.StatusCode, status)
		}
		return nil
	})
}

// nodeToken mints a vantage6-style node token (numeric sub).
func nodeToken(t testing.TB, id, collab, org int64, ttl time.Duration) string {
	t.Helper()
	claims := identity.Claims(&identity.Identity{Kind: rooms.KindNode, ID: auth.NumericSubject(id),
		Name: fmt.Sprintf("org%d-node%d", org, id), OrganizationID: org, CollaborationIDs: []int64{collab}})
	claims["roles"] = []string{}
	tok, err := auth.Mint([]byte(testSecret), claims, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// mintAt mints a one-hour token as if at now.
func mintAt(t testing.TB, now time.Time, claims map[string]any) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testSecret), claims, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// userToken mints a user token; scope "" means no event rule.
func userToken(t testing.TB, id, org int64, collabs []int64, scope string, ttl time.Duration) string {
	t.Helper()
	claims := identity.Claims(&identity.Identity{Kind: rooms.KindUser, ID: auth.NumericSubject(id),
		Name: fmt.Sprintf("user%d", id), OrganizationID: org, CollaborationIDs: collabs, Scope: rooms.Scope(scope)})
	claims["roles"] = []string{"Viewer"}
	tok, err := auth.Mint([]byte(testSecret), claims, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// publish calls POST /api/v1/emit and returns the status and body.
func (s *server) publish(body string) (int, string) {
	s.t.Helper()
	return s.do("POST", "/api/v1/emit", testPublishToken, body)
}

func (s *server) do(method, path, token, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *server) mustPublish(body string) {
	s.t.Helper()
	if code, resp := s.publish(body); code != http.StatusAccepted {
		s.t.Fatalf("publish %s: %d %s", body, code, resp)
	}
}

// metric returns the value of one sample of /metrics, or 0.
func (s *server) metric(name string) float64 {
	s.t.Helper()
	return metricAt(s.t, s.URL, name)
}

// metricAt returns the value of one sample (name with its labels, as
// written: eventserver_x{reason="y"}) of base's /metrics, or 0.
func metricAt(t testing.TB, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			var v float64
			fmt.Sscanf(strings.TrimPrefix(line, name+" "), "%g", &v)
			return v
		}
	}
	return 0
}

// msg is one line of a client's output (see integration/clients).
type msg struct {
	Type      string            `json:"type"`
	Event     string            `json:"event"`
	Args      []json.RawMessage `json:"args"`
	Sid       string            `json:"sid"`
	Transport string            `json:"transport"`
	Reason    string            `json:"reason"`
	ID        int               `json:"id"`
	Message   string            `json:"message"`
}

// client is a running client whose messages are collected.
type client struct {
	t    testing.TB
	name string

	mu     sync.Mutex
	msgs   []msg
	stdin  io.WriteCloser
	emitFn func(event string, ack int, args ...any)
	sendFn func(cmd any)
	stop   func()
}

func (c *client) add(m msg) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

func (c *client) snapshot() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]msg(nil), c.msgs...)
}

// wait returns the first message that matches, waiting up to timeout.
func (c *client) wait(timeout time.Duration, what string, match func(msg) bool) msg {
	c.t.Helper()
	var found msg
	testwait.For(c.t, timeout, func() error {
		for _, m := range c.snapshot() {
			if match(m) {
				found = m
				return nil
			}
		}
		return fmt.Errorf("%s: no %s; got %s", c.name, what, c.describe())
	})
	return found
}

func (c *client) describe() string {
	var parts []string
	for _, m := range c.snapshot() {
		if m.Type == "event" {
			parts = append(parts, m.Event)
		} else {
			parts = append(parts, "<"+m.Type+">")
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func (c *client) waitEvent(event string, timeout time.Duration) msg {
	c.t.Helper()
	return c.wait(timeout, "event "+event, func(m msg) bool { return m.Type == "event" && m.Event == event })
}

func (c *client) waitType(typ string, timeout time.Duration) msg {
	c.t.Helper()
	return c.wait(timeout, typ, func(m msg) bool { return m.Type == typ })
}

// events returns the received events named event.
func (c *client) events(event string) []msg {
	var out []msg
	for _, m := range c.snapshot() {
		if m.Type == "event" && m.Event == event {
			out = append(out, m)
		}
	}
	return out
}

// eventNames lists every event received, in order.
func (c *client) eventNames() []string {
	var out []string
	for _, m := range c.snapshot() {
		if m.Type == "event" {
			out = append(out, m.Event)
		}
	}
	return out
}

// emit sends an event; with ack > 0 the answer arrives as an "ack" message with that id.
func (c *client) emit(event string, ack int, args ...any) {
	c.t.Helper()
	c.emitFn(event, ack, args...)
}

func (c *client) disconnect() { c.stop() }

// reconnect asks a running client to connect again, to the same server
// (after a disconnect command, or when the server closed it).
func (c *client) reconnect() { c.sendFn(map[string]any{"cmd": "connect"}) }

// leave asks a running client to disconnect and stay running, so that a
// later reconnect is quick (a new python process takes seconds on a loaded
// machine).
func (c *client) leave() { c.sendFn(map[string]any{"cmd": "disconnect"}) }

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// need skips a test that lacks a real client, except in CI where it fails.
func need(t testing.TB, ok bool, what string) {
	t.Helper()
	testenv.Need(t, ok, what)
}

type clientOpts struct {
	authMode   string // header (default), auth, none
	transports string // "polling,websocket" (default), "websocket", "polling"
	token      string
	// reconnect keeps socket.io-client's automatic reconnection on, as the
	// vantage6 UI has it (it still never reconnects after a server
	// disconnect); python nodes always run without it.
	reconnect bool
	// namespace is the UI's namespace; empty: /tasks.
	namespace string
	// v6Handlers gives the python node zero-argument handlers of sync,
	// expired_token and invalid_token, as the vantage6 node has.
	v6Handlers bool
}

// startProcClient runs a scripted client (python or node) and collects its lines.
func startProcClient(t testing.TB, name string, cmd *exec.Cmd) *client {
	t.Helper()
	c := &client{t: t, name: name}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	c.stdin, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			var m msg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				continue
			}
			c.add(m)
		}
	}()
	var enc sync.Mutex
	send := func(v any) {
		b, _ := json.Marshal(v)
		enc.Lock()
		defer enc.Unlock()
		_, _ = c.stdin.Write(append(b, '\n'))
	}
	c.sendFn = send
	c.emitFn = func(event string, ack int, args ...any) {
		if args == nil {
			args = []any{}
		}
		cmd := map[string]any{"cmd": "emit", "event": event, "args": args}
		if ack > 0 {
			cmd["ack"] = ack
		}
		send(cmd)
	}
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			send(map[string]any{"cmd": "disconnect"})
			_ = c.stdin.Close()
			waitOrKill(cmd)
			<-readDone
			if t.Failed() && stderr.Len() > 0 {
				t.Logf("%s stderr:\n%s", name, stderr.String())
			}
		})
	}
	t.Cleanup(c.stop)
	return c
}

// waitOrKill waits for a client process whose stdin was closed to exit,
// and kills it after 10 s.
func waitOrKill(cmd *exec.Cmd) {
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

const python = "/usr/bin/python3"

// startPyNode starts the python-socketio client, as a vantage6 node does.
func startPyNode(t testing.TB, s *server, name string, o clientOpts) *client {
	t.Helper()
	_, err := os.Stat(python)
	ok := err == nil && exec.Command(python, "-c", "import socketio, requests, websocket").Run() == nil
	need(t, ok, "python3-socketio (with python3-requests, python3-websocket) under "+python)
	args := []string{filepath.Join(repoRoot(t), "integration", "clients", "v6node.py"), "--url", s.URL, "--no-reconnect"}
	if o.v6Handlers {
		args = append(args, "--v6-handlers")
	}
	args = append(args, o.args()...)
	return startProcClient(t, name, exec.Command(python, args...))
}

// startUI starts the Node socket.io-client, as the vantage6 UI does.
func startUI(t testing.TB, s *server, name string, o clientOpts) *client {
	t.Helper()
	root := repoRoot(t)
	_, err := exec.LookPath("node")
	_, err2 := os.Stat(filepath.Join(root, "node_modules", "socket.io-client"))
	need(t, err == nil && err2 == nil, "node and node_modules/socket.io-client (npm ci)")
	args := []string{filepath.Join(root, "integration", "clients", "ui.js"), "--url", s.URL}
	if !o.reconnect {
		args = append(args, "--no-reconnect")
	}
	if o.namespace != "" {
		args = append(args, "--namespace", o.namespace)
	}
	args = append(args, o.args()...)
	return startProcClient(t, name, exec.Command("node", args...))
}

func (o clientOpts) args() []string {
	var a []string
	if o.token != "" {
		a = append(a, "--token", o.token)
	}
	if o.authMode != "" {
		a = append(a, "--auth-mode", o.authMode)
	}
	if o.transports != "" {
		a = append(a, "--transports", o.transports)
	}
	return a
}

// jsonEq compares a raw JSON value with the JSON of want.
func jsonEq(t testing.TB, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got %s, want %s", gb, wb)
	}
}
