// Package validate holds the checks of settings that config runs at start
// and that the packages using the settings run again: the URLs of the
// Redis, the message queue, the vantage6 API, the JWK Set and the outbox
// webhook, and the vantage6 version. It imports no package of eventserver,
// so that config does not import the packages it configures.
//
// Errors never quote a URL: it may hold a password.
package validate

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/textclip"
)

// JWKSURL checks a JWKS URL: https, or http to a loopback host (a provider
// beside the server, in tests or a sidecar).
func JWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("want an absolute https URL such as https://keycloak.example.org/realms/vantage6/protocol/openid-connect/certs")
	}
	if u.User != nil {
		return errors.New("must not hold user information")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		switch u.Hostname() {
		case "localhost", "127.0.0.1", "::1":
			return nil
		}
		return errors.New("http is accepted only for localhost, 127.0.0.1 or ::1: the keys must come over https")
	}
	return fmt.Errorf("scheme %q: want https", u.Scheme)
}

// WebhookURL checks a webhook URL: http or https, with a host, without user
// information (use the token) or fragment.
func WebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL.
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http or https URL")
	case u.Host == "":
		return errors.New("the URL has no host")
	case u.User != nil:
		return errors.New("the URL may not hold user information: use the webhook token")
	case u.Fragment != "":
		return errors.New("the URL may not have a fragment")
	}
	return nil
}

// V6URL checks a URL of the vantage6 API (or of Keycloak's token endpoint):
// http or https, with a host, no user information, query or fragment.
func V6URL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.User != nil {
		return errors.New("must not contain user information: set the service account with EVENTSERVER_V6_USERNAME and EVENTSERVER_V6_PASSWORD")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("has no host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return errors.New("must not have a query or a fragment")
	}
	return nil
}

// Versions of the vantage6 API, as settings write them.
const (
	V6Version4    = "4"
	V6Version5    = "5"
	V6VersionAuto = "auto"
)

// V6Version reads a vantage6 version: 4 (also for ""), 5, or 0 for auto.
func V6Version(v string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", V6Version4:
		return 4, nil
	case V6Version5:
		return 5, nil
	case V6VersionAuto:
		return 0, nil
	}
	return 0, fmt.Errorf("vantage6 version %q: want 4, 5 or auto", textclip.Cut(v, textclip.Name))
}

// IsAMQPURL reports whether raw is an amqp:// or amqps:// URL (RabbitMQ),
// as opposed to a Redis URL.
func IsAMQPURL(raw string) bool {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return false
	}
	scheme = strings.ToLower(scheme)
	return scheme == "amqp" || scheme == "amqps"
}

// AMQPURL checks an amqp:// or amqps:// URL without connecting.
func AMQPURL(raw string) error {
	if _, err := url.Parse(raw); err != nil {
		// url.Parse's error quotes the URL, password included.
		return errors.New("not a URL")
	}
	if _, err := amqp.ParseURI(raw); err != nil {
		return err
	}
	return nil
}

// Deployments of Redis, as RedisURL reports them.
const (
	RedisStandalone = "standalone"
	RedisSentinel   = "sentinel"
	RedisCluster    = "cluster"
)

// RedisURL checks a Redis URL without connecting:
//
//	redis://[user:password@]host:port[/db][?options]       standalone (rediss:// for TLS, unix:// for a socket)
//	redis+sentinel://[user:password@]host:port?master_name=NAME[&addr=host2:port...]   Sentinel (rediss+sentinel:// for TLS)
//	redis+cluster://[user:password@]host:port[?addr=host2:port...]                     Cluster (rediss+cluster:// for TLS)
//
// It returns the deployment and go-redis's options for the URL
// (*redis.Options, *redis.FailoverOptions or *redis.ClusterOptions), whose
// dial, read and write timeouts are 2s where the URL does not set them, so
// that a Redis that is down is noticed quickly.
func RedisURL(raw string) (opts any, deployment string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL, password included.
		return nil, "", errors.New("not a URL")
	}
	scheme, kind, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" && !(scheme == "unix" && kind == "") {
		return nil, "", fmt.Errorf("scheme %q: want redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://", u.Scheme)
	}
	u.Scheme = scheme
	plain := u.String()
	switch kind {
	case "":
		so, err := redis.ParseURL(plain)
		if err != nil {
			return nil, "", err
		}
		setTimeouts(u.Query(), &so.DialTimeout, &so.ReadTimeout, &so.WriteTimeout)
		return so, RedisStandalone, nil
	case "sentinel":
		fo, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, "", err
		}
		if fo.MasterName == "" {
			return nil, "", errors.New("a sentinel URL needs ?master_name=")
		}
		setTimeouts(u.Query(), &fo.DialTimeout, &fo.ReadTimeout, &fo.WriteTimeout)
		return fo, RedisSentinel, nil
	case "cluster":
		co, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, "", err
		}
		setTimeouts(u.Query(), &co.DialTimeout, &co.ReadTimeout, &co.WriteTimeout)
		return co, RedisCluster, nil
	}
	return nil, "", fmt.Errorf("scheme %q: unknown deployment %q (sentinel or cluster)", u.Scheme, kind)
}

// setTimeouts shortens go-redis's defaults (5s dial, 3s read and write) to
// 2s where the URL does not set them.
func setTimeouts(q url.Values, dial, read, write *time.Duration) {
	for name, d := range map[string]*time.Duration{"dial_timeout": dial, "read_timeout": read, "write_timeout": write} {
		if !q.Has(name) {
			*d = 2 * time.Second
		}
	}
}

// Prefixes reads a comma-separated list of CIDRs or single addresses.
func Prefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or a CIDR", f)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or a CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
