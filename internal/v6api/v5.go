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
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/textclip"
)

// ClientTypeClaim5 is the claim of a vantage6 5.x (Keycloak) access token
// that says whether it is a node's or a user's: Keycloak's hard-coded claim
// mappers put "user" in every token of the public client and of a user's
// service account, and "node" in every token of a node's service account.
// The 5.x API reads the same claim to decide which routes a token may use.
const ClientTypeClaim5 = "vantage6_client_type"

// MaxSubject5 bounds the length, in bytes, of a vantage6 5.x token's sub
// (a Keycloak id is a 36-character UUID).
const MaxSubject5 = 255

// APIVersion returns the vantage6 major version of the API: the configured
// one, or in auto mode the one GET /version answered, asked once (identical
// questions in flight are shared; a failure is not remembered, so the next
// lookup asks again). The error wraps auth.ErrInvalid and says to set the
// version when the API cannot tell.
func (r *Resolver) APIVersion(ctx context.Context) (int, error) {
	if r.version != 0 {
		return r.version, nil
	}
	if v := r.detected.Load(); v != 0 {
		return int(v), nil
	}
	ch := r.flights.DoChan("version", func() (any, error) {
		if v := r.detected.Load(); v != 0 {
			return int(v), nil
		}
		fctx, cancel := detach(ctx)
		defer cancel()
		v, raw, err := r.detectVersion(fctx)
		if err != nil {
			fields := []zap.Field{}
			var ce *CallError
			if errors.As(err, &ce) {
				fields = append(fields, ce.fields()...)
			}
			r.log.Warn("cannot tell the vantage6 API's version: clients get invalid_token until it answers "+
				"(or set EVENTSERVER_V6_VERSION to 4 or 5)", append(fields, zap.Error(err))...)
			return 0, err
		}
		r.detected.Store(int32(v))
		r.log.Info("vantage6 API version detected", zap.Int("major", v), zap.String("version", raw))
		return v, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return 0, res.Err
		}
		return res.Val.(int), nil
	case <-ctx.Done():
		return 0, invalidf("gave up waiting for the vantage6 API's version: %w", ctx.Err())
	}
}

// detectVersion asks GET /version (no token needed; 4.x and 5.x both answer
// {"version": "4.14.0"} or {"version": "5.0.0rc2"}).
func (r *Resolver) detectVersion(ctx context.Context) (int, string, error) {
	var v struct {
		Version *string `json:"version"`
	}
	if _, err := r.c.do(ctx, call{name: callVersion, method: http.MethodGet, tmpl: "/version", path: "/version"}, &v); err != nil {
		return 0, "", invalid(fmt.Errorf("cannot tell the vantage6 API's major version (EVENTSERVER_V6_VERSION=auto): %w", err))
	}
	if v.Version == nil {
		return 0, "", invalidf("cannot tell the vantage6 API's major version: GET /version has no \"version\"")
	}
	major, ok := parseMajor(*v.Version)
	if !ok || (major != 4 && major != 5) {
		return 0, "", invalidf("GET /version: version %q is neither 4.x nor 5.x: set EVENTSERVER_V6_VERSION to 4 or 5",
			textclip.Cut(*v.Version, textclip.Name))
	}
	return major, *v.Version, nil
}

// parseMajor reads the major version of "4.14.0", "v5.0.0rc2" or "5".
func parseMajor(s string) (int, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	end := strings.IndexFunc(s, func(c rune) bool { return c < '0' || c > '9' })
	if end < 0 {
		end = len(s)
	}
	if end == 0 || end > 4 || (end < len(s) && s[end] != '.') {
		return 0, false
	}
	n, err := strconv.Atoi(s[:end])
	return n, err == nil
}

// service returns the service account to use with an API of version major,
// or nil: a 4.x account (password login) cannot log in to 5.x and a 5.x
// account (Keycloak client) means nothing to 4.x; in auto mode that is known
// only once the version is, and is then warned about once.
func (r *Resolver) service(major int) *service {
	if r.svc == nil {
		return nil
	}
	if (major == 5) == r.svc.oidc() {
		return r.svc
	}
	r.svcWarn.Do(func() {
		if major == 5 {
			r.log.Warn("the vantage6 API is 5.x, which has no password login: the service account is not used; " +
				"give it as a Keycloak client id and secret with EVENTSERVER_V6_TOKEN_URL")
		} else {
			r.log.Warn("the vantage6 API is 4.x: the Keycloak service account (EVENTSERVER_V6_TOKEN_URL) is not used")
		}
	})
	return nil
}

