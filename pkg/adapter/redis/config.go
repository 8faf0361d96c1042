package redis

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultPrefix         = "socket.io"
	DefaultRequestTimeout = 5 * time.Second
	DefaultPublishTimeout = time.Second
	DefaultQueueSize      = 4096
	DefaultRetryPause     = 500 * time.Millisecond

	// defaultHealthInterval is how often an idle subscription connection
	// is pinged. A connection that shows no sign of life for
	// staleIntervals intervals is declared dead and replaced.
	defaultHealthInterval = time.Second
	staleIntervals        = 3
	// canaryIntervals: a subscription connection that has not received
	// the Broker's canary that many intervals after it was published is
	// subscribed on another server than publishes reach, and is replaced
	// (see Broker). Two, as for Ready: a Redis slower than that to
	// deliver is not ready anyway.
	canaryIntervals = 2

	// maxBatch is the most publishes sent in one pipeline.
	maxBatch = 128
	// maxCalls bounds the Redis calls (PUBSUB NUMSUB) that run in helper
	// goroutines at once; past it a call fails at once.
	maxCalls = 64
)

// Config configures a Broker.
type Config struct {
	// Client publishes, counts subscribers (PUBSUB NUMSUB) and subscribes.
	// A standalone, Sentinel (failover) or Cluster client; not a Ring.
	// Required. The Broker does not close it.
	Client goredis.UniversalClient
	// Mode is ModeClassic ("" too), for NewBroker, or a sharded mode
	// (ModeStatic, ModeDynamic, ModeDynamicPrivate), for
	// NewShardedBroker.
	Mode Mode
	// Prefix of every channel, Node's `key` option. Default "socket.io".
	Prefix string
	// RequestTimeout bounds every request to the other servers (Node's
	// requestsTimeout). Default 5s.
	RequestTimeout time.Duration
	// PublishTimeout bounds how long a message may wait to be published.
	// Publishing never blocks its caller: messages go through a bounded
	// queue, and one that cannot be published within PublishTimeout is
	// dropped, logged and counted. It also bounds PUBSUB NUMSUB when the
	// server count is needed on a socket's path. Default 1s.
	PublishTimeout time.Duration
	// QueueSize bounds each queue: the two inbound queues between the
	// Redis reader and message handling (one for broadcasts and requests,
	// one for responses) and the outbound publish queue. A full queue
	// drops (and counts) the message; it never blocks the reader or the
	// caller. Default 4096.
	QueueSize int
	// RetryPause is the pause between (re)subscribe attempts while Redis is
	// unreachable. Default 500ms.
	RetryPause time.Duration
	// Logger receives the adapter's logs; nil logs nothing.
	Logger *zap.Logger
	// Registerer receives the adapter's metrics
	// (eventserver_redis_adapter_*); nil registers none.
	Registerer prometheus.Registerer

	// healthInterval overrides defaultHealthInterval (tests).
	healthInterval time.Duration
}

// withDefaults checks cfg and fills in its defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Client == nil {
		return cfg, errors.New("redis adapter: Config.Client is required")
	}
	if _, ok := cfg.Client.(*goredis.Ring); ok {
		return cfg, errors.New("redis adapter: a Ring client cannot carry pub/sub; use a standalone, Sentinel or Cluster client")
	}
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return cfg, err
	}
	cfg.Mode = mode
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.RetryPause <= 0 {
		cfg.RetryPause = DefaultRetryPause
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.healthInterval <= 0 {
		cfg.healthInterval = defaultHealthInterval
	}
	return cfg, nil
}
