package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/promreg"
	"github.com/eventserver/eventserver/pkg/socketio"
)

// ShardedBroker is the Broker of the sharded modes (Redis 7 sharded
// pub/sub, wire-compatible with Node's createShardedAdapter): it makes
// each namespace's *ShardedAdapter and owns what they share. On a Redis
// Cluster a sharded channel lives on the master of its slot, so the
// Broker holds one subscription connection per master that serves one
// of its channels, each with a reader; besides, a supervisor (placement,
// health), two dispatchers (messages, responses) and a publisher
// (SPUBLISH, which the Cluster client routes by slot).
type ShardedBroker struct {
	cfg          Config
	log          *zap.Logger
	metrics      *metrics
	roomChannels prometheus.Gauge
	limit        limiter

	ctx    context.Context
	cancel context.CancelFunc

	inbound   chan inbound
	responses chan inbound
	pub       *publisher // callers → Redis (SPUBLISH)
	kick      chan struct{}
	calls     chan struct{}

	mu        sync.Mutex
	closed    bool
	started   bool
	wasReady  bool
	adapters  map[*ShardedAdapter]struct{}
	routes    map[string][]*ShardedAdapter // channel → adapters; slices copied on write
	respChans map[string]bool              // the response channels among routes
	desired   map[string]int               // channel → references
	rooms     int                          // room channels among desired
	roomSince map[string]time.Time         // room channel → when it was first wanted
	conns     map[string]*shardConn        // node address ("" without a Cluster) → connection
	owner     map[string]*shardConn        // channel → connection it was subscribed on
	retryAt   time.Time                    // no new connection before

	wg        sync.WaitGroup
	closeOnce sync.Once
	stopped   chan struct{}
}

// shardConn is one subscription connection to one node.
type shardConn struct {
	addr      string
	ps        *goredis.PubSub
	activity  atomic.Int64
	requested map[string]bool // under ShardedBroker.mu
	confirmed map[string]bool // under ShardedBroker.mu
}

func (s *shardConn) touch() { s.activity.Store(time.Now().UnixNano()) }

func (s *shardConn) idle() time.Duration { return time.Since(time.Unix(0, s.activity.Load())) }

// NewShardedBroker checks cfg (its Mode must be static, dynamic or
// dynamic-private); Start starts the Broker's goroutines.
func NewShardedBroker(cfg Config) (*ShardedBroker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if !cfg.Mode.Sharded() {
		return nil, fmt.Errorf("redis adapter: NewShardedBroker needs a sharded mode (static, dynamic, dynamic-private), not %q", cfg.Mode)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("redis adapter: metrics: %w", err)
	}
	rooms := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricPrefix + "room_channels",
		Help: "Sharded modes: room channels (P#N#room#) subscribed because a local socket is in the room.",
	})
	if cfg.Registerer != nil {
		rooms = promreg.Register(cfg.Registerer, rooms, &err)
		if err != nil {
			return nil, fmt.Errorf("redis adapter: metrics: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &ShardedBroker{
		cfg:          cfg,
		log:          cfg.Logger,
		metrics:      m,
		roomChannels: rooms,
		limit:        limiter{every: 10 * time.Second},
		ctx:          ctx,
		cancel:       cancel,
		inbound:      make(chan inbound, cfg.QueueSize),
		responses:    make(chan inbound, cfg.QueueSize),
		kick:         make(chan struct{}, 1),
		calls:        make(chan struct{}, maxCalls),
		adapters:     map[*ShardedAdapter]struct{}{},
		routes:       map[string][]*ShardedAdapter{},
		respChans:    map[string]bool{},
		desired:      map[string]int{},
		conns:        map[string]*shardConn{},
		owner:        map[string]*shardConn{},
		roomSince:    map[string]time.Time{},
		stopped:      make(chan struct{}),
	}
	b.pub = newPublisher(ctx, cfg, m, &b.limit, "SPUBLISH",
		func(ctx context.Context, c goredis.Cmdable, ch string, p []byte) *goredis.IntCmd {
			return c.SPublish(ctx, ch, p)
		})
	// go-redis's Cluster client reads the slot map again on a MOVED, and by
	// default only every minute otherwise: after a master died, it would
	// keep sending to its address (internal/redisconn's client also
	// rereads it on a network error; this package does not assume it).
	b.pub.failed = b.reloadSlots
	b.metrics.subscribed.Set(0)
	return b, nil
}

// Mode is the Broker's subscription mode.
func (b *ShardedBroker) Mode() Mode { return b.cfg.Mode }

// Start starts the supervisor, the dispatchers and the publisher; the
// readers come and go with the subscription connections. It does not
// wait for Redis; Ready tells when the subscriptions hold.
func (b *ShardedBroker) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	b.wg.Add(4)
	go b.superviseLoop()
	go b.dispatchLoop(b.inbound)
	go b.dispatchLoop(b.responses)
	go b.publishLoop()
}

