package v6api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/v6api/v6apitest"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Keep-alive connections of clients that a test did not close.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

const (
	testSecret  = "v6api-test-secret"
	svcUser     = "eventserver"
	svcPassword = "s3rvice-pa55word-not-in-logs"
)

// The world of the fake API:
//   - 25 collaborations 1..25; organization 1 is in the even ones (12),
//     organization 2 in the odd ones (13), organization 3 in 2 and 25;
//   - node 1 of organization 2 in collaboration 1;
//   - users 10..17 (see below) and the service account 90.
const (
	nodeID      = 1
	userGlobal  = 10 // org 1, event GLOBAL RECEIVE, collaboration ORGANIZATION VIEW
	userCollab  = 11 // org 2, event COLLABORATION RECEIVE
	userOrg     = 12 // org 2, event ORGANIZATION RECEIVE
	userOwn     = 13 // org 2, event OWN RECEIVE
	userNoRule  = 14 // org 2, event SEND only
	userMulti   = 15 // org 2, event ORGANIZATION and COLLABORATION RECEIVE
	userNoView  = 16 // org 2, event COLLABORATION RECEIVE, no collaboration VIEW
	userRootish = 17 // org 3, event GLOBAL RECEIVE and collaboration GLOBAL VIEW
	serviceID   = 90 // org 1, collaboration GLOBAL VIEW
)

func seed(f *v6apitest.Fake) {
	for i := int64(1); i <= 25; i++ {
		orgs := []int64{2}
		if i%2 == 0 {
			orgs = []int64{1}
		}
		if i == 2 || i == 25 {
			orgs = append(orgs, 3)
		}
		f.AddCollaboration(v6apitest.Collaboration{ID: i, Name: fmt.Sprintf("COL-%d", i), OrganizationIDs: orgs})
	}
	f.AddNode(v6apitest.Node{ID: nodeID, Name: "org2-colA-node", OrganizationID: 2, CollaborationID: 1})
	r := f.RuleID
	colOrgView := r("collaboration", "ORGANIZATION", "VIEW")
	userOwnView := r("user", "OWN", "VIEW")
	for _, u := range []v6apitest.User{
		{ID: userGlobal, Username: "glob", OrganizationID: 1, RuleIDs: []int64{userOwnView, r("event", "GLOBAL", "RECEIVE"), colOrgView}},
		{ID: userCollab, Username: "colla", OrganizationID: 2, RuleIDs: []int64{r("event", "COLLABORATION", "RECEIVE"), colOrgView}},
		{ID: userOrg, Username: "orga", OrganizationID: 2, RuleIDs: []int64{colOrgView, r("event", "ORGANIZATION", "RECEIVE")}},
		{ID: userOwn, Username: "owner", OrganizationID: 2, RuleIDs: []int64{r("event", "OWN", "RECEIVE"), colOrgView}},
		{ID: userNoRule, Username: "norule", OrganizationID: 2, RuleIDs: []int64{colOrgView, r("event", "ORGANIZATION", "SEND")}},
		{ID: userMulti, Username: "multi", OrganizationID: 2, RuleIDs: []int64{r("event", "ORGANIZATION", "RECEIVE"), r("event", "COLLABORATION", "RECEIVE"), colOrgView}},
		{ID: userNoView, Username: "noview", OrganizationID: 2, RuleIDs: []int64{r("event", "COLLABORATION", "RECEIVE")}},
		{ID: userRootish, Username: "rootish", OrganizationID: 3, RuleIDs: []int64{r("event", "GLOBAL", "RECEIVE"), r("collaboration", "GLOBAL", "VIEW")}},
		{ID: serviceID, Username: svcUser, Password: svcPassword, OrganizationID: 1, RuleIDs: []int64{r("collaboration", "GLOBAL", "VIEW")}},
	} {
		f.AddUser(u)
	}
}

func ids(from, to, step int64) []int64 {
	var out []int64
	for i := from; i <= to; i += step {
		out = append(out, i)
	}
	return out
}

var (
	allCollabs  = ids(1, 25, 1)
	org1Collabs = ids(2, 24, 2)
	org2Collabs = ids(1, 25, 2)
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	fake  *v6apitest.Fake
	ver   *auth.Verifier
	logs  *observer.ObservedLogs
	reg   *prometheus.Registry
	clock *fakeClock
	r     *Resolver
}

