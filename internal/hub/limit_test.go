package hub

import (
	"testing"
	"time"
)

func TestEventBucket(t *testing.T) {
	l := &EventLimit{Rate: 10, Burst: 20, FloodDisconnect: 3 * time.Second}
	sec := int64(time.Second)
	t0 := int64(1_000_000) * sec
	count := func(b *eventBucket, from int64, n int, every time.Duration) (got [3]int, end int64) {
		now := from
		for range n {
			got[b.take(l, now)]++
			now += int64(every)
		}
		return got, now
	}
	t.Run("burst then rate", func(t *testing.T) {
		var b eventBucket
		got, _ := count(&b, t0, 30, 0) // 30 at once: the burst passes
		if got[admitted] != 20 || got[dropped] != 10 {
			t.Fatalf("%v", got)
		}
		if v := b.take(l, t0+sec/10); v != admitted {
			t.Fatalf("a tenth of a second later: %v, want one more admitted", v)
		}
	})
	t.Run("steady at the rate is never dropped", func(t *testing.T) {
		var b eventBucket
		got, _ := count(&b, t0, 1000, 100*time.Millisecond)
		if got[admitted] != 1000 {
			t.Fatalf("%v", got)
		}
	})
	t.Run("a sustained flood is cut off", func(t *testing.T) {
		var b eventBucket
		// 1000 events a second: 10 a second get through, the rest dropped,
		// and after 3 s the socket is flooding.
		got, _ := count(&b, t0, 2900, time.Millisecond)
		if got[flooding] != 0 || got[admitted] < 20+28 || got[admitted] > 20+30 {
			t.Fatalf("first 2.9 s: %v", got)
		}
		got, _ = count(&b, t0+2900*int64(time.Millisecond), 200, time.Millisecond)
		if got[flooding] == 0 {
			t.Fatalf("after 3 s of flood: %v, want flooding", got)
		}
	})
	t.Run("a pause ends the flood", func(t *testing.T) {
		var b eventBucket
		_, end := count(&b, t0, 2000, time.Millisecond) // 2 s of flood
		end += 2 * sec                                  // a pause: the bucket refills
		got, _ := count(&b, end, 1500, time.Millisecond)
		if got[flooding] != 0 {
			t.Fatalf("a new flood after a pause was cut off early: %v", got)
		}
	})
	t.Run("no rate, no limit", func(t *testing.T) {
		var b eventBucket
		if v := b.take(&EventLimit{}, t0); v != admitted {
			t.Fatal(v)
		}
	})
}