// New returns the adapter of nsp: pass it as socketio.Config.Adapter.
func (b *ShardedBroker) New(nsp *socketio.Namespace) socketio.Adapter {
	a := newShardedAdapter(b, nsp)
	if !b.register(a, a.channel, false) || !b.register(a, a.respChannel, true) {
		a.shutdown()
		b.log.Warn("redis adapter: namespace created after Close; it delivers locally only",
			zap.String("namespace", nsp.Name()))
	}
	return a
}

// Ready reports whether every channel is confirmed by Redis on a
// connection that is alive now; the channel of a room joined less than
// two health intervals ago may still be on its way.
func (b *ShardedBroker) Ready() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readyLocked()
}

func (b *ShardedBroker) readyLocked() bool {
	if b.closed || !b.started {
		return false
	}
	now := time.Now()
	for ch := range b.desired {
		s := b.owner[ch]
		if s == nil || !s.confirmed[ch] || s.idle() >= 2*b.cfg.healthInterval {
			if t, room := b.roomSince[ch]; room && now.Sub(t) < 2*b.cfg.healthInterval {
				// A room just joined: its channel is on its way.
				continue
			}
			return false
		}
	}
	return true
}

// Shutdown closes every adapter, stops the goroutines and waits for them,
// bounded by ctx. Messages still queued get one last attempt. It does
// not close Config.Client.
func (b *ShardedBroker) Shutdown(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		adapters := make([]*ShardedAdapter, 0, len(b.adapters))
		for a := range b.adapters {
			adapters = append(adapters, a)
		}
		conns := make([]*shardConn, 0, len(b.conns))
		for _, s := range b.conns {
			conns = append(conns, s)
		}
		b.mu.Unlock()
		for _, a := range adapters {
			a.shutdown()
		}
		b.cancel()
		for _, s := range conns {
			_ = s.ps.Close()
		}
		go func() {
			b.wg.Wait()
			b.metrics.subscribed.Set(0)
			close(b.stopped)
		}()
	})
	select {
	case <-b.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *ShardedBroker) spawn(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// register routes channel to a and asks for its subscription.
func (b *ShardedBroker) register(a *ShardedAdapter, channel string, response bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.adapters[a] = struct{}{}
	b.routes[channel] = append(append([]*ShardedAdapter(nil), b.routes[channel]...), a)
	if response {
		b.respChans[channel] = true
	}
	b.desired[channel]++
	b.kickSupervisor()
	return true
}

// unregisterLocked undoes register (and setRoom). b.mu.
func (b *ShardedBroker) unregisterLocked(a *ShardedAdapter, channel string) {
	routes := b.routes[channel]
	i := slices.Index(routes, a)
	if i < 0 {
		return
	}
	if len(routes) == 1 {
		delete(b.routes, channel)
		delete(b.respChans, channel)
	} else {
		b.routes[channel] = slices.Delete(slices.Clone(routes), i, i+1)
	}
	if b.desired[channel]--; b.desired[channel] <= 0 {
		delete(b.desired, channel)
		delete(b.roomSince, channel)
	}
	b.kickSupervisor()
}

// setRoom subscribes (on) or releases a room channel of a.
func (b *ShardedBroker) setRoom(a *ShardedAdapter, channel string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		if b.closed {
			return
		}
		b.routes[channel] = append(append([]*ShardedAdapter(nil), b.routes[channel]...), a)
		if b.desired[channel]++; b.desired[channel] == 1 {
			b.roomSince[channel] = time.Now()
		}
		b.rooms++
		b.kickSupervisor()
	} else if slices.Contains(b.routes[channel], a) {
		b.unregisterLocked(a, channel)
		b.rooms--
	}
	b.roomChannels.Set(float64(b.rooms))
}

