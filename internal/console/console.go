// Package console is the operator console: a small web page at /console/
// that shows, live and for the whole cluster, the nodes (online, offline,
// stale, on which replica), a timeline of their transitions, the replicas
// and the traffic. It is off unless a console token is configured; signing
// in with it sets a stateless, signed session cookie, so that every replica
// behind a sticky load balancer accepts it.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/connlimit"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/socketio"
)

//go:embed static
var staticFS embed.FS

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// EventReplica is the server-side event by which a console asks every
// replica of the cluster for its state and traffic.
const EventReplica = "eventserver:console"

// Cluster is what the console asks of the Socket.IO namespace: a
// server-side request to every replica (ServerSideEmitWithAck answers
// socketio.ErrNoCluster on a single instance).
type Cluster interface {
	OnServerSideEmit(event string, fn func(args []any, ack socketio.Ack))
	ServerSideEmitWithAck(ctx context.Context, event string, args ...any) ([]any, error)
}

// Config configures the console.
type Config struct {
	// Token is the sign-in token: at least 16 characters. Required.
	Token string
	// Presence lists the online nodes of the cluster. Required.
	Presence presence.Store
	// Transitions holds the transitions of the last hour. Required.
	Transitions TransitionLog
	// Cluster asks the other replicas. Required.
	Cluster Cluster
	// Gatherer is this replica's registry, read for its traffic counters
	// and connection gauges. Required.
	Gatherer prometheus.Gatherer
	// Registerer receives the console's own metrics; nil: a registry of
	// their own.
	Registerer prometheus.Registerer
	// Instance names this replica; Version is its version (empty, or
	// "dev": from the binary's build information when it has a VCS
	// revision).
	Instance string
	Version  string
	// Ready tells this replica's readiness; RedisState its Redis
	// ("ok", "down" or "none"). Nil: always ready, "none".
	Ready      func() bool
	RedisState func() string
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client, whose failed sign-ins are counted per address.
	TrustedProxies []netip.Prefix
	// Logger is required.
	Logger *zap.Logger
	// SessionTTL is how long a sign-in lasts. Zero: 12h.
	SessionTTL time.Duration
	// MaxStreams bounds the live streams of this replica (503 beyond).
	// Zero: 20.
	MaxStreams int
	// StreamInterval is the period of the stream's snapshots. Zero: 2s.
	StreamInterval time.Duration
	// TrafficInterval is the period of the traffic samples, whole
	// seconds; TrafficSlots how many are kept. Zero: 5s and 120 (10 minutes).
	TrafficInterval time.Duration
	TrafficSlots    int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Console serves /console/.
type Console struct {
	cfg   Config
	log   *zap.Logger
	m     *metrics
	sess  *sessions
	fails *failures
	ring  *ring

	streams atomic.Int64

	// ctx bounds the snapshots' reads; Shutdown cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	started bool
	stopped bool
	done    chan struct{}
	wg      sync.WaitGroup

	// snapMu guards the cached snapshot and seen (the replicas that
	// answered within the hour, to show those that stop answering).
	snapMu   sync.Mutex
	snapAt   time.Time
	snapJSON []byte
	seen     map[string]time.Time
}

// New checks cfg and returns the console; Start starts its sampling.
func New(cfg Config) (*Console, error) {
	switch {
	case len(cfg.Token) < 16:
		return nil, errors.New("console: the token must be at least 16 characters")
	case cfg.Presence == nil || cfg.Transitions == nil || cfg.Cluster == nil || cfg.Gatherer == nil:
		return nil, errors.New("console: Presence, Transitions, Cluster and Gatherer are required")
	case cfg.Logger == nil:
		return nil, errors.New("console: Logger is required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 20
	}
	if cfg.StreamInterval <= 0 {
		cfg.StreamInterval = 2 * time.Second
	}
	if cfg.TrafficInterval < time.Second {
		cfg.TrafficInterval = 5 * time.Second
	}
	cfg.TrafficInterval = cfg.TrafficInterval.Truncate(time.Second)
	if cfg.TrafficSlots <= 0 {
		cfg.TrafficSlots = 120
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.RedisState == nil {
		cfg.RedisState = func() string { return "none" }
	}
	if cfg.Version == "" || cfg.Version == "dev" {
		cfg.Version = buildVersion()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("console: metrics: %w", err)
	}
	c := &Console{
		cfg:   cfg,
		log:   cfg.Logger.Named("console"),
		m:     m,
		sess:  newSessions(cfg.Token, cfg.SessionTTL, cfg.Now),
		fails: newFailures(cfg.Now),
		ring:  newRing(cfg.TrafficInterval, cfg.TrafficSlots),
		done:  make(chan struct{}),
		seen:  map[string]time.Time{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// buildVersion is the module version or VCS revision the binary was built
// from, or "dev".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// enter registers work that Shutdown waits for; false once shut down.
func (c *Console) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return false
	}
	c.wg.Add(1)
	return true
}

// Start answers the other replicas' requests and samples this replica's
// traffic until Shutdown. It is idempotent.
func (c *Console) Start() {
	c.mu.Lock()
	if c.started || c.stopped {
		c.mu.Unlock()
		return
	}
	c.started = true
	c.mu.Unlock()
	c.cfg.Cluster.OnServerSideEmit(EventReplica, func(_ []any, ack socketio.Ack) {
		if ack != nil {
			ack(c.selfAnswer())
		}
	})
	if c.enter() {
		go c.sampleLoop()
	}
}

// Shutdown ends the live streams and the sampling, and waits for them up
// to ctx. Call it before the HTTP server's Shutdown, which does not end
// streaming requests by itself. It is idempotent.
func (c *Console) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if !c.stopped {
		c.stopped = true
		close(c.done)
		c.cancel()
	}
	c.mu.Unlock()
	waited := make(chan struct{})
	go func() { c.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Console) sampleLoop() {
	defer c.wg.Done()
	c.sampleOnce()
	t := time.NewTimer(c.untilNextSlot())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.sampleOnce()
			t.Reset(c.untilNextSlot())
		case <-c.done:
			return
		}
	}
}

// untilNextSlot is the wait until just past the next boundary of a
// traffic interval on the wall clock, so that the replicas' slots line up.
func (c *Console) untilNextSlot() time.Duration {
	now := c.cfg.Now()
	return now.Truncate(c.cfg.TrafficInterval).Add(c.cfg.TrafficInterval).Sub(now) + 50*time.Millisecond
}

func (c *Console) sampleOnce() {
	t, err := read(c.cfg.Gatherer)
	if err != nil {
		c.log.Warn("reading this instance's counters", zap.Error(err))
		return
	}
	c.ring.add(t, c.cfg.Now())
}

// Register adds the console's routes to mux, under /console/.
func (c *Console) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.StripPrefix("/console/static/", http.FileServerFS(static))
	// Files only: no directory listing.
	files := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		fileServer.ServeHTTP(w, r)
	})
	mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	mux.Handle("GET /console/{$}", c.headers(http.HandlerFunc(c.page)))
	mux.Handle("POST /console/signin", c.headers(http.HandlerFunc(c.signin)))
	mux.Handle("POST /console/signout", c.headers(http.HandlerFunc(c.signout)))
	mux.Handle("GET /console/api/snapshot", c.headers(http.HandlerFunc(c.snapshot)))
	mux.Handle("GET /console/api/stream", c.headers(http.HandlerFunc(c.stream)))
	mux.Handle("GET /console/static/", c.headers(files))
	mux.Handle("/console/", c.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such page: "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	})))
}

