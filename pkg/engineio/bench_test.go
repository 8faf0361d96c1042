package engineio

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialRaw opens an Engine.IO websocket with a bare TCP connection and
// returns it after the 101 (the open frame is left unread).
func dialRaw(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_, err = io.WriteString(c, "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if err == nil {
		var resp *http.Response
		resp, err = http.ReadResponse(bufio.NewReaderSize(c, 256), nil)
		if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// BenchmarkBroadcastPrepared writes one prepared frame to N websockets
// whose clients read and discard.
func BenchmarkBroadcastPrepared(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s, err := NewServer(Config{MaxWriteQueue: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			conns := make(chan *Conn, n)
			s.OnConnection(func(c *Conn) { conns <- c })
			hs := httptest.NewServer(s)
			var wg sync.WaitGroup
			var clients []net.Conn
			for range n {
				c, err := dialRaw(hs.Listener.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				clients = append(clients, c)
				wg.Add(1)
				go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, c) }()
			}
			members := make([]*Conn, 0, n)
			for range n {
				members = append(members, <-conns)
			}
			msg := []byte(`2["new_task",{"id":12,"parent_id":null}]`)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				f := NewPreparedFrame(msg, false)
				for _, c := range members {
					_ = c.WritePrepared(f)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			_ = s.Shutdown(context.Background())
			for _, c := range clients {
				c.Close()
			}
			wg.Wait()
			hs.Close()
		})
	}
}

// TestIdleClients is the client process of BenchmarkIdleWebSocket: it
// opens EIO_IDLE_N websockets to EIO_IDLE_ADDR, prints "ready", and
// holds them until stdin closes.
func TestIdleClients(t *testing.T) {
	addr := os.Getenv("EIO_IDLE_ADDR")
	if addr == "" {
		t.Skip("the client process of BenchmarkIdleWebSocket")
	}
	n, _ := strconv.Atoi(os.Getenv("EIO_IDLE_N"))
	var conns []net.Conn
	for range n {
		c, err := dialRaw(addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

func rssBytes() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkIdleWebSocket reports what an idle websocket costs the
// server: 5,000 of them held by a client in another process.
func BenchmarkIdleWebSocket(b *testing.B) {
	const n = 5000
	for b.Loop() {
		s, err := NewServer(Config{})
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(s)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rss0, g0 := rssBytes(), runtime.NumGoroutine()
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClients$")
		cmd.Env = append(os.Environ(), "EIO_IDLE_ADDR="+hs.Listener.Addr().String(), "EIO_IDLE_N="+strconv.Itoa(n))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			b.Fatalf("client: %q", line)
		}
		for s.Len() < n {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // let net/http's hijacked conns go
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(rssBytes()-rss0)/n, "rss-B/ws")
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/n, "heap-B/ws")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/ws")
		stdin.Close()
		_ = cmd.Wait()
		_ = s.Shutdown(context.Background())
		hs.Close()
	}
}
