package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// cookieName is the session cookie; its Path is /console/.
const cookieName = "eventserver_console"

// keyLabel derives the signing key from the console token: a new token
// makes every session invalid, on every replica.
const keyLabel = "eventserver console session v1"

// sessions signs and checks the stateless session cookie: a value
// "v1.<expiry unix>.<nonce hex>" and its HMAC-SHA256, valid on every
// replica that has the same console token.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

var errBadSession = errors.New("console: no valid session")

func newSessions(token string, ttl time.Duration, now func() time.Time) *sessions {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(keyLabel))
	return &sessions{key: m.Sum(nil), ttl: ttl, now: now}
}

// tokenOK compares a presented token with the console token in constant
// time (for equal lengths; the length is not a secret worth hiding, and
// both are hashed first so even that does not leak through timing).
func tokenOK(presented, want string) bool {
	a := sha256.Sum256([]byte(presented))
	b := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func (s *sessions) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return m.Sum(nil)
}

// issue makes a new session value.
func (s *sessions) issue() (string, time.Time) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	exp := s.now().Add(s.ttl).Truncate(time.Second)
	payload := "v1." + strconv.FormatInt(exp.Unix(), 10) + "." + hex.EncodeToString(nonce[:])
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac("session", payload)), exp
}

// check verifies a session value and returns its nonce.
func (s *sessions) check(v string) (string, error) {
	parts := strings.Split(v, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return "", errBadSession
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		return "", errBadSession
	}
	payload := strings.Join(parts[:3], ".")
	if !hmac.Equal(sig, s.mac("session", payload)) {
		return "", errBadSession
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || !s.now().Before(time.Unix(exp, 0)) {
		return "", errBadSession
	}
	return parts[2], nil
}

// fromRequest returns the nonce of the request's valid session cookie.
func (s *sessions) fromRequest(r *http.Request) (string, error) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", errBadSession
	}
	return s.check(c.Value)
}

// csrf is the sign-out form's token of a session: bound to its nonce.
func (s *sessions) csrf(nonce string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", nonce))
}

func (s *sessions) csrfOK(nonce, presented string) bool {
	return hmac.Equal([]byte(presented), []byte(s.csrf(nonce)))
}

// cookie is the session cookie for value (empty, with maxAge -1, clears
// it). Secure when the request came over TLS to this process, or through a
// proxy that says it ended TLS (X-Forwarded-Proto: https): believing that
// header from anybody is safe, since it can only make the cookie stricter.
func cookie(r *http.Request, value string, exp time.Time) *http.Cookie {
	c := &http.Cookie{
		Name:     cookieName,
		Value:    value,
		Path:     "/console/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = exp
		c.MaxAge = int(time.Until(exp).Seconds())
	}
	return c
}

// sameOrigin reports whether a POST comes from a page of this server: the
// host:port of its Origin (or, when a browser sends none, its Referer) must
// be the request's Host or X-Forwarded-Host, the same rule as the Socket.IO
// endpoint's origin check. The scheme may be http or https, so that a proxy
// that ends TLS in front does not refuse every sign-in; a page of another
// scheme on the same host and port would be this server's page anyway. A
// cross-site form cannot set X-Forwarded-Host, and a script that sets it is
// stopped by CORS's preflight, which this route does not answer. A request
// with neither header is refused.
func sameOrigin(r *http.Request) bool {
	src, ok := r.Header["Origin"]
	if !ok {
		src = r.Header["Referer"]
	}
	if len(src) != 1 || src[0] == "" || src[0] == "null" {
		return false
	}
	u, err := url.Parse(src[0])
	if err != nil || (!strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https")) || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	fwd := r.Header.Get("X-Forwarded-Host")
	return fwd != "" && strings.EqualFold(u.Host, fwd)
}
