package presence

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
)

// benchStore is a replica without loops holding n registered connections,
// each of its own node.
func benchStore(b testing.TB, n int) *RedisStore {
	b.Helper()
	ctx := context.Background()
	srv := redistest.Start(b)
	client := newClient(srv.Addr())
	b.Cleanup(func() { _ = client.Close() })
	s, err := NewRedis(RedisConfig{Client: client, Instance: "bench", Prefix: uniquePrefix(b),
		RefreshInterval: 5 * time.Second, TTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Shutdown(ctx) })
	lcs := make([]*localConn, n)
	for i := range lcs {
		key := strconv.Itoa(i)
		c := connOn(key, "socket-"+key, "bench")
		lcs[i] = &localConn{Conn: c, member: memberOf(key, c.ID)}
		s.conns[lcs[i].member] = lcs[i]
		s.nodes[key] = &localNode{conns: 1}
	}
	if _, err := s.registerLocked(ctx, modeConnect, lcs); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRefresh10k: one refresh of the heartbeat entries of a replica
// with 10,000 connections (10 script calls of 1,000 members).
func BenchmarkRefresh10k(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	s := benchStore(b, n)
	for b.Loop() {
		if err := s.refresh(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/conn")
	if v := testCounter(b, s.m.reregistered.WithLabelValues(modeConnect)) + testCounter(b, s.m.reregistered.WithLabelValues(modeRestore)); v != 0 {
		b.Fatalf("a plain refresh registered %v connections again", v)
	}
}

// BenchmarkRestore10k: the refresh after Redis lost its state, which finds
// the 10,000 connections missing and restores them.
func BenchmarkRestore10k(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	s := benchStore(b, n)
	for b.Loop() {
		b.StopTimer()
		if err := s.r.client.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.refresh(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if v := testCounter(b, s.m.reregistered.WithLabelValues(modeRestore)); v != float64(n*b.N) {
		b.Fatalf("restored %v connections, want %d", v, n*b.N)
	}
}
