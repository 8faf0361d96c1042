// Package auth verifies the JWTs that vantage6 clients present to the event
// server, and mints tokens for tests and the `eventserver token` command.
//
// vantage6 4.14 signs access tokens with HS256 and its jwt_secret_key, with a
// numeric `sub`; vantage6 5 uses Keycloak RS256 tokens with a string `sub`.
// A Verifier accepts either, depending on the keys it is given, and refuses
// every algorithm that does not belong to the key it would be checked with.
package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/eventserver/eventserver/pkg/textclip"
)

var (
	// ErrExpired means that the token was genuine but its exp has passed
	// (beyond the leeway). It maps to the protocol event expired_token.
	ErrExpired = errors.New("token expired")
	// ErrInvalid means that the token cannot be accepted for any other
	// reason. It maps to the protocol event invalid_token.
	ErrInvalid = errors.New("token invalid")
)

const (
	// DefaultLeeway is the clock skew allowed when Config.Leeway is zero.
	DefaultLeeway = 10 * time.Second

	// maxTokenLen bounds the work done on a hostile token.
	maxTokenLen = 64 << 10

	// maxNumericDate is 9999-12-31T23:59:59Z: later dates are refused rather
	// than overflowing time arithmetic.
	maxNumericDate = 253402300799
)

// Config holds the keys and clock of a Verifier.
type Config struct {
	// HMACSecret is the HS256/HS384/HS512 key (vantage6's jwt_secret_key).
	// When empty, HS tokens are refused.
	HMACSecret []byte
	// PublicKeyPEM is an RSA or ECDSA public key, as a PEM block of type
	// "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS #1) or "CERTIFICATE" (whose
	// validity dates are not checked). When empty, RS/PS/ES tokens are
	// refused.
	PublicKeyPEM []byte
	// JWKS, when set, verifies RS/PS/ES tokens that name a key (kid) with
	// the keys an OpenID provider such as Keycloak publishes. A token
	// without a kid is checked with PublicKeyPEM, if any.
	JWKS *JWKSConfig
	// Issuer, when set, must be the token's iss.
	Issuer string
	// Audience, when set, must be in the token's aud (a string or a list).
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Claims are the verified claims of a token.
type Claims struct {
	// Subject is the `sub` claim: an integral JSON number or a non-empty
	// string.
	Subject Subject
	// ClientType is the `client_type` claim (user, node or container in
	// vantage6 4.14), "" if absent.
	ClientType string
	// ExpiresAt is the `exp` claim, which every accepted token has.
	ExpiresAt time.Time
	// Raw holds all the claims, with numbers as json.Number.
	Raw map[string]any
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	secret []byte
	rsaKey *rsa.PublicKey
	ecKey  *ecdsa.PublicKey
	// ecAlg is the one ES algorithm that matches the curve of ecKey.
	ecAlg  string
	parser *jwt.Parser
	leeway time.Duration
	jwks   *jwks // nil without Config.JWKS
}

// Start fetches the JWK Set, if any, and starts its refresh; it returns
// once the first fetch has ended, whether it worked or not (tokens are
// refused until keys arrive). Without a JWK Set it does nothing.
func (v *Verifier) Start() error {
	if v == nil || v.jwks == nil {
		return nil
	}
	return v.jwks.start()
}

// Shutdown stops the refresh of the JWK Set, if any. It does not wait, and
// returns nil; ctx is for the shape shared with the other components.
func (v *Verifier) Shutdown(context.Context) error {
	if v != nil && v.jwks != nil {
		v.jwks.close()
	}
	return nil
}

// Leeway is the clock skew allowed on exp, nbf and iat.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

var (
	hmacAlgs = []string{"HS256", "HS384", "HS512"}
	rsaAlgs  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	// ecAlgByCurve maps a curve name to the one algorithm that uses it.
	ecAlgByCurve = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
)

// NewVerifier returns a Verifier for cfg. At least one of HMACSecret and
// PublicKeyPEM must be set; any non-empty secret is accepted, since vantage6
// secrets may be short.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.HMACSecret) == 0 && len(cfg.PublicKeyPEM) == 0 && cfg.JWKS == nil {
		return nil, errors.New("auth: no key configured: set an HMAC secret, a public key, a JWKS URL, or several")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: leeway %v is negative", cfg.Leeway)
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}

	v := &Verifier{leeway: leeway}
	var algs []string
	if len(cfg.HMACSecret) > 0 {
		v.secret = bytes.Clone(cfg.HMACSecret)
		algs = append(algs, hmacAlgs...)
	}
	if len(cfg.PublicKeyPEM) > 0 {
		if len(v.secret) > 0 && bytes.Equal(bytes.TrimSpace(v.secret), bytes.TrimSpace(cfg.PublicKeyPEM)) {
			return nil, errors.New("auth: the HMAC secret must not be the public key")
		}
		key, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < 1024 {
				return nil, fmt.Errorf("auth: RSA public key has %d bits, want at least 1024", k.N.BitLen())
			}
			v.rsaKey = k
			algs = append(algs, rsaAlgs...)
		case *ecdsa.PublicKey:
			name := ""
			if k.Curve != nil && k.Curve.Params() != nil {
				name = k.Curve.Params().Name
			}
			alg, ok := ecAlgByCurve[name]
			if !ok {
				return nil, fmt.Errorf("auth: ECDSA public key uses curve %q, want P-256, P-384 or P-521", name)
			}
			v.ecKey, v.ecAlg = k, alg
			algs = append(algs, alg)
		default:
			return nil, fmt.Errorf("auth: public key is %T, want an RSA or ECDSA key", key)
		}
	}

	if cfg.JWKS != nil {
		for _, a := range append(append([]string(nil), rsaAlgs...), "ES256", "ES384", "ES512") {
			if !slices.Contains(algs, a) {
				algs = append(algs, a)
			}
		}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithLeeway(leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithJSONNumber(),
		jwt.WithTimeFunc(now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	if cfg.JWKS != nil {
		j, err := newJWKS(*cfg.JWKS)
		if err != nil {
			return nil, err
		}
		v.jwks = j
	}
	return v, nil
}

// parsePublicKey decodes the first PEM block of data.
func parsePublicKey(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("auth: public key: no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: public key: parse PKIX: %w", err)
		}
		return key, nil
	case "RSA PUBLIC KEY":
		key, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: public key: parse PKCS #1: %w", err)
		}
		return key, nil
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: public key: parse certificate: %w", err)
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("auth: public key: PEM block type %q is not supported, want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", textclip.Cut(block.Type, textclip.Name))
}

