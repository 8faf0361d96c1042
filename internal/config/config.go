// Package config reads eventserver's settings from flags and EVENTSERVER_*
// environment variables. A flag wins over its variable; the variable wins over
// the default. Every setting is listed by Usage, with its default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/eventserver/eventserver/internal/validate"
)

// Config is the whole configuration of one instance.
type Config struct {
	// Listen is the address of the HTTP server (Socket.IO, API, metrics). Default ":7600".
	Listen string
	// InstanceID names this instance in logs and metrics. Default: host name and process id.
	InstanceID string

	// JWTSecret is the HS256 key (vantage6's jwt_secret_key). Empty: HS tokens are refused.
	JWTSecret string
	// JWTPublicKeyFile is a PEM file with an RSA or ECDSA public key. Empty: none.
	JWTPublicKeyFile string
	// JWTJWKSURL is the JWK Set of an OpenID provider (Keycloak for
	// vantage6 5.x): RS/PS/ES tokens with a kid are checked with its keys.
	JWTJWKSURL string
	// JWTJWKSRefresh is the period of the JWK Set's refresh. Default 1h.
	JWTJWKSRefresh time.Duration
	// JWTJWKSRefreshMin is the least time between two fetches for an
	// unknown kid. Default 10s.
	JWTJWKSRefreshMin time.Duration
	// JWTIssuer and JWTAudience, when set, must be the token's iss and be
	// in its aud.
	JWTIssuer   string
	JWTAudience string
	// JWTLeeway is the clock skew allowed on exp and nbf. Default 10s.
	JWTLeeway time.Duration
	// AuthGrace is how long a socket whose token failed or expired stays
	// connected before the server disconnects it. Default 5s.
	AuthGrace time.Duration
	// UserTokenExpiry is what happens to a connected user whose token
	// expires: "keep" (default; told expired_token once, keeps its socket and
	// rooms, as vantage6 4.14 does) or "disconnect" (told expired_token and
	// disconnected after AuthGrace unless it refreshes). Nodes are always
	// disconnected after the grace.
	UserTokenExpiry string

	// PublishToken is the bearer token of the publish API. Empty: the API is off.
	PublishToken string
	// ConsoleToken is the sign-in token of the operator console
	// (/console/, internal/console): at least 16 characters, never printed,
	// and not the publish token. Empty: the console is off (the default).
	ConsoleToken string

	// CORSOrigins lists the origins allowed cross-origin, on every transport
	// (polling, its preflights, the WebSocket upgrade); "*" allows any.
	// Default: none (same-origin requests and clients without an Origin only).
	CORSOrigins []string
	// PingInterval and PingTimeout are Engine.IO's heartbeat. Defaults 25s and 60s.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// ConnectTimeout is how long an Engine.IO session may live without a
	// namespace CONNECT (Node's connectTimeout). Default 45s.
	ConnectTimeout time.Duration
	// MaxPayload bounds one Engine.IO message and one publish API body, in bytes. Default 1 MB.
	MaxPayload int64
	// MaxWriteQueue bounds the bytes waiting to be written to one
	// connection (websocket or polling); over it the client is a slow
	// consumer and is disconnected. Default 1 MiB.
	MaxWriteQueue int64
	// MaxConnections bounds the Engine.IO sessions of the instance (503
	// beyond); 0: none. Default 10000.
	MaxConnections int
	// MaxConnectionsPerIP bounds the sessions of one client address (429
	// beyond); 0: none (the default).
	MaxConnectionsPerIP int
	// TrustedProxies: peers in these networks are proxies whose
	// X-Forwarded-For names the client. Default none.
	TrustedProxies []netip.Prefix
	// EventRate is the events a second one socket may send (sustained);
	// 0: no bound. Default 100.
	EventRate float64
	// EventBurst is how many events a socket may send at once. Default 1000.
	EventBurst int
	// EventFloodDisconnect disconnects a socket over its rate that long
	// without a pause; 0: never. Default 10s.
	EventFloodDisconnect time.Duration
	// HTTPReadHeaderTimeout bounds reading a request's headers. Default 10s.
	HTTPReadHeaderTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection idle that long. Default 30s.
	HTTPIdleTimeout time.Duration
	// HTTPMaxHeaderBytes bounds a request's headers. Default 32 KiB.
	HTTPMaxHeaderBytes int64

	// LogFormat is "json" (default) or "console"; LogLevel debug|info|warn|error (default info).
	LogFormat string
	LogLevel  string

	// RedisURL makes the instance a cluster member: rooms and broadcasts are
	// shared through this Redis (see internal/redisconn for the schemes).
	// Empty: a single instance with in-memory rooms and presence.
	RedisURL string
	// RedisPrefix prefixes Redis channels and keys, as the Node adapter's
	// "key" option. Default "socket.io".
	RedisPrefix string
	// RedisRequestTimeout bounds cluster requests (fetchSockets,
	// serverSideEmit with ack, ...). Default 5s.
	RedisRequestTimeout time.Duration
	// RedisSubscriptionMode is "classic" (PUBLISH/SUBSCRIBE, Node's
	// createAdapter; default) or a mode of Node's createShardedAdapter
	// (Redis 7 sharded pub/sub): "static", "dynamic" or "dynamic-private".
	RedisSubscriptionMode string

	// PresenceGrace is how long a node whose last connection closed stays
	// online, waiting for a reconnect on any instance. Default 5s.
	PresenceGrace time.Duration
	// PresenceRefresh and PresenceTTL: in cluster mode each live node
	// connection's heartbeat in Redis is refreshed every PresenceRefresh and
	// expires after PresenceTTL (at least twice the refresh). Defaults 5s, 15s.
	PresenceRefresh time.Duration
	PresenceTTL     time.Duration
	// PresenceStale: a connected node that has not pinged for longer is
	// reported stale. Default 65s (vantage6's rule).
	PresenceStale time.Duration

	// OutboxStream is the Redis stream to which each instance appends the
	// facts its nodes establish, for the backend (internal/outbox). Empty: off.
	OutboxStream string
	// OutboxMaxLen bounds the stream's length, approximately. Default 100000.
	OutboxMaxLen int64
	// OutboxRedisURL is the stream's Redis. Default: RedisURL.
	OutboxRedisURL string
	// OutboxQueueSize bounds the facts each sink holds in memory. Default 10000.
	OutboxQueueSize int
	// OutboxWebhookURL, when set, also receives each fact as a JSON POST
	// (with or without the stream); OutboxWebhookToken is its bearer token,
	// never printed.
	OutboxWebhookURL   string
	OutboxWebhookToken string
	// OutboxWebhookAttempts bounds the attempts per fact. Default 5.
	OutboxWebhookAttempts int
	// OutboxWebhookTimeout bounds one attempt. Default 5s.
	OutboxWebhookTimeout time.Duration

	// ShutdownDelay is how long the instance reports not-ready before it
	// starts to disconnect clients. Default 5s.
	ShutdownDelay time.Duration
	// DrainTimeout is the window over which clients are disconnected. Default 10s.
	DrainTimeout time.Duration

	// V6APIURL is the vantage6 REST API's base URL with its path (e.g.
	// https://v6.example.org/api). Set: who a client is comes from the API
	// (internal/v6api); empty: from the token's claims.
	V6APIURL string
	// V6Username and V6Password are the optional service account of the
	// vantage6 API; both or neither. The password is never printed.
	V6Username string
	V6Password string
	// V6Version is the vantage6 major version of the API: "4" (the
	// default: numeric subs and client_type), "5" (Keycloak tokens) or
	// "auto" (asked once from GET /version at first use).
	V6Version string
	// V6TokenURL is vantage6 5.x's Keycloak token endpoint: with it, the
	// service account (V6Username, V6Password) is a Keycloak client id and
	// secret that logs in with the client-credentials grant.
	V6TokenURL string
	// V6Timeout bounds each call to the vantage6 API. Default 5s.
	V6Timeout time.Duration
	// V6CacheTTL is how long an identity from the vantage6 API is reused;
	// zero turns the cache off. Default 30s.
	V6CacheTTL time.Duration

	// V6QueueChannel is the channel of vantage6's Flask-SocketIO
	// message queue ("flask-socketio"). Set: every instance carries out the
	// emits the vantage6 server publishes there (internal/v6bridge). Empty: off.
	V6QueueChannel string
	// V6QueueURL is the Redis or the RabbitMQ (amqp://, amqps://) of that
	// queue. Default: RedisURL.
	V6QueueURL string
}