// withService configures the service account.
func withService(c *Config) { c.Username, c.Password = svcUser, svcPassword }

// newEnv starts a seeded fake API and a resolver for it (page size 10, cache
// TTL 30s, timeout 5s), adjusted by mutate.
func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	fake := v6apitest.New([]byte(testSecret))
	t.Cleanup(fake.Close)
	seed(fake)
	ver, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e := &env{t: t, fake: fake, ver: ver, logs: logs, reg: prometheus.NewRegistry(),
		clock: &fakeClock{now: time.Now()}}
	cfg := Config{
		BaseURL:    fake.URL,
		Timeout:    5 * time.Second,
		CacheTTL:   30 * time.Second,
		PageSize:   10,
		Logger:     zap.New(core),
		Registerer: e.reg,
		Now:        e.clock.Now,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	e.r, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.r.Shutdown(context.Background()) })
	return e
}

// resolve verifies token as the hub does, then resolves it with a 10s
// context (the hub's default).
func (e *env) resolve(token string) (*identity.Identity, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.resolveCtx(ctx, token)
}

func (e *env) resolveCtx(ctx context.Context, token string) (*identity.Identity, error) {
	e.t.Helper()
	claims, err := e.ver.Verify(token)
	if err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	return e.r.Resolve(ctx, token, claims)
}

func (e *env) mustResolve(token string) *identity.Identity {
	e.t.Helper()
	id, err := e.resolve(token)
	if err != nil {
		e.t.Fatalf("resolve: %v", err)
	}
	return id
}

// logText renders every log entry with its fields.
func (e *env) logText() string {
	var b strings.Builder
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, en := range e.logs.All() {
		buf, err := enc.EncodeEntry(en.Entry, en.Context)
		if err == nil {
			b.Write(buf.Bytes())
			buf.Free()
		}
	}
	return b.String()
}

// failure returns the one "lookup failed" log entry's fields.
func (e *env) failure() map[string]any {
	e.t.Helper()
	entries := e.logs.FilterMessageSnippet("lookup failed").All()
	if len(entries) != 1 {
		e.t.Fatalf("want one lookup-failed log line, got %d:\n%s", len(entries), e.logText())
	}
	return entries[0].ContextMap()
}

// noSecrets checks that no log line holds the password or one of tokens.
func (e *env) noSecrets(tokens ...string) {
	e.t.Helper()
	text := e.logText()
	if strings.Contains(text, svcPassword) {
		e.t.Errorf("the service account's password is in the logs:\n%s", text)
	}
	for _, tok := range tokens {
		if strings.Contains(text, tok) {
			e.t.Errorf("a token is in the logs:\n%s", text)
		}
		// A token's signature alone is a secret too.
		if i := strings.LastIndexByte(tok, '.'); i > 0 && strings.Contains(text, tok[i+1:]) {
			e.t.Errorf("a token's signature is in the logs:\n%s", text)
		}
	}
}

func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	var c prometheus.Counter
	switch name {
	case "requests":
		c = e.r.m.requests.WithLabelValues(labels...)
	case "lookups":
		c = e.r.m.cache.WithLabelValues(labels...)
	default:
		e.t.Fatalf("unknown metric %s", name)
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		e.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func (e *env) calls(want map[string]int) {
	e.t.Helper()
	got := e.fake.AllCalls()
	for route, n := range want {
		if got[route] != n {
			e.t.Errorf("%s called %d times, want %d (all calls: %v)", route, got[route], n, got)
		}
		delete(got, route)
	}
	for route, n := range got {
		if n != 0 {
			e.t.Errorf("%s called %d times, want none (all calls: %v)", route, n, e.fake.AllCalls())
		}
	}
}

func wantInvalid(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	if !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("error %v does not wrap auth.ErrInvalid", err)
	}
}

func TestV6Node(t *testing.T) {
	e := newEnv(t)
	tok := e.fake.NodeToken(nodeID)
	id := e.mustResolve(tok)
	if id.Kind != rooms.KindNode || id.ID != (auth.Subject{Value: "1", Numeric: true}) || id.Name != "org2-colA-node" ||
		id.OrganizationID != 2 || !slices.Equal(id.CollaborationIDs, []int64{1}) || id.Scope != rooms.ScopeNone {
		t.Fatalf("identity = %+v", id)
	}
	if got, want := id.Rooms(), []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"}; !slices.Equal(got, want) {
		t.Errorf("rooms = %v, want %v", got, want)
	}
	e.calls(map[string]int{v6apitest.RouteNode: 1})
	if got := e.metric("requests", callNode, outcomeOK); got != 1 {
		t.Errorf("requests{node,ok} = %v, want 1", got)
	}
	e.noSecrets(tok)
}

