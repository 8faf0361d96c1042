package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/retry"
	"github.com/eventserver/eventserver/pkg/socketio"
)

// ErrClosed is the error of a request cut short because its adapter or
// Broker was closed.
var ErrClosed = errors.New("redis adapter: closed")

// Broker makes the Redis adapter of each namespace of a Socket.IO server
// (its New is the server's socketio.AdapterFactory) and owns what they share:
// one subscription connection and five goroutines: a reader, a dispatcher
// of broadcasts and requests, a dispatcher of responses, a publisher and
// a supervisor. Use one Broker per socketio.Server.
//
// The supervisor also checks, every health interval, that the
// subscription connection receives what the Broker publishes: it
// publishes a canary on a channel of its own (PREFIX-health#ID#, which no
// Node adapter subscribes to) and expects it back. A connection that does
// not get it within canaryIntervals intervals is subscribed to another
// server than the one publishes reach (after a Sentinel failover, go-redis
// moves its pooled connections to the new master but not a subscription
// connection, and the old master, still up, delivers nothing): it is
// closed, and the reader subscribes again where the client now points.
type Broker struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics
	limit   limiter

	ctx    context.Context // canceled by Shutdown
	cancel context.CancelFunc

	inbound   chan inbound  // reader → dispatcher: broadcasts and requests
	responses chan inbound  // reader → response dispatcher
	respPfx   string        // prefix of the response channels
	pub       *publisher    // callers → Redis (PUBLISH)
	kick      chan struct{} // wakes the supervisor to sync subscriptions
	calls     chan struct{} // semaphore of helper calls
	canaryCh  string        // the channel of the canary, only this Broker's
	canarySeq uint64        // the last canary published; the supervisor's

	mu       sync.Mutex
	closed   bool
	adapters map[*Adapter]struct{}
	routes   map[string][]*Adapter // subscription key → adapters; slices are copied on write
	desired  map[string]int        // subscription key → number of adapters
	sub      *subConn              // nil between subscription connections
	wasReady bool

	wg        sync.WaitGroup
	closeOnce sync.Once
	started   bool          // under mu
	stopped   chan struct{} // closed when Shutdown has stopped the goroutines
}

// inbound is a message read from Redis.
type inbound struct {
	channel string
	pattern string // set for pattern (broadcast) messages
	payload string
}

// outbound is a message waiting to be published.
type outbound struct {
	channel string
	payload []byte
	kind    string // metric label
	at      time.Time
}

// subConn is one subscription connection, from its creation to its loss.
type subConn struct {
	ps        *goredis.PubSub
	activity  atomic.Int64    // unix nanoseconds of the last sign of life
	requested map[string]bool // keys sent to Redis (under Broker.mu)
	confirmed map[string]bool // keys Redis confirmed (under Broker.mu)

	canaryGot    atomic.Uint64 // the last canary received (the reader's)
	canarySent   uint64        // the last canary published for this connection (the supervisor's)
	canarySentAt time.Time     // when it was published (the supervisor's)
}

func (s *subConn) touch() { s.activity.Store(time.Now().UnixNano()) }

func (s *subConn) idle() time.Duration {
	return time.Since(time.Unix(0, s.activity.Load()))
}

// Subscription keys: a channel or a pattern.
func channelKey(ch string) string { return "c:" + ch }
func patternKey(p string) string  { return "p:" + p }

