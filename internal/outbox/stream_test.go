package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestStreamShape: each fact is one XADD with the fields id, type and fact;
// the fact is the documented JSON, with the ids, the instance, the time in
// RFC 3339 UTC and the data as given.
func TestStreamShape(t *testing.T) {
	_, rdb := startRedis(t)
	at := time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.FixedZone("CET", 3600))
	o, _ := start(t, Config{Stream: testStream, Client: rdb, Instance: "es-1", Now: func() time.Time { return at }})

	o.Add(protocol.Fact{Type: protocol.FactAlgorithmStatusChange, NodeID: json.RawMessage("3"), NodeName: "org2-node3", CollaborationID: 1, OrganizationID: 2,
		Data: json.RawMessage(`{"status":"active","run_id":40,"task_id":12,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}`)})
	// Given id, time and instance are kept; a string node id stays a string.
	given := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	o.Add(protocol.Fact{ID: "0190a0a0-0000-7000-8000-000000000001", Type: protocol.FactNodeOffline, Time: given, Instance: "es-2",
		NodeID: json.RawMessage(`"kc-7f"`), NodeName: "n", CollaborationID: 9, OrganizationID: 8,
		Data: json.RawMessage(`{"id":"kc-7f","name":"n","org_id":8,"seq":17}`)})
	// No data: null.
	o.Add(protocol.Fact{Type: protocol.FactPing, NodeID: json.RawMessage("3"), CollaborationID: 1, OrganizationID: 2})

	var got []entry
	testwait.For(t, 5*time.Second, func() error {
		got = readStream(t, rdb)
		if len(got) != 3 {
			return fmt.Errorf("%d entries, want 3", len(got))
		}
		return nil
	})
	first := got[0]
	if !uuidV7.MatchString(first.ID) || first.Fact["id"] != first.ID || first.Type != protocol.FactAlgorithmStatusChange {
		t.Errorf("entry fields id %q, type %q; fact id %v", first.ID, first.Type, first.Fact["id"])
	}
	want := fmt.Sprintf(`{"v":1,"id":%q,"type":"algorithm_status_change","time":"2025-03-04T04:06:07.891234Z","instance":"es-1",`+
		`"node_id":3,"node_name":"org2-node3","collaboration_id":1,"organization_id":2,`+
		`"data":{"status":"active","run_id":40,"task_id":12,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}}`, first.ID)
	if first.Raw != want {
		t.Errorf("fact\n got %s\nwant %s", first.Raw, want)
	}
	if ts, err := time.Parse(time.RFC3339, first.Fact["time"].(string)); err != nil || !ts.Equal(at.Truncate(time.Microsecond)) {
		t.Errorf("time %v does not parse as RFC 3339 to %v: %v", first.Fact["time"], at, err)
	}
	want2 := `{"v":1,"id":"0190a0a0-0000-7000-8000-000000000001","type":"node_offline","time":"2025-01-02T03:04:05.000000Z","instance":"es-2",` +
		`"node_id":"kc-7f","node_name":"n","collaboration_id":9,"organization_id":8,"data":{"id":"kc-7f","name":"n","org_id":8,"seq":17}}`
	if got[1].Raw != want2 || got[1].ID != "0190a0a0-0000-7000-8000-000000000001" || got[1].Type != protocol.FactNodeOffline {
		t.Errorf("fact\n got %s\nwant %s", got[1].Raw, want2)
	}
	if got[2].Fact["data"] != nil || got[2].Fact["node_name"] != "" {
		t.Errorf("ping without data: %s", got[2].Raw)
	}
	if got[0].ID == got[2].ID {
		t.Error("two facts with the same id")
	}
	// The counter moves once XADD has answered, just after the entry shows.
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.appended); v != 3 {
			return fmt.Errorf("appended %v, want 3", v)
		}
		return nil
	})
}

// TestMaxLen: the stream is trimmed to about MaxLen (MAXLEN ~ trims whole
// radix-tree nodes of 100 entries) and keeps the newest facts.
func TestMaxLen(t *testing.T) {
	_, rdb := startRedis(t)
	const maxLen, n = 500, 5000
	o, _ := start(t, Config{Stream: testStream, Client: rdb, MaxLen: maxLen})
	for i := range n {
		o.Add(nodeFact(protocol.FactPing, i))
	}
	testwait.For(t, 20*time.Second, func() error {
		if v := value(o.m.appended); v != n {
			return fmt.Errorf("appended %v of %d", v, n)
		}
		return nil
	})
	l, err := rdb.XLen(context.Background(), testStream).Result()
	if err != nil {
		t.Fatal(err)
	}
	// stream-node-max-entries is 100: the approximate trim leaves at most
	// one node more than asked.
	if l < maxLen || l > maxLen+100 {
		t.Errorf("XLEN %d after %d facts, want between %d and %d", l, n, maxLen, maxLen+100)
	}
	last, err := rdb.XRevRangeN(context.Background(), testStream, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("XREVRANGE: %v %v", last, err)
	}
	var f map[string]any
	_ = json.Unmarshal([]byte(last[0].Values["fact"].(string)), &f)
	if d := f["data"].(map[string]any); d["n"] != float64(n-1) {
		t.Errorf("newest entry %v, want the last fact (n=%d)", f, n-1)
	}
}

