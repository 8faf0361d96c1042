package engineio

import (
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
	"github.com/gorilla/websocket"
)

func TestHandshakePolling(t *testing.T) {
	ts := newServer(t, Config{PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond, MaxPayload: 1e6,
		KeepHeaders: []string{"user-agent", "X-Absent"}}, true)
	code, body := ts.req("GET", "EIO=4&transport=polling", "")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	h := parseOpen(t, body)
	if len(h.Sid) != 20 || h.PingInterval != 300 || h.PingTimeout != 200 || h.MaxPayload != 1e6 ||
		len(h.Upgrades) != 1 || h.Upgrades[0] != "websocket" {
		t.Fatalf("handshake %+v", h)
	}
	if other := ts.open(); other == h.Sid {
		t.Fatal("two sessions share a sid")
	}
	e := ts.next("conn")
	if e.c.ID() != h.Sid || e.c.Transport() != TransportPolling || e.c.Query().Get("EIO") != "4" || e.c.RemoteAddr() == "" {
		t.Fatalf("conn %s %s %v %s", e.c.ID(), e.c.Transport(), e.c.Query(), e.c.RemoteAddr())
	}
	if h := e.c.Header(); len(h) != 1 || !strings.HasPrefix(h.Get("User-Agent"), "Go-http-client") {
		t.Fatalf("kept headers %v", h)
	}
}

