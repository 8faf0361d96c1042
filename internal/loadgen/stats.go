package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Latency is a distribution in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// latencyOf sorts d in place and summarizes it.
func latencyOf(d []time.Duration) Latency {
	slices.Sort(d)
	return Latency{P50: ms(quantile(d, 0.50)), P90: ms(quantile(d, 0.90)), P99: ms(quantile(d, 0.99)), Max: ms(quantile(d, 1))}
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

// recorder collects the arrivals of every client, by step.
type recorder struct {
	delivered  atomic.Int64
	duplicates atomic.Int64
	probed     atomic.Int64

	mu    sync.Mutex
	steps []stepArrivals
}

type stepArrivals struct {
	lat  []time.Duration
	last time.Time
}

func newRecorder(steps int) *recorder {
	return &recorder{steps: make([]stepArrivals, steps)}
}

func (r *recorder) add(step int, d time.Duration, now time.Time) {
	if step < 0 || step >= len(r.steps) {
		return
	}
	r.delivered.Add(1)
	r.mu.Lock()
	s := &r.steps[step]
	s.lat = append(s.lat, d)
	if now.After(s.last) {
		s.last = now
	}
	r.mu.Unlock()
}

// step returns how many arrived in a step, their latencies (a copy) and
// the last arrival.
func (r *recorder) step(i int) (int64, []time.Duration, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.steps[i]
	return int64(len(s.lat)), slices.Clone(s.lat), s.last
}

// rssKiB reads VmRSS of a process (Linux); pid 0 is this process.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("loadgen: no VmRSS")
}

func procPath(pid int, file string) string {
	if pid == 0 {
		return "/proc/self/" + file
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + file
}

// cpuSeconds is the user + system CPU time of processes (Linux, 100 ticks
// a second); pid 0 is this process.
func cpuSeconds(pids ...int) (float64, error) {
	var sum float64
	for _, pid := range pids {
		b, err := os.ReadFile(procPath(pid, "stat"))
		if err != nil {
			return 0, err
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, errors.New("loadgen: bad stat")
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			return 0, errors.New("loadgen: bad stat")
		}
		ut, err1 := strconv.ParseFloat(f[11], 64)
		st, err2 := strconv.ParseFloat(f[12], 64)
		if err1 != nil || err2 != nil {
			return 0, errors.New("loadgen: bad stat")
		}
		sum += (ut + st) / 100
	}
	return sum, nil
}

// cpuMeter measures the CPU time of processes over an interval.
type cpuMeter struct {
	pids  []int
	start float64
	self  float64
}

func startCPU(pids []int) *cpuMeter {
	m := &cpuMeter{pids: pids}
	m.start, _ = cpuSeconds(pids...)
	m.self, _ = cpuSeconds(0)
	return m
}

// stop returns the servers' and the load generator's CPU seconds since
// start (0 without pids).
func (m *cpuMeter) stop() (servers, self float64) {
	if len(m.pids) > 0 {
		if v, err := cpuSeconds(m.pids...); err == nil {
			servers = v - m.start
		}
	}
	if v, err := cpuSeconds(0); err == nil {
		self = v - m.self
	}
	return servers, self
}

// goroutines reads go_goroutines from a Prometheus /metrics URL.
func goroutines(ctx context.Context, metricsURL string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("loadgen: no go_goroutines in %s", metricsURL)
}
