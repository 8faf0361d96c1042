// Package outbox hands the facts that nodes establish (online, offline,
// ping, node_info_update, node_metrics_update, algorithm_status_change,
// algorithm_log) to the backend: each fact is appended once, by the instance
// that received it, to a Redis stream of bounded length (XADD MAXLEN ~), and
// optionally POSTed to a webhook, as JSON with a unique id so that the
// consumer can apply it at least once and deduplicate.
//
// Add never blocks: each sink (the stream, the webhook) has a bounded
// in-memory queue drained by its own goroutines. While Redis is unreachable
// the stream writer keeps retrying what is queued; a full queue drops new
// facts and counts them. Shutdown drains the queues, bounded by its context,
// and stops the goroutines.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/internal/validate"
)

// Defaults of Config.
const (
	DefaultMaxLen            = 100000
	DefaultQueueSize         = 10000
	DefaultBatchSize         = 100
	DefaultTimeout           = 5 * time.Second
	DefaultRetryMin          = 100 * time.Millisecond
	DefaultRetryMax          = 5 * time.Second
	DefaultWebhookAttempts   = 5
	DefaultWebhookTimeout    = 5 * time.Second
	DefaultWebhookBackoff    = 250 * time.Millisecond
	DefaultWebhookMaxBackoff = 10 * time.Second
	DefaultWebhookWorkers    = 4
	// logEvery bounds the repeated log lines (drops, Redis still down).
	logEvery = 10 * time.Second
)

// Config configures an Outbox. At least one of Stream and WebhookURL is set.
type Config struct {
	// Stream is the key of the Redis stream; empty: no stream.
	Stream string
	// Client reaches the stream's Redis; required with Stream. The outbox
	// does not close it.
	Client redis.UniversalClient
	// MaxLen bounds the stream's length, approximately (XADD MAXLEN ~:
	// Redis trims whole nodes of its radix tree, so the stream may hold up
	// to about stream-node-max-entries, 100 by default, more). Default
	// DefaultMaxLen.
	MaxLen int64
	// BatchSize is the most facts written in one pipelined round trip.
	// Default 100.
	BatchSize int
	// Timeout bounds one round trip to Redis (through its context: go-redis
	// honours it with ContextTimeoutEnabled; otherwise the client's read and
	// write timeouts bound it). Default 5s.
	Timeout time.Duration
	// RetryMin and RetryMax bound the pause, exponential with jitter,
	// between failed round trips. Defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration

	// WebhookURL receives each fact as the JSON body of a POST; empty: no
	// webhook. http or https, without user information.
	WebhookURL string
	// WebhookToken, when set, is sent as "Authorization: Bearer <token>".
	// It is never logged.
	WebhookToken string
	// WebhookAttempts bounds the attempts per fact. Default 5.
	WebhookAttempts int
	// WebhookTimeout bounds one attempt. Default 5s.
	WebhookTimeout time.Duration
	// WebhookBackoff and WebhookMaxBackoff bound the pause, exponential with
	// jitter, between attempts. Defaults 250ms and 10s.
	WebhookBackoff, WebhookMaxBackoff time.Duration
	// WebhookWorkers is how many facts are delivered at the same time.
	// Default 4.
	WebhookWorkers int
	// HTTPClient sends the webhook's requests; nil: a client of its own.
	HTTPClient *http.Client

	// QueueSize bounds each sink's queue (a writer also holds up to
	// BatchSize facts of its current round trip). Default 10000.
	QueueSize int
	// Instance names this instance in facts that do not say. Required.
	Instance string
	// Logger receives the outbox's logs; nil logs nothing.
	Logger *zap.Logger
	// Registerer receives the outbox's metrics (eventserver_outbox_*); nil
	// registers none.
	Registerer prometheus.Registerer
	// Now is the clock of fact times and ids; nil: time.Now.
	Now func() time.Time
}