// forget removes a and all its channels.
func (b *ShardedBroker) forget(a *ShardedAdapter, channels []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range channels {
		b.unregisterLocked(a, ch)
	}
	delete(b.adapters, a)
}

func (b *ShardedBroker) kickSupervisor() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// ---- subscription connections ----

// nodeFor returns the node that serves channel: the master of its slot
// on a Cluster, the one server otherwise.
func (b *ShardedBroker) nodeFor(ctx context.Context, channel string) (string, goredis.UniversalClient, error) {
	if cc, ok := b.cfg.Client.(*goredis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, channel)
		if err != nil {
			return "", nil, err
		}
		return node.Options().Addr, node, nil
	}
	return "", b.cfg.Client, nil
}

// superviseLoop places the channels on their nodes' connections, and
// checks every connection's health every half health interval.
func (b *ShardedBroker) superviseLoop() {
	defer b.wg.Done()
	tick := time.NewTicker(b.cfg.healthInterval / 2)
	defer tick.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.kick:
			b.syncSubscriptions()
		case <-tick.C:
			b.checkHealth()
			b.syncSubscriptions()
		}
	}
}

type subOps struct{ sub, unsub []string }

func (b *ShardedBroker) syncSubscriptions() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	want := make([]string, 0, len(b.desired))
	for ch := range b.desired {
		if b.owner[ch] == nil || !b.owner[ch].requested[ch] {
			want = append(want, ch)
		}
	}
	b.mu.Unlock()

	// Where the unplaced channels go (the Cluster client's slot map).
	type place struct {
		addr string
		node goredis.UniversalClient
	}
	placed := make(map[string]place, len(want))
	for _, ch := range want {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.PublishTimeout)
		addr, node, err := b.nodeFor(ctx, ch)
		cancel()
		if err != nil {
			b.metrics.redisErrors.WithLabelValues(opSubscribe).Inc()
			if b.limit.allow("placement") {
				b.log.Warn("redis adapter: cannot tell which node serves a channel", zap.Error(err))
			}
			continue
		}
		placed[ch] = place{addr, node}
	}

	ops := map[*shardConn]*subOps{}
	opsOf := func(s *shardConn) *subOps {
		if ops[s] == nil {
			ops[s] = &subOps{}
		}
		return ops[s]
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	now := time.Now()
	for ch, p := range placed {
		if b.desired[ch] == 0 {
			continue
		}
		s := b.conns[p.addr]
		if old := b.owner[ch]; old != nil && old != s {
			// Its slot moved: release it where it was.
			delete(old.requested, ch)
			delete(old.confirmed, ch)
			opsOf(old).unsub = append(opsOf(old).unsub, ch)
		}
		if s == nil {
			if now.Before(b.retryAt) {
				continue
			}
			s = &shardConn{addr: p.addr, ps: p.node.SSubscribe(b.ctx), requested: map[string]bool{}, confirmed: map[string]bool{}}
			s.touch()
			b.conns[p.addr] = s
			b.wg.Add(1)
			go b.readLoop(s)
		}
		s.requested[ch] = true
		b.owner[ch] = s
		opsOf(s).sub = append(opsOf(s).sub, ch)
	}
	for ch, s := range b.owner {
		if b.desired[ch] == 0 {
			delete(b.owner, ch)
			if s.requested[ch] {
				delete(s.requested, ch)
				delete(s.confirmed, ch)
				opsOf(s).unsub = append(opsOf(s).unsub, ch)
			}
		}
	}
	var idle []*shardConn
	for addr, s := range b.conns {
		if len(s.requested) == 0 {
			delete(b.conns, addr)
			idle = append(idle, s)
		}
	}
	b.mu.Unlock()

	_, cluster := b.cfg.Client.(*goredis.ClusterClient)
	for s, o := range ops {
		var err error
		// On a Cluster the channels of one SSUBSCRIBE must share a slot:
		// one channel per command there.
		if len(o.unsub) > 0 && !slices.Contains(idle, s) {
			err = errors.Join(err, each(o.unsub, cluster, func(chs ...string) error { return s.ps.SUnsubscribe(b.ctx, chs...) }))
		}
		if len(o.sub) > 0 {
			err = errors.Join(err, each(o.sub, cluster, func(chs ...string) error { return s.ps.SSubscribe(b.ctx, chs...) }))
		}
		if err != nil && b.ctx.Err() == nil {
			b.metrics.redisErrors.WithLabelValues(opSubscribe).Inc()
			if b.limit.allow(opSubscribe) {
				b.log.Warn("redis adapter: SSUBSCRIBE failed", zap.String("node", s.addr), zap.Error(err))
			}
			_ = s.ps.Close() // its reader drops it; the channels are placed again
		}
	}
	for _, s := range idle {
		_ = s.ps.Close()
	}
	b.refreshState()
}

