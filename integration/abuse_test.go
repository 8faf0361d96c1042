package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The abuse suite (issue "Abuse resistance"): each test reproduces a probe
// against the real binary with a bounded load, and checks the bound, the
// cut-off, and that a well-behaved client is still served.

// wellBehaved connects a user to /tasks over websocket, as the UI does,
// and fails the test if it cannot.
func wellBehaved(t *testing.T, base string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/socket.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatalf("a well-behaved client cannot connect: %v", err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, open, err := ws.ReadMessage(); err != nil || open[0] != '0' {
		t.Fatalf("open packet: %q %v", open, err)
	}
	tok := userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`40/tasks,{"token":"`+tok+`"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("a well-behaved client got no CONNECT answer: %v", err)
		}
		if strings.HasPrefix(string(m), "40/tasks,") {
			return
		}
		if strings.HasPrefix(string(m), "44/tasks,") {
			t.Fatalf("a well-behaved client was refused: %s", m)
		}
	}
}

// TestAbuseIdleKeepAlive: keep-alive HTTP connections that say nothing
// more are closed after EVENTSERVER_HTTP_IDLE_TIMEOUT (the probe kept 200
// of them open for good).
func TestAbuseIdleKeepAlive(t *testing.T) {
	base := startBinary(t, "EVENTSERVER_HTTP_IDLE_TIMEOUT=1s")
	addr := strings.TrimPrefix(base, "http://")
	const n = 50
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz over keep-alive: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		conns = append(conns, c)
	}
	// Each connection must be closed by the server: a read ends with EOF
	// (not with our own deadline) well within the test's bound.
	closed := make(chan error, n)
	for _, c := range conns {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, err := c.Read(make([]byte, 1))
			closed <- err
		}()
	}
	for range n {
		if err := <-closed; !errors.Is(err, io.EOF) {
			t.Fatalf("an idle keep-alive connection was not closed by the server: %v", err)
		}
	}
	wellBehaved(t, base)
}

// TestAbuseConnectionCaps: Engine.IO-only websockets from one address are
// bounded by EVENTSERVER_MAX_CONNECTIONS_PER_IP (429) and closed by the
// connect timeout; the instance's total is bounded by
// EVENTSERVER_MAX_CONNECTIONS (503). The probe opened 19,000 from one
// address, all accepted, each holding memory for 45 s.
func TestAbuseConnectionCaps(t *testing.T) {
	base := startBinary(t, "EVENTSERVER_MAX_CONNECTIONS_PER_IP=20", "EVENTSERVER_MAX_CONNECTIONS=25",
		"EVENTSERVER_CONNECT_TIMEOUT=1500ms", "EVENTSERVER_TRUSTED_PROXIES=127.0.0.1")
	url := "ws" + strings.TrimPrefix(base, "http") + "/socket.io/?EIO=4&transport=websocket"
	dial := func(forwardedFor string) (*websocket.Conn, int) {
		h := http.Header{}
		if forwardedFor != "" {
			h.Set("X-Forwarded-For", forwardedFor)
		}
		ws, resp, err := websocket.DefaultDialer.Dial(url, h)
		if err != nil {
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { ws.Close() })
		return ws, http.StatusSwitchingProtocols
	}
	var open []*websocket.Conn
	refused := 0
	for range 30 {
		ws, code := dial("")
		switch code {
		case http.StatusSwitchingProtocols:
			open = append(open, ws)
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("status %d", code)
		}
	}
	if len(open) != 20 || refused != 10 {
		t.Fatalf("from one address: %d open, %d refused; want 20 and 10", len(open), refused)
	}
	// Behind the trusted proxy (127.0.0.1), each forwarded client has its
	// own share; the instance's total (25) is the next bound: 503.
	for i := range 5 {
		if _, code := dial(fmt.Sprintf("198.51.100.%d", i+1)); code != http.StatusSwitchingProtocols {
			t.Fatalf("forwarded client %d: %d", i, code)
		}
	}
	if _, code := dial("198.51.100.99"); code != http.StatusServiceUnavailable {
		t.Fatalf("over the instance's total: %d, want 503", code)
	}
	if got := metricAt(t, base, `eventserver_connections_refused_total{reason="per_ip"}`); got != 10 {
		t.Errorf("per_ip refusals %v, want 10", got)
	}
	if got := metricAt(t, base, `eventserver_connections_refused_total{reason="total"}`); got != 1 {
		t.Errorf("total refusals %v, want 1", got)
	}
	// None of them joins a namespace: the connect timeout closes them all.
	for i, ws := range open {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("websocket %d still open 10 s after its connect timeout", i)
				}
				break
			}
		}
	}
	checkFor(t, 10*time.Second, func() error {
		if n := metricAt(t, base, "eventserver_engineio_sessions"); n != 0 {
			return fmt.Errorf("%v sessions still open", n)
		}
		return nil
	})
	wellBehaved(t, base)
}

// TestAbuseHeaders: a header block over EVENTSERVER_HTTP_MAX_HEADER_BYTES
// is refused (431) before any handler runs.
func TestAbuseHeaders(t *testing.T) {
	base := startBinary(t, "EVENTSERVER_HTTP_MAX_HEADER_BYTES=8KiB")
	req, _ := http.NewRequest(http.MethodGet, base+"/socket.io/?EIO=4&transport=polling", nil)
	req.Header.Set("X-Filler", strings.Repeat("x", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d, want 431", resp.StatusCode)
	}
	wellBehaved(t, base)
}
