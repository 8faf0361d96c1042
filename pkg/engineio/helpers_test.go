package engineio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// event is what the test server's callbacks saw.
type event struct {
	kind   string // "conn", "msg", "close", "upgrade", "pong"
	c      *Conn
	data   string
	binary bool
	reason string
	err    error
}

type tserver struct {
	t      *testing.T
	s      *Server
	url    string // http://127.0.0.1:port/engine.io/
	events chan event
}

// newServer starts an echo server (unless echo is false) on 127.0.0.1.
func newServer(t *testing.T, cfg Config, echo bool) *tserver {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &tserver{t: t, s: s, events: make(chan event, 10000)}
	s.OnConnection(func(c *Conn) {
		ts.events <- event{kind: "conn", c: c}
		c.OnMessage(func(data []byte, binary bool) {
			ts.events <- event{kind: "msg", c: c, data: string(data), binary: binary}
			if echo {
				_ = c.Send(data, binary)
			}
		})
		c.OnClose(func(reason string, err error) { ts.events <- event{kind: "close", c: c, reason: reason, err: err} })
		c.OnUpgrade(func() { ts.events <- event{kind: "upgrade", c: c} })
		c.OnHeartbeat(func() { ts.events <- event{kind: "pong", c: c} })
	})
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", s)
	hs := httptest.NewServer(mux)
	ts.url = hs.URL + "/engine.io/"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		hs.CloseClientConnections()
		hs.Close()
	})
	return ts
}

// next returns the next event of kind, skipping others.
func (ts *tserver) next(kind string) event {
	ts.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-ts.events:
			if e.kind == kind {
				return e
			}
		case <-timeout:
			ts.t.Fatalf("no %q event", kind)
		}
	}
}

// none fails if an event of kind is waiting.
func (ts *tserver) none(kind string) {
	ts.t.Helper()
	for {
		select {
		case e := <-ts.events:
			if e.kind == kind {
				ts.t.Fatalf("unexpected %q event: %+v", kind, e)
			}
		default:
			return
		}
	}
}

func (ts *tserver) req(method, query, body string) (int, string) {
	ts.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, ts.url+"?"+query, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	return do(ts.t, r)
}

func do(t *testing.T, r *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

type handshake struct {
	Sid          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int      `json:"pingInterval"`
	PingTimeout  int      `json:"pingTimeout"`
	MaxPayload   int      `json:"maxPayload"`
}

func parseOpen(t *testing.T, body string) handshake {
	t.Helper()
	if !strings.HasPrefix(body, "0") {
		t.Fatalf("open packet %q", body)
	}
	var h handshake
	if err := json.Unmarshal([]byte(body[1:]), &h); err != nil {
		t.Fatalf("open packet %q: %v", body, err)
	}
	return h
}

// open makes a polling session and returns its sid.
func (ts *tserver) open() string {
	ts.t.Helper()
	code, body := ts.req("GET", "EIO=4&transport=polling", "")
	if code != 200 {
		ts.t.Fatalf("handshake: %d %s", code, body)
	}
	return parseOpen(ts.t, body).Sid
}

func (ts *tserver) get(sid string) (int, string) {
	ts.t.Helper()
	return ts.req("GET", "EIO=4&transport=polling&sid="+sid, "")
}

func (ts *tserver) post(sid, body string) (int, string) {
	ts.t.Helper()
	return ts.req("POST", "EIO=4&transport=polling&sid="+sid, body)
}

// pending reports whether the session sid has a GET waiting.
func (ts *tserver) pending(sid string) error {
	c := ts.s.lookup(sid)
	if c == nil {
		return errors.New("no session")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poll == nil || c.poll.pollCh == nil {
		return errors.New("no pending GET")
	}
	return nil
}

// asyncGet starts a GET and returns where its answer arrives.
func (ts *tserver) asyncGet(sid string) <-chan string {
	ch := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := http.Get(ts.url + "?EIO=4&transport=polling&sid=" + sid)
		if err != nil {
			ch <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	ts.t.Cleanup(wg.Wait)
	return ch
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
	return ""
}

func (ts *tserver) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(ts.url, "http") + "?" + query
}

func (ts *tserver) dial(query string) *websocket.Conn {
	ts.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(ts.wsURL(query), nil)
	if err != nil {
		ts.t.Fatalf("dial: %v (%v)", err, resp)
	}
	ts.t.Cleanup(func() { ws.Close() })
	return ws
}

func readText(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("message type %d: %q", typ, b)
	}
	return string(b)
}

// readSkipPing reads the next text message that is not a ping, answering pings.
func readSkipPing(t *testing.T, ws *websocket.Conn) (int, string) {
	t.Helper()
	for {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ == websocket.TextMessage && string(b) == "2" {
			_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
			continue
		}
		return typ, string(b)
	}
}

func send(t *testing.T, ws *websocket.Conn, typ int, s string) {
	t.Helper()
	if err := ws.WriteMessage(typ, []byte(s)); err != nil {
		t.Fatal(err)
	}
}
