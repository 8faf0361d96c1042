// Package v6api resolves who a vantage6 4.x client is by asking the vantage6
// REST API, with the client's own token, what the 4.14 server reads from its
// database: a node's name, organization and collaboration; a user's name,
// organization, event-receive scope and collaborations. It implements
// identity.Resolver.
//
// Calls, all relative to the API's base URL (e.g. https://v6.example.org/api)
// and sent with "Authorization: Bearer <the client's access token>":
//
//	node   GET  /node/<sub>                                   name, organization.id, collaboration.id
//	user   POST /token/user/validate                          user_id (must equal sub), username, organization_id
//	       GET  /user/<sub>?include_permissions=true          permissions.rules: the user's rule ids (roles and direct)
//	       GET  /rule?name=event&no_pagination=1              rule ids -> (scope, operation)
//	       GET  /collaboration?organization_id=<org>&per_page=<n>&page=<k>
//	                                                          the collaborations of the user's organization
//
// A user's event scope is the widest of their "event" RECEIVE rules, in the
// order 4.14's websockets.py tries them: GLOBAL, then COLLABORATION, then
// ORGANIZATION. 4.14 checks each scope exactly (User.can), and defines no
// event rule at OWN scope, so an OWN rule, like no rule at all, gives no rooms.
//
// Every collaboration, for a user with GLOBAL scope, is listed with the
// optional service account (POST /token/user with its username and password;
// its token refreshed with POST /token/refresh). Without one, the user's own
// token lists every collaboration when the user holds the collaboration
// GLOBAL VIEW rule (GET /rule?name=collaboration&no_pagination=1 tells);
// otherwise the user joins only the collaborations of their own organization
// and a warning says why. When the user's own token may not list the
// collaborations of their organization (it needs a collaboration VIEW rule),
// the service account lists them; without one the lookup fails.
//
// Every failure (a refused token, an API error, an API that is down or slower
// than the timeout) fails the lookup with an error wrapping auth.ErrInvalid,
// logs which call failed, and counts it. Identities are cached per client
// (type and sub) for the cache TTL; identical lookups in flight are shared.
//
// # vantage6 5.x
//
// Config.Version picks the API: "4" (the default, all of the above), "5", or
// "auto", which asks GET /version (unauthenticated in 4.x and 5.x; answers
// {"version": "4.14.0"} or {"version": "5.0.0"}) once, at first use, and
// remembers the major version; while it cannot tell, lookups fail with an
// error that says to set the version.
//
// A 5.x token comes from Keycloak: sub is the Keycloak id (any non-empty
// string of at most MaxSubject5 bytes: it is only a key) and there is no
// client_type. The claim vantage6_client_type (ClientTypeClaim5) says "node"
// or "user": Keycloak's hard-coded claim mappers put it in every token of the
// public (user) client, of users' service accounts and of nodes' service
// accounts, and 5.x's own route decorators (only_for) read that claim to
// admit a token. It is therefore the robust choice: probing /user/me and then
// /node/me would cost a call and rely on the 500 that vantage6 answers a
// token of the wrong type (an uncaught UnauthorizedError or assertion),
// which no other failure distinguishes. Calls, with the client's own token:
//
//	node   GET  /node/me                                      id, name, organization.id, collaboration.id
//	user   GET  /user/me?include_permissions=true             id, username, organization.id, permissions.rules
//	       GET  /rule?name=event&no_pagination=1              as 4.x (5.x's scopes and operations are lower case)
//	       GET  /collaboration?organization_id=<org>&...      as 4.x
//
// The numeric database id of the answer is the Identity's ID (rooms and
// node-online use numeric ids); a keycloak_id in the answer must equal sub.
// Identities are cached under "v5:<type>:<sub>".
//
// The 5.x API has no password login (POST /token/user is gone; only
// /token/container remains), so a 5.x service account is a Keycloak client:
// with Config.TokenURL, Username and Password are its client id and secret
// and it logs in with the client-credentials grant (logging in again instead
// of refreshing). Without one, GLOBAL users are served as in 4.x: with their
// own token when they hold collaboration GLOBAL VIEW, else their
// organization's collaborations and a warning.
//
// Resolver.Task reads a task (GET /task/<id>) for 5.x's events with the
// node's token (task COLLABORATION VIEW is a node's) or the service account.
package v6api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/validate"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/textclip"
)

