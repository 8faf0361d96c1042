package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

// fakeKeycloak serves a JWK Set that a test may change, fail or inflate,
// over TLS, and counts the requests.
type fakeKeycloak struct {
	srv      *httptest.Server
	mu       sync.Mutex
	keys     []map[string]any
	status   int
	huge     bool
	requests atomic.Int64
}

func newFakeKeycloak(t *testing.T) *fakeKeycloak {
	t.Helper()
	f := &fakeKeycloak{status: http.StatusOK}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.status != http.StatusOK {
			w.WriteHeader(f.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if f.huge {
			_, _ = fmt.Fprintf(w, `{"keys":[],"pad":"%s"}`, strings.Repeat("x", 2<<20))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": f.keys})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKeycloak) url() string {
	return f.srv.URL + "/realms/vantage6/protocol/openid-connect/certs"
}

func (f *fakeKeycloak) set(keys ...map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = keys
}

func (f *fakeKeycloak) fail(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]any {
	raw, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	size := (len(raw) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
		"x": b64(raw[1 : 1+size]), "y": b64(raw[1+size:])}
}

// keycloakClaims are what a Keycloak access token of vantage6 5 holds.
func keycloakClaims() map[string]any {
	return map[string]any{
		"sub": "5b0c2a9e-3f53-4a1e-9c1e-0c8f7f6f4c11", "iss": "https://kc.example.org/realms/vantage6",
		"aud": []any{"account", "vantage6"}, "azp": "vantage6-ui", "typ": "Bearer",
		"exp": testNow.Add(5 * time.Minute).Unix(), "iat": testNow.Unix(),
	}
}

func signKid(t *testing.T, m jwt.SigningMethod, kid string, key any, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, jwt.MapClaims(claims))
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwksVerifier(t *testing.T, f *fakeKeycloak, reg prometheus.Registerer, mutate func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		JWKS: &JWKSConfig{URL: f.url(), Client: f.srv.Client(), Refresh: time.Hour, RefreshMin: time.Minute,
			Timeout: 2 * time.Second, Registerer: reg},
		Issuer:   "https://kc.example.org/realms/vantage6",
		Audience: "vantage6",
		Now:      func() time.Time { return testNow },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(func() { _ = v.Shutdown(context.Background()) })
	if err := v.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return v
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantRefused(t *testing.T, v *Verifier, tok, what, msg string) {
	t.Helper()
	_, err := v.Verify(tok)
	if err == nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("%s: %v, want invalid", what, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: %q does not say %q", what, err, msg)
	}
	if strings.Contains(err.Error(), tok) {
		t.Errorf("%s: the error holds the token", what)
	}
}

// TestJWKS: Keycloak-style RS256 and ES256 tokens are verified with the keys
// of the JWK Set, with issuer and audience checked; what is not signed by a
// published key, or signed otherwise than the key says, is refused.
func TestJWKS(t *testing.T) {
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, current) }) // after the server and the verifier are closed
	k := keys()
	f := newFakeKeycloak(t)
	f.set(rsaJWK("rsa-1", &k.rsa.PublicKey), ecJWK("ec-1", &k.ec256.PublicKey))
	reg := prometheus.NewRegistry()
	v := jwksVerifier(t, f, reg, nil)

	c, err := v.Verify(signKid(t, jwt.SigningMethodRS256, "rsa-1", k.rsa, keycloakClaims()))
	if err != nil {
		t.Fatalf("RS256 from Keycloak: %v", err)
	}
	if c.Subject.Value != "5b0c2a9e-3f53-4a1e-9c1e-0c8f7f6f4c11" || c.Subject.Numeric || c.ClientType != "" {
		t.Errorf("claims %+v", c)
	}
	if _, err := v.Verify(signKid(t, jwt.SigningMethodES256, "ec-1", k.ec256, keycloakClaims())); err != nil {
		t.Fatalf("ES256 from Keycloak: %v", err)
	}
	if got := gauge(t, reg, "eventserver_jwks_keys"); got != 2 {
		t.Errorf("eventserver_jwks_keys %v, want 2", got)
	}

	with := func(kv ...any) map[string]any {
		m := keycloakClaims()
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	wantRefused(t, v, signKid(t, jwt.SigningMethodRS256, "rsa-1", k.rsa, with("iss", "https://evil.example/realms/x")), "another issuer", "issuer")
	wantRefused(t, v, signKid(t, jwt.SigningMethodRS256, "rsa-1", k.rsa, with("aud", "account")), "another audience", "audience")
	wantRefused(t, v, signKid(t, jwt.SigningMethodRS256, "rsa-1", k.rsaOther, keycloakClaims()), "signed by another key", "verification")
	wantRefused(t, v, signKid(t, jwt.SigningMethodRS256, "", k.rsa, keycloakClaims()), "no kid", "kid")
	// The kid of an EC key on an RS256 token, and the reverse.
	wantRefused(t, v, signKid(t, jwt.SigningMethodRS256, "ec-1", k.rsa, keycloakClaims()), "RS256 with an EC kid", "")
	wantRefused(t, v, signKid(t, jwt.SigningMethodES256, "rsa-1", k.ec256, keycloakClaims()), "ES256 with an RSA kid", "")
	// Algorithm confusion: HS256 keyed with the RSA public key, and none.
	wantRefused(t, v, signKid(t, jwt.SigningMethodHS256, "rsa-1", k.rsaPEM, keycloakClaims()), "HS256 with the public key", "signing method HS256 is invalid")
	none := signKid(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, keycloakClaims())
	wantRefused(t, v, none, "alg none", "signing method none is invalid")
}

// gauge reads an unlabelled gauge of reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

func counter(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eventserver_jwks_refresh_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// TestJWKSRotation: Keycloak rotates: a token with the new kid is accepted
// once the set is fetched again for that unknown kid, and the old kid keeps
// working while it is still published.
func TestJWKSRotation(t *testing.T) {
	k := keys()
	f := newFakeKeycloak(t)
	f.set(rsaJWK("old", &k.rsa.PublicKey))
	reg := prometheus.NewRegistry()
	v := jwksVerifier(t, f, reg, func(c *Config) { c.JWKS.RefreshMin = 20 * time.Millisecond })
	oldTok := signKid(t, jwt.SigningMethodRS256, "old", k.rsa, keycloakClaims())
	newTok := signKid(t, jwt.SigningMethodRS256, "new", k.rsaOther, keycloakClaims())
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, v, newTok, "a kid not published yet", `kid "new" is not in the JWK Set`)

	f.set(rsaJWK("old", &k.rsa.PublicKey), rsaJWK("new", &k.rsaOther.PublicKey))
	waitUntil(t, "the new kid accepted", func() bool { _, err := v.Verify(newTok); return err == nil })
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatalf("the old kid while still published: %v", err)
	}
	if ok := counter(t, reg, "ok"); ok < 2 {
		t.Errorf("refreshes ok %v, want at least 2", ok)
	}
}

// TestJWKSUnknownKidFlood: 200 tokens with made-up kids make at most one
// fetch per RefreshMin, and each is refused at once.
func TestJWKSUnknownKidFlood(t *testing.T) {
	k := keys()
	f := newFakeKeycloak(t)
	f.set(rsaJWK("rsa-1", &k.rsa.PublicKey))
	v := jwksVerifier(t, f, nil, func(c *Config) { c.JWKS.RefreshMin = time.Hour })
	before := f.requests.Load()
	start := time.Now()
	for i := range 200 {
		tok := signKid(t, jwt.SigningMethodRS256, fmt.Sprintf("made-up-%d", i), k.rsa, keycloakClaims())
		if _, err := v.Verify(tok); err == nil {
			t.Fatal("a made-up kid was accepted")
		}
	}
	if n := f.requests.Load() - before; n > 1 {
		t.Errorf("%d fetches for 200 unknown kids, want at most 1", n)
	}
	t.Logf("200 unknown kids refused in %s, %d fetches", time.Since(start), f.requests.Load()-before)
}

// TestJWKSKeycloakDown: when Keycloak fails, the keys held keep verifying
// and the failures are counted; a provider down at start refuses tokens
// with a clear error until it answers; an oversized set is refused.
func TestJWKSKeycloakDown(t *testing.T) {
	k := keys()
	tok := signKid(t, jwt.SigningMethodRS256, "rsa-1", k.rsa, keycloakClaims())

	f := newFakeKeycloak(t)
	f.set(rsaJWK("rsa-1", &k.rsa.PublicKey))
	reg := prometheus.NewRegistry()
	v := jwksVerifier(t, f, reg, func(c *Config) { c.JWKS.Refresh = 30 * time.Millisecond })
	f.fail(http.StatusInternalServerError)
	waitUntil(t, "a failed refresh counted", func() bool { return counter(t, reg, "error") >= 2 })
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("a known kid while Keycloak fails: %v", err)
	}

	down := newFakeKeycloak(t)
	down.fail(http.StatusServiceUnavailable)
	v2 := jwksVerifier(t, down, nil, func(c *Config) { c.JWKS.Refresh = 30 * time.Millisecond })
	wantRefused(t, v2, tok, "no keys yet", "no keys fetched from the JWK Set yet")
	down.set(rsaJWK("rsa-1", &k.rsa.PublicKey))
	down.fail(http.StatusOK)
	waitUntil(t, "accepted once Keycloak answers", func() bool { _, err := v2.Verify(tok); return err == nil })

	huge := newFakeKeycloak(t)
	huge.huge = true
	reg3 := prometheus.NewRegistry()
	v3 := jwksVerifier(t, huge, reg3, nil)
	wantRefused(t, v3, tok, "an oversized set", "no keys fetched")
	if n := counter(t, reg3, "error"); n < 1 {
		t.Errorf("oversized set: errors %v, want at least 1", n)
	}
}