func TestV6UserScopes(t *testing.T) {
	tests := []struct {
		name    string
		user    int64
		service bool
		scope   rooms.Scope
		collabs []int64
		org     int64
		rooms   []string // nil: derived from scope and collabs
		calls   map[string]int
	}{
		{
			name: "global with service account", user: userGlobal, service: true, scope: rooms.ScopeGlobal,
			collabs: allCollabs, org: 1,
			// 25 collaborations, 10 a page: three pages, with the service token.
			calls: map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1,
				v6apitest.RouteLogin: 1, v6apitest.RouteCollaborations: 3},
		},
		{
			name: "collaboration", user: userCollab, scope: rooms.ScopeCollaboration, collabs: org2Collabs, org: 2,
			// 13 collaborations of organization 2: two pages.
			calls: map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1,
				v6apitest.RouteCollaborations: 2},
		},
		{
			name: "organization", user: userOrg, scope: rooms.ScopeOrganization, collabs: org2Collabs, org: 2,
			calls: map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1,
				v6apitest.RouteCollaborations: 2},
		},
		{
			name: "widest of organization and collaboration", user: userMulti, scope: rooms.ScopeCollaboration,
			collabs: org2Collabs, org: 2,
			calls: map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1,
				v6apitest.RouteCollaborations: 2},
		},
		{
			name: "own scope joins no room", user: userOwn, service: true, scope: rooms.ScopeNone, org: 2, rooms: []string{},
			calls: map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1},
		},
		{
			name: "no event receive rule joins no room", user: userNoRule, service: true, scope: rooms.ScopeNone, org: 2, rooms: []string{},
			calls: map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mut []func(*Config)
			if tt.service {
				mut = append(mut, withService)
			}
			e := newEnv(t, mut...)
			tok := e.fake.UserToken(tt.user)
			id := e.mustResolve(tok)
			if id.Kind != rooms.KindUser || id.ID.Value != fmt.Sprint(tt.user) || id.OrganizationID != tt.org ||
				id.Scope != tt.scope || !slices.Equal(id.CollaborationIDs, tt.collabs) || id.Name == "" {
				t.Fatalf("identity = %+v, want scope %q, org %d, collaborations %v", id, tt.scope, tt.org, tt.collabs)
			}
			want := tt.rooms
			if want == nil {
				for _, c := range tt.collabs {
					if tt.scope == rooms.ScopeOrganization {
						want = append(want, rooms.CollaborationOrganization(c, tt.org))
					} else {
						want = append(want, rooms.Collaboration(c))
					}
				}
				slices.Sort(want)
			}
			if got := id.Rooms(); len(got) != len(want) || (len(want) > 0 && !slices.Equal(got, want)) {
				t.Errorf("rooms = %v, want %v", got, want)
			}
			e.calls(tt.calls)
			e.noSecrets(tok)
		})
	}
}

// TestV6UserName: a user's name is the username that validate answers.
func TestV6UserName(t *testing.T) {
	e := newEnv(t)
	if id := e.mustResolve(e.fake.UserToken(userCollab)); id.Name != "colla" {
		t.Errorf("name = %q, want colla", id.Name)
	}
}

