package console

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	redisadapter "github.com/eventserver/eventserver/pkg/adapter/redis"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testclock"
	"github.com/eventserver/eventserver/pkg/testsupport/testmetrics"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

const (
	testToken   = "console-token-0123456789"
	publishTok  = "publish-token-0123456789"
	otherOrigin = "https://evil.example"
)

// fakeCluster is the namespace's server-side requests, as function fields.
type fakeCluster struct {
	mu       sync.Mutex
	handlers map[string]func([]any, socketio.Ack)
	emit     func(ctx context.Context, event string) ([]any, error)
}

func (f *fakeCluster) OnServerSideEmit(event string, fn func([]any, socketio.Ack)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.handlers == nil {
		f.handlers = map[string]func([]any, socketio.Ack){}
	}
	f.handlers[event] = fn
}

func (f *fakeCluster) ServerSideEmitWithAck(ctx context.Context, event string, _ ...any) ([]any, error) {
	if f.emit == nil {
		return nil, socketio.ErrNoCluster
	}
	return f.emit(ctx, event)
}

type fixture struct {
	c     *Console
	reg   *prometheus.Registry
	pres  *presence.Memory
	log   *MemoryLog
	clu   *fakeCluster
	srv   *httptest.Server
	clock *testclock.Clock
}

// newFixture makes a console with an in-memory presence store and log,
// served by an httptest server; mutate adjusts the config.
func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	return newFixtureServer(t, mutate, nil)
}

// newFixtureServer is newFixture with the HTTP server's settings adjusted.
func newFixtureServer(t *testing.T, mutate func(*Config), server func(*http.Server)) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry(), clu: &fakeCluster{}, clock: testclock.New(time.Now())}
	f.log = NewMemoryLog(f.clock.Now)
	var err error
	f.pres, err = presence.NewMemoryWithConfig(presence.MemoryConfig{Handler: f.log.Record, Grace: presence.NoGrace, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Token: testToken, Presence: f.pres, Transitions: f.log, Cluster: f.clu, Gatherer: f.reg, Registerer: f.reg,
		Instance: "a", Version: "v-test", Logger: zap.NewNop(), Now: f.clock.Now, StreamInterval: 50 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	f.c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.c.Start()
	mux := http.NewServeMux()
	f.c.Register(mux)
	f.srv = httptest.NewUnstartedServer(mux)
	if server != nil {
		server(f.srv.Config)
	}
	f.srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.c.Shutdown(ctx); err != nil {
			t.Errorf("console shutdown: %v", err)
		}
		f.srv.Close()
		_ = f.pres.Shutdown(ctx)
	})
	return f
}

// client is a browser-like client: a cookie jar, no redirects followed.
func (f *fixture) client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// post sends a form with Origin (none when "").
func (f *fixture) post(t *testing.T, cl *http.Client, path, origin string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return send(t, cl, req)
}

func (f *fixture) get(t *testing.T, cl *http.Client, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return send(t, cl, req)
}

// send does req and returns the response with its whole body.
func send(t *testing.T, cl *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *fixture) signin(t *testing.T, cl *http.Client, token string) (*http.Response, string) {
	t.Helper()
	return f.post(t, cl, "/console/signin", f.srv.URL, url.Values{"token": {token}})
}

func (f *fixture) signins(t *testing.T, outcome string) float64 {
	t.Helper()
	return testmetrics.Value(t, f.reg, "eventserver_console_signins_total", "outcome", outcome)
}

func TestTokenOK(t *testing.T) {
	for _, tc := range []struct {
		presented string
		want      bool
	}{
		{testToken, true},
		{testToken + " ", false},
		{testToken[:len(testToken)-1], false},
		{"", false},
		{publishTok, false},
		{strings.ToUpper(testToken), false},
	} {
		if got := tokenOK(tc.presented, testToken); got != tc.want {
			t.Errorf("tokenOK(%q) = %v, want %v", tc.presented, got, tc.want)
		}
	}
}

func TestNewRefusesAShortToken(t *testing.T) {
	_, err := New(Config{Token: "short", Logger: zap.NewNop()})
	if err == nil || !strings.Contains(err.Error(), "16") {
		t.Fatalf("New with a short token: %v", err)
	}
}

