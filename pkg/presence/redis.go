package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/retry"
)

// RedisConfig configures a RedisStore.
type RedisConfig struct {
	// Client reaches Redis (standalone, Sentinel or Cluster; Redis ≥ 5).
	// Required. The store does not close it.
	Client redis.UniversalClient
	// Handler receives the transitions this replica decides; nil: none
	// are reported (they are still decided, by exactly one replica).
	Handler Handler
	// Instance names this replica, uniquely in the cluster. Required.
	Instance string
	// Prefix of every key; the keys are "{Prefix}:..." so that Redis
	// Cluster keeps them in one slot. It may not contain '{' or '}'.
	// Default DefaultPrefix ("eventserver:presence"). Replicas that share
	// presence use the same Prefix.
	Prefix string
	// RefreshInterval is how often the replica extends the heartbeat
	// entries of its connections. Default 5s.
	RefreshInterval time.Duration
	// TTL is how long an entry lives without a refresh: a replica that is
	// silent for that long is dead to the others. At least twice
	// RefreshInterval. Default 3 × RefreshInterval (15s). It is also the
	// restore window after Redis lost its state.
	TTL time.Duration
	// Grace is how long a node whose last connection closed stays online,
	// waiting for a reconnect on any replica. Default 5s; NoGrace: none
	// (decided by the next sweep).
	Grace time.Duration
	// SweepInterval is how often the replica looks for expired entries and
	// due offline decisions. Default 1s. When no replica swept for
	// max(TTL/2, 2 × SweepInterval) (Redis paused, or out of everyone's
	// reach), nobody could refresh either: the next sweep holds expiries
	// and offline deadlines for a TTL, so that a Redis outage does not
	// turn into a storm of offline/online notices. So does the first
	// sweep on another Redis server than the last sweep's (a failover:
	// the replicas may have refreshed on the old master until they
	// learned of the new one).
	SweepInterval time.Duration
	// StaleAfter: a connected node that has not pinged (nor connected) for
	// longer is reported stale, and logged once by the replicas that hold
	// its connections. Default 65s.
	StaleAfter time.Duration
	// Timeout bounds each Redis call of the store, through its context:
	// go-redis honours it only with ContextTimeoutEnabled; otherwise the
	// client's own read and write timeouts bound the calls. Default 5s.
	Timeout time.Duration
	// RetryPause is the pause before the next refresh after a failed one
	// (Redis down). Default 1s, at most RefreshInterval.
	RetryPause time.Duration
	// Logger receives the store's logs; nil logs nothing.
	Logger *zap.Logger
	// Registerer receives the store's metrics (eventserver_presence_*);
	// nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock of stale detection; nil: time.Now. Heartbeat expiry
	// and grace deadlines use Redis's clock, not this one.
	Now func() time.Time
}

// Validate checks the configuration without connecting.
func (c RedisConfig) Validate() error {
	_, err := c.withDefaults()
	return err
}