func TestV6GlobalWithoutServiceAccount(t *testing.T) {
	t.Run("user who may list every collaboration", func(t *testing.T) {
		e := newEnv(t)
		id := e.mustResolve(e.fake.UserToken(userRootish))
		if id.Scope != rooms.ScopeGlobal || !slices.Equal(id.CollaborationIDs, allCollabs) {
			t.Fatalf("identity = %+v, want global over every collaboration", id)
		}
		// Rules twice: name=event and name=collaboration.
		e.calls(map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 2,
			v6apitest.RouteCollaborations: 3})
		if got := e.metric("requests", callCollaborations, outcomeOK); got != 3 {
			t.Errorf("collaborations with the user's token: %v, want 3", got)
		}
	})
	t.Run("user who may not: their organization's, with a warning", func(t *testing.T) {
		e := newEnv(t)
		id := e.mustResolve(e.fake.UserToken(userGlobal))
		if id.Scope != rooms.ScopeGlobal || !slices.Equal(id.CollaborationIDs, org1Collabs) {
			t.Fatalf("identity = %+v, want global over organization 1's collaborations", id)
		}
		warn := e.logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("EVENTSERVER_V6_USERNAME").All()
		if len(warn) != 1 {
			t.Fatalf("want one warning that names the service account settings, got:\n%s", e.logText())
		}
		if f := warn[0].ContextMap(); f["client_id"] != int64(userGlobal) || f["organization_id"] != int64(1) {
			t.Errorf("warning fields = %v", f)
		}
	})
}

func TestV6CollaborationListFallback(t *testing.T) {
	t.Run("service account lists them", func(t *testing.T) {
		e := newEnv(t, withService)
		id := e.mustResolve(e.fake.UserToken(userNoView))
		if id.Scope != rooms.ScopeCollaboration || !slices.Equal(id.CollaborationIDs, org2Collabs) {
			t.Fatalf("identity = %+v", id)
		}
		// One refused page with the user's token, then two with the service token.
		e.calls(map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1,
			v6apitest.RouteLogin: 1, v6apitest.RouteCollaborations: 3})
		if got := e.metric("requests", callCollaborations, outcomeRefused); got != 1 {
			t.Errorf("refused collaboration listings: %v, want 1", got)
		}
		if got := e.metric("requests", callServiceCollaborations, outcomeOK); got != 2 {
			t.Errorf("service collaboration listings: %v, want 2", got)
		}
		e.noSecrets()
	})
	t.Run("no service account: invalid", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.resolve(e.fake.UserToken(userNoView))
		wantInvalid(t, err)
		if !strings.Contains(err.Error(), "no service account") {
			t.Errorf("error %q does not say why", err)
		}
		f := e.failure()
		if f["method"] != "GET" || f["path"] != "/collaboration" || f["status"] != int64(401) || f["call"] != callCollaborations {
			t.Errorf("log fields = %v", f)
		}
	})
}

// TestV6NodeTokenOnUserEndpoint: a token whose client_type says user but
// whose sub is a node: vantage6 answers the user-only route with HTTP 500.
func TestV6NodeTokenOnUserEndpoint(t *testing.T) {
	e := newEnv(t)
	tok := e.fake.Token(nodeID, "user", time.Hour)
	_, err := e.resolve(tok)
	wantInvalid(t, err)
	f := e.failure()
	if f["method"] != "POST" || f["path"] != "/token/user/validate" || f["status"] != int64(500) || f["outcome"] != outcomeServerError {
		t.Errorf("log fields = %v", f)
	}
	e.calls(map[string]int{v6apitest.RouteValidate: 1})
	e.noSecrets(tok)
}

func TestV6TokenRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token func(*v6apitest.Fake) string
		path  string
	}{
		{"node", func(f *v6apitest.Fake) string { return f.NodeToken(nodeID) }, "/node/{id}"},
		{"user", func(f *v6apitest.Fake) string { return f.UserToken(userCollab) }, "/token/user/validate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withService)
			e.fake.SetRefuseAll(true)
			tok := tc.token(e.fake)
			_, err := e.resolve(tok)
			wantInvalid(t, err)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Status != 401 || ce.APIMessage != "Token has been revoked" {
				t.Fatalf("error %v: want a CallError with 401 and the API's msg", err)
			}
			f := e.failure()
			if f["path"] != tc.path || f["status"] != int64(401) || f["outcome"] != outcomeRefused || f["api_msg"] != "Token has been revoked" {
				t.Errorf("log fields = %v", f)
			}
			e.noSecrets(tok)

			// Failures are not cached: once the API accepts the token, it works.
			e.fake.SetRefuseAll(false)
			e.logs.TakeAll()
			if _, err := e.resolve(tok); err != nil {
				t.Fatalf("after the API accepts the token again: %v", err)
			}
		})
	}
}

// closedURL returns the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/api"
}

