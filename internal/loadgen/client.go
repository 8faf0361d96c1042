package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// writeBuffers is shared by every client: an idle connection owns no write
// buffer.
var writeBuffers sync.Pool

// newDialers returns one dialer per source address (loopback IPs only); none:
// one dialer with the system's choice.
func newDialers(sources []string) ([]*websocket.Dialer, error) {
	mk := func(local net.Addr) *websocket.Dialer {
		nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
		return &websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: nd.DialContext,
			ReadBufferSize: 1024, WriteBufferSize: 1024, WriteBufferPool: &writeBuffers}
	}
	if len(sources) == 0 {
		return []*websocket.Dialer{mk(nil)}, nil
	}
	ds := make([]*websocket.Dialer, 0, len(sources))
	for _, s := range sources {
		ip := net.ParseIP(s)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("loadgen: source address %q is not a loopback IP", s)
		}
		ds = append(ds, mk(&net.TCPAddr{IP: ip}))
	}
	return ds, nil
}

func websocketURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("loadgen: bad URL %q", base)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("loadgen: bad URL scheme %q", u.Scheme)
	}
	u.Path = "/socket.io/"
	u.RawQuery = "EIO=4&transport=websocket"
	return u.String(), nil
}

// conn is one client: a WebSocket that speaks Engine.IO v4 and Socket.IO v5
// text frames.
type conn struct {
	ws        *websocket.Conn
	namespace string
	wmu       sync.Mutex
	closeOnce sync.Once
	pings     atomic.Int32 // Engine.IO pings answered
	ended     atomic.Bool  // the read loop has ended
	seen      map[int]bool // seq of bench events received (read goroutine only)
	probed    bool
}

// dial opens a connection and connects it to the namespace: the WebSocket
// upgrade (with the token as a bearer header), Engine.IO's open packet,
// Socket.IO's CONNECT and its answer.
func dial(ctx context.Context, d *websocket.Dialer, wsURL, namespace, token string, auth map[string]any) (*conn, error) {
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := d.DialContext(ctx, wsURL, hdr)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	c := &conn{ws: ws, namespace: namespace}
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	}
	fail := func(err error) (*conn, error) {
		ws.Close()
		return nil, err
	}
	if _, msg, err := ws.ReadMessage(); err != nil || len(msg) == 0 || msg[0] != '0' {
		return fail(fmt.Errorf("no Engine.IO open packet (%v)", err))
	}
	connect := "40" + namespace + ","
	if auth != nil {
		b, err := json.Marshal(auth)
		if err != nil {
			return fail(err)
		}
		connect += string(b)
	}
	if err := c.write(connect); err != nil {
		return fail(err)
	}
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("waiting for the namespace: %w", err))
		}
		s := string(msg)
		switch {
		case s == "2":
			if err := c.write("3"); err != nil {
				return fail(err)
			}
		case strings.HasPrefix(s, "40"+namespace+","):
			_ = ws.SetReadDeadline(time.Time{})
			return c, nil
		case strings.HasPrefix(s, "44"+namespace+","):
			return fail(fmt.Errorf("namespace refused: %s", strings.TrimPrefix(s, "44"+namespace+",")))
		}
	}
}

func (c *conn) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
		_ = c.ws.Close()
	})
}

// read handles frames until the connection closes: answers pings and, with
// a recorder, records "bench" and "bench-probe" events.
func (c *conn) read(rec *recorder) {
	defer c.ended.Store(true)
	prefix := "42" + c.namespace + ","
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now()
		s := string(msg)
		if s == "2" {
			if c.write("3") != nil {
				return
			}
			c.pings.Add(1)
			continue
		}
		if rec == nil || !strings.HasPrefix(s, prefix) {
			continue
		}
		var ev []json.RawMessage
		if json.Unmarshal([]byte(s[len(prefix):]), &ev) != nil || len(ev) == 0 {
			continue
		}
		switch string(ev[0]) {
		case `"bench-probe"`:
			if !c.probed {
				c.probed = true
				rec.probed.Add(1)
			}
		case `"bench"`:
			var b benchEvent
			if len(ev) < 2 || json.Unmarshal(ev[1], &b) != nil {
				continue
			}
			if c.seen == nil {
				c.seen = map[int]bool{}
			}
			if c.seen[b.Seq] {
				rec.duplicates.Add(1)
				continue
			}
			c.seen[b.Seq] = true
			rec.add(b.Step, now.Sub(time.Unix(0, b.T)), now)
		}
	}
}

// benchEvent is the argument of a "bench" event.
type benchEvent struct {
	Seq    int    `json:"seq"`
	Step   int    `json:"st"`
	T      int64  `json:"t"` // unix ns when it was published
	Filler string `json:"filler,omitempty"`
}

// fleet is a set of open clients and their read loops.
type fleet struct {
	conns   []*conn         // nil where the connect failed
	lat     []time.Duration // connect durations of the clients that connected
	failed  int
	err     error // the first failure
	readers sync.WaitGroup
}

// dialSpec says how to open client i.
type dialSpec struct {
	dialers   []*websocket.Dialer // client i dials from dialers[i%len]
	urls      []string            // client i connects to urls[i%len] (WebSocket URLs)
	urlOf     func(i int) int     // nil: i%len(urls); else client i connects to urls[urlOf(i)]
	namespace string
	token     func(i int) string         // nil: none
	auth      func(i int) map[string]any // nil: none
	inFlight  int
	rec       *recorder // nil: the read loops only answer pings
}

// open connects n clients, inFlight at a time, and starts a read loop for
// each as soon as it is connected. It returns when every attempt has ended
// or ctx is done; failures are counted, not fatal.
func open(ctx context.Context, s dialSpec, n int) *fleet {
	f := &fleet{conns: make([]*conn, n)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, s.inFlight))
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			mu.Lock()
			f.failed += n - i
			if f.err == nil {
				f.err = ctx.Err()
			}
			mu.Unlock()
			i = n
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			var token string
			var auth map[string]any
			if s.token != nil {
				token = s.token(i)
			}
			if s.auth != nil {
				auth = s.auth(i)
			}
			t0 := time.Now()
			u := i % len(s.urls)
			if s.urlOf != nil {
				u = s.urlOf(i)
			}
			c, err := dial(ctx, s.dialers[i%len(s.dialers)], s.urls[u], s.namespace, token, auth)
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				f.failed++
				if f.err == nil {
					f.err = fmt.Errorf("client %d: %w", i, err)
				}
				return
			}
			f.conns[i] = c
			f.lat = append(f.lat, d)
			f.readers.Add(1)
			go func() {
				defer f.readers.Done()
				c.read(s.rec)
			}()
		}(i)
	}
	wg.Wait()
	return f
}

// alive counts the clients that are still open and have answered at least
// minPings pings.
func (f *fleet) alive(minPings int32) int {
	n := 0
	for _, c := range f.conns {
		if c != nil && !c.ended.Load() && c.pings.Load() >= minPings {
			n++
		}
	}
	return n
}

// close closes every client and waits for the read loops.
func (f *fleet) close() {
	for _, c := range f.conns {
		if c != nil {
			c.close()
		}
	}
	f.readers.Wait()
}
