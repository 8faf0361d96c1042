package conformance

// Engine.IO v4 cases against an echo server (every message sent back as
// it came: text as text, binary as binary).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestEngineIO(t *testing.T) {
	runSuite(t, engineIOTargets(), engineIOCases)
}

// eio is a client of the target's plain Engine.IO echo server.
func eio(t *testing.T, r *targetRun) *client {
	return newClient(t, r.url(t, "engineio", eioPath), eioPath)
}

var engineIOCases = []testCase{
	{"handshake/polling", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		st, body, h, err := c.do("GET", c.url("EIO", "4", "transport", "polling"), "", reqTimeout)
		if err != nil || st != http.StatusOK {
			t.Fatalf("GET: %d %q %v", st, body, err)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q, want text/plain", ct)
		}
		if o := parseOpen(t, body); !slices.Equal(o.Upgrades, []string{"websocket"}) {
			t.Errorf("upgrades %v, want [websocket]", o.Upgrades)
		}
	}},
	{"handshake/errors", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		// The codes are Node's: 0 transport unknown, 1 session ID unknown,
		// 2 bad handshake method, 5 unsupported protocol version.
		for _, tc := range []struct {
			method string
			kv     []string
			code   int
		}{
			{"GET", []string{"transport", "polling"}, 5},
			{"GET", []string{"EIO", "abc", "transport", "polling"}, 5},
			{"GET", []string{"EIO", "3", "transport", "polling"}, 5},
			{"GET", []string{"EIO", "5", "transport", "polling"}, 5},
			{"GET", []string{"EIO", "4"}, 0},
			{"GET", []string{"EIO", "4", "transport", "abc"}, 0},
			{"POST", []string{"EIO", "4", "transport", "polling"}, 2},
			{"PUT", []string{"EIO", "4", "transport", "polling"}, 2},
			{"GET", []string{"EIO", "4", "transport", "polling", "sid", "no-such-sid"}, 1},
			{"POST", []string{"EIO", "4", "transport", "polling", "sid", "no-such-sid"}, 1},
		} {
			body := ""
			if tc.method != "GET" {
				body = "4x"
			}
			u := c.url(tc.kv...)
			st, got, _, err := c.do(tc.method, u, body, reqTimeout)
			if err != nil || st != http.StatusBadRequest {
				t.Errorf("%s %s: %d %q %v; want 400", tc.method, u, st, got, err)
				continue
			}
			var e struct {
				Code    *int   `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal([]byte(got), &e); err != nil || e.Code == nil || *e.Code != tc.code {
				t.Errorf("%s %s: body %q, want JSON with code %d", tc.method, u, got, tc.code)
			}
		}
	}},
	{"handshake/websocket", func(t *testing.T, r *targetRun) {
		w, o := eio(t, r).openWS(false)
		if len(o.Upgrades) != 0 {
			t.Errorf("upgrades %v over websocket, want []", o.Upgrades)
		}
		w.send("4hello")
		w.expect("4hello")
	}},
	{"handshake/websocket-errors", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		for _, kv := range [][]string{
			{"transport", "websocket"},
			{"EIO", "abc", "transport", "websocket"},
			{"EIO", "4", "transport", "abc"},
			{"EIO", "4", "transport", "websocket", "sid", "no-such-sid"},
		} {
			// Node refuses a bad transport or sid with 400 but upgrades
			// before it checks EIO, then closes the websocket.
			refusedWS(t, c, "ws"+strings.TrimPrefix(c.url(kv...), "http"))
		}
	}},
	{"polling/text", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		c.mustPost(sid, "4hello")
		if got := c.collect(sid, 1); got[0] != "4hello" {
			t.Fatalf("got %q, want 4hello", got)
		}
	}},
	{"polling/several-packets", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		want := []string{"4hello", "4€ wörld", "4"}
		c.mustPost(sid, strings.Join(want, "\x1e"))
		if got := c.collect(sid, 3); !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}},
	{"polling/binary-base64", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		c.mustPost(sid, "4hello\x1ebAQIDBA==")
		if got := c.collect(sid, 2); !slices.Equal(got, []string{"4hello", "bAQIDBA=="}) {
			t.Fatalf("got %q, want [4hello bAQIDBA==]", got)
		}
	}},
	{"polling/one-pending-get", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		type answer struct {
			st   int
			body string
			err  error
		}
		answers := make(chan answer, 2)
		for range 2 {
			go func() {
				st, body, err := c.get(sid)
				answers <- answer{st, body, err}
			}()
		}
		a, b := <-answers, <-answers
		if a.st != http.StatusOK {
			a, b = b, a
		}
		// The pending GET ends with a close packet, the second is refused
		// (Node answers 400; the protocol suite also allows 500).
		if a.err != nil || a.st != http.StatusOK || a.body != "1" {
			t.Errorf("first GET: %d %q %v; want 200 \"1\"", a.st, a.body, a.err)
		}
		if b.err != nil || (b.st != http.StatusBadRequest && b.st != http.StatusInternalServerError) {
			t.Errorf("second GET: %d %q %v; want 400 (or 500)", b.st, b.body, b.err)
		}
		c.waitGone(sid, time.Second)
	}},
	{"polling/invalid-packet-closes", func(t *testing.T, r *targetRun) {
		// Defect (1): POST "abc" used to answer 200 and leave the session
		// open. Node closes it (the POST's own status varies: 200 or 400).
		c := eio(t, r)
		sid, _ := c.handshake()
		st, body, err := c.post(sid, "abc")
		t.Logf("POST abc: %d %q %v", st, body, err)
		c.waitGone(sid, time.Second)
	}},
	{"polling/close-packet", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		closeRace(t, c, sid, true)
		c.waitGone(sid, time.Second)
	}},
	{"polling/close-race-100", func(t *testing.T, r *targetRun) {
		// Defect (2): a GET racing a close packet could hang for good.
		c := eio(t, r)
		outcomes := map[string]int{}
		for i := range 100 {
			sid, _ := c.handshake()
			outcomes[closeRace(t, c, sid, i%2 == 0)]++
			if t.Failed() {
				break
			}
			c.waitGone(sid, time.Second)
		}
		t.Logf("GET outcomes: %v", outcomes)
	}},
	{"websocket/text", func(t *testing.T, r *targetRun) {
		w, _ := eio(t, r).openWS(false)
		w.send("4hello")
		w.expect("4hello")
		w.send("4€")
		w.expect("4€")
	}},
	{"websocket/binary", func(t *testing.T, r *targetRun) {
		w, _ := eio(t, r).openWS(false)
		w.sendBinary([]byte{1, 2, 3, 4})
		w.expectBinary([]byte{1, 2, 3, 4})
	}},
	{"websocket/invalid-packet-closes", func(t *testing.T, r *targetRun) {
		w, _ := eio(t, r).openWS(false)
		w.send("abc")
		if got := w.waitClosed(2 * time.Second); len(got) != 0 {
			t.Errorf("got %v before the close", got)
		}
	}},
	{"websocket/close-packet", func(t *testing.T, r *targetRun) {
		// Node 6.6 ignores a close packet over websocket (the client is
		// expected to close the websocket itself); closing is as good.
		w, _ := eio(t, r).openWS(false)
		w.send("1")
		w.send("4after")
		if m, ok := w.next(reqTimeout); ok && string(m.data) != "4after" {
			t.Fatalf("after a close packet got %v, want the connection closed or 4after", m)
		} else if ok {
			t.Log("the session ignored the close packet (as Node does)")
		} else {
			t.Logf("the server closed the connection (%v)", w.endErr)
		}
	}},
	{"heartbeat/polling", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		for i := range 3 {
			start := time.Now()
			st, body, err := c.get(sid)
			if err != nil || st != http.StatusOK || body != "2" {
				t.Fatalf("GET %d: %d %q %v; want 200 \"2\"", i, st, body, err)
			}
			if d := time.Since(start); i > 0 && d < pingInterval-100*time.Millisecond {
				t.Errorf("ping %d after %s, want about %s", i, d, pingInterval)
			}
			c.mustPost(sid, "3")
		}
	}},
	{"heartbeat/polling-timeout", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		start := time.Now()
		if st, body, err := c.get(sid); err != nil || st != http.StatusOK || body != "2" {
			t.Fatalf("GET: %d %q %v; want 200 \"2\"", st, body, err)
		}
		// No pong: the session ends pingTimeout after the ping.
		c.waitGone(sid, pingTimeout+2*time.Second)
		if d := time.Since(start); d < pingInterval+pingTimeout-100*time.Millisecond {
			t.Errorf("closed after %s, want at least %s", d, pingInterval+pingTimeout)
		}
	}},
	{"heartbeat/websocket", func(t *testing.T, r *targetRun) {
		w, _ := eio(t, r).openWS(true)
		for range 3 {
			w.expect("2")
			w.send("3")
		}
	}},
	{"heartbeat/websocket-timeout", func(t *testing.T, r *targetRun) {
		w, _ := eio(t, r).openWS(true)
		start := time.Now()
		got := w.waitClosed(pingInterval + pingTimeout + 2*time.Second)
		if len(got) != 1 || string(got[0].data) != "2" {
			t.Errorf("got %v before the close, want one ping", got)
		}
		if d := time.Since(start); d < pingInterval+pingTimeout-100*time.Millisecond {
			t.Errorf("closed after %s, want at least %s", d, pingInterval+pingTimeout)
		}
	}},
	{"upgrade/probe-noop-upgrade", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, o := c.handshake()
		if !slices.Contains(o.Upgrades, "websocket") {
			t.Fatalf("upgrades %v", o.Upgrades)
		}
		w := upgrade(t, c, sid)
		// Heartbeats now go over the websocket.
		w.expect("2")
		w.send("3")
		w.send("4after")
		w.expect("4after")
	}},
	{"upgrade/polling-refused-after", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		w := upgrade(t, c, sid)
		if st, body, err := c.get(sid); err != nil || st != http.StatusBadRequest {
			t.Errorf("GET after upgrade: %d %q %v; want 400", st, body, err)
		}
		if st, body, err := c.post(sid, "4x"); err != nil || st != http.StatusBadRequest {
			t.Errorf("POST after upgrade: %d %q %v; want 400", st, body, err)
		}
		w.send("4still")
		w.expect("4still")
	}},
	{"upgrade/second-websocket-refused", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		w := upgrade(t, c, sid)
		// Node accepts the websocket handshake and closes it at once; a
		// refusal at the HTTP level (400) is as good.
		refusedWS(t, c, c.wsURL(sid))
		w.send("4still")
		w.expect("4still")
	}},
	{"maxpayload/polling-under-limit", func(t *testing.T, r *targetRun) {
		c := eio(t, r)
		sid, _ := c.handshake()
		big := "4" + strings.Repeat("x", maxPayload-1000)
		c.mustPost(sid, big)
		if got := c.collect(sid, 1); got[0] != big {
			t.Fatalf("echo of %d bytes: got %d", len(big), len(got[0]))
		}
	}},
	{"maxpayload/polling-content-length", func(t *testing.T, r *targetRun) {
		body := oversizePayload()
		postRefused(t, eio(t, r), []string{fmt.Sprintf("Content-Length: %d", len(body))}, [][]byte{body})
	}},
	{"maxpayload/polling-chunked", func(t *testing.T, r *targetRun) {
		// Defect (4): a chunked body over maxPayload was cut at the limit
		// and its first packet delivered.
		body := oversizePayload()
		var chunks [][]byte
		for len(body) > 0 {
			n := min(64<<10, len(body))
			chunks = append(chunks, fmt.Appendf(nil, "%x\r\n%s\r\n", n, body[:n]))
			body = body[n:]
		}
		chunks = append(chunks, []byte("0\r\n\r\n"))
		postRefused(t, eio(t, r), []string{"Transfer-Encoding: chunked"}, chunks)
	}},
	{"maxpayload/websocket-under-limit", func(t *testing.T, r *targetRun) {
		w, _ := eio(t, r).openWS(false)
		big := "4" + strings.Repeat("x", maxPayload-1000)
		w.send(big)
		w.expect(big)
	}},
	{"maxpayload/websocket-over-limit", func(t *testing.T, r *targetRun) {
		w, _ := eio(t, r).openWS(false)
		// The writer may fail once the server has closed: fine.
		_ = w.write(websocket.TextMessage, []byte("4"+strings.Repeat("x", maxPayload+1000)))
		if got := w.waitClosed(3 * time.Second); len(got) != 0 {
			t.Errorf("got %v before the close", got)
		}
		t.Logf("close code %d", w.closeCode())
	}},
	{"maxpayload/websocket-compressed", func(t *testing.T, r *targetRun) {
		// Defect (3): a 10 MB message sent compressed passed a 1 MB limit.
		// The target runs with --deflate; when it refuses the extension
		// the message goes uncompressed and must be refused all the same.
		c := newClient(t, r.url(t, "engineio", eioPath, "--deflate"), eioPath)
		w, resp, err := c.dialWS(c.wsURL(""), true, false)
		if err != nil {
			t.Fatalf("websocket dial: %v (%s)", err, statusOf(resp))
		}
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		compressed := strings.Contains(ext, "permessage-deflate")
		t.Logf("Sec-WebSocket-Extensions %q: compressed %v", ext, compressed)
		if r.tg.compresses && !compressed {
			t.Fatalf("the %s target must accept permessage-deflate with --deflate", r.tg.name)
		}
		parseOpen(t, w.expectText())
		w.send("4small")
		w.expect("4small")
		_ = w.write(websocket.TextMessage, []byte("4"+strings.Repeat("\x00", 10_000_000)))
		if got := w.waitClosed(5 * time.Second); len(got) != 0 {
			t.Errorf("got %v before the close", got)
		}
		t.Logf("close code %d", w.closeCode())
	}},
}

// closeRace sends a long-poll GET and a close packet: at the same time, or
// the close once the GET is on the wire (afterGet). The GET must answer at
// once: 200 with a noop (or close) when it was pending, 400 when it came
// after the close. It returns what the GET got.
func closeRace(t *testing.T, c *client, sid string, afterGet bool) string {
	t.Helper()
	var wg sync.WaitGroup
	var st int
	var body string
	var err error
	wrote := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		st, body, _, err = c.doTraced("GET", c.pollingURL(sid), "", reqTimeout, wrote)
	}()
	if afterGet {
		select {
		case <-wrote:
		case <-time.After(reqTimeout):
		}
	}
	c.mustPost(sid, "1")
	wg.Wait()
	switch {
	case err != nil:
		t.Errorf("GET racing a close: %v", err)
	case st == http.StatusBadRequest:
	case st == http.StatusOK && (body == "6" || body == "1"):
	default:
		t.Errorf("GET racing a close: %d %q; want 200 \"6\" or 400", st, body)
	}
	if st == http.StatusBadRequest {
		return "400"
	}
	return fmt.Sprintf("%d %s", st, body)
}

// upgrade moves a polling session to a websocket: probe, noop on the
// pending GET, upgrade, and a first echo that proves it is done. The
// websocket is raw until the caller says otherwise.
func upgrade(t *testing.T, c *client, sid string) *wsConn {
	t.Helper()
	w, resp, err := c.dialWS(c.wsURL(sid), false, true)
	if err != nil {
		t.Fatalf("websocket dial: %v (%s)", err, statusOf(resp))
	}
	w.send("2probe")
	w.expect("3probe")
	// The GET pending (or sent) during the upgrade ends with a noop.
	deadline := time.Now().Add(2 * time.Second)
	for noop := false; !noop; {
		st, body, err := c.get(sid)
		if err != nil || st != http.StatusOK {
			t.Fatalf("GET during upgrade: %d %q %v; want 200 \"6\"", st, body, err)
		}
		for _, p := range splitPayload(body) {
			switch p {
			case "6":
				noop = true
			case "2":
				c.mustPost(sid, "3")
			default:
				t.Fatalf("GET during upgrade: %q; want a noop", body)
			}
		}
		if !noop && time.Now().After(deadline) {
			t.Fatal("no noop within 2s of the probe")
		}
	}
	w.send("5")
	w.send("4hello")
	for {
		s := w.expectText()
		if s == "2" {
			w.send("3")
			continue
		}
		if s != "4hello" {
			t.Fatalf("after upgrade: %q, want 4hello", s)
		}
		return w
	}
}

// oversizePayload is two packets, the first complete, together over
// maxPayload.
func oversizePayload() []byte {
	half := maxPayload * 6 / 10
	return []byte("4" + strings.Repeat("a", half) + "\x1e4" + strings.Repeat("b", half))
}

// postRefused opens a session, posts a body over maxPayload (framed by the
// caller) and wants it answered 413 with nothing of it delivered; the
// session stays usable, as on Node.
func postRefused(t *testing.T, c *client, headers []string, chunks [][]byte) {
	t.Helper()
	sid, _ := c.handshake()
	if st := c.rawPost(sid, headers, chunks); st != http.StatusRequestEntityTooLarge {
		t.Errorf("POST over maxPayload: %d, want 413", st)
	}
	c.mustPost(sid, "4marker")
	if got := c.collect(sid, 1); got[0] != "4marker" {
		t.Fatalf("after the refused POST got %.60q first, want 4marker (nothing of the refused body)", got[0])
	}
}

// refusedWS wants a websocket at u refused: 400 to the handshake, or
// upgraded and then closed by the server without any message.
func refusedWS(t *testing.T, c *client, u string) {
	t.Helper()
	w, resp, err := c.dialWS(u, false, true)
	if err == nil {
		if got := w.waitClosed(2 * time.Second); len(got) != 0 {
			t.Errorf("%s: got %v, want a refusal", u, got)
		}
	} else if resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("%s: %v (%s), want 400 or a closed websocket", u, err, statusOf(resp))
	}
}