// resolve5 resolves a vantage6 5.x (Keycloak) token: the claim
// vantage6_client_type says node or user, GET /node/me or
// GET /user/me?include_permissions=true, with the client's own token, says
// who.
func (r *Resolver) resolve5(ctx context.Context, token string, claims *auth.Claims) (*identity.Identity, error) {
	sub := claims.Subject.Value
	switch {
	case sub == "":
		return nil, invalidf(`claim "sub" is missing`)
	case len(sub) > MaxSubject5:
		return nil, invalidf(`claim "sub" is longer than %d bytes`, MaxSubject5)
	case !utf8.ValidString(sub):
		return nil, invalidf(`claim "sub" is not valid UTF-8`)
	}
	ct, isString := claims.Raw[ClientTypeClaim5].(string)
	switch {
	case claims.Raw[ClientTypeClaim5] == nil:
		return nil, invalidf(`%v (vantage6 5.x's Keycloak clients add it; the 5.x API refuses tokens without it)`,
			&rooms.KindError{Claim: ClientTypeClaim5, Missing: true})
	case !isString:
		return nil, invalidf(`claim %q must be a string`, ClientTypeClaim5)
	}
	kind, err := rooms.ParseKind(ct)
	if err != nil {
		return nil, invalidf("%v", &rooms.KindError{Claim: ClientTypeClaim5, Value: ct})
	}
	if token == "" {
		return nil, invalidf("no token to ask the vantage6 API with")
	}
	key := "v5:" + string(kind) + ":" + sub
	fields := []zap.Field{zap.String("client_type", string(kind)), zap.String("keycloak_id", textclip.Cut(sub, textclip.Name))}
	return r.shared(ctx, key, fields, func(ctx context.Context) (*identity.Identity, error) {
		if kind == rooms.KindNode {
			return lookupResult(r.node5(ctx, token, sub))
		}
		return lookupResult(r.user5(ctx, token, sub))
	})
}

func (r *Resolver) node5(ctx context.Context, token, sub string) (*identity.Identity, error) {
	var n struct {
		ID            int64   `json:"id"`
		Name          string  `json:"name"`
		Type          string  `json:"type"`
		KeycloakID    *string `json:"keycloak_id"`
		Organization  *ref    `json:"organization"`
		Collaboration *ref    `json:"collaboration"`
	}
	_, err := r.c.do(ctx, call{name: callNodeMe, method: http.MethodGet, tmpl: "/node/me", path: "/node/me",
		bearer: token}, &n)
	if err != nil {
		return nil, err
	}
	switch {
	case n.ID <= 0:
		return nil, invalidf("GET /node/me: the answer has no positive id")
	case n.Type != "" && n.Type != "node":
		return nil, invalidf("GET /node/me: answered type %q", textclip.Cut(n.Type, textclip.Name))
	case n.KeycloakID != nil && *n.KeycloakID != sub:
		return nil, invalidf("GET /node/me: answered another Keycloak id than the token's sub")
	case n.Organization == nil || n.Organization.ID <= 0:
		return nil, invalidf("GET /node/me: the answer has no organization.id")
	case n.Collaboration == nil || n.Collaboration.ID <= 0:
		return nil, invalidf("GET /node/me: the answer has no collaboration.id")
	}
	return nodeIdentity(n.ID, n.Name, n.Organization.ID, n.Collaboration.ID), nil
}

