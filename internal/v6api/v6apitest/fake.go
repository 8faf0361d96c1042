// Package v6apitest is a fake vantage6 4.14 REST API for tests: the routes
// that eventserver's vantage6 resolver calls, with the JSON shapes, headers,
// pagination and error codes of the real server (see the protocol spec,
// "Resolving who a client is, without vantage6's database"), and tokens
// minted as vantage6 mints them.
//
// Nodes and users share one id space, as vantage6's authenticatables do: the
// fake decides who a token belongs to by its sub, not by its client_type.
package v6apitest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Routes, as Calls counts them.
const (
	RouteLogin          = "POST /token/user"
	RouteRefresh        = "POST /token/refresh"
	RouteValidate       = "POST /token/user/validate"
	RouteNode           = "GET /node/{id}"
	RouteUser           = "GET /user/{id}"
	RouteRules          = "GET /rule"
	RouteCollaborations = "GET /collaboration"
	// Both versions.
	RouteVersion = "GET /version"
	RouteTask    = "GET /task/{id}"
	// vantage6 5.x (NewV5).
	RouteNodeMe = "GET /node/me"
	RouteUserMe = "GET /user/me"
	RouteOIDC   = "POST <token URL>"
)

// Node is a node of the fake API.
type Node struct {
	// KeycloakID is the node's Keycloak id (vantage6 5.x): its tokens' sub.
	KeycloakID      string
	ID              int64
	Name            string
	OrganizationID  int64
	CollaborationID int64
}

// User is a user of the fake API. RuleIDs are all the user's rules (those of
// their roles and their own).
type User struct {
	// KeycloakID is the user's Keycloak id (vantage6 5.x): their tokens' sub.
	KeycloakID string
	// ClientID and ClientSecret make the user a vantage6 5.x service account
	// that logs in at TokenURL with the client-credentials grant.
	ClientID, ClientSecret string
	ID                     int64
	Username               string
	Password               string
	OrganizationID         int64
	RuleIDs                []int64
}

// Collaboration is a collaboration of the fake API.
type Collaboration struct {
	ID              int64
	Name            string
	OrganizationIDs []int64
}

// Rule is a rule of the fake API. Scope is GLOBAL, COLLABORATION,
// ORGANIZATION or OWN; Operation VIEW, EDIT, CREATE, DELETE, SEND or RECEIVE.
type Rule struct {
	ID        int64
	Name      string
	Scope     string
	Operation string
}

// Rules returns a rule table like the one 4.14 makes at start-up (a subset),
// with ids that are not in a convenient order.
func Rules() []Rule {
	return []Rule{
		{3, "user", "OWN", "VIEW"},
		{4, "user", "ORGANIZATION", "VIEW"},
		{5, "user", "GLOBAL", "VIEW"},
		{14, "node", "ORGANIZATION", "VIEW"},
		{21, "collaboration", "GLOBAL", "VIEW"},
		{22, "collaboration", "ORGANIZATION", "VIEW"},
		{23, "collaboration", "COLLABORATION", "EDIT"},
		{70, "event", "ORGANIZATION", "SEND"},
		{71, "event", "COLLABORATION", "SEND"},
		{72, "event", "GLOBAL", "RECEIVE"},
		{73, "event", "COLLABORATION", "RECEIVE"},
		{74, "event", "ORGANIZATION", "RECEIVE"},
		// 4.14 defines no event rule at OWN scope; one is here to test
		// that it gives no rooms.
		{75, "event", "OWN", "RECEIVE"},
		{76, "event", "GLOBAL", "SEND"},
		{80, "task", "GLOBAL", "VIEW"},
		{81, "task", "COLLABORATION", "VIEW"},
	}
}

// Fake is a running fake API.
type Fake struct {
	// URL is the API's base URL with its path: http://127.0.0.1:port/api.
	URL string
	// Secret signs and verifies the tokens (vantage6's jwt_secret_key).
	Secret []byte

	srv *httptest.Server
	// rsaKey and kid sign the tokens of NewV5Keycloak.
	rsaKey *rsa.PrivateKey
	kid    string

	mu             sync.Mutex
	nodes          map[int64]Node
	users          map[int64]User
	collabs        []Collaboration
	rules          []Rule
	calls          map[string]int
	delay          time.Duration
	refuseAll      bool
	status         map[string]int
	issuedTTL      time.Duration
	issued         map[string]bool // jti of access tokens issued by login or refresh
	expired        map[string]bool // jti answered "Token has expired"
	revokedRefresh bool

	// TokenURL is the Keycloak token endpoint of a 5.x fake (NewV5).
	TokenURL string
	// JWKSURL and Issuer are Keycloak's JWK Set and issuer of a 5.x fake;
	// the set holds a key only for NewV5Keycloak.
	JWKSURL, Issuer string
	v5              bool
	version         string
	tasks           map[int64]Task
}