const (
	// DefaultTimeout bounds one API call when Config.Timeout is zero.
	DefaultTimeout = 5 * time.Second
	// DefaultPageSize is the per_page of collaboration listings when
	// Config.PageSize is zero (vantage6's own default is 10, with no maximum).
	DefaultPageSize = 100
	// maxPages bounds a collaboration listing.
	maxPages = 1000
)

// Config configures a Resolver.
type Config struct {
	// BaseURL is the API's base URL with its path, e.g.
	// https://v6.example.org/api. Required; http or https, with a host and
	// without user information.
	BaseURL string
	// Username and Password are the optional service account; both or
	// neither. With TokenURL (vantage6 5.x) they are the Keycloak client id
	// and client secret of a service account.
	Username string
	Password string
	// Version is the vantage6 major version of the API: "4" (also ""),
	// "5", or "auto" (asked once from GET /version at first use).
	Version string
	// TokenURL is the OpenID Connect token endpoint of vantage6 5.x's
	// Keycloak, e.g. https://auth.example.org/realms/vantage6/protocol/openid-connect/token:
	// the service account logs in there with the client-credentials grant,
	// since the 5.x API has no password login. Only with Version "5" or
	// "auto".
	TokenURL string
	// Timeout bounds each call (the caller's context bounds it too). Zero:
	// DefaultTimeout.
	Timeout time.Duration
	// CacheTTL is how long a resolved identity is reused. Zero: not cached
	// (identical lookups in flight are still shared).
	CacheTTL time.Duration
	// PageSize is the per_page of collaboration listings. Zero:
	// DefaultPageSize.
	PageSize int
	// HTTPClient sends the calls. Nil: a client of the resolver's own, whose
	// idle connections Close closes.
	HTTPClient *http.Client
	// Logger is the resolver's logger; nil: none.
	Logger *zap.Logger
	// Registerer receives the metrics (eventserver_v6_*); nil: none.
	Registerer prometheus.Registerer
	// Now is the clock of the cache and of the service token's expiry; nil:
	// time.Now.
	Now func() time.Time
}

// Resolver is an identity.Resolver that asks the vantage6 API. It is safe for
// concurrent use.
type Resolver struct {
	c        *client
	version  int          // 4 or 5; 0: auto
	detected atomic.Int32 // the detected major version in auto mode; 0: not yet
	svcWarn  sync.Once
	svc      *service // nil without a service account
	pageSize int
	now      func() time.Time
	log      *zap.Logger
	m        *metrics
	cache    *cache
	flights  singleflight.Group
	ownHTTP  *http.Transport // closed by Close; nil when the caller gave a client
}

var _ identity.Resolver = (*Resolver)(nil)