func (r *Resolver) user5(ctx context.Context, token, sub string) (*identity.Identity, error) {
	var (
		u struct {
			ID           int64   `json:"id"`
			Username     string  `json:"username"`
			Type         string  `json:"type"`
			KeycloakID   *string `json:"keycloak_id"`
			Organization *ref    `json:"organization"`
			Permissions  *struct {
				Rules []int64 `json:"rules"`
			} `json:"permissions"`
		}
		eventRules []rule
	)
	// Side by side; GET /user/me's failure is the one reported (a node's
	// token fails both, with 500).
	var (
		wg               sync.WaitGroup
		userErr, ruleErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		eventRules, ruleErr = r.rules(ctx, token, "event")
	}()
	_, userErr = r.c.do(ctx, call{name: callUserMe, method: http.MethodGet, tmpl: "/user/me", path: "/user/me",
		query: url.Values{"include_permissions": {"true"}}, bearer: token}, &u)
	wg.Wait()
	if userErr != nil {
		return nil, userErr
	}
	if ruleErr != nil {
		return nil, ruleErr
	}
	switch {
	case u.ID <= 0:
		return nil, invalidf("GET /user/me: the answer has no positive id")
	case u.Type != "" && u.Type != "user":
		return nil, invalidf("GET /user/me: answered type %q", textclip.Cut(u.Type, textclip.Name))
	case u.KeycloakID != nil && *u.KeycloakID != sub:
		return nil, invalidf("GET /user/me: answered another Keycloak id than the token's sub")
	case u.Organization == nil || u.Organization.ID <= 0:
		return nil, invalidf("GET /user/me: the answer has no organization.id")
	case u.Permissions == nil:
		return nil, invalidf("GET /user/me: the answer has no permissions")
	}
	sid := strconv.FormatInt(u.ID, 10)
	name := u.Username
	if name == "" {
		name = "user" + sid
	}
	ident := &identity.Identity{
		Kind:           rooms.KindUser,
		ID:             auth.Subject{Value: sid, Numeric: true},
		Name:           name,
		OrganizationID: u.Organization.ID,
		Scope:          eventScope(u.Permissions.Rules, eventRules),
	}
	if ident.Scope == rooms.ScopeNone {
		return ident, nil
	}
	cids, err := r.collaborations(ctx, token, ident, u.Permissions.Rules, r.service(5))
	if err != nil {
		return nil, err
	}
	ident.CollaborationIDs = cids
	return ident, nil
}

// TaskInfo is what the event server needs to know of a task for vantage6
// 5.x's events, from GET /task/<id>.
type TaskInfo struct {
	// ID is the task's id.
	ID int64
	// JobID is the task's job_id (the id of the first task of its job), nil
	// when the API gives none.
	JobID *int64
	// ParentID is the id of the task's parent task (parent.id), nil for a
	// task without a parent.
	ParentID *int64
	// CollaborationID is the task's collaboration (collaboration.id).
	CollaborationID int64
	// DependsOn are the ids of the tasks this task depends on (depends_on).
	DependsOn []int64
	// RequiredBy are the ids of the tasks that depend on this task
	// (required_by), sorted, as the API knew them when asked.
	RequiredBy []int64
}

func (t TaskInfo) clone() TaskInfo {
	t.JobID = clonePtr(t.JobID)
	t.ParentID = clonePtr(t.ParentID)
	t.DependsOn = slices.Clone(t.DependsOn)
	t.RequiredBy = slices.Clone(t.RequiredBy)
	return t
}

func clonePtr(p *int64) *int64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// IsNotFound reports whether err is the API's 404 (e.g. a task that does
// not exist, or no longer).
func IsNotFound(err error) bool {
	var ce *CallError
	return errors.As(err, &ce) && ce.Status == http.StatusNotFound
}

// Task returns the facts of task taskID, from the cache when they were asked
// less than the cache TTL ago (a task's job, parent and collaboration never
// change; see RefreshTask for required_by, which grows). token is the node's
// own access token, or "": a node may read the tasks of its collaboration
// (task COLLABORATION VIEW); when it is "", or the API refuses it, the
// service account asks instead. Identical lookups in flight are shared;
// each call is bounded by the timeout. Errors wrap auth.ErrInvalid and, when
// a call failed, a *CallError (IsNotFound tells a missing task); failures
// are logged and counted in eventserver_v6_api_requests_total (call task or
// service_task).
func (r *Resolver) Task(ctx context.Context, taskID int64, token string) (TaskInfo, error) {
	return r.task(ctx, taskID, token, false)
}

// RefreshTask is Task without the cache: it always asks the API (sharing
// identical lookups in flight) and caches the answer. Use it when
// required_by matters, e.g. when a run completes and the tasks that depend
// on it are to be told.
func (r *Resolver) RefreshTask(ctx context.Context, taskID int64, token string) (TaskInfo, error) {
	return r.task(ctx, taskID, token, true)
}

