package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/presence"
)

const token = "0123456789abcdef-publish"

// emitCall is one call of the fake emitter.
type emitCall struct {
	rooms, except []string
	event         string
	args          []any
}

// fakeEmitter records the calls it gets; EmitFunc, when set, decides the result.
type fakeEmitter struct {
	EmitFunc func(rooms, except []string, event string, args ...any) error

	mu    sync.Mutex
	calls []emitCall
}

func (f *fakeEmitter) Emit(rooms, except []string, event string, args ...any) error {
	f.mu.Lock()
	f.calls = append(f.calls, emitCall{rooms: rooms, except: except, event: event, args: args})
	f.mu.Unlock()
	if f.EmitFunc != nil {
		return f.EmitFunc(rooms, except, event, args...)
	}
	return nil
}

func (f *fakeEmitter) Calls() []emitCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type fixture struct {
	srv      *httptest.Server
	emitter  *fakeEmitter
	presence *presence.Memory
	metrics  *Metrics
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{emitter: &fakeEmitter{}, presence: presence.NewMemory(nil), metrics: testMetrics()}
	cfg.Emitter = f.emitter
	cfg.Presence = f.presence
	cfg.Metrics = f.metrics
	cfg.Logger = zap.NewNop()
	mux := http.NewServeMux()
	New(cfg).Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (f *fixture) do(t *testing.T, method, path, auth, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

func (f *fixture) emit(t *testing.T, body string) response {
	t.Helper()
	return f.do(t, http.MethodPost, "/api/v1/emit", "Bearer "+token, body)
}

// apiErr decodes an error body.
func apiErr(t *testing.T, r response) apiError {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if e.Error == "" {
		t.Errorf("error body %s has no message", r.body)
	}
	return e
}

// argJSON encodes one emitted argument.
func argJSON(t *testing.T, a any) string {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// counter reads eventserver_publish_requests_total{status=...}.
func counter(t *testing.T, m *Metrics, status string) float64 {
	t.Helper()
	return testutil.ToFloat64(m.PublishRequests.WithLabelValues(status))
}

func TestPublishOffWithoutToken(t *testing.T) {
	f := newFixture(t, Config{})
	tests := []struct{ method, path, auth string }{
		{http.MethodPost, "/api/v1/emit", ""},
		{http.MethodPost, "/api/v1/emit", "Bearer anything"},
		{http.MethodGet, "/api/v1/nodes", ""},
		{http.MethodGet, "/api/v1/other", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.auth, func(t *testing.T) {
			r := f.do(t, tt.method, tt.path, tt.auth, `{"event":"new_task"}`)
			if r.code != http.StatusNotFound {
				t.Fatalf("status = %d, want 404: %s", r.code, r.body)
			}
			if e := apiErr(t, r); !strings.Contains(e.Error, "EVENTSERVER_PUBLISH_TOKEN") {
				t.Errorf("error %q does not mention EVENTSERVER_PUBLISH_TOKEN", e.Error)
			}
		})
	}
	if n := len(f.emitter.Calls()); n != 0 {
		t.Errorf("emitter called %d times", n)
	}
}

func TestPublishAuth(t *testing.T) {
	f := newFixture(t, Config{Token: token})
	tests := []struct {
		name, auth string
		want       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"token prefix", "Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"token with extra", "Bearer " + token + "x", http.StatusUnauthorized},
		{"basic scheme", "Basic " + token, http.StatusUnauthorized},
		{"no scheme", token, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"right token", "Bearer " + token, http.StatusAccepted},
		{"scheme in lower case", "bearer " + token, http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.emitter.Calls())
			r := f.do(t, http.MethodPost, "/api/v1/emit", tt.auth, `{"event":"new_task","room":"collaboration_1"}`)
			if r.code != tt.want {
				t.Fatalf("status = %d, want %d: %s", r.code, tt.want, r.body)
			}
			called := len(f.emitter.Calls()) > before
			if tt.want == http.StatusUnauthorized {
				apiErr(t, r)
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
				}
				if called {
					t.Error("emitter called without a valid token")
				}
			} else if !called {
				t.Error("emitter not called")
			}
		})
	}
	// The nodes list is guarded too.
	if r := f.do(t, http.MethodGet, "/api/v1/nodes", "", ""); r.code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/nodes without a token = %d, want 401", r.code)
	}
}