func (c RedisConfig) withDefaults() (RedisConfig, error) {
	switch {
	case c.Client == nil:
		return c, errors.New("presence: RedisConfig.Client is required")
	case c.Instance == "":
		return c, errors.New("presence: RedisConfig.Instance is required")
	case strings.ContainsAny(c.Prefix, "{}"):
		return c, fmt.Errorf("presence: Prefix %q may not contain '{' or '}'", c.Prefix)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"RefreshInterval", c.RefreshInterval}, {"TTL", c.TTL}, {"SweepInterval", c.SweepInterval},
		{"StaleAfter", c.StaleAfter}, {"Timeout", c.Timeout}, {"RetryPause", c.RetryPause},
	} {
		if d.v < 0 {
			return c, fmt.Errorf("presence: %s %s is negative", d.name, d.v)
		}
	}
	if c.Grace < 0 && c.Grace != NoGrace {
		return c, fmt.Errorf("presence: Grace %s is negative (NoGrace is -1ns)", c.Grace)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.TTL == 0 {
		c.TTL = 3 * c.RefreshInterval
	}
	if c.TTL < 2*c.RefreshInterval {
		return c, fmt.Errorf("presence: TTL %s must be at least twice RefreshInterval %s", c.TTL, c.RefreshInterval)
	}
	if c.TTL < time.Millisecond || c.RefreshInterval < time.Millisecond {
		return c, errors.New("presence: TTL and RefreshInterval must be at least 1ms")
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryPause == 0 {
		c.RetryPause = DefaultRetryPause
	}
	c.RetryPause = min(c.RetryPause, c.RefreshInterval)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Batch sizes: connections per script call, so that no call blocks Redis
// for long.
const (
	refreshBatch  = 1000
	registerBatch = 200
	removeBatch   = 500
	sweepLimit    = 1000
	stripeCount   = 64
)

// RedisStore is the Store of a cluster: presence lives in Redis and every
// replica sees all of it. Each live connection of this replica has a
// heartbeat entry that a background loop refreshes; a second loop sweeps
// the entries of dead replicas and decides due offlines. Transitions are
// decided by Lua scripts, each by exactly one replica, which reports it to
// its Handler: online from Connect, offline (after the grace, or at once
// for a dead replica's connection) from the sweeper's goroutine.
type RedisStore struct {
	cfg   RedisConfig
	r     runner
	log   *zap.Logger
	m     *metrics
	out   *transitionQueue
	stale *staleWatch

	// stripes serialize the Redis calls about one connection (connect,
	// disconnect, re-registration), so that they reach Redis in order.
	stripes [stripeCount]sync.Mutex

	mu     sync.Mutex
	epoch  string                // the Redis epoch last seen
	conns  map[string]*localConn // this replica's live connections, by member
	nodes  map[string]*localNode // their nodes, by key
	retry  map[string]*localConn // removals that failed, retried by the refresh loop
	closed bool
	dead   bool // tests: a replica that died without a word

	kick chan struct{}

	loopMu     sync.Mutex
	loopCancel context.CancelFunc
	loops      sync.WaitGroup
}

// localConn is a live connection of this replica.
type localConn struct {
	Conn
	member string
	// epoch is the Redis epoch it was last registered in ("" never).
	epoch string
	// gen counts its registrations.
	gen uint64
}

// localNode is what this replica knows of a node it holds connections of,
// to restore it if Redis loses its state.
type localNode struct {
	conns              int
	ping               time.Time
	config, metrics    json.RawMessage
	configAt, metricAt time.Time
}

var _ Store = (*RedisStore)(nil)

// NewRedis returns a RedisStore; Start starts its loops. It does not
// connect: a Redis that is down makes calls fail, and the loops retry.
func NewRedis(cfg RedisConfig) (*RedisStore, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer, true)
	if err != nil {
		return nil, fmt.Errorf("presence: metrics: %w", err)
	}
	log := cfg.Logger.With(zap.String("instance", cfg.Instance))
	s := &RedisStore{
		cfg:   cfg,
		r:     runner{client: cfg.Client, ks: newKeyspace(cfg.Prefix), window: cfg.TTL},
		log:   log,
		m:     met,
		out:   &transitionQueue{h: cfg.Handler, log: log},
		stale: newStaleWatch(cfg.StaleAfter, cfg.Now, log),
		conns: map[string]*localConn{},
		nodes: map[string]*localNode{},
		retry: map[string]*localConn{},
		kick:  make(chan struct{}, 1),
	}
	return s, nil
}

// Start starts the refresh and sweep loops, which Shutdown stops. It does
// nothing when called again or after Shutdown (not concurrently with it).
func (s *RedisStore) Start() {
	s.mu.Lock()
	closed := s.closed || s.dead
	s.mu.Unlock()
	if !closed {
		s.startLoops()
	}
}

func stripeOf(member string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(member))
	return int(h.Sum32() % stripeCount)
}

func (s *RedisStore) stripe(member string) *sync.Mutex { return &s.stripes[stripeOf(member)] }

// lockStripes locks the stripes of members in order; the returned func
// unlocks them.
func (s *RedisStore) lockStripes(members []string) func() {
	idx := make([]int, 0, len(members))
	for _, m := range members {
		idx = append(idx, stripeOf(m))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.stripes[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			s.stripes[i].Unlock()
		}
	}
}