// keyFunc picks the key for the token's algorithm, and refuses an algorithm
// that does not belong to that key. An HS token is only ever checked with the
// HMAC secret, never with the public key.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(v.secret) == 0 {
			return nil, fmt.Errorf("algorithm %s needs an HMAC secret, none is configured", alg)
		}
		return v.secret, nil
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS, *jwt.SigningMethodECDSA:
		if _, named := t.Header["kid"].(string); named && v.jwks != nil {
			return v.jwks.key(t)
		}
		if v.jwks != nil && v.rsaKey == nil && v.ecKey == nil {
			return v.jwks.key(t) // says the kid is missing
		}
	}
	switch t.Method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		if v.rsaKey == nil {
			return nil, fmt.Errorf("algorithm %s needs an RSA public key, none is configured", alg)
		}
		return v.rsaKey, nil
	case *jwt.SigningMethodECDSA:
		if v.ecKey == nil {
			return nil, fmt.Errorf("algorithm %s needs an ECDSA public key, none is configured", alg)
		}
		if alg != v.ecAlg {
			return nil, fmt.Errorf("algorithm %s does not match the ECDSA key's curve (want %s)", alg, v.ecAlg)
		}
		return v.ecKey, nil
	}
	return nil, fmt.Errorf("algorithm %s is not accepted", alg)
}

