package conformance

// The raw clients: HTTP long-polling with net/http (and a bare TCP writer
// for bodies whose framing must be exact), websocket with gorilla/websocket,
// whose Dialer.EnableCompression offers permessage-deflate and then
// compresses every message, which is what the compressed maxPayload case
// needs; a hand-written frame writer would have to reimplement deflate
// framing for no gain. Every wait has a deadline.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// reqTimeout bounds one HTTP request that should answer at once or within
// a ping interval.
const reqTimeout = 3 * time.Second

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// client talks to one server at one path ("/engine.io/" or "/socket.io/").
type client struct {
	t    *testing.T
	base string // http://127.0.0.1:PORT
	path string
}

func newClient(t *testing.T, base, path string) *client {
	return &client{t: t, base: base, path: path}
}

// url builds base+path?EIO=4&transport=...&sid=... from key/value pairs;
// a pair whose value is "-" is left out.
func (c *client) url(kv ...string) string {
	q := []string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "-" {
			q = append(q, url.QueryEscape(kv[i])+"="+url.QueryEscape(kv[i+1]))
		}
	}
	return c.base + c.path + "?" + strings.Join(q, "&")
}

func (c *client) pollingURL(sid string) string {
	return c.url("EIO", "4", "transport", "polling", "sid", sid)
}

// do runs one request with a deadline and returns status and body.
func (c *client) do(method, u, body string, timeout time.Duration) (int, string, http.Header, error) {
	return c.doTraced(method, u, body, timeout, nil)
}

// doTraced is do that closes wrote once the request is on the wire.
func (c *client) doTraced(method, u, body string, timeout time.Duration, wrote chan struct{}) (int, string, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if wrote != nil {
		var once sync.Once
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(wrote) }) },
		})
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, "", nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, string(b), resp.Header, err
	}
	return resp.StatusCode, string(b), resp.Header, nil
}

// openPacket is the handshake's "0{...}".
type openPacket struct {
	Sid          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int      `json:"pingInterval"`
	PingTimeout  int      `json:"pingTimeout"`
	MaxPayload   int      `json:"maxPayload"`
}

// parseOpen checks an open packet: "0" and exactly the five fields.
func parseOpen(t *testing.T, pkt string) openPacket {
	t.Helper()
	if !strings.HasPrefix(pkt, "0") {
		t.Fatalf("handshake packet %q does not start with 0", pkt)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(pkt[1:]), &fields); err != nil {
		t.Fatalf("handshake packet %q: %v", pkt, err)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"}; !slices.Equal(keys, want) {
		t.Fatalf("handshake fields %v, want %v", keys, want)
	}
	var o openPacket
	if err := json.Unmarshal([]byte(pkt[1:]), &o); err != nil {
		t.Fatalf("handshake packet %q: %v", pkt, err)
	}
	if o.Sid == "" || o.PingInterval != int(pingInterval/time.Millisecond) ||
		o.PingTimeout != int(pingTimeout/time.Millisecond) || o.MaxPayload != maxPayload {
		t.Fatalf("handshake %+v: want a sid, pingInterval 300, pingTimeout 200, maxPayload 1000000", o)
	}
	return o
}

// handshake opens a long-polling session.
func (c *client) handshake() (string, openPacket) {
	c.t.Helper()
	st, body, _, err := c.do("GET", c.url("EIO", "4", "transport", "polling"), "", reqTimeout)
	if err != nil || st != http.StatusOK {
		c.t.Fatalf("handshake: %d %q %v", st, body, err)
	}
	pkts := splitPayload(body)
	if len(pkts) != 1 {
		c.t.Fatalf("handshake payload %q: want one packet", body)
	}
	o := parseOpen(c.t, pkts[0])
	return o.Sid, o
}

// get is one long-poll GET.
func (c *client) get(sid string) (int, string, error) {
	st, body, _, err := c.do("GET", c.pollingURL(sid), "", reqTimeout)
	return st, body, err
}

// post sends a payload.
func (c *client) post(sid, payload string) (int, string, error) {
	st, body, _, err := c.do("POST", c.pollingURL(sid), payload, reqTimeout)
	return st, body, err
}