// New builds a Resolver. It makes no call: the service account logs in, and
// the version is detected, on first use.
func New(cfg Config) (*Resolver, error) {
	if err := validate.V6URL(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("v6api: base URL: %w", err)
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("v6api: the service account needs both a username and a password")
	}
	version, err := validate.V6Version(cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("v6api: %w", err)
	}
	if cfg.TokenURL != "" {
		if version == 4 {
			return nil, errors.New("v6api: a token URL (Keycloak's) is for vantage6 5.x: set the version to 5 or auto")
		}
		if err := validate.V6URL(cfg.TokenURL); err != nil {
			return nil, fmt.Errorf("v6api: token URL: %w", err)
		}
		if cfg.Username == "" {
			return nil, errors.New("v6api: a token URL needs the service account's client id and secret")
		}
	}
	if version == 5 && cfg.Username != "" && cfg.TokenURL == "" {
		return nil, errors.New("v6api: the vantage6 5.x API has no password login: give the service account " +
			"as a Keycloak client id and secret with the token URL (EVENTSERVER_V6_TOKEN_URL)")
	}
	if cfg.Timeout < 0 || cfg.CacheTTL < 0 || cfg.PageSize < 0 {
		return nil, errors.New("v6api: timeout, cache TTL and page size must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("v6api: metrics: %w", err)
	}
	r := &Resolver{
		version:  version,
		pageSize: cfg.PageSize,
		now:      cfg.Now,
		log:      cfg.Logger,
		m:        m,
		cache:    newCache(cfg.CacheTTL),
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		r.ownHTTP = tr
		hc = &http.Client{Transport: tr}
	}
	r.c = &client{base: strings.TrimRight(cfg.BaseURL, "/"), http: hc, timeout: cfg.Timeout, m: m}
	if cfg.Username != "" {
		r.svc = newService(r.c, cfg.TokenURL, cfg.Username, cfg.Password, cfg.Now, cfg.Logger)
	}
	return r, nil
}

// Shutdown closes the idle connections of the resolver's own HTTP client.
// It does not wait, and returns nil; ctx is for the shape shared with the
// other components.
func (r *Resolver) Shutdown(context.Context) error {
	if r.ownHTTP != nil {
		r.ownHTTP.CloseIdleConnections()
	}
	return nil
}

// HasServiceAccount reports whether a service account is configured.
func (r *Resolver) HasServiceAccount() bool { return r.svc != nil }

// lookupError is a failed lookup: it wraps auth.ErrInvalid and the cause
// (often a *CallError).
type lookupError struct{ err error }

func (e *lookupError) Error() string   { return "v6api: " + e.err.Error() }
func (e *lookupError) Unwrap() []error { return []error{auth.ErrInvalid, e.err} }

func invalid(err error) error { return &lookupError{err: err} }

func invalidf(format string, args ...any) error { return invalid(fmt.Errorf(format, args...)) }

// Resolve implements identity.Resolver. claims must come from a verified
// token; the token is sent to the API as the client's own credentials.
func (r *Resolver) Resolve(ctx context.Context, token string, claims *auth.Claims) (*identity.Identity, error) {
	if claims == nil {
		return nil, invalidf("no claims")
	}
	major, err := r.APIVersion(ctx)
	if err != nil {
		return nil, err
	}
	if major == 5 {
		return r.resolve5(ctx, token, claims)
	}
	id, ok := claims.Subject.Int64()
	if !ok || id <= 0 {
		return nil, invalidf(`claim "sub" must be a positive integer (a vantage6 4.x token) to ask the vantage6 API`)
	}
	kind, err := rooms.ParseKind(claims.ClientType)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	if token == "" {
		return nil, invalidf("no token to ask the vantage6 API with")
	}

	key := string(kind) + ":" + strconv.FormatInt(id, 10)
	fields := []zap.Field{zap.String("client_type", string(kind)), zap.Int64("client_id", id)}
	return r.shared(ctx, key, fields, func(ctx context.Context) (*identity.Identity, error) {
		return r.lookup(ctx, kind, id, token)
	})
}

// detach returns a context for a shared lookup: it does not stop when the
// caller that started it goes away, but keeps its deadline.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	fctx := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(fctx, dl)
	}
	return fctx, func() {}
}

// shared runs lookup under key: from the cache when it holds key, else
// once for every identical lookup in flight, caching the answer. fields
// name the client in the logs.
func (r *Resolver) shared(ctx context.Context, key string, fields []zap.Field,
	lookup func(context.Context) (*identity.Identity, error)) (*identity.Identity, error) {
	if v, ok := r.cache.get(key, r.now()); ok {
		r.m.cache.WithLabelValues("hit").Inc()
		return clone(v.(*identity.Identity)), nil
	}

	led := false
	ch := r.flights.DoChan(key, func() (any, error) {
		led = true
		// A lookup that ended just before this one started has filled the cache.
		if v, ok := r.cache.get(key, r.now()); ok {
			r.m.cache.WithLabelValues("hit").Inc()
			return v, nil
		}
		r.m.cache.WithLabelValues("miss").Inc()
		fctx, cancel := detach(ctx)
		defer cancel()
		start := time.Now()
		ident, err := lookup(fctx)
		if err != nil {
			f := append(slices.Clone(fields), zap.Duration("took", time.Since(start)))
			var ce *CallError
			if errors.As(err, &ce) {
				f = append(f, ce.fields()...)
			}
			r.log.Warn("vantage6 API lookup failed: the client gets invalid_token", append(f, zap.Error(err))...)
			return nil, err
		}
		f := append(slices.Clone(fields), zap.String("name", ident.Name), zap.String("scope", string(ident.Scope)),
			zap.Int("collaborations", len(ident.CollaborationIDs)), zap.Duration("took", time.Since(start)))
		r.log.Debug("vantage6 API lookup", f...)
		r.cache.put(key, ident, r.now())
		return ident, nil
	})
	select {
	case res := <-ch:
		if !led {
			r.m.cache.WithLabelValues("shared").Inc()
		}
		if res.Err != nil {
			return nil, res.Err
		}
		return clone(res.Val.(*identity.Identity)), nil
	case <-ctx.Done():
		return nil, invalidf("gave up waiting for the vantage6 API: %w", ctx.Err())
	}
}

