package loadgen

import (
	"context"
	"errors"
	"time"
)

// Target is the server a shape connects its clients to.
type Target struct {
	// URL is the server's base URL (http://host:port).
	URL string
	// Namespace is the Socket.IO namespace. Default "/tasks".
	Namespace string
	// Token returns client i's bearer token (nil: none).
	Token func(i int) string
	// Auth returns client i's handshake auth object (nil: none).
	Auth func(i int) map[string]any
	// Sources are the loopback addresses the clients dial from, round-robin
	// (empty: the system's choice).
	Sources []string
	// PID, when positive, is the server's process: its memory and CPU time
	// are read from /proc.
	PID int
}

func (t *Target) spec(inFlight int, rec *recorder) (dialSpec, error) {
	if t.URL == "" {
		return dialSpec{}, errors.New("loadgen: URL is required")
	}
	ws, err := websocketURL(t.URL)
	if err != nil {
		return dialSpec{}, err
	}
	ds, err := newDialers(t.Sources)
	if err != nil {
		return dialSpec{}, err
	}
	if t.Namespace == "" {
		t.Namespace = "/tasks"
	}
	return dialSpec{dialers: ds, urls: []string{ws}, namespace: t.Namespace, token: t.Token, auth: t.Auth,
		inFlight: inFlight, rec: rec}, nil
}

// IdleConfig is the memory shape: open Clients idle WebSockets to one
// process and read its memory before and after one ping cycle.
type IdleConfig struct {
	Target
	// Clients is how many connections to open. Default 1000.
	Clients int
	// InFlight is how many connects run at a time. Default 200.
	InFlight int
	// Wait is how long the clients stay idle after the last connect; at
	// least the server's ping interval, so that every client has answered a
	// ping. Default 6s.
	Wait time.Duration
	// MetricsURL, when set, is a Prometheus endpoint with go_goroutines
	// (eventserver's /metrics).
	MetricsURL string
	// ConnectTimeout bounds the opening of all the connections. Default 5m.
	ConnectTimeout time.Duration
}

// IdleResult is what the memory shape measured.
type IdleResult struct {
	Clients          int     `json:"clients"`
	Connected        int     `json:"connected"`
	Alive            int     `json:"alive"` // open after the wait, having answered a ping
	ConnectSeconds   float64 `json:"connect_seconds"`
	RSSBeforeKiB     int64   `json:"rss_before_kib,omitempty"`
	RSSAfterKiB      int64   `json:"rss_after_kib,omitempty"`
	RSSPerConnKiB    float64 `json:"rss_per_conn_kib,omitempty"`
	GoroutinesBefore int     `json:"goroutines_before,omitempty"`
	GoroutinesAfter  int     `json:"goroutines_after,omitempty"`
	LoadgenRSSKiB    int64   `json:"loadgen_rss_kib"`
	Error            string  `json:"error,omitempty"`         // the first connect failure
	MetricsError     string  `json:"metrics_error,omitempty"` // reading go_goroutines after the wait
}

// Idle runs the memory shape.
func Idle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 1000
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 200
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 6 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Minute
	}
	spec, err := cfg.spec(cfg.InFlight, nil)
	if err != nil {
		return nil, err
	}
	res := &IdleResult{Clients: cfg.Clients}
	if cfg.PID > 0 {
		if res.RSSBeforeKiB, err = rssKiB(cfg.PID); err != nil {
			return nil, err
		}
	}
	if cfg.MetricsURL != "" {
		if res.GoroutinesBefore, err = goroutines(ctx, cfg.MetricsURL); err != nil {
			return nil, err
		}
	}

	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	t0 := time.Now()
	f := open(cctx, spec, cfg.Clients)
	cancel()
	defer f.close()
	res.ConnectSeconds = time.Since(t0).Seconds()
	res.Connected = len(f.lat)
	if f.err != nil {
		res.Error = f.err.Error()
	}

	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(cfg.Wait):
	}
	res.Alive = f.alive(1)
	if cfg.PID > 0 {
		if res.RSSAfterKiB, err = rssKiB(cfg.PID); err != nil {
			return nil, err
		}
		if res.Connected > 0 {
			res.RSSPerConnKiB = float64(res.RSSAfterKiB-res.RSSBeforeKiB) / float64(res.Connected)
		}
	}
	if cfg.MetricsURL != "" {
		if res.GoroutinesAfter, err = goroutines(ctx, cfg.MetricsURL); err != nil {
			res.MetricsError = err.Error()
		}
	}
	res.LoadgenRSSKiB, _ = rssKiB(0)
	return res, nil
}
