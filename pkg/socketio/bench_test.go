package socketio

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// BenchmarkBroadcast: one event to a room of N websocket sockets. The
// packet is encoded once; allocs/delivery should stay about 0. The clients
// read raw TCP into a fixed buffer, so that they allocate nothing.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{10, 500} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ts := newTestServer(b, Config{})
			nsp := ts.Of("/tasks")
			nsp.OnConnection(func(s *Socket) { s.Join("room") })
			for range n {
				c := ts.dial(b)
				c.connect("/tasks", "")
				// From here the client drains the raw connection.
				conn := c.ws.UnderlyingConn()
				c.ws.SetReadDeadline(time.Now()) // stop its reader
				<-c.done
				_ = conn.SetReadDeadline(time.Time{})
				go func() {
					buf := make([]byte, 64<<10)
					for {
						if _, err := conn.Read(buf); err != nil {
							return
						}
					}
				}()
			}
			testwait.Until(b, 5*time.Second, "members", func() bool { return nsp.Len() == n })
			payload := map[string]any{"id": 1, "status": strings.Repeat("x", 64)}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				_ = nsp.To("room").Emit("status", payload)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