func TestPublishAccepted(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantEvent  string
		wantRooms  []string
		wantExcept []string
		wantArgs   []string // JSON of each argument
	}{
		{
			name:      "new_task to one room",
			body:      `{"event":"new_task","room":"collaboration_1","data":{"id":12,"parent_id":null}}`,
			wantEvent: "new_task",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{`{"id":12,"parent_id":null}`},
		},
		{
			name:      "data kept byte for byte",
			body:      `{"event":"new_task","room":"collaboration_1","data":{"parent_id":null,"id":12}}`,
			wantEvent: "new_task",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{`{"parent_id":null,"id":12}`},
		},
		{
			name:       "rooms and except",
			body:       `{"event":"status_update","rooms":["collaboration_1","collaboration_2"],"except":["collaboration_2_organization_3"],"data":{"run_id":40}}`,
			wantEvent:  "status_update",
			wantRooms:  []string{"collaboration_1", "collaboration_2"},
			wantExcept: []string{"collaboration_2_organization_3"},
			wantArgs:   []string{`{"run_id":40}`},
		},
		{
			name:      "empty args is zero arguments",
			body:      `{"event":"sync","room":"collaboration_1","args":[]}`,
			wantEvent: "sync",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{},
		},
		{
			name:      "two args",
			body:      `{"event":"message","room":"collaboration_1","args":[1,"a"]}`,
			wantEvent: "message",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{`1`, `"a"`},
		},
		{
			name:      "no data and no args is zero arguments",
			body:      `{"event":"sync","room":"collaboration_1"}`,
			wantEvent: "sync",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{},
		},
		{
			// As python-socketio's emit(event, data=None): vantage6 sends
			// sync this way, and the node's on_sync takes no argument.
			name:      "data null is zero arguments",
			body:      `{"event":"sync","room":"collaboration_1","data":null}`,
			wantEvent: "sync",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{},
		},
		{
			name:      "data null with spaces is zero arguments",
			body:      `{"event":"sync","room":"collaboration_1","data": null }`,
			wantEvent: "sync",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{},
		},
		{
			name:      "args with one null is one null argument",
			body:      `{"event":"new_task","room":"collaboration_1","args":[null]}`,
			wantEvent: "new_task",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{`null`},
		},
		{
			name:      "data string",
			body:      `{"event":"message","room":"collaboration_1","data":"hello"}`,
			wantEvent: "message",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{`"hello"`},
		},
		{
			name:      "no room reaches everyone",
			body:      `{"event":"new_task","data":{"id":1}}`,
			wantEvent: "new_task",
			wantRooms: nil,
			wantArgs:  []string{`{"id":1}`},
		},
		{
			name:      "namespace /tasks is accepted",
			body:      `{"event":"new_task","namespace":"/tasks","room":"collaboration_1","data":{"id":1}}`,
			wantEvent: "new_task",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{`{"id":1}`},
		},
		{
			name:      "kill_containers",
			body:      `{"event":"kill_containers","room":"collaboration_1","data":{"kill_list":[{"task_id":12,"run_id":40,"organization_id":2}],"collaboration_id":1}}`,
			wantEvent: "kill_containers",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{`{"kill_list":[{"task_id":12,"run_id":40,"organization_id":2}],"collaboration_id":1}`},
		},
		{
			name:      "whitespace around the body",
			body:      "\n  {\"event\":\"new_task\",\"room\":\"collaboration_1\"}  \n",
			wantEvent: "new_task",
			wantRooms: []string{"collaboration_1"},
			wantArgs:  []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{Token: token})
			r := f.emit(t, tt.body)
			if r.code != http.StatusAccepted {
				t.Fatalf("status = %d, want 202: %s", r.code, r.body)
			}
			if got := strings.TrimSpace(string(r.body)); got != `{"ok":true}` {
				t.Errorf("body = %s, want {\"ok\":true}", got)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			calls := f.emitter.Calls()
			if len(calls) != 1 {
				t.Fatalf("emitter called %d times, want once", len(calls))
			}
			c := calls[0]
			if c.event != tt.wantEvent {
				t.Errorf("event = %q, want %q", c.event, tt.wantEvent)
			}
			if !slices.Equal(c.rooms, tt.wantRooms) || (tt.wantRooms == nil) != (len(c.rooms) == 0) {
				t.Errorf("rooms = %q, want %q", c.rooms, tt.wantRooms)
			}
			if !slices.Equal(c.except, tt.wantExcept) {
				t.Errorf("except = %q, want %q", c.except, tt.wantExcept)
			}
			got := make([]string, len(c.args))
			for i, a := range c.args {
				got[i] = argJSON(t, a)
			}
			if !slices.Equal(got, tt.wantArgs) {
				t.Errorf("args = %q, want %q", got, tt.wantArgs)
			}
			if n := counter(t, f.metrics, "202"); n != 1 {
				t.Errorf("publish_requests_total{status=202} = %v, want 1", n)
			}
		})
	}
}

