// Package app is the composition root: it wires the configuration, the
// logger, the Socket.IO server, the hub, presence and the HTTP API, and runs
// them until they are shut down.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/internal/connlimit"
	"github.com/eventserver/eventserver/internal/console"
	"github.com/eventserver/eventserver/internal/httpapi"
	"github.com/eventserver/eventserver/internal/hub"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/outbox"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/internal/redisconn"
	"github.com/eventserver/eventserver/internal/v6api"
	"github.com/eventserver/eventserver/internal/v6bridge"
	"github.com/eventserver/eventserver/internal/validate"
	redisadapter "github.com/eventserver/eventserver/pkg/adapter/redis"
	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/socketio"
)

// App is one eventserver instance.
type App struct {
	cfg     *config.Config
	log     *zap.Logger
	metrics *metrics
	io      *socketio.Server
	hub     *hub.Hub
	http    *http.Server
	ln      net.Listener

	// Cluster mode only.
	redis   goredis.UniversalClient
	adapter redisadapter.ClusterBroker

	// bridge carries out vantage6's Flask-SocketIO queue, when configured;
	// bridgeRedis is its own client when the queue is not the cluster's Redis.
	bridge      *v6bridge.Bridge
	bridgeRedis goredis.UniversalClient

	// v6 resolves identities through the vantage6 API, when configured.
	v6 *v6api.Resolver
	// verifier checks client tokens; Shutdown stops its JWK Set refresh.
	verifier *auth.Verifier

	// console is the operator console, when EVENTSERVER_CONSOLE_TOKEN is
	// set; transitions is its log of node transitions, fed by presence.
	console     *console.Console
	transitions console.TransitionLog
	version     string

	// outbox hands node facts to the backend, when configured, with its own
	// Redis client (outboxRedis) for the stream.
	outbox      *outbox.Outbox
	outboxRedis goredis.UniversalClient

	ready    atomic.Bool
	shutOnce sync.Once
	shutErr  error
	served   chan error
}

// NewLogger builds the zap logger the configuration asks for.
func NewLogger(cfg *config.Config) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("app: EVENTSERVER_LOG_LEVEL: %w", err)
	}
	zc := zap.NewProductionConfig()
	if cfg.LogFormat == "console" {
		zc = zap.NewDevelopmentConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	// Repeats are sampled: a reconnect storm or a misbehaving client must
	// not turn into gigabytes of identical lines. What is dropped is
	// counted (eventserver_log_lines_sampled_out_total).
	zc.Sampling = &zap.SamplingConfig{Initial: 100, Thereafter: 100, Hook: func(_ zapcore.Entry, d zapcore.SamplingDecision) {
		if d&zapcore.LogDropped != 0 {
			LogLinesSampledOut.Inc()
		}
	}}
	zc.EncoderConfig.TimeKey = "time"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	l, err := zc.Build()
	if err != nil {
		return nil, err
	}
	return l.With(zap.String("instance", cfg.InstanceID)), nil
}

// Option adjusts what New builds.
type Option func(*App)

// WithVersion names the version of the binary (internal/cli's build-time
// version), which the operator console shows per replica. Without it the
// console reads the binary's build information.
func WithVersion(v string) Option { return func(a *App) { a.version = v } }

// New builds an instance and binds its listener; Run serves.
func New(cfg *config.Config, log *zap.Logger, opts ...Option) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := newMetrics()
	vcfg := auth.Config{HMACSecret: []byte(cfg.JWTSecret), Leeway: cfg.JWTLeeway, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
	if cfg.JWTJWKSURL != "" {
		vcfg.JWKS = &auth.JWKSConfig{URL: cfg.JWTJWKSURL, Refresh: cfg.JWTJWKSRefresh, RefreshMin: cfg.JWTJWKSRefreshMin,
			Logger: log.Named("jwks"), Registerer: m.Registry}
	}
	if cfg.JWTPublicKeyFile != "" {
		pem, err := os.ReadFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("app: EVENTSERVER_JWT_PUBLIC_KEY_FILE: %w", err)
		}
		vcfg.PublicKeyPEM = pem
	}
	verifier, err := auth.NewVerifier(vcfg)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if cfg.JWTJWKSURL != "" {
		log.Info("token keys from a JWK Set", zap.String("url", cfg.JWTJWKSURL), zap.Duration("refresh", cfg.JWTJWKSRefresh),
			zap.Duration("refresh_min", cfg.JWTJWKSRefreshMin), zap.String("issuer", cfg.JWTIssuer), zap.String("audience", cfg.JWTAudience))
	}

	a := &App{cfg: cfg, log: log, metrics: m, served: make(chan error, 1), verifier: verifier}
	for _, o := range opts {
		o(a)
	}
	// The first fetch of the JWK Set, if any, ends before clients come.
	if err := verifier.Start(); err != nil {
		a.release()
		return nil, fmt.Errorf("app: %w", err)
	}
	if err := a.build(verifier); err != nil {
		a.release()
		return nil, err
	}
	return a, nil
}

