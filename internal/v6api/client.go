package v6api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/promreg"
)

// maxBody bounds what is read of one API answer.
const maxBody = 8 << 20

// Outcomes of one API call, the values of the metric label "outcome".
const (
	outcomeOK          = "ok"
	outcomeRefused     = "refused"      // 401 or 403
	outcomeNotFound    = "not_found"    // 404
	outcomeClientError = "client_error" // any other 4xx
	outcomeServerError = "server_error" // 5xx (vantage6 answers a node on a user-only route with 500)
	outcomeMalformed   = "malformed"    // 2xx, but not the JSON expected
	outcomeTimeout     = "timeout"      // EVENTSERVER_V6_TIMEOUT or the caller's deadline passed
	outcomeCanceled    = "canceled"     // the caller went away
	outcomeUnreachable = "unreachable"  // no answer: refused connection, DNS, TLS, reset
)

// Call names, the values of the metric label "call".
const (
	callNode                  = "node"                   // GET /node/{id}
	callValidate              = "validate"               // POST /token/user/validate
	callUser                  = "user"                   // GET /user/{id}?include_permissions=true
	callRules                 = "rules"                  // GET /rule?name=...&no_pagination=1
	callCollaborations        = "collaborations"         // GET /collaboration, with the user's token
	callServiceCollaborations = "service_collaborations" // GET /collaboration, with the service account
	callLogin                 = "login"                  // POST /token/user
	callRefresh               = "refresh"                // POST /token/refresh
	// vantage6 5.x
	callVersion     = "version"      // GET /version
	callNodeMe      = "node_me"      // GET /node/me
	callUserMe      = "user_me"      // GET /user/me?include_permissions=true
	callTask        = "task"         // GET /task/{id}, with the node's token
	callServiceTask = "service_task" // GET /task/{id}, with the service account
	callOIDCLogin   = "oidc_login"   // POST <token URL>, client credentials
)

var allCalls = []string{callNode, callValidate, callUser, callRules, callCollaborations,
	callServiceCollaborations, callLogin, callRefresh,
	callVersion, callNodeMe, callUserMe, callTask, callServiceTask, callOIDCLogin}

// metrics are the resolver's collectors.
type metrics struct {
	requests *prometheus.CounterVec   // call, outcome
	duration *prometheus.HistogramVec // call
	cache    *prometheus.CounterVec   // result
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_v6_api_requests_total",
			Help: "Calls to the vantage6 REST API, by call (node, validate, user, rules, collaborations, service_collaborations, login, refresh; for 5.x version, node_me, user_me, task, service_task, oidc_login) and outcome (ok, refused, not_found, client_error, server_error, malformed, timeout, canceled, unreachable).",
		}, []string{"call", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eventserver_v6_api_request_duration_seconds",
			Help:    "Duration of calls to the vantage6 REST API, by call, whatever their outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"call"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_v6_identity_lookups_total",
			Help: "Identity lookups through the vantage6 API, by result: hit (from the cache), miss (asked the API), shared (joined an identical lookup in flight).",
		}, []string{"result"}),
	}
	for _, c := range allCalls {
		m.requests.WithLabelValues(c, outcomeOK)
	}
	for _, r := range []string{"hit", "miss", "shared"} {
		m.cache.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.requests = promreg.Register(reg, m.requests, &err)
	m.duration = promreg.Register(reg, m.duration, &err)
	m.cache = promreg.Register(reg, m.cache, &err)
	return m, err
}

// call is one request to the API.
type call struct {
	name   string // metric label
	method string
	tmpl   string // path template, for logs and errors: /node/{id}
	path   string // path below the base URL: /node/3
	url    string // an absolute URL instead of base+path (the Keycloak token endpoint)
	query  url.Values
	bearer string     // the Authorization token; never logged
	body   any        // JSON body, or nil
	form   url.Values // form body (instead of body), or nil; may hold a secret: never logged
}

// CallError is a failed call to the vantage6 API. It never holds a token or a
// password.
type CallError struct {
	// Call is the metric label of the call (node, validate, ...).
	Call string
	// Method and Path name the route; Path is a template (/node/{id}).
	Method, Path string
	// Status is the HTTP status, 0 when there was no answer.
	Status int
	// Outcome is the metric label of the outcome.
	Outcome string
	// APIMessage is the "msg" of the API's answer, shortened.
	APIMessage string
	// Err is the transport or decoding error, if any.
	Err error
}

