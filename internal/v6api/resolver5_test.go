package v6api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/v6api/v6apitest"
	"github.com/eventserver/eventserver/internal/validate"
	"github.com/eventserver/eventserver/pkg/rooms"
)

const (
	svcClientID     = "eventserver-user-client"
	svcClientSecret = "kc-client-secret-not-in-logs"
)

// kc is the Keycloak id of node or user id in the 5.x world.
func kc(id int64) string { return fmt.Sprintf("6c1f4c2e-0000-4000-8000-%012d", id) }

// seed5 is seed's world, with Keycloak ids, the service account 90 as a
// Keycloak client, and tasks: 100 (collaboration 1, job 100) is required by
// 101 and 102 (children of 100, job 100); 103 in collaboration 2 has no
// dependents and no job. The service account may view every task.
func seed5(f *v6apitest.Fake) {
	seed(f)
	// The service account may also read every task.
	f.AddUser(v6apitest.User{ID: serviceID, Username: svcUser, OrganizationID: 1,
		RuleIDs: []int64{f.RuleID("collaboration", "GLOBAL", "VIEW"), f.RuleID("task", "GLOBAL", "VIEW")}})
	for _, id := range []int64{nodeID, userGlobal, userCollab, userOrg, userOwn, userNoRule, userMulti, userNoView,
		userRootish, serviceID} {
		f.SetKeycloakID(id, kc(id))
	}
	f.SetClient(serviceID, svcClientID, svcClientSecret)
	f.AddTask(v6apitest.Task{ID: 100, Name: "central", JobID: 100, CollaborationID: 1, InitOrgID: 2})
	f.AddTask(v6apitest.Task{ID: 101, Name: "partial", JobID: 100, ParentID: 100, CollaborationID: 1, InitOrgID: 2, DependsOn: []int64{100}})
	f.AddTask(v6apitest.Task{ID: 102, Name: "partial", JobID: 100, ParentID: 100, CollaborationID: 1, InitOrgID: 2, DependsOn: []int64{100}})
	f.AddTask(v6apitest.Task{ID: 103, Name: "lonely", CollaborationID: 2, InitOrgID: 1})
}

// withKeycloakService configures the 5.x service account.
func withKeycloakService(f *v6apitest.Fake) func(*Config) {
	return func(c *Config) { c.Username, c.Password, c.TokenURL = svcClientID, svcClientSecret, f.TokenURL }
}

// newEnv5 starts a seeded fake 5.x API and a resolver for it in 5.x mode
// (page size 10, cache TTL 30s, timeout 5s), adjusted by mutate, which
// sees the fake.
func newEnv5(t *testing.T, mutate ...func(*v6apitest.Fake) func(*Config)) *env {
	t.Helper()
	fake := v6apitest.NewV5([]byte(testSecret))
	t.Cleanup(fake.Close)
	seed5(fake)
	return newEnvFor(t, fake, validate.V6Version5, mutate...)
}

func newEnvFor(t *testing.T, fake *v6apitest.Fake, version string, mutate ...func(*v6apitest.Fake) func(*Config)) *env {
	t.Helper()
	ver, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e := &env{t: t, fake: fake, ver: ver, logs: logs, reg: prometheus.NewRegistry(),
		clock: &fakeClock{now: time.Now()}}
	cfg := Config{
		BaseURL:    fake.URL,
		Version:    version,
		Timeout:    5 * time.Second,
		CacheTTL:   30 * time.Second,
		PageSize:   10,
		Logger:     zap.New(core),
		Registerer: e.reg,
		Now:        e.clock.Now,
	}
	for _, m := range mutate {
		m(fake)(&cfg)
	}
	e.r, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.r.Shutdown(context.Background()) })
	return e
}

// cfg5 adapts a plain Config mutation to newEnv5.
func cfg5(m func(*Config)) func(*v6apitest.Fake) func(*Config) {
	return func(*v6apitest.Fake) func(*Config) { return m }
}

func (e *env) nodeToken5() string { return e.fake.KeycloakToken(kc(nodeID), "node", time.Hour) }
func (e *env) userToken5(id int64) string {
	return e.fake.KeycloakToken(kc(id), "user", time.Hour)
}

