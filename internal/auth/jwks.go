package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/eventserver/eventserver/internal/validate"
	"github.com/eventserver/eventserver/pkg/textclip"
)

// Defaults of a JWKSConfig.
const (
	DefaultJWKSRefresh    = time.Hour
	DefaultJWKSRefreshMin = 10 * time.Second
	DefaultJWKSTimeout    = 10 * time.Second
	// maxJWKSBytes bounds a JWKS answer (Keycloak's holds a few keys).
	maxJWKSBytes = 1 << 20
)

// JWKSConfig fetches the token keys that an OpenID provider such as
// Keycloak publishes (vantage6 5.x: <keycloak>/realms/<realm>/protocol/
// openid-connect/certs) and rotates. The keys are fetched at start (a
// provider that is down then is no reason not to start: tokens are refused,
// with a clear error, until the keys arrive), every Refresh, and when a
// token names a kid that is not held, at most once every RefreshMin, so
// that a flood of tokens with made-up kids cannot hammer the provider. Keys
// are kept while the provider is unreachable.
type JWKSConfig struct {
	// URL of the JWK Set: https, or http on a loopback host.
	URL string
	// Refresh is the period of the refresh; zero: DefaultJWKSRefresh.
	Refresh time.Duration
	// RefreshMin is the least time between two refreshes for an unknown
	// kid; zero: DefaultJWKSRefreshMin.
	RefreshMin time.Duration
	// Timeout bounds one fetch; zero: DefaultJWKSTimeout.
	Timeout time.Duration
	// Client sends the requests; nil: a client of its own.
	Client *http.Client
	// Logger: one line per fetch (info when it worked, warn when not).
	Logger *zap.Logger
	// Registerer receives eventserver_jwks_refresh_total{outcome} and
	// eventserver_jwks_keys; nil: none.
	Registerer prometheus.Registerer
}

// jwks holds the keys of a JWKSConfig and, once started, the goroutine
// that refreshes them.
type jwks struct {
	url      string
	override keyfunc.Override
	keys     atomic.Int64
	kf       atomic.Pointer[keyfunc.Keyfunc]

	mu      sync.Mutex
	cancel  context.CancelFunc
	stopped bool
}

func newJWKS(cfg JWKSConfig) (*jwks, error) {
	if err := validate.JWKSURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("auth: JWKS URL: %w", err)
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultJWKSRefresh
	}
	if cfg.RefreshMin <= 0 {
		cfg.RefreshMin = DefaultJWKSRefreshMin
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultJWKSTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	j := &jwks{}
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eventserver_jwks_refresh_total",
		Help: "Fetches of the token keys from EVENTSERVER_JWT_JWKS_URL, by outcome (ok, error). On error the keys held are kept.",
	}, []string{"outcome"})
	refreshes.WithLabelValues("ok")
	refreshes.WithLabelValues("error")
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(refreshes); err != nil {
			return nil, fmt.Errorf("auth: JWKS metrics: %w", err)
		}
		if err := cfg.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventserver_jwks_keys",
			Help: "Token keys in the last JWK Set fetched from EVENTSERVER_JWT_JWKS_URL.",
		}, func() float64 { return float64(j.keys.Load()) })); err != nil {
			return nil, fmt.Errorf("auth: JWKS metrics: %w", err)
		}
	}
	base := http.DefaultTransport
	if cfg.Client != nil && cfg.Client.Transport != nil {
		base = cfg.Client.Transport
	}
	client := &http.Client{
		Transport: &jwksTransport{base: base, j: j, log: log, count: refreshes, url: redactURL(cfg.URL)},
		// Keys fetched over https never come from a redirect to http.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if strings.EqualFold(via[0].URL.Scheme, "https") && !strings.EqualFold(req.URL.Scheme, "https") {
				return errors.New("refused a redirect from https to " + req.URL.Scheme)
			}
			return nil
		},
	}
	noErr := true
	j.url = cfg.URL
	j.override = keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               cfg.Timeout,
		NoErrorReturnFirstHTTPReq: &noErr,
		RefreshInterval:           cfg.Refresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(cfg.RefreshMin), 1),
		// A token whose kid is unknown while the limiter holds is refused
		// at once rather than waiting for the next allowed fetch.
		RateLimitWaitMax: 50 * time.Millisecond,
		// Logged by the transport.
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) { return func(context.Context, error) {} },
	}
	return j, nil
}

// start fetches the keys once (a failure is logged and counted, not
// returned: the refresh goes on) and starts the refresh goroutine. Later
// calls, and calls after close, do nothing.
func (j *jwks) start() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cancel != nil || j.stopped {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{j.url}, j.override)
	if err != nil {
		cancel()
		return fmt.Errorf("auth: JWKS: %w", err)
	}
	j.kf.Store(&kf)
	j.cancel = cancel
	return nil
}

// key is the jwt.Keyfunc of tokens signed with a published key.
func (j *jwks) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New(`the token has no "kid" to find its key in the JWK Set`)
	}
	kf := j.kf.Load()
	if kf == nil || j.keys.Load() == 0 {
		return nil, errors.New("no keys fetched from the JWK Set yet (EVENTSERVER_JWT_JWKS_URL unreachable?)")
	}
	k, err := (*kf).Keyfunc(t)
	if err != nil {
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			return nil, fmt.Errorf("kid %q is not in the JWK Set", textclip.Cut(kid, textclip.Name))
		}
		return nil, fmt.Errorf("JWK Set: %v", err)
	}
	return k, nil
}

// close stops the refresh goroutine, if started.
func (j *jwks) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stopped = true
	if j.cancel != nil {
		j.cancel()
	}
}

// jwksTransport counts and logs each fetch of the JWK Set and bounds its size.
type jwksTransport struct {
	base  http.RoundTripper
	j     *jwks
	log   *zap.Logger
	count *prometheus.CounterVec
	url   string
}

func (t *jwksTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	fail := func(err error) (*http.Response, error) {
		t.count.WithLabelValues("error").Inc()
		t.log.Warn("JWK Set fetch failed: the keys held are kept", zap.String("url", t.url),
			zap.Int64("keys_held", t.j.keys.Load()), zap.Duration("took", time.Since(start)), zap.Error(err))
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("HTTP %d", resp.StatusCode))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fail(err)
	}
	if len(body) > maxJWKSBytes {
		return fail(fmt.Errorf("the JWK Set is over %d bytes", maxJWKSBytes))
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return fail(fmt.Errorf("not a JWK Set: %v", err))
	}
	var kids []string
	for _, k := range set.Keys {
		if k.Use == "" || k.Use == "sig" {
			kids = append(kids, textclip.Cut(k.Kid, textclip.Name))
		}
	}
	sort.Strings(kids)
	t.j.keys.Store(int64(len(kids)))
	t.count.WithLabelValues("ok").Inc()
	t.log.Info("JWK Set fetched", zap.String("url", t.url), zap.Int("keys", len(kids)), zap.Strings("kids", kids),
		zap.Duration("took", time.Since(start)))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// redactURL drops a query, which may hold a secret, from a logged URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}
