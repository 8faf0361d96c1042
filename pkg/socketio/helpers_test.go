package socketio

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tserver is a Server on a random port, shut down at the end of the test.
type tserver struct {
	*Server
	url string
}

func newTestServer(t testing.TB, cfg Config) *tserver {
	t.Helper()
	if cfg.Engine.PingInterval == 0 {
		cfg.Engine.PingInterval = 5 * time.Second
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", s)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		_ = hs.Shutdown(ctx)
		<-served
	})
	return &tserver{Server: s, url: "http://" + ln.Addr().String()}
}

// wsClient is a raw Socket.IO client over websocket: it answers pings and
// queues every other message.
type wsClient struct {
	t    testing.TB
	ws   *websocket.Conn
	in   chan wsMsg
	done chan struct{}
	wmu  sync.Mutex
}

type wsMsg struct {
	text string
	bin  []byte
}

func (ts *tserver) dial(t testing.TB) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(ts.url, "http") + "/socket.io/?EIO=4&transport=websocket"
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &wsClient{t: t, ws: ws, in: make(chan wsMsg, 256), done: make(chan struct{})}
	go c.read()
	t.Cleanup(c.close)
	if m := c.next(); !strings.HasPrefix(m.text, `0{"sid":`) {
		t.Fatalf("open packet %q", m.text)
	}
	return c
}

func (c *wsClient) read() {
	defer close(c.done)
	defer close(c.in)
	for {
		typ, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if typ == websocket.TextMessage && string(b) == "2" {
			c.write(websocket.TextMessage, []byte("3"))
			continue
		}
		if typ == websocket.BinaryMessage {
			c.in <- wsMsg{bin: b}
		} else {
			c.in <- wsMsg{text: string(b)}
		}
	}
}

func (c *wsClient) close() { _ = c.ws.Close(); <-c.done }

func (c *wsClient) write(typ int, b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.WriteMessage(typ, b)
}

// send writes a Socket.IO packet (without the Engine.IO type byte).
func (c *wsClient) send(p string) { c.write(websocket.TextMessage, []byte("4"+p)) }

func (c *wsClient) sendBinary(b []byte) { c.write(websocket.BinaryMessage, b) }

func (c *wsClient) next() wsMsg {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		if !ok {
			c.t.Fatal("connection closed")
		}
		return m
	case <-time.After(3 * time.Second):
		c.t.Fatal("no message within 3s")
	}
	return wsMsg{}
}

// expect reads the next Socket.IO text packet.
func (c *wsClient) expect(want string) {
	c.t.Helper()
	if m := c.next(); m.text != "4"+want {
		c.t.Fatalf("got %q (bin %v), want %q", m.text, m.bin, "4"+want)
	}
}

// connect joins nsp and returns the socket id.
func (c *wsClient) connect(nsp, auth string) string {
	c.t.Helper()
	p := "0"
	if nsp != "/" {
		p += nsp + ","
	}
	c.send(p + auth)
	m := c.next()
	prefix := "4" + p + `{"sid":"`
	if nsp == "/" {
		prefix = `40{"sid":"`
	}
	if !strings.HasPrefix(m.text, prefix) {
		c.t.Fatalf("connect %s: got %q", nsp, m.text)
	}
	return strings.TrimSuffix(strings.TrimPrefix(m.text, prefix), `"}`)
}

// nothing checks that no message arrives within d (the negative of a
// delivery: the positive case of the same test bounds how long it takes).
func (c *wsClient) nothing(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.in:
		c.t.Fatalf("unexpected %q %v", m.text, m.bin)
	case <-time.After(d):
	}
}

// closed waits for the server to close the connection.
func (c *wsClient) closed() {
	c.t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return
			}
		case <-deadline:
			c.t.Fatal("connection still open after 3s")
		}
	}
}

// events records what the server's handlers saw.
type events struct{ ch chan string }

func newEvents() *events { return &events{ch: make(chan string, 64)} }

func (e *events) add(s string) { e.ch <- s }

func (e *events) next(t testing.TB) string {
	t.Helper()
	select {
	case s := <-e.ch:
		return s
	case <-time.After(3 * time.Second):
		t.Fatal("no event within 3s")
	}
	return ""
}
