package loadgen

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
)

// BenchmarkFanout is one broadcast from the hub to 100 WebSocket clients of
// one eventserver, until every client has read it: the server's cost of a
// delivery (B/delivery and allocs/delivery are the server's and the
// clients' together; the clients read raw frames).
//
//	go test -run=NONE -bench=Fanout -benchmem ./internal/loadgen/
func BenchmarkFanout(b *testing.B) {
	const clients = 100
	r := redistest.Start(b)
	a, url := startApp(b, r)
	wsURL, err := websocketURL(url)
	if err != nil {
		b.Fatal(err)
	}
	ds, err := newDialers(nil)
	if err != nil {
		b.Fatal(err)
	}
	token := userToken(b, secret)
	rec := newRecorder(1)
	conns := make([]*conn, clients)
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := dial(ctx, ds[0], wsURL, "/tasks", token(i), nil)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		go c.read(rec)
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	// Every client is in the room once a probe reaches all of them.
	for rec.probed.Load() < clients {
		if err := a.Hub().Emit([]string{"collaboration_1"}, nil, "bench-probe"); err != nil {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	filler := strings.Repeat("x", 128)
	var want atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want.Add(clients)
		if err := a.Hub().Emit([]string{"collaboration_1"}, nil, "bench", map[string]any{"seq": i, "st": 0, "t": time.Now().UnixNano(), "filler": filler}); err != nil {
			b.Fatal(err)
		}
		for rec.delivered.Load() < want.Load() {
			time.Sleep(10 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*clients), "ns/delivery")
}