// TestBatching: facts queued while Redis is down go out in pipelined
// batches of at most BatchSize, in the order they were added.
func TestBatching(t *testing.T) {
	r, rdb := startRedis(t)
	const n, batch = 1000, 50
	o, _ := start(t, Config{Stream: testStream, Client: rdb, BatchSize: batch, QueueSize: 2 * n,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	r.Kill()
	for i := range n {
		o.Add(nodeFact(protocol.FactPing, i))
	}
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.redisErrors); v < 2 {
			return fmt.Errorf("redis errors %v, want the writer retrying", v)
		}
		return nil
	})
	r.Restart()
	testwait.For(t, 10*time.Second, func() error {
		if v := value(o.m.appended); v != n {
			return fmt.Errorf("appended %v of %d", v, n)
		}
		return nil
	})
	count, sum, atMost := histogram(t, o.m.batchSize, batch)
	t.Logf("%d facts in %d round trips", n, count)
	// The writer held one batch (of the facts queued when Redis went away)
	// while it retried; the rest is ceil(n/batch) batches at most.
	if sum != n || count > n/batch+1 || atMost != count {
		t.Errorf("round trips %d (sum %v, %d of at most %d facts), want at most %d of at most %d", count, sum, atMost, batch, n/batch+1, batch)
	}
	got := readStream(t, rdb)
	if len(got) != n {
		t.Fatalf("%d entries, want %d", len(got), n)
	}
	for i, e := range got {
		if dataN(e) != i {
			t.Fatalf("entry %d carries n=%d: out of order", i, dataN(e))
		}
	}
}

// TestRedisRestartKeepsQueued: facts added while Redis is down stay queued
// and are appended, each once, when it is back; nothing is dropped within
// the queue bound.
func TestRedisRestartKeepsQueued(t *testing.T) {
	r, rdb := startRedis(t)
	o, logs := start(t, Config{Stream: testStream, Client: rdb, QueueSize: 100,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	for i := range 10 {
		o.Add(nodeFact(protocol.FactPing, i))
	}
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.appended); v != 10 {
			return fmt.Errorf("appended %v of 10", v)
		}
		return nil
	})

	r.Kill()
	const down = 90
	for i := range down {
		o.Add(nodeFact(protocol.FactNodeInfoUpdate, 100+i))
	}
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.redisErrors); v < 3 {
			return fmt.Errorf("redis errors %v, want several retries", v)
		}
		return nil
	})
	if q := value(o.m.queue.WithLabelValues(sinkStream)); q != down {
		t.Errorf("queue length %v while Redis is down, want %d", q, down)
	}
	if n := len(logsWith(logs, "cannot append to the stream")); n != 1 {
		t.Errorf("%d 'cannot append' lines, want 1 (then at most one every 10s)", n)
	}

	// The new Redis is empty: the first 10 facts went with the old one.
	r.Restart()
	testwait.For(t, 10*time.Second, func() error {
		if v := value(o.m.appended); v != 10+down {
			return fmt.Errorf("appended %v of %d", v, 10+down)
		}
		return nil
	})
	got := readStream(t, rdb)
	var ns []int
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.ID] {
			t.Errorf("fact %s appended twice", e.ID)
		}
		seen[e.ID] = true
		ns = append(ns, dataN(e))
	}
	want := make([]int, down)
	for i := range want {
		want[i] = 100 + i
	}
	if !slices.Equal(ns, want) {
		t.Errorf("facts after the restart carry %v, want %v", ns, want)
	}
	if v := value(o.m.dropped.WithLabelValues(sinkStream)); v != 0 {
		t.Errorf("dropped %v, want 0", v)
	}
	if q := value(o.m.queue.WithLabelValues(sinkStream)); q != 0 {
		t.Errorf("queue length %v after the restart, want 0", q)
	}
	if n := len(logsWith(logs, "appending to the stream again")); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
}