func (r *Resolver) lookup(ctx context.Context, kind rooms.Kind, id int64, token string) (*identity.Identity, error) {
	if kind == rooms.KindNode {
		return lookupResult(r.node(ctx, token, id))
	}
	return lookupResult(r.user(ctx, token, id))
}

// lookupResult passes a lookup's identity on, or its error wrapped once in
// auth.ErrInvalid.
func lookupResult(ident *identity.Identity, err error) (*identity.Identity, error) {
	if err != nil {
		var le *lookupError
		if !errors.As(err, &le) {
			err = invalid(err)
		}
		return nil, err
	}
	return ident, nil
}

// ref is vantage6's link to a related resource: {"id": 1, "link": ..., "methods": [...]}.
type ref struct {
	ID int64 `json:"id"`
}

func (r *Resolver) node(ctx context.Context, token string, id int64) (*identity.Identity, error) {
	var n struct {
		ID            int64  `json:"id"`
		Name          string `json:"name"`
		Type          string `json:"type"`
		Organization  *ref   `json:"organization"`
		Collaboration *ref   `json:"collaboration"`
	}
	sid := strconv.FormatInt(id, 10)
	_, err := r.c.do(ctx, call{name: callNode, method: http.MethodGet, tmpl: "/node/{id}", path: "/node/" + sid,
		bearer: token}, &n)
	if err != nil {
		return nil, err
	}
	switch {
	case n.ID != id:
		return nil, invalidf("GET /node/{id}: answered node %d for sub %d", n.ID, id)
	case n.Type != "" && n.Type != "node":
		return nil, invalidf("GET /node/{id}: answered type %q", textclip.Cut(n.Type, textclip.Name))
	case n.Organization == nil || n.Organization.ID <= 0:
		return nil, invalidf("GET /node/{id}: the answer has no organization.id")
	case n.Collaboration == nil || n.Collaboration.ID <= 0:
		return nil, invalidf("GET /node/{id}: the answer has no collaboration.id")
	}
	return nodeIdentity(id, n.Name, n.Organization.ID, n.Collaboration.ID), nil
}

// nodeIdentity is node id as the API describes it (4.x and 5.x alike); a
// node without a name is called node<id>.
func nodeIdentity(id int64, name string, organizationID, collaborationID int64) *identity.Identity {
	sid := strconv.FormatInt(id, 10)
	if name == "" {
		name = "node" + sid
	}
	return &identity.Identity{
		Kind:             rooms.KindNode,
		ID:               auth.Subject{Value: sid, Numeric: true},
		Name:             name,
		OrganizationID:   organizationID,
		CollaborationIDs: []int64{collaborationID},
	}
}

// rule is one entry of GET /rule.
type rule struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Scope     string `json:"scope"`
	Operation string `json:"operation"`
}