// TestV5Node: a node's Keycloak token resolves, with GET /node/me alone, to
// the node's numeric database id, name, organization and collaboration.
func TestV5Node(t *testing.T) {
	e := newEnv5(t)
	tok := e.nodeToken5()
	id := e.mustResolve(tok)
	if id.Kind != rooms.KindNode || id.ID != (auth.Subject{Value: "1", Numeric: true}) || id.Name != "org2-colA-node" ||
		id.OrganizationID != 2 || !slices.Equal(id.CollaborationIDs, []int64{1}) || id.Scope != rooms.ScopeNone {
		t.Errorf("node: %+v", id)
	}
	if got := id.Rooms(); !slices.Equal(got, []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"}) {
		t.Errorf("rooms %v", got)
	}
	calls := e.fake.AllCalls()
	if calls[v6apitest.RouteNodeMe] != 1 || len(calls) != 1 {
		t.Errorf("calls %v, want GET /node/me once and nothing else (no /version in 5 mode)", calls)
	}
	e.noSecrets(tok)
}

// TestV5Users: users of each event scope, from GET /user/me's permissions.
func TestV5Users(t *testing.T) {
	for _, tc := range []struct {
		name    string
		user    int64
		service bool
		scope   rooms.Scope
		collabs []int64
		warn    bool
	}{
		{"global with the Keycloak service account", userGlobal, true, rooms.ScopeGlobal, allCollabs, false},
		{"global who may list all collaborations himself", userRootish, false, rooms.ScopeGlobal, allCollabs, false},
		{"global without service account: own organization and a warning", userGlobal, false, rooms.ScopeGlobal, org1Collabs, true},
		{"collaboration", userCollab, false, rooms.ScopeCollaboration, org2Collabs, false},
		{"organization", userOrg, false, rooms.ScopeOrganization, org2Collabs, false},
		{"widest of several", userMulti, false, rooms.ScopeCollaboration, org2Collabs, false},
		{"own scope gives nothing", userOwn, false, rooms.ScopeNone, nil, false},
		{"no receive rule", userNoRule, false, rooms.ScopeNone, nil, false},
		{"may not list their collaborations: the service account does", userNoView, true, rooms.ScopeCollaboration, org2Collabs, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m []func(*v6apitest.Fake) func(*Config)
			if tc.service {
				m = append(m, withKeycloakService)
			}
			e := newEnv5(t, m...)
			tok := e.userToken5(tc.user)
			id := e.mustResolve(tok)
			if id.Kind != rooms.KindUser || id.ID != (auth.Subject{Value: fmt.Sprint(tc.user), Numeric: true}) ||
				id.Scope != tc.scope || !slices.Equal(id.CollaborationIDs, tc.collabs) {
				t.Errorf("user: %+v, want scope %q collaborations %v", id, tc.scope, tc.collabs)
			}
			if tc.scope == rooms.ScopeOrganization {
				if r := id.Rooms(); len(r) != len(org2Collabs) || r[0] != "collaboration_11_organization_2" {
					t.Errorf("organization rooms %v", r)
				}
			}
			if e.fake.Calls(v6apitest.RouteUserMe) != 1 || e.fake.Calls(v6apitest.RouteNodeMe) != 0 {
				t.Errorf("calls %v", e.fake.AllCalls())
			}
			if tc.service && tc.scope == rooms.ScopeGlobal && e.fake.Calls(v6apitest.RouteOIDC) != 1 {
				t.Errorf("the service account did not log in at Keycloak once: %v", e.fake.AllCalls())
			}
			warned := e.logs.FilterMessageSnippet("only the collaborations of their organization").Len() == 1
			if warned != tc.warn {
				t.Errorf("warning %v, want %v:\n%s", warned, tc.warn, e.logText())
			}
			e.noSecrets(tok)
			if strings.Contains(e.logText(), svcClientSecret) {
				t.Error("the client secret is in the logs")
			}
		})
	}
	t.Run("may not list their collaborations, no service account", func(t *testing.T) {
		e := newEnv5(t)
		_, err := e.resolve(e.userToken5(userNoView))
		if !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), "no service account") {
			t.Errorf("err %v", err)
		}
	})
}