func TestBadRequests(t *testing.T) {
	ts := newServer(t, Config{CheckRequest: func(r *http.Request) error {
		if r.Header.Get("Origin") == "https://evil.example" {
			return errors.New("origin not allowed")
		}
		return nil
	}}, true)
	sid := ts.open()
	for _, tc := range []struct {
		name, method, query, origin string
		status                      int
		body                        string
	}{
		{"no EIO", "GET", "transport=polling", "", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"EIO 3", "GET", "EIO=3&transport=polling", "", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"no transport", "GET", "EIO=4", "", 400, `{"code":0,"message":"Transport unknown"}`},
		{"bad transport", "GET", "EIO=4&transport=abc", "", 400, `{"code":0,"message":"Transport unknown"}`},
		{"unknown sid", "GET", "EIO=4&transport=polling&sid=nope", "", 400, `{"code":1,"message":"Session ID unknown"}`},
		{"POST handshake", "POST", "EIO=4&transport=polling", "", 400, `{"code":2,"message":"Bad handshake method"}`},
		{"PUT", "PUT", "EIO=4&transport=polling&sid=" + sid, "", 400, `{"code":3,"message":"Bad request"}`},
		{"websocket without upgrade", "GET", "EIO=4&transport=websocket", "", 400, `{"code":3,"message":"Bad request"}`},
		{"forbidden", "GET", "EIO=4&transport=polling", "https://evil.example", 403, `{"code":4,"message":"origin not allowed"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(tc.method, ts.url+"?"+tc.query, nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			code, body := do(t, r)
			if code != tc.status || body != tc.body {
				t.Fatalf("got %d %s, want %d %s", code, body, tc.status, tc.body)
			}
		})
	}
	// A websocket upgrade is checked too.
	h := http.Header{"Origin": {"https://evil.example"}}
	_, resp, err := websocket.DefaultDialer.Dial(ts.wsURL("EIO=4&transport=websocket"), h)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("forbidden websocket: %v %v", err, resp)
	}
}

func TestPollingPayloads(t *testing.T) {
	ts := newServer(t, Config{}, true)
	sid := ts.open()
	if code, body := ts.post(sid, "4hello\x1e4world\x1ebAQIDBA=="); code != 200 || body != "ok" {
		t.Fatalf("post: %d %s", code, body)
	}
	if code, body := ts.get(sid); code != 200 || body != "4hello\x1e4world\x1ebAQIDBA==" {
		t.Fatalf("get: %d %q", code, body)
	}
	ts.next("msg")
	ts.next("msg")
	if e := ts.next("msg"); !e.binary || e.data != "\x01\x02\x03\x04" {
		t.Fatalf("binary message %+v", e)
	}
}

func TestPollingHeartbeatAndTimeout(t *testing.T) {
	ts := newServer(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 100 * time.Millisecond}, true)
	sid := ts.open()
	for range 2 {
		if code, body := ts.get(sid); code != 200 || body != "2" {
			t.Fatalf("get: %d %q", code, body)
		}
		if code, _ := ts.post(sid, "3"); code != 200 {
			t.Fatal("pong refused")
		}
		ts.next("pong")
	}
	// No pong now: the session times out.
	if e := ts.next("close"); e.reason != ReasonPingTimeout {
		t.Fatalf("reason %q", e.reason)
	}
	if code, _ := ts.get(sid); code != 400 {
		t.Fatalf("GET after timeout: %d", code)
	}
}

func TestSecondGETClosesSession(t *testing.T) {
	ts := newServer(t, Config{}, true)
	sid := ts.open()
	first := ts.asyncGet(sid)
	testwait.For(t, 5*time.Second, func() error { return ts.pending(sid) })
	if code, body := ts.get(sid); code != 400 || !strings.Contains(body, `"code":3`) {
		t.Fatalf("second GET: %d %s", code, body)
	}
	if got := recv(t, first); got != "200 1" {
		t.Fatalf("first GET: %q", got)
	}
	if e := ts.next("close"); e.reason != ReasonTransportError || !errors.Is(e.err, ErrPollOverlap) {
		t.Fatalf("close %+v", e)
	}
	if code, _ := ts.get(sid); code != 400 {
		t.Fatal("session still open")
	}
}

func TestInvalidPacketClosesSession(t *testing.T) {
	for _, body := range []string{"abc", "4ok\x1ebnot-base64!", "4ok\x1e", "2"} {
		t.Run(body, func(t *testing.T) {
			ts := newServer(t, Config{}, true)
			sid := ts.open()
			if code, _ := ts.post(sid, body); code != 400 {
				t.Fatalf("post %q: %d", body, code)
			}
			if code, _ := ts.get(sid); code != 400 {
				t.Fatalf("GET after invalid packet: %d", code)
			}
			if e := ts.next("close"); e.reason != ReasonParseError {
				t.Fatalf("reason %q", e.reason)
			}
			ts.none("msg")
		})
	}
}

func TestClosePacketAnswersPendingGET(t *testing.T) {
	ts := newServer(t, Config{}, true)
	sid := ts.open()
	pending := ts.asyncGet(sid)
	testwait.For(t, 5*time.Second, func() error { return ts.pending(sid) })
	if code, _ := ts.post(sid, "1"); code != 200 {
		t.Fatal("close packet refused")
	}
	if got := recv(t, pending); got != "200 6" {
		t.Fatalf("pending GET: %q", got)
	}
	if e := ts.next("close"); e.reason != ReasonTransportClose {
		t.Fatalf("reason %q", e.reason)
	}
	if code, _ := ts.get(sid); code != 400 {
		t.Fatal("session still open")
	}
}

// A GET that the client sent before its close packet but that the
// server sees after it is answered with a noop, not refused.
func TestGETAfterClosePacket(t *testing.T) {
	ts := newServer(t, Config{}, true)
	sid := ts.open()
	if code, _ := ts.post(sid, "1"); code != 200 {
		t.Fatal("close packet refused")
	}
	if code, body := ts.get(sid); code != 200 || body != "6" {
		t.Fatalf("GET after close packet: %d %q", code, body)
	}
	if code, _ := ts.get(sid); code != 400 {
		t.Fatal("session still open")
	}
	if ts.s.Len() != 0 {
		t.Fatal("session kept")
	}
}

func TestServerCloseDeliversQueue(t *testing.T) {
	ts := newServer(t, Config{}, false)
	sid := ts.open()
	c := ts.next("conn").c
	_ = c.Send([]byte("bye"), false)
	c.Close(ReasonForced)
	if code, body := ts.get(sid); code != 200 || body != "4bye\x1e1" {
		t.Fatalf("GET after server close: %d %q", code, body)
	}
	if code, _ := ts.get(sid); code != 400 {
		t.Fatal("session still open")
	}
}

// chunked hides the length of a body so that it is sent chunked.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestPollingMaxPayload(t *testing.T) {
	ts := newServer(t, Config{MaxPayload: 100}, true)
	sid := ts.open()
	big := strings.Repeat("4"+strings.Repeat("a", 19)+"\x1e", 9) + "4end" // 184 bytes, all valid
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"content-length", strings.NewReader(big)},
		{"chunked", chunked{strings.NewReader(big)}},
	} {
		r, _ := http.NewRequest("POST", ts.url+"?EIO=4&transport=polling&sid="+sid, tc.body)
		if code, _ := do(t, r); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d", tc.name, code)
		}
	}
	if code, _ := ts.post(sid, "4small"); code != 200 {
		t.Fatal("session unusable after 413")
	}
	if e := ts.next("msg"); e.data != "small" {
		t.Fatalf("delivered %q before the small message", e.data)
	}
	ts.none("msg")
}

func TestWebSocketMessages(t *testing.T) {
	ts := newServer(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 1000 * time.Millisecond}, true)
	ws := ts.dial("EIO=4&transport=websocket")
	h := parseOpen(t, readText(t, ws))
	if len(h.Upgrades) != 0 || h.Sid == "" {
		t.Fatalf("open %+v", h)
	}
	if c := ts.next("conn").c; c.Transport() != TransportWebSocket || c.ID() != h.Sid {
		t.Fatal("conn transport or id")
	}
	send(t, ws, websocket.TextMessage, "4hello é")
	if typ, got := readSkipPing(t, ws); typ != websocket.TextMessage || got != "4hello é" {
		t.Fatalf("echo %d %q", typ, got)
	}
	send(t, ws, websocket.BinaryMessage, "\x00\x01\xff")
	if typ, got := readSkipPing(t, ws); typ != websocket.BinaryMessage || got != "\x00\x01\xff" {
		t.Fatalf("binary echo %d %q", typ, got)
	}
	// A large message spans several reads; a fragmented one is joined.
	large := "4" + strings.Repeat("x", 300_000)
	send(t, ws, websocket.TextMessage, large)
	if _, got := readSkipPing(t, ws); got != large {
		t.Fatalf("large echo: %d bytes", len(got))
	}
	w, _ := ws.NextWriter(websocket.TextMessage)
	_, _ = w.Write([]byte("4frag"))
	_ = w.Close()
	if _, got := readSkipPing(t, ws); got != "4frag" {
		t.Fatalf("echo %q", got)
	}
	for readText(t, ws) != "2" {
	}
	send(t, ws, websocket.TextMessage, "3")
	ts.next("pong")
	// A close packet over websocket is ignored, as Node does; closing the
	// socket closes the session.
	send(t, ws, websocket.TextMessage, "1")
	send(t, ws, websocket.TextMessage, "4after")
	if _, got := readSkipPing(t, ws); got != "4after" {
		t.Fatalf("after a close packet: %q", got)
	}
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	if e := ts.next("close"); e.reason != ReasonTransportClose {
		t.Fatalf("reason %q", e.reason)
	}
}

func TestWebSocketPingTimeout(t *testing.T) {
	ts := newServer(t, Config{PingInterval: 30 * time.Millisecond, PingTimeout: 60 * time.Millisecond}, true)
	ws := ts.dial("EIO=4&transport=websocket")
	readText(t, ws)
	if got := readText(t, ws); got != "2" {
		t.Fatalf("ping %q", got)
	}
	if e := ts.next("close"); e.reason != ReasonPingTimeout {
		t.Fatalf("reason %q", e.reason)
	}
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
}

func TestWebSocketMaxPayload(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(ws *websocket.Conn)
	}{
		{"one frame", func(ws *websocket.Conn) {
			_ = ws.WriteMessage(websocket.TextMessage, []byte("4"+strings.Repeat("a", 2000)))
		}},
		{"fragments", func(ws *websocket.Conn) {
			w, _ := ws.NextWriter(websocket.TextMessage)
			for range 4 {
				_, _ = w.Write([]byte(strings.Repeat("a", 400))) // 512-byte buffer: several frames
			}
			_ = w.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, Config{MaxPayload: 1000}, true)
			d := websocket.Dialer{EnableCompression: true, WriteBufferSize: 512}
			ws, resp, err := d.Dial(ts.wsURL("EIO=4&transport=websocket"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
				t.Fatalf("negotiated %q; compression must stay off", ext)
			}
			readText(t, ws)
			tc.write(ws)
			e := ts.next("close")
			if !errors.Is(e.err, ErrMessageTooBig) {
				t.Fatalf("close %+v", e)
			}
			ts.none("msg")
			_, _, err = ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != closeTooBig {
				t.Fatalf("read after too big: %v", err)
			}
		})
	}
}

func TestUpgrade(t *testing.T) {
	ts := newServer(t, Config{}, true)
	sid := ts.open()
	c := ts.next("conn").c
	pending := ts.asyncGet(sid)
	testwait.For(t, 5*time.Second, func() error { return ts.pending(sid) })
	ws := ts.dial("EIO=4&transport=websocket&sid=" + sid)
	send(t, ws, websocket.TextMessage, "2probe")
	if got := readText(t, ws); got != "3probe" {
		t.Fatalf("probe answer %q", got)
	}
	if got := recv(t, pending); got != "200 6" {
		t.Fatalf("pending GET during upgrade: %q", got)
	}
	if code, body := ts.get(sid); code != 200 || body != "6" {
		t.Fatalf("GET during upgrade: %d %q", code, body)
	}
	send(t, ws, websocket.TextMessage, "5")
	ts.next("upgrade")
	if c.Transport() != TransportWebSocket {
		t.Fatal("transport not switched")
	}
	send(t, ws, websocket.TextMessage, "4hi")
	if got := readText(t, ws); got != "4hi" {
		t.Fatalf("echo %q", got)
	}
	if code, _ := ts.get(sid); code != 400 {
		t.Fatal("polling GET accepted after upgrade")
	}
	// A second websocket for the session opens and is closed at once (as Node does).
	second := ts.dial("EIO=4&transport=websocket&sid=" + sid)
	var ce *websocket.CloseError
	if _, _, err := second.ReadMessage(); !errors.As(err, &ce) || ce.Code != closeNormal {
		t.Fatalf("second websocket after upgrade: %v", err)
	}
	send(t, ws, websocket.TextMessage, "4still")
	if got := readText(t, ws); got != "4still" {
		t.Fatalf("echo after the second websocket %q", got)
	}
}

func TestUpgradeFlushesQueue(t *testing.T) {
	ts := newServer(t, Config{}, false)
	sid := ts.open()
	c := ts.next("conn").c
	ws := ts.dial("EIO=4&transport=websocket&sid=" + sid)
	send(t, ws, websocket.TextMessage, "2probe")
	readText(t, ws)
	_ = c.Send([]byte("queued"), false)
	_ = c.Send([]byte{1, 2}, true)
	send(t, ws, websocket.TextMessage, "5")
	if got := readText(t, ws); got != "4queued" {
		t.Fatalf("first after upgrade %q", got)
	}
	if typ, b, err := ws.ReadMessage(); err != nil || typ != websocket.BinaryMessage || string(b) != "\x01\x02" {
		t.Fatalf("binary after upgrade %d %q %v", typ, b, err)
	}
}

func TestWritePrepared(t *testing.T) {
	ts := newServer(t, Config{}, false)
	var wss []*websocket.Conn
	for range 5 {
		ws := ts.dial("EIO=4&transport=websocket")
		readText(t, ws)
		wss = append(wss, ws)
	}
	sid := ts.open()
	var conns []*Conn
	for range 6 {
		conns = append(conns, ts.next("conn").c)
	}
	text, bin := NewPreparedFrame([]byte("hello"), false), NewPreparedFrame([]byte{0xff, 0}, true)
	for _, c := range conns {
		if err := c.WritePrepared(text); err != nil {
			t.Fatal(err)
		}
		if err := c.WritePrepared(bin); err != nil {
			t.Fatal(err)
		}
	}
	for _, ws := range wss {
		if got := readText(t, ws); got != "4hello" {
			t.Fatalf("text %q", got)
		}
		if typ, b, _ := ws.ReadMessage(); typ != websocket.BinaryMessage || string(b) != "\xff\x00" {
			t.Fatalf("binary %q", b)
		}
	}
	if code, body := ts.get(sid); code != 200 || body != "4hello\x1eb/wA=" {
		t.Fatalf("polling %q", body)
	}
}

func TestSlowConsumer(t *testing.T) {
	var slow atomic.Int32
	ts := newServer(t, Config{MaxWriteQueue: 64 << 10, Hooks: Hooks{SlowConsumer: func() { slow.Add(1) }}}, false)
	ws := ts.dial("EIO=4&transport=websocket") // never read
	wsConn := ts.next("conn").c
	sid := ts.open()
	pollConn := ts.next("conn").c
	msg := make([]byte, 32<<10)
	for _, c := range []*Conn{wsConn, pollConn} {
		var err error
		for i := 0; i < 4000 && err == nil; i++ { // at most 128 MB
			err = c.WritePrepared(NewPreparedFrame(msg, true))
		}
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("%s: never disconnected", c.Transport())
		}
		if e := ts.next("close"); e.reason != ReasonSlowConsumer || !errors.Is(e.err, ErrSlowConsumer) {
			t.Fatalf("close %+v", e)
		}
	}
	if slow.Load() != 2 {
		t.Fatalf("slow consumers counted %d", slow.Load())
	}
	_ = ws
	_ = sid
}

func TestConnectTimeout(t *testing.T) {
	ts := newServer(t, Config{ConnectTimeout: 100 * time.Millisecond}, false)
	late, ok := ts.open(), ts.open()
	var okConn *Conn
	for range 2 {
		if c := ts.next("conn").c; c.ID() == ok {
			okConn = c
			c.SetConnected()
		}
	}
	e := ts.next("close")
	if e.c.ID() != late || e.reason != ReasonConnectTimeout {
		t.Fatalf("close %s %q", e.c.ID(), e.reason)
	}
	if ts.s.lookup(ok) != okConn {
		t.Fatal("the connected session was closed")
	}
}

func TestShutdown(t *testing.T) {
	ts := newServer(t, Config{}, true)
	ws := ts.dial("EIO=4&transport=websocket")
	readText(t, ws)
	sid := ts.open()
	pending := ts.asyncGet(sid)
	testwait.For(t, 5*time.Second, func() error { return ts.pending(sid) })
	if err := ts.s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, pending); got != "200 1" {
		t.Fatalf("pending GET at shutdown: %q", got)
	}
	reasons := map[string]bool{}
	for range 2 {
		reasons[ts.next("close").reason] = true
	}
	if !reasons[ReasonShutdown] || len(reasons) != 1 {
		t.Fatalf("reasons %v", reasons)
	}
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("websocket still open")
	}
	if code, _ := ts.req("GET", "EIO=4&transport=polling", ""); code != 503 {
		t.Fatalf("handshake after shutdown: %d", code)
	}
	if ts.s.Len() != 0 {
		t.Fatal("sessions left")
	}
}

func TestCallbackPanicClosesSession(t *testing.T) {
	ts := newServer(t, Config{}, false)
	closed := make(chan string, 1)
	ts.s.OnConnection(func(c *Conn) {
		c.OnMessage(func([]byte, bool) { panic("boom") })
		c.OnClose(func(reason string, _ error) { closed <- reason })
	})
	ws := ts.dial("EIO=4&transport=websocket")
	readText(t, ws)
	send(t, ws, websocket.TextMessage, "4x")
	select {
	case r := <-closed:
		if r != ReasonTransportError {
			t.Fatalf("reason %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not closed")
	}
}

// TestManyPollingClients holds 1,000 long-polling GETs at once and
// answers them all with one prepared broadcast. Each pending GET costs
// net/http's two goroutines (the connection's and its background reader)
// and the client's three; a session adds none of its own.
func TestManyPollingClients(t *testing.T) {
	const n = 1000
	ts := newServer(t, Config{}, false)
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	base := runtime.NumGoroutine()
	var sids []string
	var conns []*Conn
	for range n {
		sids = append(sids, ts.open())
		conns = append(conns, ts.next("conn").c)
	}
	answers := make(chan string, n)
	var wg sync.WaitGroup
	for _, sid := range sids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(ts.url + "?EIO=4&transport=polling&sid=" + sid)
			if err != nil {
				answers <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- string(b)
		}()
	}
	defer wg.Wait()
	for _, sid := range sids {
		testwait.For(t, 10*time.Second, func() error { return ts.pending(sid) })
	}
	if g := runtime.NumGoroutine() - base; g > 5*n+50 {
		t.Errorf("%d goroutines for %d pending GETs", g, n)
	}
	f := NewPreparedFrame([]byte("hi"), false)
	for _, c := range conns {
		if err := c.WritePrepared(f); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if got := recv(t, answers); got != "4hi" {
			t.Fatalf("answer %q", got)
		}
	}
}

// TestCheckRequestOnEveryRequest: the hook sees the handshake, each poll
// and POST, and the upgrade; its error refuses a poll of an open session.
func TestCheckRequestOnEveryRequest(t *testing.T) {
	var calls atomic.Int32
	var deny atomic.Bool
	ts := newServer(t, Config{CheckRequest: func(*http.Request) error {
		calls.Add(1)
		if deny.Load() {
			return errors.New("denied")
		}
		return nil
	}}, true)
	sid := ts.open()
	ts.post(sid, "4a")
	ts.get(sid)
	ws := ts.dial("EIO=4&transport=websocket&sid=" + sid)
	send(t, ws, websocket.TextMessage, "2probe")
	readText(t, ws)
	if n := calls.Load(); n != 4 {
		t.Fatalf("CheckRequest called %d times, want 4", n)
	}
	deny.Store(true)
	if code, body := ts.get(sid); code != 403 || body != `{"code":4,"message":"denied"}` {
		t.Fatalf("denied poll: %d %s", code, body)
	}
}

// TestUpgradeTimeout: a probe that never completes is closed; the
// polling session goes on.
func TestUpgradeTimeout(t *testing.T) {
	ts := newServer(t, Config{UpgradeTimeout: 50 * time.Millisecond}, true)
	sid := ts.open()
	ws := ts.dial("EIO=4&transport=websocket&sid=" + sid)
	send(t, ws, websocket.TextMessage, "2probe")
	readText(t, ws)
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, closeNormal) {
		t.Fatalf("probe not closed: %v", err)
	}
	if code, _ := ts.post(sid, "4still"); code != 200 {
		t.Fatal("session closed with its probe")
	}
	if code, body := ts.get(sid); code != 200 || body != "4still" {
		t.Fatalf("GET after failed upgrade: %d %q", code, body)
	}
	ts.none("close")
}

// TestAdmit: a refused handshake, on either transport, gets the refusal's
// status and an Engine.IO error body and makes no session; an admitted
// session's release runs once, when it closes, whichever way it closes.
func TestAdmit(t *testing.T) {
	var admitted, released atomic.Int32
	var refuse atomic.Bool
	ts := newServer(t, Config{Admit: func(*http.Request) (func(), error) {
		if refuse.Load() {
			return nil, &RefusedError{Status: http.StatusTooManyRequests, Message: "Too many connections from this address"}
		}
		admitted.Add(1)
		return func() { released.Add(1) }, nil
	}}, true)
	sid := ts.open()
	ws := ts.dial("EIO=4&transport=websocket")
	readText(t, ws)
	refuse.Store(true)
	if code, body := ts.req("GET", "EIO=4&transport=polling", ""); code != 429 || body != `{"code":3,"message":"Too many connections from this address"}` {
		t.Fatalf("refused polling handshake: %d %s", code, body)
	}
	_, resp, err := websocket.DefaultDialer.Dial(ts.wsURL("EIO=4&transport=websocket"), nil)
	if err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("refused websocket handshake: %v %v", err, resp)
	}
	if n := ts.s.Len(); n != 2 {
		t.Fatalf("%d sessions, want the 2 admitted", n)
	}
	// Polling session closed by the client; websocket by its transport.
	// (A polling session lingers after its close until the next GET takes
	// the close: it counts until then.)
	ts.post(sid, "1")
	ts.get(sid)
	ws.Close()
	testwait.Until(t, 2*time.Second, "both sessions released", func() bool { return released.Load() == 2 })
	if admitted.Load() != 2 || ts.s.Len() != 0 {
		t.Fatalf("admitted %d, sessions %d", admitted.Load(), ts.s.Len())
	}
}