func (s *RedisStore) knownEpoch() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// noteEpochLocked records the epoch a script answered; a new one means
// Redis lost its state: refresh at once, which restores our connections.
func (s *RedisStore) noteEpochLocked(e string) {
	if e == "" || e == s.epoch {
		return
	}
	if s.epoch != "" {
		s.log.Warn("Redis lost the presence state (new epoch): restoring this replica's connections",
			zap.Int("connections", len(s.conns)))
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.epoch = e
}

func (s *RedisStore) noteEpoch(e string) {
	s.mu.Lock()
	s.noteEpochLocked(e)
	s.mu.Unlock()
}

// report counts and delivers transitions.
func (s *RedisStore) report(trs []Transition) {
	if len(trs) == 0 {
		return
	}
	s.m.counted(trs)
	s.out.add(trs...)
	s.out.deliver()
}

func (s *RedisStore) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Connect implements Store. When Redis cannot be reached the connection is
// kept and the error returned; the refresh loop registers it later.
func (s *RedisStore) Connect(ctx context.Context, c Conn) error {
	lc := &localConn{Conn: c, member: memberOf(c.Node.Key, c.ID)}
	st := s.stripe(lc.member)
	st.Lock()
	s.mu.Lock()
	switch {
	case s.dead:
		s.mu.Unlock()
		st.Unlock()
		return nil
	case s.closed:
		s.mu.Unlock()
		st.Unlock()
		return ErrClosed
	}
	if _, dup := s.conns[lc.member]; dup {
		s.mu.Unlock()
		st.Unlock()
		return nil
	}
	delete(s.retry, lc.member)
	s.conns[lc.member] = lc
	n := s.nodes[c.Node.Key]
	if n == nil {
		n = &localNode{}
		s.nodes[c.Node.Key] = n
	}
	n.conns++
	seen := c.Since
	if n.ping.After(seen) {
		seen = n.ping
	}
	s.mu.Unlock()
	s.stale.seen(c.Node.Key, c.Node.Name, seen)

	ctx, cancel := s.timeout(ctx)
	defer cancel()
	trs, err := s.registerLocked(ctx, modeConnect, []*localConn{lc})
	st.Unlock()
	s.report(trs)
	if err != nil {
		return fmt.Errorf("presence: connect %s of node %s (kept; the refresh loop will register it): %w", c.ID, c.Node.Key, err)
	}
	return nil
}

// registerLocked registers connections whose stripes the caller holds.
func (s *RedisStore) registerLocked(ctx context.Context, mode string, lcs []*localConn) ([]Transition, error) {
	s.mu.Lock()
	known := s.epoch
	cs := make([]regConn, len(lcs))
	for i, lc := range lcs {
		cs[i] = regConn{Conn: lc.Conn}
		if n := s.nodes[lc.Node.Key]; n != nil && mode == modeRestore {
			cs[i].ping, cs[i].config, cs[i].configAt, cs[i].metrics, cs[i].metricAt = n.ping, n.config, n.configAt, n.metrics, n.metricAt
		}
	}
	s.mu.Unlock()
	var all []Transition
	for start := 0; start < len(cs); start += registerBatch {
		end := min(start+registerBatch, len(cs))
		eid, trs, err := s.r.register(ctx, known, mode, s.cfg.TTL, cs[start:end])
		if err != nil {
			return all, err
		}
		all = append(all, trs...)
		s.mu.Lock()
		s.noteEpochLocked(eid)
		known = s.epoch
		for _, lc := range lcs[start:end] {
			lc.epoch = eid
			lc.gen++
		}
		s.mu.Unlock()
	}
	return all, nil
}

// Disconnect implements Store. When Redis cannot be reached the removal is
// retried by the refresh loop (and the error returned).
func (s *RedisStore) Disconnect(ctx context.Context, nodeKey, connID string) error {
	member := memberOf(nodeKey, connID)
	st := s.stripe(member)
	st.Lock()
	defer st.Unlock()
	s.mu.Lock()
	lc := s.conns[member]
	if s.dead || lc == nil {
		s.mu.Unlock()
		return nil
	}
	s.dropLocked(lc)
	s.mu.Unlock()

	ctx, cancel := s.timeout(ctx)
	defer cancel()
	if err := s.removeLocked(ctx, []*localConn{lc}); err != nil {
		s.mu.Lock()
		if !s.closed {
			s.retry[member] = lc
		}
		s.mu.Unlock()
		return fmt.Errorf("presence: disconnect %s of node %s (retried by the refresh loop): %w", connID, nodeKey, err)
	}
	return nil
}

// dropLocked forgets a local connection; the caller holds s.mu.
func (s *RedisStore) dropLocked(lc *localConn) {
	delete(s.conns, lc.member)
	if n := s.nodes[lc.Node.Key]; n != nil {
		n.conns--
		if n.conns <= 0 {
			delete(s.nodes, lc.Node.Key)
			s.stale.forget(lc.Node.Key)
		}
	}
}

// removeLocked runs disconnect.lua for connections whose stripes the
// caller holds (or that are no longer reachable by other calls).
func (s *RedisStore) removeLocked(ctx context.Context, lcs []*localConn) error {
	known := s.knownEpoch()
	for start := 0; start < len(lcs); start += removeBatch {
		end := min(start+removeBatch, len(lcs))
		cs := make([]discConn, 0, end-start)
		for _, lc := range lcs[start:end] {
			cs = append(cs, discConn{Conn: lc.Conn, epoch: lc.epoch})
		}
		eid, err := s.r.disconnect(ctx, known, s.cfg.Grace, cs)
		if err != nil {
			return err
		}
		s.noteEpoch(eid)
		known = eid
	}
	return nil
}

// Ping implements Store.
func (s *RedisStore) Ping(ctx context.Context, nodeKey string, at time.Time) error {
	known, alive := s.remember(nodeKey, func(n *localNode) {
		if at.After(n.ping) {
			n.ping = at
		}
	})
	if !alive {
		return nil
	}
	if known {
		s.stale.seen(nodeKey, "", at)
	}
	return s.update(ctx, "ping", nodeKey, "ping", micros(at))
}

// remember applies f to this replica's copy of a node it holds connections
// of (kept to restore Redis after it lost its state). known: the node is
// held here; alive: the store is not dead (a dead store writes nothing).
func (s *RedisStore) remember(nodeKey string, f func(*localNode)) (known, alive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false, false
	}
	n := s.nodes[nodeKey]
	if n != nil && f != nil {
		f(n)
	}
	return n != nil, true
}

