package presence

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/promreg"
)

// FlapWindow is the window over which Flaps counts each node's offline
// transitions.
const FlapWindow = 10 * time.Minute

// flapsMaxNodes bounds the nodes Flaps remembers; beyond it the node whose
// latest transition is the oldest is forgotten.
const flapsMaxNodes = 100000

// Flaps counts each node's offline transitions over the last FlapWindow and
// exports the highest count of any one node as the gauge
// eventserver_presence_node_offline_max: one series, whatever the number of
// nodes, for an alert on a node that goes offline over and over. With Redis
// each node's transitions are kept in a sorted set shared by the replicas
// (transitions of one node may be decided by different replicas), so the
// replica that records a transition sees the whole cluster's count for that
// node; aggregate the gauge over replicas with max. A node that reaches
// WarnAt in the window is logged once per window, with its id and name.
type Flaps struct {
	client redis.UniversalClient
	prefix string
	log    *zap.Logger
	now    func() time.Time
	warnAt int

	mu      sync.Mutex
	recent  map[string]*flapNode
	records int
}

type flapNode struct {
	times  []time.Time // offline transitions in the window, oldest first
	warned time.Time
}

// FlapsConfig configures Flaps.
type FlapsConfig struct {
	// Client is the cluster's Redis; nil counts this process's transitions.
	Client redis.UniversalClient
	// Prefix of the sorted sets' keys ("<prefix>:<node key>").
	Prefix     string
	Registerer prometheus.Registerer
	Logger     *zap.Logger
	// WarnAt: a node with this many offline transitions in the window is
	// logged at warn level, once per window. Zero: 3.
	WarnAt int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// NewFlaps returns a Flaps and registers its gauge.
func NewFlaps(cfg FlapsConfig) (*Flaps, error) {
	f := &Flaps{client: cfg.Client, prefix: cfg.Prefix, log: cfg.Logger, now: cfg.Now, warnAt: cfg.WarnAt,
		recent: make(map[string]*flapNode)}
	if f.log == nil {
		f.log = zap.NewNop()
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.warnAt <= 0 {
		f.warnAt = 3
	}
	if cfg.Registerer == nil {
		return f, nil
	}
	var err error
	promreg.Register(cfg.Registerer, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricPrefix + "node_offline_max",
		Help: "The most offline transitions of any one node within the last 10 minutes, among the nodes whose transitions this replica recorded (with Redis, each count is the whole cluster's for that node: aggregate with max).",
	}, func() float64 { return float64(f.Max()) }), &err)
	return f, err
}

// Record counts tr if it is an offline transition. With Redis it adds it to
// the node's sorted set and reads the cluster's count back (within 1 s;
// on failure it counts locally and logs).
func (f *Flaps) Record(tr Transition) {
	if tr.Online {
		return
	}
	now := f.now()
	var times []time.Time
	if f.client != nil {
		var err error
		if times, err = f.recordRedis(tr, now); err != nil {
			f.log.Warn("presence: counting a node's offline transitions in Redis failed; counted on this replica only",
				zap.String("node", tr.Node.Key), zap.Error(err))
		}
	}
	f.mu.Lock()
	n := f.recent[tr.Node.Key]
	if n == nil {
		n = &flapNode{}
		f.recent[tr.Node.Key] = n
	}
	if times != nil {
		n.times = times
	} else {
		n.times = append(n.times, now)
	}
	n.times = inWindow(n.times, now)
	count := len(n.times)
	warn := count >= f.warnAt && now.Sub(n.warned) >= FlapWindow
	if warn {
		n.warned = now
	}
	f.records++
	if f.records%256 == 0 || len(f.recent) > flapsMaxNodes {
		f.pruneLocked(now)
	}
	f.mu.Unlock()
	if warn {
		f.log.Warn("presence: a node keeps going offline",
			zap.String("node", tr.Node.Key), zap.String("name", tr.Node.Name),
			zap.Int64("collaboration_id", tr.Node.CollaborationID),
			zap.Int("offline_transitions", count), zap.Duration("window", FlapWindow))
	}
}

func (f *Flaps) recordRedis(tr Transition, now time.Time) ([]time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	key := f.prefix + ":" + tr.Node.Key
	ms := now.UnixMilli()
	var zr *redis.ZSliceCmd
	_, err := f.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		// Seq is unique per transition in the cluster; the time breaks a
		// tie between two stores (e.g. after Redis lost its state).
		p.ZAdd(ctx, key, redis.Z{Score: float64(ms), Member: strconv.FormatInt(tr.Seq, 10) + "@" + strconv.FormatInt(ms, 10)})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.Add(-FlapWindow).UnixMilli(), 10))
		p.PExpire(ctx, key, FlapWindow)
		zr = p.ZRangeWithScores(ctx, key, 0, -1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]time.Time, 0, len(zr.Val()))
	for _, z := range zr.Val() {
		out = append(out, time.UnixMilli(int64(z.Score)))
	}
	return out, nil
}

// Max is the most offline transitions of one node within the window.
func (f *Flaps) Max() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pruneLocked(f.now())
}

// pruneLocked drops what left the window (and, over flapsMaxNodes, the
// nodes seen longest ago) and returns the highest count. f.mu.
func (f *Flaps) pruneLocked(now time.Time) int {
	most := 0
	var oldestKey string
	var oldest time.Time
	for k, n := range f.recent {
		n.times = inWindow(n.times, now)
		if len(n.times) == 0 {
			delete(f.recent, k)
			continue
		}
		most = max(most, len(n.times))
		if last := n.times[len(n.times)-1]; oldestKey == "" || last.Before(oldest) {
			oldestKey, oldest = k, last
		}
	}
	if len(f.recent) > flapsMaxNodes {
		delete(f.recent, oldestKey)
	}
	return most
}

// inWindow keeps the times within FlapWindow before now (times is sorted).
func inWindow(times []time.Time, now time.Time) []time.Time {
	cut := now.Add(-FlapWindow)
	i := 0
	for i < len(times) && !times[i].After(cut) {
		i++
	}
	if i == 0 {
		return times
	}
	return append(times[:0], times[i:]...)
}