func TestSessionCookie(t *testing.T) {
	ck := testclock.New(time.Unix(1_800_000_000, 0))
	s := newSessions(testToken, time.Hour, ck.Now)
	v, exp := s.issue()
	if !exp.Equal(ck.Now().Add(time.Hour)) {
		t.Errorf("expiry %v, want an hour from now", exp)
	}
	nonce, err := s.check(v)
	if err != nil || len(nonce) != 32 {
		t.Fatalf("check(issued) = %q, %v", nonce, err)
	}
	// Another replica with the same token accepts it.
	if _, err := newSessions(testToken, time.Hour, ck.Now).check(v); err != nil {
		t.Errorf("another replica refuses the session: %v", err)
	}
	// A new token signs everybody out.
	if _, err := newSessions(testToken+"-rotated", time.Hour, ck.Now).check(v); err == nil {
		t.Error("a session signed with the old token is accepted after a token change")
	}
	parts := strings.Split(v, ".")
	for name, bad := range map[string]string{
		"longer expiry":   strings.Join([]string{parts[0], strconv.FormatInt(exp.Unix()+3600, 10), parts[2], parts[3]}, "."),
		"other nonce":     strings.Join([]string{parts[0], parts[1], strings.Repeat("0", 32), parts[3]}, "."),
		"bad signature":   strings.Join([]string{parts[0], parts[1], parts[2], "AAAA" + parts[3][4:]}, "."),
		"no signature":    strings.Join(parts[:3], "."),
		"other version":   "v2." + strings.Join(parts[1:], "."),
		"empty":           "",
		"publish token":   publishTok,
		"the token":       testToken,
		"signature of v1": parts[3],
	} {
		if _, err := s.check(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ck.Add(time.Hour - time.Second)
	if _, err := s.check(v); err != nil {
		t.Errorf("a second before expiry: %v", err)
	}
	ck.Add(time.Second)
	if _, err := s.check(v); err == nil {
		t.Error("accepted at its expiry")
	}
	// The CSRF token is bound to the session.
	if !s.csrfOK(nonce, s.csrf(nonce)) || s.csrfOK(nonce, s.csrf(strings.Repeat("1", 32))) || s.csrfOK(nonce, "") {
		t.Error("csrf token not bound to its session")
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		name            string
		tls             bool
		origin, referer string
		fwdHost         string
		want            bool
	}{
		{"same origin", false, "http://console.example:7600", "", "", true},
		{"same origin, case", false, "HTTP://Console.Example:7600", "", "", true},
		{"referer only", false, "", "http://console.example:7600/console/", "", true},
		{"other host", false, "http://evil.example:7600", "", "", false},
		{"other port", false, "http://console.example:7601", "", "", false},
		{"https page behind a proxy that ends TLS", false, "https://console.example:7600", "", "", true},
		{"tls", true, "https://console.example:7600", "", "", true},
		{"other scheme", false, "ftp://console.example:7600", "", "", false},
		{"proxy rewrote Host, X-Forwarded-Host kept", false, "https://events.example", "", "events.example", true},
		{"X-Forwarded-Host of another site", false, "https://evil.example", "", "events.example", false},
		{"null origin", false, "null", "http://console.example:7600/console/", "", false},
		{"other referer", false, "", "http://evil.example/x", "", false},
		{"neither", false, "", "", "", false},
		{"garbage", false, "::", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://console.example:7600/console/signin", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if tc.referer != "" {
				r.Header.Set("Referer", tc.referer)
			}
			if tc.fwdHost != "" {
				r.Header.Set("X-Forwarded-Host", tc.fwdHost)
			}
			if got := sameOrigin(r); got != tc.want {
				t.Errorf("sameOrigin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSignInAndOut(t *testing.T) {
	f := newFixture(t, nil)
	cl := f.client(t)

	resp, body := f.get(t, cl, "/console/")
	if resp.StatusCode != 200 || !strings.Contains(body, `name="token"`) || !strings.Contains(body, `<label for="token">`) {
		t.Fatalf("sign-in page: %d\n%s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("%s: %q, want %q", h, resp.Header.Get(h), want)
		}
	}

	// A wrong token: 401, a clear message, counted, no cookie.
	resp, body = f.signin(t, cl, "not-the-console-token")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong console token") || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	if got := f.signins(t, outcomeWrongToken); got != 1 {
		t.Errorf("wrong_token = %v", got)
	}
	// The publish token is not a console token; the page does not repeat it.
	if resp, body := f.signin(t, cl, publishTok); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, publishTok) {
		t.Errorf("publish token: %d, want 401 without the token in the page:\n%s", resp.StatusCode, body)
	}
	// Nor is a client JWT.
	jwt, err := auth.Mint([]byte("secret"), map[string]any{"sub": 1, "client_type": "user"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.signin(t, cl, jwt); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("JWT: %d, want 401", resp.StatusCode)
	}
	// Cross-origin or origin-less posts are refused before the token is looked at.
	if resp, _ := f.post(t, cl, "/console/signin", otherOrigin, url.Values{"token": {testToken}}); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-origin sign-in: %d %v", resp.StatusCode, resp.Cookies())
	}
	if resp, _ := f.post(t, cl, "/console/signin", "", url.Values{"token": {testToken}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in without Origin: %d", resp.StatusCode)
	}
	if resp, _ := f.post(t, cl, "/console/signin", f.srv.URL, url.Values{}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("sign-in without a token: %d", resp.StatusCode)
	}
	if got := f.signins(t, outcomeBadRequest); got != 3 {
		t.Errorf("bad_request = %v, want 3", got)
	}

	// The API wants the cookie; a bearer token (publish or console) is not one.
	for _, tok := range []string{publishTok, testToken, jwt} {
		if resp, _ := f.get(t, cl, "/console/api/snapshot", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("snapshot with a bearer token: %d", resp.StatusCode)
		}
	}
	if resp, _ := f.get(t, cl, "/console/api/snapshot", "Cookie", cookieName+"="+jwt); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("snapshot with a JWT as cookie: %d", resp.StatusCode)
	}

	// The right token: a session cookie, then the console.
	resp, _ = f.signin(t, cl, testToken)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("sign-in: %d %v", resp.StatusCode, resp.Header)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || ck.Secure || ck.MaxAge <= 0 {
		t.Fatalf("session cookie %+v", ck)
	}
	if strings.Contains(ck.Value, testToken) {
		t.Fatal("the cookie holds the token")
	}
	resp, body = f.get(t, cl, "/console/")
	if resp.StatusCode != 200 || !strings.Contains(body, `id="signout"`) || strings.Contains(body, testToken) {
		t.Fatalf("console page: %d\n%s", resp.StatusCode, body)
	}
	csrf := between(body, `name="csrf" value="`, `"`)
	if csrf == "" {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	if resp, body := f.get(t, cl, "/console/api/snapshot"); resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(body, "{") {
		t.Fatalf("snapshot: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp, body := f.get(t, cl, "/console/static/console.js"); resp.StatusCode != 200 || !strings.Contains(body, "EventSource") {
		t.Errorf("console.js: %d", resp.StatusCode)
	}
	if resp, body := f.get(t, cl, "/console/static/"); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "console.js") {
		t.Errorf("static directory: %d (want 404, no listing)\n%s", resp.StatusCode, body)
	}

	// Sign-out: same origin and the session's CSRF token.
	if resp, _ := f.post(t, cl, "/console/signout", otherOrigin, url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin sign-out: %d", resp.StatusCode)
	}
	if resp, _ := f.post(t, cl, "/console/signout", f.srv.URL, url.Values{"csrf": {"nope"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out with a wrong CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := f.get(t, cl, "/console/api/snapshot"); resp.StatusCode != 200 {
		t.Fatalf("refused sign-outs signed out: %d", resp.StatusCode)
	}
	resp, _ = f.post(t, cl, "/console/signout", f.srv.URL, url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if resp, _ := f.get(t, cl, "/console/api/snapshot"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("snapshot after sign-out: %d", resp.StatusCode)
	}
	if got := f.signins(t, outcomeOK); got != 1 {
		t.Errorf("ok = %v", got)
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	j := strings.Index(s, to)
	if j < 0 {
		return ""
	}
	return s[:j]
}

func TestSecureCookieOverTLS(t *testing.T) {
	r := httptest.NewRequest("POST", "https://console.example/console/signin", nil)
	r.TLS = &tls.ConnectionState{}
	if c := cookie(r, "v", time.Now().Add(time.Hour)); !c.Secure {
		t.Error("cookie over TLS is not Secure")
	}
	r.TLS = nil
	if c := cookie(r, "v", time.Now().Add(time.Hour)); c.Secure {
		t.Error("cookie over plain HTTP is Secure")
	}
	r.Header.Set("X-Forwarded-Proto", "https")
	if c := cookie(r, "v", time.Now().Add(time.Hour)); !c.Secure {
		t.Error("cookie behind a proxy that ended TLS is not Secure")
	}
}

func TestSlowDown(t *testing.T) {
	f := newFixture(t, nil)
	cl := f.client(t)
	for i := range 5 {
		if resp, _ := f.signin(t, cl, "wrong-"+strconv.Itoa(i)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, resp.StatusCode)
		}
	}
	// The 5th failure within a minute slows the address down: even the
	// right token is refused until the delay passes.
	resp, body := f.signin(t, cl, testToken)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "5" || !strings.Contains(body, "Too many wrong tokens") {
		t.Fatalf("after 5 failures: %d Retry-After %q\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := f.signins(t, outcomeSlowed); got != 1 {
		t.Errorf("slowed = %v", got)
	}
	f.clock.Add(5 * time.Second)
	// A further failure doubles the delay.
	if resp, _ := f.signin(t, cl, "wrong-again"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after the delay: %d", resp.StatusCode)
	}
	if resp, _ := f.signin(t, cl, testToken); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "10" {
		t.Fatalf("second block: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	f.clock.Add(10 * time.Second)
	if resp, _ := f.signin(t, cl, testToken); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the second delay, the right token: %d", resp.StatusCode)
	}
	// Success forgets the address.
	if n := f.c.fails.len(); n != 0 {
		t.Errorf("%d addresses remembered after success", n)
	}
}

func TestFailuresBounded(t *testing.T) {
	ck := testclock.New(time.Unix(1_800_000_000, 0))
	fl := newFailures(ck.Now)
	fl.cap = 100
	for i := range 1000 {
		fl.fail("10.0.0." + strconv.Itoa(i))
		ck.Add(time.Millisecond)
	}
	if n := fl.len(); n > 100 {
		t.Fatalf("%d addresses remembered, cap 100", n)
	}
	// The newest are kept, the idlest evicted.
	if fl.m["10.0.0.999"] == nil || fl.m["10.0.0.0"] != nil {
		t.Error("eviction did not drop the idlest")
	}
	// The delay is bounded.
	for range 100 {
		fl.fail("192.0.2.1")
	}
	if d := fl.blocked("192.0.2.1"); d > fl.maxDelay || d <= 0 {
		t.Errorf("delay %v, want (0, %v]", d, fl.maxDelay)
	}
}

// readEvent reads one server-sent event: its name and data.
func readEvent(br *bufio.Reader) (string, string, error) {
	var name, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return name, data, err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if name != "" || data != "" {
				return name, data, nil
			}
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data += line[len("data: "):]
		}
	}
}

func signedIn(t *testing.T, f *fixture) *http.Client {
	t.Helper()
	cl := f.client(t)
	if resp, _ := f.signin(t, cl, testToken); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	return cl
}

func TestStreamEndsOnShutdown(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxStreams = 2 })
	cl := signedIn(t, f)
	cl.Timeout = 0
	open := func() *http.Response {
		resp, err := cl.Get(f.srv.URL + "/console/api/stream")
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r1, r2 := open(), open()
	defer r1.Body.Close()
	defer r2.Body.Close()
	if r1.StatusCode != 200 || r1.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", r1.StatusCode, r1.Header)
	}
	br := bufio.NewReader(r1.Body)
	for range 2 { // the first snapshot and one more: it is pushed
		name, data, err := readEvent(br)
		if err != nil || name != "snapshot" || !json.Valid([]byte(data)) {
			t.Fatalf("event %q %q %v", name, data, err)
		}
	}
	// A third stream is over the bound.
	r3 := open()
	r3.Body.Close()
	if r3.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third stream: %d, want 503", r3.StatusCode)
	}
	if got := testmetrics.Value(t, f.reg, "eventserver_console_streams"); got != 2 {
		t.Errorf("streams gauge %v, want 2", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Both streams end (EOF) without the client going away.
	for _, r := range []*http.Response{r1, r2} {
		done := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, r.Body); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stream ended with %v, want EOF", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stream still open after Shutdown")
		}
	}
	if got := testmetrics.Value(t, f.reg, "eventserver_console_streams"); got != 0 {
		t.Errorf("streams gauge %v after Shutdown", got)
	}
	if resp, _ := f.get(t, cl, "/console/api/stream"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream after Shutdown: %d", resp.StatusCode)
	}
}

func TestStreamEndsWhenTheSessionExpires(t *testing.T) {
	f := newFixture(t, nil)
	cl := signedIn(t, f)
	resp, err := cl.Get(f.srv.URL + "/console/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if name, _, err := readEvent(br); name != "snapshot" || err != nil {
		t.Fatalf("first event %q %v", name, err)
	}
	f.clock.Add(13 * time.Hour)
	for {
		name, _, err := readEvent(br)
		if err != nil {
			t.Fatalf("stream ended without signedout: %v", err)
		}
		if name == "signedout" {
			break
		}
	}
}

// TestSnapshot: the snapshot of a cluster of three, one of which does not
// answer: online, stale and offline nodes, the timeline, the replicas and
// their summed traffic.
func TestSnapshot(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.TrafficInterval = time.Second; c.TrafficSlots = 10 })
	ctx := context.Background()
	now := f.clock.Now()
	node := func(key string, collab, org int64) presence.Node {
		return presence.Node{Key: key, ID: json.RawMessage(key), Name: "node" + key, CollaborationID: collab, OrganizationID: org}
	}
	// Node 7 comes online and stays; node 8 comes and goes; node 9 is online
	// in collaboration 2.
	for _, c := range []presence.Conn{
		{Node: node("7", 1, 2), ID: "s7", Instance: "b", Since: now},
		{Node: node("8", 1, 3), ID: "s8", Instance: "a", Since: now},
		{Node: node("9", 2, 3), ID: "s9", Instance: "c", Since: now},
	} {
		if err := f.pres.Connect(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Add(time.Minute)
	if err := f.pres.Disconnect(ctx, "8", "s8"); err != nil {
		t.Fatal(err)
	}
	if err := f.pres.SetConfig(ctx, "7", json.RawMessage(`{"version":"4.14"}`), f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "node 8 offline", func() bool {
		trs, _ := f.log.Since(ctx, time.Time{})
		return len(trs) == 4
	})

	// b answers, with traffic; c was seen before and does not answer now.
	bTraffic := Series{Interval: 1, End: f.clock.Now().Unix(), In: []float64{0, 0, 0, 0, 0, 0, 0, 0, 2, 3}, Out: make([]float64, 10),
		Publish: make([]float64, 10), Drops: []float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, Refused: map[string][]float64{"rate": {0, 0, 0, 0, 0, 0, 0, 0, 0, 4}}}
	bAnswer, _ := json.Marshal(Replica{Instance: "b", Version: "v-b", Ready: true, Redis: "ok",
		Connections: map[string]float64{"node": 1, "user": 2}, Traffic: &bTraffic})
	cAnswer, _ := json.Marshal(Replica{Instance: "c", Version: "v-c", Ready: true, Redis: "ok"})
	f.clu.emit = func(context.Context, string) ([]any, error) {
		return []any{string(bAnswer), string(cAnswer)}, nil
	}
	f.c.snapshotJSON() // c seen
	f.clock.Add(time.Second)
	f.clu.emit = func(context.Context, string) ([]any, error) {
		return []any{string(bAnswer)}, &redisadapter.TimeoutError{Op: "serverSideEmit", Answered: 1, Expected: 2, Timeout: time.Second}
	}
	cl := signedIn(t, f)
	_, body := f.get(t, cl, "/console/api/snapshot")
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}

	// Nodes: by collaboration, then organization; 8 offline since its
	// transition.
	var got []string
	for _, n := range s.Nodes {
		got = append(got, n.Key+":"+n.Status+"@"+n.Instance)
	}
	if want := "7:online@b 8:offline@ 9:online@c"; strings.Join(got, " ") != want {
		t.Errorf("nodes %q, want %q", strings.Join(got, " "), want)
	}
	if n := s.Nodes[0]; string(n.LastConfig) != `{"version":"4.14"}` || n.LastConfigAt == nil || n.CollaborationID != 1 || n.OrganizationID != 2 || n.Connections != 1 {
		t.Errorf("node 7: %+v", n)
	}
	if n := s.Nodes[1]; !n.Since.Equal(now.Add(time.Minute).UTC()) || n.Name != "node8" {
		t.Errorf("node 8 offline since %v (%+v), want %v", n.Since, n, now.Add(time.Minute))
	}

	// Timeline: 4 transitions, per collaboration.
	if s.Timeline.Total != 4 || len(s.Timeline.Recent) != 4 || s.Timeline.Recent[0].Key != "8" || s.Timeline.Recent[0].Online {
		t.Errorf("timeline %+v", s.Timeline)
	}
	if len(s.Timeline.Collaborations) != 2 {
		t.Fatalf("timeline collaborations %+v", s.Timeline.Collaborations)
	}
	c1 := s.Timeline.Collaborations[0]
	on, off := 0, 0
	for _, b := range c1.Buckets {
		on, off = on+b[0], off+b[1]
	}
	if c1.CollaborationID != 1 || c1.Online != 1 || on != 2 || off != 1 || len(c1.Buckets) != 60 {
		t.Errorf("collaboration 1: %+v (on %d off %d)", c1, on, off)
	}

	// Replicas: this one, b, then c missing; one did not answer.
	got = nil
	for _, r := range s.Replicas {
		got = append(got, r.Instance+":"+strconv.FormatBool(r.Self)+":"+strconv.FormatBool(r.Missing))
		if r.Traffic != nil {
			t.Errorf("replica %s: traffic in the snapshot's replicas", r.Instance)
		}
	}
	if want := "a:true:false b:false:false c:false:true"; strings.Join(got, " ") != want {
		t.Errorf("replicas %q, want %q", strings.Join(got, " "), want)
	}
	if s.Unanswered != 1 || len(s.Errors) != 1 || !strings.Contains(s.Errors[0], "1 of 2") {
		t.Errorf("unanswered %d, errors %q", s.Unanswered, s.Errors)
	}
	if r := s.Replicas[1]; r.Version != "v-b" || !r.Ready || r.Redis != "ok" || r.Connections["user"] != 2 {
		t.Errorf("replica b: %+v", r)
	}

	// Traffic: b's series, aligned on this snapshot's end (a second later).
	if s.Traffic.Interval != 1 || len(s.Traffic.In) != 10 {
		t.Fatalf("traffic %+v", s.Traffic)
	}
	if s.Traffic.In[7] != 2 || s.Traffic.In[8] != 3 || s.Traffic.Drops[8] != 1 || s.Traffic.Refused["rate"][8] != 4 {
		t.Errorf("traffic in %v drops %v refused %v", s.Traffic.In, s.Traffic.Drops, s.Traffic.Refused)
	}
	if strings.Contains(body, testToken) {
		t.Error("the snapshot shows the token")
	}
}

// TestSelfAnswer: a replica's answer carries its own counters, read from
// its registry, as per-interval deltas.
func TestSelfAnswer(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.TrafficInterval = time.Second; c.TrafficSlots = 5 })
	out := prometheus.NewCounterVec(prometheus.CounterOpts{Name: famOut}, []string{"event"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: famRefused}, []string{"event", "reason"})
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: famConnected}, []string{"client_type", "transport"})
	f.reg.MustRegister(out, refused, conns)
	f.c.sampleOnce()
	out.WithLabelValues("new_task").Add(3)
	out.WithLabelValues("node-online").Add(1)
	refused.WithLabelValues("ping", "rate").Add(2)
	conns.WithLabelValues("node", "websocket").Set(4)
	conns.WithLabelValues("node", "polling").Set(1)
	f.clock.Add(time.Second)
	f.c.sampleOnce()

	var ans string
	f.clu.mu.Lock()
	h := f.clu.handlers[EventReplica]
	f.clu.mu.Unlock()
	h(nil, func(args ...any) { ans = args[0].(string) })
	var r Replica
	if err := json.Unmarshal([]byte(ans), &r); err != nil {
		t.Fatal(err)
	}
	if r.Instance != "a" || r.Version != "v-test" || !r.Ready || r.Redis != "none" || r.Connections["node"] != 5 {
		t.Errorf("answer %+v", r)
	}
	if r.Traffic == nil || r.Traffic.Out[4] != 4 || r.Traffic.Refused["rate"][4] != 2 {
		t.Fatalf("traffic %+v", r.Traffic)
	}
}