// TestV5Claims: what the token must hold before the API is asked.
func TestV5Claims(t *testing.T) {
	e := newEnv5(t)
	for _, tc := range []struct {
		name  string
		token string
		want  string
	}{
		{"no vantage6_client_type", e.fake.KeycloakToken(kc(nodeID), "", time.Hour), `"vantage6_client_type" is missing`},
		{"container", e.fake.KeycloakToken(kc(nodeID), "container", time.Hour), `"container" is not accepted`},
		{"sub too long", e.fake.KeycloakToken(strings.Repeat("a", MaxSubject5+1), "node", time.Hour), "longer than 255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.resolve(tc.token)
			if !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	if n := len(e.fake.AllCalls()); n != 0 {
		t.Errorf("the API was asked %d times", n)
	}
	// Any non-empty sub up to the bound is a key, UUID or not.
	e.fake.SetKeycloakID(nodeID, "node-one")
	if id := e.mustResolve(e.fake.KeycloakToken("node-one", "node", time.Hour)); id.ID.Value != "1" {
		t.Errorf("id %+v", id)
	}
}

// TestV5WrongEndpoint: a token whose vantage6_client_type says user but
// whose Keycloak id is a node's gets 500 from GET /user/me, as from 5.x's
// with_user (the assertion on the authenticatable's type), and so does the
// reverse on GET /node/me: both are invalid, with the call in the error.
func TestV5WrongEndpoint(t *testing.T) {
	e := newEnv5(t)
	tok := e.fake.KeycloakToken(kc(nodeID), "user", time.Hour)
	_, err := e.resolve(tok)
	var ce *CallError
	if !errors.Is(err, auth.ErrInvalid) || !errors.As(err, &ce) || ce.Path != "/user/me" || ce.Status != http.StatusInternalServerError {
		t.Fatalf("node token as a user: %v", err)
	}
	f := e.failure()
	if f["call"] != callUserMe || f["keycloak_id"] != kc(nodeID) || f["client_type"] != "user" {
		t.Errorf("log fields %v", f)
	}
	e.noSecrets(tok)

	e2 := newEnv5(t)
	_, err = e2.resolve(e2.fake.KeycloakToken(kc(userCollab), "node", time.Hour))
	if !errors.As(err, &ce) || ce.Path != "/node/me" || ce.Status != http.StatusInternalServerError {
		t.Fatalf("user token as a node: %v", err)
	}
	// An unknown Keycloak id: 500 as well.
	_, err = e2.resolve(e2.fake.KeycloakToken(kc(4242), "node", time.Hour))
	if !errors.Is(err, auth.ErrInvalid) || !errors.As(err, &ce) || ce.Status != http.StatusInternalServerError {
		t.Fatalf("unknown id: %v", err)
	}
}

// TestV5CacheAndSingleflight: one lookup per client for the cache TTL, keyed
// by Keycloak id; identical lookups in flight share one.
func TestV5CacheAndSingleflight(t *testing.T) {
	e := newEnv5(t)
	tok := e.nodeToken5()
	e.mustResolve(tok)
	e.mustResolve(e.nodeToken5()) // another token of the same node
	if n := e.fake.Calls(v6apitest.RouteNodeMe); n != 1 {
		t.Errorf("%d calls within the TTL", n)
	}
	e.clock.Advance(31 * time.Second)
	e.mustResolve(tok)
	if n := e.fake.Calls(v6apitest.RouteNodeMe); n != 2 {
		t.Errorf("%d calls after the TTL", n)
	}

	e2 := newEnv5(t)
	e2.fake.SetDelay(200 * time.Millisecond)
	tok = e2.userToken5(userCollab)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := e2.resolve(tok)
			if err == nil && id.Scope != rooms.ScopeCollaboration {
				err = fmt.Errorf("scope %q", id.Scope)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e2.fake.Calls(v6apitest.RouteUserMe); n != 1 {
		t.Errorf("20 concurrent lookups made %d calls", n)
	}
	miss := counter(t, e2.reg, "eventserver_v6_identity_lookups_total", "result", "miss")
	shared := counter(t, e2.reg, "eventserver_v6_identity_lookups_total", "result", "shared")
	hit := counter(t, e2.reg, "eventserver_v6_identity_lookups_total", "result", "hit")
	// A goroutine that starts after the lookup ended reads the cache.
	if miss != 1 || shared+hit != 19 || shared == 0 {
		t.Errorf("miss %v shared %v hit %v", miss, shared, hit)
	}
}

// counter reads one series of a counter vector.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// requests reads the series of eventserver_v6_api_requests_total for call
// and outcome.
func requests(t *testing.T, reg *prometheus.Registry, call, outcome string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "eventserver_v6_api_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["call"] == call && got["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestV5DownOrSlow: an API that is down or slower than the timeout makes
// the token invalid, with the reason in the error and the log, and no token
// in the log.
func TestV5DownOrSlow(t *testing.T) {
	e := newEnv5(t, cfg5(func(c *Config) { c.Timeout = 100 * time.Millisecond }))
	e.fake.SetDelay(2 * time.Second)
	tok := e.nodeToken5()
	start := time.Now()
	_, err := e.resolve(tok)
	var ce *CallError
	if !errors.Is(err, auth.ErrInvalid) || !errors.As(err, &ce) || ce.Outcome != outcomeTimeout {
		t.Fatalf("slow: %v", err)
	}
	if time.Since(start) > 1500*time.Millisecond {
		t.Errorf("took %s", time.Since(start))
	}
	if requests(t, e.reg, callNodeMe, outcomeTimeout) != 1 {
		t.Error("the timeout was not counted")
	}
	e.noSecrets(tok)

	e2 := newEnv5(t)
	e2.fake.Close()
	_, err = e2.resolve(e2.userToken5(userOrg))
	if !errors.Is(err, auth.ErrInvalid) || !errors.As(err, &ce) || ce.Outcome != outcomeUnreachable ||
		!strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("down: %v", err)
	}
}

// TestV5VersionAuto: auto mode asks GET /version once, then resolves 4.x or
// 5.x tokens accordingly; an API that cannot tell fails with a clear error
// and is asked again next time.
func TestV5VersionAuto(t *testing.T) {
	t.Run("5", func(t *testing.T) {
		fake := v6apitest.NewV5([]byte(testSecret))
		t.Cleanup(fake.Close)
		seed5(fake)
		e := newEnvFor(t, fake, validate.V6VersionAuto)
		e.mustResolve(e.nodeToken5())
		e.mustResolve(e.userToken5(userCollab))
		if n := fake.Calls(v6apitest.RouteVersion); n != 1 {
			t.Errorf("GET /version %d times", n)
		}
		if v, err := e.r.APIVersion(context.Background()); v != 5 || err != nil {
			t.Errorf("APIVersion %d %v", v, err)
		}
		if e.logs.FilterMessage("vantage6 API version detected").Len() != 1 {
			t.Errorf("no detection log:\n%s", e.logText())
		}
	})
	t.Run("4", func(t *testing.T) {
		fake := v6apitest.New([]byte(testSecret))
		t.Cleanup(fake.Close)
		seed(fake)
		e := newEnvFor(t, fake, validate.V6VersionAuto)
		id := e.mustResolve(fake.NodeToken(nodeID))
		if id.ID.Value != "1" || fake.Calls(v6apitest.RouteVersion) != 1 || fake.Calls(v6apitest.RouteNode) != 1 {
			t.Errorf("%+v %v", id, fake.AllCalls())
		}
		// A 5.x token against a 4.x API is refused as in 4 mode.
		if _, err := e.r.Resolve(context.Background(), "x", &auth.Claims{Subject: auth.Subject{Value: kc(1)}}); err == nil ||
			!strings.Contains(err.Error(), "4.x token") {
			t.Errorf("5.x claims on 4.x: %v", err)
		}
	})
	t.Run("cannot tell", func(t *testing.T) {
		fake := v6apitest.NewV5([]byte(testSecret))
		t.Cleanup(fake.Close)
		seed5(fake)
		e := newEnvFor(t, fake, validate.V6VersionAuto)
		fake.SetStatus(v6apitest.RouteVersion, http.StatusNotFound)
		_, err := e.resolve(e.nodeToken5())
		if !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), "major version") {
			t.Errorf("404: %v", err)
		}
		fake.SetStatus(v6apitest.RouteVersion, 0)
		fake.SetVersion("6.1.0")
		_, err = e.resolve(e.nodeToken5())
		if !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), "EVENTSERVER_V6_VERSION") {
			t.Errorf("6.x: %v", err)
		}
		fake.SetVersion("5.0.0rc2")
		e.mustResolve(e.nodeToken5())
		if n := fake.Calls(v6apitest.RouteVersion); n != 3 {
			t.Errorf("GET /version %d times, want a retry after each failure", n)
		}
	})
	t.Run("4.x service account on a 5.x API", func(t *testing.T) {
		fake := v6apitest.NewV5([]byte(testSecret))
		t.Cleanup(fake.Close)
		seed5(fake)
		e := newEnvFor(t, fake, validate.V6VersionAuto, cfg5(withService))
		id := e.mustResolve(e.userToken5(userGlobal))
		if !slices.Equal(id.CollaborationIDs, org1Collabs) {
			t.Errorf("collaborations %v", id.CollaborationIDs)
		}
		if e.logs.FilterMessageSnippet("has no password login").Len() != 1 {
			t.Errorf("no warning:\n%s", e.logText())
		}
	})
}

