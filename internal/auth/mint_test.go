package auth

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"
)

func TestMintVerifyRoundTrip(t *testing.T) {
	secret := []byte(testSecret)
	v := newVerifier(t, Config{HMACSecret: secret})

	tests := []struct {
		name     string
		claims   map[string]any
		wantSub  Subject
		wantType string
	}{
		{"node", map[string]any{"sub": 3, "client_type": "node", "name": "org1-node"}, Subject{"3", true}, "node"},
		{"user string sub", map[string]any{"sub": "alice", "client_type": "user"}, Subject{"alice", false}, "user"},
		{"Subject value", map[string]any{"sub": Subject{"9", true}}, Subject{"9", true}, ""},
		{"type overridden", map[string]any{"sub": 1, "type": "refresh"}, Subject{"1", true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make(map[string]any, len(tt.claims))
			for k, v := range tt.claims {
				in[k] = v
			}
			token, err := Mint(secret, tt.claims, time.Hour, testNow)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if len(tt.claims) != len(in) {
				t.Errorf("Mint modified its claims: %v", tt.claims)
			}
			c, err := v.Verify(token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject != tt.wantSub || c.ClientType != tt.wantType {
				t.Errorf("got sub %#v client_type %q", c.Subject, c.ClientType)
			}
			if !c.ExpiresAt.Equal(testNow.Add(time.Hour)) {
				t.Errorf("ExpiresAt = %v", c.ExpiresAt)
			}
			if c.Raw["type"] != "access" {
				t.Errorf("type = %v", c.Raw["type"])
			}
			for _, k := range []string{"iat", "nbf"} {
				if c.Raw[k] != json.Number("1795627487") {
					t.Errorf("%s = %v", k, c.Raw[k])
				}
			}
			if jti, _ := c.Raw["jti"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(jti) {
				t.Errorf("jti = %q, want 32 hex digits", jti)
			}
		})
	}
}

func TestMintKeepsJTIAndIsRandom(t *testing.T) {
	secret := []byte(testSecret)
	v := newVerifier(t, Config{HMACSecret: secret})
	token, err := Mint(secret, map[string]any{"sub": 1, "jti": "fixed"}, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if c.Raw["jti"] != "fixed" {
		t.Errorf("jti = %v, want fixed", c.Raw["jti"])
	}

	a, _ := Mint(secret, map[string]any{"sub": 1}, time.Hour, testNow)
	b, _ := Mint(secret, map[string]any{"sub": 1}, time.Hour, testNow)
	if a == b {
		t.Error("two tokens minted with the same claims are equal: jti is not random")
	}
}

func TestMintExpiry(t *testing.T) {
	secret := []byte(testSecret)
	v := newVerifier(t, Config{HMACSecret: secret})
	token, err := Mint(secret, map[string]any{"sub": 1}, time.Minute, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(token); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify = %v, want ErrExpired", err)
	}
	other := newVerifier(t, Config{HMACSecret: []byte("other")})
	token, _ = Mint(secret, map[string]any{"sub": 1}, time.Hour, testNow)
	if _, err := other.Verify(token); !errors.Is(err, ErrInvalid) {
		t.Errorf("Verify with another secret = %v, want ErrInvalid", err)
	}
}

func TestMintErrors(t *testing.T) {
	if _, err := Mint(nil, map[string]any{"sub": 1}, time.Hour, testNow); err == nil {
		t.Error("Mint with no secret succeeded")
	}
	if _, err := Mint([]byte("k"), map[string]any{"sub": 1}, 0, testNow); err == nil {
		t.Error("Mint with zero ttl succeeded")
	}
	if _, err := Mint([]byte("k"), map[string]any{"bad": func() {}}, time.Hour, testNow); err == nil {
		t.Error("Mint with an unencodable claim succeeded")
	}
	if _, err := Mint([]byte("k"), nil, time.Hour, time.Time{}); err != nil {
		t.Errorf("Mint with nil claims and zero now: %v", err)
	}
}