// each calls f with all of chs, or with one at a time when one is true.
func each(chs []string, one bool, f func(...string) error) error {
	if !one {
		return f(chs...)
	}
	var err error
	for _, ch := range chs {
		err = errors.Join(err, f(ch))
	}
	return err
}

// readLoop reads one connection until it fails or is closed.
func (b *ShardedBroker) readLoop(s *shardConn) {
	defer b.wg.Done()
	err := b.receive(s)
	b.dropConn(s, err)
}

func (b *ShardedBroker) receive(s *shardConn) error {
	for {
		msg, err := s.ps.Receive(b.ctx)
		if err != nil {
			return err
		}
		s.touch()
		switch m := msg.(type) {
		case *goredis.Message:
			b.mu.Lock()
			queue := b.inbound
			if b.respChans[m.Channel] {
				queue = b.responses
			}
			b.mu.Unlock()
			select {
			case queue <- inbound{channel: m.Channel, payload: m.Payload}:
			default:
				b.metrics.dropped.WithLabelValues(dropInboundFull).Inc()
				if b.limit.allow(dropInboundFull) {
					b.log.Warn("redis adapter: inbound queue full; dropping messages", zap.Int("queue_size", b.cfg.QueueSize))
				}
			}
		case *goredis.Subscription:
			b.onSubscription(s, m)
		}
	}
}

func (b *ShardedBroker) onSubscription(s *shardConn, m *goredis.Subscription) {
	b.mu.Lock()
	moved := false
	switch m.Kind {
	case "ssubscribe":
		if s.requested[m.Channel] {
			s.confirmed[m.Channel] = true
		}
	case "sunsubscribe":
		delete(s.confirmed, m.Channel)
		if s.requested[m.Channel] && b.owner[m.Channel] == s {
			// Not asked for: Redis released it because its slot moved
			// (resharding, or this node is a replica now).
			delete(s.requested, m.Channel)
			delete(b.owner, m.Channel)
			moved = true
		}
	}
	b.mu.Unlock()
	if moved {
		if b.limit.allow("moved") {
			b.log.Info("redis adapter: Redis released a sharded channel (its slot moved); subscribing it again",
				zap.String("node", s.addr), zap.String("channel", m.Channel))
		}
		b.reloadSlots()
		b.kickSupervisor()
	}
	b.refreshState()
}

// dropConn forgets a failed or closed connection; its channels are placed
// again by the supervisor, RetryPause later when it failed.
func (b *ShardedBroker) dropConn(s *shardConn, err error) {
	b.mu.Lock()
	current := b.conns[s.addr] == s
	if current {
		delete(b.conns, s.addr)
		b.retryAt = time.Now().Add(b.cfg.RetryPause)
	}
	for ch := range s.requested {
		if b.owner[ch] == s {
			delete(b.owner, ch)
		}
	}
	closing := b.closed
	b.mu.Unlock()
	_ = s.ps.Close()
	if closing || !current {
		return
	}
	b.metrics.redisErrors.WithLabelValues(opReceive).Inc()
	if b.limit.allow("subconn") {
		b.log.Warn("redis adapter: sharded subscription connection lost; resubscribing",
			zap.String("node", s.addr), zap.Error(err), zap.Duration("retry_pause", b.cfg.RetryPause))
	}
	b.reloadSlots()
	b.refreshState()
}

// reloadSlots asks the Cluster client to read the slot map again (in the
// background; requests made meanwhile are merged).
func (b *ShardedBroker) reloadSlots() {
	if cc, ok := b.cfg.Client.(*goredis.ClusterClient); ok {
		cc.ReloadState(b.ctx)
	}
}