// New starts a fake API whose tokens are signed with secret. It has the
// rules of Rules and no nodes, users or collaborations.
func New(secret []byte) *Fake {
	f := &Fake{
		Secret:    secret,
		nodes:     map[int64]Node{},
		users:     map[int64]User{},
		rules:     Rules(),
		calls:     map[string]int{},
		status:    map[string]int{},
		issuedTTL: 6 * time.Hour,
		issued:    map[string]bool{},
		expired:   map[string]bool{},
		version:   "4.14.0",
		tasks:     map[int64]Task{},
	}
	return f.start()
}

func (f *Fake) start() *Fake {
	mux := http.NewServeMux()
	if f.v5 {
		mux.HandleFunc("GET /api/node/me", f.wrap(RouteNodeMe, f.nodeMe))
		mux.HandleFunc("GET /api/user/me", f.wrap(RouteUserMe, f.userMe))
		mux.HandleFunc("POST /realms/vantage6/protocol/openid-connect/token", f.wrap(RouteOIDC, f.clientCredentials))
		mux.HandleFunc("GET /realms/vantage6/protocol/openid-connect/certs", f.wrap(RouteJWKS, f.jwks))
	} else {
		mux.HandleFunc("POST /api/token/user", f.wrap(RouteLogin, f.login))
		mux.HandleFunc("POST /api/token/refresh", f.wrap(RouteRefresh, f.refresh))
		mux.HandleFunc("POST /api/token/user/validate", f.wrap(RouteValidate, f.validate))
	}
	mux.HandleFunc("GET /api/version", f.wrap(RouteVersion, f.versionAnswer))
	mux.HandleFunc("GET /api/task/{id}", f.wrap(RouteTask, f.task))
	mux.HandleFunc("GET /api/node/{id}", f.wrap(RouteNode, f.node))
	mux.HandleFunc("GET /api/user/{id}", f.wrap(RouteUser, f.user))
	mux.HandleFunc("GET /api/rule", f.wrap(RouteRules, f.ruleList))
	mux.HandleFunc("GET /api/collaboration", f.wrap(RouteCollaborations, f.collaborationList))
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL + "/api"
	if f.v5 {
		f.TokenURL = f.srv.URL + "/realms/vantage6/protocol/openid-connect/token"
		f.JWKSURL = f.srv.URL + "/realms/vantage6/protocol/openid-connect/certs"
		f.Issuer = f.srv.URL + "/realms/vantage6"
	}
	return f
}

// Close stops the server.
func (f *Fake) Close() {
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// AddNode adds a node. Its id must not be a user's.
func (f *Fake) AddNode(n Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[n.ID]; ok {
		panic(fmt.Sprintf("v6apitest: id %d is a user's", n.ID))
	}
	f.nodes[n.ID] = n
}

// AddUser adds a user. Its id must not be a node's.
func (f *Fake) AddUser(u User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.nodes[u.ID]; ok {
		panic(fmt.Sprintf("v6apitest: id %d is a node's", u.ID))
	}
	f.users[u.ID] = u
}

// AddCollaboration adds a collaboration.
func (f *Fake) AddCollaboration(c Collaboration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.collabs = append(f.collabs, c)
	slices.SortFunc(f.collabs, func(a, b Collaboration) int { return int(a.ID - b.ID) })
}

// RuleID returns the id of the rule (name, scope, operation), or panics.
func (f *Fake) RuleID(name, scope, operation string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.Name == name && r.Scope == scope && r.Operation == operation {
			return r.ID
		}
	}
	panic(fmt.Sprintf("v6apitest: no rule %s %s %s", name, scope, operation))
}

// Calls returns how often route was called (whatever the answer).
func (f *Fake) Calls(route string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[route]
}

// AllCalls returns a copy of every route's count.
func (f *Fake) AllCalls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.calls))
	for k, v := range f.calls {
		out[k] = v
	}
	return out
}

