package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// env turns a map into a getenv function.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Listen", c.Listen, ":7600"},
		{"PingInterval", c.PingInterval, 25 * time.Second},
		{"PingTimeout", c.PingTimeout, 60 * time.Second},
		{"ConnectTimeout", c.ConnectTimeout, 45 * time.Second},
		{"MaxPayload", c.MaxPayload, int64(1000000)},
		{"MaxWriteQueue", c.MaxWriteQueue, int64(1 << 20)},
		{"MaxConnections", c.MaxConnections, 10000},
		{"MaxConnectionsPerIP", c.MaxConnectionsPerIP, 0},
		{"EventRate", c.EventRate, float64(100)},
		{"EventBurst", c.EventBurst, 1000},
		{"EventFloodDisconnect", c.EventFloodDisconnect, 10 * time.Second},
		{"HTTPReadHeaderTimeout", c.HTTPReadHeaderTimeout, 10 * time.Second},
		{"HTTPIdleTimeout", c.HTTPIdleTimeout, 30 * time.Second},
		{"HTTPMaxHeaderBytes", c.HTTPMaxHeaderBytes, int64(32 << 10)},
		{"LogFormat", c.LogFormat, "json"},
		{"LogLevel", c.LogLevel, "info"},
		{"ShutdownDelay", c.ShutdownDelay, 5 * time.Second},
		{"DrainTimeout", c.DrainTimeout, 10 * time.Second},
		{"AuthGrace", c.AuthGrace, 5 * time.Second},
		{"UserTokenExpiry", c.UserTokenExpiry, "keep"},
		{"JWTLeeway", c.JWTLeeway, 10 * time.Second},
		{"JWTSecret", c.JWTSecret, ""},
		{"JWTPublicKeyFile", c.JWTPublicKeyFile, ""},
		{"PublishToken", c.PublishToken, ""},
		{"ConsoleToken", c.ConsoleToken, ""},
		{"CORSOrigins empty", len(c.CORSOrigins), 0},
		{"InstanceID set", c.InstanceID != "", true},
		{"V6APIURL", c.V6APIURL, ""},
		{"V6Username", c.V6Username, ""},
		{"V6Password", c.V6Password, ""},
		{"V6Timeout", c.V6Timeout, 5 * time.Second},
		{"V6Version", c.V6Version, "4"},
		{"V6TokenURL", c.V6TokenURL, ""},
		{"V6CacheTTL", c.V6CacheTTL, 30 * time.Second},
		{"OutboxStream", c.OutboxStream, ""},
		{"OutboxMaxLen", c.OutboxMaxLen, int64(100000)},
		{"OutboxRedisURL", c.OutboxRedisURL, ""},
		{"OutboxQueueSize", c.OutboxQueueSize, 10000},
		{"OutboxWebhookURL", c.OutboxWebhookURL, ""},
		{"OutboxWebhookToken", c.OutboxWebhookToken, ""},
		{"OutboxWebhookAttempts", c.OutboxWebhookAttempts, 5},
		{"OutboxWebhookTimeout", c.OutboxWebhookTimeout, 5 * time.Second},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoadOverrides(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*Config) bool
	}{
		{"env listen", nil, map[string]string{"EVENTSERVER_LISTEN": "127.0.0.1:9000"}, func(c *Config) bool { return c.Listen == "127.0.0.1:9000" }},
		{"env instance id", nil, map[string]string{"EVENTSERVER_INSTANCE_ID": "es-1"}, func(c *Config) bool { return c.InstanceID == "es-1" }},
		{"env secret", nil, map[string]string{"EVENTSERVER_JWT_SECRET": "s3cret"}, func(c *Config) bool { return c.JWTSecret == "s3cret" }},
		{"env key file", nil, map[string]string{"EVENTSERVER_JWT_PUBLIC_KEY_FILE": keyFile}, func(c *Config) bool { return c.JWTPublicKeyFile == keyFile }},
		{"env leeway", nil, map[string]string{"EVENTSERVER_JWT_LEEWAY": "0s"}, func(c *Config) bool { return c.JWTLeeway == 0 }},
		{"env auth grace", nil, map[string]string{"EVENTSERVER_AUTH_GRACE": "1m"}, func(c *Config) bool { return c.AuthGrace == time.Minute }},
		{"env publish token", nil, map[string]string{"EVENTSERVER_PUBLISH_TOKEN": "0123456789abcdef"}, func(c *Config) bool { return c.PublishToken == "0123456789abcdef" }},
		{"env ping interval", nil, map[string]string{"EVENTSERVER_PING_INTERVAL": "5s"}, func(c *Config) bool { return c.PingInterval == 5*time.Second }},
		{"env ping timeout", nil, map[string]string{"EVENTSERVER_PING_TIMEOUT": "2m"}, func(c *Config) bool { return c.PingTimeout == 2*time.Minute }},
		{"env connect timeout", nil, map[string]string{"EVENTSERVER_CONNECT_TIMEOUT": "10s"}, func(c *Config) bool { return c.ConnectTimeout == 10*time.Second }},
		{"flag connect timeout", []string{"--connect-timeout", "3s"}, nil, func(c *Config) bool { return c.ConnectTimeout == 3*time.Second }},
		{"env max payload", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "2048"}, func(c *Config) bool { return c.MaxPayload == 2048 }},
		{"env log format", nil, map[string]string{"EVENTSERVER_LOG_FORMAT": "console"}, func(c *Config) bool { return c.LogFormat == "console" }},
		{"env log format capitals", nil, map[string]string{"EVENTSERVER_LOG_FORMAT": "CONSOLE"}, func(c *Config) bool { return c.LogFormat == "console" }},
		{"env log level", nil, map[string]string{"EVENTSERVER_LOG_LEVEL": "debug"}, func(c *Config) bool { return c.LogLevel == "debug" }},
		{"env shutdown delay", nil, map[string]string{"EVENTSERVER_SHUTDOWN_DELAY": "0s"}, func(c *Config) bool { return c.ShutdownDelay == 0 }},
		{"env drain timeout", nil, map[string]string{"EVENTSERVER_DRAIN_TIMEOUT": "30s"}, func(c *Config) bool { return c.DrainTimeout == 30*time.Second }},
		{"flag listen", []string{"--listen", "127.0.0.1:1"}, nil, func(c *Config) bool { return c.Listen == "127.0.0.1:1" }},
		{"flag with =", []string{"--ping-interval=3s"}, nil, func(c *Config) bool { return c.PingInterval == 3*time.Second }},
		{"single dash flag", []string{"-log-level", "warn"}, nil, func(c *Config) bool { return c.LogLevel == "warn" }},
		{"flag beats env", []string{"--ping-interval", "7s"}, map[string]string{"EVENTSERVER_PING_INTERVAL": "9s"}, func(c *Config) bool { return c.PingInterval == 7*time.Second }},
		{"flag beats env listen", []string{"--listen", ":1"}, map[string]string{"EVENTSERVER_LISTEN": ":2"}, func(c *Config) bool { return c.Listen == ":1" }},
		{"flag beats env secret", []string{"--jwt-secret", "flag"}, map[string]string{"EVENTSERVER_JWT_SECRET": "env"}, func(c *Config) bool { return c.JWTSecret == "flag" }},
		{"flag beats invalid env", []string{"--log-format", "json"}, map[string]string{"EVENTSERVER_LOG_FORMAT": "xml"}, func(c *Config) bool { return c.LogFormat == "json" }},
		{"empty env is unset", nil, map[string]string{"EVENTSERVER_LISTEN": ""}, func(c *Config) bool { return c.Listen == ":7600" }},
		{"size 1MB", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "1MB"}, func(c *Config) bool { return c.MaxPayload == 1000000 }},
		{"size 1MiB", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "1MiB"}, func(c *Config) bool { return c.MaxPayload == 1<<20 }},
		{"size 64KiB", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "64KiB"}, func(c *Config) bool { return c.MaxPayload == 64<<10 }},
		{"size 2KB", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "2KB"}, func(c *Config) bool { return c.MaxPayload == 2000 }},
		{"size 4096B", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "4096B"}, func(c *Config) bool { return c.MaxPayload == 4096 }},
		{"size with space", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": " 2 MiB "}, func(c *Config) bool { return c.MaxPayload == 2<<20 }},
		{"size flag", []string{"--max-payload", "1MiB"}, nil, func(c *Config) bool { return c.MaxPayload == 1<<20 }},
		{"cors list trimmed", nil, map[string]string{"EVENTSERVER_CORS_ORIGINS": " https://a.example , http://b.example:8080 "},
			func(c *Config) bool {
				return slices.Equal(c.CORSOrigins, []string{"https://a.example", "http://b.example:8080"})
			}},
		{"cors trailing slash removed", nil, map[string]string{"EVENTSERVER_CORS_ORIGINS": "https://a.example/,https://b.example/"},
			func(c *Config) bool {
				return slices.Equal(c.CORSOrigins, []string{"https://a.example", "https://b.example"})
			}},
		{"cors empty items skipped", nil, map[string]string{"EVENTSERVER_CORS_ORIGINS": ",https://a.example,, ,"},
			func(c *Config) bool { return slices.Equal(c.CORSOrigins, []string{"https://a.example"}) }},
		{"trusted proxies", nil, map[string]string{"EVENTSERVER_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7"},
			func(c *Config) bool {
				return len(c.TrustedProxies) == 2 && c.TrustedProxies[1].String() == "192.168.1.7/32"
			}},
		{"connection caps", nil, map[string]string{"EVENTSERVER_MAX_CONNECTIONS": "0", "EVENTSERVER_MAX_CONNECTIONS_PER_IP": "20"},
			func(c *Config) bool { return c.MaxConnections == 0 && c.MaxConnectionsPerIP == 20 }},
		{"cors star", nil, map[string]string{"EVENTSERVER_CORS_ORIGINS": "*"},
			func(c *Config) bool { return slices.Equal(c.CORSOrigins, []string{"*"}) }},
		{"cors flag", []string{"--cors-origins", "https://ui.example/"}, nil,
			func(c *Config) bool { return slices.Equal(c.CORSOrigins, []string{"https://ui.example"}) }},
		{"env user token expiry disconnect", nil, map[string]string{"EVENTSERVER_USER_TOKEN_EXPIRY": "disconnect"},
			func(c *Config) bool { return c.UserTokenExpiry == "disconnect" }},
		{"env user token expiry capitals", nil, map[string]string{"EVENTSERVER_USER_TOKEN_EXPIRY": "KEEP"},
			func(c *Config) bool { return c.UserTokenExpiry == "keep" }},
		{"flag user token expiry", []string{"--user-token-expiry", "disconnect"}, map[string]string{"EVENTSERVER_USER_TOKEN_EXPIRY": "keep"},
			func(c *Config) bool { return c.UserTokenExpiry == "disconnect" }},
		{"env v6 api url", nil, map[string]string{"EVENTSERVER_V6_API_URL": "https://v6.example.org/api"},
			func(c *Config) bool { return c.V6APIURL == "https://v6.example.org/api" }},
		{"env v6 api url http with port", nil, map[string]string{"EVENTSERVER_V6_API_URL": "http://vantage6-server:7601/api/"},
			func(c *Config) bool { return c.V6APIURL == "http://vantage6-server:7601/api/" }},
		{"flag v6 api url", []string{"--v6-api-url", "https://v6.example.org/api"}, nil,
			func(c *Config) bool { return c.V6APIURL == "https://v6.example.org/api" }},
		{"env v6 service account", nil, map[string]string{"EVENTSERVER_V6_USERNAME": "eventserver", "EVENTSERVER_V6_PASSWORD": "pw"},
			func(c *Config) bool { return c.V6Username == "eventserver" && c.V6Password == "pw" }},
		{"env v6 timeout", nil, map[string]string{"EVENTSERVER_V6_TIMEOUT": "750ms"}, func(c *Config) bool { return c.V6Timeout == 750*time.Millisecond }},
		{"env v6 cache ttl", nil, map[string]string{"EVENTSERVER_V6_CACHE_TTL": "2m"}, func(c *Config) bool { return c.V6CacheTTL == 2*time.Minute }},
		{"env jwks", nil, map[string]string{"EVENTSERVER_JWT_JWKS_URL": "https://kc.example.org/realms/v6/protocol/openid-connect/certs",
			"EVENTSERVER_JWT_ISSUER": "https://kc.example.org/realms/v6", "EVENTSERVER_JWT_AUDIENCE": "vantage6", "EVENTSERVER_JWT_JWKS_REFRESH": "5m"},
			func(c *Config) bool {
				return c.JWTJWKSURL == "https://kc.example.org/realms/v6/protocol/openid-connect/certs" && c.JWTIssuer == "https://kc.example.org/realms/v6" &&
					c.JWTAudience == "vantage6" && c.JWTJWKSRefresh == 5*time.Minute && c.JWTJWKSRefreshMin == 10*time.Second
			}},
		{"env v6 version auto", nil, map[string]string{"EVENTSERVER_V6_VERSION": "Auto"}, func(c *Config) bool { return c.V6Version == "auto" }},
		{"flag v6 version 5 and token url", []string{"--v6-version", "5", "--v6-token-url", "https://kc.example.org/realms/vantage6/protocol/openid-connect/token"}, nil,
			func(c *Config) bool {
				return c.V6Version == "5" && c.V6TokenURL == "https://kc.example.org/realms/vantage6/protocol/openid-connect/token"
			}},
		{"env v6 cache off", nil, map[string]string{"EVENTSERVER_V6_CACHE_TTL": "0s"}, func(c *Config) bool { return c.V6CacheTTL == 0 }},
		{"env outbox", nil, map[string]string{"EVENTSERVER_OUTBOX_STREAM": "eventserver:outbox", "EVENTSERVER_OUTBOX_MAXLEN": "5000",
			"EVENTSERVER_OUTBOX_REDIS_URL": "redis://127.0.0.1:6380/2", "EVENTSERVER_OUTBOX_QUEUE_SIZE": "250",
			"EVENTSERVER_OUTBOX_WEBHOOK_URL": "https://v6.example.org/hooks/eventserver?k=1", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN": "tok",
			"EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS": "9", "EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT": "1500ms"},
			func(c *Config) bool {
				return c.OutboxStream == "eventserver:outbox" && c.OutboxMaxLen == 5000 && c.OutboxRedisURL == "redis://127.0.0.1:6380/2" &&
					c.OutboxQueueSize == 250 && c.OutboxWebhookURL == "https://v6.example.org/hooks/eventserver?k=1" &&
					c.OutboxWebhookToken == "tok" && c.OutboxWebhookAttempts == 9 && c.OutboxWebhookTimeout == 1500*time.Millisecond
			}},
		{"flag outbox stream", []string{"--outbox-stream", "s", "--outbox-maxlen", "10"}, nil,
			func(c *Config) bool { return c.OutboxStream == "s" && c.OutboxMaxLen == 10 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, env(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatalf("Load(%q, %v): %v", tt.args, tt.env, err)
			}
			if !tt.check(c) {
				t.Errorf("Load(%q, %v) = %+v: check failed", tt.args, tt.env, c)
			}
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// wantIn are substrings of the error message.
		wantIn []string
	}{
		{"user token expiry unknown", nil, map[string]string{"EVENTSERVER_USER_TOKEN_EXPIRY": "refresh"}, []string{"EVENTSERVER_USER_TOKEN_EXPIRY", "keep, disconnect", "refresh"}},
		{"outbox stream with space", nil, map[string]string{"EVENTSERVER_OUTBOX_STREAM": "event server"}, []string{"EVENTSERVER_OUTBOX_STREAM"}},
		{"outbox maxlen zero", nil, map[string]string{"EVENTSERVER_OUTBOX_MAXLEN": "0"}, []string{"EVENTSERVER_OUTBOX_MAXLEN", "at least 1"}},
		{"outbox maxlen abc", nil, map[string]string{"EVENTSERVER_OUTBOX_MAXLEN": "lots"}, []string{"EVENTSERVER_OUTBOX_MAXLEN", "lots"}},
		{"outbox redis url scheme", nil, map[string]string{"EVENTSERVER_OUTBOX_REDIS_URL": "http://h:6379"}, []string{"EVENTSERVER_OUTBOX_REDIS_URL", "scheme"}},
		{"outbox queue too large", nil, map[string]string{"EVENTSERVER_OUTBOX_QUEUE_SIZE": "2147483648"}, []string{"EVENTSERVER_OUTBOX_QUEUE_SIZE", "at most 10000000"}},
		{"outbox queue negative", nil, map[string]string{"EVENTSERVER_OUTBOX_QUEUE_SIZE": "-1"}, []string{"EVENTSERVER_OUTBOX_QUEUE_SIZE"}},
		{"outbox webhook ftp", nil, map[string]string{"EVENTSERVER_OUTBOX_WEBHOOK_URL": "ftp://h/x"}, []string{"EVENTSERVER_OUTBOX_WEBHOOK_URL", "http"}},
		{"outbox webhook user info", nil, map[string]string{"EVENTSERVER_OUTBOX_WEBHOOK_URL": "https://u:pw-3@h/x"}, []string{"EVENTSERVER_OUTBOX_WEBHOOK_URL", "token"}},
		{"outbox webhook attempts zero", nil, map[string]string{"EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS": "0"}, []string{"EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS"}},
		{"outbox webhook timeout", nil, map[string]string{"EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT": "1ms"}, []string{"EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT"}},
		{"jwks over http to another host", nil, map[string]string{"EVENTSERVER_JWT_JWKS_URL": "http://kc.example.org/certs"}, []string{"EVENTSERVER_JWT_JWKS_URL", "https"}},
		{"jwks refresh min too short", nil, map[string]string{"EVENTSERVER_JWT_JWKS_REFRESH_MIN": "1ms"}, []string{"EVENTSERVER_JWT_JWKS_REFRESH_MIN"}},
		{"v6 version 6", nil, map[string]string{"EVENTSERVER_V6_VERSION": "6"}, []string{"EVENTSERVER_V6_VERSION", "4, 5 or auto"}},
		{"v6 version empty", nil, map[string]string{"EVENTSERVER_V6_VERSION": " "}, []string{"EVENTSERVER_V6_VERSION"}},
		{"v6 token url ftp", nil, map[string]string{"EVENTSERVER_V6_TOKEN_URL": "ftp://kc/t"}, []string{"EVENTSERVER_V6_TOKEN_URL", "scheme"}},
		{"v6 queue channel pattern", nil, map[string]string{"EVENTSERVER_V6_QUEUE_CHANNEL": "flask-*"}, []string{"EVENTSERVER_V6_QUEUE_CHANNEL"}},
		{"v6 queue url scheme", nil, map[string]string{"EVENTSERVER_V6_QUEUE_URL": "http://guest@rabbit/"}, []string{"EVENTSERVER_V6_QUEUE_URL", "amqp://"}},
		{"v6 queue amqp url bad port", nil, map[string]string{"EVENTSERVER_V6_QUEUE_URL": "amqp://guest:pw-5ecret@rabbit:port/"}, []string{"EVENTSERVER_V6_QUEUE_URL", "not a URL"}},
		{"v6 queue amqp url bad heartbeat", nil, map[string]string{"EVENTSERVER_V6_QUEUE_URL": "amqps://guest:pw-5ecret@rabbit/?heartbeat=often"}, []string{"EVENTSERVER_V6_QUEUE_URL", "heartbeat"}},
		{"ping interval abc", nil, map[string]string{"EVENTSERVER_PING_INTERVAL": "abc"}, []string{"EVENTSERVER_PING_INTERVAL", "abc"}},
		{"ping interval zero", nil, map[string]string{"EVENTSERVER_PING_INTERVAL": "0s"}, []string{"EVENTSERVER_PING_INTERVAL"}},
		{"ping timeout negative", nil, map[string]string{"EVENTSERVER_PING_TIMEOUT": "-1s"}, []string{"EVENTSERVER_PING_TIMEOUT"}},
		{"connect timeout zero", nil, map[string]string{"EVENTSERVER_CONNECT_TIMEOUT": "0s"}, []string{"EVENTSERVER_CONNECT_TIMEOUT"}},
		{"connect timeout not a duration", nil, map[string]string{"EVENTSERVER_CONNECT_TIMEOUT": "soon"}, []string{"EVENTSERVER_CONNECT_TIMEOUT"}},
		{"leeway negative", nil, map[string]string{"EVENTSERVER_JWT_LEEWAY": "-1s"}, []string{"EVENTSERVER_JWT_LEEWAY"}},
		{"auth grace abc", nil, map[string]string{"EVENTSERVER_AUTH_GRACE": "soon"}, []string{"EVENTSERVER_AUTH_GRACE"}},
		{"shutdown delay abc", nil, map[string]string{"EVENTSERVER_SHUTDOWN_DELAY": "5"}, []string{"EVENTSERVER_SHUTDOWN_DELAY"}},
		{"drain timeout abc", nil, map[string]string{"EVENTSERVER_DRAIN_TIMEOUT": "x"}, []string{"EVENTSERVER_DRAIN_TIMEOUT"}},
		{"redis url scheme", nil, map[string]string{"EVENTSERVER_REDIS_URL": "http://h:6379"}, []string{"EVENTSERVER_REDIS_URL", "scheme"}},
		{"redis url sentinel without master", nil, map[string]string{"EVENTSERVER_REDIS_URL": "redis+sentinel://h:26379"}, []string{"EVENTSERVER_REDIS_URL", "master_name"}},
		{"redis prefix with #", nil, map[string]string{"EVENTSERVER_REDIS_PREFIX": "a#b"}, []string{"EVENTSERVER_REDIS_PREFIX"}},
		{"redis request timeout", nil, map[string]string{"EVENTSERVER_REDIS_REQUEST_TIMEOUT": "1ms"}, []string{"EVENTSERVER_REDIS_REQUEST_TIMEOUT"}},
		{"redis subscription mode", nil, map[string]string{"EVENTSERVER_REDIS_URL": "redis://127.0.0.1:6379", "EVENTSERVER_REDIS_SUBSCRIPTION_MODE": "sharded"}, []string{"EVENTSERVER_REDIS_SUBSCRIPTION_MODE", "dynamic-private"}},
		{"max payload too small", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "12"}, []string{"EVENTSERVER_MAX_PAYLOAD", "1024"}},
		{"max payload not a size", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "big"}, []string{"EVENTSERVER_MAX_PAYLOAD"}},
		{"max payload negative", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "-5MB"}, []string{"EVENTSERVER_MAX_PAYLOAD"}},
		{"max payload fraction", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "1.5MB"}, []string{"EVENTSERVER_MAX_PAYLOAD"}},
		// 17592186044417 MiB is 2^64 + 1 MiB: it must not wrap around to 1 MiB.
		{"max payload overflow", nil, map[string]string{"EVENTSERVER_MAX_PAYLOAD": "17592186044417MiB"}, []string{"EVENTSERVER_MAX_PAYLOAD"}},
		{"log format xml", nil, map[string]string{"EVENTSERVER_LOG_FORMAT": "xml"}, []string{"EVENTSERVER_LOG_FORMAT", "xml"}},
		{"log level trace", nil, map[string]string{"EVENTSERVER_LOG_LEVEL": "trace"}, []string{"EVENTSERVER_LOG_LEVEL"}},
		{"listen nope", nil, map[string]string{"EVENTSERVER_LISTEN": "nope"}, []string{"EVENTSERVER_LISTEN", "nope"}},
		{"cors ftp", nil, map[string]string{"EVENTSERVER_CORS_ORIGINS": "ftp://x"}, []string{"EVENTSERVER_CORS_ORIGINS", "ftp://x"}},
		{"cors bare host", nil, map[string]string{"EVENTSERVER_CORS_ORIGINS": "https://ok.example,ui.example"}, []string{"EVENTSERVER_CORS_ORIGINS", "ui.example"}},
		{"console token short", nil, map[string]string{"EVENTSERVER_CONSOLE_TOKEN": "console-7chars"}, []string{"EVENTSERVER_CONSOLE_TOKEN", "16"}},
		{"flag console token short", []string{"--console-token", "x"}, nil, []string{"--console-token", "16"}},
		{"publish token short", nil, map[string]string{"EVENTSERVER_PUBLISH_TOKEN": "short"}, []string{"EVENTSERVER_PUBLISH_TOKEN", "16"}},
		{"key file missing", nil, map[string]string{"EVENTSERVER_JWT_PUBLIC_KEY_FILE": "/nonexistent"}, []string{"EVENTSERVER_JWT_PUBLIC_KEY_FILE", "/nonexistent"}},
		{"v6 api url ftp", nil, map[string]string{"EVENTSERVER_V6_API_URL": "ftp://v6.example.org/api"}, []string{"EVENTSERVER_V6_API_URL", "http or https"}},
		{"v6 api url without scheme", nil, map[string]string{"EVENTSERVER_V6_API_URL": "v6.example.org/api"}, []string{"EVENTSERVER_V6_API_URL", "http or https"}},
		{"v6 api url without host", nil, map[string]string{"EVENTSERVER_V6_API_URL": "https:///api"}, []string{"EVENTSERVER_V6_API_URL", "host"}},
		{"v6 api url with user info", nil, map[string]string{"EVENTSERVER_V6_API_URL": "https://admin:pw@v6.example.org/api"}, []string{"EVENTSERVER_V6_API_URL", "user information", "EVENTSERVER_V6_USERNAME"}},
		{"v6 api url with query", nil, map[string]string{"EVENTSERVER_V6_API_URL": "https://v6.example.org/api?x=1"}, []string{"EVENTSERVER_V6_API_URL", "query"}},
		{"v6 timeout too short", nil, map[string]string{"EVENTSERVER_V6_TIMEOUT": "1ms"}, []string{"EVENTSERVER_V6_TIMEOUT"}},
		{"v6 cache ttl negative", nil, map[string]string{"EVENTSERVER_V6_CACHE_TTL": "-1s"}, []string{"EVENTSERVER_V6_CACHE_TTL"}},
		{"flag v6 api url", []string{"--v6-api-url", "mailto:x@example.org"}, nil, []string{"--v6-api-url"}},
		{"flag ping interval", []string{"--ping-interval", "abc"}, nil, []string{"--ping-interval", "abc"}},
		{"flag listen", []string{"--listen=nope"}, nil, []string{"--listen"}},
		{"flag empty listen", []string{"--listen="}, nil, []string{"--listen"}},
		{"flag max payload", []string{"--max-payload", "12"}, nil, []string{"--max-payload"}},
		{"flag publish token", []string{"--publish-token", "short"}, nil, []string{"--publish-token"}},
		{"flag wins and is named", []string{"--ping-interval", "abc"}, map[string]string{"EVENTSERVER_PING_INTERVAL": "5s"}, []string{"--ping-interval"}},
		{"unknown flag", []string{"--nope"}, nil, []string{"nope"}},
		{"positional argument", []string{"serve-now"}, nil, []string{"serve-now"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, env(tt.env), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("Load(%q, %v) = %+v, want an error", tt.args, tt.env, c)
			}
			if errors.Is(err, ErrHelp) {
				t.Fatalf("Load(%q, %v) = ErrHelp", tt.args, tt.env)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "5ecret") {
				t.Errorf("error %q prints the URL's password", err)
			}
		})
	}
}

