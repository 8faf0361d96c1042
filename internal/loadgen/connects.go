package loadgen

import (
	"context"
	"time"
)

// ConnectsConfig is the connects shape: one warm process, Clients connects
// with InFlight at a time (each a WebSocket upgrade, Engine.IO open,
// Socket.IO CONNECT with the server's token check, and its answer).
type ConnectsConfig struct {
	Target
	// Clients is how many connects to time. Default 3000.
	Clients int
	// InFlight is how many connects run at a time. Default 200.
	InFlight int
	// Warmup is how many connects to open and close first. Default 200;
	// negative: none.
	Warmup int
	// ConnectTimeout bounds each phase. Default 2m.
	ConnectTimeout time.Duration
}

// ConnectsResult is what the connects shape measured.
type ConnectsResult struct {
	Clients        int     `json:"clients"`
	InFlight       int     `json:"in_flight"`
	Connected      int     `json:"connected"`
	Failed         int     `json:"failed"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"connects_per_second"`
	Latency        Latency `json:"latency"`
	CPUSeconds     float64 `json:"cpu_seconds,omitempty"` // the server's, while connecting
	CPUMsPerOp     float64 `json:"cpu_ms_per_connect,omitempty"`
	LoadgenCPUSecs float64 `json:"loadgen_cpu_seconds"`
	Error          string  `json:"error,omitempty"` // the first connect failure
}

// Connects runs the connects shape. Tokens are made before the clock
// starts.
func Connects(ctx context.Context, cfg ConnectsConfig) (*ConnectsResult, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 3000
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 200
	}
	if cfg.Warmup < 0 {
		cfg.Warmup = 0
	} else if cfg.Warmup == 0 {
		cfg.Warmup = 200
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Minute
	}
	if tok := cfg.Token; tok != nil {
		tokens := make([]string, cfg.Warmup+cfg.Clients)
		for i := range tokens {
			tokens[i] = tok(i)
		}
		cfg.Token = func(i int) string { return tokens[i] }
	}
	spec, err := cfg.spec(cfg.InFlight, nil)
	if err != nil {
		return nil, err
	}
	phase := func(n, offset int) *fleet {
		s := spec
		if tok := spec.token; tok != nil {
			s.token = func(i int) string { return tok(offset + i) }
		}
		cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
		return open(cctx, s, n)
	}
	if cfg.Warmup > 0 {
		w := phase(cfg.Warmup, 0)
		w.close()
		if w.failed > 0 {
			return nil, w.err
		}
		time.Sleep(500 * time.Millisecond) // let the server finish the disconnects
	}

	pids := []int{}
	if cfg.PID > 0 {
		pids = append(pids, cfg.PID)
	}
	cpu := startCPU(pids)
	t0 := time.Now()
	f := phase(cfg.Clients, cfg.Warmup)
	elapsed := time.Since(t0)
	res := &ConnectsResult{Clients: cfg.Clients, InFlight: cfg.InFlight, Connected: len(f.lat), Failed: f.failed,
		Seconds: elapsed.Seconds(), Latency: latencyOf(f.lat)}
	res.CPUSeconds, res.LoadgenCPUSecs = cpu.stop()
	f.close()
	if f.err != nil {
		res.Error = f.err.Error()
	}
	res.PerSecond = float64(res.Connected) / elapsed.Seconds()
	if res.Connected > 0 && res.CPUSeconds > 0 {
		res.CPUMsPerOp = res.CPUSeconds * 1e3 / float64(res.Connected)
	}
	return res, ctx.Err()
}