func (r *Resolver) user(ctx context.Context, token string, id int64) (*identity.Identity, error) {
	sid := strconv.FormatInt(id, 10)
	var v struct {
		UserID         *int64 `json:"user_id"`
		Username       string `json:"username"`
		OrganizationID *int64 `json:"organization_id"`
	}
	_, err := r.c.do(ctx, call{name: callValidate, method: http.MethodPost, tmpl: "/token/user/validate",
		path: "/token/user/validate", bearer: token}, &v)
	if err != nil {
		return nil, err
	}
	switch {
	case v.UserID == nil || *v.UserID != id:
		got := "none"
		if v.UserID != nil {
			got = strconv.FormatInt(*v.UserID, 10)
		}
		return nil, invalidf("POST /token/user/validate: answered user_id %s for sub %d", got, id)
	case v.OrganizationID == nil || *v.OrganizationID <= 0:
		return nil, invalidf("POST /token/user/validate: the answer has no organization_id")
	}
	org := *v.OrganizationID
	name := v.Username
	if name == "" {
		name = "user" + sid
	}

	// The user's rule ids and the event rules, side by side.
	var (
		userRules  []int64
		eventRules []rule
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var u struct {
			ID          int64 `json:"id"`
			Permissions *struct {
				Rules []int64 `json:"rules"`
			} `json:"permissions"`
		}
		_, err := r.c.do(gctx, call{name: callUser, method: http.MethodGet, tmpl: "/user/{id}", path: "/user/" + sid,
			query: url.Values{"include_permissions": {"true"}}, bearer: token}, &u)
		if err != nil {
			return err
		}
		if u.ID != id {
			return invalidf("GET /user/{id}: answered user %d for sub %d", u.ID, id)
		}
		if u.Permissions == nil {
			return invalidf("GET /user/{id}: the answer has no permissions")
		}
		userRules = u.Permissions.Rules
		return nil
	})
	g.Go(func() error {
		var err error
		eventRules, err = r.rules(gctx, token, "event")
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}

	ident := &identity.Identity{
		Kind:           rooms.KindUser,
		ID:             auth.Subject{Value: sid, Numeric: true},
		Name:           name,
		OrganizationID: org,
		Scope:          eventScope(userRules, eventRules),
	}
	if ident.Scope == rooms.ScopeNone {
		return ident, nil
	}
	cids, err := r.collaborations(ctx, token, ident, userRules, r.service(4))
	if err != nil {
		return nil, err
	}
	ident.CollaborationIDs = cids
	return ident, nil
}

// eventScope is the widest scope among the user's event RECEIVE rules, tried
// in 4.14's order. OWN, like no rule, is rooms.ScopeNone.
func eventScope(userRules []int64, eventRules []rule) rooms.Scope {
	has := map[string]bool{}
	for _, ru := range eventRules {
		if ru.Name == "event" && strings.EqualFold(ru.Operation, "RECEIVE") && slices.Contains(userRules, ru.ID) {
			has[strings.ToUpper(ru.Scope)] = true
		}
	}
	switch {
	case has["GLOBAL"]:
		return rooms.ScopeGlobal
	case has["COLLABORATION"]:
		return rooms.ScopeCollaboration
	case has["ORGANIZATION"]:
		return rooms.ScopeOrganization
	}
	return rooms.ScopeNone
}

// hasRule reports whether the user holds the rule (name, scope, operation).
func hasRule(userRules []int64, all []rule, name, scope, operation string) bool {
	for _, ru := range all {
		if ru.Name == name && strings.EqualFold(ru.Scope, scope) && strings.EqualFold(ru.Operation, operation) &&
			slices.Contains(userRules, ru.ID) {
			return true
		}
	}
	return false
}

// rules lists the rules named name. Rules are the same for every user (they
// are made when the API starts), so the list is cached and shared for the
// cache TTL whoever asks.
func (r *Resolver) rules(ctx context.Context, token, name string) ([]rule, error) {
	key := "rules:" + name
	if v, ok := r.cache.get(key, r.now()); ok {
		return v.([]rule), nil
	}
	var body struct {
		Data []rule `json:"data"`
	}
	_, err := r.c.do(ctx, call{name: callRules, method: http.MethodGet, tmpl: "/rule", path: "/rule",
		query: url.Values{"name": {name}, "no_pagination": {"1"}}, bearer: token}, &body)
	if err != nil {
		return nil, err
	}
	r.cache.put(key, body.Data, r.now())
	return body.Data, nil
}