// ResetCalls sets every count to zero.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = map[string]int{}
}

// SetDelay makes every answer wait d (or until the client goes away).
func (f *Fake) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// SetRefuseAll makes every route that needs a token answer
// 401 {"msg": "Token has been revoked"}.
func (f *Fake) SetRefuseAll(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuseAll = on
}

// SetStatus makes route answer code (with {"msg": ...}); 0 restores it.
func (f *Fake) SetStatus(route string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if code == 0 {
		delete(f.status, route)
		return
	}
	f.status[route] = code
}

// SetIssuedTokenTTL sets the life of the access tokens that login and refresh
// issue (default 6 hours, as vantage6).
func (f *Fake) SetIssuedTokenTTL(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issuedTTL = d
}

// ExpireIssuedTokens makes every access token issued so far by login or
// refresh answer 401 {"msg": "Token has expired"}, as if its exp had passed.
func (f *Fake) ExpireIssuedTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for jti := range f.issued {
		f.expired[jti] = true
	}
}

// RevokeRefreshTokens makes every refresh answer 401, so that clients must
// log in again.
func (f *Fake) RevokeRefreshTokens(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokedRefresh = on
}

// Token mints a vantage6 4.14 access token: HS256, sub the integer id,
// client_type, type "access", fresh, iat, nbf, exp, jti, csrf and roles; no
// name, organization or collaboration claims.
func (f *Fake) Token(id int64, clientType string, ttl time.Duration) string {
	return f.mint(id, clientType, "access", ttl, time.Now())
}

// NodeToken mints a one-hour node access token.
func (f *Fake) NodeToken(id int64) string { return f.Token(id, "node", time.Hour) }

// UserToken mints a one-hour user access token.
func (f *Fake) UserToken(id int64) string { return f.Token(id, "user", time.Hour) }

func (f *Fake) mint(id int64, clientType, typ string, ttl time.Duration, now time.Time) string {
	roles := []string{}
	if clientType == "user" {
		roles = []string{"Viewer"}
	}
	claims := jwt.MapClaims{
		"fresh":       false,
		"iat":         now.Unix(),
		"jti":         randomHex(),
		"type":        typ,
		"sub":         id,
		"nbf":         now.Unix(),
		"csrf":        randomHex(),
		"exp":         now.Add(ttl).Unix(),
		"client_type": clientType,
		"roles":       roles,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(f.Secret)
	if err != nil {
		panic(err)
	}
	return s
}

func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// who is the authenticated caller of a request.
type who struct {
	node *Node
	user *User
	jti  string
	// clientType is a 5.x token's vantage6_client_type, which 5.x's
	// decorators check (a user on a node route, or the reverse, gets 500).
	clientType string
}

type handler func(w http.ResponseWriter, r *http.Request) (int, any)

// wrap counts the call, applies the delay and forced statuses, and writes
// the answer as JSON.
func (f *Fake) wrap(route string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[route]++
		delay := f.delay
		forced := f.status[route]
		f.mu.Unlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if forced != 0 {
			writeJSON(w, forced, msg(http.StatusText(forced)))
			return
		}
		code, body := h(w, r)
		writeJSON(w, code, body)
	}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func msg(s string) map[string]any { return map[string]any{"msg": s} }

// internalError is what vantage6 answers when a decorator refuses the
// client type (an uncaught exception).
func internalError() (int, any) {
	return http.StatusInternalServerError, map[string]any{"message": "Internal Server Error"}
}

const expiredMsg = "Token has expired"

// authenticate checks the bearer token as flask-jwt-extended does and finds
// the caller by sub. wantType is "access" or "refresh".
func (f *Fake) authenticate(r *http.Request, wantType string) (*who, int, any) {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		return nil, http.StatusUnauthorized, msg("Missing Authorization Header")
	}
	claims := jwt.MapClaims{}
	algs, key := []string{"HS256"}, any(f.Secret)
	if f.rsaKey != nil {
		algs, key = []string{"RS256"}, &f.rsaKey.PublicKey
	}
	_, err := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithJSONNumber()).
		ParseWithClaims(strings.TrimPrefix(h, "Bearer "), claims, func(*jwt.Token) (any, error) { return key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, http.StatusUnauthorized, msg(expiredMsg)
	case err != nil:
		return nil, http.StatusUnprocessableEntity, msg("Signature verification failed")
	}
	if f.v5 {
		return f.authenticate5(claims)
	}
	typ, _ := claims["type"].(string)
	if typ != wantType {
		if wantType == "refresh" {
			return nil, http.StatusUnprocessableEntity, msg("Only refresh tokens are allowed")
		}
		return nil, http.StatusUnprocessableEntity, msg("Only non-refresh tokens are allowed")
	}
	jti, _ := claims["jti"].(string)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuseAll {
		return nil, http.StatusUnauthorized, msg("Token has been revoked")
	}
	if wantType == "refresh" && f.revokedRefresh {
		return nil, http.StatusUnauthorized, msg("Token has been revoked")
	}
	if f.expired[jti] {
		return nil, http.StatusUnauthorized, msg(expiredMsg)
	}
	num, _ := claims["sub"].(json.Number)
	id, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		// A container token (object sub) or garbage: vantage6 fails.
		code, body := internalError()
		return nil, code, body
	}
	if n, ok := f.nodes[id]; ok {
		return &who{node: &n, jti: jti}, 0, nil
	}
	if u, ok := f.users[id]; ok {
		return &who{user: &u, jti: jti}, 0, nil
	}
	code, body := internalError()
	return nil, code, body
}