// Seen implements Store.
func (s *RedisStore) Seen(ctx context.Context, nodeKey string, at time.Time) error {
	if _, alive := s.remember(nodeKey, nil); !alive {
		return nil
	}
	return s.update(ctx, "heartbeat", nodeKey, "seen", micros(at))
}

// SetConfig implements Store.
func (s *RedisStore) SetConfig(ctx context.Context, nodeKey string, cfg json.RawMessage, at time.Time) error {
	if _, alive := s.remember(nodeKey, func(n *localNode) { n.config, n.configAt = cfg, at }); !alive {
		return nil
	}
	return s.update(ctx, "config", nodeKey, "config", string(cfg), "config_at", micros(at))
}

// SetMetrics implements Store.
func (s *RedisStore) SetMetrics(ctx context.Context, nodeKey string, v json.RawMessage, at time.Time) error {
	if _, alive := s.remember(nodeKey, func(n *localNode) { n.metrics, n.metricAt = v, at }); !alive {
		return nil
	}
	return s.update(ctx, "metrics", nodeKey, "metrics", string(v), "metrics_at", micros(at))
}

func (s *RedisStore) update(ctx context.Context, what, nodeKey string, fv ...any) error {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	if _, err := s.r.update(ctx, nodeKey, fv...); err != nil {
		return fmt.Errorf("presence: %s of node %s: %w", what, nodeKey, err)
	}
	return nil
}

// Online implements Store: the online nodes of the whole cluster, from
// Redis.
func (s *RedisStore) Online(ctx context.Context) ([]State, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	raw, err := s.r.online(ctx)
	if err != nil {
		return nil, fmt.Errorf("presence: online: %w", err)
	}
	now := s.cfg.Now()
	out := make([]State, len(raw))
	for i, r := range raw {
		out[i] = r.State
		out[i].finish(r.lastConnect, r.lastHeartbeat, now, s.cfg.StaleAfter)
	}
	sortStates(out)
	return out, nil
}