// collaborations lists the collaborations whose rooms the user reads.
func (r *Resolver) collaborations(ctx context.Context, token string, ident *identity.Identity, userRules []int64,
	account *service) ([]int64, error) {
	own := func(ctx context.Context, cl call, out any) (http.Header, error) {
		cl.name, cl.bearer = callCollaborations, token
		return r.c.do(ctx, cl, out)
	}
	var svc func(ctx context.Context, cl call, out any) (http.Header, error)
	if account != nil {
		svc = func(ctx context.Context, cl call, out any) (http.Header, error) {
			cl.name = callServiceCollaborations
			return account.do(ctx, cl, out)
		}
	}
	org := ident.OrganizationID

	if ident.Scope == rooms.ScopeGlobal {
		if svc != nil {
			return r.listCollaborations(ctx, svc, 0)
		}
		colRules, err := r.rules(ctx, token, "collaboration")
		if err != nil {
			return nil, err
		}
		if hasRule(userRules, colRules, "collaboration", "GLOBAL", "VIEW") {
			return r.listCollaborations(ctx, own, 0)
		}
		r.log.Warn("user has the global event rule but only the collaborations of their organization are known: "+
			"configure a service account (EVENTSERVER_V6_USERNAME, EVENTSERVER_V6_PASSWORD; for vantage6 5.x also "+
			"EVENTSERVER_V6_TOKEN_URL) with collaboration GLOBAL VIEW to list every collaboration",
			zap.Int64("client_id", mustInt(ident.ID)), zap.Int64("organization_id", org))
		return r.listCollaborations(ctx, own, org)
	}

	cids, err := r.listCollaborations(ctx, own, org)
	var ce *CallError
	if err == nil || !errors.As(err, &ce) || !ce.refused() {
		return cids, err
	}
	if svc == nil {
		return nil, invalid(fmt.Errorf("%w: the user may not list the collaborations of their organization "+
			"(a collaboration VIEW rule is needed) and no service account is configured", err))
	}
	r.log.Info("user may not list the collaborations of their organization: asking with the service account",
		zap.Int64("client_id", mustInt(ident.ID)), zap.Int64("organization_id", org), zap.Int("status", ce.Status))
	return r.listCollaborations(ctx, svc, org)
}

// listCollaborations follows the pages of GET /collaboration, with
// organization_id when org is not zero. It stops once it has received the
// total-count header's number of items or, without that header, when links
// has no next page; and at an empty page.
func (r *Resolver) listCollaborations(ctx context.Context,
	get func(context.Context, call, any) (http.Header, error), org int64) ([]int64, error) {
	var (
		out      []int64
		seen     = map[int64]bool{}
		received int
	)
	for page := 1; ; page++ {
		if page > maxPages {
			return nil, invalidf("GET /collaboration: more than %d pages", maxPages)
		}
		q := url.Values{"per_page": {strconv.Itoa(r.pageSize)}, "page": {strconv.Itoa(page)}}
		if org > 0 {
			q.Set("organization_id", strconv.FormatInt(org, 10))
		}
		var body struct {
			Data  []ref          `json:"data"`
			Links map[string]any `json:"links"`
		}
		h, err := get(ctx, call{method: http.MethodGet, tmpl: "/collaboration", path: "/collaboration", query: q}, &body)
		if err != nil {
			return nil, err
		}
		received += len(body.Data)
		for _, c := range body.Data {
			if c.ID <= 0 {
				return nil, invalidf("GET /collaboration: a collaboration without a positive id")
			}
			if !seen[c.ID] {
				seen[c.ID] = true
				out = append(out, c.ID)
			}
		}
		if len(body.Data) == 0 {
			break
		}
		more := body.Links["next"] != nil && body.Links["next"] != ""
		if total, err := strconv.Atoi(strings.TrimSpace(h.Get("total-count"))); err == nil {
			more = received < total
		}
		if !more {
			break
		}
	}
	slices.Sort(out)
	return out, nil
}

func clone(i *identity.Identity) *identity.Identity {
	c := *i
	c.CollaborationIDs = slices.Clone(i.CollaborationIDs)
	return &c
}

func mustInt(s auth.Subject) int64 {
	n, _ := s.Int64()
	return n
}