type setting struct {
	flag, env, def, help string
	set                  func(c *Config, v string) error
}

func settings() []setting {
	return []setting{
		{"listen", "EVENTSERVER_LISTEN", ":7600", "address of the HTTP server; Socket.IO is at /socket.io/", func(c *Config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("want host:port, got %q", v)
			}
			c.Listen = v
			return nil
		}},
		{"instance-id", "EVENTSERVER_INSTANCE_ID", "", "name of this instance in logs (default: host name and pid)", func(c *Config, v string) error {
			c.InstanceID = v
			return nil
		}},
		{"jwt-secret", "EVENTSERVER_JWT_SECRET", "", "HS256 key of client tokens (vantage6's jwt_secret_key)", func(c *Config, v string) error {
			c.JWTSecret = v
			return nil
		}},
		{"jwt-public-key-file", "EVENTSERVER_JWT_PUBLIC_KEY_FILE", "", "PEM file with the RSA or ECDSA public key of client tokens (RS256/ES256, e.g. Keycloak)", func(c *Config, v string) error {
			if v != "" {
				if _, err := os.Stat(v); err != nil {
					return err
				}
			}
			c.JWTPublicKeyFile = v
			return nil
		}},
		{"jwt-jwks-url", "EVENTSERVER_JWT_JWKS_URL", "", "JWK Set of the OpenID provider that signs client tokens (vantage6 5.x: https://<keycloak>/realms/<realm>/protocol/openid-connect/certs); https, or http on localhost; fetched at start, every EVENTSERVER_JWT_JWKS_REFRESH and for an unknown kid", func(c *Config, v string) error {
			if v != "" {
				if err := validate.JWKSURL(v); err != nil {
					return err
				}
			}
			c.JWTJWKSURL = v
			return nil
		}},
		{"jwt-jwks-refresh", "EVENTSERVER_JWT_JWKS_REFRESH", "1h", "period of the JWK Set's refresh (the keys held are kept while the provider is down)", durationAtLeast(time.Second, func(c *Config) *time.Duration { return &c.JWTJWKSRefresh })},
		{"jwt-jwks-refresh-min", "EVENTSERVER_JWT_JWKS_REFRESH_MIN", "10s", "least time between two fetches of the JWK Set for a token with an unknown kid (a flood of made-up kids costs the provider one fetch per period)", durationAtLeast(100*time.Millisecond, func(c *Config) *time.Duration { return &c.JWTJWKSRefreshMin })},
		{"jwt-issuer", "EVENTSERVER_JWT_ISSUER", "", "when set, a token's iss must equal it (Keycloak: https://<keycloak>/realms/<realm>)", func(c *Config, v string) error {
			c.JWTIssuer = v
			return nil
		}},
		{"jwt-audience", "EVENTSERVER_JWT_AUDIENCE", "", "when set, a token's aud (a string or a list) must hold it", func(c *Config, v string) error {
			c.JWTAudience = v
			return nil
		}},
		{"jwt-leeway", "EVENTSERVER_JWT_LEEWAY", "10s", "clock skew allowed on a token's exp and nbf", durationAtLeast(0, func(c *Config) *time.Duration { return &c.JWTLeeway })},
		{"auth-grace", "EVENTSERVER_AUTH_GRACE", "5s", "how long a socket with a failed or expired token stays before it is disconnected", durationAtLeast(0, func(c *Config) *time.Duration { return &c.AuthGrace })},
		{"user-token-expiry", "EVENTSERVER_USER_TOKEN_EXPIRY", "keep", "what a connected user whose token expires gets: keep (expired_token once, keeps its socket and rooms, as vantage6 4.14) or disconnect (expired_token, then disconnected after the auth grace unless it sends refresh_token); nodes are always disconnected", oneOf(func(c *Config) *string { return &c.UserTokenExpiry }, "keep", "disconnect")},
		{"publish-token", "EVENTSERVER_PUBLISH_TOKEN", "", "bearer token of the publish API (/api/v1/*); empty turns the API off", func(c *Config, v string) error {
			if v != "" && len(v) < 16 {
				return errors.New("must be at least 16 characters")
			}
			c.PublishToken = v
			return nil
		}},
		{"console-token", "EVENTSERVER_CONSOLE_TOKEN", "", "sign-in token of the operator console (/console/; at least 16 characters, not the publish token); never printed (prefer the variable to the flag); empty turns the console off", func(c *Config, v string) error {
			if v != "" && len(v) < 16 {
				return errors.New("must be at least 16 characters")
			}
			c.ConsoleToken = v
			return nil
		}},
		{"cors-origins", "EVENTSERVER_CORS_ORIGINS", "", "comma-separated origins allowed cross-origin, on polling and WebSocket (e.g. https://portal.example.org); * allows any; empty: same-origin only. Any other Origin is refused (403)", func(c *Config, v string) error {
			c.CORSOrigins = nil
			for _, o := range strings.Split(v, ",") {
				o = strings.TrimSpace(o)
				if o == "" {
					continue
				}
				if o != "*" && !(strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://")) {
					return fmt.Errorf("origin %q must start with http:// or https://", o)
				}
				c.CORSOrigins = append(c.CORSOrigins, strings.TrimSuffix(o, "/"))
			}
			return nil
		}},
		{"ping-interval", "EVENTSERVER_PING_INTERVAL", "25s", "Engine.IO heartbeat interval", durationAtLeast(time.Millisecond, func(c *Config) *time.Duration { return &c.PingInterval })},
		{"ping-timeout", "EVENTSERVER_PING_TIMEOUT", "60s", "Engine.IO heartbeat timeout", durationAtLeast(time.Millisecond, func(c *Config) *time.Duration { return &c.PingTimeout })},
		{"connect-timeout", "EVENTSERVER_CONNECT_TIMEOUT", "45s", "how long an Engine.IO connection may stay without joining a namespace before it is closed", durationAtLeast(time.Millisecond, func(c *Config) *time.Duration { return &c.ConnectTimeout })},
		{"max-payload", "EVENTSERVER_MAX_PAYLOAD", "1000000", "largest Engine.IO message and publish API body, in bytes (suffixes KB, MB, KiB, MiB)", func(c *Config, v string) error {
			n, err := parseSize(v)
			if err != nil {
				return err
			}
			if n < 1024 {
				return errors.New("must be at least 1024 bytes")
			}
			c.MaxPayload = n
			return nil
		}},
		{"max-write-queue", "EVENTSERVER_MAX_WRITE_QUEUE", "1MiB", "bytes waiting to be written to one client (websocket or polling) beyond which it is a slow consumer and is disconnected (suffixes KB, MB, KiB, MiB)", func(c *Config, v string) error {
			n, err := parseSize(v)
			if err != nil {
				return err
			}
			if n < 64*1024 {
				return errors.New("must be at least 64KiB")
			}
			c.MaxWriteQueue = n
			return nil
		}},
		{"max-connections", "EVENTSERVER_MAX_CONNECTIONS", "10000", "Engine.IO connections of this instance beyond which a new one is refused (503, so a load balancer may try another replica); 0: no bound", intBetween(0, math.MaxInt32, func(c *Config, n int64) { c.MaxConnections = int(n) })},
		{"max-connections-per-ip", "EVENTSERVER_MAX_CONNECTIONS_PER_IP", "0", "connections of one client address beyond which a new one is refused (429); the address behind a trusted proxy is read from X-Forwarded-For; 0: no bound", intBetween(0, math.MaxInt32, func(c *Config, n int64) { c.MaxConnectionsPerIP = int(n) })},
		{"trusted-proxies", "EVENTSERVER_TRUSTED_PROXIES", "", "comma-separated addresses or CIDRs of the proxies in front (HAProxy, the ingress): only from them is X-Forwarded-For believed; empty: none", func(c *Config, v string) error {
			p, err := validate.Prefixes(v)
			if err != nil {
				return err
			}
			c.TrustedProxies = p
			return nil
		}},
		{"event-rate", "EVENTSERVER_EVENT_RATE", "100", "events a second one socket may send, sustained (a token bucket); events over it are dropped without an answer and counted; 0: no bound", func(c *Config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || math.IsNaN(f) || f < 0 || f > 1e6 {
				return fmt.Errorf("want a number of events a second from 0 to 1000000, got %q", v)
			}
			c.EventRate = f
			return nil
		}},
		{"event-burst", "EVENTSERVER_EVENT_BURST", "1000", "events one socket may send at once, above its rate", intBetween(1, 10_000_000, func(c *Config, n int64) { c.EventBurst = int(n) })},
		{"event-flood-disconnect", "EVENTSERVER_EVENT_FLOOD_DISCONNECT", "10s", "a socket that keeps sending over its event rate this long without a pause is disconnected; 0s: never", durationAtLeast(0, func(c *Config) *time.Duration { return &c.EventFloodDisconnect })},
		{"http-read-header-timeout", "EVENTSERVER_HTTP_READ_HEADER_TIMEOUT", "10s", "bound of reading a request's headers (a slow client is cut off)", durationAtLeast(100*time.Millisecond, func(c *Config) *time.Duration { return &c.HTTPReadHeaderTimeout })},
		{"http-idle-timeout", "EVENTSERVER_HTTP_IDLE_TIMEOUT", "30s", "a keep-alive HTTP connection idle this long is closed (not websockets, which have their heartbeat)", durationAtLeast(100*time.Millisecond, func(c *Config) *time.Duration { return &c.HTTPIdleTimeout })},
		{"http-max-header-bytes", "EVENTSERVER_HTTP_MAX_HEADER_BYTES", "32KiB", "largest request header block (431 beyond; suffixes KB, KiB)", func(c *Config, v string) error {
			n, err := parseSize(v)
			if err != nil {
				return err
			}
			if n < 4096 || n > 1<<20 {
				return errors.New("must be at least 4KiB and at most 1MiB")
			}
			c.HTTPMaxHeaderBytes = n
			return nil
		}},
		{"redis-url", "EVENTSERVER_REDIS_URL", "", "Redis of the cluster (redis://, rediss://, redis+sentinel://, redis+cluster://); empty: one instance, in memory", func(c *Config, v string) error {
			if v != "" {
				if _, _, err := validate.RedisURL(v); err != nil {
					return err
				}
			}
			c.RedisURL = v
			return nil
		}},
		{"redis-prefix", "EVENTSERVER_REDIS_PREFIX", "socket.io", "prefix of Redis channels and keys (the Node adapter's key), so that clusters can share a Redis", func(c *Config, v string) error {
			if v == "" || strings.ContainsAny(v, "#*?[] \t\n") {
				return fmt.Errorf("want a non-empty prefix without #, *, ?, [, ] or spaces, got %q", v)
			}
			c.RedisPrefix = v
			return nil
		}},
		{"redis-request-timeout", "EVENTSERVER_REDIS_REQUEST_TIMEOUT", "5s", "how long a cluster request (fetchSockets, serverSideEmit with ack) waits for the other instances", durationAtLeast(10*time.Millisecond, func(c *Config) *time.Duration { return &c.RedisRequestTimeout })},
		{"redis-subscription-mode", "EVENTSERVER_REDIS_SUBSCRIPTION_MODE", "classic", "classic: PUBLISH/SUBSCRIBE (Node's createAdapter); static, dynamic or dynamic-private: Redis 7 sharded pub/sub (SPUBLISH/SSUBSCRIBE), as Node's createShardedAdapter with that subscriptionMode, the way to scale pub/sub on a Redis Cluster; every instance of a cluster, Go or Node, must use the same", func(c *Config, v string) error {
			switch v {
			case "classic", "static", "dynamic", "dynamic-private":
				c.RedisSubscriptionMode = v
				return nil
			}
			return fmt.Errorf("want classic, static, dynamic or dynamic-private, got %q", v)
		}},
		{"presence-grace", "EVENTSERVER_PRESENCE_GRACE", "5s", "how long a node whose last connection closed stays online, waiting for a reconnect on any instance", durationAtLeast(0, func(c *Config) *time.Duration { return &c.PresenceGrace })},
		{"presence-refresh", "EVENTSERVER_PRESENCE_REFRESH", "5s", "cluster mode: how often an instance refreshes the Redis heartbeats of its node connections", durationAtLeast(10*time.Millisecond, func(c *Config) *time.Duration { return &c.PresenceRefresh })},
		{"presence-ttl", "EVENTSERVER_PRESENCE_TTL", "15s", "cluster mode: how long a heartbeat lives without refresh (at least twice the refresh): a dead instance's nodes go offline after it", durationAtLeast(20*time.Millisecond, func(c *Config) *time.Duration { return &c.PresenceTTL })},
		{"presence-stale", "EVENTSERVER_PRESENCE_STALE", "65s", "a connected node that has not sent ping for longer is reported stale in /api/v1/nodes", durationAtLeast(time.Second, func(c *Config) *time.Duration { return &c.PresenceStale })},
		{"outbox-stream", "EVENTSERVER_OUTBOX_STREAM", "", "Redis stream that receives the node facts for the backend (online, offline, ping, node and run events; see Backend outbox); empty: off", func(c *Config, v string) error {
			if strings.ContainsAny(v, " \t\n") {
				return fmt.Errorf("want a Redis key without spaces, got %q", v)
			}
			c.OutboxStream = v
			return nil
		}},
		{"outbox-maxlen", "EVENTSERVER_OUTBOX_MAXLEN", "100000", "approximate bound of the stream's length (XADD MAXLEN ~): older facts are trimmed", intBetween(1, math.MaxInt32, func(c *Config, n int64) { c.OutboxMaxLen = n })},
		{"outbox-redis-url", "EVENTSERVER_OUTBOX_REDIS_URL", "", "Redis of the outbox stream (same schemes as EVENTSERVER_REDIS_URL); empty: EVENTSERVER_REDIS_URL", func(c *Config, v string) error {
			if v != "" {
				if _, _, err := validate.RedisURL(v); err != nil {
					return err
				}
			}
			c.OutboxRedisURL = v
			return nil
		}},
		{"outbox-queue-size", "EVENTSERVER_OUTBOX_QUEUE_SIZE", "10000", "facts the stream and the webhook each keep in memory while slow or down; beyond it new facts are dropped and counted", intBetween(1, 10_000_000, func(c *Config, n int64) { c.OutboxQueueSize = int(n) })},
		{"outbox-webhook-url", "EVENTSERVER_OUTBOX_WEBHOOK_URL", "", "http(s) URL that also receives each fact as a JSON POST (with or without the stream); empty: none", func(c *Config, v string) error {
			if v != "" {
				if err := validate.WebhookURL(v); err != nil {
					return err
				}
			}
			c.OutboxWebhookURL = v
			return nil
		}},
		{"outbox-webhook-token", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN", "", "bearer token sent to the webhook; never printed (prefer the variable to the flag)", func(c *Config, v string) error {
			c.OutboxWebhookToken = v
			return nil
		}},
		{"outbox-webhook-attempts", "EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS", "5", "attempts per fact, with exponential backoff and jitter, before the webhook gives it up (logged and counted)", intBetween(1, 100, func(c *Config, n int64) { c.OutboxWebhookAttempts = int(n) })},
		{"outbox-webhook-timeout", "EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT", "5s", "bound of one webhook request", durationAtLeast(10*time.Millisecond, func(c *Config) *time.Duration { return &c.OutboxWebhookTimeout })},
		{"log-format", "EVENTSERVER_LOG_FORMAT", "json", "json or console", oneOf(func(c *Config) *string { return &c.LogFormat }, "json", "console")},
		{"log-level", "EVENTSERVER_LOG_LEVEL", "info", "debug, info, warn or error", oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
		{"shutdown-delay", "EVENTSERVER_SHUTDOWN_DELAY", "5s", "on SIGTERM, how long to report not-ready before disconnecting clients", durationAtLeast(0, func(c *Config) *time.Duration { return &c.ShutdownDelay })},
		{"drain-timeout", "EVENTSERVER_DRAIN_TIMEOUT", "10s", "on SIGTERM, the window over which clients are disconnected", durationAtLeast(0, func(c *Config) *time.Duration { return &c.DrainTimeout })},
		{"v6-api-url", "EVENTSERVER_V6_API_URL", "", "base URL of the vantage6 API with its path (e.g. https://v6.example.org/api): who a client is comes from the API; empty: from the token's claims", func(c *Config, v string) error {
			if v != "" {
				if err := validate.V6URL(v); err != nil {
					return err
				}
			}
			c.V6APIURL = v
			return nil
		}},
		{"v6-username", "EVENTSERVER_V6_USERNAME", "", "service account of the vantage6 API (with EVENTSERVER_V6_PASSWORD): lists every collaboration for users with the global event rule", func(c *Config, v string) error {
			c.V6Username = v
			return nil
		}},
		{"v6-password", "EVENTSERVER_V6_PASSWORD", "", "password of the service account; never printed (prefer the variable to the flag)", func(c *Config, v string) error {
			c.V6Password = v
			return nil
		}},
		{"v6-version", "EVENTSERVER_V6_VERSION", "4", "vantage6 major version of the API: 4 (numeric sub and client_type), 5 (Keycloak tokens: sub is the Keycloak id, vantage6_client_type node or user; asks GET /node/me or /user/me) or auto (asks GET /version once, at first use)", func(c *Config, v string) error {
			if _, err := validate.V6Version(v); err != nil || strings.TrimSpace(v) == "" {
				return fmt.Errorf("want 4, 5 or auto, got %q", v)
			}
			c.V6Version = strings.ToLower(strings.TrimSpace(v))
			return nil
		}},
		{"v6-token-url", "EVENTSERVER_V6_TOKEN_URL", "", "vantage6 5.x: Keycloak's token endpoint (https://<keycloak>/realms/<realm>/protocol/openid-connect/token); the service account is then a Keycloak client id (EVENTSERVER_V6_USERNAME) and secret (EVENTSERVER_V6_PASSWORD), logged in with the client-credentials grant, as 5.x has no password login", func(c *Config, v string) error {
			if v != "" {
				if err := validate.V6URL(v); err != nil {
					return err
				}
			}
			c.V6TokenURL = v
			return nil
		}},
		{"v6-timeout", "EVENTSERVER_V6_TIMEOUT", "5s", "bound of each call to the vantage6 API; a client whose lookup fails or is late gets invalid_token", durationAtLeast(10*time.Millisecond, func(c *Config) *time.Duration { return &c.V6Timeout })},
		{"v6-cache-ttl", "EVENTSERVER_V6_CACHE_TTL", "30s", "how long an identity from the vantage6 API is reused (per node or user); 0s: not cached", durationAtLeast(0, func(c *Config) *time.Duration { return &c.V6CacheTTL })},
		{"v6-queue-channel", "EVENTSERVER_V6_QUEUE_CHANNEL", "", "channel of vantage6's Flask-SocketIO message queue (flask-socketio; over RabbitMQ, the fanout exchange of that name): every instance delivers what the vantage6 server emits there; empty: off", func(c *Config, v string) error {
			if strings.ContainsAny(v, "*?[] \t\n") {
				return fmt.Errorf("want a channel name without *, ?, [, ] or spaces, got %q", v)
			}
			c.V6QueueChannel = v
			return nil
		}},
		{"v6-queue-url", "EVENTSERVER_V6_QUEUE_URL", "", "that message queue: vantage6 5's rabbitmq uri (amqp://user:password@host:5672/vhost, amqps:// for TLS), or a Redis (redis://...; vantage6 4); password never printed; empty: EVENTSERVER_REDIS_URL", func(c *Config, v string) error {
			switch {
			case v == "":
			case validate.IsAMQPURL(v):
				if err := validate.AMQPURL(v); err != nil {
					return err
				}
			default:
				if _, _, err := validate.RedisURL(v); err != nil {
					return fmt.Errorf("%w (or amqp://, amqps:// for RabbitMQ)", err)
				}
			}
			c.V6QueueURL = v
			return nil
		}},
	}
}