// userOnly authenticates a user; a node gets HTTP 500, as from 4.14's
// with_user decorator.
func (f *Fake) userOnly(r *http.Request) (*User, int, any) {
	c, code, body := f.authenticate(r, "access")
	if c == nil {
		return nil, code, body
	}
	if c.user == nil || (f.v5 && c.clientType != "user") {
		code, body := internalError()
		return nil, code, body
	}
	return c.user, 0, nil
}

func (f *Fake) hasRule(u *User, name, scope, operation string) bool {
	for _, r := range f.rules {
		if r.Name == name && r.Scope == scope && r.Operation == operation && slices.Contains(u.RuleIDs, r.ID) {
			return true
		}
	}
	return false
}

func (f *Fake) tokens(id int64, clientType string) map[string]any {
	now := time.Now()
	f.mu.Lock()
	ttl := f.issuedTTL
	f.mu.Unlock()
	access := f.mint(id, clientType, "access", ttl, now)
	claims := jwt.MapClaims{}
	_, _, _ = jwt.NewParser().ParseUnverified(access, claims)
	jti, _ := claims["jti"].(string)
	f.mu.Lock()
	f.issued[jti] = true
	f.mu.Unlock()
	return map[string]any{
		"access_token":  access,
		"refresh_token": f.mint(id, clientType, "refresh", 48*time.Hour, now),
		"refresh_url":   "/api/token/refresh",
		"user_url":      "/api/user/" + strconv.FormatInt(id, 10),
	}
}

// login answers POST /token/user {"username","password"}.
func (f *Fake) login(w http.ResponseWriter, r *http.Request) (int, any) {
	var in struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Username == nil || in.Password == nil {
		return http.StatusBadRequest, map[string]any{"msg": "Request body is incorrect", "errors": map[string]any{}}
	}
	f.mu.Lock()
	var found *User
	for _, u := range f.users {
		if u.Username == *in.Username && u.Password == *in.Password {
			found = &u
			break
		}
	}
	f.mu.Unlock()
	if found == nil {
		return http.StatusUnauthorized, msg("Invalid username or password!")
	}
	t := f.tokens(found.ID, "user")
	w.Header().Set("jwt-token", t["access_token"].(string))
	return http.StatusOK, t
}

// refresh answers POST /token/refresh with the refresh token as bearer.
func (f *Fake) refresh(_ http.ResponseWriter, r *http.Request) (int, any) {
	c, code, body := f.authenticate(r, "refresh")
	if c == nil {
		return code, body
	}
	if c.user != nil {
		return http.StatusOK, f.tokens(c.user.ID, "user")
	}
	return http.StatusOK, f.tokens(c.node.ID, "node")
}

// validate answers POST /token/user/validate.
func (f *Fake) validate(_ http.ResponseWriter, r *http.Request) (int, any) {
	u, code, body := f.userOnly(r)
	if u == nil {
		return code, body
	}
	return http.StatusOK, map[string]any{
		"msg": "Token is valid", "user_id": u.ID, "username": u.Username,
		"email": u.Username + "@example.org", "organization_id": u.OrganizationID,
	}
}

func link(resource string, id int64) map[string]any {
	return map[string]any{
		"id":      id,
		"link":    fmt.Sprintf("/api/%s/%d", resource, id),
		"methods": []string{"GET", "PATCH", "DELETE"},
	}
}