// NewBroker checks cfg; Start starts the Broker's goroutines.
func NewBroker(cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Mode != ModeClassic {
		return nil, fmt.Errorf("redis adapter: mode %q is sharded: use NewShardedBroker", cfg.Mode)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("redis adapter: metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:       cfg,
		log:       cfg.Logger,
		metrics:   m,
		limit:     limiter{every: 10 * time.Second},
		ctx:       ctx,
		cancel:    cancel,
		inbound:   make(chan inbound, cfg.QueueSize),
		responses: make(chan inbound, cfg.QueueSize),
		respPfx:   cfg.Prefix + "-response#",
		kick:      make(chan struct{}, 1),
		calls:     make(chan struct{}, maxCalls),
		canaryCh:  cfg.Prefix + "-health#" + newID() + "#",
		adapters:  map[*Adapter]struct{}{},
		routes:    map[string][]*Adapter{},
		desired:   map[string]int{},
		stopped:   make(chan struct{}),
	}
	b.pub = newPublisher(ctx, cfg, m, &b.limit, "publish",
		func(ctx context.Context, c goredis.Cmdable, ch string, p []byte) *goredis.IntCmd {
			return c.Publish(ctx, ch, p)
		})
	// The canary's subscription, for the Broker's life: Ready waits for
	// it as for the adapters' subscriptions.
	b.desired[channelKey(b.canaryCh)] = 1
	b.metrics.subscribed.Set(0)
	return b, nil
}

// Start starts the Broker's goroutines, which Shutdown stops. It does not
// wait for Redis: the subscriptions are made, and remade after every
// connection loss, in the background; Ready tells when they hold. It does
// nothing when called again or after Shutdown.
func (b *Broker) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	b.wg.Add(5)
	go b.readLoop()
	go b.superviseLoop()
	go b.dispatchLoop(b.inbound)
	go b.dispatchLoop(b.responses)
	go b.publishLoop()
}

// New returns the adapter of nsp: pass it as socketio.Config.Adapter.
// After Shutdown, the adapter it returns delivers locally only.
func (b *Broker) New(nsp *socketio.Namespace) socketio.Adapter {
	a := newAdapter(b, nsp)
	if !b.register(a) {
		a.shutdown()
		b.log.Warn("redis adapter: namespace created after Close; it delivers locally only",
			zap.String("namespace", nsp.Name()))
	}
	return a
}

// Ready reports whether every namespace's subscriptions are confirmed by
// Redis on a connection that is alive now (it answered within the last two
// health intervals; an idle connection is pinged every half interval).
func (b *Broker) Ready() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readyLocked()
}

func (b *Broker) readyLocked() bool {
	s := b.sub
	if b.closed || s == nil || s.idle() >= 2*b.cfg.healthInterval {
		return false
	}
	for key := range b.desired {
		if !s.confirmed[key] {
			return false
		}
	}
	return true
}