// RedactURL renders a webhook URL for logs: scheme, host and path, without
// the query (which may hold a secret).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Stream == "" && c.WebhookURL == "":
		return c, errors.New("outbox: neither Stream nor WebhookURL is set")
	case c.Stream != "" && c.Client == nil:
		return c, errors.New("outbox: Stream needs a Client")
	case c.Instance == "":
		return c, errors.New("outbox: Instance is required")
	case c.MaxLen < 0 || c.BatchSize < 0 || c.QueueSize < 0 || c.WebhookAttempts < 0 || c.WebhookWorkers < 0:
		return c, errors.New("outbox: negative size")
	case c.Timeout < 0 || c.RetryMin < 0 || c.RetryMax < 0 || c.WebhookTimeout < 0 || c.WebhookBackoff < 0 || c.WebhookMaxBackoff < 0:
		return c, errors.New("outbox: negative duration")
	}
	if c.WebhookURL != "" {
		if err := validate.WebhookURL(c.WebhookURL); err != nil {
			return c, fmt.Errorf("outbox: webhook: %w", err)
		}
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxLen == 0 {
		c.MaxLen = DefaultMaxLen
	}
	defInt(&c.BatchSize, DefaultBatchSize)
	defInt(&c.QueueSize, DefaultQueueSize)
	defInt(&c.WebhookAttempts, DefaultWebhookAttempts)
	defInt(&c.WebhookWorkers, DefaultWebhookWorkers)
	def(&c.Timeout, DefaultTimeout)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.WebhookTimeout, DefaultWebhookTimeout)
	def(&c.WebhookBackoff, DefaultWebhookBackoff)
	def(&c.WebhookMaxBackoff, DefaultWebhookMaxBackoff)
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	c.WebhookMaxBackoff = max(c.WebhookMaxBackoff, c.WebhookBackoff)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Outbox queues facts and writes them to its sinks.
type Outbox struct {
	cfg  Config
	log  *zap.Logger
	m    *metrics
	http *http.Client
	own  *http.Transport // the transport of a client of our own, closed at shutdown

	// ctx ends when Shutdown's deadline passes: the writers stop retrying.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	done      chan struct{} // closed when every writer has returned

	mu     sync.RWMutex // guards closed against the queues' close
	closed bool
	queues []*queue

	// lost counts the facts still queued when Shutdown's deadline passed.
	lost atomic.Int64
	// stream is the stream writer's state (only its goroutine uses it).
	stream streamState
}

// item is one encoded fact in a queue.
type item struct {
	id, typ string
	body    []byte
}

// queue is one sink's bounded queue.
type queue struct {
	sink    string
	ch      chan item
	length  prometheus.Gauge
	dropped prometheus.Counter
	failed  prometheus.Counter

	dropMu      sync.Mutex
	dropCount   int
	dropLogged  time.Time
	dropLogOnce bool
}

// New checks cfg and makes the queues; Start starts the writers.
func New(cfg Config) (*Outbox, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	o := &Outbox{cfg: cfg, log: cfg.Logger, m: m, done: make(chan struct{})}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	if cfg.Stream != "" {
		o.newQueue(sinkStream)
	}
	if cfg.WebhookURL != "" {
		o.http = cfg.HTTPClient
		if o.http == nil {
			o.own = http.DefaultTransport.(*http.Transport).Clone()
			o.own.MaxIdleConnsPerHost = cfg.WebhookWorkers
			o.http = &http.Client{Transport: o.own}
		}
		o.newQueue(sinkWebhook)
	}
	return o, nil
}

// Start starts the writers, which Shutdown stops: one for the stream, and
// WebhookWorkers for the webhook. Later calls do nothing.
func (o *Outbox) Start() {
	if o == nil {
		return
	}
	o.startOnce.Do(func() {
		for _, q := range o.queues {
			switch q.sink {
			case sinkStream:
				o.wg.Add(1)
				go o.runStream(q)
			case sinkWebhook:
				for range o.cfg.WebhookWorkers {
					o.wg.Add(1)
					go o.runWebhook(q)
				}
			}
		}
		go func() {
			o.wg.Wait()
			close(o.done)
		}()
	})
}

func (o *Outbox) newQueue(sink string) *queue {
	o.m.sinkSeries(sink)
	q := &queue{
		sink:    sink,
		ch:      make(chan item, o.cfg.QueueSize),
		length:  o.m.queue.WithLabelValues(sink),
		dropped: o.m.dropped.WithLabelValues(sink),
		failed:  o.m.failed.WithLabelValues(sink),
	}
	o.queues = append(o.queues, q)
	return q
}

