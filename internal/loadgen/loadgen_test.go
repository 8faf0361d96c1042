package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/app"
	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/rooms"
)

const (
	secret       = "loadgen-test-secret"
	publishToken = "loadgen-publish-token"
)

// startApp runs an eventserver on a free port: in cluster mode on r when r
// is not nil, with a 200 ms ping interval and the publish API on.
func startApp(t testing.TB, r *redistest.Server) (*app.App, string) {
	t.Helper()
	env := map[string]string{
		"EVENTSERVER_LISTEN":         "127.0.0.1:0",
		"EVENTSERVER_JWT_SECRET":     secret,
		"EVENTSERVER_PUBLISH_TOKEN":  publishToken,
		"EVENTSERVER_PING_INTERVAL":  "200ms",
		"EVENTSERVER_PING_TIMEOUT":   "5s",
		"EVENTSERVER_LOG_LEVEL":      "warn",
		"EVENTSERVER_SHUTDOWN_DELAY": "0s",
		"EVENTSERVER_DRAIN_TIMEOUT":  "0s",
	}
	if r != nil {
		env["EVENTSERVER_REDIS_URL"] = r.URL()
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

// userToken mints user tokens of collaboration 1 with key.
func userToken(t testing.TB, key string) func(int) string {
	return func(i int) string { return roomToken(t, key)(i, "collaboration_1") }
}

// roomToken mints user tokens for the collaboration of a room.
func roomToken(t testing.TB, key string) func(int, string) string {
	return func(i int, room string) string {
		var cid int64
		if _, err := fmt.Sscanf(room, "collaboration_%d", &cid); err != nil {
			t.Error(err)
		}
		tok, err := auth.Mint([]byte(key), identity.Claims(&identity.Identity{Kind: rooms.KindUser,
			ID: auth.NumericSubject(int64(i + 1)), Name: "u", OrganizationID: 1, CollaborationIDs: []int64{cid},
			Scope: rooms.ScopeCollaboration}), time.Hour, time.Time{})
		if err != nil {
			t.Error(err)
		}
		return tok
	}
}

// TestFanout: two eventservers of a cluster, clients in three rooms spread
// over both, events published over HTTP round-robin: every event reaches
// every member of its room once, and the figures are filled in.
func TestFanout(t *testing.T) {
	r := redistest.Start(t)
	_, url1 := startApp(t, r)
	_, url2 := startApp(t, r)
	res, err := Fanout(context.Background(), FanoutConfig{
		URLs: []string{url1, url2}, PublishToken: publishToken, Clients: 12, Rooms: 3,
		Token: roomToken(t, secret), Rates: []int{50, 100}, Step: 200 * time.Millisecond, Payload: 64,
		Publishers: 4, PIDs: []int{os.Getpid()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Duplicates != 0 || res.Servers != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, s := range res.Steps {
		// 12 clients in 3 rooms: every event has 4 members.
		if s.Expected != int64(s.Events)*4 || s.Delivered != s.Expected || s.Complete != 1 || s.PublishErrors != 0 {
			t.Errorf("step %+v", s)
		}
		l := s.Latency
		if l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max || s.DeliveriesPerSecond <= 0 {
			t.Errorf("figures %+v", s)
		}
	}
	if res.Steps[0].Events != 10 || res.Steps[1].Events != 20 {
		t.Errorf("events per step: %d, %d", res.Steps[0].Events, res.Steps[1].Events)
	}
}

// TestLayoutSpread: with a spread, each room's members are on exactly that
// many processes, and the processes share the clients; without one,
// every room is on every process. (When Rooms is not a multiple of the
// processes, some have one room's members more.)
func TestLayoutSpread(t *testing.T) {
	for _, tc := range []struct{ servers, rooms, spread, clients, want int }{
		{12, 40, 3, 1200, 3}, {4, 10, 1, 100, 1}, {5, 7, 0, 350, 5},
	} {
		roomOf, serverOf := layout(tc.servers, tc.rooms, tc.spread)
		on := map[int]map[int]bool{}
		per := map[int]int{}
		for i := 0; i < tc.clients; i++ {
			srv := i % tc.servers
			if serverOf != nil {
				srv = serverOf(i)
			}
			if on[roomOf(i)] == nil {
				on[roomOf(i)] = map[int]bool{}
			}
			on[roomOf(i)][srv] = true
			per[srv]++
		}
		if len(on) != tc.rooms {
			t.Errorf("%+v: %d rooms used", tc, len(on))
		}
		for r, s := range on {
			if len(s) != tc.want {
				t.Errorf("%+v: room %d on %d processes, want %d", tc, r, len(s), tc.want)
			}
		}
		lo, hi := tc.clients, 0
		for _, n := range per {
			lo, hi = min(lo, n), max(hi, n)
		}
		if len(per) != tc.servers || hi-lo > tc.clients/tc.rooms {
			t.Errorf("%+v: %d processes with %d to %d clients, want %d within one room's members", tc, len(per), lo, hi, tc.servers)
		}
	}
}

// TestFanoutSpreadAndRedisCPU: rooms on one process each of a cluster of
// two, events published to either: every member still gets every event once,
// and the CPU of the extra processes is reported per step.
func TestFanoutSpreadAndRedisCPU(t *testing.T) {
	r := redistest.Start(t)
	_, url1 := startApp(t, r)
	_, url2 := startApp(t, r)
	res, err := Fanout(context.Background(), FanoutConfig{
		URLs: []string{url1, url2}, PublishToken: publishToken, Clients: 12, Rooms: 4, Spread: 1,
		Token: roomToken(t, secret), Rates: []int{50}, Step: 200 * time.Millisecond, Payload: 16,
		Publishers: 4, PIDs: []int{os.Getpid()}, RedisPIDs: []int{os.Getpid(), os.Getpid()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Spread != 1 || len(res.Steps) != 1 || res.Duplicates != 0 {
		t.Fatalf("result %+v", res)
	}
	s := res.Steps[0]
	if s.Expected != int64(s.Events)*3 || s.Delivered != s.Expected || len(s.RedisCPUSeconds) != 2 || s.Seconds <= 0 {
		t.Errorf("step %+v", s)
	}
}

// TestFanoutFailsWithTheWrongPublishToken: the publish API refuses, and the
// run says so instead of reporting figures.
func TestFanoutFailsWithTheWrongPublishToken(t *testing.T) {
	_, url := startApp(t, nil)
	_, err := Fanout(context.Background(), FanoutConfig{
		URLs: []string{url}, PublishToken: "wrong-token-wrong-token", Clients: 2, Rooms: 1,
		Token: roomToken(t, secret), Rates: []int{10}, Step: 100 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err %v", err)
	}
}

// TestIdle: clients from two loopback source addresses stay connected
// through ping cycles; memory and goroutines are read.
func TestIdle(t *testing.T) {
	_, url := startApp(t, nil)
	res, err := Idle(context.Background(), IdleConfig{
		Target:  Target{URL: url, Token: userToken(t, secret), Sources: []string{"127.0.0.2", "127.0.0.3"}, PID: os.Getpid()},
		Clients: 20, InFlight: 5, Wait: 600 * time.Millisecond, MetricsURL: url + "/metrics",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 20 || res.Alive != 20 || res.Error != "" {
		t.Fatalf("result %+v", res)
	}
	// Memory and goroutines were read (the server's goroutines from its
	// /metrics; here the clients share its process, so no count per
	// connection can be told apart: the lean core has none).
	if res.RSSAfterKiB <= 0 || res.LoadgenRSSKiB <= 0 || res.GoroutinesBefore <= 0 || res.GoroutinesAfter <= 0 || res.MetricsError != "" {
		t.Errorf("figures %+v", res)
	}
}

// TestConnects: every connect is timed; failed connects (nothing listens)
// are counted and explained rather than fatal.
func TestConnects(t *testing.T) {
	_, url := startApp(t, nil)
	res, err := Connects(context.Background(), ConnectsConfig{
		Target:  Target{URL: url, Token: userToken(t, secret), PID: os.Getpid()},
		Clients: 30, InFlight: 5, Warmup: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 30 || res.Failed != 0 || res.PerSecond <= 0 || res.Latency.P50 <= 0 || res.Latency.P99 > res.Latency.Max {
		t.Fatalf("result %+v", res)
	}

	res, err = Connects(context.Background(), ConnectsConfig{
		Target:  Target{URL: "http://127.0.0.1:1", Token: userToken(t, secret)},
		Clients: 4, Warmup: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 0 || res.Failed != 4 || !strings.Contains(res.Error, "refused") {
		t.Fatalf("result %+v", res)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Idle(ctx, IdleConfig{}); err == nil {
		t.Error("Idle without a URL")
	}
	if _, err := Connects(ctx, ConnectsConfig{Target: Target{URL: "ftp://x"}}); err == nil {
		t.Error("Connects with an ftp URL")
	}
	if _, err := Idle(ctx, IdleConfig{Target: Target{URL: "http://x", Sources: []string{"10.0.0.1"}}}); err == nil {
		t.Error("a source address that is not loopback")
	}
	if _, err := Fanout(ctx, FanoutConfig{}); err == nil {
		t.Error("Fanout without URLs")
	}
	if _, err := Fanout(ctx, FanoutConfig{URLs: []string{"http://x"}, Rates: []int{0}}); err == nil {
		t.Error("a zero rate")
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
	got := latencyOf([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond})
	if got != (Latency{P50: 2, P90: 3, P99: 3, Max: 3}) {
		t.Errorf("latencyOf = %+v", got)
	}
}

// TestRecorder: arrivals count in their step; a step out of range is
// ignored.
func TestRecorder(t *testing.T) {
	r := newRecorder(2)
	t0 := time.Now()
	r.add(0, time.Millisecond, t0)
	r.add(1, 2*time.Millisecond, t0.Add(time.Second))
	r.add(1, 3*time.Millisecond, t0.Add(500*time.Millisecond))
	r.add(2, time.Millisecond, t0)
	n, lat, last := r.step(1)
	if n != 2 || len(lat) != 2 || !last.Equal(t0.Add(time.Second)) || r.delivered.Load() != 3 {
		t.Errorf("step 1: %d %v %v, delivered %d", n, lat, last, r.delivered.Load())
	}
}

func TestProc(t *testing.T) {
	if v, err := rssKiB(0); err != nil || v <= 0 {
		t.Errorf("rssKiB(self) = %d, %v", v, err)
	}
	if _, err := cpuSeconds(0, os.Getpid()); err != nil {
		t.Errorf("cpuSeconds: %v", err)
	}
	if _, err := rssKiB(-5); err == nil {
		t.Error("rssKiB of no process")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 100012\ngo_threads 9\n")
	}))
	defer srv.Close()
	if n, err := goroutines(context.Background(), srv.URL); err != nil || n != 100012 {
		t.Errorf("goroutines = %d, %v", n, err)
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
