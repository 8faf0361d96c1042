package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestOriginPolicyAllowed(t *testing.T) {
	ui := []string{"https://portal.example.org", "http://127.0.0.1:4200"}
	tests := []struct {
		name    string
		origins []string
		host    string
		origin  string // "" : no Origin header
		xfh     string // X-Forwarded-Host
		want    bool
		listed  bool
	}{
		{name: "no Origin, empty list", host: "es.example:7600", want: true},
		{name: "no Origin, list", origins: ui, host: "es.example:7600", want: true},
		{name: "listed", origins: ui, host: "es.example:7600", origin: "https://portal.example.org", want: true, listed: true},
		{name: "listed with trailing slash", origins: ui, host: "es.example:7600", origin: "https://portal.example.org/", want: true, listed: true},
		{name: "listed with port", origins: ui, host: "127.0.0.1:7600", origin: "http://127.0.0.1:4200", want: true, listed: true},
		{name: "not listed", origins: ui, host: "es.example:7600", origin: "https://evil.example"},
		{name: "not listed: other port", origins: ui, host: "127.0.0.1:7600", origin: "http://127.0.0.1:4201"},
		{name: "not listed: other scheme", origins: ui, host: "es.example:7600", origin: "http://portal.example.org"},
		{name: "empty list: foreign", host: "es.example:7600", origin: "https://portal.example.org"},
		{name: "star: any", origins: []string{"*"}, host: "es.example:7600", origin: "https://anything.example:9", want: true, listed: true},
		{name: "star: null origin", origins: []string{"*"}, host: "es.example:7600", origin: "null", want: true, listed: true},
		{name: "null origin refused", origins: ui, host: "es.example:7600", origin: "null"},
		// Same-origin: what a browser on the server's own page sends, and what
		// python-socketio's websocket-client sends on its upgrade.
		{name: "same-origin, empty list", host: "127.0.0.1:7600", origin: "http://127.0.0.1:7600", want: true},
		{name: "same-origin ws scheme", host: "127.0.0.1:7600", origin: "ws://127.0.0.1:7600", want: true},
		{name: "same-origin case-insensitive", host: "ES.example:7600", origin: "http://es.example:7600", want: true},
		{name: "same-origin default port https", host: "es.example", origin: "https://es.example", want: true},
		{name: "same-origin default port in Host", host: "es.example:443", origin: "https://es.example", want: true},
		{name: "same-origin default port in Origin", host: "es.example", origin: "http://es.example:80", want: true},
		{name: "same-origin IPv6", host: "[::1]:7600", origin: "http://[::1]:7600", want: true},
		{name: "same host other port", host: "127.0.0.1:7600", origin: "http://127.0.0.1:7601"},
		{name: "same host, origin without port vs Host with port", host: "es.example:7600", origin: "https://es.example"},
		{name: "X-Forwarded-Host of a proxy that rewrites Host", host: "eventserver:7600", xfh: "v6.example.org", origin: "https://v6.example.org", want: true},
		{name: "X-Forwarded-Host list: first one", host: "eventserver:7600", xfh: "v6.example.org, inner", origin: "https://v6.example.org", want: true},
		{name: "X-Forwarded-Host other", host: "eventserver:7600", xfh: "other.example", origin: "https://v6.example.org"},
		{name: "garbage Origin", host: "es.example", origin: "::not a url"},
		{name: "Origin without host", host: "es.example", origin: "file:///etc/passwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewOriginPolicy(tt.origins, nil, nil)
			r := httptest.NewRequest(http.MethodGet, "/socket.io/?EIO=4&transport=websocket", nil)
			r.Host = tt.host
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.xfh != "" {
				r.Header.Set("X-Forwarded-Host", tt.xfh)
			}
			if got := p.Allowed(r); got != tt.want {
				t.Errorf("Allowed = %v, want %v", got, tt.want)
			}
			if got := p.Listed(tt.origin); got != tt.listed {
				t.Errorf("Listed = %v, want %v", got, tt.listed)
			}
		})
	}
}