func (e *CallError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Method, e.Path)
	switch {
	case e.Status != 0 && e.Err != nil:
		fmt.Fprintf(&b, "HTTP %d: %v", e.Status, e.Err)
	case e.Status != 0:
		fmt.Fprintf(&b, "HTTP %d", e.Status)
		if e.APIMessage != "" {
			fmt.Fprintf(&b, " (%q)", e.APIMessage)
		}
	case e.Err != nil:
		fmt.Fprintf(&b, "%s: %v", e.Outcome, e.Err)
	default:
		b.WriteString(e.Outcome)
	}
	return b.String()
}

func (e *CallError) Unwrap() error { return e.Err }

// refused reports whether the API answered 401 or 403.
func (e *CallError) refused() bool { return e.Outcome == outcomeRefused }

// fields describe the failed call for a log line.
func (e *CallError) fields() []zap.Field {
	f := []zap.Field{
		zap.String("call", e.Call),
		zap.String("method", e.Method),
		zap.String("path", e.Path),
		zap.String("outcome", e.Outcome),
	}
	if e.Status != 0 {
		f = append(f, zap.Int("status", e.Status))
	}
	if e.APIMessage != "" {
		f = append(f, zap.String("api_msg", e.APIMessage))
	}
	if e.Err != nil {
		f = append(f, zap.String("cause", e.Err.Error()))
	}
	return f
}

// client calls the API.
type client struct {
	base    string // no trailing slash
	http    *http.Client
	timeout time.Duration
	m       *metrics
}

// do sends one request with its own timeout (bounded by ctx) and decodes a
// 2xx JSON answer into out (when out is not nil). It returns the answer's
// headers, or a *CallError.
func (c *client) do(ctx context.Context, cl call, out any) (http.Header, error) {
	start := time.Now()
	h, err := c.roundTrip(ctx, cl, out)
	c.m.duration.WithLabelValues(cl.name).Observe(time.Since(start).Seconds())
	if err != nil {
		c.m.requests.WithLabelValues(cl.name, err.Outcome).Inc()
		return nil, err
	}
	c.m.requests.WithLabelValues(cl.name, outcomeOK).Inc()
	return h, nil
}

func (c *client) roundTrip(ctx context.Context, cl call, out any) (http.Header, *CallError) {
	fail := func(status int, outcome string, msg string, err error) (http.Header, *CallError) {
		return nil, &CallError{Call: cl.name, Method: cl.method, Path: cl.tmpl, Status: status,
			Outcome: outcome, APIMessage: msg, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	u := c.base + cl.path
	if cl.url != "" {
		u = cl.url
	}
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.form != nil {
		body = strings.NewReader(cl.form.Encode())
	} else if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return fail(0, outcomeMalformed, "", fmt.Errorf("encoding the request: %w", err))
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return fail(0, outcomeMalformed, "", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "eventserver")
	if cl.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+cl.bearer)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return fail(0, transportOutcome(ctx, err), "", transportCause(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fail(resp.StatusCode, transportOutcome(ctx, err), "", fmt.Errorf("reading the answer: %w", transportCause(err)))
	}
	if len(raw) > maxBody {
		return fail(resp.StatusCode, outcomeMalformed, "", fmt.Errorf("answer larger than %d bytes", maxBody))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fail(resp.StatusCode, statusOutcome(resp.StatusCode), apiMessage(raw), nil)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fail(resp.StatusCode, outcomeMalformed, "", fmt.Errorf("decoding the answer: %w", err))
		}
	}
	return resp.Header, nil
}

func statusOutcome(code int) string {
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return outcomeRefused
	case code == http.StatusNotFound:
		return outcomeNotFound
	case code >= 500:
		return outcomeServerError
	}
	return outcomeClientError
}

func transportOutcome(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return outcomeTimeout
	}
	if errors.Is(err, context.Canceled) {
		return outcomeCanceled
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return outcomeTimeout
	}
	return outcomeUnreachable
}

// transportCause drops the *url.Error wrapper, whose text repeats the URL.
func transportCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// apiMessage reads vantage6's {"msg": "..."} (or Flask's {"message": ...},
// or OAuth 2's {"error_description": ...})
// from an error answer, shortened to one line.
func apiMessage(raw []byte) string {
	var v struct {
		Msg     any `json:"msg"`
		Message any `json:"message"`
		// An OAuth 2 error answer (Keycloak's token endpoint).
		ErrorDescription any `json:"error_description"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	m := v.Msg
	if m == nil {
		m = v.Message
	}
	if m == nil {
		m = v.ErrorDescription
	}
	s, ok := m.(string)
	if !ok {
		return ""
	}
	s = strings.Join(strings.Fields(s), " ")
	const limit = 200
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}