// headers sets the console's security headers on every answer.
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// signinPage is what the sign-in template shows.
type signinPage struct {
	Message string
}

// consolePage is what the console template shows.
type consolePage struct {
	CSRF     string
	Instance string
}

func (c *Console) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		c.log.Warn("rendering "+name, zap.Error(err))
	}
}

// page is the console when signed in, the sign-in page otherwise.
func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	nonce, err := c.sess.fromRequest(r)
	if err != nil {
		c.render(w, http.StatusOK, "signin.html", signinPage{})
		return
	}
	c.render(w, http.StatusOK, "console.html", consolePage{CSRF: c.sess.csrf(nonce), Instance: c.cfg.Instance})
}

func (c *Console) clientAddr(r *http.Request) string {
	if a := connlimit.ClientIP(r, c.cfg.TrustedProxies); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}

// signin checks the posted token: same origin, not slowed down, then
// compared in constant time. Only the console token is accepted: neither
// the publish token nor a client JWT is a console token.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.m.signins.WithLabelValues(outcomeBadRequest).Inc()
		c.render(w, http.StatusForbidden, "signin.html", signinPage{Message: "Refused: the sign-in must come from this console's own page (Origin or Referer of another site)."})
		return
	}
	addr := c.clientAddr(r)
	if d := c.fails.blocked(addr); d > 0 {
		c.m.signins.WithLabelValues(outcomeSlowed).Inc()
		secs := int(d.Round(time.Second) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		c.render(w, http.StatusTooManyRequests, "signin.html", signinPage{Message: fmt.Sprintf("Too many wrong tokens from your address: try again in %d seconds.", secs)})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		c.m.signins.WithLabelValues(outcomeBadRequest).Inc()
		c.render(w, http.StatusBadRequest, "signin.html", signinPage{Message: "Enter the console token."})
		return
	}
	if !tokenOK(r.PostForm.Get("token"), c.cfg.Token) {
		c.fails.fail(addr)
		c.m.signins.WithLabelValues(outcomeWrongToken).Inc()
		c.log.Info("console sign-in refused: wrong console token", zap.String("client", addr))
		c.render(w, http.StatusUnauthorized, "signin.html", signinPage{Message: "Wrong console token."})
		return
	}
	c.fails.ok(addr)
	c.m.signins.WithLabelValues(outcomeOK).Inc()
	c.log.Info("console sign-in", zap.String("client", addr))
	v, exp := c.sess.issue()
	http.SetCookie(w, cookie(r, v, exp))
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

// signout clears the cookie: same origin, and, with a valid session, the
// session's CSRF token from the form.
func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "refused: not from this console's own page", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	_ = r.ParseForm()
	if nonce, err := c.sess.fromRequest(r); err == nil && !c.sess.csrfOK(nonce, r.PostForm.Get("csrf")) {
		http.Error(w, "refused: the form's CSRF token does not match the session (reload the console)", http.StatusForbidden)
		return
	}
	http.SetCookie(w, cookie(r, "", time.Time{}))
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

// apiError writes a JSON error.
func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg})
	_, _ = w.Write(append(b, '\n'))
}