func TestRing(t *testing.T) {
	rg := newRing(5*time.Second, 4)
	t0 := time.Unix(1000, 0)
	rg.add(totals{in: 10}, t0)
	rg.add(totals{in: 15}, t0.Add(5*time.Second))
	rg.add(totals{in: 3}, t0.Add(10*time.Second)) // a restart: from zero
	s := rg.series(t0.Add(10 * time.Second))
	if want := []float64{0, 0, 5, 3}; !slices.Equal(s.In, want) {
		t.Errorf("in %v, want %v", s.In, want)
	}
	// Old slots fall off.
	s = rg.series(t0.Add(25 * time.Second))
	if want := []float64{3, 0, 0, 0}; !slices.Equal(s.In, want) {
		t.Errorf("later: in %v, want %v", s.In, want)
	}
	sum := sumSeries([]Series{s, {Interval: 5, End: 1020, In: []float64{1, 1, 1, 1}}}, 5, 4, 1025)
	if want := []float64{4, 1, 1, 0}; !slices.Equal(sum.In, want) {
		t.Errorf("sum %v, want %v", sum.In, want)
	}
}

func TestMemoryLogBounded(t *testing.T) {
	ck := testclock.New(time.Unix(1_800_000_000, 0))
	l := NewMemoryLog(ck.Now)
	l.max = 10
	for i := range 30 {
		l.Record(presence.Transition{Online: i%2 == 0, Seq: int64(i), Node: presence.Node{Key: strconv.Itoa(i)}})
	}
	all, _ := l.Since(context.Background(), time.Time{})
	if len(all) != 10 || all[0].Seq != 20 {
		t.Fatalf("kept %d from %d, want the last 10", len(all), all[0].Seq)
	}
	ck.Add(time.Hour + time.Second)
	l.Record(presence.Transition{Seq: 99})
	if all, _ := l.Since(context.Background(), time.Time{}); len(all) != 1 || all[0].Seq != 99 {
		t.Fatalf("after an hour: %+v", all)
	}
}