// Add queues a fact for every sink, without blocking: a sink whose queue is
// full drops it (counted, and logged at most every 10 seconds). It fills
// ID, Time and Instance when they are empty. Safe for concurrent use, and a
// no-op on a nil Outbox.
func (o *Outbox) Add(f protocol.Fact) {
	if o == nil {
		return
	}
	now := o.cfg.Now()
	if f.Time.IsZero() {
		f.Time = now
	}
	if f.ID == "" {
		f.ID = NewID(now)
	}
	if f.Instance == "" {
		f.Instance = o.cfg.Instance
	}
	body, err := encode(&f)
	if err != nil {
		for _, q := range o.queues {
			q.failed.Inc()
		}
		o.log.Error("outbox: fact cannot be encoded: dropped", zap.String("type", f.Type), zap.String("fact_id", f.ID), zap.Error(err))
		return
	}
	it := item{id: f.ID, typ: f.Type, body: body}
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, q := range o.queues {
		if o.closed {
			o.drop(q, it, "the outbox is shut down")
			continue
		}
		q.length.Inc()
		select {
		case q.ch <- it:
		default:
			q.length.Dec()
			o.drop(q, it, "the queue is full")
		}
	}
}

// drop counts a fact a queue could not take, and logs it at most every
// logEvery with the number dropped since the last line.
func (o *Outbox) drop(q *queue, it item, why string) {
	q.dropped.Inc()
	q.dropMu.Lock()
	q.dropCount++
	now := time.Now()
	if q.dropLogOnce && now.Sub(q.dropLogged) < logEvery {
		q.dropMu.Unlock()
		return
	}
	n := q.dropCount
	q.dropCount, q.dropLogged, q.dropLogOnce = 0, now, true
	q.dropMu.Unlock()
	o.log.Warn("outbox: dropping facts: "+why, zap.String("sink", q.sink), zap.Int("dropped", n),
		zap.Int("queue_size", o.cfg.QueueSize), zap.String("type", it.typ), zap.String("fact_id", it.id))
}

// Queued is the number of facts the sinks hold, not yet written.
func (o *Outbox) Queued() int {
	if o == nil {
		return 0
	}
	n := 0
	for _, q := range o.queues {
		n += len(q.ch)
	}
	return n
}

// Shutdown stops taking facts, writes what is queued and stops the writers.
// When ctx ends first, the writers stop retrying, what they still hold is
// counted as failed, and the error says how many facts were lost. It
// returns once every goroutine of the outbox has ended (after ctx ends, at
// most one Redis round trip or webhook attempt later). Later calls wait for
// the first and return nil. Without Start, it starts the writers, so that
// what was queued is written all the same.
func (o *Outbox) Shutdown(ctx context.Context) error {
	if o == nil {
		return nil
	}
	o.Start()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		<-o.done
		return nil
	}
	o.closed = true
	for _, q := range o.queues {
		close(q.ch)
	}
	o.mu.Unlock()
	start := time.Now()
	if n := o.Queued(); n > 0 {
		o.log.Info("outbox: writing the queued facts", zap.Int("queued", n))
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		o.cancel()
		<-o.done
	}
	o.cancel()
	if o.own != nil {
		o.own.CloseIdleConnections()
	}
	if n := o.lost.Load(); n > 0 {
		o.log.Error("outbox: facts lost at shutdown: still queued when the deadline passed", zap.Int64("lost", n))
		err := context.Cause(ctx)
		if err == nil {
			err = context.Canceled
		}
		return fmt.Errorf("outbox: %d facts not written before the shutdown deadline: %w", n, err)
	}
	o.log.Info("outbox: shut down", zap.Duration("took", time.Since(start)))
	return nil
}

// lose counts facts given up at shutdown.
func (o *Outbox) lose(q *queue, n int) {
	if n == 0 {
		return
	}
	q.failed.Add(float64(n))
	q.length.Sub(float64(n))
	o.lost.Add(int64(n))
}

// sleep waits d, or until the shutdown deadline; false when that passed.
func (o *Outbox) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-o.ctx.Done():
		return false
	}
}

// sanitize renders an error for a log line without the URL that
// net/http's errors quote (its query may hold a secret).
func sanitize(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return strings.TrimSpace(ue.Op + ": " + ue.Err.Error())
	}
	return err.Error()
}