func TestPublishBadRequest(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantField string
	}{
		{"missing event", `{"room":"collaboration_1","data":{}}`, "event"},
		{"empty event", `{"event":"","room":"collaboration_1"}`, "event"},
		{"reserved event connect", `{"event":"connect","room":"collaboration_1"}`, "event"},
		{"reserved event disconnect", `{"event":"disconnect"}`, "event"},
		{"reserved event connect_error", `{"event":"connect_error"}`, "event"},
		{"event too long", `{"event":"` + strings.Repeat("e", 129) + `"}`, "event"},
		{"event not a string", `{"event":5}`, "event"},
		{"both room and rooms", `{"event":"new_task","room":"collaboration_1","rooms":["collaboration_2"]}`, "rooms"},
		{"empty rooms list", `{"event":"new_task","rooms":[]}`, "rooms"},
		{"empty room name in rooms", `{"event":"new_task","rooms":["collaboration_1",""]}`, "rooms"},
		{"empty room", `{"event":"new_task","room":""}`, "room"},
		{"empty except", `{"event":"new_task","except":[""]}`, "except"},
		{"both data and args", `{"event":"new_task","data":{"id":1},"args":[{"id":1}]}`, "args"},
		{"args an object", `{"event":"new_task","args":{"id":1}}`, "args"},
		{"args a string", `{"event":"new_task","args":"a"}`, "args"},
		{"args null", `{"event":"new_task","args":null}`, "args"},
		{"unknown top-level field", `{"event":"new_task","rom":"collaboration_1"}`, "rom"},
		{"wrong namespace", `{"event":"new_task","namespace":"/admin"}`, "namespace"},
		{"root namespace", `{"event":"new_task","namespace":"/"}`, "namespace"},
		{"room a number", `{"event":"new_task","room":1}`, "room"},
		{"room an array", `{"event":"new_task","room":["collaboration_1"]}`, "room"},
		{"rooms a string", `{"event":"new_task","rooms":"collaboration_1"}`, "rooms"},
		{"except a string", `{"event":"new_task","except":"collaboration_1"}`, "except"},
		{"invalid JSON", `{"event":"new_task",`, ""},
		{"not JSON", `event=new_task`, ""},
		{"empty body", ``, ""},
		{"a JSON array", `[{"event":"new_task"}]`, ""},
		{"two JSON values", `{"event":"new_task"} {"event":"new_task"}`, ""},
		{"trailing garbage", `{"event":"new_task"} x`, ""},
		// Decoder.More reports false before '}' and ']', so these slip
		// through unless trailing data is checked another way.
		{"trailing closing brace", `{"event":"new_task"}}`, ""},
		{"trailing closing bracket", `{"event":"new_task"}]`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{Token: token})
			r := f.emit(t, tt.body)
			if r.code != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400: %s", r.code, r.body)
			}
			e := apiErr(t, r)
			if e.Field != tt.wantField {
				t.Errorf("field = %q, want %q (error %q)", e.Field, tt.wantField, e.Error)
			}
			var raw map[string]any
			_ = json.Unmarshal(r.body, &raw)
			if _, has := raw["field"]; has != (tt.wantField != "") {
				t.Errorf("body %s: \"field\" present = %v, want %v", r.body, has, tt.wantField != "")
			}
			if n := len(f.emitter.Calls()); n != 0 {
				t.Errorf("emitter called %d times on a bad request", n)
			}
			if n := counter(t, f.metrics, "400"); n != 1 {
				t.Errorf("publish_requests_total{status=400} = %v, want 1", n)
			}
		})
	}
}

func TestPublishTooLarge(t *testing.T) {
	const maxBody = 2048
	tests := []struct {
		name string
		size int // size of the data string
		want int
	}{
		{"just under", maxBody - 100, http.StatusAccepted},
		{"over", maxBody + 1, http.StatusRequestEntityTooLarge},
		{"far over", 10 * maxBody, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{Token: token, MaxBody: maxBody})
			body := `{"event":"algorithm_log","room":"collaboration_1","data":"` + strings.Repeat("x", tt.size) + `"}`
			r := f.emit(t, body)
			if r.code != tt.want {
				t.Fatalf("status = %d, want %d (body of %d bytes): %s", r.code, tt.want, len(body), r.body)
			}
			if tt.want == http.StatusRequestEntityTooLarge {
				if e := apiErr(t, r); !strings.Contains(e.Error, "EVENTSERVER_MAX_PAYLOAD") {
					t.Errorf("error %q does not mention EVENTSERVER_MAX_PAYLOAD", e.Error)
				}
				if n := len(f.emitter.Calls()); n != 0 {
					t.Errorf("emitter called %d times", n)
				}
				if n := counter(t, f.metrics, "413"); n != 1 {
					t.Errorf("publish_requests_total{status=413} = %v, want 1", n)
				}
			}
		})
	}
}

