package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/pkg/redistest"
)

func testConfig(t *testing.T, extra map[string]string) *config.Config {
	t.Helper()
	env := map[string]string{
		"EVENTSERVER_LISTEN":         "127.0.0.1:0",
		"EVENTSERVER_JWT_SECRET":     "app-test-secret",
		"EVENTSERVER_SHUTDOWN_DELAY": "300ms",
		"EVENTSERVER_DRAIN_TIMEOUT":  "100ms",
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// get returns the status and body of GET url, without keeping connections.
func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestServeAndShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	cfg := testConfig(t, nil)
	a, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	base := "http://" + a.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()

	runErr := make(chan error, 1)
	go func() { runErr <- a.Run() }()

	// Run marks the instance ready just after it starts serving.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, err := get(client, base+"/readyz")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never became 200: %d, %v", code, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	tests := []struct {
		path     string
		wantCode int
		wantBody []string
	}{
		{"/healthz", http.StatusOK, []string{"ok"}},
		{"/readyz", http.StatusOK, []string{"ready"}},
		// Series without labels are always there; see
		// TestMetricsListConnectionsWhenIdle for the labelled ones.
		{"/metrics", http.StatusOK, []string{"eventserver_presence_online_nodes 0", "go_goroutines", "process_"}},
		// The publish API is off without EVENTSERVER_PUBLISH_TOKEN.
		{"/api/v1/nodes", http.StatusNotFound, []string{"EVENTSERVER_PUBLISH_TOKEN"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body, err := get(client, base+tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("GET %s = %d, want %d: %s", tt.path, code, tt.wantCode, body)
			}
			for _, w := range tt.wantBody {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s body does not contain %q", tt.path, w)
				}
			}
		})
	}

	shutErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutErr <- a.Shutdown(ctx)
	}()

	// During the shutdown delay the instance still serves but is not ready.
	sawNotReady := false
	for !sawNotReady {
		code, _, err := get(client, base+"/readyz")
		if err != nil {
			break // already closed
		}
		if code == http.StatusServiceUnavailable {
			sawNotReady = true
			if hc, _, err := get(client, base+"/healthz"); err != nil || hc != http.StatusOK {
				t.Errorf("/healthz during the shutdown delay = %d, %v; want 200", hc, err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawNotReady {
		t.Error("/readyz never answered 503 during the shutdown delay")
	}

	select {
	case err := <-shutErr:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run returned %v, want nil after Shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Shutdown")
	}

	// After Shutdown the listener is closed.
	if code, _, err := get(client, base+"/readyz"); err == nil {
		t.Errorf("GET /readyz after Shutdown = %d, want a connection error", code)
	}
	// Shutdown is idempotent.
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	client.CloseIdleConnections()
}

// TestMetricsListConnectionsWhenIdle checks that an idle instance already
// exports eventserver_connections (as 0), so that dashboards and alerts see
// zero rather than no data.
func TestMetricsListConnectionsWhenIdle(t *testing.T) {
	a, err := New(testConfig(t, map[string]string{"EVENTSERVER_SHUTDOWN_DELAY": "0s"}), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer serve(t, a)()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	code, body, err := get(client, "http://"+a.Addr().String()+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", code, err)
	}
	for _, w := range []string{"eventserver_connections"} {
		if !strings.Contains(body, w) {
			t.Errorf("GET /metrics on an idle instance does not contain %q", w)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"no key", map[string]string{"EVENTSERVER_JWT_SECRET": ""}, "EVENTSERVER_JWT_SECRET"},
		{"port in use", nil, "EVENTSERVER_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, tt.env)
			if tt.name == "port in use" {
				first, err := New(testConfig(t, nil), zap.NewNop())
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = first.Shutdown(context.Background()) }()
				cfg.Listen = first.Addr().String()
			}
			a, err := New(cfg, zap.NewNop())
			if err == nil {
				a.ln.Close()
				t.Fatal("New: want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %s", err, tt.wantErr)
			}
		})
	}
}

func TestShutdownBeforeRunIsNotAnError(t *testing.T) {
	a, err := New(testConfig(t, map[string]string{"EVENTSERVER_SHUTDOWN_DELAY": "0s"}), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.ln.Close()
	if err := a.Shutdown(context.Background()); err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Shutdown before Run: %v", err)
	}
}

// TestConnectTimeout: an Engine.IO session that joins no namespace within
// EVENTSERVER_CONNECT_TIMEOUT is closed, and the engine's hooks reach
// /metrics.
func TestConnectTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, err := New(testConfig(t, map[string]string{"EVENTSERVER_SHUTDOWN_DELAY": "0s", "EVENTSERVER_CONNECT_TIMEOUT": "200ms"}), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, a)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer func() {
		stop()
		client.CloseIdleConnections()
	}()
	base := "http://" + a.Addr().String()
	code, body, err := get(client, base+"/socket.io/?EIO=4&transport=polling")
	if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "0{") {
		t.Fatalf("handshake: %d %q %v", code, body, err)
	}
	const closed = `eventserver_engineio_sessions_closed_total{reason="connect timeout"} 1`
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, m, err := get(client, base+"/metrics")
		if err == nil && strings.Contains(m, closed) {
			if !strings.Contains(m, `eventserver_engineio_sessions_opened_total{transport="polling"} 1`) {
				t.Error("/metrics does not count the session opened")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %s", closed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadyzQueueBridge: /readyz counts the Flask-SocketIO queue among the
// subscriptions the instance depends on: 503, with the reason, while the
// queue's Redis cannot be reached; 200 once subscribed.
func TestReadyzQueueBridge(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	r := redistest.Start(t)
	for _, tc := range []struct {
		name, url string
		code      int
		body      string
	}{
		{"unreachable", "redis://127.0.0.1:1", http.StatusServiceUnavailable, "not ready: Flask-SocketIO queue not subscribed\n"},
		{"subscribed", r.URL(), http.StatusOK, "ready\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(testConfig(t, map[string]string{
				"EVENTSERVER_SHUTDOWN_DELAY":   "0s",
				"EVENTSERVER_V6_QUEUE_CHANNEL": "flask-socketio",
				"EVENTSERVER_V6_QUEUE_URL":     tc.url,
			}), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer serve(t, a)()
			url := "http://" + a.Addr().String() + "/readyz"
			var code int
			var body string
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if code, body, err = get(client, url); err == nil && code == tc.code && body == tc.body {
					return
				}
			}
			t.Errorf("GET /readyz = %d %q, %v; want %d %q", code, body, err, tc.code, tc.body)
		})
	}
}

// serve runs a.Run on a goroutine and returns what stops it: Shutdown, then
// the end of Run, each error failing t.
func serve(t *testing.T, a *App) (stop func()) {
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run() }()
	return func() {
		t.Helper()
		if err := a.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}