// TestLoadFlagErrorNamesOnlyTheFlag checks that an invalid flag is reported
// as the flag, not as the variable.
func TestLoadFlagErrorNamesOnlyTheFlag(t *testing.T) {
	_, err := Load([]string{"--ping-interval", "abc"}, env(nil), &bytes.Buffer{})
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "EVENTSERVER_PING_INTERVAL") {
		t.Errorf("error %q names the variable, but the value came from the flag", err)
	}
}

func TestValidate(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // substrings; nil means valid
	}{
		{"no key", nil, []string{"EVENTSERVER_JWT_SECRET", "EVENTSERVER_JWT_PUBLIC_KEY_FILE"}},
		{"secret", map[string]string{"EVENTSERVER_JWT_SECRET": "s"}, nil},
		{"key file", map[string]string{"EVENTSERVER_JWT_PUBLIC_KEY_FILE": keyFile}, nil},
		{"both", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_JWT_PUBLIC_KEY_FILE": keyFile}, nil},
		{"ping timeout too short", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_PING_INTERVAL": "60s", "EVENTSERVER_PING_TIMEOUT": "10s"},
			[]string{"EVENTSERVER_PING_TIMEOUT", "EVENTSERVER_PING_INTERVAL"}},
		{"v6 api url alone", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api"}, nil},
		{"v6 with service account", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_USERNAME": "eventserver", "EVENTSERVER_V6_PASSWORD": "pw"}, nil},
		{"v6 username without password", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_USERNAME": "eventserver"}, []string{"EVENTSERVER_V6_USERNAME", "EVENTSERVER_V6_PASSWORD"}},
		{"v6 password without username", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_PASSWORD": "pw-secret"}, []string{"EVENTSERVER_V6_USERNAME", "EVENTSERVER_V6_PASSWORD"}},
		{"v6 5 with a Keycloak service account", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_VERSION": "5", "EVENTSERVER_V6_TOKEN_URL": "https://kc.example.org/t", "EVENTSERVER_V6_USERNAME": "es-client", "EVENTSERVER_V6_PASSWORD": "sec"}, nil},
		{"v6 5 with a password account", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_VERSION": "5", "EVENTSERVER_V6_USERNAME": "eventserver", "EVENTSERVER_V6_PASSWORD": "pw"}, []string{"EVENTSERVER_V6_TOKEN_URL", "no password login"}},
		{"v6 token url on 4", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_TOKEN_URL": "https://kc.example.org/t", "EVENTSERVER_V6_USERNAME": "es-client", "EVENTSERVER_V6_PASSWORD": "sec"}, []string{"EVENTSERVER_V6_VERSION"}},
		{"v6 token url without account", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_VERSION": "auto", "EVENTSERVER_V6_TOKEN_URL": "https://kc.example.org/t"}, []string{"EVENTSERVER_V6_TOKEN_URL", "EVENTSERVER_V6_USERNAME"}},
		{"v6 service account without url", map[string]string{"EVENTSERVER_JWT_SECRET": "s",
			"EVENTSERVER_V6_USERNAME": "eventserver", "EVENTSERVER_V6_PASSWORD": "pw"}, []string{"EVENTSERVER_V6_API_URL"}},
		{"v6 queue without any redis", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_QUEUE_CHANNEL": "flask-socketio"},
			[]string{"EVENTSERVER_V6_QUEUE_CHANNEL", "EVENTSERVER_V6_QUEUE_URL", "EVENTSERVER_REDIS_URL"}},
		{"v6 queue on the cluster's redis", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_QUEUE_CHANNEL": "flask-socketio",
			"EVENTSERVER_REDIS_URL": "redis://127.0.0.1:6379/0"}, nil},
		{"v6 queue on its own redis", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_QUEUE_CHANNEL": "flask-socketio",
			"EVENTSERVER_V6_QUEUE_URL": "redis://127.0.0.1:6379/1"}, nil},
		{"v6 queue on rabbitmq", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_V6_QUEUE_CHANNEL": "flask-socketio",
			"EVENTSERVER_V6_QUEUE_URL": "amqp://vantage6:pw@rabbitmq:5672/v6"}, nil},
		{"outbox stream without any redis", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_OUTBOX_STREAM": "eventserver:outbox"},
			[]string{"EVENTSERVER_OUTBOX_STREAM", "EVENTSERVER_OUTBOX_REDIS_URL", "EVENTSERVER_REDIS_URL"}},
		{"outbox stream on the cluster's redis", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_OUTBOX_STREAM": "eventserver:outbox",
			"EVENTSERVER_REDIS_URL": "redis://127.0.0.1:6379/0"}, nil},
		{"outbox stream on its own redis", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_OUTBOX_STREAM": "eventserver:outbox",
			"EVENTSERVER_OUTBOX_REDIS_URL": "redis://127.0.0.1:6379/3"}, nil},
		{"outbox redis url without stream", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_OUTBOX_REDIS_URL": "redis://127.0.0.1:6379/3"},
			[]string{"EVENTSERVER_OUTBOX_REDIS_URL", "EVENTSERVER_OUTBOX_STREAM"}},
		{"sharded mode without redis", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_REDIS_SUBSCRIPTION_MODE": "dynamic"},
			[]string{"EVENTSERVER_REDIS_SUBSCRIPTION_MODE", "EVENTSERVER_REDIS_URL"}},
		{"sharded mode on a redis cluster", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_REDIS_SUBSCRIPTION_MODE": "dynamic-private",
			"EVENTSERVER_REDIS_URL": "redis+cluster://127.0.0.1:7000"}, nil},
		{"sharded mode behind sentinel", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_REDIS_SUBSCRIPTION_MODE": "static",
			"EVENTSERVER_REDIS_URL": "redis+sentinel://127.0.0.1:26379?master_name=mymaster"}, []string{"EVENTSERVER_REDIS_SUBSCRIPTION_MODE=static", "redis+sentinel://", "classic"}},
		{"classic mode behind sentinel", map[string]string{"EVENTSERVER_JWT_SECRET": "s",
			"EVENTSERVER_REDIS_URL": "redis+sentinel://127.0.0.1:26379?master_name=mymaster"}, nil},
		{"console token", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_CONSOLE_TOKEN": "console-token-0123456789"}, nil},
		{"console token beside the publish token", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_CONSOLE_TOKEN": "console-token-0123456789",
			"EVENTSERVER_PUBLISH_TOKEN": "publish-token-0123456789"}, nil},
		{"console token equal to the publish token", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_CONSOLE_TOKEN": "same-token-0123456789",
			"EVENTSERVER_PUBLISH_TOKEN": "same-token-0123456789"}, []string{"EVENTSERVER_CONSOLE_TOKEN", "EVENTSERVER_PUBLISH_TOKEN", "differ"}},
		{"outbox webhook alone", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_OUTBOX_WEBHOOK_URL": "http://backend:5000/facts"}, nil},
		{"outbox webhook token without url", map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN": "tok-secret"},
			[]string{"EVENTSERVER_OUTBOX_WEBHOOK_TOKEN", "EVENTSERVER_OUTBOX_WEBHOOK_URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(nil, env(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			err = c.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

// allVariables lists every EVENTSERVER_ variable that Config reads.
var allVariables = []string{
	"EVENTSERVER_LISTEN",
	"EVENTSERVER_INSTANCE_ID",
	"EVENTSERVER_JWT_SECRET",
	"EVENTSERVER_JWT_PUBLIC_KEY_FILE",
	"EVENTSERVER_JWT_LEEWAY",
	"EVENTSERVER_AUTH_GRACE",
	"EVENTSERVER_USER_TOKEN_EXPIRY",
	"EVENTSERVER_PUBLISH_TOKEN",
	"EVENTSERVER_CONSOLE_TOKEN",
	"EVENTSERVER_CORS_ORIGINS",
	"EVENTSERVER_PING_INTERVAL",
	"EVENTSERVER_PING_TIMEOUT",
	"EVENTSERVER_CONNECT_TIMEOUT",
	"EVENTSERVER_MAX_PAYLOAD",
	"EVENTSERVER_MAX_WRITE_QUEUE",
	"EVENTSERVER_MAX_CONNECTIONS",
	"EVENTSERVER_MAX_CONNECTIONS_PER_IP",
	"EVENTSERVER_TRUSTED_PROXIES",
	"EVENTSERVER_EVENT_RATE",
	"EVENTSERVER_EVENT_BURST",
	"EVENTSERVER_EVENT_FLOOD_DISCONNECT",
	"EVENTSERVER_HTTP_READ_HEADER_TIMEOUT",
	"EVENTSERVER_HTTP_IDLE_TIMEOUT",
	"EVENTSERVER_HTTP_MAX_HEADER_BYTES",
	"EVENTSERVER_REDIS_URL",
	"EVENTSERVER_REDIS_PREFIX",
	"EVENTSERVER_REDIS_REQUEST_TIMEOUT",
	"EVENTSERVER_REDIS_SUBSCRIPTION_MODE",
	"EVENTSERVER_PRESENCE_GRACE",
	"EVENTSERVER_PRESENCE_REFRESH",
	"EVENTSERVER_PRESENCE_TTL",
	"EVENTSERVER_PRESENCE_STALE",
	"EVENTSERVER_OUTBOX_STREAM",
	"EVENTSERVER_OUTBOX_MAXLEN",
	"EVENTSERVER_OUTBOX_REDIS_URL",
	"EVENTSERVER_OUTBOX_QUEUE_SIZE",
	"EVENTSERVER_OUTBOX_WEBHOOK_URL",
	"EVENTSERVER_OUTBOX_WEBHOOK_TOKEN",
	"EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS",
	"EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT",
	"EVENTSERVER_LOG_FORMAT",
	"EVENTSERVER_LOG_LEVEL",
	"EVENTSERVER_SHUTDOWN_DELAY",
	"EVENTSERVER_DRAIN_TIMEOUT",
	"EVENTSERVER_V6_API_URL",
	"EVENTSERVER_V6_USERNAME",
	"EVENTSERVER_V6_PASSWORD",
	"EVENTSERVER_V6_VERSION",
	"EVENTSERVER_V6_TOKEN_URL",
	"EVENTSERVER_V6_TIMEOUT",
	"EVENTSERVER_V6_CACHE_TTL",
	"EVENTSERVER_V6_QUEUE_CHANNEL",
	"EVENTSERVER_V6_QUEUE_URL",
	"EVENTSERVER_JWT_JWKS_URL",
	"EVENTSERVER_JWT_JWKS_REFRESH",
	"EVENTSERVER_JWT_JWKS_REFRESH_MIN",
	"EVENTSERVER_JWT_ISSUER",
	"EVENTSERVER_JWT_AUDIENCE",
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}} {
		t.Run(args[0], func(t *testing.T) {
			var out bytes.Buffer
			c, err := Load(args, env(nil), &out)
			if !errors.Is(err, ErrHelp) {
				t.Fatalf("Load(%q) = %v, %v; want ErrHelp", args, c, err)
			}
			for _, v := range allVariables {
				if !strings.Contains(out.String(), v) {
					t.Errorf("help does not mention %s", v)
				}
			}
			// And every variable mentioned in the help is one we know of.
			for _, v := range regexp.MustCompile(`EVENTSERVER_[A-Z0-9_]+`).FindAllString(out.String(), -1) {
				if !slices.Contains(allVariables, v) {
					t.Errorf("help mentions %s, which the test does not know about", v)
				}
			}
			for _, want := range []string{"--ping-interval", ":7600", "25s", "1000000"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("help does not mention %q", want)
				}
			}
		})
	}
}

// TestV6PasswordNeverPrinted: neither --help nor an error shows the service
// account's password, nor the password of a URL.
func TestV6PasswordNeverPrinted(t *testing.T) {
	const pw = "pw-7c1e9b-do-not-print"
	e := map[string]string{
		"EVENTSERVER_JWT_SECRET":   "s",
		"EVENTSERVER_V6_PASSWORD":  pw,
		"EVENTSERVER_V6_API_URL":   "https://v6.example.org/api",
		"EVENTSERVER_V6_USERNAME":  "",
		"EVENTSERVER_V6_CACHE_TTL": "1s",
	}
	var out bytes.Buffer
	if _, err := Load([]string{"--help"}, env(e), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if strings.Contains(out.String(), pw) {
		t.Errorf("--help prints the password:\n%s", out.String())
	}
	c, err := Load([]string{"--v6-password", pw}, env(e), &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("Validate without a username: %v (want an error that does not print the password)", err)
	}
	e["EVENTSERVER_V6_API_URL"] = "https://admin:" + pw + "@v6.example.org/api"
	if _, err := Load(nil, env(e), &out); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("URL with a password: %v (want an error that does not print it)", err)
	}
	if strings.Contains(out.String(), pw) {
		t.Errorf("output prints the password:\n%s", out.String())
	}
}

// loadNeverPrinting loads e with --help and without, validates, and
// fails t when the help, the output or Validate's error (which must be
// one: what) shows tok; it returns the output for more checks.
func loadNeverPrinting(t *testing.T, e map[string]string, tok, what string) *bytes.Buffer {
	t.Helper()
	var out bytes.Buffer
	if _, err := Load([]string{"--help"}, env(e), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	c, err := Load(nil, env(e), &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), tok) {
		t.Errorf("Validate %s: %v (want an error that does not print the token)", what, err)
	}
	return &out
}

// TestOutboxWebhookTokenNeverPrinted: neither --help nor an error shows the
// webhook's token.
func TestOutboxWebhookTokenNeverPrinted(t *testing.T) {
	const tok = "tok-41d7-do-not-print"
	out := loadNeverPrinting(t, map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN": tok}, tok, "without a URL")
	if strings.Contains(out.String(), tok) {
		t.Errorf("output prints the token:\n%s", out.String())
	}
}

// TestConsoleTokenNeverPrinted: neither --help nor an error shows the
// console token.
func TestConsoleTokenNeverPrinted(t *testing.T) {
	const tok = "console-5d1e-do-not-print"
	out := loadNeverPrinting(t, map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_CONSOLE_TOKEN": tok, "EVENTSERVER_PUBLISH_TOKEN": tok}, tok, "with equal tokens")
	if _, err := Load([]string{"--console-token", "zq9x7"}, env(nil), out); err == nil || strings.Contains(err.Error(), "zq9x7") {
		t.Errorf("short token: %v (want an error that does not print it)", err)
	}
	if strings.Contains(out.String(), tok) {
		t.Errorf("output prints the token:\n%s", out.String())
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	Usage(&out)
	for _, v := range allVariables {
		if !strings.Contains(out.String(), v) {
			t.Errorf("Usage does not mention %s", v)
		}
	}
}

func TestMarkdown(t *testing.T) {
	var out bytes.Buffer
	Markdown(&out)
	md := out.String()
	for _, v := range allVariables {
		if n := strings.Count(md, "`"+v+"`"); n != 1 {
			t.Errorf("Markdown lists %s %d times, want once", v, n)
		}
	}
	lines := strings.Split(strings.TrimSpace(md), "\n")
	if len(lines) != 2+len(allVariables) {
		t.Errorf("Markdown has %d lines, want a header, a separator and %d rows:\n%s", len(lines), len(allVariables), md)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "|") || !strings.HasSuffix(l, "|") {
			t.Errorf("line %d is not a table row: %q", i, l)
		}
		if got := strings.Count(l, "|"); got != 5 {
			t.Errorf("line %d has %d pipes, want 5 (4 columns): %q", i, got, l)
		}
	}
}
