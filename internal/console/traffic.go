package console

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The counters a replica samples from its own registry (the collectors of
// internal/hub, internal/httpapi, the Redis adapter and the connection
// layer), never from /metrics text.
const (
	famIn        = "eventserver_events_received_total"
	famOut       = "eventserver_events_sent_total"
	famPublish   = "eventserver_publish_requests_total"
	famRefused   = "eventserver_events_refused_total"
	famDrops     = "eventserver_redis_adapter_messages_dropped_total"
	famSlow      = "eventserver_slow_consumers_total"
	famConnected = "eventserver_connections"
)

// Series are per-interval counts, oldest first, one slot per interval
// ending at End (a multiple of the interval, unix seconds).
type Series struct {
	Interval int64                `json:"interval_seconds"`
	End      int64                `json:"end"`
	In       []float64            `json:"in"`
	Out      []float64            `json:"out"`
	Publish  []float64            `json:"publish"`
	Drops    []float64            `json:"drops"`
	Refused  map[string][]float64 `json:"refused"`
}

// sample is one interval's counts of a replica.
type sample struct {
	bucket                  int64 // unix / interval at the interval's end
	in, out, publish, drops float64
	refused                 map[string]float64
}

// totals are a replica's counters as read at one time.
type totals struct {
	in, out, publish, drops float64
	refused                 map[string]float64
	conns                   map[string]float64
}

func read(g prometheus.Gatherer) (totals, error) {
	mfs, err := g.Gather()
	t := totals{refused: map[string]float64{}, conns: map[string]float64{}}
	if err != nil && len(mfs) == 0 {
		return t, err
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			switch mf.GetName() {
			case famIn:
				t.in += v
			case famOut:
				t.out += v
			case famPublish:
				t.publish += v
			case famDrops, famSlow:
				t.drops += v
			case famRefused:
				t.refused[label(m, "reason")] += v
			case famConnected:
				t.conns[label(m, "client_type")] += v
			}
		}
	}
	return t, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// ring keeps a replica's last slots and its latest connection counts.
type ring struct {
	interval time.Duration
	size     int

	mu      sync.Mutex
	prev    *totals
	samples []sample // oldest first, at most size
	conns   map[string]float64
}

func newRing(interval time.Duration, size int) *ring {
	return &ring{interval: interval, size: size, conns: map[string]float64{}}
}

// add records the totals read at now: the slot gets the deltas since the
// previous read (nothing for the first read; a counter that went down,
// after a restart of the process, counts from zero).
func (r *ring) add(t totals, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns = t.conns
	prev := r.prev
	r.prev = &t
	if prev == nil {
		return
	}
	d := func(cur, old float64) float64 {
		if cur < old {
			return cur
		}
		return cur - old
	}
	s := sample{bucket: now.Unix() / int64(r.interval/time.Second), in: d(t.in, prev.in), out: d(t.out, prev.out),
		publish: d(t.publish, prev.publish), drops: d(t.drops, prev.drops), refused: map[string]float64{}}
	for k, v := range t.refused {
		if dv := d(v, prev.refused[k]); dv != 0 {
			s.refused[k] = dv
		}
	}
	if n := len(r.samples); n > 0 && r.samples[n-1].bucket == s.bucket {
		r.samples[n-1] = s
		return
	}
	r.samples = append(r.samples, s)
	if len(r.samples) > r.size {
		r.samples = r.samples[len(r.samples)-r.size:]
	}
}

// series renders the ring as Series ending at the bucket of now.
func (r *ring) series(now time.Time) Series {
	r.mu.Lock()
	defer r.mu.Unlock()
	secs := int64(r.interval / time.Second)
	end := now.Unix() / secs
	s := Series{Interval: secs, End: end * secs, In: make([]float64, r.size), Out: make([]float64, r.size),
		Publish: make([]float64, r.size), Drops: make([]float64, r.size), Refused: map[string][]float64{}}
	for _, smp := range r.samples {
		i := r.size - 1 - int(end-smp.bucket)
		if i < 0 || i >= r.size {
			continue
		}
		s.In[i], s.Out[i], s.Publish[i], s.Drops[i] = smp.in, smp.out, smp.publish, smp.drops
		for k, v := range smp.refused {
			if s.Refused[k] == nil {
				s.Refused[k] = make([]float64, r.size)
			}
			s.Refused[k][i] = v
		}
	}
	return s
}

func (r *ring) connections() map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]float64, len(r.conns))
	for k, v := range r.conns {
		out[k] = v
	}
	return out
}

// sumSeries adds replicas' series, aligned on their end (the slots of a
// series that ends earlier move left).
func sumSeries(all []Series, interval int64, size int, end int64) Series {
	out := Series{Interval: interval, End: end, In: make([]float64, size), Out: make([]float64, size),
		Publish: make([]float64, size), Drops: make([]float64, size), Refused: map[string][]float64{}}
	add := func(dst, src []float64, shift int) {
		for i, v := range src {
			if j := i - shift; j >= 0 && j < size {
				dst[j] += v
			}
		}
	}
	for _, s := range all {
		if s.Interval != interval || s.Interval <= 0 {
			continue
		}
		shift := int((end - s.End) / interval)
		add(out.In, s.In, shift)
		add(out.Out, s.Out, shift)
		add(out.Publish, s.Publish, shift)
		add(out.Drops, s.Drops, shift)
		for k, v := range s.Refused {
			if out.Refused[k] == nil {
				out.Refused[k] = make([]float64, size)
			}
			add(out.Refused[k], v, shift)
		}
	}
	return out
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
