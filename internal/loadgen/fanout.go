package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FanoutConfig is the fan-out shape: Clients spread over the processes of a
// cluster (client i on URLs[i%len]) in Rooms rooms (client i in room
// (i/len(URLs))%Rooms, so that every room has members on every process once
// Clients >= len(URLs)*Rooms), and "bench" events published over HTTP
// (POST /api/v1/emit) round-robin over the processes and the rooms, one step
// per rate.
type FanoutConfig struct {
	// URLs are the processes' base URLs. Required.
	URLs []string
	// PublishToken is the publish API's bearer token.
	PublishToken string
	// Namespace is the Socket.IO namespace. Default "/tasks".
	Namespace string
	// Clients is how many connections to open. Default 3000.
	Clients int
	// Rooms is how many rooms. Default 100.
	Rooms int
	// Spread, when positive, puts each room's members on Spread processes
	// only (client i in room i%Rooms, on process (room + (i/Rooms)%Spread)
	// % len(URLs)), as rooms of a few members land on a few of many
	// instances; 0: every room on every process (the layout above).
	Spread int
	// RoomName names room r. Default collaboration_<r+1>.
	RoomName func(r int) string
	// Token returns the bearer token of client i in room (nil: none).
	Token func(i int, room string) string
	// Auth returns the handshake auth object of a client in room (nil: none).
	Auth func(room string) map[string]any
	// Rates are the steps, in events a second. Default 500, 750, 1000, 1500,
	// 2000, 3000.
	Rates []int
	// Step is how long each rate is published. Default 5s.
	Step time.Duration
	// Payload is the size of each event's filler, in bytes.
	Payload int
	// Settle is how long to wait for a step's last deliveries. Default 5s.
	Settle time.Duration
	// Publishers is how many HTTP requests may be in flight. Default 64.
	Publishers int
	// PIDs are the servers' processes: their CPU time is read from /proc.
	PIDs []int
	// RedisPIDs are redis-server processes: their CPU time in each step is
	// reported apart (FanoutStep.RedisCPUSeconds), one figure per process.
	RedisPIDs []int
	// Sources are the loopback addresses the clients dial from.
	Sources []string
	// ConnectTimeout bounds the opening of the connections and the barrier.
	// Default 2m.
	ConnectTimeout time.Duration
}

// FanoutStep is what one rate measured.
type FanoutStep struct {
	Rate                int     `json:"rate"`
	Events              int     `json:"events"`
	PublishErrors       int64   `json:"publish_errors"`
	PublishError        string  `json:"publish_error,omitempty"` // the first
	Expected            int64   `json:"expected"`
	Delivered           int64   `json:"delivered"`
	Complete            float64 `json:"completeness"` // delivered / expected
	DeliveriesPerSecond float64 `json:"deliveries_per_second"`
	Latency             Latency `json:"latency"`
	CPUSeconds          float64 `json:"cpu_seconds,omitempty"` // the servers' together
	CPUMicrosPerOp      float64 `json:"cpu_us_per_delivery,omitempty"`
	LoadgenCPUSecs      float64 `json:"loadgen_cpu_seconds"`
	// RedisCPUSeconds is each of FanoutConfig.RedisPIDs' CPU time over the
	// step, in that order.
	RedisCPUSeconds []float64 `json:"redis_cpu_seconds,omitempty"`
	// Seconds is the measured interval (publishing, then the wait for the
	// last deliveries), the one the CPU times cover.
	Seconds float64 `json:"seconds"`
}

// FanoutResult is what the fan-out shape measured.
type FanoutResult struct {
	Clients        int          `json:"clients"`
	Rooms          int          `json:"rooms"`
	Spread         int          `json:"spread,omitempty"`
	Servers        int          `json:"servers"`
	ConnectSeconds float64      `json:"connect_seconds"`
	Duplicates     int64        `json:"duplicates"`
	Steps          []FanoutStep `json:"steps"`
}