// TestJWKSConfig: the URL must be https (http only on a loopback host; the
// URLs themselves: validate.TestJWKSURL).
func TestJWKSConfig(t *testing.T) {
	if _, err := NewVerifier(Config{JWKS: &JWKSConfig{URL: "http://kc.example.org/certs"}}); err == nil {
		t.Error("NewVerifier with an http JWKS URL: nil error")
	}
}

// TestJWKSNoDowngrade: a JWK Set fetched over https is never taken from a
// redirect to http.
func TestJWKSNoDowngrade(t *testing.T) {
	k := keys()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{rsaJWK("rsa-1", &k.rsa.PublicKey)}})
	}))
	t.Cleanup(plain.Close)
	f := newFakeKeycloak(t)
	f.srv.Config.Handler = http.RedirectHandler(plain.URL+"/certs", http.StatusFound)
	reg := prometheus.NewRegistry()
	v := jwksVerifier(t, f, reg, nil)
	wantRefused(t, v, signKid(t, jwt.SigningMethodRS256, "rsa-1", k.rsa, keycloakClaims()), "keys from an http redirect", "no keys fetched")
	if n := counter(t, reg, "error"); n < 1 {
		t.Errorf("errors %v, want the refused redirect counted", n)
	}
}

// TestJWKSStartsOnStart: NewVerifier starts nothing (no fetch, no
// goroutine); Start fetches; Shutdown before Start leaves nothing to stop.
func TestJWKSStartsOnStart(t *testing.T) {
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, current) })
	k := keys()
	f := newFakeKeycloak(t)
	f.set(rsaJWK("rsa-1", &k.rsa.PublicKey))
	v, err := NewVerifier(Config{JWKS: &JWKSConfig{URL: f.url(), Client: f.srv.Client()}, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	tok := signKid(t, jwt.SigningMethodRS256, "rsa-1", k.rsa, keycloakClaims())
	if n := f.requests.Load(); n != 0 {
		t.Fatalf("%d fetches before Start", n)
	}
	wantRefused(t, v, tok, "before Start", "no keys fetched")
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("after Start: %v", err)
	}
	if err := v.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	idle, err := NewVerifier(Config{JWKS: &JWKSConfig{URL: f.url(), Client: f.srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	_ = idle.Shutdown(context.Background())
	if err := idle.Start(); err != nil {
		t.Fatal(err)
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("%d fetches, want 1 (a verifier shut down before Start fetches nothing)", n)
	}
}
