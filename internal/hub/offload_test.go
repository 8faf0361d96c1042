package hub

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/socketio"
)

const offloadSecret = "hub-offload-secret"

// blockingResolver resolves every token to one user, once released; it
// tells entered when a resolution starts and honours ctx.
type blockingResolver struct {
	entered chan struct{}
	release chan struct{}
}

func (r *blockingResolver) Resolve(ctx context.Context, _ string, _ *auth.Claims) (*identity.Identity, error) {
	r.entered <- struct{}{}
	select {
	case <-r.release:
		return &identity.Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7"}, Name: "u7",
			OrganizationID: 2, CollaborationIDs: []int64{1}, Scope: rooms.ScopeCollaboration}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// offloadServer is a Socket.IO server with a hub on resolver, over HTTP.
func offloadServer(t *testing.T, res identity.Resolver) (*Hub, *socketio.Server, string) {
	t.Helper()
	return hubServer(t, Config{Resolver: res})
}

// hubServer runs a hub of cfg (with a Socket.IO server, an HS256 verifier
// of offloadSecret, and no logs unless cfg has a logger)
// over HTTP, and returns the polling URL of its Socket.IO endpoint.
func hubServer(t *testing.T, cfg Config) (*Hub, *socketio.Server, string) {
	t.Helper()
	if cfg.Verifier == nil {
		verifier, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(offloadSecret)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Verifier = verifier
	}
	srv, err := socketio.NewServer(socketio.Config{Engine: engineio.Config{KeepHeaders: []string{"Authorization"}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server = srv
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		ts.Close()
		_ = h.Shutdown(ctx)
		_ = h.Presence().Shutdown(ctx)
	})
	return h, srv, ts.URL + "/socket.io/?EIO=4&transport=polling"
}

func userTok(t *testing.T) string {
	t.Helper()
	tok, err := auth.Mint([]byte(offloadSecret), map[string]any{"sub": 7, "client_type": "user"}, time.Hour, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var httpc = &http.Client{Timeout: 5 * time.Second}

// noLeaks checks, after every other cleanup of t, that no goroutine started
// by the test is left.
func noLeaks(t *testing.T) {
	t.Helper()
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		httpc.CloseIdleConnections()
		goleak.VerifyNone(t, current)
	})
}

// handshake opens a polling session and returns its URL with the sid.
func handshake(t *testing.T, base string) string {
	t.Helper()
	resp, err := httpc.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var open struct {
		SID string `json:"sid"`
	}
	if len(b) < 2 || b[0] != '0' || json.Unmarshal(b[1:], &open) != nil || open.SID == "" {
		t.Fatalf("handshake: %q", b)
	}
	return base + "&sid=" + open.SID
}

// post sends one Engine.IO message and returns how long the request took.
func post(t *testing.T, u, body string) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := httpc.Post(u, "text/plain;charset=UTF-8", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %q: %d", body, resp.StatusCode)
	}
	return time.Since(start)
}

// poll returns the next polling payload.
func poll(t *testing.T, u string) string {
	t.Helper()
	resp, err := httpc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: timed out", what)
	}
}

// TestAuthOffConnection: the identity resolution (which may call the
// vantage6 API) does not hold the request that carried the CONNECT; the
// CONNECT ack follows once it ends, and the socket joins its rooms.
func TestAuthOffConnection(t *testing.T) {
	noLeaks(t)
	res := &blockingResolver{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, _, base := offloadServer(t, res)
	u := handshake(t, base)
	took := post(t, u, `40/tasks,{"token":"`+userTok(t)+`"}`)
	waitSignal(t, res.entered, "resolution start")
	if took > 2*time.Second {
		t.Errorf("the CONNECT's POST took %s: it waited for the resolution", took)
	}
	if n := h.Connections(); n != 0 {
		t.Errorf("%d sessions before the resolution ended, want 0", n)
	}
	close(res.release)
	got := poll(t, u)
	if !strings.HasPrefix(got, `40/tasks,{"sid":"`) {
		t.Fatalf("first packet after the resolution: %q, want the CONNECT ack", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.Connections() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions: %d, want 1", h.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
	list, err := h.FetchSockets(context.Background(), []string{"collaboration_1"})
	if err != nil || len(list) != 1 {
		t.Fatalf("sockets in collaboration_1: %v, %v", list, err)
	}
}

// TestShutdownCancelsAuth: Shutdown cancels a resolution in flight and
// returns, with no goroutine left.
func TestShutdownCancelsAuth(t *testing.T) {
	noLeaks(t)
	res := &blockingResolver{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, srv, base := offloadServer(t, res)
	u := handshake(t, base)
	post(t, u, `40/tasks,{"token":"`+userTok(t)+`"}`)
	waitSignal(t, res.entered, "resolution start")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("hub Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hub Shutdown took %s", d)
	}
	// Nothing new starts once shut down.
	if err := h.startAuth(); err == nil {
		t.Error("startAuth after Shutdown: nil error")
	} else {
		var ce *socketio.ConnectError
		if !errors.As(err, &ce) {
			t.Errorf("startAuth after Shutdown: %v, want a ConnectError", err)
		}
	}
}

// TestPendingAuthBound: over MaxPendingAuth, a CONNECT gets CONNECT_ERROR
// "server busy" rather than another goroutine.
func TestPendingAuthBound(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &Hub{cfg: Config{MaxPendingAuth: 2}, m: m}
	for i := range 2 {
		if err := h.startAuth(); err != nil {
			t.Fatalf("startAuth %d: %v", i, err)
		}
	}
	err = h.startAuth()
	if err == nil || err.Error() != "server busy" {
		t.Fatalf("third startAuth: %v, want server busy", err)
	}
	h.endAuth()
	if err := h.startAuth(); err != nil {
		t.Fatalf("startAuth after one ended: %v", err)
	}
	h.endAuth()
	h.endAuth()
}
