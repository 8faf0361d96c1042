package v6apitest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Task is a task of the fake API. RequiredBy is computed from the other
// tasks' DependsOn.
type Task struct {
	ID              int64
	Name            string
	JobID           int64 // 0: null
	ParentID        int64 // 0: no parent
	CollaborationID int64
	InitOrgID       int64
	DependsOn       []int64
}

// NewV5 starts a fake vantage6 5.x API (release/5.0's vantage6-hq): tokens
// are Keycloak's, here signed HS256 with secret, whose sub is the Keycloak
// id and whose vantage6_client_type claim says node or user; GET /node/me
// and GET /user/me say who they are; GET /version answers 5.0.0; there is
// no password login, but TokenURL is a Keycloak token endpoint that gives
// service accounts (users with a ClientID) a token for the client-credentials
// grant. Nodes and users are found by their KeycloakID.
func NewV5(secret []byte) *Fake { return newV5(secret, nil).start() }

// newV5 is a 5.x fake, not started; key, when set, signs its tokens.
func newV5(secret []byte, key *rsa.PrivateKey) *Fake {
	f := &Fake{
		Secret:    secret,
		nodes:     map[int64]Node{},
		users:     map[int64]User{},
		rules:     Rules(),
		calls:     map[string]int{},
		status:    map[string]int{},
		issuedTTL: 5 * time.Minute, // Keycloak's default access token life
		issued:    map[string]bool{},
		expired:   map[string]bool{},
		v5:        true,
		version:   "5.0.0",
		tasks:     map[int64]Task{},
	}
	if key != nil {
		f.rsaKey, f.kid = key, "kc-1"
	}
	return f
}

// RouteJWKS is Keycloak's JWK Set (NewV5Keycloak).
const RouteJWKS = "jwks"

// Audience is the aud of the tokens of NewV5Keycloak (with "account").
const Audience = "vantage6"

// NewV5Keycloak is NewV5 whose tokens are signed as Keycloak signs them:
// RS256 with a key of kid "kc-1" published at JWKSURL, iss Issuer, aud
// ["account", Audience]. The API verifies them with that key.
func NewV5Keycloak() *Fake {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return newV5([]byte("unused"), key).start()
}

