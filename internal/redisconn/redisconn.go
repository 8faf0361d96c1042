// Package redisconn turns EVENTSERVER_REDIS_URL into a go-redis client.
//
// The scheme picks the deployment:
//
//	redis://[user:password@]host:port[/db][?options]       standalone (rediss:// for TLS, unix:// for a socket)
//	redis+sentinel://[user:password@]host:port?master_name=NAME[&addr=host2:port...]   Sentinel (rediss+sentinel:// for TLS)
//	redis+cluster://[user:password@]host:port[?addr=host2:port...]                     Cluster (rediss+cluster:// for TLS)
//
// Options are go-redis's URL query parameters (dial_timeout, read_timeout, ...).
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Mode is how the client reaches Redis.
type Mode string

const (
	Standalone Mode = "standalone"
	Sentinel   Mode = "sentinel"
	Cluster    Mode = "cluster"
)

// Parse checks a URL and returns its mode, without connecting.
func Parse(raw string) (Mode, error) {
	_, mode, err := options(raw)
	return mode, err
}

// NewClient returns a client for the URL. It does not connect: go-redis
// dials on first use.
func NewClient(raw string) (redis.UniversalClient, Mode, error) {
	o, mode, err := options(raw)
	if err != nil {
		return nil, "", err
	}
	switch opts := o.(type) {
	case *redis.Options:
		return redis.NewClient(opts), mode, nil
	case *redis.FailoverOptions:
		return redis.NewFailoverClient(opts), mode, nil
	case *redis.ClusterOptions:
		return redis.NewClusterClient(opts), mode, nil
	}
	return nil, "", errors.New("redisconn: unreachable")
}

func options(raw string) (any, Mode, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL, password included.
		return nil, "", errors.New("redisconn: not a URL")
	}
	scheme, kind, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" && !(scheme == "unix" && kind == "") {
		return nil, "", fmt.Errorf("redisconn: scheme %q: want redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://", u.Scheme)
	}
	u.Scheme = scheme
	plain := u.String()
	var o any
	mode := Standalone
	switch kind {
	case "":
		var so *redis.Options
		so, err = redis.ParseURL(plain)
		if err == nil {
			setTimeouts(u.Query(), &so.DialTimeout, &so.ReadTimeout, &so.WriteTimeout)
		}
		o = so
	case "sentinel":
		mode = Sentinel
		var fo *redis.FailoverOptions
		fo, err = redis.ParseFailoverURL(plain)
		if err == nil {
			if fo.MasterName == "" {
				return nil, "", errors.New("redisconn: a sentinel URL needs ?master_name=")
			}
			setTimeouts(u.Query(), &fo.DialTimeout, &fo.ReadTimeout, &fo.WriteTimeout)
		}
		o = fo
	case "cluster":
		mode = Cluster
		var co *redis.ClusterOptions
		co, err = redis.ParseClusterURL(plain)
		if err == nil {
			setTimeouts(u.Query(), &co.DialTimeout, &co.ReadTimeout, &co.WriteTimeout)
		}
		o = co
	default:
		return nil, "", fmt.Errorf("redisconn: scheme %q: unknown deployment %q (sentinel or cluster)", u.Scheme, kind)
	}
	if err != nil {
		return nil, "", fmt.Errorf("redisconn: %w", err)
	}
	return o, mode, nil
}

// setTimeouts shortens go-redis's defaults (5s dial, 3s read and write) to
// 2s where the URL does not set them, so that a Redis that is down is
// noticed quickly and nothing waits long on it.
func setTimeouts(q url.Values, dial, read, write *time.Duration) {
	for name, d := range map[string]*time.Duration{"dial_timeout": dial, "read_timeout": read, "write_timeout": write} {
		if !q.Has(name) {
			*d = 2 * time.Second
		}
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