// Shutdown implements Store: it stops the loops, then removes this
// replica's connections from Redis as Disconnect does, so that their
// nodes go offline after the grace (decided by another replica's sweeper)
// unless they reconnect elsewhere, instead of after the TTL.
func (s *RedisStore) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	dead := s.dead
	s.mu.Unlock()
	s.stopLoops()
	s.stale.stop()
	if dead {
		return nil
	}

	// Wait for the calls under way, then hand everything over.
	for i := range s.stripes {
		s.stripes[i].Lock()
	}
	defer func() {
		for i := range s.stripes {
			s.stripes[i].Unlock()
		}
	}()
	s.mu.Lock()
	lcs := make([]*localConn, 0, len(s.conns)+len(s.retry))
	for _, lc := range s.conns {
		lcs = append(lcs, lc)
	}
	for _, lc := range s.retry {
		lcs = append(lcs, lc)
	}
	clear(s.conns)
	clear(s.nodes)
	clear(s.retry)
	s.mu.Unlock()
	if len(lcs) == 0 {
		return nil
	}
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	if err := s.removeLocked(ctx, lcs); err != nil {
		s.log.Warn("presence hand-over failed: the connections expire after the TTL instead",
			zap.Int("connections", len(lcs)), zap.Duration("ttl", s.cfg.TTL), zap.Error(err))
		return fmt.Errorf("presence: hand-over of %d connections: %w", len(lcs), err)
	}
	s.log.Info("presence handed over", zap.Int("connections", len(lcs)))
	return nil
}

func (s *RedisStore) startLoops() {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	if s.loopCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.loopCancel = cancel
	s.loops.Add(2)
	go s.refreshLoop(ctx)
	go s.sweepLoop(ctx)
}

func (s *RedisStore) stopLoops() {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	if s.loopCancel == nil {
		return
	}
	s.loopCancel()
	s.loops.Wait()
	s.loopCancel = nil
}

// refreshLoop refreshes every RefreshInterval, at once when kicked (Redis
// lost its state), and RetryPause after a failure.
func (s *RedisStore) refreshLoop(ctx context.Context) {
	defer s.loops.Done()
	l := retry.Loop{Every: s.cfg.RefreshInterval, Pause: retry.Fixed(s.cfg.RetryPause), Wake: s.kick}
	_ = l.Run(ctx, func(ctx context.Context, failures int) error {
		opCtx, cancel := s.timeout(ctx)
		err := s.refresh(opCtx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			s.m.refreshErrors.Inc()
			if failures == 0 {
				s.log.Warn("presence refresh failed; retrying", zap.Duration("pause", s.cfg.RetryPause), zap.Error(err))
			}
		case failures > 0:
			s.log.Info("presence refresh works again")
		}
		return err
	})
}

// sweepLoop sweeps every SweepInterval.
func (s *RedisStore) sweepLoop(ctx context.Context) {
	defer s.loops.Done()
	l := retry.Loop{Every: s.cfg.SweepInterval, Pause: retry.Fixed(s.cfg.SweepInterval)}
	_ = l.Run(ctx, func(ctx context.Context, failures int) error {
		opCtx, cancel := s.timeout(ctx)
		err := s.sweep(opCtx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			s.m.sweepErrors.Inc()
			if failures == 0 {
				s.log.Warn("presence sweep failed; retrying", zap.Duration("interval", s.cfg.SweepInterval), zap.Error(err))
			}
		case failures > 0:
			s.log.Info("presence sweep works again")
		}
		return err
	})
}

