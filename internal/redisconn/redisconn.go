// Package redisconn turns EVENTSERVER_REDIS_URL into a go-redis client.
// The scheme picks the deployment (standalone, Sentinel or Cluster: see
// validate.RedisURL); options are go-redis's URL query parameters
// (dial_timeout, read_timeout, ...).
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/eventserver/eventserver/internal/validate"
)

// Mode is how the client reaches Redis.
type Mode string

const (
	Standalone Mode = validate.RedisStandalone
	Sentinel   Mode = validate.RedisSentinel
	Cluster    Mode = validate.RedisCluster
)

// NewClient returns a client for the URL (checked by validate.RedisURL). It
// does not connect: go-redis dials on first use.
func NewClient(raw string) (redis.UniversalClient, Mode, error) {
	o, mode, err := validate.RedisURL(raw)
	if err != nil {
		return nil, "", fmt.Errorf("redisconn: %w", err)
	}
	switch opts := o.(type) {
	case *redis.Options:
		return redis.NewClient(opts), Mode(mode), nil
	case *redis.FailoverOptions:
		return redis.NewFailoverClient(opts), Mode(mode), nil
	case *redis.ClusterOptions:
		if opts.ClusterStateReloadInterval == 0 {
			opts.ClusterStateReloadInterval = clusterReload
		}
		c := redis.NewClusterClient(opts)
		c.AddHook(reloadOnNetError{c})
		return c, Mode(mode), nil
	}
	return nil, "", errors.New("redisconn: unreachable")
}

// clusterReload bounds how stale a Redis Cluster client's slot map may get
// (go-redis's default is 60 s), whatever the traffic.
const clusterReload = 5 * time.Second

// reloadOnNetError makes a cluster client read the slot map again when a
// command fails on the network: go-redis does that on MOVED, ASK and
// READONLY answers, but a master that died answers nothing, and without
// this the commands of its slots (presence, the outbox, the adapter's
// publishes) kept dialling it until the periodic reload, after its replica
// had long been promoted (TestClusterFailoverPresence). go-redis
// debounces reloads (one at a time, 200 ms apart).
type reloadOnNetError struct{ c *redis.ClusterClient }

func (h reloadOnNetError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnNetError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnNetError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnNetError) check(ctx context.Context, err error) {
	var netErr net.Error
	if err != nil && (errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED)) {
		h.c.ReloadState(ctx)
	}
}

// Redact returns the URL without its password, for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// logEvery is how often one kind of go-redis line (one format string) is
// logged while it repeats; the lines in between are counted, not written.
const logEvery = 10 * time.Second

// zapLogging sends go-redis's own log lines (failed dials, pool notices,
// Sentinel's choice of master) to zap instead of stderr, at a level that
// says what they are: the sentinel a client picked and the sentinels it
// discovered are Info; a failover ("sentinel: new master") and every
// other line are Warn; the query a client cancels itself, because another
// sentinel answered first, is Debug. While Redis is unreachable go-redis
// writes a line for every failed dial (several a second per instance
// during a Sentinel failover): each kind is written at most once every
// logEvery, with the number of lines left out since the last one.
type zapLogging struct {
	log *zap.Logger
	now func() time.Time

	mu    sync.Mutex
	kinds map[string]*logKind // by format string
}

type logKind struct {
	last       time.Time
	suppressed int
}

func newZapLogging(log *zap.Logger, now func() time.Time) *zapLogging {
	return &zapLogging{log: log, now: now, kinds: map[string]*logKind{}}
}

func (z *zapLogging) Printf(_ context.Context, format string, v ...any) {
	level := zapcore.WarnLevel
	switch {
	case strings.HasPrefix(format, "sentinel: selected addr"), strings.HasPrefix(format, "sentinel: discovered new sentinel"):
		level = zapcore.InfoLevel
	case strings.HasPrefix(format, "sentinel: new master"):
		// A failover: rare and wanted, never left out.
		ce := z.log.Check(zapcore.WarnLevel, fmt.Sprintf(format, v...))
		if ce != nil {
			ce.Write()
		}
		return
	case canceled(v):
		level = zapcore.DebugLevel
	}
	if !z.log.Core().Enabled(level) {
		return
	}
	now := z.now()
	z.mu.Lock()
	k := z.kinds[format]
	if k == nil {
		if len(z.kinds) >= 256 { // bounded: go-redis has far fewer formats
			clear(z.kinds)
		}
		k = &logKind{}
		z.kinds[format] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < logEvery {
		k.suppressed++
		z.mu.Unlock()
		return
	}
	suppressed := k.suppressed
	k.last, k.suppressed = now, 0
	z.mu.Unlock()
	var fields []zap.Field
	if suppressed > 0 {
		fields = append(fields, zap.Int("suppressed", suppressed), zap.Duration("suppressed_over", logEvery))
	}
	if ce := z.log.Check(level, fmt.Sprintf(format, v...)); ce != nil {
		ce.Write(fields...)
	}
}

// canceled reports whether one of a log line's arguments is a canceled
// context's error.
func canceled(v []any) bool {
	for _, a := range v {
		if err, ok := a.(error); ok && errors.Is(err, context.Canceled) {
			return true
		}
	}
	return false
}

// SetLogger routes go-redis's process-wide log lines to log.
func SetLogger(log *zap.Logger) {
	redis.SetLogger(newZapLogging(log.Named("go-redis"), time.Now))
}
