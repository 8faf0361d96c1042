// Package loadgen measures how fast a Socket.IO server of a Redis cluster
// fans events out to its clients, the same way for eventserver and for the
// Node.js reference (socket.io with @socket.io/redis-adapter), so that the
// two can be compared side by side in one run (bench/compare.sh).
//
// It opens Clients WebSocket-only Socket.IO connections to the /tasks
// namespace of one server (raw Engine.IO v4 frames: the generator's own cost
// stays small), then publishes Events "bench" events to their room through
// Redis, as @socket.io/redis-emitter does (pkg/adapter/redis.Emitter), at
// Rate a second. Every event carries its publish time; each client records
// the delay to its arrival. With the server's pid it also samples the
// server's resident memory and CPU time.
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"

	redisadapter "github.com/eventserver/eventserver/pkg/adapter/redis"
)

// Config is one run.
type Config struct {
	// URL is the server's base URL (http://host:port).
	URL string
	// Namespace is the Socket.IO namespace. Default "/tasks".
	Namespace string
	// Room is the room the clients are in and the events go to.
	Room string
	// Clients is how many connections to open. Default 100.
	Clients int
	// Events is how many events to publish. Default 1000.
	Events int
	// Rate is how many events a second to publish. Default 200.
	Rate int
	// Payload is the size of each event's filler, in bytes.
	Payload int
	// Token returns client i's bearer token (empty: none). For eventserver.
	Token func(i int) string
	// Auth is the handshake auth object of every client (nil: none). For
	// the Node reference: {"rooms":[room]} makes it join the room.
	Auth map[string]any
	// Redis and Prefix are where the events are published.
	Redis  goredis.UniversalClient
	Prefix string
	// Settle is how long to wait for the last deliveries. Default 5s.
	Settle time.Duration
	// ConnectTimeout bounds the opening of all the connections. Default 60s.
	ConnectTimeout time.Duration
	// PID, when positive, is the server's process: its memory and CPU time
	// are sampled.
	PID int
}

// Result is what a run measured.
type Result struct {
	Clients       int           `json:"clients"`
	ConnectTime   time.Duration `json:"connect_time_ns"`
	Events        int           `json:"events"`
	Expected      int64         `json:"expected_deliveries"`
	Delivered     int64         `json:"delivered"`
	Duplicates    int64         `json:"duplicates"`
	Publishing    time.Duration `json:"publishing_ns"`
	Throughput    float64       `json:"deliveries_per_second"`
	P50, P90      time.Duration `json:"-"`
	P99, Max      time.Duration `json:"-"`
	Latency       map[string]float64
	RSSIdleKiB    int64   `json:"rss_idle_kib,omitempty"` // connected, before publishing
	RSSPeakKiB    int64   `json:"rss_peak_kib,omitempty"` // highest sample while publishing
	CPUSeconds    float64 `json:"cpu_seconds,omitempty"`  // server CPU while publishing and settling
	CPUPerMillion float64 `json:"cpu_seconds_per_million_deliveries,omitempty"`
}

