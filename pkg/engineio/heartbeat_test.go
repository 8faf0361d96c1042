package engineio

import (
	"math/rand/v2"
	"testing"
)

// TestHeartbeatSchedule: sessions come out of the schedule in due order,
// once each, whatever moves and cancels came before.
func TestHeartbeatSchedule(t *testing.T) {
	hb := newHeartbeats()
	r := rand.New(rand.NewPCG(1, 2))
	conns := make([]*Conn, 500)
	for i := range conns {
		conns[i] = &Conn{hbIdx: -1}
		hb.schedule(conns[i], r.Int64N(1000))
	}
	cancelled := map[*Conn]bool{}
	for range 300 {
		c := conns[r.IntN(len(conns))]
		if r.IntN(3) == 0 {
			hb.cancel(c)
			cancelled[c] = true
		} else {
			hb.schedule(c, r.Int64N(1000))
			delete(cancelled, c)
		}
	}
	got, next := hb.popDue(499, nil)
	if next < 0 || next > 501 {
		t.Fatalf("next due in %v", next)
	}
	rest, next := hb.popDue(1000, nil)
	if next >= 0 {
		t.Fatalf("left in the schedule: %d", len(hb.heap))
	}
	got = append(got, rest...)
	if len(got) != len(conns)-len(cancelled) {
		t.Fatalf("popped %d, want %d", len(got), len(conns)-len(cancelled))
	}
	seen := map[*Conn]bool{}
	for i, c := range got {
		if cancelled[c] || seen[c] || c.hbIdx != -1 {
			t.Fatalf("popped %d: cancelled %v, twice %v, index %d", i, cancelled[c], seen[c], c.hbIdx)
		}
		if i > 0 && c.hbDue < got[i-1].hbDue {
			t.Fatalf("popped out of order at %d: %d after %d", i, c.hbDue, got[i-1].hbDue)
		}
		if (i < len(got)-len(rest)) != (c.hbDue <= 499) {
			t.Fatalf("popped %d with due %d in the wrong batch", i, c.hbDue)
		}
		seen[c] = true
	}
}