func TestV5ParseMajor(t *testing.T) {
	for in, want := range map[string]int{"4.14.0": 4, "5.0.0rc2": 5, "v5.1.0": 5, "5": 5, "10.0": 10} {
		if got, ok := parseMajor(in); !ok || got != want {
			t.Errorf("%q: %d %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "x", "5x", ".5", "12345.0"} {
		if got, ok := parseMajor(in); ok {
			t.Errorf("%q: %d", in, got)
		}
	}
}

// TestV5ServiceAccount: the Keycloak client-credentials login, a wrong
// secret, and an expired token that is replaced by a new login.
func TestV5ServiceAccount(t *testing.T) {
	e := newEnv5(t, withKeycloakService)
	e.mustResolve(e.userToken5(userGlobal))
	e.fake.ExpireIssuedTokens()
	e.clock.Advance(time.Minute)
	e.clock.Advance(31 * time.Second) // past the cache TTL, not the token's exp
	id := e.mustResolve(e.userToken5(userGlobal))
	if !slices.Equal(id.CollaborationIDs, allCollabs) {
		t.Errorf("after expiry: %v", id.CollaborationIDs)
	}
	if n := e.fake.Calls(v6apitest.RouteOIDC); n != 2 {
		t.Errorf("%d logins, want 2 (the second after the token was refused)", n)
	}

	bad := newEnv5(t, func(f *v6apitest.Fake) func(*Config) {
		return func(c *Config) {
			c.Username, c.Password, c.TokenURL = svcClientID, "wrong-"+svcClientSecret, f.TokenURL
		}
	})
	_, err := bad.resolve(bad.userToken5(userGlobal))
	var ce *CallError
	if !errors.Is(err, auth.ErrInvalid) || !errors.As(err, &ce) || ce.Call != callOIDCLogin || ce.Status != 401 ||
		!strings.Contains(err.Error(), "Invalid client") {
		t.Fatalf("wrong secret: %v", err)
	}
	if strings.Contains(bad.logText(), svcClientSecret) {
		t.Error("the client secret is in the logs")
	}
}

// TestV5Config: what New refuses.
func TestV5Config(t *testing.T) {
	base := "https://v6.example.org/api"
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad version", Config{BaseURL: base, Version: "6"}, "want 4, 5 or auto"},
		{"5 with a password account", Config{BaseURL: base, Version: "5", Username: "u", Password: "p"}, "no password login"},
		{"token URL on 4", Config{BaseURL: base, TokenURL: "https://kc.example.org/t", Username: "u", Password: "p"}, "5 or auto"},
		{"token URL without account", Config{BaseURL: base, Version: "5", TokenURL: "https://kc.example.org/t"}, "client id"},
		{"bad token URL", Config{BaseURL: base, Version: "auto", TokenURL: "ftp://kc", Username: "u", Password: "p"}, "token URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.cfg)
			if err == nil {
				_ = r.Shutdown(context.Background())
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
	for _, v := range []string{"", "4", "5", "auto", "AUTO"} {
		r, err := New(Config{BaseURL: base, Version: v})
		if err != nil {
			t.Errorf("version %q: %v", v, err)
			continue
		}
		_ = r.Shutdown(context.Background())
	}
}

// TestV5Task: the facts of a task, with the node's token or the service
// account's, cached and shared.
func TestV5Task(t *testing.T) {
	ctx := context.Background()
	e := newEnv5(t, withKeycloakService)
	nodeTok := e.nodeToken5()

	info, err := e.r.Task(ctx, 100, nodeTok)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != 100 || info.JobID == nil || *info.JobID != 100 || info.ParentID != nil || info.CollaborationID != 1 ||
		!slices.Equal(info.RequiredBy, []int64{101, 102}) || len(info.DependsOn) != 0 {
		t.Errorf("task 100: %+v", info)
	}
	info, err = e.r.Task(ctx, 101, nodeTok)
	if err != nil || info.ParentID == nil || *info.ParentID != 100 || !slices.Equal(info.DependsOn, []int64{100}) ||
		len(info.RequiredBy) != 0 {
		t.Errorf("task 101: %+v %v", info, err)
	}
	if n := e.fake.Calls(v6apitest.RouteTask); n != 2 || requests(t, e.reg, callTask, outcomeOK) != 2 {
		t.Errorf("%d calls", n)
	}

	// Cached: no call; a changed copy does not change the cache.
	info, _ = e.r.Task(ctx, 100, nodeTok)
	info.RequiredBy[0] = 999
	*info.JobID = 7
	info, _ = e.r.Task(ctx, 100, "")
	if e.fake.Calls(v6apitest.RouteTask) != 2 || info.RequiredBy[0] != 101 || *info.JobID != 100 {
		t.Errorf("cache: %+v, %d calls", info, e.fake.Calls(v6apitest.RouteTask))
	}
	// A new dependent: RefreshTask sees it, and refreshes the cache.
	e.fake.AddTask(v6apitest.Task{ID: 104, JobID: 104, CollaborationID: 1, InitOrgID: 2, DependsOn: []int64{100}})
	info, err = e.r.RefreshTask(ctx, 100, nodeTok)
	if err != nil || !slices.Equal(info.RequiredBy, []int64{101, 102, 104}) {
		t.Errorf("refresh: %+v %v", info, err)
	}
	if info, _ = e.r.Task(ctx, 100, nodeTok); len(info.RequiredBy) != 3 {
		t.Errorf("cache after refresh: %+v", info)
	}

	// Task 103 is in collaboration 2: the node may not read it (401), the
	// service account does; without a token, the service account asks.
	info, err = e.r.Task(ctx, 103, nodeTok)
	if err != nil || info.CollaborationID != 2 || info.JobID != nil || len(info.RequiredBy) != 0 {
		t.Errorf("task 103: %+v %v", info, err)
	}
	if requests(t, e.reg, callTask, outcomeRefused) != 1 || requests(t, e.reg, callServiceTask, outcomeOK) != 1 {
		t.Errorf("calls %v", e.fake.AllCalls())
	}
	e.clock.Advance(31 * time.Second)
	if _, err := e.r.Task(ctx, 101, ""); err != nil || requests(t, e.reg, callServiceTask, outcomeOK) != 2 {
		t.Errorf("no token: %v", err)
	}

	// Missing task.
	_, err = e.r.Task(ctx, 555, nodeTok)
	if !errors.Is(err, auth.ErrInvalid) || !IsNotFound(err) {
		t.Errorf("missing: %v", err)
	}
	if _, err := e.r.Task(ctx, 0, nodeTok); err == nil {
		t.Error("task 0 accepted")
	}
	e.noSecrets(nodeTok)

	// Without a service account: the node's token alone.
	e2 := newEnv5(t)
	if _, err := e2.r.Task(ctx, 100, ""); !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), "no service account") {
		t.Errorf("no token, no account: %v", err)
	}
	if _, err := e2.r.Task(ctx, 103, e2.nodeToken5()); !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("refused, no account: %v", err)
	}
}

// TestV5TaskShared: identical task lookups in flight make one call, and a
// slow API fails them within the timeout.
func TestV5TaskShared(t *testing.T) {
	e := newEnv5(t, cfg5(func(c *Config) { c.Timeout = 300 * time.Millisecond }))
	e.fake.SetDelay(100 * time.Millisecond)
	tok := e.nodeToken5()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := e.r.Task(context.Background(), 100, tok)
			if err == nil && info.CollaborationID != 1 {
				err = fmt.Errorf("%+v", info)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.fake.Calls(v6apitest.RouteTask); n != 1 {
		t.Errorf("%d calls", n)
	}
	e.fake.SetDelay(2 * time.Second)
	_, err := e.r.Task(context.Background(), 101, tok)
	var ce *CallError
	if !errors.Is(err, auth.ErrInvalid) || !errors.As(err, &ce) || ce.Outcome != outcomeTimeout {
		t.Errorf("slow: %v", err)
	}
	if e.logs.FilterMessage("vantage6 API task lookup failed").Len() != 1 {
		t.Errorf("no failure log:\n%s", e.logText())
	}
}