// Verify checks the token's signature, algorithm and claims. It returns an
// error wrapping ErrExpired when a genuine token's exp has passed, and one
// wrapping ErrInvalid for every other failure. Error messages never contain
// the token.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if v == nil || v.parser == nil {
		return nil, invalidf("verifier is not configured")
	}
	if token == "" {
		return nil, invalidf("empty token")
	}
	if len(token) > maxTokenLen {
		return nil, invalidf("token is %d bytes long, more than %d", len(token), maxTokenLen)
	}

	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, mc, v.keyFunc)
	expired := false
	if err != nil {
		// jwt reports ErrTokenExpired only once the signature has been
		// verified, so an expired forgery stays invalid.
		if !onlyExpired(err) {
			return nil, invalidf("%v", err)
		}
		expired = true
	}
	if tok != nil {
		if m, ok := tok.Claims.(jwt.MapClaims); ok {
			mc = m
		}
	}

	claims, err := checkClaims(mc)
	if err != nil {
		return nil, err
	}
	if expired {
		return nil, fmt.Errorf("auth: %w: exp %s has passed", ErrExpired, claims.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return claims, nil
}

// checkClaims applies the rules that jwt does not know about and builds the
// Claims. Failures wrap ErrInvalid.
func checkClaims(mc jwt.MapClaims) (*Claims, error) {
	for _, name := range []string{"exp", "nbf", "iat"} {
		if err := checkNumericDate(mc, name); err != nil {
			return nil, err
		}
	}
	exp, err := mc.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, invalidf(`claim "exp" is missing or not a number`)
	}

	if raw, ok := mc["type"]; ok {
		typ, isString := raw.(string)
		switch {
		case !isString:
			return nil, invalidf(`claim "type" is %s, want the string "access"`, jsonKind(raw))
		case typ != "access":
			return nil, invalidf(`claim "type" is %q, want "access"`, textclip.Cut(typ, textclip.Name))
		}
	}

	raw, ok := mc["sub"]
	if !ok {
		return nil, invalidf(`claim "sub" is missing`)
	}
	sub, err := SubjectFromClaim(raw)
	if err != nil {
		return nil, invalidf(`claim "sub" %v`, errSubjectReason(raw))
	}

	clientType := ""
	if raw, ok := mc["client_type"]; ok {
		s, isString := raw.(string)
		if !isString {
			return nil, invalidf(`claim "client_type" is %s, want a string`, jsonKind(raw))
		}
		clientType = s
	}

	return &Claims{
		Subject:    sub,
		ClientType: clientType,
		ExpiresAt:  exp.Time,
		Raw:        map[string]any(mc),
	}, nil
}

// errSubjectReason describes why raw is not a subject, without echoing it.
func errSubjectReason(raw any) string {
	switch raw.(type) {
	case string:
		return "is an empty string"
	case json.Number, float64:
		return "is a number that is not an integer (or is out of range)"
	}
	return fmt.Sprintf("is %s, want an integer or a non-empty string", jsonKind(raw))
}

// checkNumericDate refuses a present date claim that is not a finite number
// within years 1970 to 9999.
func checkNumericDate(mc jwt.MapClaims, name string) error {
	raw, ok := mc[name]
	if !ok {
		return nil
	}
	var f float64
	switch x := raw.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return invalidf("claim %q is not a valid number", name)
		}
	case float64:
		f = x
	default:
		return invalidf("claim %q is %s, want a number", name, jsonKind(raw))
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return invalidf("claim %q is out of range", name)
	}
	return nil
}

// onlyExpired reports whether err is a claims-validation error whose only
// cause is an expired token.
func onlyExpired(err error) bool {
	return errors.Is(err, jwt.ErrTokenExpired) && onlyCauses(err, jwt.ErrTokenExpired, jwt.ErrTokenInvalidClaims)
}

// onlyCauses reports whether every leaf of err's tree is one of allowed.
func onlyCauses(err error, allowed ...error) bool {
	for _, a := range allowed {
		if err == a {
			return true
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		errs := u.Unwrap()
		if len(errs) == 0 {
			return false
		}
		for _, e := range errs {
			if !onlyCauses(e, allowed...) {
				return false
			}
		}
		return true
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			return onlyCauses(e, allowed...)
		}
	}
	return false
}

// invalidf returns an error wrapping ErrInvalid. Callers must not pass the
// token or a key.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("auth: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