// node answers GET /node/<id>: a node may see the nodes of its organization,
// a user those of their organization (or any with node GLOBAL VIEW).
func (f *Fake) node(_ http.ResponseWriter, r *http.Request) (int, any) {
	c, code, body := f.authenticate(r, "access")
	if c == nil {
		return code, body
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[id]
	if err != nil || !ok {
		return http.StatusNotFound, msg(fmt.Sprintf("Node id=%s is not found!", r.PathValue("id")))
	}
	allowed := (c.node != nil && c.node.OrganizationID == n.OrganizationID) ||
		(c.user != nil && (c.user.OrganizationID == n.OrganizationID || f.hasRule(c.user, "node", "GLOBAL", "VIEW")))
	if !allowed {
		return http.StatusUnauthorized, msg("You lack the permission to do that!")
	}
	return http.StatusOK, map[string]any{
		"id": n.ID, "name": n.Name, "type": "node", "status": "offline",
		"ip": nil, "last_seen": "2026-01-05T10:11:12.000000+00:00",
		"organization":  link("organization", n.OrganizationID),
		"collaboration": link("collaboration", n.CollaborationID),
		"config":        []any{},
	}
}

// user answers GET /user/<id>[?include_permissions=true]: the user themself,
// or anyone with user GLOBAL VIEW.
func (f *Fake) user(_ http.ResponseWriter, r *http.Request) (int, any) {
	me, code, body := f.userOnly(r)
	if me == nil {
		return code, body
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if err != nil || !ok {
		return http.StatusNotFound, msg(fmt.Sprintf("user id=%s is not found", r.PathValue("id")))
	}
	if me.ID != u.ID && !f.hasRule(me, "user", "GLOBAL", "VIEW") {
		return http.StatusUnauthorized, msg("You lack the permission to do that!")
	}
	return http.StatusOK, f.userJSON(u, r.URL.Query().Get("include_permissions") != "")
}

// userJSON is a user as vantage6 dumps one; f.mu is held.
func (f *Fake) userJSON(u User, includePermissions bool) map[string]any {
	out := map[string]any{
		"id": u.ID, "username": u.Username, "firstname": "", "lastname": "",
		"email": u.Username + "@example.org", "type": "user", "status": "online",
		"organization": link("organization", u.OrganizationID),
		"roles":        "/api/role?user_id=" + strconv.FormatInt(u.ID, 10),
		"rules":        "/api/rule?user_id=" + strconv.FormatInt(u.ID, 10),
	}
	if f.v5 {
		out["keycloak_id"] = u.KeycloakID
		out["is_service_account"] = u.ClientID != ""
	}
	if includePermissions {
		var orgs []int64
		for _, c := range f.collabs {
			if slices.Contains(c.OrganizationIDs, u.OrganizationID) {
				for _, o := range c.OrganizationIDs {
					if !slices.Contains(orgs, o) {
						orgs = append(orgs, o)
					}
				}
			}
		}
		rules := slices.Clone(u.RuleIDs)
		if rules == nil {
			rules = []int64{}
		}
		if orgs == nil {
			orgs = []int64{}
		}
		out["permissions"] = map[string]any{"roles": []int64{4}, "rules": rules, "orgs_in_collabs": orgs}
	}
	return out
}

// page is vantage6's pagination: page and per_page (default 10, no maximum)
// or no_pagination=1; headers total-count and Link; {"data", "links"}.
func page[T any](w http.ResponseWriter, r *http.Request, items []T, paginate bool) (int, any) {
	q := r.URL.Query()
	pageID, perPage := 1, 10
	if paginate {
		var err error
		if v := q.Get("page"); v != "" {
			if pageID, err = strconv.Atoi(v); err != nil || pageID <= 0 {
				return http.StatusInternalServerError, msg("page needs to be >= 1")
			}
		}
		if v := q.Get("per_page"); v != "" {
			if perPage, err = strconv.Atoi(v); err != nil || perPage <= 0 {
				return http.StatusInternalServerError, msg("per_page needs to be >= 1")
			}
		}
	} else {
		perPage = max(len(items), 1)
	}
	total := len(items)
	from := min((pageID-1)*perPage, total)
	to := min(from+perPage, total)
	data := items[from:to]
	if data == nil {
		data = []T{}
	}
	pages := (total + perPage - 1) / perPage
	links := map[string]string{}
	for _, nav := range []struct {
		rel  string
		page int
	}{{"first", 1}, {"previous", pageID - 1}, {"self", pageID}, {"next", pageID + 1}, {"last", pages}} {
		if nav.page <= 0 || (nav.rel == "next" && from+len(data) >= total) || (nav.rel == "last" && pages == 0) {
			continue
		}
		args := url.Values{}
		for k, v := range q {
			args[k] = v
		}
		args.Set("page", strconv.Itoa(nav.page))
		links[nav.rel] = r.URL.Path + "?" + args.Encode()
	}
	var link []string
	for _, rel := range []string{"first", "previous", "self", "next", "last"} {
		if u, ok := links[rel]; ok {
			link = append(link, fmt.Sprintf("<%s>; rel=%s", u, rel))
		}
	}
	w.Header().Set("total-count", strconv.Itoa(total))
	w.Header().Set("Link", strings.Join(link, ","))
	w.Header().Set("access-control-expose-headers", "total-count, Link")
	return http.StatusOK, map[string]any{"data": data, "links": links}
}

// ruleList answers GET /rule[?name=&operation=&scope=&no_pagination=1].
func (f *Fake) ruleList(w http.ResponseWriter, r *http.Request) (int, any) {
	u, code, body := f.userOnly(r)
	if u == nil {
		return code, body
	}
	q := r.URL.Query()
	f.mu.Lock()
	var items []map[string]any
	for _, ru := range f.rules {
		scope, op := ru.Scope, ru.Operation
		if f.v5 {
			// 5.x's Scope and Operation are lower-case string enums.
			scope, op = strings.ToLower(scope), strings.ToLower(op)
		}
		if (q.Has("name") && q.Get("name") != ru.Name) || (q.Has("scope") && q.Get("scope") != scope) ||
			(q.Has("operation") && q.Get("operation") != op) {
			continue
		}
		items = append(items, map[string]any{
			"id": ru.ID, "name": ru.Name, "scope": scope, "operation": op,
			"description": "rule " + ru.Name, "users": "/api/user?rule_id=" + strconv.FormatInt(ru.ID, 10),
		})
	}
	f.mu.Unlock()
	return page(w, r, items, q.Get("no_pagination") != "1")
}

// collaborationList answers GET /collaboration[?organization_id=] as 4.14:
// collaboration GLOBAL VIEW sees all (filtered by organization_id), else
// ORGANIZATION VIEW (nodes have it) sees those of its own organization and
// may not ask for another's; else 401.
func (f *Fake) collaborationList(w http.ResponseWriter, r *http.Request) (int, any) {
	c, code, body := f.authenticate(r, "access")
	if c == nil {
		return code, body
	}
	q := r.URL.Query()
	f.mu.Lock()
	var org int64
	global, orgView := false, true
	if c.user != nil {
		org = c.user.OrganizationID
		global = f.hasRule(c.user, "collaboration", "GLOBAL", "VIEW")
		orgView = f.hasRule(c.user, "collaboration", "ORGANIZATION", "VIEW")
	} else {
		org = c.node.OrganizationID
	}
	collabs := slices.Clone(f.collabs)
	f.mu.Unlock()

	filter := int64(0)
	if v := q.Get("organization_id"); q.Has("organization_id") {
		if !global && v != strconv.FormatInt(org, 10) {
			return http.StatusUnauthorized, msg("You lack the permission to request collaborations for this organization!")
		}
		if global {
			filter, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if !global {
		if !orgView {
			return http.StatusUnauthorized, msg("You lack the permission to do that!")
		}
		filter = org
	}
	var items []map[string]any
	for _, col := range collabs {
		if filter != 0 && !slices.Contains(col.OrganizationIDs, filter) {
			continue
		}
		sid := strconv.FormatInt(col.ID, 10)
		items = append(items, map[string]any{
			"id": col.ID, "name": col.Name, "encrypted": false, "session_restrict_to_same_image": false,
			"organizations":    "/api/organization?collaboration_id=" + sid,
			"nodes":            "/api/node?collaboration_id=" + sid,
			"tasks":            "/api/task?collaboration_id=" + sid,
			"algorithm_stores": "/api/algorithmstore?collaboration_id=" + sid,
			"studies":          "/api/study?collaboration_id=" + sid,
		})
	}
	return page(w, r, items, true)
}