// Shutdown closes every adapter (their pending requests fail with
// ErrClosed), stops the goroutines and waits for them, bounded by ctx (its
// error when it ends first). Messages still queued for publishing get one
// last attempt. It is idempotent, and does not close Config.Client.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		adapters := make([]*Adapter, 0, len(b.adapters))
		for a := range b.adapters {
			adapters = append(adapters, a)
		}
		s := b.sub
		b.mu.Unlock()
		for _, a := range adapters {
			a.shutdown()
		}
		b.cancel()
		if s != nil {
			_ = s.ps.Close() // unblocks the reader; an error means it was closed already
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

// spawn runs f in a goroutine that Shutdown waits for; false after Shutdown.
func (b *Broker) spawn(f func()) bool {
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

// register routes a's channels to it and asks for their subscription.
func (b *Broker) register(a *Adapter) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.adapters[a] = struct{}{}
	for _, key := range a.keys() {
		b.routes[key] = append(append([]*Adapter(nil), b.routes[key]...), a)
		b.desired[key]++
	}
	b.kickSupervisor()
	return true
}

// unregister undoes register.
func (b *Broker) unregister(a *Adapter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.adapters[a]; !ok {
		return
	}
	delete(b.adapters, a)
	for _, key := range a.keys() {
		var kept []*Adapter
		for _, other := range b.routes[key] {
			if other != a {
				kept = append(kept, other)
			}
		}
		if len(kept) == 0 {
			delete(b.routes, key)
		} else {
			b.routes[key] = kept
		}
		if b.desired[key]--; b.desired[key] <= 0 {
			delete(b.desired, key)
		}
	}
	b.kickSupervisor()
}

func (b *Broker) kickSupervisor() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// ---- reader: one subscription connection at a time ----

// readLoop owns the subscription connections: it opens one, reads it until it fails, then
// pauses RetryPause and opens the next, until Shutdown.
func (b *Broker) readLoop() {
	defer b.wg.Done()
	_ = retry.Loop{Pause: retry.Fixed(b.cfg.RetryPause)}.Run(b.ctx, func(ctx context.Context, _ int) error {
		s := &subConn{
			ps:        b.cfg.Client.Subscribe(ctx), // no channel yet: no I/O
			requested: map[string]bool{},
			confirmed: map[string]bool{},
		}
		s.touch()
		if !b.startSubConn(s) {
			_ = s.ps.Close()
			return retry.ErrStop
		}
		err := b.receive(s)
		b.endSubConn(s, err)
		_ = s.ps.Close() // an error means the supervisor or Shutdown closed it first
		return err       // never nil: a failure, followed by RetryPause
	})
}

func (b *Broker) startSubConn(s *subConn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.sub = s
	b.kickSupervisor()
	return true
}

func (b *Broker) endSubConn(s *subConn, err error) {
	b.mu.Lock()
	if b.sub == s {
		b.sub = nil
	}
	closing := b.closed
	b.mu.Unlock()
	if closing {
		return
	}
	b.metrics.redisErrors.WithLabelValues(opReceive).Inc()
	if b.limit.allow("subconn") {
		b.log.Warn("redis adapter: subscription connection lost; resubscribing",
			zap.Error(err), zap.Duration("retry_pause", b.cfg.RetryPause))
	}
	b.refreshState()
}

// receive reads s until it fails. Messages go to the inbound queue, which
// never blocks: a full queue drops the message.
func (b *Broker) receive(s *subConn) error {
	for {
		msg, err := s.ps.Receive(b.ctx)
		if err != nil {
			return err
		}
		s.touch()
		switch m := msg.(type) {
		case *goredis.Message:
			if m.Pattern == "" && m.Channel == b.canaryCh {
				if seq, err := strconv.ParseUint(m.Payload, 10, 64); err == nil {
					s.canaryGot.Store(seq)
				}
				continue
			}
			queue := b.inbound
			if m.Pattern == "" && strings.HasPrefix(m.Channel, b.respPfx) {
				queue = b.responses
			}
			select {
			case queue <- inbound{channel: m.Channel, pattern: m.Pattern, payload: m.Payload}:
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

// onSubscription records Redis's confirmation of a (un)subscription.
func (b *Broker) onSubscription(s *subConn, m *goredis.Subscription) {
	b.mu.Lock()
	switch m.Kind {
	case "subscribe":
		s.confirmed[channelKey(m.Channel)] = true
	case "psubscribe":
		s.confirmed[patternKey(m.Channel)] = true
	case "unsubscribe":
		delete(s.confirmed, channelKey(m.Channel))
	case "punsubscribe":
		delete(s.confirmed, patternKey(m.Channel))
	}
	b.mu.Unlock()
	b.refreshState()
}

// refreshState keeps the subscription gauge and the logs in step with
// Ready.
func (b *Broker) refreshState() {
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
		b.log.Info("redis adapter: subscriptions confirmed")
	} else {
		b.metrics.subscribed.Set(0)
		b.log.Warn("redis adapter: not ready: subscriptions unconfirmed or Redis unreachable")
	}
}

// ---- supervisor: subscriptions and health ----

// superviseLoop subscribes what the adapters need on the current subscription connection
// and checks its health every half health interval: an idle
// connection is pinged, and one silent for staleIntervals intervals (a
// hung server, a cut the kernel has not noticed) is closed, so that the
// reader opens a new one.
func (b *Broker) superviseLoop() {
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
			b.checkCanary()
			b.syncSubscriptions()
		}
	}
}

func (b *Broker) syncSubscriptions() {
	b.mu.Lock()
	s := b.sub
	if s == nil {
		b.mu.Unlock()
		return
	}
	var sub, psub, unsub, punsub []string
	for key := range b.desired {
		if !s.requested[key] {
			s.requested[key] = true
			if key[0] == 'p' {
				psub = append(psub, key[2:])
			} else {
				sub = append(sub, key[2:])
			}
		}
	}
	for key := range s.requested {
		if b.desired[key] == 0 {
			delete(s.requested, key)
			if key[0] == 'p' {
				punsub = append(punsub, key[2:])
			} else {
				unsub = append(unsub, key[2:])
			}
		}
	}
	b.mu.Unlock()

	ctx := b.ctx
	var err error
	if len(sub) > 0 {
		err = errors.Join(err, s.ps.Subscribe(ctx, sub...))
	}
	if len(psub) > 0 {
		err = errors.Join(err, s.ps.PSubscribe(ctx, psub...))
	}
	if len(unsub) > 0 {
		err = errors.Join(err, s.ps.Unsubscribe(ctx, unsub...))
	}
	if len(punsub) > 0 {
		err = errors.Join(err, s.ps.PUnsubscribe(ctx, punsub...))
	}
	if err != nil && b.ctx.Err() == nil && b.current(s) {
		// The connection is unusable; closing the subscription connection makes the
		// reader start a new one, which subscribes everything again.
		b.metrics.redisErrors.WithLabelValues(opSubscribe).Inc()
		if b.limit.allow(opSubscribe) {
			b.log.Warn("redis adapter: subscribe failed", zap.Error(err))
		}
		_ = s.ps.Close()
	}
}

// current reports whether s is the current subscription connection.
func (b *Broker) current(s *subConn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sub == s
}

func (b *Broker) checkHealth() {
	b.mu.Lock()
	s := b.sub
	b.mu.Unlock()
	if s != nil {
		switch idle := s.idle(); {
		case idle >= staleIntervals*b.cfg.healthInterval:
			b.metrics.redisErrors.WithLabelValues(opPing).Inc()
			if b.limit.allow(opPing) {
				b.log.Warn("redis adapter: no answer from Redis; reconnecting", zap.Duration("silent_for", idle))
			}
			_ = s.ps.Close()
		case idle >= b.cfg.healthInterval/2:
			// The answer comes back through the reader, as any message.
			if err := s.ps.Ping(b.ctx); err != nil && b.ctx.Err() == nil {
				b.metrics.redisErrors.WithLabelValues(opPing).Inc()
				if b.limit.allow(opPing) {
					b.log.Warn("redis adapter: ping failed; reconnecting", zap.Error(err))
				}
				_ = s.ps.Close()
			}
		}
	}
	b.refreshState()
}

// checkCanary publishes a canary every health interval on the current
// subscription connection's behalf, and closes the connection when the
// last one has not come back after canaryIntervals intervals: the
// connection is alive (checkHealth's pings are answered) but subscribed
// on another server than the one publishes reach.
func (b *Broker) checkCanary() {
	b.mu.Lock()
	s := b.sub
	ok := s != nil && s.confirmed[channelKey(b.canaryCh)]
	b.mu.Unlock()
	if !ok {
		return
	}
	waiting := s.canarySent > s.canaryGot.Load()
	switch since := time.Since(s.canarySentAt); {
	case waiting && since >= canaryIntervals*b.cfg.healthInterval:
		b.metrics.redisErrors.WithLabelValues(opCanary).Inc()
		if b.limit.allow(opCanary) {
			b.log.Warn("redis adapter: the subscription connection does not receive what this instance publishes (the Redis master changed?); resubscribing",
				zap.Duration("waited", since))
		}
		_ = s.ps.Close()
	case !waiting && since >= b.cfg.healthInterval:
		b.canarySeq++
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.healthInterval)
		defer cancel()
		at := time.Now()
		// A failed publish proves nothing about the subscription (Redis
		// is unreachable, which the reader and the publisher notice):
		// the next tick tries again.
		if b.cfg.Client.Publish(ctx, b.canaryCh, strconv.FormatUint(b.canarySeq, 10)).Err() == nil {
			s.canarySent, s.canarySentAt = b.canarySeq, at
		}
	}
}

// ---- dispatcher ----

// dispatchLoop hands each message of a queue to the adapters of its
// channel, one message at a time, in the order Redis delivered them.
//
// Responses have a queue and a goroutine of their own: a request handler
// or a server-side event listener may wait for a request of its own
// (fetchSockets in a disconnect handler, say), whose responses must not
// queue up behind it.
func (b *Broker) dispatchLoop(queue <-chan inbound) {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case in := <-queue:
			b.dispatch(in)
		}
	}
}