func (c *Config) defaults() error {
	if c.URL == "" {
		return errors.New("loadgen: URL is required")
	}
	if c.Redis == nil {
		return errors.New("loadgen: Redis is required")
	}
	if c.Room == "" {
		return errors.New("loadgen: Room is required")
	}
	if c.Namespace == "" {
		c.Namespace = "/tasks"
	}
	if c.Clients <= 0 {
		c.Clients = 100
	}
	if c.Events <= 0 {
		c.Events = 1000
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.Settle <= 0 {
		c.Settle = 5 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 60 * time.Second
	}
	return nil
}

// Run connects the clients, publishes the events and measures.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	wsURL, err := websocketURL(cfg.URL)
	if err != nil {
		return nil, err
	}

	rec := newRecorder(cfg.Events)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Connect every client, 50 at a time.
	start := time.Now()
	conns := make([]*conn, cfg.Clients)
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Clients)
	sem := make(chan struct{}, 50)
	cctx, ccancel := context.WithTimeout(runCtx, cfg.ConnectTimeout)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			token := ""
			if cfg.Token != nil {
				token = cfg.Token(i)
			}
			c, err := dial(cctx, wsURL, cfg.Namespace, token, cfg.Auth)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	ccancel()
	close(errs)
	// Close every connection (the readers then end) and wait for the
	// readers, however the run ends.
	var readers sync.WaitGroup
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
		readers.Wait()
	}()
	if err := <-errs; err != nil {
		return nil, err
	}
	res := &Result{Clients: cfg.Clients, ConnectTime: time.Since(start), Events: cfg.Events,
		Expected: int64(cfg.Events) * int64(cfg.Clients)}

	// Read every connection until the run ends.
	for _, c := range conns {
		readers.Add(1)
		go func(c *conn) {
			defer readers.Done()
			c.read(rec)
		}(c)
	}

	// A barrier: every client has joined its room on the server once a
	// probe event reaches all of them.
	em := redisadapter.NewEmitter(cfg.Redis, cfg.Prefix)
	if err := probe(runCtx, em, cfg, rec); err != nil {
		return nil, err
	}

	var cpu0 float64
	if cfg.PID > 0 {
		res.RSSIdleKiB, _ = rssKiB(cfg.PID)
		cpu0, _ = cpuSeconds(cfg.PID)
	}
	sampleDone := make(chan struct{})
	var peak atomic.Int64
	if cfg.PID > 0 {
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				if v, err := rssKiB(cfg.PID); err == nil && v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-sampleDone:
					return
				case <-t.C:
				}
			}
		}()
	}

	filler := strings.Repeat("x", cfg.Payload)
	interval := time.Second / time.Duration(cfg.Rate)
	pubStart := time.Now()
	next := pubStart
	for i := 0; i < cfg.Events; i++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-runCtx.Done():
				close(sampleDone)
				return nil, runCtx.Err()
			case <-time.After(d):
			}
		}
		next = next.Add(interval)
		ev := map[string]any{"seq": i, "t": time.Now().UnixNano(), "filler": filler}
		if err := em.Emit(runCtx, cfg.Namespace, []string{cfg.Room}, nil, "bench", ev); err != nil {
			close(sampleDone)
			return nil, fmt.Errorf("loadgen: publish: %w", err)
		}
	}
	// Wait for the deliveries, or the settle time after the last publish.
	deadline := time.Now().Add(cfg.Settle)
	for rec.delivered.Load() < res.Expected && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	res.Publishing = rec.lastArrival().Sub(pubStart)
	close(sampleDone)
	if cfg.PID > 0 {
		res.RSSPeakKiB = peak.Load()
		if cpu1, err := cpuSeconds(cfg.PID); err == nil {
			res.CPUSeconds = cpu1 - cpu0
		}
	}

	res.Delivered = rec.delivered.Load()
	res.Duplicates = rec.duplicates.Load()
	if res.Publishing > 0 {
		res.Throughput = float64(res.Delivered) / res.Publishing.Seconds()
	}
	if res.Delivered > 0 && res.CPUSeconds > 0 {
		res.CPUPerMillion = res.CPUSeconds / float64(res.Delivered) * 1e6
	}
	lat := rec.latencies()
	res.P50, res.P90, res.P99, res.Max = quantile(lat, 0.50), quantile(lat, 0.90), quantile(lat, 0.99), quantile(lat, 1)
	res.Latency = map[string]float64{"p50_ms": ms(res.P50), "p90_ms": ms(res.P90), "p99_ms": ms(res.P99), "max_ms": ms(res.Max)}
	return res, nil
}