func (c *FanoutConfig) defaults() error {
	if len(c.URLs) == 0 {
		return errors.New("loadgen: URLs are required")
	}
	if c.Namespace == "" {
		c.Namespace = "/tasks"
	}
	if c.Clients <= 0 {
		c.Clients = 3000
	}
	if c.Rooms <= 0 {
		c.Rooms = 100
	}
	if c.RoomName == nil {
		c.RoomName = func(r int) string { return "collaboration_" + strconv.Itoa(r+1) }
	}
	if len(c.Rates) == 0 {
		c.Rates = []int{500, 750, 1000, 1500, 2000, 3000}
	}
	for _, r := range c.Rates {
		if r <= 0 {
			return fmt.Errorf("loadgen: rate %d is not positive", r)
		}
	}
	if c.Step <= 0 {
		c.Step = 5 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 5 * time.Second
	}
	if c.Publishers <= 0 {
		c.Publishers = 64
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 2 * time.Minute
	}
	return nil
}

// Fanout runs the fan-out shape.
func Fanout(ctx context.Context, cfg FanoutConfig) (*FanoutResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	servers := len(cfg.URLs)
	roomOf, serverOf := layout(servers, cfg.Rooms, cfg.Spread)
	members := make([]int64, cfg.Rooms)
	for i := 0; i < cfg.Clients; i++ {
		members[roomOf(i)]++
	}
	spec := dialSpec{namespace: cfg.Namespace, inFlight: 200, rec: newRecorder(len(cfg.Rates)), urlOf: serverOf}
	for _, u := range cfg.URLs {
		ws, err := websocketURL(u)
		if err != nil {
			return nil, err
		}
		spec.urls = append(spec.urls, ws)
	}
	var err error
	if spec.dialers, err = newDialers(cfg.Sources); err != nil {
		return nil, err
	}
	if cfg.Token != nil {
		spec.token = func(i int) string { return cfg.Token(i, cfg.RoomName(roomOf(i))) }
	}
	if cfg.Auth != nil {
		spec.auth = func(i int) map[string]any { return cfg.Auth(cfg.RoomName(roomOf(i))) }
	}

	pub := newPublisher(cfg)
	defer pub.close()

	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	t0 := time.Now()
	f := open(cctx, spec, cfg.Clients)
	defer f.close()
	if f.err != nil {
		return nil, fmt.Errorf("loadgen: %d of %d clients did not connect: %w", f.failed, cfg.Clients, f.err)
	}
	res := &FanoutResult{Clients: cfg.Clients, Rooms: cfg.Rooms, Spread: cfg.Spread, Servers: servers, ConnectSeconds: time.Since(t0).Seconds()}

	// A barrier: every client has joined its room on the server once a
	// probe to every room reaches all of them.
	rec := spec.rec
	for rec.probed.Load() < int64(cfg.Clients) {
		for r := 0; r < cfg.Rooms; r++ {
			if err := pub.publish(cctx, r%servers, cfg.RoomName(r), "bench-probe", nil); err != nil {
				return nil, err
			}
		}
		select {
		case <-cctx.Done():
			return nil, fmt.Errorf("loadgen: only %d of %d clients received events in their rooms", rec.probed.Load(), cfg.Clients)
		case <-time.After(200 * time.Millisecond):
		}
	}

	seq := 0
	pids := cfg.PIDs
	for st, rate := range cfg.Rates {
		s, err := runStep(ctx, cfg, pub, rec, members, pids, st, rate, &seq)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, s)
	}
	res.Duplicates = rec.duplicates.Load()
	return res, nil
}

// layout places client i: its room and its process (serverOf nil: i%servers).
func layout(servers, rooms, spread int) (roomOf, serverOf func(i int) int) {
	if spread <= 0 {
		return func(i int) int { return (i / servers) % rooms }, nil
	}
	return func(i int) int { return i % rooms },
		func(i int) int { return (i%rooms + (i/rooms)%spread) % servers }
}

