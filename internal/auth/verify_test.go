package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the verifiers' clock: the iat of the captured vantage6 token.
var testNow = time.Unix(1795627487, 0)

const testSecret = "s3cr3t-Xq9-jwt-secret-key"

type testKeys struct {
	rsa      *rsa.PrivateKey
	rsaOther *rsa.PrivateKey
	ec256    *ecdsa.PrivateKey
	ec384    *ecdsa.PrivateKey
	rsaPEM   []byte // PKIX "PUBLIC KEY"
	ecPEM    []byte // PKIX "PUBLIC KEY"
}

var keys = sync.OnceValue(func() testKeys {
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	k.rsaPEM = pkixPEM(&k.rsa.PublicKey)
	k.ecPEM = pkixPEM(&k.ec256.PublicKey)
	return k
})

func pkixPEM(pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// vantage6Claims are the claims of a captured vantage6 4.14 node token,
// issued at testNow.
func vantage6Claims() map[string]any {
	return map[string]any{
		"fresh":       false,
		"iat":         testNow.Unix(),
		"jti":         "x",
		"type":        "access",
		"sub":         1,
		"nbf":         testNow.Unix(),
		"csrf":        "c",
		"exp":         testNow.Add(6 * time.Hour).Unix(),
		"client_type": "node",
		"roles":       []any{},
	}
}

// with returns a copy of base with the given changes; a nil value deletes.
func with(base map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims map[string]any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, jwt.MapClaims(claims)).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// rawToken builds a token from JSON header and payload and a signature.
func rawToken(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}

func newVerifier(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func TestVerify(t *testing.T) {
	k := keys()
	hsOnly := newVerifier(t, Config{HMACSecret: []byte(testSecret)})
	rsaOnly := newVerifier(t, Config{PublicKeyPEM: k.rsaPEM})
	both := newVerifier(t, Config{HMACSecret: []byte(testSecret), PublicKeyPEM: k.rsaPEM})
	ecOnly := newVerifier(t, Config{PublicKeyPEM: k.ecPEM})
	wideLeeway := newVerifier(t, Config{HMACSecret: []byte(testSecret), Leeway: time.Minute})

	v6 := vantage6Claims()
	keycloak := map[string]any{
		"sub": "7f3c2a8e-9d1b-4b6a-8c3e-2f1a0b9c8d7e",
		"iat": testNow.Unix(), "exp": testNow.Add(5 * time.Minute).Unix(),
		"typ": "Bearer", "preferred_username": "alice",
	}
	secret := []byte(testSecret)

	tests := []struct {
		name    string
		v       *Verifier
		token   func(t *testing.T) string
		wantErr error // nil, ErrExpired or ErrInvalid
		check   func(t *testing.T, c *Claims)
	}{
		{
			name:  "HS256 vantage6 node token",
			v:     hsOnly,
			token: func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, v6) },
			check: func(t *testing.T, c *Claims) {
				if c.Subject != (Subject{Value: "1", Numeric: true}) {
					t.Errorf("Subject = %#v", c.Subject)
				}
				if c.ClientType != "node" {
					t.Errorf("ClientType = %q", c.ClientType)
				}
				if want := testNow.Add(6 * time.Hour); !c.ExpiresAt.Equal(want) {
					t.Errorf("ExpiresAt = %v, want %v", c.ExpiresAt, want)
				}
				if n, ok := c.Raw["sub"].(json.Number); !ok || n != "1" {
					t.Errorf("Raw[sub] = %#v, want json.Number 1", c.Raw["sub"])
				}
				if c.Raw["jti"] != "x" || c.Raw["fresh"] != false {
					t.Errorf("Raw = %v", c.Raw)
				}
			},
		},
		{
			name:  "HS256 accepted by verifier with both keys",
			v:     both,
			token: func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, v6) },
		},
		{
			name:  "HS512",
			v:     hsOnly,
			token: func(t *testing.T) string { return sign(t, jwt.SigningMethodHS512, secret, v6) },
		},
		{
			name: "no client_type",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "client_type", nil))
			},
			check: func(t *testing.T, c *Claims) {
				if c.ClientType != "" {
					t.Errorf("ClientType = %q, want empty", c.ClientType)
				}
			},
		},
		{
			name:  "RS256 with string sub",
			v:     rsaOnly,
			token: func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, k.rsa, keycloak) },
			check: func(t *testing.T, c *Claims) {
				if c.Subject != (Subject{Value: "7f3c2a8e-9d1b-4b6a-8c3e-2f1a0b9c8d7e"}) {
					t.Errorf("Subject = %#v", c.Subject)
				}
			},
		},
		{
			name:  "RS256 accepted by verifier with both keys",
			v:     both,
			token: func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, k.rsa, keycloak) },
		},
		{
			name:  "PS256",
			v:     rsaOnly,
			token: func(t *testing.T) string { return sign(t, jwt.SigningMethodPS256, k.rsa, keycloak) },
		},
		{
			name:  "ES256",
			v:     ecOnly,
			token: func(t *testing.T) string { return sign(t, jwt.SigningMethodES256, k.ec256, keycloak) },
		},
		{
			name: "expired",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "exp", testNow.Add(-time.Minute).Unix()))
			},
			wantErr: ErrExpired,
		},
		{
			name: "expired RS256",
			v:    rsaOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodRS256, k.rsa, with(keycloak, "exp", testNow.Add(-time.Hour).Unix()))
			},
			wantErr: ErrExpired,
		},
		{
			name: "expired within leeway",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "exp", testNow.Add(-5*time.Second).Unix()))
			},
		},
		{
			name: "expired within a configured leeway",
			v:    wideLeeway,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "exp", testNow.Add(-30*time.Second).Unix()))
			},
		},
		{
			name: "expired with a bad signature is invalid",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, []byte("wrong"), with(v6, "exp", testNow.Add(-time.Hour).Unix()))
			},
			wantErr: ErrInvalid,
		},
		{
			name: "expired refresh token is invalid",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "type", "refresh", "exp", testNow.Add(-time.Hour).Unix()))
			},
			wantErr: ErrInvalid,
		},
		{
			name: "nbf in the future",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "nbf", testNow.Add(time.Hour).Unix()))
			},
			wantErr: ErrInvalid,
		},
		{
			name: "nbf within leeway",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "nbf", testNow.Add(5*time.Second).Unix()))
			},
		},
		{
			name: "iat in the future",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "iat", testNow.Add(time.Hour).Unix()))
			},
			wantErr: ErrInvalid,
		},
		{
			name:    "wrong secret",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, []byte("another-secret"), v6) },
			wantErr: ErrInvalid,
		},
		{
			name:    "RS256 signed by another key",
			v:       rsaOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, k.rsaOther, keycloak) },
			wantErr: ErrInvalid,
		},
		{
			name: "alg none",
			v:    hsOnly,
			token: func(t *testing.T) string {
				p, _ := json.Marshal(v6)
				return rawToken(`{"alg":"none","typ":"JWT"}`, string(p), nil)
			},
			wantErr: ErrInvalid,
		},
		{
			name: "alg none against public key",
			v:    both,
			token: func(t *testing.T) string {
				p, _ := json.Marshal(keycloak)
				return rawToken(`{"alg":"none","typ":"JWT"}`, string(p), nil)
			},
			wantErr: ErrInvalid,
		},
		{
			name: "unknown alg",
			v:    both,
			token: func(t *testing.T) string {
				p, _ := json.Marshal(v6)
				return rawToken(`{"alg":"XX999","typ":"JWT"}`, string(p), []byte("sig"))
			},
			wantErr: ErrInvalid,
		},
		{
			name:    "HS256 keyed with the public key PEM, verifier has only the public key",
			v:       rsaOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, k.rsaPEM, keycloak) },
			wantErr: ErrInvalid,
		},
		{
			name:    "HS256 keyed with the public key PEM, verifier has a secret and the public key",
			v:       both,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, k.rsaPEM, keycloak) },
			wantErr: ErrInvalid,
		},
		{
			name:    "RS256 when only the HMAC secret is configured",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, k.rsa, keycloak) },
			wantErr: ErrInvalid,
		},
		{
			name:    "ES256 when only an RSA key is configured",
			v:       rsaOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodES256, k.ec256, keycloak) },
			wantErr: ErrInvalid,
		},
		{
			name:    "ES384 against a P-256 key",
			v:       ecOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodES384, k.ec384, keycloak) },
			wantErr: ErrInvalid,
		},
		{
			name:    "type refresh",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "type", "refresh")) },
			wantErr: ErrInvalid,
		},
		{
			name:    "type not a string",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "type", 1)) },
			wantErr: ErrInvalid,
		},
		{
			name:    "no exp",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "exp", nil)) },
			wantErr: ErrInvalid,
		},
		{
			name:    "exp a string",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "exp", "tomorrow")) },
			wantErr: ErrInvalid,
		},
		{
			name: "exp out of range",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "exp", json.Number("1e400")))
			},
			wantErr: ErrInvalid,
		},
		{
			name:    "sub missing",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "sub", nil)) },
			wantErr: ErrInvalid,
		},
		{
			name: "sub object (container token)",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6,
					"sub", map[string]any{"node_id": 1, "collaboration_id": 1, "task_id": 3, "image": "x"},
					"client_type", "container"))
			},
			wantErr: ErrInvalid,
		},
		{
			name:    "sub float 1.5",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "sub", 1.5)) },
			wantErr: ErrInvalid,
		},
		{
			name:    "sub bool",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "sub", true)) },
			wantErr: ErrInvalid,
		},
		{
			name:    "sub empty string",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "sub", "")) },
			wantErr: ErrInvalid,
		},
		{
			name:    "client_type not a string",
			v:       hsOnly,
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, secret, with(v6, "client_type", 2)) },
			wantErr: ErrInvalid,
		},
		{
			name:    "malformed",
			v:       hsOnly,
			token:   func(t *testing.T) string { return "not-a.jwt" },
			wantErr: ErrInvalid,
		},
		{
			name:    "malformed segments",
			v:       hsOnly,
			token:   func(t *testing.T) string { return "a!b.c$d.e%f" },
			wantErr: ErrInvalid,
		},
		{
			name:    "empty",
			v:       hsOnly,
			token:   func(t *testing.T) string { return "" },
			wantErr: ErrInvalid,
		},
		{
			name: "too long",
			v:    hsOnly,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, secret, with(v6, "pad", strings.Repeat("a", maxTokenLen)))
			},
			wantErr: ErrInvalid,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tt.token(t)
			c, err := tt.v.Verify(token)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c == nil {
					t.Fatal("Verify returned nil claims")
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify succeeded, want %v", tt.wantErr)
			}
			if c != nil {
				t.Errorf("Verify returned claims with error %v", err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify error = %v, want one wrapping %v", err, tt.wantErr)
			}
			other := ErrInvalid
			if tt.wantErr == ErrInvalid {
				other = ErrExpired
			}
			if errors.Is(err, other) {
				t.Errorf("Verify error = %v, also wraps %v", err, other)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "auth: ") {
				t.Errorf("error %q lacks the auth: prefix", msg)
			}
			if token != "" && strings.Contains(msg, token) {
				t.Errorf("error message contains the token: %q", msg)
			}
			for _, part := range strings.Split(token, ".") {
				if len(part) >= 8 && strings.Contains(msg, part) {
					t.Errorf("error message contains a token segment: %q", msg)
				}
			}
			if strings.Contains(msg, testSecret) {
				t.Errorf("error message contains the secret: %q", msg)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestVerifierClock(t *testing.T) {
	secret := []byte(testSecret)
	token, err := Mint(secret, map[string]any{"sub": 1}, time.Minute, testNow)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := testNow
	v := newVerifier(t, Config{HMACSecret: secret, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	if _, err := v.Verify(token); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	mu.Lock()
	now = testNow.Add(time.Minute + DefaultLeeway + time.Second)
	mu.Unlock()
	if _, err := v.Verify(token); !errors.Is(err, ErrExpired) {
		t.Fatalf("after exp+leeway: got %v, want ErrExpired", err)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	secret := []byte(testSecret)
	v := newVerifier(t, Config{HMACSecret: secret})
	good, err := Mint(secret, map[string]any{"sub": 1}, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := Mint([]byte("other"), map[string]any{"sub": 1}, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if i%2 == 0 {
					if _, err := v.Verify(good); err != nil {
						t.Errorf("good: %v", err)
					}
				} else if _, err := v.Verify(bad); !errors.Is(err, ErrInvalid) {
					t.Errorf("bad: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

func TestNewVerifier(t *testing.T) {
	k := keys()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "keycloak"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.rsa.PublicKey, k.rsa)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	privDER, err := x509.MarshalPKCS8PrivateKey(k.rsa)
	if err != nil {
		t.Fatal(err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})

	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means success
	}{
		{"secret only", Config{HMACSecret: []byte("x")}, ""},
		{"RSA PKIX", Config{PublicKeyPEM: k.rsaPEM}, ""},
		{"RSA PKCS1", Config{PublicKeyPEM: pkcs1}, ""},
		{"RSA certificate", Config{PublicKeyPEM: cert}, ""},
		{"ECDSA P-256", Config{PublicKeyPEM: k.ecPEM}, ""},
		{"ECDSA P-384", Config{PublicKeyPEM: pkixPEM(&k.ec384.PublicKey)}, ""},
		{"both", Config{HMACSecret: []byte(testSecret), PublicKeyPEM: k.rsaPEM}, ""},
		{"no keys", Config{}, "no key"},
		{"garbage PEM", Config{PublicKeyPEM: []byte("not a pem at all")}, "no PEM block"},
		{"garbage PEM body", Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})}, "parse PKIX"},
		{"ed25519 PKIX", Config{PublicKeyPEM: pkixPEM(edPub)}, "ed25519"},
		{"ECDSA P-224", Config{PublicKeyPEM: pkixPEM(&p224.PublicKey)}, "P-224"},
		{"private key", Config{PublicKeyPEM: priv}, `"PRIVATE KEY" is not supported`},
		{"negative leeway", Config{HMACSecret: []byte("x"), Leeway: -time.Second}, "negative"},
		{"secret is the public key", Config{HMACSecret: k.rsaPEM, PublicKeyPEM: k.rsaPEM}, "must not be the public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || v == nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewVerifier succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "auth: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want prefix auth: and %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "MII") {
				t.Errorf("error %q echoes key material", err)
			}
		})
	}
}

func TestVerifyFromCertificateAndPKCS1(t *testing.T) {
	k := keys()
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	v := newVerifier(t, Config{PublicKeyPEM: pkcs1})
	token := sign(t, jwt.SigningMethodRS384, k.rsa, map[string]any{"sub": "u", "exp": testNow.Add(time.Hour).Unix()})
	if _, err := v.Verify(token); err != nil {
		t.Fatalf("PKCS1: %v", err)
	}
}

func TestSubjectFromClaim(t *testing.T) {
	tests := []struct {
		in      any
		want    Subject
		wantErr bool
	}{
		{json.Number("1"), Subject{"1", true}, false},
		{json.Number("-3"), Subject{"-3", true}, false},
		{json.Number("123456789012345678901234567890"), Subject{"123456789012345678901234567890", true}, false},
		{json.Number("2.0"), Subject{"2", true}, false},
		{json.Number("1.5"), Subject{}, true},
		{json.Number("1e400"), Subject{}, true},
		{json.Number("9007199254740993.0"), Subject{"9007199254740993", true}, false},
		{json.Number("9.007199254740993e15"), Subject{"9007199254740993", true}, false},
		{json.Number("1e1000000000"), Subject{}, true},
		{float64(1 << 53), Subject{}, true}, // may be 2^53+1 rounded
		{float64(42), Subject{"42", true}, false},
		{1.5, Subject{}, true},
		{float64(1 << 60), Subject{}, true},
		{int(7), Subject{"7", true}, false},
		{int64(8), Subject{"8", true}, false},
		{"alice-uuid", Subject{"alice-uuid", false}, false},
		{"12", Subject{"12", false}, false},
		{"", Subject{}, true},
		{nil, Subject{}, true},
		{true, Subject{}, true},
		{map[string]any{"node_id": 1}, Subject{}, true},
		{[]any{1}, Subject{}, true},
	}
	for _, tt := range tests {
		got, err := SubjectFromClaim(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("SubjectFromClaim(%#v) = %#v, %v; want %#v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSubjectJSON(t *testing.T) {
	tests := []struct {
		sub  Subject
		json string
	}{
		{Subject{"1", true}, `1`},
		{Subject{"123456789012345678901234567890", true}, `123456789012345678901234567890`},
		{Subject{"alice", false}, `"alice"`},
		{Subject{"12", false}, `"12"`},
		{Subject{}, `""`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.sub)
		if err != nil || string(b) != tt.json {
			t.Errorf("Marshal(%#v) = %s, %v; want %s", tt.sub, b, err, tt.json)
		}
		var back Subject
		if err := json.Unmarshal([]byte(tt.json), &back); err != nil || back != tt.sub {
			t.Errorf("Unmarshal(%s) = %#v, %v; want %#v", tt.json, back, err, tt.sub)
		}
		if tt.sub.String() != tt.sub.Value {
			t.Errorf("String() = %q", tt.sub.String())
		}
	}
	if _, err := json.Marshal(Subject{Value: "abc", Numeric: true}); err == nil {
		t.Error("Marshal of a non-integer numeric subject succeeded")
	}
	for _, in := range []string{`1.5`, `true`, `{}`, `[1]`} {
		var s Subject
		if err := json.Unmarshal([]byte(in), &s); err == nil {
			t.Errorf("Unmarshal(%s) succeeded: %#v", in, s)
		}
	}
	s := Subject{Value: "keep", Numeric: false}
	if err := json.Unmarshal([]byte(`null`), &s); err != nil || s.Value != "keep" {
		t.Errorf("Unmarshal(null) = %#v, %v", s, err)
	}
	var inStruct struct {
		Sub Subject `json:"sub"`
	}
	if err := json.Unmarshal([]byte(`{"sub": 5}`), &inStruct); err != nil || inStruct.Sub != (Subject{"5", true}) {
		t.Errorf("Unmarshal in struct = %#v, %v", inStruct.Sub, err)
	}
	if n, ok := (Subject{"5", true}).Int64(); !ok || n != 5 {
		t.Errorf("Int64 = %d, %v", n, ok)
	}
	if _, ok := (Subject{"5", false}).Int64(); ok {
		t.Error("Int64 of a string subject reported ok")
	}
}