func TestV6APIDown(t *testing.T) {
	url := closedURL(t)
	e := newEnv(t, func(c *Config) { c.BaseURL = url })
	for _, tok := range []string{e.fake.NodeToken(nodeID), e.fake.UserToken(userCollab)} {
		e.logs.TakeAll()
		start := time.Now()
		_, err := e.resolve(tok)
		wantInvalid(t, err)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %s", d)
		}
		f := e.failure()
		if f["outcome"] != outcomeUnreachable || f["status"] != nil || f["cause"] == nil {
			t.Errorf("log fields = %v", f)
		}
		e.noSecrets(tok)
	}
	if got := e.metric("requests", callNode, outcomeUnreachable); got != 1 {
		t.Errorf("requests{node,unreachable} = %v, want 1", got)
	}
	if got := e.metric("requests", callValidate, outcomeUnreachable); got != 1 {
		t.Errorf("requests{validate,unreachable} = %v, want 1", got)
	}
}

func TestV6APISlow(t *testing.T) {
	t.Run("beyond the timeout", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Timeout = 200 * time.Millisecond })
		e.fake.SetDelay(5 * time.Second)
		start := time.Now()
		_, err := e.resolve(e.fake.NodeToken(nodeID))
		took := time.Since(start)
		wantInvalid(t, err)
		if took < 200*time.Millisecond || took > 1500*time.Millisecond {
			t.Errorf("took %s, want about the 200ms timeout", took)
		}
		if f := e.failure(); f["outcome"] != outcomeTimeout || f["path"] != "/node/{id}" {
			t.Errorf("log fields = %v", f)
		}
		if got := e.metric("requests", callNode, outcomeTimeout); got != 1 {
			t.Errorf("requests{node,timeout} = %v, want 1", got)
		}
	})
	t.Run("beyond the caller's deadline", func(t *testing.T) {
		e := newEnv(t) // timeout 5s
		e.fake.SetDelay(5 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.resolveCtx(ctx, e.fake.UserToken(userCollab))
		took := time.Since(start)
		wantInvalid(t, err)
		if took > time.Second {
			t.Errorf("took %s, want about the caller's 150ms", took)
		}
		// The shared lookup stops at the same deadline and says which call it was.
		testwait.For(t, 2*time.Second, func() error {
			if n := len(e.logs.FilterMessageSnippet("lookup failed").All()); n != 1 {
				return fmt.Errorf("%d lookup-failed lines", n)
			}
			return nil
		})
		if f := e.failure(); f["outcome"] != outcomeTimeout || f["path"] != "/token/user/validate" {
			t.Errorf("log fields = %v", f)
		}
	})
}

func TestV6ServiceAccount(t *testing.T) {
	// One page a lookup (25 collaborations, 100 a page), nothing cached: each
	// lookup makes one call with the service token.
	e := newEnv(t, withService, func(c *Config) { c.CacheTTL, c.PageSize = 0, 100 })
	tok := e.fake.UserToken(userGlobal)
	resolve := func(step string) {
		t.Helper()
		id, err := e.resolve(tok)
		if err != nil {
			t.Fatalf("%s: %v\n%s", step, err, e.logText())
		}
		if !slices.Equal(id.CollaborationIDs, allCollabs) {
			t.Fatalf("%s: collaborations %v", step, id.CollaborationIDs)
		}
	}
	count := func(step string, logins, refreshes, serviceOK, serviceRefused int) {
		t.Helper()
		if got := e.fake.Calls(v6apitest.RouteLogin); got != logins {
			t.Errorf("%s: %d logins, want %d", step, got, logins)
		}
		if got := e.fake.Calls(v6apitest.RouteRefresh); got != refreshes {
			t.Errorf("%s: %d refreshes, want %d", step, got, refreshes)
		}
		if got := e.metric("requests", callServiceCollaborations, outcomeOK); got != float64(serviceOK) {
			t.Errorf("%s: %v service listings ok, want %d", step, got, serviceOK)
		}
		if got := e.metric("requests", callServiceCollaborations, outcomeRefused); got != float64(serviceRefused) {
			t.Errorf("%s: %v service listings refused, want %d", step, got, serviceRefused)
		}
	}

	resolve("first lookup")
	count("first lookup: logs in", 1, 0, 1, 0)
	resolve("second lookup")
	count("second lookup: same token", 1, 0, 2, 0)

	// The API says the service token expired: refresh, then retry the call.
	e.fake.ExpireIssuedTokens()
	resolve("expired token")
	count("expired token: refreshed and retried", 1, 1, 3, 1)

	// A token that expires within the margin is refreshed before use.
	e.clock.Advance(6*time.Hour - 30*time.Second)
	resolve("token close to its exp")
	count("token close to its exp: refreshed before use", 1, 2, 4, 1)

	// The refresh token is refused too: log in again.
	e.fake.RevokeRefreshTokens(true)
	resolve("refresh refused")
	count("refresh refused: logs in again", 2, 3, 5, 1)

	if n := e.logs.FilterMessageSnippet("logged in").Len(); n != 2 {
		t.Errorf("%d login log lines, want 2", n)
	}
	if n := e.logs.FilterMessageSnippet("token refreshed").Len(); n != 2 {
		t.Errorf("%d refresh log lines, want 2", n)
	}
	e.noSecrets(tok)
	if strings.Contains(e.logText(), "eyJ") {
		t.Errorf("a JWT is in the logs:\n%s", e.logText())
	}
}