// mustPost posts a payload and wants 200 "ok".
func (c *client) mustPost(sid, payload string) {
	c.t.Helper()
	st, body, err := c.post(sid, payload)
	if err != nil || st != http.StatusOK || body != "ok" {
		c.t.Fatalf("POST %.40q: %d %q %v; want 200 \"ok\"", payload, st, body, err)
	}
}

func splitPayload(body string) []string { return strings.Split(body, "\x1e") }

// collect long-polls until it has n packets other than pings ("2", which
// it answers with "3") and noops ("6").
func (c *client) collect(sid string, n int) []string {
	c.t.Helper()
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			c.t.Fatalf("after 5s: got %d packets %.200q, want %d", len(got), got, n)
		}
		st, body, err := c.get(sid)
		if err != nil || st != http.StatusOK {
			c.t.Fatalf("GET: %d %.200q %v (after %.200q)", st, body, err, got)
		}
		for _, p := range splitPayload(body) {
			switch p {
			case "2":
				c.mustPost(sid, "3")
			case "6":
			default:
				got = append(got, p)
			}
		}
	}
	if len(got) != n {
		c.t.Fatalf("got packets %.200q, want %d", got, n)
	}
	return got
}

// waitGone long-polls until the session is gone (400), accepting on the way
// only answers made of close ("1") and noop ("6") packets: a ping or a
// message means the session is still open.
func (c *client) waitGone(sid string, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, body, err := c.get(sid)
		if err == nil && st == http.StatusBadRequest {
			return
		}
		if err != nil || st != http.StatusOK {
			c.t.Fatalf("GET: %d %q %v; want 400 (session closed)", st, body, err)
		}
		for _, p := range splitPayload(body) {
			if p != "1" && p != "6" {
				c.t.Fatalf("GET: 200 %.100q: the session is still open", body)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("session still there after %s", within)
		}
	}
}