// TestQueueOverflow: with Redis down and the queue full, Add drops and
// counts without blocking, logs once (rate-limited), and what was queued
// is written when Redis is back.
func TestQueueOverflow(t *testing.T) {
	r, rdb := startRedis(t)
	const size = 10
	o, logs := start(t, Config{Stream: testStream, Client: rdb, QueueSize: size, BatchSize: 5,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	r.Kill()
	// The writer takes the first fact and retries it: it holds one.
	o.Add(nodeFact(protocol.FactPing, 0))
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.redisErrors); v < 1 {
			return fmt.Errorf("redis errors %v", v)
		}
		return nil
	})
	start := time.Now()
	for i := 1; i <= 100; i++ {
		o.Add(nodeFact(protocol.FactPing, i))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 Adds took %s with the queue full", d)
	}
	if v := value(o.m.dropped.WithLabelValues(sinkStream)); v != 100-size {
		t.Errorf("dropped %v, want %d", v, 100-size)
	}
	if q := value(o.m.queue.WithLabelValues(sinkStream)); q != size+1 {
		t.Errorf("queue length %v, want %d (the queue and the fact in hand)", q, size+1)
	}
	drops := logsWith(logs, "dropping facts")
	if len(drops) != 1 {
		t.Errorf("%d drop lines, want 1 within 10s", len(drops))
	}

	r.Restart()
	testwait.For(t, 10*time.Second, func() error {
		if v := value(o.m.appended); v != size+1 {
			return fmt.Errorf("appended %v, want %d", v, size+1)
		}
		return nil
	})
	var ns []int
	for _, e := range readStream(t, rdb) {
		ns = append(ns, dataN(e))
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(ns, want) {
		t.Errorf("stream carries %v, want %v (the first fact and the queue)", ns, want)
	}
}

// TestShutdownDrains: Shutdown writes everything queued before it returns,
// waiting for Redis to come back within its deadline.
func TestShutdownDrains(t *testing.T) {
	t.Run("redis up", func(t *testing.T) {
		_, rdb := startRedis(t)
		o, _ := start(t, Config{Stream: testStream, Client: rdb})
		const n = 3000
		for i := range n {
			o.Add(nodeFact(protocol.FactPing, i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := o.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if l := rdb.XLen(context.Background(), testStream).Val(); l != n {
			t.Errorf("XLEN %d after Shutdown, want %d", l, n)
		}
		// Later facts are dropped and counted; a second Shutdown is a no-op.
		o.Add(nodeFact(protocol.FactPing, n))
		if v := value(o.m.dropped.WithLabelValues(sinkStream)); v != 1 {
			t.Errorf("dropped %v after Shutdown, want 1", v)
		}
		if err := o.Shutdown(ctx); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
	})
	t.Run("redis back during shutdown", func(t *testing.T) {
		r, rdb := startRedis(t)
		o, _ := start(t, Config{Stream: testStream, Client: rdb, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
		r.Kill()
		for i := range 50 {
			o.Add(nodeFact(protocol.FactPing, i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- o.Shutdown(ctx) }()
		errs := value(o.m.redisErrors)
		testwait.For(t, 5*time.Second, func() error {
			if v := value(o.m.redisErrors); v < errs+2 {
				return fmt.Errorf("redis errors %v: Shutdown is not retrying", v)
			}
			return nil
		})
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with 50 facts queued and Redis down", err)
		default:
		}
		r.Restart()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown did not return after Redis came back")
		}
		if l := rdb.XLen(context.Background(), testStream).Val(); l != 50 {
			t.Errorf("XLEN %d, want 50", l)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		r, rdb := startRedis(t)
		o, logs := start(t, Config{Stream: testStream, Client: rdb, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
		r.Kill()
		for i := range 20 {
			o.Add(nodeFact(protocol.FactPing, i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := o.Shutdown(ctx)
		d := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "20 facts") {
			t.Errorf("Shutdown = %v, want an error that counts 20 facts", err)
		}
		// At most one round trip (the client's 500ms read timeout) after the deadline.
		if d > 300*time.Millisecond+time.Second {
			t.Errorf("Shutdown took %s with a 300ms deadline", d)
		}
		if v := value(o.m.failed.WithLabelValues(sinkStream)); v != 20 {
			t.Errorf("failed %v, want 20", v)
		}
		if q := value(o.m.queue.WithLabelValues(sinkStream)); q != 0 {
			t.Errorf("queue length %v after Shutdown, want 0", q)
		}
		if len(logsWith(logs, "facts lost at shutdown")) != 1 {
			t.Errorf("no 'facts lost' line:\n%s", logText(logs))
		}
	})
}