func TestPublishEmitterError(t *testing.T) {
	f := newFixture(t, Config{Token: token})
	f.emitter.EmitFunc = func([]string, []string, string, ...any) error { return errors.New("adapter down") }
	r := f.emit(t, `{"event":"new_task","room":"collaboration_1","data":{"id":1}}`)
	if r.code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500: %s", r.code, r.body)
	}
	if e := apiErr(t, r); !strings.Contains(e.Error, "adapter down") {
		t.Errorf("error %q does not carry the cause", e.Error)
	}
	if n := counter(t, f.metrics, "500"); n != 1 {
		t.Errorf("publish_requests_total{status=500} = %v, want 1", n)
	}
}

func TestPublishUnknownRoutes(t *testing.T) {
	f := newFixture(t, Config{Token: token})
	tests := []struct{ method, path string }{
		{http.MethodGet, "/api/v1/emit"},
		{http.MethodPost, "/api/v1/nodes"},
		{http.MethodGet, "/api/v1/nope"},
		{http.MethodGet, "/api/v2/emit"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := f.do(t, tt.method, tt.path, "Bearer "+token, "")
			if r.code != http.StatusNotFound {
				t.Fatalf("status = %d, want 404: %s", r.code, r.body)
			}
			apiErr(t, r)
		})
	}
}

func TestPublishMetricsByStatus(t *testing.T) {
	f := newFixture(t, Config{Token: token, MaxBody: 1024})
	steps := []struct {
		auth, body string
	}{
		{"Bearer " + token, `{"event":"new_task","room":"collaboration_1"}`},
		{"Bearer " + token, `{"event":"new_task","room":"collaboration_2"}`},
		{"Bearer " + token, `{"event":"new_task","rooms":["collaboration_1"]}`},
		{"", `{"event":"new_task"}`},
		{"Bearer wrong-wrong-wrong-wrong", `{"event":"new_task"}`},
		{"Bearer " + token, `{"event":"connect"}`},
		{"Bearer " + token, `{"event":"new_task","data":"` + strings.Repeat("x", 2000) + `"}`},
	}
	for _, s := range steps {
		f.do(t, http.MethodPost, "/api/v1/emit", s.auth, s.body)
	}
	f.do(t, http.MethodGet, "/api/v1/nodes", "Bearer "+token, "")
	want := map[string]float64{"202": 3, "401": 2, "400": 1, "413": 1, "200": 1, "404": 0, "500": 0}
	for status, n := range want {
		if got := counter(t, f.metrics, status); got != n {
			t.Errorf("publish_requests_total{status=%s} = %v, want %v", status, got, n)
		}
	}
}