// probe publishes "bench-probe" until every client has one.
func probe(ctx context.Context, em *redisadapter.Emitter, cfg Config, rec *recorder) error {
	deadline := time.Now().Add(cfg.ConnectTimeout)
	for {
		if err := em.Emit(ctx, cfg.Namespace, []string{cfg.Room}, nil, "bench-probe"); err != nil {
			return fmt.Errorf("loadgen: publish: %w", err)
		}
		pause := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			pause.Stop()
			return ctx.Err()
		case <-pause.C:
		}
		if n := rec.probed.Load(); n >= int64(cfg.Clients) {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: only %d of %d clients received events in room %q", n, cfg.Clients, cfg.Room)
		}
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// quantile of sorted durations (q in [0,1]).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// recorder collects the arrivals of every client.
type recorder struct {
	delivered  atomic.Int64
	duplicates atomic.Int64
	probed     atomic.Int64
	last       atomic.Int64 // unix ns of the latest arrival

	mu  sync.Mutex
	lat []time.Duration
}

func newRecorder(events int) *recorder {
	return &recorder{lat: make([]time.Duration, 0, events)}
}

func (r *recorder) add(d time.Duration, now time.Time) {
	r.delivered.Add(1)
	r.last.Store(now.UnixNano())
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

func (r *recorder) lastArrival() time.Time { return time.Unix(0, r.last.Load()) }

func (r *recorder) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.lat)
	slices.Sort(out)
	return out
}

// conn is one client: a WebSocket that speaks Engine.IO v4 and Socket.IO v5
// text frames.
type conn struct {
	ws        *websocket.Conn
	namespace string
	wmu       sync.Mutex
	closeOnce sync.Once
	seen      map[int]bool // seq of bench events received (read goroutine only)
	probed    bool
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

// dial opens a connection and connects it to the namespace.
func dial(ctx context.Context, wsURL, namespace, token string, auth map[string]any) (*conn, error) {
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.DialContext(ctx, wsURL, hdr)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	c := &conn{ws: ws, namespace: namespace, seen: map[int]bool{}}
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	}
	// Engine.IO open packet.
	if _, msg, err := ws.ReadMessage(); err != nil || len(msg) == 0 || msg[0] != '0' {
		ws.Close()
		return nil, fmt.Errorf("no Engine.IO open packet (%v)", err)
	}
	connect := "40" + namespace + ","
	if auth != nil {
		b, err := json.Marshal(auth)
		if err != nil {
			ws.Close()
			return nil, err
		}
		connect += string(b)
	}
	if err := c.write(connect); err != nil {
		ws.Close()
		return nil, err
	}
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("waiting for the namespace: %w", err)
		}
		s := string(msg)
		switch {
		case s == "2":
			if err := c.write("3"); err != nil {
				ws.Close()
				return nil, err
			}
		case strings.HasPrefix(s, "40"+namespace+","):
			_ = ws.SetReadDeadline(time.Time{})
			return c, nil
		case strings.HasPrefix(s, "44"+namespace+","):
			ws.Close()
			return nil, fmt.Errorf("namespace refused: %s", strings.TrimPrefix(s, "44"+namespace+","))
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

// read handles frames until the connection closes: answers pings, records
// bench events.
func (c *conn) read(rec *recorder) {
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
			continue
		}
		if !strings.HasPrefix(s, prefix) {
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
			if len(ev) < 2 {
				continue
			}
			var b struct {
				Seq int   `json:"seq"`
				T   int64 `json:"t"`
			}
			if json.Unmarshal(ev[1], &b) != nil {
				continue
			}
			if c.seen[b.Seq] {
				rec.duplicates.Add(1)
				continue
			}
			c.seen[b.Seq] = true
			rec.add(now.Sub(time.Unix(0, b.T)), now)
		}
	}
}

// rssKiB reads VmRSS of a process (Linux).
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuSeconds reads a process's user + system CPU time (Linux, 100 ticks a
// second).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("bad stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad stat")
	}
	return (ut + st) / 100, nil
}
