package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/rooms"
)

// subResolver resolves a token by its subject: "node" is node 5 of
// organization 2 in collaboration 1; "user" reads collaboration 1 and 3.
type subResolver struct{}

func (subResolver) Resolve(_ context.Context, _ string, c *auth.Claims) (*identity.Identity, error) {
	switch c.Subject.Value {
	case "node":
		return &identity.Identity{Kind: rooms.KindNode, ID: auth.Subject{Value: "5", Numeric: true}, Name: "n5",
			OrganizationID: 2, CollaborationIDs: []int64{1}}, nil
	case "user":
		return &identity.Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7", Numeric: true}, Name: "u7",
			OrganizationID: 2, CollaborationIDs: []int64{1, 3}, Scope: rooms.ScopeCollaboration}, nil
	}
	return nil, auth.ErrInvalid
}

// fakeTasks answers from a map; ids in fail fail.
type fakeTasks struct {
	mu    sync.Mutex
	tasks map[int64]Task
	fail  map[int64]bool
	asked []int64
}

func (f *fakeTasks) Task(_ context.Context, id int64, _ bool) (Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, id)
	if f.fail[id] {
		return Task{}, errors.New("vantage6 API: 503")
	}
	if id == 40 {
		return Task{}, ErrNoTaskLookup
	}
	t, ok := f.tasks[id]
	if !ok {
		return Task{}, errors.New("vantage6 API: 404")
	}
	return t, nil
}

// factSink keeps the facts it gets.
type factSink struct {
	mu    sync.Mutex
	facts []protocol.Fact
}

func (s *factSink) Add(f protocol.Fact) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.facts = append(s.facts, f)
}