func TestNodes(t *testing.T) {
	ctx := context.Background()
	since := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	ping := time.Date(2026, 3, 4, 6, 0, 0, 0, time.UTC)
	cfgAt := time.Date(2026, 3, 4, 6, 1, 0, 0, time.UTC)
	nodeCfg := `{"encryption":false,"allowed_algorithms":"all","allowed_users":[1],"allowed_orgs":[2],"database_labels":["default"]}`

	tests := []struct {
		name  string
		setup func(t *testing.T, p *presence.Memory)
		want  string // JSON of the nodes array, compared semantically
	}{
		{
			name:  "none",
			setup: func(*testing.T, *presence.Memory) {},
			want:  `[]`,
		},
		{
			name: "one node with ping and config",
			setup: func(t *testing.T, p *presence.Memory) {
				n := presence.Node{Key: "3", ID: json.RawMessage(`3`), Name: "org1-node", OrganizationID: 2, CollaborationID: 1}
				must(t, p.Connect(ctx, presence.Conn{Node: n, ID: "s1", Instance: "i1", Since: since}))
				must(t, p.Connect(ctx, presence.Conn{Node: n, ID: "s2", Instance: "i1", Since: since.Add(time.Minute)}))
				must(t, p.Ping(ctx, "3", ping))
				must(t, p.SetConfig(ctx, "3", json.RawMessage(nodeCfg), cfgAt))
			},
			want: `[{"id":3,"name":"org1-node","organization_id":2,"collaboration_id":1,"instance":"i1","connections":2,
				"connected_since":"2026-03-04T04:06:07Z","last_ping":"2026-03-04T06:00:00Z",
				"last_seen":"2026-03-04T06:00:00Z","stale":true,
				"last_config":` + nodeCfg + `,"last_config_at":"2026-03-04T06:01:00Z",
				"last_metrics":null,"last_metrics_at":null}]`,
		},
		{
			name: "string id and metrics",
			setup: func(t *testing.T, p *presence.Memory) {
				n := presence.Node{Key: "node-uuid", ID: json.RawMessage(`"node-uuid"`), Name: "kc-node", OrganizationID: 5, CollaborationID: 9}
				must(t, p.Connect(ctx, presence.Conn{Node: n, ID: "s1", Since: since}))
				must(t, p.SetMetrics(ctx, "node-uuid", json.RawMessage(`{"cpu":1}`), ping))
			},
			want: `[{"id":"node-uuid","name":"kc-node","organization_id":5,"collaboration_id":9,"instance":"","connections":1,
				"connected_since":"2026-03-04T04:06:07Z","last_ping":null,"last_seen":"2026-03-04T04:06:07Z","stale":true,"last_config":null,"last_config_at":null,
				"last_metrics":{"cpu":1},"last_metrics_at":"2026-03-04T06:00:00Z"}]`,
		},
		{
			name: "sorted, offline nodes left out",
			setup: func(t *testing.T, p *presence.Memory) {
				for _, k := range []string{"10", "2", "7"} {
					n := presence.Node{Key: k, ID: json.RawMessage(k), Name: "n" + k, OrganizationID: 1, CollaborationID: 1}
					must(t, p.Connect(ctx, presence.Conn{Node: n, ID: "s" + k, Since: since}))
				}
				must(t, p.Disconnect(ctx, "7", "s7"))
			},
			want: `[{"id":2,"name":"n2","organization_id":1,"collaboration_id":1,"instance":"","connections":1,"connected_since":"2026-03-04T04:06:07Z","last_ping":null,"last_seen":"2026-03-04T04:06:07Z","stale":true,"last_config":null,"last_config_at":null,"last_metrics":null,"last_metrics_at":null},
				{"id":10,"name":"n10","organization_id":1,"collaboration_id":1,"instance":"","connections":1,"connected_since":"2026-03-04T04:06:07Z","last_ping":null,"last_seen":"2026-03-04T04:06:07Z","stale":true,"last_config":null,"last_config_at":null,"last_metrics":null,"last_metrics_at":null}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{Token: token})
			tt.setup(t, f.presence)
			r := f.do(t, http.MethodGet, "/api/v1/nodes", "Bearer "+token, "")
			if r.code != http.StatusOK {
				t.Fatalf("status = %d, want 200: %s", r.code, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var got struct {
				Nodes json.RawMessage `json:"nodes"`
			}
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			if !jsonEqual(t, got.Nodes, []byte(tt.want)) {
				t.Errorf("nodes = %s\nwant    %s", got.Nodes, compact(t, tt.want))
			}
			// The id of a vantage6 4.x node is a JSON number, not a string.
			var nodes []map[string]json.RawMessage
			_ = json.Unmarshal(got.Nodes, &nodes)
			for _, n := range nodes {
				if id := string(n["id"]); strings.HasPrefix(id, `"`) && !strings.Contains(tt.name, "string id") {
					t.Errorf("id %s is a string, want a number", id)
				}
			}
			if n := counter(t, f.metrics, "200"); n != 1 {
				t.Errorf("publish_requests_total{status=200} = %v, want 1", n)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return fmt.Sprintf("%#v", va) == fmt.Sprintf("%#v", vb) && bytes.Equal(mustMarshal(t, va), mustMarshal(t, vb))
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// testMetrics are the API's collectors on a registry of their own.
func testMetrics() *Metrics {
	m, err := NewMetrics(nil)
	if err != nil {
		panic(err)
	}
	return m
}

// TestPublishDurationObserved: every guarded request, refused or served,
// is timed once in eventserver_publish_request_duration_seconds.
func TestPublishDurationObserved(t *testing.T) {
	f := newFixture(t, Config{Token: token})
	f.emit(t, `{"event":"new_task","room":"collaboration_1"}`)
	f.do(t, http.MethodPost, "/api/v1/emit", "Bearer wrong", `{"event":"new_task"}`)
	f.do(t, http.MethodGet, "/api/v1/nodes", "Bearer "+token, "")
	if n := testutil.CollectAndCount(f.metrics.PublishDuration); n != 1 {
		t.Fatalf("%d histogram series, want 1", n)
	}
	var m dto.Metric
	if err := f.metrics.PublishDuration.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleCount(); got != 3 {
		t.Errorf("publish_request_duration_seconds count = %d, want 3 (one per request)", got)
	}
}