func TestV6ServiceAccountWrongPassword(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Username, c.Password = svcUser, "wrong-"+svcPassword })
	_, err := e.resolve(e.fake.UserToken(userGlobal))
	wantInvalid(t, err)
	f := e.failure()
	if f["call"] != callLogin || f["method"] != "POST" || f["path"] != "/token/user" || f["status"] != int64(401) {
		t.Errorf("log fields = %v", f)
	}
	if strings.Contains(e.logText(), "wrong-") || strings.Contains(err.Error(), "wrong-") {
		t.Errorf("the password is in the logs or the error")
	}
}

func TestV6Cache(t *testing.T) {
	e := newEnv(t) // cache TTL 30s
	node := e.fake.NodeToken(nodeID)
	e.mustResolve(node)
	e.mustResolve(node)
	// Another token of the same node is the same client.
	e.mustResolve(e.fake.NodeToken(nodeID))
	e.calls(map[string]int{v6apitest.RouteNode: 1})
	if hit, miss := e.metric("lookups", "hit"), e.metric("lookups", "miss"); hit != 2 || miss != 1 {
		t.Errorf("hits %v, misses %v; want 2 and 1", hit, miss)
	}

	// A cached identity is a copy: changing it changes nothing for the next.
	id := e.mustResolve(node)
	id.CollaborationIDs[0] = 99
	if again := e.mustResolve(node); again.CollaborationIDs[0] != 1 {
		t.Errorf("the cache returned a changed identity: %+v", again)
	}

	e.clock.Advance(29 * time.Second)
	e.mustResolve(node)
	e.calls(map[string]int{v6apitest.RouteNode: 1})
	e.clock.Advance(2 * time.Second)
	e.mustResolve(node)
	e.calls(map[string]int{v6apitest.RouteNode: 2})

	// Rules are the same for everyone: fetched once for two users.
	e.fake.ResetCalls()
	e.mustResolve(e.fake.UserToken(userCollab))
	e.mustResolve(e.fake.UserToken(userOrg))
	e.calls(map[string]int{v6apitest.RouteValidate: 2, v6apitest.RouteUser: 2, v6apitest.RouteRules: 1,
		v6apitest.RouteCollaborations: 4})
	// A node and a user with the same number are different clients.
	if e.r.cache.len() < 3 {
		t.Errorf("cache has %d entries", e.r.cache.len())
	}
}

func TestV6CacheOff(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CacheTTL = 0 })
	node := e.fake.NodeToken(nodeID)
	e.mustResolve(node)
	e.mustResolve(node)
	e.calls(map[string]int{v6apitest.RouteNode: 2})
}