func (s *factSink) ofType(typ string) []protocol.Fact {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.Fact
	for _, f := range s.facts {
		if f.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

func i64(v int64) *int64 { return &v }

func tasksServer(t *testing.T, tasks Tasks, sink FactSink) (*Hub, *metrics, string) {
	t.Helper()
	h, _, base := hubServer(t, Config{Resolver: subResolver{}, Tasks: tasks, Facts: sink})
	return h, h.m, base
}

// pollClient is a /tasks client over polling that keeps the events it reads.
type pollClient struct {
	t      *testing.T
	u      string
	events []string // each "name json-args"
}

func connectAs(t *testing.T, base, sub string) *pollClient {
	t.Helper()
	tok, err := auth.Mint([]byte(offloadSecret), map[string]any{"sub": sub}, time.Hour, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	c := &pollClient{t: t, u: handshake(t, base)}
	post(t, c.u, `40/tasks,{"token":"`+tok+`"}`)
	c.waitFor(func(p string) bool { return strings.HasPrefix(p, `40/tasks,{"sid"`) }, "CONNECT ack")
	return c
}

// waitFor polls until a packet matches and returns the first that does;
// every event of the poll that brought it is kept, none is lost.
func (c *pollClient) waitFor(match func(string) bool, what string) string {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		matched := ""
		for _, p := range strings.Split(poll(c.t, c.u), "\x1e") {
			if p == "2" {
				post(c.t, c.u, "3")
				continue
			}
			if rest, ok := strings.CutPrefix(p, "42/tasks,"); ok {
				var arr []json.RawMessage
				if json.Unmarshal([]byte(rest), &arr) == nil && len(arr) > 0 {
					var name string
					_ = json.Unmarshal(arr[0], &name)
					args := "null"
					if len(arr) > 1 {
						args = string(arr[1])
					}
					c.events = append(c.events, name+" "+args)
				}
			}
			if matched == "" && match(p) {
				matched = p
			}
		}
		if matched != "" {
			return matched
		}
	}
	c.t.Fatalf("%s: not seen in 5 s; events so far %q", what, c.events)
	return ""
}

func (c *pollClient) waitEvent(name string) string {
	c.t.Helper()
	p := c.waitFor(func(p string) bool { return strings.HasPrefix(p, `42/tasks,["`+name+`"`) }, name)
	return p
}

// inRoom waits until room has n sockets (a socket joins its rooms after
// its CONNECT ack).
func inRoom(t *testing.T, h *Hub, room string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := h.FetchSockets(context.Background(), []string{room})
		if err == nil && len(list) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d sockets (%v), want %d", room, len(list), err, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStatusChange5: with a task lookup (vantage6 5.x), a node's
// algorithm_status_change is relayed with the job_id of its task; a
// completed run first tells each dependent task's collaboration
// new_task_update {id, parent_id}; a task of another collaboration is
// refused; when the API fails, the status change is still relayed as sent.
func TestStatusChange5(t *testing.T) {
	noLeaks(t)
	tasks := &fakeTasks{
		tasks: map[int64]Task{
			10: {ID: 10, JobID: i64(100), CollaborationID: 1, RequiredBy: []int64{11, 12, 13}},
			11: {ID: 11, ParentID: i64(10), CollaborationID: 1},
			12: {ID: 12, CollaborationID: 3},
			20: {ID: 20, JobID: i64(200), CollaborationID: 9},
		},
		fail: map[int64]bool{13: true, 30: true},
	}
	sink := &factSink{}
	h, m, base := tasksServer(t, tasks, sink)
	user := connectAs(t, base, "user")
	node := connectAs(t, base, "node")
	inRoom(t, h, "collaboration_1", 2)

	post(t, node.u, `42/tasks,["algorithm_status_change",{"run_id":1,"task_id":10,"status":"completed","node_id":5,"collaboration_id":1,"organization_id":2,"parent_id":null}]`)
	got := user.waitEvent("algorithm_status_change")
	want := `42/tasks,["algorithm_status_change",{"status":"completed","run_id":1,"task_id":10,"job_id":100,"collaboration_id":1,"node_id":5,"organization_id":2,"parent_id":null}]`
	if got != want {
		t.Fatalf("relayed:\n got %s\nwant %s", got, want)
	}
	wantBefore := []string{`new_task_update {"id":11,"parent_id":10}`, `new_task_update {"id":12,"parent_id":null}`}
	var updates []string
	for _, e := range user.events {
		if strings.HasPrefix(e, "new_task_update ") {
			updates = append(updates, e)
		}
	}
	if strings.Join(updates, "|") != strings.Join(wantBefore, "|") {
		t.Fatalf("new_task_update before the status change: %q, want %q (13's lookup failed: none for it)", updates, wantBefore)
	}

	// Another collaboration's task: refused, nothing relayed; then a
	// lookup that fails: relayed with the node's own job_id.
	post(t, node.u, `42/tasks,["algorithm_status_change",{"run_id":2,"task_id":20,"status":"active"}]`)
	post(t, node.u, `42/tasks,["algorithm_status_change",{"run_id":3,"task_id":30,"status":"failed","job_id":300}]`)
	got = user.waitEvent("algorithm_status_change")
	if !strings.Contains(got, `"run_id":3,`) || !strings.Contains(got, `"job_id":300`) {
		t.Fatalf("after a failed lookup: %s, want run 3 with the node's job_id 300", got)
	}
	for _, e := range user.events {
		if strings.Contains(e, `"run_id":2,`) {
			t.Fatalf("another collaboration's task was relayed: %s", e)
		}
	}
	// A vantage6 4.x API (version auto): relayed as sent, no failure counted.
	post(t, node.u, `42/tasks,["algorithm_status_change",{"run_id":5,"task_id":40,"status":"active","job_id":400}]`)
	got = user.waitEvent("algorithm_status_change")
	if !strings.Contains(got, `"run_id":5,`) || !strings.Contains(got, `"job_id":400`) {
		t.Fatalf("without a task lookup: %s, want run 5 as sent", got)
	}
	if v := testutil.ToFloat64(m.TaskLookups.WithLabelValues("not_own")); v != 1 {
		t.Errorf("not_own lookups %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.TaskLookups.WithLabelValues("error")); v != 2 {
		t.Errorf("failed lookups %v, want 2 (task 13 and task 30)", v)
	}
	if v := testutil.ToFloat64(m.EventsRefused.WithLabelValues("algorithm_status_change", "not_own")); v != 1 {
		t.Errorf("refused not_own %v, want 1", v)
	}
	if n := len(sink.ofType(protocol.FactAlgorithmStatusChange)); n != 3 {
		t.Errorf("%d algorithm_status_change facts, want 3", n)
	}
	var data struct {
		JobID *int64 `json:"job_id"`
	}
	if f := sink.ofType(protocol.FactAlgorithmStatusChange); len(f) > 0 {
		if err := json.Unmarshal(f[0].Data, &data); err != nil || data.JobID == nil || *data.JobID != 100 {
			t.Errorf("first fact %s: want job_id 100", f[0].Data)
		}
	}

	// Logs keep their order behind the lookups.
	post(t, node.u, `42/tasks,["algorithm_status_change",{"run_id":4,"task_id":10,"status":"active"}]`+"\x1e"+
		`42/tasks,["algorithm_log",{"run_id":4,"task_id":10,"log":"line 1","collaboration_id":1}]`)
	user.waitEvent("algorithm_log")
	n := len(user.events)
	if n < 2 || !strings.Contains(user.events[n-2], `"run_id":4,`) || !strings.HasPrefix(user.events[n-1], `algorithm_log {"run_id":4,"task_id":10,"log":"line 1"}`) {
		t.Fatalf("status change then log, got the last two events %q", user.events[max(0, n-2):])
	}
}

// TestDataframeDeleted: a node's dataframe_deleted (vantage6 5.x) becomes a
// fact for the backend with the node's own id; it is not relayed, and a
// malformed or foreign one is refused.
func TestDataframeDeleted(t *testing.T) {
	noLeaks(t)
	sink := &factSink{}
	_, m, base := tasksServer(t, nil, sink)
	node := connectAs(t, base, "node")
	post(t, node.u, `42/tasks,["dataframe_deleted",{"df_name":"","session_id":1,"node_id":5}]`)
	post(t, node.u, `42/tasks,["dataframe_deleted",{"df_name":"x","session_id":1,"node_id":6}]`)
	post(t, node.u, `42/tasks,["dataframe_deleted",{"df_name":"cohort","session_id":4,"node_id":5}]`)
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.ofType(protocol.FactDataframeDeleted)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	facts := sink.ofType(protocol.FactDataframeDeleted)
	if len(facts) != 1 || string(facts[0].Data) != `{"df_name":"cohort","session_id":4,"node_id":5}` {
		t.Fatalf("facts %v, want one for cohort", facts)
	}
	if v := testutil.ToFloat64(m.EventsRefused.WithLabelValues("dataframe_deleted", "malformed")); v != 1 {
		t.Errorf("malformed %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.EventsRefused.WithLabelValues("dataframe_deleted", "not_own")); v != 1 {
		t.Errorf("not_own %v, want 1", v)
	}
}

// slowPresence is a memory store whose Connect waits for release.
type slowPresence struct {
	presence.Store
	entered chan struct{}
	release chan struct{}
}

func (p *slowPresence) Connect(ctx context.Context, c presence.Conn) error {
	p.entered <- struct{}{}
	<-p.release
	return p.Store.Connect(ctx, c)
}

// TestEarlyRelayAfterRooms: a node's status change sent right after its
// CONNECT ack, while its presence is still recorded and its rooms not yet
// joined, is relayed once they are: the node gets its own copy, as from
// python-socketio, which joins the rooms before any event.
func TestEarlyRelayAfterRooms(t *testing.T) {
	sp := &slowPresence{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, _, base := hubServer(t, Config{Resolver: subResolver{}, NewPresence: func(hd presence.Handler) (presence.Store, error) {
		m, err := presence.NewMemoryWithConfig(presence.MemoryConfig{Handler: hd})
		sp.Store = m
		return sp, err
	}})
	n := connectAs(t, base, "node")
	waitSignal(t, sp.entered, "presence connect")
	post(t, n.u, `42/tasks,["algorithm_status_change",{"status":"active","run_id":1,"task_id":10}]`)
	// The event is handled (refused events would be counted) before the
	// node is in its rooms.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(h.m.EventsIn.WithLabelValues("algorithm_status_change")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the status change was not received")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(sp.release)
	inRoom(t, h, "collaboration_1", 1)
	n.waitEvent("algorithm_status_change")
}
