package loadgen

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/app"
	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/pkg/redistest"
)

const secret = "loadgen-test-secret"

// startApp runs an eventserver in cluster mode on r, on a free port.
func startApp(t testing.TB, r *redistest.Server) string {
	_, url := startAppWith(t, r)
	return url
}

func startAppWith(t testing.TB, r *redistest.Server) (*app.App, string) {
	t.Helper()
	env := map[string]string{
		"EVENTSERVER_LISTEN":         "127.0.0.1:0",
		"EVENTSERVER_JWT_SECRET":     secret,
		"EVENTSERVER_REDIS_URL":      r.URL(),
		"EVENTSERVER_LOG_LEVEL":      "warn",
		"EVENTSERVER_SHUTDOWN_DELAY": "0s",
		"EVENTSERVER_DRAIN_TIMEOUT":  "0s",
	}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
		<-done
	})
	return a, "http://" + a.Addr().String()
}

func userToken(t testing.TB, key string) func(int) string {
	return func(i int) string {
		tok, err := auth.Mint([]byte(key), map[string]any{
			"client_type": "user", "sub": i + 1, "name": "u", "organization_id": 1,
			"collaboration_ids": []int64{1}, "event_scope": "collaboration",
		}, time.Hour, time.Time{})
		if err != nil {
			t.Error(err)
		}
		return tok
	}
}

// TestRun: against a real eventserver in cluster mode, every event reaches
// every client once and the figures are filled in.
func TestRun(t *testing.T) {
	r := redistest.Start(t)
	url := startApp(t, r)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()

	res, err := Run(context.Background(), Config{
		URL: url, Room: "collaboration_1", Clients: 20, Events: 50, Rate: 500, Payload: 64,
		Token: userToken(t, secret), Redis: rdb, Prefix: "socket.io", Settle: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Expected != 1000 || res.Delivered != res.Expected || res.Duplicates != 0 {
		t.Fatalf("delivered %d of %d, %d duplicates", res.Delivered, res.Expected, res.Duplicates)
	}
	if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max || res.Throughput <= 0 || res.ConnectTime <= 0 {
		t.Errorf("figures: %+v", res)
	}
}

// TestRunFailsWhenNothingArrives: clients with a wrong token are connected
// but in no room; the run says so instead of reporting figures.
func TestRunFailsWhenNothingArrives(t *testing.T) {
	r := redistest.Start(t)
	url := startApp(t, r)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	_, err := Run(context.Background(), Config{
		URL: url, Room: "collaboration_1", Clients: 5, Events: 10,
		Token: userToken(t, "another-secret"), Redis: rdb, ConnectTimeout: 2 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "only 0 of 5 clients") {
		t.Fatalf("err %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, cfg := range []Config{
		{Room: "r", Redis: rdb},
		{URL: "http://x", Room: "r"},
		{URL: "http://x", Redis: rdb},
		{URL: "ftp://x", Room: "r", Redis: rdb},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) accepted", cfg)
		}
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]time.Duration{0.5: 5, 0.9: 9, 0.99: 10, 1: 10, 0: 1} {
		if got := quantile(d, q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("empty")
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