func TestV6ConcurrentLookupsCollapse(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CacheTTL = 0 })
	e.fake.SetDelay(300 * time.Millisecond)
	tok := e.fake.UserToken(userCollab)
	claims, err := e.ver.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
	)
	for range n {
		wg.Go(func() {
			id, err := e.r.Resolve(context.Background(), tok, claims)
			if err != nil || !slices.Equal(id.CollaborationIDs, org2Collabs) {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d lookups failed", failed.Load())
	}
	e.calls(map[string]int{v6apitest.RouteValidate: 1, v6apitest.RouteUser: 1, v6apitest.RouteRules: 1,
		v6apitest.RouteCollaborations: 2})
	if miss, shared := e.metric("lookups", "miss"), e.metric("lookups", "shared"); miss != 1 || shared != n-1 {
		t.Errorf("misses %v, shared %v; want 1 and %d", miss, shared, n-1)
	}
}

func TestV6RefusedWithoutCalling(t *testing.T) {
	e := newEnv(t)
	mint := func(claims map[string]any) string {
		tok, err := auth.Mint([]byte(testSecret), claims, time.Hour, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for name, tok := range map[string]string{
		"string sub (vantage6 5)": mint(map[string]any{"sub": "3f2a-uuid", "client_type": "user"}),
		"container":               mint(map[string]any{"sub": 3, "client_type": "container"}),
		"no client_type":          mint(map[string]any{"sub": 3}),
		"negative sub":            mint(map[string]any{"sub": -3, "client_type": "node"}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.resolve(tok)
			wantInvalid(t, err)
		})
	}
	_, err := e.r.Resolve(context.Background(), "x", nil)
	wantInvalid(t, err)
	e.calls(nil)
}

// TestV6UnexpectedAnswers: answers that do not describe the token's client
// are refused.
func TestV6UnexpectedAnswers(t *testing.T) {
	tests := []struct {
		name, route, body, clientType, want string
	}{
		{"node id differs", "/api/node/7", `{"id":8,"name":"n","organization":{"id":1},"collaboration":{"id":2}}`, "node", "answered node 8"},
		{"node without collaboration", "/api/node/7", `{"id":7,"name":"n","organization":{"id":1}}`, "node", "collaboration.id"},
		{"node with flat ids only", "/api/node/7", `{"id":7,"name":"n","organization_id":1,"collaboration_id":2}`, "node", "organization.id"},
		{"node answer not JSON", "/api/node/7", `<html>`, "node", "decoding"},
		{"validate user differs", "/api/token/user/validate", `{"msg":"Token is valid","user_id":8,"username":"u","organization_id":1}`, "user", "user_id 8"},
		{"validate without organization", "/api/token/user/validate", `{"msg":"Token is valid","user_id":7,"username":"u"}`, "user", "organization_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != tt.route {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			e := newEnv(t, func(c *Config) { c.BaseURL = srv.URL + "/api/" })
			_, err := e.resolve(e.fake.Token(7, tt.clientType, time.Hour))
			wantInvalid(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			_ = e.r.Shutdown(context.Background())
		})
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "scheme"},
		{"ftp", Config{BaseURL: "ftp://v6.example.org/api"}, "scheme"},
		{"no host", Config{BaseURL: "https:///api"}, "host"},
		{"user info", Config{BaseURL: "https://admin:hunter2@v6.example.org/api"}, "user information"},
		{"query", Config{BaseURL: "https://v6.example.org/api?x=1"}, "query"},
		{"username only", Config{BaseURL: "https://v6.example.org/api", Username: "u"}, "both"},
		{"password only", Config{BaseURL: "https://v6.example.org/api", Password: "p"}, "both"},
		{"negative timeout", Config{BaseURL: "https://v6.example.org/api", Timeout: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats the password", err)
			}
		})
	}
	r, err := New(Config{BaseURL: "http://127.0.0.1:5000/api/"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Shutdown(context.Background()) }()
	if r.c.base != "http://127.0.0.1:5000/api" || r.c.timeout != DefaultTimeout || r.pageSize != DefaultPageSize || r.HasServiceAccount() {
		t.Errorf("defaults: base %q, timeout %s, page size %d", r.c.base, r.c.timeout, r.pageSize)
	}
}

// TestV6Metrics: the metrics are registered with their help and series.
func TestV6Metrics(t *testing.T) {
	e := newEnv(t)
	e.mustResolve(e.fake.NodeToken(nodeID))
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "eventserver_v6_") {
			if f.GetHelp() == "" {
				t.Errorf("%s has no help", f.GetName())
			}
			n += len(f.GetMetric())
		}
	}
	// 8 calls preset at ok, 1 duration series, 3 lookup results.
	if n != len(allCalls)+1+3 {
		t.Errorf("%d series", n)
	}
	// A second resolver on the same registry shares the collectors.
	r2, err := New(Config{BaseURL: e.fake.URL, Registerer: e.reg})
	if err != nil {
		t.Fatalf("second resolver on one registry: %v", err)
	}
	_ = r2.Shutdown(context.Background())
}
