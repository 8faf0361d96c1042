package httpapi

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// OriginPolicy decides which requests to the Socket.IO endpoint a browser
// may make, from EVENTSERVER_CORS_ORIGINS. It is the one place that decides:
// the CORS wrapper calls it on every request of every transport (polling,
// its preflights, and the WebSocket upgrade), and so does any other Engine.IO
// front end (the lean core's request hook).
//
// A request is allowed when it carries no Origin (non-browser clients: the
// Node and Go clients), when its Origin is same-origin (the Origin's host:port
// is the request's Host, or X-Forwarded-Host, as a browser means it; this
// also covers python-socketio's websocket-client, which sends
// "Origin: http://<server host:port>"), or when the Origin is listed ("*"
// lists any). Any other Origin is refused on every transport.
type OriginPolicy struct {
	anyOrigin bool
	origins   []string
	log       *zap.Logger
	m         *Metrics

	mu     sync.Mutex
	window time.Time           // start of the current log window
	logged map[string]struct{} // origins logged in this window
	quiet  int                 // refusals not logged in this window
	now    func() time.Time
}

const (
	// refusalLogWindow: each refused origin is logged at most once a window.
	refusalLogWindow = time.Minute
	// refusalLogOrigins bounds the origins logged in one window (and the map).
	refusalLogOrigins = 20
)

// NewOriginPolicy builds the policy of the configured origins (as
// config.CORSOrigins has them: trimmed, without a trailing slash). log and m
// may be nil (no log line, no counter).
func NewOriginPolicy(origins []string, log *zap.Logger, m *Metrics) *OriginPolicy {
	if log == nil {
		log = zap.NewNop()
	}
	return &OriginPolicy{
		anyOrigin: slices.Contains(origins, "*"),
		origins:   slices.Clone(origins),
		log:       log.Named("cors"),
		m:         m,
		logged:    map[string]struct{}{},
		now:       time.Now,
	}
}

// Listed reports whether origin is one that EVENTSERVER_CORS_ORIGINS allows
// cross-origin (so responses to it carry CORS headers).
func (p *OriginPolicy) Listed(origin string) bool {
	return origin != "" && (p.anyOrigin || slices.Contains(p.origins, strings.TrimSuffix(origin, "/")))
}

// Allowed reports whether r may be served: it has no Origin, a same-origin
// one, or a listed one.
func (p *OriginPolicy) Allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || p.Listed(origin) || SameOrigin(r)
}

// SameOrigin reports whether r's Origin names the host the request was sent
// to: its host:port equals the Host header (or X-Forwarded-Host, set by a
// proxy that rewrites Host), default ports (80, 443) left out on both sides.
// A browser cannot set X-Forwarded-Host itself: it is not allowed on a
// WebSocket, and on polling it needs a preflight, which a foreign origin
// does not pass.
func SameOrigin(r *http.Request) bool {
	u, err := url.Parse(r.Header.Get("Origin"))
	if err != nil || u.Host == "" {
		return false
	}
	want := stripDefaultPort(u.Host)
	for _, h := range []string{r.Host, firstValue(r.Header.Get("X-Forwarded-Host"))} {
		if h != "" && strings.EqualFold(stripDefaultPort(h), want) {
			return true
		}
	}
	return false
}

func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

func stripDefaultPort(hostport string) string {
	if h, port, err := net.SplitHostPort(hostport); err == nil && (port == "80" || port == "443") {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return hostport
}

// Refuse answers a request that Allowed refused: 403 with a short text body,
// the eventserver_origin_refused_total counter, and a warn line at most once
// a minute per origin (with the number of refusals not logged since).
func (p *OriginPolicy) Refuse(w http.ResponseWriter, r *http.Request) {
	kind := transportOf(r)
	if p.m != nil {
		p.m.OriginRefused.WithLabelValues(kind).Inc()
	}
	origin := r.Header.Get("Origin")
	if len(origin) > 200 {
		origin = origin[:200] + "..."
	}
	if logIt, quiet := p.shouldLog(origin); logIt {
		p.log.Warn("request from an origin that EVENTSERVER_CORS_ORIGINS does not allow refused (403)",
			zap.String("origin", origin), zap.String("transport", kind),
			zap.String("host", r.Host), zap.String("remote", r.RemoteAddr),
			zap.Int("not_logged_since", quiet))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte("origin not allowed (EVENTSERVER_CORS_ORIGINS)\n"))
}

// shouldLog rate-limits Refuse's log line; quiet is the number of refusals
// left unlogged before this one.
func (p *OriginPolicy) shouldLog(origin string) (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Sub(p.window) >= refusalLogWindow {
		p.window = now
		clear(p.logged)
	}
	if _, done := p.logged[origin]; done || len(p.logged) >= refusalLogOrigins {
		p.quiet++
		return false, 0
	}
	p.logged[origin] = struct{}{}
	quiet := p.quiet
	p.quiet = 0
	return true, quiet
}

// transportOf names the kind of request, for the counter and the log:
// preflight, websocket (an upgrade) or polling.
func transportOf(r *http.Request) string {
	switch {
	case isPreflight(r):
		return "preflight"
	case isUpgrade(r):
		return "websocket"
	default:
		return "polling"
	}
}

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "websocket") {
				return true
			}
		}
	}
	return false
}

// CORS wraps the Socket.IO handler with the origin policy, on every
// transport. A browser UI on another origin sends Authorization as an extra
// header on polling requests and uses withCredentials, so the preflight of a
// listed origin echoes the requested headers and every response to a listed
// origin echoes it (never a literal "*") and allows credentials. A request
// whose Origin the policy refuses gets 403, whether polling, preflight or
// WebSocket upgrade. The request goes on unchanged: the Engine.IO server
// (pkg/engineio) makes no origin check of its own.
func CORS(p *OriginPolicy, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if !p.Allowed(r) {
			p.Refuse(w, r)
			return
		}
		if !p.Listed(origin) {
			// No Origin, or same-origin: no CORS headers needed.
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if isPreflight(r) {
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
