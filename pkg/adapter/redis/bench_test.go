package redis

import (
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// benchPacket is a typical vantage6 event.
func benchPacket() *socketio.Packet {
	return &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/tasks", Data: []any{"new_task", map[string]any{
		"id": 12, "parent_id": nil, "collaboration_id": 1, "job_id": 7, "status": "pending", "init_org_id": 2,
	}}}
}

func BenchmarkEncodeBroadcast(b *testing.B) {
	p := benchPacket()
	rooms := []string{"collaboration_1"}
	flags := &socketio.BroadcastFlags{}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = encodeBroadcast(buf[:0], "A1b2C3", p, rooms, nil, flags); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeBroadcast(b *testing.B) {
	enc, err := encodeBroadcast(nil, "A1b2C3", benchPacket(), []string{"collaboration_1"}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	payload := string(enc)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeBroadcast(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublish is the publish path of Adapter.Broadcast against a real
// Redis: encoding, queueing and pipelined PUBLISH, timed until Redis has
// taken every message.
func BenchmarkPublish(b *testing.B) {
	c := newBenchCluster(b)
	s := c.servers[0]
	ad := s.adapter("/tasks")
	opts := socketio.BroadcastOptions{Rooms: []string{"collaboration_1"}}
	published := s.broker.metrics.published.WithLabelValues("broadcast")
	before := testCounter(published)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ad.Broadcast(benchPacket(), opts)
	}
	want := before + float64(b.N)
	deadline := time.Now().Add(time.Minute)
	for testCounter(published) < want {
		if time.Now().After(deadline) || testCounter(s.broker.metrics.dropped.WithLabelValues(dropOutboundFull)) > 0 {
			b.Fatalf("published %v of %d", testCounter(published)-before, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkBroadcastAcrossServers: from one server's Broadcast to the
// other server's local delivery (no clients), timed until the last
// message was handled.
func BenchmarkBroadcastAcrossServers(b *testing.B) {
	c := newBenchCluster(b)
	s0, s1 := c.servers[0], c.add(func(cfg *Config) { cfg.QueueSize = 1 << 20 })
	ad := s0.adapter("/tasks")
	opts := socketio.BroadcastOptions{}
	received := s1.broker.metrics.received.WithLabelValues("broadcast")
	before := testCounter(received)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ad.Broadcast(benchPacket(), opts)
	}
	want := before + float64(b.N)
	deadline := time.Now().Add(time.Minute)
	for testCounter(received) < want {
		if time.Now().After(deadline) {
			b.Fatalf("received %v of %d", testCounter(received)-before, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
