package presence

import (
	"context"
	"testing"
	"time"
)

// checkSeen: an Engine.IO heartbeat moves LastSeen but not the stale rule,
// which wants ping events; a ping clears it. conn connects node "3" at
// 1700000000 (long ago, so it is stale).
func checkSeen(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	hb := time.Now().Add(-time.Second).UTC().Truncate(time.Microsecond)
	must(t, s.Seen(ctx, "3", hb))
	must(t, s.Seen(ctx, "unknown", hb)) // not online: ignored
	st := online(t, s)
	if len(st) != 1 {
		t.Fatalf("online: %+v", st)
	}
	got := st["3"]
	if !got.LastSeen.Equal(hb) {
		t.Errorf("LastSeen = %s, want the heartbeat %s", got.LastSeen, hb)
	}
	if !got.Stale {
		t.Error("a heartbeat without ping events made the node fresh")
	}
	must(t, s.Ping(ctx, "3", time.Now()))
	if got := online(t, s)["3"]; got.Stale || !got.LastSeen.After(hb) {
		t.Errorf("after a ping: stale %v, last seen %s", got.Stale, got.LastSeen)
	}
}

func TestMemorySeen(t *testing.T) {
	m := newMemoryCfg(t, MemoryConfig{Grace: NoGrace})
	must(t, m.Connect(context.Background(), conn("3", "a")))
	checkSeen(t, m)
}

func TestRedisSeen(t *testing.T) {
	c := newCluster(t, 1, nil)
	must(t, c.rep(0).Connect(context.Background(), connOn("3", "a", "r1")))
	checkSeen(t, c.rep(0))
}