func (r *Resolver) task(ctx context.Context, taskID int64, token string, fresh bool) (TaskInfo, error) {
	if taskID <= 0 {
		return TaskInfo{}, invalidf("task id %d is not positive", taskID)
	}
	key := "task:" + strconv.FormatInt(taskID, 10)
	if !fresh {
		if v, ok := r.cache.get(key, r.now()); ok {
			return v.(TaskInfo).clone(), nil
		}
	}
	flight := key
	if fresh {
		flight = "fresh-" + key
	}
	ch := r.flights.DoChan(flight, func() (any, error) {
		fctx, cancel := detach(ctx)
		defer cancel()
		major, err := r.APIVersion(fctx)
		if err != nil {
			return nil, err
		}
		info, err := r.fetchTask(fctx, taskID, token, r.service(major))
		if err != nil {
			fields := []zap.Field{zap.Int64("task_id", taskID)}
			var ce *CallError
			if errors.As(err, &ce) {
				fields = append(fields, ce.fields()...)
			}
			r.log.Warn("vantage6 API task lookup failed", append(fields, zap.Error(err))...)
			var le *lookupError
			if !errors.As(err, &le) {
				err = invalid(err)
			}
			return nil, err
		}
		r.cache.put(key, info, r.now())
		return info, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return TaskInfo{}, res.Err
		}
		return res.Val.(TaskInfo).clone(), nil
	case <-ctx.Done():
		return TaskInfo{}, invalidf("gave up waiting for the vantage6 API's task %d: %w", taskID, ctx.Err())
	}
}

func (r *Resolver) fetchTask(ctx context.Context, id int64, token string, account *service) (TaskInfo, error) {
	var t struct {
		ID            int64   `json:"id"`
		JobID         *int64  `json:"job_id"`
		Parent        *ref    `json:"parent"`
		Collaboration *ref    `json:"collaboration"`
		DependsOn     []int64 `json:"depends_on"`
		RequiredBy    []int64 `json:"required_by"`
	}
	cl := call{method: http.MethodGet, tmpl: "/task/{id}", path: "/task/" + strconv.FormatInt(id, 10)}
	var err error
	if token != "" {
		cl.name, cl.bearer = callTask, token
		_, err = r.c.do(ctx, cl, &t)
		var ce *CallError
		// 401/403: the token may not read the task; 500: vantage6's answer
		// to a token of a type the route refuses.
		if err != nil && account != nil && errors.As(err, &ce) && (ce.refused() || ce.Status == http.StatusInternalServerError) {
			r.log.Info("the token may not read the task: asking with the service account",
				zap.Int64("task_id", id), zap.Int("status", ce.Status))
			err = nil
			token = ""
		}
	}
	if token == "" {
		if account == nil {
			return TaskInfo{}, invalidf("GET /task/{id}: no token of the node and no service account to ask with")
		}
		cl.name, cl.bearer = callServiceTask, ""
		_, err = account.do(ctx, cl, &t)
	}
	if err != nil {
		return TaskInfo{}, err
	}
	switch {
	case t.ID != id:
		return TaskInfo{}, invalidf("GET /task/{id}: answered task %d for task %d", t.ID, id)
	case t.Collaboration == nil || t.Collaboration.ID <= 0:
		return TaskInfo{}, invalidf("GET /task/{id}: the answer has no collaboration.id")
	case t.JobID != nil && *t.JobID <= 0:
		return TaskInfo{}, invalidf("GET /task/{id}: job_id %d is not positive", *t.JobID)
	case t.Parent != nil && t.Parent.ID <= 0:
		return TaskInfo{}, invalidf("GET /task/{id}: parent has no positive id")
	}
	info := TaskInfo{ID: t.ID, JobID: t.JobID, CollaborationID: t.Collaboration.ID}
	if t.Parent != nil {
		p := t.Parent.ID
		info.ParentID = &p
	}
	var bad bool
	info.DependsOn, bad = positiveSorted(t.DependsOn)
	if bad {
		return TaskInfo{}, invalidf("GET /task/{id}: depends_on has an id that is not positive")
	}
	info.RequiredBy, bad = positiveSorted(t.RequiredBy)
	if bad {
		return TaskInfo{}, invalidf("GET /task/{id}: required_by has an id that is not positive")
	}
	return info, nil
}

// positiveSorted sorts and deduplicates ids; bad when one is not positive.
func positiveSorted(ids []int64) ([]int64, bool) {
	out := slices.Clone(ids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] <= 0 {
		return nil, true
	}
	return out, false
}