// rawPost sends a POST over a fresh TCP connection with exactly these
// headers and body chunks (written as they are: the caller frames them)
// and returns the response status. The body is written concurrently with
// reading the answer: a server may answer before it has read everything.
func (c *client) rawPost(sid string, headers []string, chunks [][]byte) int {
	c.t.Helper()
	u, err := url.Parse(c.pollingURL(sid))
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, reqTimeout)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: text/plain;charset=UTF-8\r\n" +
		strings.Join(headers, "\r\n") + "\r\n\r\n"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := conn.Write([]byte(head)); err != nil {
			return
		}
		for _, ch := range chunks {
			if _, err := conn.Write(ch); err != nil {
				return // the server answered and closed: fine
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		c.t.Fatalf("raw POST: no response: %v", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	_ = conn.Close() // ends the writer if it is still writing
	wg.Wait()
	return resp.StatusCode
}

// wsMsg is one websocket message.
type wsMsg struct {
	binary bool
	data   []byte
}

func (m wsMsg) String() string {
	if m.binary {
		return fmt.Sprintf("binary %v", m.data)
	}
	return fmt.Sprintf("%.100q", m.data)
}

// wsConn is a websocket with a reader goroutine. Unless raw, it answers
// Engine.IO pings ("2") with pongs ("3") and does not deliver them.
type wsConn struct {
	t      *testing.T
	c      *websocket.Conn
	resp   *http.Response
	raw    bool // fixed before the reader starts
	msgs   chan wsMsg
	done   chan struct{} // closed when the reader has ended
	endErr error         // why it ended, set before done closes
	wmu    sync.Mutex
}

// wsURL is the websocket URL for sid ("" for a new session).
func (c *client) wsURL(sid string) string {
	u := c.url("EIO", "4", "transport", "websocket", "sid", orDash(sid))
	return "ws" + strings.TrimPrefix(u, "http")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dialWS opens a websocket (offering permessage-deflate when compress).
func (c *client) dialWS(u string, compress, raw bool) (*wsConn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: reqTimeout, EnableCompression: compress}
	conn, resp, err := d.Dial(u, nil)
	if err != nil {
		return nil, resp, err
	}
	w := &wsConn{t: c.t, c: conn, resp: resp, raw: raw, msgs: make(chan wsMsg, 1024), done: make(chan struct{})}
	go w.read()
	c.t.Cleanup(func() {
		_ = w.c.Close()
		<-w.done
	})
	return w, resp, nil
}

func (w *wsConn) read() {
	defer close(w.done)
	for {
		typ, data, err := w.c.ReadMessage()
		if err != nil {
			w.endErr = err
			return
		}
		if !w.raw && typ == websocket.TextMessage && string(data) == "2" {
			_ = w.write(websocket.TextMessage, []byte("3"))
			continue
		}
		select {
		case w.msgs <- wsMsg{binary: typ == websocket.BinaryMessage, data: data}:
		default:
			w.endErr = errors.New("test reader: too many unread messages")
			return
		}
	}
}

func (w *wsConn) write(typ int, data []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return w.c.WriteMessage(typ, data)
}

// send writes a text message; failing to is fatal.
func (w *wsConn) send(s string) {
	w.t.Helper()
	if err := w.write(websocket.TextMessage, []byte(s)); err != nil {
		w.t.Fatalf("websocket send %.40q: %v", s, err)
	}
}

func (w *wsConn) sendBinary(b []byte) {
	w.t.Helper()
	if err := w.write(websocket.BinaryMessage, b); err != nil {
		w.t.Fatalf("websocket send binary: %v", err)
	}
}

// next returns the next message; ok is false when the connection ended.
func (w *wsConn) next(timeout time.Duration) (wsMsg, bool) {
	w.t.Helper()
	select {
	case m := <-w.msgs:
		return m, true
	default:
	}
	select {
	case m := <-w.msgs:
		return m, true
	case <-w.done:
		select {
		case m := <-w.msgs:
			return m, true
		default:
			return wsMsg{}, false
		}
	case <-time.After(timeout):
		w.t.Fatalf("no websocket message within %s", timeout)
		return wsMsg{}, false
	}
}

// expect wants the next message to be text want.
func (w *wsConn) expect(want string) {
	w.t.Helper()
	m, ok := w.next(reqTimeout)
	if !ok {
		w.t.Fatalf("connection ended (%v), want %q", w.endErr, want)
	}
	if m.binary || string(m.data) != want {
		w.t.Fatalf("got %v, want %.100q", m, want)
	}
}

// expectText returns the next message, which must be text.
func (w *wsConn) expectText() string {
	w.t.Helper()
	m, ok := w.next(reqTimeout)
	if !ok {
		w.t.Fatalf("connection ended (%v), want a message", w.endErr)
	}
	if m.binary {
		w.t.Fatalf("got %v, want text", m)
	}
	return string(m.data)
}

func (w *wsConn) expectBinary(want []byte) {
	w.t.Helper()
	m, ok := w.next(reqTimeout)
	if !ok {
		w.t.Fatalf("connection ended (%v), want binary %v", w.endErr, want)
	}
	if !m.binary || string(m.data) != string(want) {
		w.t.Fatalf("got %v, want binary %v", m, want)
	}
}

// waitClosed waits until the server ends the connection and returns the
// messages that came before.
func (w *wsConn) waitClosed(within time.Duration) []wsMsg {
	w.t.Helper()
	var got []wsMsg
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case m := <-w.msgs:
			got = append(got, m)
		case <-w.done:
			for {
				select {
				case m := <-w.msgs:
					got = append(got, m)
				default:
					return got
				}
			}
		case <-timer.C:
			w.t.Fatalf("connection still open after %s (got %v)", within, got)
		}
	}
}

// closeCode is the close frame's code, or -1 without one.
func (w *wsConn) closeCode() int {
	var ce *websocket.CloseError
	if errors.As(w.endErr, &ce) {
		return ce.Code
	}
	return -1
}

// openWS opens an Engine.IO session over websocket only.
func (c *client) openWS(raw bool) (*wsConn, openPacket) {
	c.t.Helper()
	w, resp, err := c.dialWS(c.wsURL(""), false, raw)
	if err != nil {
		c.t.Fatalf("websocket dial: %v (%s)", err, statusOf(resp))
	}
	o := parseOpen(c.t, w.expectText())
	return w, o
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	return resp.Status
}