// build makes the parts of a: New releases what it started when it fails.
func (a *App) build(verifier *auth.Verifier) error {
	cfg, log := a.cfg, a.log
	// go-redis logs through zap, whichever client (cluster, outbox, queue
	// bridge) is made.
	redisconn.SetLogger(log)
	var err error

	m := a.metrics
	limiter := connlimit.New(connlimit.Config{
		Max:            cfg.MaxConnections,
		PerIP:          cfg.MaxConnectionsPerIP,
		TrustedProxies: cfg.TrustedProxies,
		Refused:        m.ConnectionsRefused,
		Logger:         log,
	})
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eventserver_engineio_sessions",
		Help: "Engine.IO sessions open now (what EVENTSERVER_MAX_CONNECTIONS bounds), any namespace, authenticated or not.",
	}, func() float64 { return float64(limiter.Len()) }))
	scfg := socketio.Config{
		Engine: engineio.Config{
			PingInterval:   cfg.PingInterval,
			PingTimeout:    cfg.PingTimeout,
			MaxPayload:     int(cfg.MaxPayload),
			ConnectTimeout: cfg.ConnectTimeout,
			MaxWriteQueue:  int(cfg.MaxWriteQueue),
			Admit:          limiter.Admit,
			// What the hub reads of the handshake (the token).
			KeepHeaders: []string{"Authorization"},
			Hooks: engineio.Hooks{
				Opened:       func(transport string) { m.EngineOpened.WithLabelValues(transport).Inc() },
				Closed:       func(reason string) { m.EngineClosed.WithLabelValues(reason).Inc() },
				Upgraded:     m.EngineUpgrades.Inc,
				SlowConsumer: m.SlowConsumers.Inc,
			},
		},
		OnError: func(err error) { log.Error("socket.io", zap.Error(err)) },
	}
	if cfg.RedisURL != "" {
		client, mode, err := redisconn.NewClient(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("app: EVENTSERVER_REDIS_URL: %w", err)
		}
		acfg := redisadapter.Config{
			Client:         client,
			Mode:           redisadapter.Mode(cfg.RedisSubscriptionMode),
			Prefix:         cfg.RedisPrefix,
			RequestTimeout: cfg.RedisRequestTimeout,
			Logger:         log.Named("redis-adapter"),
			Registerer:     a.metrics.Registry,
		}
		if a.adapter, err = redisadapter.NewClusterBroker(acfg); err != nil {
			_ = client.Close()
			return fmt.Errorf("app: %w", err)
		}
		a.redis = client
		a.adapter.Start()
		scfg.Adapter = a.adapter.New
		log.Info("cluster mode", zap.String("redis", redisconn.Redact(cfg.RedisURL)),
			zap.String("redis_mode", string(mode)), zap.String("prefix", cfg.RedisPrefix),
			zap.String("subscription_mode", cfg.RedisSubscriptionMode))
	}
	if cfg.ConsoleToken != "" {
		if a.redis != nil {
			a.transitions = console.NewRedisLog(a.redis, cfg.RedisPrefix+":console:transitions", log.Named("console"))
		} else {
			a.transitions = console.NewMemoryLog(nil)
		}
	}
	a.io, err = socketio.NewServer(scfg)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}

	resolver, resolveTimeout, err := a.newResolver()
	if err != nil {
		return err
	}
	facts, err := a.newOutbox()
	if err != nil {
		return err
	}
	a.hub, err = hub.New(hub.Config{
		Server:         a.io,
		Verifier:       verifier,
		Resolver:       resolver,
		ResolveTimeout: resolveTimeout,
		NewPresence:    a.newPresence,
		AuthGrace:      cfg.AuthGrace,
		Events:         hub.EventLimit{Rate: cfg.EventRate, Burst: cfg.EventBurst, FloodDisconnect: cfg.EventFloodDisconnect},
		// Checked by config (keep or disconnect) and again by the hub.
		UserTokenExpiry: hub.UserExpiry(cfg.UserTokenExpiry),
		Instance:        cfg.InstanceID,
		Logger:          log,
		Registerer:      a.metrics.Registry,
		Facts:           facts,
		Tasks:           a.tasks(),
	})
	if err != nil {
		return err
	}
	if err := a.startBridge(); err != nil {
		return err
	}

	apiMetrics, err := httpapi.NewMetrics(a.metrics.Registry)
	if err != nil {
		return fmt.Errorf("app: metrics: %w", err)
	}
	api := httpapi.New(httpapi.Config{
		Token:    cfg.PublishToken,
		MaxBody:  cfg.MaxPayload,
		Emitter:  a.hub,
		Presence: a.hub.Presence(),
		Cluster:  a.hub,
		Logger:   log,
		Metrics:  apiMetrics,
	})
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", httpapi.CORS(httpapi.NewOriginPolicy(cfg.CORSOrigins, log, apiMetrics), a.io))
	api.Register(mux)
	if err := a.startConsole(mux); err != nil {
		return err
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if !a.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: draining\n"))
			return
		}
		if reason := a.notReady(); reason != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + reason + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))

	// A long-poll GET is answered within a ping interval; a body is read
	// well within a ping cycle. Hijacked websockets leave net/http, and
	// with it these deadlines.
	rw := max(cfg.PingInterval, cfg.PingTimeout) + cfg.PingInterval + 10*time.Second
	a.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       rw,
		WriteTimeout:      rw,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    int(cfg.HTTPMaxHeaderBytes),
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	a.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("app: EVENTSERVER_LISTEN: %w", err)
	}
	return nil
}

