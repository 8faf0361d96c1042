package presence

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testclock"
)

func offline(key string, seq int64) Transition {
	return Transition{Online: false, Node: Node{Key: key, Name: "node-" + key, CollaborationID: 1}, Seq: seq}
}

const flapGauge = `
# HELP eventserver_presence_node_offline_max The most offline transitions of any one node within the last 10 minutes, among the nodes whose transitions this replica recorded (with Redis, each count is the whole cluster's for that node: aggregate with max).
# TYPE eventserver_presence_node_offline_max gauge
eventserver_presence_node_offline_max `

func checkFlapGauge(t *testing.T, reg *prometheus.Registry, want string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(flapGauge+want+"\n"), "eventserver_presence_node_offline_max"); err != nil {
		t.Error(err)
	}
}

func TestFlapsMemory(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zapcore.WarnLevel)
	f, err := NewFlaps(FlapsConfig{Registerer: reg, Logger: zap.New(core), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	checkFlapGauge(t, reg, "0")
	// Node 7 goes offline four times, a minute apart; node 8 once; online
	// transitions are not counted.
	for i := int64(1); i <= 4; i++ {
		f.Record(offline("7", i))
		f.Record(Transition{Online: true, Node: Node{Key: "7"}, Seq: 10 + i})
		clk.Add(time.Minute)
	}
	f.Record(offline("8", 20))
	checkFlapGauge(t, reg, "4")
	if got := logs.FilterMessage("presence: a node keeps going offline").All(); len(got) != 1 ||
		got[0].ContextMap()["node"] != "7" || got[0].ContextMap()["offline_transitions"] != int64(3) {
		t.Errorf("warn lines = %+v, want one for node 7 at its third transition", got)
	}
	// 10 min after the first, it has left the window; the others follow.
	clk.Add(6*time.Minute + time.Second)
	if got := f.Max(); got != 3 {
		t.Errorf("Max after the first left the window = %d, want 3", got)
	}
	clk.Add(10 * time.Minute)
	checkFlapGauge(t, reg, "0")
	f.mu.Lock()
	left := len(f.recent)
	f.mu.Unlock()
	if left != 0 {
		t.Errorf("%d nodes still remembered after the window", left)
	}
}

// TestFlapsRedis: transitions of one node decided by two replicas in turn
// are counted together, on whichever replica records the latest one.
func TestFlapsRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(srv.Addr())
	t.Cleanup(func() { _ = c.Close() })
	prefix := uniquePrefix(t) + ":flaps"
	clk := testclock.New(time.Now())
	var fs [2]*Flaps
	for i := range fs {
		var err error
		if fs[i], err = NewFlaps(FlapsConfig{Client: c, Prefix: prefix, Now: clk.Now}); err != nil {
			t.Fatal(err)
		}
	}
	for i := int64(1); i <= 5; i++ {
		fs[i%2].Record(offline("7", i))
		clk.Add(30 * time.Second)
	}
	if a, b := fs[0].Max(), fs[1].Max(); a != 4 || b != 5 {
		t.Errorf("Max on the replicas = %d, %d; want 4 (its last record saw 4) and 5", a, b)
	}
	ctx := context.Background()
	if n := c.ZCard(ctx, prefix+":7").Val(); n != 5 {
		t.Errorf("sorted set holds %d, want 5", n)
	}
	if ttl := c.PTTL(ctx, prefix+":7").Val(); ttl <= 0 || ttl > FlapWindow {
		t.Errorf("sorted set's TTL = %s, want within (0, %s]", ttl, FlapWindow)
	}
	// Redis down: the transition is still counted, on this replica.
	srv.Kill()
	fs[1].Record(offline("9", 50))
	fs[1].Record(offline("9", 51))
	if got := fs[1].Max(); got != 5 {
		t.Errorf("Max with Redis down = %d, want 5 (node 7) still", got)
	}
	fs[1].mu.Lock()
	n9 := len(fs[1].recent["9"].times)
	fs[1].mu.Unlock()
	if n9 != 2 {
		t.Errorf("node 9 counted %d times with Redis down, want 2", n9)
	}
}
