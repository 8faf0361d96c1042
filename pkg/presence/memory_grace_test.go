package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/pkg/testsupport/testmetrics"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

func TestMemoryConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     MemoryConfig
		wantErr string
	}{
		{name: "zero is the defaults"},
		{name: "no grace", cfg: MemoryConfig{Grace: NoGrace}},
		{name: "negative grace", cfg: MemoryConfig{Grace: -time.Second}, wantErr: "presence: Grace"},
		{name: "negative stale", cfg: MemoryConfig{StaleAfter: -time.Second}, wantErr: "presence: StaleAfter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMemoryWithConfig(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				_ = m.Shutdown(context.Background())
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
	m := NewMemory(nil)
	defer m.Shutdown(context.Background())
	if m.cfg.Grace != DefaultGrace || m.cfg.StaleAfter != DefaultStaleAfter {
		t.Errorf("NewMemory: grace %s, stale after %s; want the defaults", m.cfg.Grace, m.cfg.StaleAfter)
	}
}

// TestMemoryGrace: the offline of a node whose last connection went waits
// for the grace, and a reconnect within it cancels it.
func TestMemoryGrace(t *testing.T) {
	const grace = 80 * time.Millisecond
	ctx := context.Background()
	tests := []struct {
		name  string
		steps []op
		// after the steps: reconnect within the grace with this conn id
		reconnect string
		// want lists the transitions, in order: "+3" online, "-3" offline.
		want []string
		// online: the node is online when everything has settled.
		online bool
	}{
		{name: "last disconnect is offline after the grace", steps: []op{connectOp("3", "a"), disconnectOp("3", "a")}, want: []string{"+3", "-3"}},
		{name: "reconnect within the grace reports nothing", steps: []op{connectOp("3", "a"), disconnectOp("3", "a")}, reconnect: "b", want: []string{"+3"}, online: true},
		{name: "same conn id reconnects within the grace", steps: []op{connectOp("3", "a"), disconnectOp("3", "a")}, reconnect: "a", want: []string{"+3"}, online: true},
		{name: "one of two closes: nothing", steps: []op{connectOp("3", "a"), connectOp("3", "b"), disconnectOp("3", "a")}, want: []string{"+3"}, online: true},
		{name: "both close: one offline", steps: []op{connectOp("3", "a"), connectOp("3", "b"), disconnectOp("3", "a"), disconnectOp("3", "b")}, want: []string{"+3", "-3"}},
		{name: "move: new conn before the old closes", steps: []op{connectOp("3", "a"), connectOp("3", "b"), disconnectOp("3", "a")}, want: []string{"+3"}, online: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j journal
			m := newMemoryCfg(t, MemoryConfig{Handler: j.handler("m"), Grace: grace})
			var lastDisconnect time.Time
			for _, o := range tt.steps {
				if o.connect {
					must(t, m.Connect(ctx, conn(o.key, o.id)))
				} else {
					lastDisconnect = time.Now()
					must(t, m.Disconnect(ctx, o.key, o.id))
				}
			}
			if tt.reconnect != "" {
				_ = m.Ping(ctx, "3", time.Unix(1700000100, 0))
				must(t, m.Connect(ctx, conn("3", tt.reconnect)))
			}
			render := func() string {
				var s []string
				for _, e := range j.all() {
					s = append(s, map[bool]string{true: "+", false: "-"}[e.Online]+e.Node.Key)
				}
				return strings.Join(s, " ")
			}
			want := strings.Join(tt.want, " ")
			testwait.Until(t, 10*grace, "transitions "+want, func() bool { return render() == want })
			testwait.Holds(t, 2*grace, "transitions "+want, func() bool { return render() == want })
			if evs := j.all(); !tt.online && len(evs) > 0 && !evs[len(evs)-1].Online {
				if d := evs[len(evs)-1].at.Sub(lastDisconnect); d < grace {
					t.Errorf("offline %s after the last disconnect, before the grace %s", d, grace)
				}
			}
			states, _ := m.Online(ctx)
			if got := len(states) == 1; got != tt.online {
				t.Fatalf("Online() = %+v, want online=%v", states, tt.online)
			}
			if tt.online && tt.reconnect != "" {
				if s := states[0]; s.Connections != 1 || s.LastPing == nil || !s.ConnectedSince.Equal(time.Unix(1700000000, 0)) {
					t.Errorf("after a reconnect within the grace: %+v; want 1 connection, the ping and the first connect time kept", s)
				}
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMemoryPendingIsNotListed: during the grace the node has no live
// connection, so it is not listed, but no offline was reported yet.
func TestMemoryPendingIsNotListed(t *testing.T) {
	ctx := context.Background()
	var j journal
	m := NewMemory(j.handler("m")) // the default grace, 5s
	defer m.Shutdown(ctx)
	must(t, m.Connect(ctx, conn("3", "a")))
	must(t, m.Disconnect(ctx, "3", "a"))
	if states, _ := m.Online(ctx); len(states) != 0 {
		t.Fatalf("Online() during the grace = %+v, want none", states)
	}
	if n := j.len(); n != 1 {
		t.Fatalf("%d transitions, want only the online:\n%s", n, &j)
	}
}

// TestMemoryShutdown: Shutdown stops the grace timers (no offline is
// reported afterwards) and refuses new connections.
func TestMemoryShutdown(t *testing.T) {
	ctx := context.Background()
	var j journal
	m := newMemoryCfg(t, MemoryConfig{Handler: j.handler("m"), Grace: 30 * time.Millisecond})
	must(t, m.Connect(ctx, conn("3", "a")))
	must(t, m.Disconnect(ctx, "3", "a"))
	must(t, m.Shutdown(ctx))
	must(t, m.Shutdown(ctx))
	if err := m.Connect(ctx, conn("4", "b")); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Shutdown = %v, want ErrClosed", err)
	}
	must(t, m.Disconnect(ctx, "3", "a"))
	testwait.Holds(t, 150*time.Millisecond, "no offline after Shutdown", func() bool { return j.len() == 1 })
}

// TestMemoryStale: a connected node that does not ping for StaleAfter is
// reported stale and logged once; a ping ends it.
func TestMemoryStale(t *testing.T) {
	ctx := context.Background()
	core, logs := observer.New(zapcore.InfoLevel)
	const after = 60 * time.Millisecond
	m := newMemoryCfg(t, MemoryConfig{Grace: NoGrace, StaleAfter: after, Logger: zap.New(core)})
	c := conn("3", "a")
	c.Since = time.Now()
	must(t, m.Connect(ctx, c))
	stale := func() bool {
		states, _ := m.Online(ctx)
		return len(states) == 1 && states[0].Stale
	}
	if stale() {
		t.Fatal("stale at once")
	}
	testwait.Until(t, 2*time.Second, "stale", stale)
	testwait.Until(t, 2*time.Second, "the stale log line", func() bool { return logs.FilterMessage("node stale: connected but silent").Len() == 1 })
	testwait.Holds(t, 3*after, "one stale log line", func() bool { return logs.FilterMessage("node stale: connected but silent").Len() == 1 })
	e := logs.FilterMessage("node stale: connected but silent").All()[0]
	if e.ContextMap()["node_id"] != "3" || e.Level != zapcore.WarnLevel {
		t.Errorf("stale log = %+v", e)
	}

	must(t, m.Ping(ctx, "3", time.Now()))
	if stale() {
		t.Error("stale after a ping")
	}
	if n := logs.FilterMessage("node no longer stale").Len(); n != 1 {
		t.Errorf("%d 'no longer stale' lines, want 1", n)
	}
	states, _ := m.Online(ctx)
	if s := states[0]; s.LastPing == nil || !s.LastSeen.Equal(*s.LastPing) {
		t.Errorf("LastSeen %v, want the last ping %v", s.LastSeen, s.LastPing)
	}
	testwait.Until(t, 2*time.Second, "stale again", func() bool { return logs.FilterMessage("node stale: connected but silent").Len() == 2 })

	// Gone: no more stale lines for it.
	must(t, m.Disconnect(ctx, "3", "a"))
	testwait.Holds(t, 3*after, "no stale line for a node that is gone", func() bool {
		return logs.FilterMessage("node stale: connected but silent").Len() == 2
	})
}

// TestMemoryStaleClock: Stale is computed with the configured clock from
// the last ping or, without one, the latest connect.
func TestMemoryStaleClock(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); now = time.Unix(1700000000, 0).Add(d); mu.Unlock() }
	m := newMemoryCfg(t, MemoryConfig{Grace: NoGrace, Now: clock})
	must(t, m.Connect(ctx, conn("3", "a"))) // since 1700000000
	tests := []struct {
		name  string
		at    time.Duration
		ping  time.Duration // -1: none
		stale bool
	}{
		{"just connected", 0, -1, false},
		{"65s after connect", 65 * time.Second, -1, false},
		{"66s after connect", 66 * time.Second, -1, true},
		{"a ping 10s ago", 70 * time.Second, 60 * time.Second, false},
		{"that ping 66s ago", 126 * time.Second, -1, true},
	}
	for _, tt := range tests {
		set(tt.at)
		if tt.ping >= 0 {
			must(t, m.Ping(ctx, "3", time.Unix(1700000000, 0).Add(tt.ping)))
		}
		states, _ := m.Online(ctx)
		if states[0].Stale != tt.stale {
			t.Errorf("%s: stale = %v, want %v (%+v)", tt.name, states[0].Stale, tt.stale, states[0])
		}
	}
}

func TestMemoryMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m := newMemoryCfg(t, MemoryConfig{Grace: NoGrace, Registerer: reg})
	// A second store on the same registry shares the collectors.
	_ = newMemoryCfg(t, MemoryConfig{Grace: NoGrace, Registerer: reg})
	must(t, m.Connect(ctx, conn("3", "a")))
	must(t, m.Connect(ctx, conn("4", "a")))
	must(t, m.Disconnect(ctx, "3", "a"))
	if v := testmetrics.Value(t, reg, "eventserver_presence_online_nodes"); v != 1 {
		t.Errorf("online_nodes = %v, want 1", v)
	}
	if v := testmetrics.Value(t, reg, "eventserver_presence_transitions_total", "kind", "online"); v != 2 {
		t.Errorf("online transitions = %v, want 2", v)
	}
	if v := testmetrics.Value(t, reg, "eventserver_presence_transitions_total", "kind", "offline"); v != 1 {
		t.Errorf("offline transitions = %v, want 1", v)
	}
}

// TestMemoryHandlerPanic: a handler that panics (from a timer's
// goroutine, where it would end the process) is logged and the store
// keeps working.
func TestMemoryHandlerPanic(t *testing.T) {
	ctx := context.Background()
	core, logs := observer.New(zapcore.ErrorLevel)
	var j journal
	m := newMemoryCfg(t, MemoryConfig{Grace: 10 * time.Millisecond, Logger: zap.New(core), Handler: func(tr Transition) {
		j.handler("m")(tr)
		panic("boom")
	}})
	must(t, m.Connect(ctx, conn("3", "a")))
	must(t, m.Disconnect(ctx, "3", "a"))
	testwait.Until(t, 2*time.Second, "the offline", func() bool { return j.len() == 2 })
	must(t, m.Connect(ctx, conn("3", "b")))
	if j.len() != 3 {
		t.Errorf("journal:\n%s", &j)
	}
	// The timer's panic is logged once its handler has returned.
	testwait.Until(t, 2*time.Second, "three panics logged", func() bool {
		return logs.FilterMessage("presence handler panicked").Len() == 3
	})
}

// TestMemoryRandomized: goroutines connect, disconnect and move (close
// and reconnect quickly, or open the new connection before closing the
// old one) the connections of a few nodes, with a grace. Per node the
// transitions alternate, start with online and end in its final state.
func TestMemoryRandomized(t *testing.T) {
	const (
		nodes  = 12
		rounds = 150
		grace  = 15 * time.Millisecond
	)
	ctx := context.Background()
	var j journal
	m := newMemoryCfg(t, MemoryConfig{Handler: j.handler("m"), Grace: grace})
	final := map[string]bool{}
	var finalMu sync.Mutex
	var wg sync.WaitGroup
	for n := 1; n <= nodes; n++ {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(n), 7))
			key := strconv.Itoa(n)
			var live []string
			seq := 0
			next := func() string { seq++; return fmt.Sprintf("c%d", seq) }
			for range rounds {
				switch k := r.IntN(10); {
				case k < 4 || len(live) == 0:
					id := next()
					must(t, m.Connect(ctx, conn(key, id)))
					live = append(live, id)
				case k < 7:
					i := r.IntN(len(live))
					must(t, m.Disconnect(ctx, key, live[i]))
					live = append(live[:i], live[i+1:]...)
				case k < 9: // move with a gap shorter than the grace
					i := r.IntN(len(live))
					must(t, m.Disconnect(ctx, key, live[i]))
					live[i] = next()
					time.Sleep(time.Duration(r.IntN(int(grace / 3))))
					must(t, m.Connect(ctx, conn(key, live[i])))
				default: // overlapping move
					i := r.IntN(len(live))
					id := next()
					must(t, m.Connect(ctx, conn(key, id)))
					must(t, m.Disconnect(ctx, key, live[i]))
					live[i] = id
				}
				if r.IntN(8) == 0 {
					time.Sleep(time.Duration(r.IntN(int(2 * grace)))) // sometimes past the grace
				}
			}
			finalMu.Lock()
			final[key] = len(live) > 0
			finalMu.Unlock()
		})
	}
	wg.Wait()
	settled := func() bool {
		last := map[string]bool{}
		for _, e := range j.all() {
			last[e.Node.Key] = e.Online
		}
		for k, on := range final {
			if last[k] != on {
				return false // an offline still pending
			}
		}
		states, _ := m.Online(ctx)
		return len(states) == countTrue(final)
	}
	testwait.Until(t, 5*time.Second, "pending offlines decided", settled)
	checkSequences(t, &j, final)
	if t.Failed() {
		return
	}
	t.Logf("%d transitions for %d nodes", j.len(), nodes)
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// TestMemoryUpdateKeepsNodeDataOnMove: data survives a reconnect within
// the grace (the node never went offline).
func TestMemoryUpdateKeepsNodeDataOnMove(t *testing.T) {
	ctx := context.Background()
	m := newMemoryCfg(t, MemoryConfig{Grace: time.Minute})
	must(t, m.Connect(ctx, conn("3", "a")))
	must(t, m.SetConfig(ctx, "3", json.RawMessage(`{"x":1}`), time.Now()))
	must(t, m.Disconnect(ctx, "3", "a"))
	must(t, m.Connect(ctx, conn("3", "b")))
	states, _ := m.Online(ctx)
	if len(states) != 1 || string(states[0].LastConfig) != `{"x":1}` {
		t.Fatalf("Online() = %+v, want the config kept", states)
	}
}