// release frees, in reverse order, whatever a failed New had started.
func (a *App) release() {
	ctx := context.Background()
	if a.io != nil {
		_ = a.io.Shutdown(ctx)
	}
	if a.hub != nil {
		_ = a.hub.Shutdown(ctx)
		_ = a.hub.Presence().Shutdown(ctx)
	}
	a.closeConsole(ctx)
	a.closeBridge(ctx)
	a.closeOutbox(ctx)
	a.closeV6(ctx)
	a.closeCluster()
	_ = a.verifier.Shutdown(ctx)
}

// newResolver picks who tells the identity of a client: the vantage6 API
// when EVENTSERVER_V6_API_URL is set, the token's claims otherwise. It also
// returns the bound of one whole resolution: with the API, twice the
// per-call timeout and at least the hub's default of 10s (zero).
func (a *App) newResolver() (identity.Resolver, time.Duration, error) {
	cfg := a.cfg
	if cfg.V6APIURL == "" {
		return identity.ClaimsResolver{}, 0, nil
	}
	r, err := v6api.New(v6api.Config{
		BaseURL:    cfg.V6APIURL,
		Username:   cfg.V6Username,
		Password:   cfg.V6Password,
		Version:    cfg.V6Version,
		TokenURL:   cfg.V6TokenURL,
		Timeout:    cfg.V6Timeout,
		CacheTTL:   cfg.V6CacheTTL,
		Logger:     a.log.Named("v6api"),
		Registerer: a.metrics.Registry,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("app: EVENTSERVER_V6_API_URL: %w", err)
	}
	a.v6 = r
	fields := []zap.Field{zap.String("api", cfg.V6APIURL), zap.String("version", cfg.V6Version), zap.Duration("timeout", cfg.V6Timeout),
		zap.Duration("cache_ttl", cfg.V6CacheTTL), zap.Bool("service_account", r.HasServiceAccount())}
	if r.HasServiceAccount() {
		fields = append(fields, zap.String("service_username", cfg.V6Username))
	}
	a.log.Info("identity from the vantage6 API", fields...)
	if !r.HasServiceAccount() {
		a.log.Warn("no vantage6 service account (EVENTSERVER_V6_USERNAME, EVENTSERVER_V6_PASSWORD): users with the " +
			"global event rule who may not list every collaboration themselves join only their organization's collaborations, " +
			"and users who may not list their organization's collaborations get invalid_token")
	}
	return r, max(10*time.Second, 2*cfg.V6Timeout), nil
}

// closeV6 closes the vantage6 resolver's idle connections.
func (a *App) closeV6(ctx context.Context) {
	if a.v6 != nil {
		_ = a.v6.Shutdown(ctx)
	}
}

// newPresence builds the presence store: in Redis in cluster mode, so that
// online and offline are decided once for the whole cluster; in memory
// otherwise.
func (a *App) newPresence(h presence.Handler) (presence.Store, error) {
	cfg := a.cfg
	// Each node's offline transitions over the last 10 minutes, for the
	// flapping alert (eventserver_presence_node_offline_max).
	flaps, err := presence.NewFlaps(presence.FlapsConfig{
		Client:     a.redis, // nil: this process
		Prefix:     cfg.RedisPrefix + ":presence:flaps",
		Registerer: a.metrics.Registry,
		Logger:     a.log.Named("presence"),
	})
	if err != nil {
		return nil, err
	}
	notifyNext := h
	h = func(tr presence.Transition) {
		notifyNext(tr)
		flaps.Record(tr)
	}
	if a.transitions != nil {
		// The console's timeline: each transition is decided once for the
		// cluster, and recorded where every replica's console reads it.
		notify := h
		h = func(tr presence.Transition) {
			notify(tr)
			a.transitions.Record(tr)
		}
	}
	if a.redis == nil {
		return presence.NewMemoryWithConfig(presence.MemoryConfig{
			Handler:    h,
			Grace:      graceOrNone(cfg.PresenceGrace),
			StaleAfter: cfg.PresenceStale,
			Logger:     a.log.Named("presence"),
			Registerer: a.metrics.Registry,
		})
	}
	s, err := presence.NewRedis(presence.RedisConfig{
		Client:          a.redis,
		Handler:         h,
		Instance:        cfg.InstanceID,
		Prefix:          cfg.RedisPrefix + ":presence",
		RefreshInterval: cfg.PresenceRefresh,
		TTL:             cfg.PresenceTTL,
		Grace:           graceOrNone(cfg.PresenceGrace),
		StaleAfter:      cfg.PresenceStale,
		Logger:          a.log.Named("presence"),
		Registerer:      a.metrics.Registry,
	})
	if err != nil {
		return nil, err
	}
	s.Start()
	return s, nil
}

// startConsole serves the operator console at /console/ when
// EVENTSERVER_CONSOLE_TOKEN is set.
func (a *App) startConsole(mux *http.ServeMux) error {
	cfg := a.cfg
	if cfg.ConsoleToken == "" {
		return nil
	}
	c, err := console.New(console.Config{
		Token:          cfg.ConsoleToken,
		Presence:       a.hub.Presence(),
		Transitions:    a.transitions,
		Cluster:        a.hub.Namespace(),
		Gatherer:       a.metrics.Registry,
		Registerer:     a.metrics.Registry,
		Instance:       cfg.InstanceID,
		Version:        a.version,
		Ready:          func() bool { return a.ready.Load() && a.notReady() == "" },
		RedisState:     a.redisState,
		TrustedProxies: cfg.TrustedProxies,
		Logger:         a.log,
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	c.Register(mux)
	c.Start()
	a.console = c
	return nil
}

// redisState is the cluster's Redis as the console shows it: ok (the
// adapter's subscriptions are confirmed on a live connection), down, or
// none (a single instance).
func (a *App) redisState() string {
	switch {
	case a.adapter == nil:
		return "none"
	case a.adapter.Ready():
		return "ok"
	}
	return "down"
}

// closeConsole ends the console's streams and sampling.
func (a *App) closeConsole(ctx context.Context) {
	if a.console != nil {
		if err := a.console.Shutdown(ctx); err != nil {
			a.log.Warn("console shutdown", zap.Error(err))
		}
	}
}

// graceOrNone maps a configured zero grace to presence.NoGrace (zero means
// the default there).
func graceOrNone(d time.Duration) time.Duration {
	if d == 0 {
		return presence.NoGrace
	}
	return d
}

// startBridge subscribes to vantage6's Flask-SocketIO message queue when
// EVENTSERVER_V6_QUEUE_CHANNEL is set: on EVENTSERVER_V6_QUEUE_URL (RabbitMQ
// for an amqp:// or amqps:// URL, else Redis), or on the cluster's Redis.
func (a *App) startBridge() error {
	cfg := a.cfg
	if cfg.V6QueueChannel == "" {
		return nil
	}
	bc := v6bridge.Config{
		Channel:    cfg.V6QueueChannel,
		Namespace:  protocol.Namespace,
		Target:     a.hub,
		Logger:     a.log.Named("v6bridge"),
		Registerer: a.metrics.Registry,
	}
	kind, url := "redis", cfg.RedisURL
	switch {
	case validate.IsAMQPURL(cfg.V6QueueURL):
		kind, url, bc.AMQPURL = "rabbitmq", cfg.V6QueueURL, cfg.V6QueueURL
	case cfg.V6QueueURL != "":
		c, _, err := redisconn.NewClient(cfg.V6QueueURL)
		if err != nil {
			return fmt.Errorf("app: EVENTSERVER_V6_QUEUE_URL: %w", err)
		}
		url, bc.Client, a.bridgeRedis = cfg.V6QueueURL, c, c
	case a.redis != nil:
		bc.Client = a.redis
	default:
		return errors.New("app: EVENTSERVER_V6_QUEUE_CHANNEL needs EVENTSERVER_V6_QUEUE_URL or EVENTSERVER_REDIS_URL")
	}
	b, err := v6bridge.New(bc)
	if err != nil {
		if a.bridgeRedis != nil {
			_ = a.bridgeRedis.Close()
		}
		return fmt.Errorf("app: %w", err)
	}
	b.Start()
	a.bridge = b
	a.log.Info("Flask-SocketIO queue bridge", zap.String(kind, redisconn.Redact(url)), zap.String("channel", cfg.V6QueueChannel))
	return nil
}

// closeBridge stops the Flask-SocketIO queue bridge and closes its own client.
func (a *App) closeBridge(ctx context.Context) {
	if a.bridge == nil {
		return
	}
	if err := a.bridge.Shutdown(ctx); err != nil {
		a.log.Warn("closing the Flask-SocketIO queue bridge", zap.Error(err))
	}
	if a.bridgeRedis != nil {
		_ = a.bridgeRedis.Close()
	}
}

// newOutbox starts the backend outbox when EVENTSERVER_OUTBOX_STREAM or
// EVENTSERVER_OUTBOX_WEBHOOK_URL is set, and returns it as the hub's fact
// sink (nil when off). The stream gets a Redis client of its own, on
// EVENTSERVER_OUTBOX_REDIS_URL or else EVENTSERVER_REDIS_URL.
func (a *App) newOutbox() (hub.FactSink, error) {
	cfg := a.cfg
	if cfg.OutboxStream == "" && cfg.OutboxWebhookURL == "" {
		return nil, nil
	}
	ocfg := outbox.Config{
		Stream:          cfg.OutboxStream,
		MaxLen:          cfg.OutboxMaxLen,
		QueueSize:       cfg.OutboxQueueSize,
		WebhookURL:      cfg.OutboxWebhookURL,
		WebhookToken:    cfg.OutboxWebhookToken,
		WebhookAttempts: cfg.OutboxWebhookAttempts,
		WebhookTimeout:  cfg.OutboxWebhookTimeout,
		Instance:        cfg.InstanceID,
		Logger:          a.log.Named("outbox"),
		Registerer:      a.metrics.Registry,
	}
	fields := []zap.Field{zap.Int("queue_size", cfg.OutboxQueueSize)}
	if cfg.OutboxStream != "" {
		url, name := cfg.OutboxRedisURL, "EVENTSERVER_OUTBOX_REDIS_URL"
		if url == "" {
			url, name = cfg.RedisURL, "EVENTSERVER_REDIS_URL"
		}
		if url == "" {
			return nil, errors.New("app: EVENTSERVER_OUTBOX_STREAM needs EVENTSERVER_OUTBOX_REDIS_URL or EVENTSERVER_REDIS_URL")
		}
		client, _, err := redisconn.NewClient(url)
		if err != nil {
			return nil, fmt.Errorf("app: %s: %w", name, err)
		}
		a.outboxRedis, ocfg.Client = client, client
		fields = append(fields, zap.String("stream", cfg.OutboxStream), zap.Int64("maxlen", cfg.OutboxMaxLen),
			zap.String("redis", redisconn.Redact(url)))
	}
	if cfg.OutboxWebhookURL != "" {
		fields = append(fields, zap.String("webhook", outbox.RedactURL(cfg.OutboxWebhookURL)),
			zap.Bool("webhook_token", cfg.OutboxWebhookToken != ""), zap.Int("webhook_attempts", cfg.OutboxWebhookAttempts))
	}
	o, err := outbox.New(ocfg)
	if err != nil {
		if a.outboxRedis != nil {
			_ = a.outboxRedis.Close()
		}
		return nil, fmt.Errorf("app: %w", err)
	}
	o.Start()
	a.outbox = o
	a.log.Info("backend outbox", fields...)
	return o, nil
}

// closeOutbox writes what the outbox still holds, bounded by ctx, stops it
// and closes its Redis client.
func (a *App) closeOutbox(ctx context.Context) {
	if a.outbox == nil {
		return
	}
	if err := a.outbox.Shutdown(ctx); err != nil {
		a.log.Warn("outbox shutdown", zap.Error(err))
	}
	if a.outboxRedis != nil {
		_ = a.outboxRedis.Close()
	}
}

// closeCluster stops the Redis adapter and closes the client, in cluster
// mode. It waits for the adapter's goroutines whatever the shutdown
// deadline: the client is closed after them.
func (a *App) closeCluster() {
	if a.adapter == nil {
		return
	}
	if err := a.adapter.Shutdown(context.Background()); err != nil {
		a.log.Warn("closing the Redis adapter", zap.Error(err))
	}
	_ = a.redis.Close()
}

// notReady tells why a subscription the instance depends on is not live
// (the cluster's Redis subscriptions, the Flask-SocketIO queue), or "" when
// every one is.
func (a *App) notReady() string {
	if a.adapter != nil && !a.adapter.Ready() {
		return "Redis subscriptions not confirmed"
	}
	if a.bridge != nil && !a.bridge.Ready() {
		return "Flask-SocketIO queue not subscribed"
	}
	return ""
}

// Addr is the address the instance listens on.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// Hub is the instance's /tasks hub.
func (a *App) Hub() *hub.Hub { return a.hub }

// Run serves until Shutdown is called or the listener fails. It returns nil
// after a clean shutdown.
func (a *App) Run() error {
	go func() {
		err := a.http.Serve(a.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.served <- err
	}()
	a.ready.Store(true)
	a.log.Info("eventserver listening", zap.String("addr", a.ln.Addr().String()),
		zap.Bool("publish_api", a.cfg.PublishToken != ""), zap.Bool("console", a.console != nil), zap.Strings("cors_origins", a.cfg.CORSOrigins))
	err := <-a.served
	if err != nil {
		a.ready.Store(false)
		return fmt.Errorf("app: serve: %w", err)
	}
	return nil
}

// Shutdown drains the instance in three steps: readiness false and wait the
// shutdown delay, so that the load balancer stops sending; disconnect the
// clients spread over the drain timeout; close. It is idempotent.
func (a *App) Shutdown(ctx context.Context) error {
	a.shutOnce.Do(func() {
		a.ready.Store(false)
		a.log.Info("shutting down: not ready", zap.Duration("delay", a.cfg.ShutdownDelay),
			zap.Duration("drain", a.cfg.DrainTimeout), zap.Int("sockets", a.hub.Connections()))
		t := time.NewTimer(a.cfg.ShutdownDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		a.hub.Drain(ctx, a.cfg.DrainTimeout)
		a.closeBridge(ctx)
		// Closes what Drain left (and connections still authenticating),
		// the websockets taken out of net/http, and the adapters.
		if err := a.io.Shutdown(ctx); err != nil {
			a.log.Warn("socket.io shutdown", zap.Error(err))
		}
		// The console's live streams are long requests that
		// http.Server.Shutdown would wait for: end them first.
		a.closeConsole(ctx)
		a.shutErr = a.http.Shutdown(ctx)
		if a.shutErr != nil {
			_ = a.http.Close()
		}
		// Waits for the hub's presence calls of the sockets just closed.
		if err := a.hub.Shutdown(ctx); err != nil {
			a.log.Warn("hub shutdown", zap.Error(err))
		}
		// Hands this instance's node connections over at once.
		if err := a.hub.Presence().Shutdown(ctx); err != nil {
			a.log.Warn("presence shutdown", zap.Error(err))
		}
		// Writes the facts still queued, last: the drained clients' last
		// events and the transitions decided while draining are in.
		a.closeOutbox(ctx)
		a.closeCluster()
		a.closeV6(ctx)
		_ = a.verifier.Shutdown(ctx)
		a.log.Info("shut down")
	})
	return a.shutErr
}