// authorized checks the session cookie; nothing else (no bearer token) is
// accepted.
func (c *Console) authorized(w http.ResponseWriter, r *http.Request) bool {
	if _, err := c.sess.fromRequest(r); err != nil {
		apiError(w, http.StatusUnauthorized, "sign in to the console first (POST /console/signin)")
		return false
	}
	return true
}

// snapshot answers GET /console/api/snapshot: one snapshot, as JSON.
func (c *Console) snapshot(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(w, r) {
		return
	}
	b := c.snapshotJSON()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// stream answers GET /console/api/stream: a snapshot every StreamInterval
// as server-sent events, until the client goes, the session expires or
// the console shuts down.
func (c *Console) stream(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(w, r) {
		return
	}
	cookieVal, _ := r.Cookie(cookieName)
	if n := c.streams.Add(1); n > int64(c.cfg.MaxStreams) {
		c.streams.Add(-1)
		apiError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many console streams on this instance (%d)", c.cfg.MaxStreams))
		return
	}
	defer c.streams.Add(-1)
	if !c.enter() {
		apiError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	defer c.wg.Done()
	c.m.streams.Inc()
	defer c.m.streams.Dec()

	rc := http.NewResponseController(w)
	// The server's read timeout must not end a stream that reads nothing.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The browser reconnects 3 s after the stream ends (on any replica:
	// the cookie is valid on each).
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return
	}
	t := time.NewTicker(c.cfg.StreamInterval)
	defer t.Stop()
	for {
		if _, err := c.sess.check(cookieVal.Value); err != nil {
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, _ = fmt.Fprint(w, "event: signedout\ndata: {}\n\n")
			_ = rc.Flush()
			return
		}
		b := c.snapshotJSON()
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		}
	}
}