// jwks answers Keycloak's JWK Set.
func (f *Fake) jwks(_ http.ResponseWriter, _ *http.Request) (int, any) {
	keys := []any{}
	if f.rsaKey != nil {
		pub := f.rsaKey.PublicKey
		keys = append(keys, map[string]any{"kid": f.kid, "kty": "RSA", "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())})
	}
	return http.StatusOK, map[string]any{"keys": keys}
}

// SetVersion sets what GET /version answers.
func (f *Fake) SetVersion(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version = v
}

// AddTask adds a task.
func (f *Fake) AddTask(t Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks[t.ID] = t
}

// KeycloakToken mints a vantage6 5.x access token as Keycloak would (but
// HS256 with the fake's secret): sub the Keycloak id, vantage6_client_type,
// typ Bearer, azp, iat, exp, jti; no numeric ids. An empty clientType leaves
// the claim out.
func (f *Fake) KeycloakToken(keycloakID, clientType string, ttl time.Duration) string {
	return f.mintKeycloak(keycloakID, clientType, "vantage6-client", ttl)
}

func (f *Fake) mintKeycloak(keycloakID, clientType, azp string, ttl time.Duration) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"exp":                now.Add(ttl).Unix(),
		"iat":                now.Unix(),
		"jti":                randomHex(),
		"iss":                f.srv.URL + "/realms/vantage6",
		"sub":                keycloakID,
		"typ":                "Bearer",
		"azp":                azp,
		"scope":              "profile email",
		"preferred_username": "someone",
	}
	if clientType != "" {
		claims["vantage6_client_type"] = clientType
	}
	if f.rsaKey != nil {
		claims["aud"] = []string{"account", Audience}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = f.kid
		s, err := tok.SignedString(f.rsaKey)
		if err != nil {
			panic(err)
		}
		return s
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(f.Secret)
	if err != nil {
		panic(err)
	}
	return s
}

// authenticate5 finds the caller of a verified 5.x token by its Keycloak
// id. Without vantage6_client_type, or for an unknown Keycloak id, 5.x fails
// with an uncaught exception: 500.
func (f *Fake) authenticate5(claims jwt.MapClaims) (*who, int, any) {
	jti, _ := claims["jti"].(string)
	sub, _ := claims["sub"].(string)
	ct, _ := claims["vantage6_client_type"].(string)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuseAll {
		return nil, http.StatusUnauthorized, msg("Token has been revoked")
	}
	if f.expired[jti] {
		return nil, http.StatusUnauthorized, msg(expiredMsg)
	}
	if ct == "" || sub == "" {
		code, body := internalError()
		return nil, code, body
	}
	for _, n := range f.nodes {
		if n.KeycloakID == sub {
			return &who{node: &n, jti: jti, clientType: ct}, 0, nil
		}
	}
	for _, u := range f.users {
		if u.KeycloakID == sub {
			return &who{user: &u, jti: jti, clientType: ct}, 0, nil
		}
	}
	code, body := internalError()
	return nil, code, body
}

// versionAnswer answers GET /version (no token needed).
func (f *Fake) versionAnswer(_ http.ResponseWriter, _ *http.Request) (int, any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return http.StatusOK, map[string]any{"version": f.version}
}

// nodeMe answers GET /node/me (with_node): a user's token gets 500.
func (f *Fake) nodeMe(_ http.ResponseWriter, r *http.Request) (int, any) {
	c, code, body := f.authenticate(r, "access")
	if c == nil {
		return code, body
	}
	if c.node == nil || c.clientType != "node" {
		return internalError()
	}
	n := *c.node
	return http.StatusOK, map[string]any{
		"id": n.ID, "name": n.Name, "type": "node", "status": "online", "keycloak_id": n.KeycloakID,
		"ip": nil, "last_seen": "2026-01-05T10:11:12.000000+00:00",
		"organization":  link("organization", n.OrganizationID),
		"collaboration": link("collaboration", n.CollaborationID),
		"config":        []any{},
	}
}

// userMe answers GET /user/me[?include_permissions=true] (with_user): a
// node's token gets 500.
func (f *Fake) userMe(_ http.ResponseWriter, r *http.Request) (int, any) {
	u, code, body := f.userOnly(r)
	if u == nil {
		return code, body
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return http.StatusOK, f.userJSON(*u, r.URL.Query().Get("include_permissions") != "")
}

// task answers GET /task/<id>: a node reads the tasks of its collaboration
// (task COLLABORATION VIEW, which 5.x gives nodes), a user those of any
// collaboration with task GLOBAL VIEW, those of their organization's
// collaborations with task COLLABORATION VIEW; otherwise 401.
func (f *Fake) task(_ http.ResponseWriter, r *http.Request) (int, any) {
	c, code, body := f.authenticate(r, "access")
	if c == nil {
		return code, body
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tasks[id]
	if err != nil || !ok {
		return http.StatusNotFound, msg(fmt.Sprintf("task id=%s is not found", r.PathValue("id")))
	}
	allowed := false
	switch {
	case c.node != nil:
		allowed = c.node.CollaborationID == t.CollaborationID
	case c.user != nil:
		allowed = f.hasRule(c.user, "task", "GLOBAL", "VIEW")
		if !allowed && f.hasRule(c.user, "task", "COLLABORATION", "VIEW") {
			for _, col := range f.collabs {
				if col.ID == t.CollaborationID && slices.Contains(col.OrganizationIDs, c.user.OrganizationID) {
					allowed = true
				}
			}
		}
	}
	if !allowed {
		return http.StatusUnauthorized, msg("You lack the permission to do that!")
	}
	requiredBy := []int64{}
	for _, o := range f.tasks {
		if slices.Contains(o.DependsOn, t.ID) {
			requiredBy = append(requiredBy, o.ID)
		}
	}
	slices.Sort(requiredBy)
	dependsOn := slices.Clone(t.DependsOn)
	if dependsOn == nil {
		dependsOn = []int64{}
	}
	sid := strconv.FormatInt(t.ID, 10)
	out := map[string]any{
		"id": t.ID, "name": t.Name, "description": "", "image": "harbor2.vantage6.ai/demo/average",
		"method": "central_average", "status": "pending", "complete": false, "action": "central_compute",
		"created_at": "2026-01-05T10:11:12.000000", "finished_at": nil,
		"job_id":        nil,
		"parent":        nil,
		"collaboration": link("collaboration", t.CollaborationID),
		"init_org":      link("organization", t.InitOrgID),
		"init_user":     nil,
		"runs":          "/api/run?task_id=" + sid,
		"results":       "/api/result?task_id=" + sid,
		"children":      "/api/task?parent_id=" + sid,
		"depends_on":    dependsOn,
		"required_by":   requiredBy,
		"databases":     []any{},
		"study":         nil,
		"session":       link("session", 1),
		"dataframe":     nil,
	}
	if t.JobID != 0 {
		out["job_id"] = t.JobID
	}
	if t.ParentID != 0 {
		out["parent"] = link("task", t.ParentID)
	}
	return http.StatusOK, out
}

// clientCredentials answers the Keycloak token endpoint: grant_type
// client_credentials with client_id and client_secret in the form.
func (f *Fake) clientCredentials(w http.ResponseWriter, r *http.Request) (int, any) {
	if err := r.ParseForm(); err != nil {
		return http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "bad form"}
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		return http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type",
			"error_description": "Unsupported grant_type"}
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	f.mu.Lock()
	var found *User
	for _, u := range f.users {
		if u.ClientID != "" && u.ClientID == id && u.ClientSecret == secret {
			found = &u
			break
		}
	}
	ttl := f.issuedTTL
	f.mu.Unlock()
	if found == nil {
		return http.StatusUnauthorized, map[string]any{"error": "unauthorized_client",
			"error_description": "Invalid client or Invalid client credentials"}
	}
	access := f.mintKeycloak(found.KeycloakID, "user", found.ClientID, ttl)
	claims := jwt.MapClaims{}
	_, _, _ = jwt.NewParser().ParseUnverified(access, claims)
	jti, _ := claims["jti"].(string)
	f.mu.Lock()
	f.issued[jti] = true
	f.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	return http.StatusOK, map[string]any{
		"access_token": access, "expires_in": int(ttl / time.Second), "refresh_expires_in": 0,
		"token_type": "Bearer", "not-before-policy": 0, "scope": "profile email",
	}
}

// SetKeycloakID gives the node or user id a Keycloak id (vantage6 5.x).
func (f *Fake) SetKeycloakID(id int64, keycloakID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[id]; ok {
		n.KeycloakID = keycloakID
		f.nodes[id] = n
		return
	}
	u, ok := f.users[id]
	if !ok {
		panic(fmt.Sprintf("v6apitest: no node or user %d", id))
	}
	u.KeycloakID = keycloakID
	f.users[id] = u
}

// SetClient makes user id a 5.x service account with a Keycloak client.
func (f *Fake) SetClient(id int64, clientID, secret string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		panic(fmt.Sprintf("v6apitest: no user %d", id))
	}
	u.ClientID, u.ClientSecret = clientID, secret
	f.users[id] = u
}