// upgradeReq is the request of a WebSocket upgrade, as a browser sends it.
func upgradeReq(host, origin string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/socket.io/?EIO=4&transport=websocket", nil)
	r.Host = host
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

// TestCORSUpgrade: the wrapper decides the upgrade; what it lets through
// reaches the Engine.IO server unchanged (pkg/engineio makes no origin
// check of its own).
func TestCORSUpgrade(t *testing.T) {
	tests := []struct {
		name     string
		origins  []string
		origin   string
		wantCode int
		wantACAO string
	}{
		{"listed", []string{"http://127.0.0.1:4200"}, "http://127.0.0.1:4200", http.StatusSwitchingProtocols, "http://127.0.0.1:4200"},
		{"star", []string{"*"}, "https://any.example", http.StatusSwitchingProtocols, "https://any.example"},
		{"same-origin with empty list", nil, "http://127.0.0.1:7600", http.StatusSwitchingProtocols, ""},
		{"no Origin with empty list", nil, "", http.StatusSwitchingProtocols, ""},
		{"not listed", []string{"http://127.0.0.1:4200"}, "http://127.0.0.1:4201", http.StatusForbidden, ""},
		{"foreign with empty list", nil, "https://portal.example.org", http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen *http.Request
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = r
				w.WriteHeader(http.StatusSwitchingProtocols)
			})
			m := testMetrics()
			rec := httptest.NewRecorder()
			req := upgradeReq("127.0.0.1:7600", tt.origin)
			CORS(NewOriginPolicy(tt.origins, nil, m), next).ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantCode)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tt.wantACAO {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.wantACAO)
			}
			refused := testutil.ToFloat64(m.OriginRefused.WithLabelValues("websocket"))
			if tt.wantCode == http.StatusForbidden {
				if seen != nil {
					t.Error("refused upgrade reached the Engine.IO server")
				}
				if !strings.Contains(rec.Body.String(), "EVENTSERVER_CORS_ORIGINS") {
					t.Errorf("body %q does not name EVENTSERVER_CORS_ORIGINS", rec.Body.String())
				}
				if refused != 1 {
					t.Errorf("eventserver_origin_refused_total{transport=websocket} = %v, want 1", refused)
				}
				return
			}
			if refused != 0 {
				t.Errorf("eventserver_origin_refused_total{transport=websocket} = %v, want 0", refused)
			}
			if seen == nil {
				t.Fatal("allowed upgrade did not reach the Engine.IO server")
			}
			if o := seen.Header.Get("Origin"); o != tt.origin {
				t.Errorf("Engine.IO server saw Origin %q, want %q", o, tt.origin)
			}
			if req.Header.Get("Origin") != tt.origin {
				t.Error("the caller's request was modified")
			}
		})
	}
}

// TestOriginRefusalLog: every refusal is counted, by transport; the warn
// line comes at most once a minute per origin, never with the token.
func TestOriginRefusalLog(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	m := testMetrics()
	p := NewOriginPolicy([]string{"https://ui.example"}, zap.New(core), m)
	now := time.Unix(1_000_000, 0)
	p.now = func() time.Time { return now }
	h := CORS(p, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	do := func(r *http.Request) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	poll := func(origin string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/socket.io/?EIO=4&transport=polling", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Authorization", "Bearer secret-token-value")
		return r
	}
	pre := func(origin string) *http.Request {
		r := httptest.NewRequest(http.MethodOptions, "/socket.io/?EIO=4&transport=polling", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "GET")
		return r
	}
	for range 5 {
		if c := do(poll("https://evil.example")); c != http.StatusForbidden {
			t.Fatalf("polling from evil: %d", c)
		}
	}
	if c := do(upgradeReq("example.com", "https://evil.example")); c != http.StatusForbidden {
		t.Fatalf("upgrade from evil: %d", c)
	}
	if c := do(pre("https://other.example")); c != http.StatusForbidden {
		t.Fatalf("preflight from other: %d", c)
	}
	if c := do(poll("https://ui.example")); c != http.StatusTeapot {
		t.Fatalf("polling from ui: %d", c)
	}
	for tr, want := range map[string]float64{"polling": 5, "websocket": 1, "preflight": 1} {
		if got := testutil.ToFloat64(m.OriginRefused.WithLabelValues(tr)); got != want {
			t.Errorf("refused{transport=%s} = %v, want %v", tr, got, want)
		}
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 2 {
		t.Fatalf("%d warn lines, want 2 (one per origin): %v", len(warns), warns)
	}
	if o := warns[0].ContextMap()["origin"]; o != "https://evil.example" {
		t.Errorf("first line's origin %v", o)
	}
	if o := warns[1].ContextMap()["origin"]; o != "https://other.example" {
		t.Errorf("second line's origin %v", o)
	}
	// The 4 other polls and the upgrade from evil were not logged.
	if q := warns[1].ContextMap()["not_logged_since"]; q != int64(5) {
		t.Errorf("not_logged_since = %v, want 5", q)
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "secret-token-value") {
				t.Errorf("log field %s carries the token", k)
			}
		}
	}
	// A minute later the origin is logged again.
	now = now.Add(time.Minute)
	do(poll("https://evil.example"))
	do(poll("https://evil.example"))
	warns = logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 3 {
		t.Fatalf("%d warn lines after a minute, want 3", len(warns))
	}
	if o := warns[2].ContextMap()["origin"]; o != "https://evil.example" {
		t.Errorf("third line's origin %v", o)
	}
	// Many origins in one window: the lines stop at refusalLogOrigins.
	for i := range 3 * refusalLogOrigins {
		do(poll("https://o" + strings.Repeat("x", i) + ".example"))
	}
	warns = logs.FilterLevelExact(zapcore.WarnLevel).All()
	if n := len(warns); n != 3+refusalLogOrigins-1 {
		t.Fatalf("%d warn lines, want %d", n, 3+refusalLogOrigins-1)
	}
	// The next window's first line says how many were not logged.
	now = now.Add(time.Minute)
	do(poll("https://evil.example"))
	warns = logs.FilterLevelExact(zapcore.WarnLevel).All()
	want := int64(3*refusalLogOrigins - (refusalLogOrigins - 1))
	if q := warns[len(warns)-1].ContextMap()["not_logged_since"]; q != want {
		t.Errorf("not_logged_since = %v, want %d", q, want)
	}
}