func TestRedisLog(t *testing.T) {
	r := redistest.Start(t)
	client := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer client.Close()
	ck := testclock.New(time.Now())
	l := NewRedisLog(client, "test:console:transitions", zap.NewNop())
	l.now = ck.Now
	l.max = 5
	for i := range 8 {
		l.Record(presence.Transition{Online: i%2 == 0, Seq: int64(i), Node: presence.Node{Key: strconv.Itoa(i), ID: json.RawMessage(strconv.Itoa(i)), CollaborationID: 1}})
		ck.Add(time.Second)
	}
	// Another replica's log reads the same transitions.
	other := NewRedisLog(client, "test:console:transitions", zap.NewNop())
	all, err := other.Since(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || all[0].Seq != 3 || all[4].Seq != 7 || string(all[4].ID) != "7" {
		t.Fatalf("%+v, want the last 5", all)
	}
	if ttl := client.PTTL(context.Background(), "test:console:transitions").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("ttl %v", ttl)
	}
	// An hour later, only the newest is kept.
	ck.Add(time.Hour)
	l.Record(presence.Transition{Seq: 99, Node: presence.Node{Key: "1"}})
	if all, _ := other.Since(context.Background(), time.Time{}); len(all) != 1 || all[0].Seq != 99 {
		t.Fatalf("after an hour: %+v", all)
	}
}

// TestStreamOutlivesServerTimeouts: the app's HTTP server has read and
// write timeouts (made for long-polling); a live stream is not cut by them.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	f := newFixtureServer(t, nil, func(s *http.Server) {
		s.ReadTimeout, s.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	cl := signedIn(t, f)
	cl.Timeout = 0
	resp, err := cl.Get(f.srv.URL + "/console/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	start := time.Now()
	for n := 0; time.Since(start) < time.Second; n++ {
		if name, _, err := readEvent(br); err != nil || name != "snapshot" {
			t.Fatalf("event %d after %v: %q %v", n, time.Since(start), name, err)
		}
	}
}
