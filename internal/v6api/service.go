package v6api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// refreshMargin: the service account's access token is refreshed when it
// expires within this margin (vantage6 access tokens live 6 hours).
const refreshMargin = time.Minute

// service is the optional service account. It logs in with
// POST /token/user, keeps the access and refresh tokens, refreshes the access
// token with POST /token/refresh before it expires or when the API refuses
// it, and logs in again when the refresh fails, as vantage6's own clients do.
//
// With a token URL (vantage6 5.x, whose API has no password login), it is a
// Keycloak client instead: username is the client id, password the client
// secret, and it logs in with the OAuth 2 client-credentials grant at the
// token URL; it never refreshes, but logs in again.
type service struct {
	c        *client
	tokenURL string // the OIDC token endpoint; "" for vantage6 4.x's login
	username string
	password string // sent in the login body only; never logged
	now      func() time.Time
	log      *zap.Logger

	// lock guards the tokens; a channel so that waiting honours ctx.
	lock    chan struct{}
	access  string
	refresh string
	exp     time.Time // the access token's exp; zero when unknown
}

func newService(c *client, tokenURL, username, password string, now func() time.Time, log *zap.Logger) *service {
	return &service{c: c, tokenURL: tokenURL, username: username, password: password, now: now, log: log,
		lock: make(chan struct{}, 1)}
}

// oidc reports whether the account logs in at Keycloak (vantage6 5.x).
func (s *service) oidc() bool { return s.tokenURL != "" }

// tokenAnswer is the answer of POST /token/user and POST /token/refresh.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	RefreshURL   string `json:"refresh_url"`
	// With two-factor authentication the login answers 200 with a message
	// or a QR code URI instead of tokens.
	Msg   string `json:"msg"`
	QRURI string `json:"qr_uri"`
}

// token returns an access token to use: the current one unless it is
// rejected (the API refused it) or expires within refreshMargin, in which
// case it refreshes it, or logs in again.
func (s *service) token(ctx context.Context, rejected string) (string, error) {
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("service account: waiting for its token: %w", ctx.Err())
	}
	defer func() { <-s.lock }()

	if s.access != "" && s.access != rejected && (s.exp.IsZero() || s.now().Add(refreshMargin).Before(s.exp)) {
		return s.access, nil
	}
	if s.refresh != "" {
		reason := "access token expires soon"
		if s.access == rejected {
			reason = "the API refused the access token"
		}
		err := s.doRefresh(ctx)
		if err == nil {
			s.log.Info("service account token refreshed", zap.String("username", s.username),
				zap.String("reason", reason), zap.Time("exp", s.exp))
			return s.access, nil
		}
		if ctx.Err() != nil {
			return "", err
		}
		s.log.Info("service account token refresh failed: logging in again", zap.String("username", s.username),
			zap.Error(err))
	}
	if err := s.login(ctx); err != nil {
		return "", err
	}
	s.log.Info("service account logged in", zap.String("username", s.username), zap.Time("exp", s.exp))
	return s.access, nil
}

func (s *service) login(ctx context.Context) error {
	s.access, s.refresh, s.exp = "", "", time.Time{}
	if s.oidc() {
		return s.clientCredentials(ctx)
	}
	var a tokenAnswer
	_, err := s.c.do(ctx, call{
		name: callLogin, method: http.MethodPost, tmpl: "/token/user", path: "/token/user",
		body: map[string]string{"username": s.username, "password": s.password},
	}, &a)
	if err != nil {
		return fmt.Errorf("service account %q: login: %w", s.username, err)
	}
	if a.AccessToken == "" {
		why := "no access_token in the answer"
		if a.QRURI != "" || a.Msg != "" {
			why = "the server asks for two-factor authentication, which the service account cannot do"
		}
		return fmt.Errorf("service account %q: login: %s", s.username, why)
	}
	s.set(a)
	return nil
}

// clientCredentials logs in at the token URL with the client-credentials
// grant. The refresh token, if Keycloak sends one, is not kept: the next
// login is another client-credentials grant.
func (s *service) clientCredentials(ctx context.Context) error {
	var a tokenAnswer
	_, err := s.c.do(ctx, call{
		name: callOIDCLogin, method: http.MethodPost, tmpl: "<token URL>", url: s.tokenURL,
		form: url.Values{"grant_type": {"client_credentials"}, "client_id": {s.username}, "client_secret": {s.password}},
	}, &a)
	if err != nil {
		return fmt.Errorf("service account %q: client-credentials login: %w", s.username, err)
	}
	if a.AccessToken == "" {
		return fmt.Errorf("service account %q: client-credentials login: no access_token in the answer", s.username)
	}
	a.RefreshToken = ""
	s.set(a)
	return nil
}

func (s *service) doRefresh(ctx context.Context) error {
	var a tokenAnswer
	_, err := s.c.do(ctx, call{
		name: callRefresh, method: http.MethodPost, tmpl: "/token/refresh", path: "/token/refresh",
		bearer: s.refresh,
	}, &a)
	if err != nil {
		return fmt.Errorf("service account %q: refresh: %w", s.username, err)
	}
	if a.AccessToken == "" {
		return fmt.Errorf("service account %q: refresh: no access_token in the answer", s.username)
	}
	s.set(a)
	return nil
}

func (s *service) set(a tokenAnswer) {
	s.access = a.AccessToken
	if a.RefreshToken != "" {
		s.refresh = a.RefreshToken
	}
	s.exp = expiry(a.AccessToken)
}

// expiry reads a token's exp without checking its signature: the token comes
// from the API itself and is only used to decide when to refresh it.
func expiry(token string) time.Time {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		return time.Time{}
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return time.Time{}
	}
	return exp.Time
}

// do sends cl with the service account's token; when the API refuses the
// token (401), it refreshes it (or logs in again) and retries once.
func (s *service) do(ctx context.Context, cl call, out any) (http.Header, error) {
	tok, err := s.token(ctx, "")
	if err != nil {
		return nil, err
	}
	cl.bearer = tok
	h, err := s.c.do(ctx, cl, out)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
		return h, err
	}
	if tok, err = s.token(ctx, tok); err != nil {
		return nil, err
	}
	cl.bearer = tok
	return s.c.do(ctx, cl, out)
}
