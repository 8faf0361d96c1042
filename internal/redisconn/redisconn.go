// Package redisconn turns EVENTSERVER_REDIS_URL into a go-redis client.
// The scheme picks the deployment (standalone, Sentinel or Cluster: see
// validate.RedisURL); options are go-redis's URL query parameters
// (dial_timeout, read_timeout, ...).
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

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
		return redis.NewClusterClient(opts), Mode(mode), nil
	}
	return nil, "", errors.New("redisconn: unreachable")
}

// Redact returns the URL without its password, for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// zapLogging sends go-redis's own log lines (failed dials, pool
// notices) to zap instead of stderr.
type zapLogging struct{ log *zap.Logger }

func (z zapLogging) Printf(_ context.Context, format string, v ...any) {
	z.log.Warn(fmt.Sprintf(format, v...))
}

// SetLogger routes go-redis's process-wide log lines to log.
func SetLogger(log *zap.Logger) {
	redis.SetLogger(zapLogging{log: log.Named("go-redis")})
}