func intBetween(min, max int64, set func(*Config, int64)) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		if n < min || n > max {
			return fmt.Errorf("must be at least %d and at most %d", min, max)
		}
		set(c, n)
		return nil
	}
}

func durationAtLeast(min time.Duration, field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration such as 5s or 1m, got %q", v)
		}
		if d < min {
			return fmt.Errorf("must be at least %s", min)
		}
		*field(c) = d
		return nil
	}
}

func oneOf(field func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				*field(c) = a
				return nil
			}
		}
		return fmt.Errorf("want one of %s, got %q", strings.Join(allowed, ", "), v)
	}
}

func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want a size in bytes such as 1000000 or 1MB, got %q", v)
	}
	return n * mult, nil
}

// ErrHelp is returned by Load when -h or --help was asked for; Usage has been written.
var ErrHelp = flag.ErrHelp

// Load parses args (without the program name) and the environment lookup.
// Errors name the flag and the variable that were wrong.
func Load(args []string, getenv func(string) string, usageOut io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("eventserver", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	all := settings()
	vals := make([]*string, len(all))
	for i, s := range all {
		vals[i] = fs.String(s.flag, "", "")
	}
	fs.Usage = func() { Usage(usageOut) }
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected argument %q (see --help)", fs.Arg(0))
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	c := &Config{}
	for i, s := range all {
		v, from := s.def, "default of "+s.env
		if e := getenv(s.env); e != "" {
			v, from = e, s.env
		}
		if explicit[s.flag] {
			v, from = *vals[i], "--"+s.flag
		}
		if err := s.set(c, v); err != nil {
			return nil, fmt.Errorf("config: %s: %w", from, err)
		}
	}
	if c.InstanceID == "" {
		h, _ := os.Hostname()
		if h == "" {
			h = "eventserver"
		}
		c.InstanceID = h + "-" + strconv.Itoa(os.Getpid())
	}
	return c, nil
}

// Validate checks what needs more than one setting. The token subcommand
// does not need it; serving does.
func (c *Config) Validate() error {
	if c.JWTSecret == "" && c.JWTPublicKeyFile == "" && c.JWTJWKSURL == "" {
		return errors.New("config: no key to verify client tokens: set EVENTSERVER_JWT_SECRET (vantage6's jwt_secret_key, HS256), EVENTSERVER_JWT_PUBLIC_KEY_FILE (a PEM public key, RS256/ES256) or EVENTSERVER_JWT_JWKS_URL (Keycloak's JWK Set, vantage6 5.x), or the flags --jwt-secret / --jwt-public-key-file / --jwt-jwks-url")
	}
	if c.ConsoleToken != "" && c.ConsoleToken == c.PublishToken {
		return errors.New("config: EVENTSERVER_CONSOLE_TOKEN must differ from EVENTSERVER_PUBLISH_TOKEN: the console's sign-in and the publish API each need a token of their own")
	}
	if c.PresenceTTL < 2*c.PresenceRefresh {
		return fmt.Errorf("config: EVENTSERVER_PRESENCE_TTL (%s) must be at least twice EVENTSERVER_PRESENCE_REFRESH (%s)", c.PresenceTTL, c.PresenceRefresh)
	}
	if c.PingTimeout < c.PingInterval/2 {
		return fmt.Errorf("config: EVENTSERVER_PING_TIMEOUT (%s) is too short for EVENTSERVER_PING_INTERVAL (%s)", c.PingTimeout, c.PingInterval)
	}
	if c.V6QueueChannel != "" && c.V6QueueURL == "" && c.RedisURL == "" {
		return errors.New("config: EVENTSERVER_V6_QUEUE_CHANNEL needs a message queue: set EVENTSERVER_V6_QUEUE_URL (vantage6's RabbitMQ or Redis) or EVENTSERVER_REDIS_URL")
	}
	if c.RedisSubscriptionMode != "classic" && c.RedisURL == "" {
		return fmt.Errorf("config: EVENTSERVER_REDIS_SUBSCRIPTION_MODE=%s needs EVENTSERVER_REDIS_URL (a Redis 7, or a Redis Cluster with redis+cluster://)", c.RedisSubscriptionMode)
	}
	if c.RedisSubscriptionMode != "classic" {
		// Sharded pub/sub is for a Redis Cluster; behind Sentinel the one
		// master gains nothing from it, and only the classic adapter
		// notices a subscription left deaf on the old master after a
		// switchover (its canary).
		if _, kind, err := validate.RedisURL(c.RedisURL); err == nil && kind == validate.RedisSentinel {
			return fmt.Errorf("config: EVENTSERVER_REDIS_SUBSCRIPTION_MODE=%s is not supported with redis+sentinel:// (one master gains nothing from sharded pub/sub, and only the classic adapter recovers a subscription left on the old master after a switchover): use classic", c.RedisSubscriptionMode)
		}
	}
	if c.OutboxStream != "" && c.OutboxRedisURL == "" && c.RedisURL == "" {
		return errors.New("config: EVENTSERVER_OUTBOX_STREAM needs a Redis: set EVENTSERVER_OUTBOX_REDIS_URL or EVENTSERVER_REDIS_URL (or leave the stream empty)")
	}
	if c.OutboxRedisURL != "" && c.OutboxStream == "" {
		return errors.New("config: EVENTSERVER_OUTBOX_REDIS_URL is set but EVENTSERVER_OUTBOX_STREAM is empty: name the stream")
	}
	if c.OutboxWebhookToken != "" && c.OutboxWebhookURL == "" {
		return errors.New("config: EVENTSERVER_OUTBOX_WEBHOOK_TOKEN is set but EVENTSERVER_OUTBOX_WEBHOOK_URL is empty")
	}
	if (c.V6Username == "") != (c.V6Password == "") {
		return errors.New("config: the vantage6 service account needs both EVENTSERVER_V6_USERNAME and EVENTSERVER_V6_PASSWORD (or neither)")
	}
	if c.V6Username != "" && c.V6APIURL == "" {
		return errors.New("config: EVENTSERVER_V6_USERNAME and EVENTSERVER_V6_PASSWORD need EVENTSERVER_V6_API_URL")
	}
	if c.V6TokenURL != "" {
		if c.V6Username == "" {
			return errors.New("config: EVENTSERVER_V6_TOKEN_URL needs the service account's Keycloak client id and secret in EVENTSERVER_V6_USERNAME and EVENTSERVER_V6_PASSWORD")
		}
		if c.V6Version != validate.V6Version5 && c.V6Version != validate.V6VersionAuto {
			return errors.New("config: EVENTSERVER_V6_TOKEN_URL is for vantage6 5.x: set EVENTSERVER_V6_VERSION to 5 or auto")
		}
	}
	if c.V6Version == validate.V6Version5 && c.V6Username != "" && c.V6TokenURL == "" {
		return errors.New("config: the vantage6 5.x API has no password login: set EVENTSERVER_V6_TOKEN_URL (Keycloak's token endpoint) and give the service account as a Keycloak client id and secret")
	}
	return nil
}

// Usage writes every setting with its flag, variable and default.
func Usage(w io.Writer) {
	fmt.Fprintf(w, `eventserver: a Socket.IO event server for vantage6

Usage:
  eventserver [flags]                 serve (Socket.IO at /socket.io/, namespace /tasks)
  eventserver token node|user [...]   mint a claims token with the configured secret (see eventserver token --help)
  eventserver healthcheck [--ready]   exit 0 when the local server answers /healthz (or /readyz) with 200
  eventserver version                 print the version

Every setting is a flag or an environment variable; a flag wins.

`)
	for _, s := range settings() {
		def := s.def
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(w, "  --%-22s %-34s default %s\n      %s\n", s.flag, s.env, def, s.help)
	}
}

// Markdown writes the settings as a Markdown table, for the README.
func Markdown(w io.Writer) {
	fmt.Fprintln(w, "| variable | flag | default | meaning |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, s := range settings() {
		def := "`" + s.def + "`"
		if s.def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(w, "| `%s` | `--%s` | %s | %s |\n", s.env, s.flag, def, s.help)
	}
}