// runStep publishes Step worth of events at rate and waits for them.
func runStep(ctx context.Context, cfg FanoutConfig, pub *publisher, rec *recorder, members []int64, pids []int, st, rate int, seq *int) (FanoutStep, error) {
	servers := len(cfg.URLs)
	total := int(int64(rate) * int64(cfg.Step) / int64(time.Second))
	s := FanoutStep{Rate: rate, Events: total}
	filler := strings.Repeat("x", cfg.Payload)
	var errs atomic.Int64
	var firstErr sync.Once
	jobs := make(chan benchEvent, cfg.Publishers)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Publishers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range jobs {
				ev.T = time.Now().UnixNano()
				if err := pub.publish(ctx, ev.Seq%servers, cfg.RoomName(ev.Seq%cfg.Rooms), "bench", ev); err != nil {
					errs.Add(1)
					firstErr.Do(func() { s.PublishError = err.Error() })
				}
			}
		}()
	}
	cpu := startCPU(pids)
	redisCPU := make([]*cpuMeter, len(cfg.RedisPIDs))
	for i, p := range cfg.RedisPIDs {
		redisCPU[i] = startCPU([]int{p})
	}
	start := time.Now()
	sent := 0
	tick := time.NewTicker(2 * time.Millisecond)
	for sent < total && ctx.Err() == nil {
		due := min(total, int(float64(rate)*time.Since(start).Seconds())+1)
		for ; sent < due; sent++ {
			k := *seq + sent
			s.Expected += members[k%cfg.Rooms]
			jobs <- benchEvent{Seq: k, Step: st, Filler: filler}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	*seq += sent
	if err := ctx.Err(); err != nil {
		return s, err
	}
	deadline := time.Now().Add(cfg.Settle)
	for {
		n, _, _ := rec.step(st)
		if n >= s.Expected || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.CPUSeconds, s.LoadgenCPUSecs = cpu.stop()
	for _, m := range redisCPU {
		v, _ := m.stop()
		s.RedisCPUSeconds = append(s.RedisCPUSeconds, v)
	}
	s.Seconds = time.Since(start).Seconds()
	n, lat, last := rec.step(st)
	s.Delivered = n
	s.PublishErrors = errs.Load()
	if s.Expected > 0 {
		s.Complete = float64(n) / float64(s.Expected)
	}
	if span := last.Sub(start); n > 0 && span > 0 {
		s.DeliveriesPerSecond = float64(n) / span.Seconds()
	}
	s.Latency = latencyOf(lat)
	if n > 0 && s.CPUSeconds > 0 {
		s.CPUMicrosPerOp = s.CPUSeconds * 1e6 / float64(n)
	}
	return s, nil
}

// publisher POSTs events to the servers' /api/v1/emit.
type publisher struct {
	urls  []string
	token string
	ns    string
	tr    *http.Transport
	hc    *http.Client
}

func newPublisher(cfg FanoutConfig) *publisher {
	// Idle connections are dropped before a server would close them (Node's
	// keep-alive timeout is 5s): a POST on a connection closed meanwhile
	// fails and is not retried.
	tr := &http.Transport{MaxIdleConns: cfg.Publishers * len(cfg.URLs), MaxIdleConnsPerHost: cfg.Publishers,
		IdleConnTimeout: 2 * time.Second}
	p := &publisher{token: cfg.PublishToken, ns: cfg.Namespace, tr: tr, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	for _, u := range cfg.URLs {
		p.urls = append(p.urls, strings.TrimSuffix(u, "/")+"/api/v1/emit")
	}
	return p
}

// publish sends one event to a room through server i; data nil: no argument.
func (p *publisher) publish(ctx context.Context, i int, room, event string, data any) error {
	body := map[string]any{"event": event, "room": room}
	if data != nil {
		body["data"] = data
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.urls[i], bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return fmt.Errorf("loadgen: publish: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("loadgen: publish to %s: %s %s", p.urls[i], resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

func (p *publisher) close() { p.tr.CloseIdleConnections() }