func (b *Broker) dispatch(in inbound) {
	key := channelKey(in.channel)
	if in.pattern != "" {
		key = patternKey(in.pattern)
	}
	b.mu.Lock()
	targets := b.routes[key]
	b.mu.Unlock()
	for _, a := range targets {
		b.handleSafely(a, in)
	}
}

func (b *Broker) handleSafely(a *Adapter, in inbound) { handleSafely(b.log, a.name, in, a.handle) }

// handleSafely runs handle(in) and keeps the dispatcher (of either broker)
// alive when a handler (a server-side event listener, say) panics.
func handleSafely(log *zap.Logger, namespace string, in inbound, handle func(inbound)) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("redis adapter: panic while handling a message",
				zap.String("namespace", namespace), zap.String("channel", in.channel), zap.Any("panic", r))
		}
	}()
	handle(in)
}

// ---- publisher ----

// publish queues a message for Redis. It never blocks: a full queue, or a
// closed Broker, drops the message.
func (b *Broker) publish(channel string, payload []byte, kind string) {
	b.pub.put(channel, payload, kind)
}

// publishLoop runs the publisher until Shutdown.
func (b *Broker) publishLoop() {
	defer b.wg.Done()
	b.pub.run()
}

// ---- PUBSUB NUMSUB ----

// serverCount is the number of subscribers of a request channel, that is
// of servers with the namespace (summed over the nodes of a Cluster). It
// waits at most timeout, whatever the client's own timeouts.
func (b *Broker) serverCount(ctx context.Context, channel string, timeout time.Duration) (int64, error) {
	select {
	case b.calls <- struct{}{}:
	default:
		return 0, errors.New("redis adapter: too many PUBSUB NUMSUB calls under way")
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
		n, err := b.numSub(callCtx, channel)
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
			return 0, fmt.Errorf("redis adapter: PUBSUB NUMSUB: %w", r.err)
		}
		return r.n, nil
	case <-timer.C:
		b.metrics.redisErrors.WithLabelValues(opNumSub).Inc()
		return 0, fmt.Errorf("redis adapter: PUBSUB NUMSUB: no answer within %s", timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.ctx.Done():
		return 0, ErrClosed
	}
}

func (b *Broker) numSub(ctx context.Context, channel string) (int64, error) {
	if cc, ok := b.cfg.Client.(*goredis.ClusterClient); ok {
		// Subscribers are counted by the node they are connected to.
		var total atomic.Int64
		err := cc.ForEachShard(ctx, func(ctx context.Context, c *goredis.Client) error {
			m, err := c.PubSubNumSub(ctx, channel).Result()
			total.Add(m[channel])
			return err
		})
		return total.Load(), err
	}
	m, err := b.cfg.Client.PubSubNumSub(ctx, channel).Result()
	return m[channel], err
}

// ---- log rate limiting ----

// limiter lets a kind of log line through at most once per interval, so
// that an outage logs a few lines rather than one per message. Metrics
// count every occurrence.
type limiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.every {
		return false
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	l.last[key] = now
	return true
}