// refresh retries failed removals, extends this replica's heartbeat
// entries and registers again those Redis lost.
func (s *RedisStore) refresh(ctx context.Context) error {
	start := time.Now()
	defer func() { s.m.refreshSeconds.Observe(time.Since(start).Seconds()) }()
	if err := s.retryRemovals(ctx); err != nil {
		return err
	}

	type snap struct {
		lc  *localConn
		gen uint64
	}
	s.mu.Lock()
	snaps := make([]snap, 0, len(s.conns))
	for _, lc := range s.conns {
		snaps = append(snaps, snap{lc, lc.gen})
	}
	known := s.epoch
	s.mu.Unlock()

	var missing []snap
	members := make([]string, 0, min(len(snaps), refreshBatch))
	for start := 0; start < len(snaps); start += refreshBatch {
		chunk := snaps[start:min(start+refreshBatch, len(snaps))]
		members = members[:0]
		for _, sn := range chunk {
			members = append(members, sn.lc.member)
		}
		eid, miss, err := s.r.refresh(ctx, known, s.cfg.TTL, members)
		if err != nil {
			return err
		}
		gone := make(map[string]bool, len(miss))
		for _, m := range miss {
			gone[m] = true
		}
		s.mu.Lock()
		s.noteEpochLocked(eid)
		known = s.epoch
		for _, sn := range chunk {
			if gone[sn.lc.member] {
				missing = append(missing, sn)
			} else if s.conns[sn.lc.member] == sn.lc {
				sn.lc.epoch = eid // it is in Redis, in this epoch
			}
		}
		s.mu.Unlock()
	}

	// Register again what Redis lost, each connection under its stripe,
	// unless a call registered or removed it meanwhile.
	for start := 0; start < len(missing); start += registerBatch {
		chunk := missing[start:min(start+registerBatch, len(missing))]
		members = members[:0]
		for _, sn := range chunk {
			members = append(members, sn.lc.member)
		}
		unlock := s.lockStripes(members)
		byMode := map[string][]*localConn{}
		s.mu.Lock()
		for _, sn := range chunk {
			if s.conns[sn.lc.member] != sn.lc || sn.lc.gen != sn.gen {
				continue
			}
			// Registered in an older epoch: lost with Redis's state, so
			// its node was online and users were told; restore it
			// silently. Registered in this epoch (swept as expired: this
			// replica was silent for a TTL, its offline was reported) or
			// never: a normal connect.
			mode := modeConnect
			if sn.lc.epoch != "" && sn.lc.epoch != s.epoch {
				mode = modeRestore
			}
			byMode[mode] = append(byMode[mode], sn.lc)
		}
		s.mu.Unlock()
		var trs []Transition
		var err error
		for _, mode := range []string{modeRestore, modeConnect} {
			if lcs := byMode[mode]; len(lcs) > 0 && err == nil {
				var got []Transition
				got, err = s.registerLocked(ctx, mode, lcs)
				trs = append(trs, got...)
				if err == nil {
					s.m.reregistered.WithLabelValues(mode).Add(float64(len(lcs)))
					s.log.Info("presence: registered connections again", zap.String("mode", mode), zap.Int("connections", len(lcs)))
				}
			}
		}
		unlock()
		s.report(trs)
		if err != nil {
			return err
		}
	}
	return nil
}

// retryRemovals runs the removals that failed earlier.
func (s *RedisStore) retryRemovals(ctx context.Context) error {
	s.mu.Lock()
	lcs := make([]*localConn, 0, len(s.retry))
	for _, lc := range s.retry {
		lcs = append(lcs, lc)
	}
	s.mu.Unlock()
	for _, lc := range lcs {
		st := s.stripe(lc.member)
		st.Lock()
		s.mu.Lock()
		current := s.retry[lc.member] == lc
		s.mu.Unlock()
		var err error
		if current {
			if err = s.removeLocked(ctx, []*localConn{lc}); err == nil {
				s.mu.Lock()
				if s.retry[lc.member] == lc {
					delete(s.retry, lc.member)
				}
				s.mu.Unlock()
			}
		}
		st.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// sweep runs sweep.lua until nothing is left to do.
func (s *RedisStore) sweep(ctx context.Context) error {
	for {
		res, err := s.r.sweep(ctx, s.knownEpoch(), sweepLimit, s.sweepGap(), s.cfg.TTL)
		if err != nil {
			return err
		}
		s.noteEpoch(res.epoch)
		s.m.sweeps.Inc()
		s.m.expirations.Add(float64(res.expired))
		s.m.online.Set(float64(res.online))
		if res.expired > 0 {
			s.log.Info("presence: removed expired connections of silent replicas", zap.Int("connections", res.expired))
		}
		s.report(res.trs)
		if !res.more {
			return nil
		}
	}
}

// sweepGap is how long nobody may have swept before the sweeper holds
// expiries for a TTL (Redis was out of everyone's reach).
func (s *RedisStore) sweepGap() time.Duration {
	return max(s.cfg.TTL/2, 2*s.cfg.SweepInterval)
}

// kill stops the loops and every later call without a word to Redis, as
// a replica that dies (tests).
func (s *RedisStore) kill() {
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
	s.stopLoops()
	s.stale.stop()
}