func (b *ShardedBroker) refreshState() {
	b.mu.Lock()
	ready := b.readyLocked()
	changed := ready != b.wasReady
	b.wasReady = ready
	b.mu.Unlock()
	if !changed {
		return
	}
	if ready {
		b.metrics.subscribed.Set(1)
		b.log.Info("redis adapter: sharded subscriptions confirmed")
	} else {
		b.metrics.subscribed.Set(0)
		b.log.Warn("redis adapter: not ready: sharded subscriptions unconfirmed or Redis unreachable")
	}
}

// checkHealth pings idle connections and closes silent ones.
func (b *ShardedBroker) checkHealth() {
	b.mu.Lock()
	conns := make([]*shardConn, 0, len(b.conns))
	for _, s := range b.conns {
		conns = append(conns, s)
	}
	b.mu.Unlock()
	for _, s := range conns {
		switch idle := s.idle(); {
		case idle >= staleIntervals*b.cfg.healthInterval:
			b.metrics.redisErrors.WithLabelValues(opPing).Inc()
			if b.limit.allow(opPing) {
				b.log.Warn("redis adapter: no answer from a Redis node; reconnecting", zap.String("node", s.addr), zap.Duration("silent_for", idle))
			}
			_ = s.ps.Close()
		case idle >= b.cfg.healthInterval/2:
			if err := s.ps.Ping(b.ctx); err != nil && b.ctx.Err() == nil {
				b.metrics.redisErrors.WithLabelValues(opPing).Inc()
				if b.limit.allow(opPing) {
					b.log.Warn("redis adapter: ping failed; reconnecting", zap.String("node", s.addr), zap.Error(err))
				}
				_ = s.ps.Close()
			}
		}
	}
	b.refreshState()
}

// ---- dispatchers ----

func (b *ShardedBroker) dispatchLoop(queue <-chan inbound) {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case in := <-queue:
			b.mu.Lock()
			targets := b.routes[in.channel]
			b.mu.Unlock()
			for _, a := range targets {
				b.handleSafely(a, in)
			}
		}
	}
}

func (b *ShardedBroker) handleSafely(a *ShardedAdapter, in inbound) {
	handleSafely(b.log, a.name, in, a.handle)
}

// ---- publisher ----

func (b *ShardedBroker) publish(channel string, payload []byte, kind string) {
	b.pub.put(channel, payload, kind)
}

func (b *ShardedBroker) publishLoop() {
	defer b.wg.Done()
	b.pub.run()
}

// ---- PUBSUB SHARDNUMSUB ----

// serverCount is the number of subscribers of a namespace channel, summed
// over the masters of a Cluster as Node does, within timeout.
func (b *ShardedBroker) serverCount(ctx context.Context, channel string, timeout time.Duration) (int64, error) {
	select {
	case b.calls <- struct{}{}:
	default:
		return 0, errors.New("redis adapter: too many PUBSUB SHARDNUMSUB calls under way")
	}
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	callCtx, cancel := context.WithTimeout(b.ctx, timeout)
	if !b.spawn(func() {
		defer func() { <-b.calls }()
		defer cancel()
		n, err := b.shardNumSub(callCtx, channel)
		res <- result{n, err}
	}) {
		cancel()
		<-b.calls
		return 0, ErrClosed
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-res:
		if r.err != nil {
			b.metrics.redisErrors.WithLabelValues(opNumSub).Inc()
			b.reloadSlots()
			return 0, fmt.Errorf("redis adapter: PUBSUB SHARDNUMSUB: %w", r.err)
		}
		return r.n, nil
	case <-timer.C:
		b.metrics.redisErrors.WithLabelValues(opNumSub).Inc()
		return 0, fmt.Errorf("redis adapter: PUBSUB SHARDNUMSUB: no answer within %s", timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.ctx.Done():
		return 0, ErrClosed
	}
}

func (b *ShardedBroker) shardNumSub(ctx context.Context, channel string) (int64, error) {
	if cc, ok := b.cfg.Client.(*goredis.ClusterClient); ok {
		var total atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			m, err := c.PubSubShardNumSub(ctx, channel).Result()
			total.Add(m[channel])
			return err
		})
		return total.Load(), err
	}
	m, err := b.cfg.Client.PubSubShardNumSub(ctx, channel).Result()
	return m[channel], err
}
