package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

const outboxToken = "outbox-webhook-token-3e9a"

// outFact is one fact as a backend reads it.
type outFact struct {
	V               int             `json:"v"`
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	Instance        string          `json:"instance"`
	NodeID          json.RawMessage `json:"node_id"`
	NodeName        string          `json:"node_name"`
	CollaborationID int64           `json:"collaboration_id"`
	OrganizationID  int64           `json:"organization_id"`
	Data            json.RawMessage `json:"data"`

	raw   string // the JSON as read
	entry string // the stream entry id
}

func (f outFact) node() string { return string(f.NodeID) }

func (f outFact) String() string { return f.raw }

// runID is data.run_id, or -1.
func (f outFact) runID() int64 {
	var d struct {
		RunID *int64 `json:"run_id"`
	}
	if json.Unmarshal(f.Data, &d) != nil || d.RunID == nil {
		return -1
	}
	return *d.RunID
}

// seq is data.seq of a transition, read as an integer (it may not fit a double).
func (f outFact) seq() int64 {
	var d struct {
		Seq int64 `json:"seq"`
	}
	_ = json.Unmarshal(f.Data, &d)
	return d.Seq
}

// group reads the outbox stream as a backend's consumer group does:
// XREADGROUP ... > and XACK of every entry.
type group struct {
	t      *testing.T
	rdb    *redis.Client
	stream string
	facts  []outFact
}

func newGroup(t *testing.T, redisURL, stream string) *group {
	t.Helper()
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.XGroupCreateMkStream(context.Background(), stream, "backend", "0").Err(); err != nil {
		t.Fatalf("XGROUP CREATE: %v", err)
	}
	return &group{t: t, rdb: rdb, stream: stream}
}

// read reads and acknowledges what is new, until nothing is.
func (g *group) read() {
	g.t.Helper()
	ctx := context.Background()
	for {
		res, err := g.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: "backend", Consumer: "test", Streams: []string{g.stream, ">"}, Count: 100, Block: 50 * time.Millisecond,
		}).Result()
		if err == redis.Nil {
			return
		}
		if err != nil {
			g.t.Fatalf("XREADGROUP: %v", err)
		}
		n := 0
		for _, s := range res {
			for _, m := range s.Messages {
				n++
				raw, _ := m.Values["fact"].(string)
				var f outFact
				if err := json.Unmarshal([]byte(raw), &f); err != nil {
					g.t.Fatalf("entry %s: %v: %q", m.ID, err, raw)
				}
				if m.Values["id"] != f.ID || m.Values["type"] != f.Type {
					g.t.Errorf("entry %s: fields id %v, type %v; fact %s", m.ID, m.Values["id"], m.Values["type"], raw)
				}
				f.raw, f.entry = raw, m.ID
				g.facts = append(g.facts, f)
				if err := g.rdb.XAck(ctx, g.stream, "backend", m.ID).Err(); err != nil {
					g.t.Fatalf("XACK: %v", err)
				}
			}
		}
		if n == 0 {
			return
		}
	}
}

// count is the number of facts of a type about a node.
func (g *group) count(typ, node string) int {
	n := 0
	for _, f := range g.facts {
		if f.Type == typ && f.node() == node {
			n++
		}
	}
	return n
}

// want waits until the group has read at least n facts of typ about node.
func (g *group) want(typ, node string, n int) {
	g.t.Helper()
	testwait.For(g.t, wait, func() error {
		g.read()
		if got := g.count(typ, node); got < n {
			return fmt.Errorf("node %s: %d %s facts, want %d", node, got, typ, n)
		}
		return nil
	})
}

// factHook is a webhook that records each fact it gets.
type factHook struct {
	srv *httptest.Server

	mu      sync.Mutex
	byID    map[string]string
	badAuth int
}

func newFactHook(t *testing.T) *factHook {
	h := &factHook{byID: map[string]string{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var f outFact
		h.mu.Lock()
		defer h.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+outboxToken {
			h.badAuth++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if json.Unmarshal(b, &f) != nil || f.ID == "" || r.Header.Get("Idempotency-Key") != f.ID {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.byID[f.ID] = string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// missing lists the facts of g the webhook did not get (with the same JSON).
func (h *factHook) missing(facts []outFact) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, f := range facts {
		if h.byID[f.ID] != f.raw {
			out = append(out, f.Type+" "+f.ID)
		}
	}
	return out
}

// delivered waits until the webhook got every fact the group read.
func (h *factHook) delivered(t *testing.T, g *group) {
	t.Helper()
	testwait.For(t, wait, func() error {
		if m := h.missing(g.facts); len(m) > 0 {
			return fmt.Errorf("webhook lacks %d facts: %v", len(m), m)
		}
		return nil
	})
}

// nodeTraffic sends what a node sends in a session, with some refused
// events in between, and waits until the server has handled all of it: a
// node receives its own algorithm_status_change (sender included), after the
// events it sent before. runBase makes its run ids unique; refused events
// use run ids from 9000 on.
func nodeTraffic(t *testing.T, n *client, collab, org int64, runBase int64, pings int) {
	t.Helper()
	for range pings {
		n.emit("ping", 0)
	}
	n.emit("node_info_update", 0, map[string]any{"encryption": false, "allowed_algorithms": "all", "run_base": runBase})
	n.emit("node_metrics_update", 0, map[string]any{"cpu_percent": 12.5, "run_base": runBase})
	n.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": runBase + 1, "task_id": runBase,
		"collaboration_id": collab, "organization_id": org, "parent_id": nil})
	n.emit("algorithm_log", 0, map[string]any{"collaboration_id": collab, "run_id": runBase + 1, "task_id": runBase, "log": fmt.Sprintf("run %d\n", runBase+1)})
	// Refused: another collaboration, another node, another organization,
	// malformed.
	n.emit("algorithm_status_change", 0, map[string]any{"status": "failed", "run_id": 9000 + runBase, "task_id": 1, "collaboration_id": collab + 100})
	n.emit("algorithm_log", 0, map[string]any{"node_id": 999, "run_id": 9100 + runBase, "task_id": 1, "log": "not mine"})
	n.emit("algorithm_status_change", 0, map[string]any{"status": "failed", "run_id": 9200 + runBase, "task_id": 1, "organization_id": org + 100})
	n.emit("algorithm_status_change", 0, map[string]any{"run_id": 9300 + runBase, "task_id": 1})
	n.emit("node_info_update", 0, "not an object")
	syncNode(t, n, collab, org, runBase+2, "completed")
}

// syncNode sends a valid algorithm_status_change and waits for its relay to
// the node itself.
func syncNode(t *testing.T, n *client, collab, org, runID int64, status string) {
	t.Helper()
	n.emit("algorithm_status_change", 0, map[string]any{"status": status, "run_id": runID, "task_id": runID - 2,
		"collaboration_id": collab, "organization_id": org, "parent_id": nil})
	want := fmt.Sprintf(`"run_id":%d,`, runID)
	n.wait(wait, fmt.Sprintf("relay of run %d", runID), func(m msg) bool {
		return m.Event == "algorithm_status_change" && len(m.Args) == 1 && strings.Contains(string(m.Args[0]), want)
	})
}

// TestOutboxSingleInstance: one in-process instance (in-memory presence)
// with the stream on its own Redis and a webhook: each kind of fact a real
// python-socketio node establishes has the documented shape, refused events
// and users' events establish none, and the webhook gets the same facts.
func TestOutboxSingleInstance(t *testing.T) {
	r := redistest.Start(t)
	stream := uniquePrefix(t) + ":outbox"
	g := newGroup(t, r.URL(), stream)
	hook := newFactHook(t)
	start := time.Now().UTC()
	s := startServer(t, func(c *config.Config) {
		c.OutboxStream, c.OutboxRedisURL = stream, r.URL()
		c.OutboxWebhookURL, c.OutboxWebhookToken = hook.srv.URL+"/facts", outboxToken
	})

	user := startGoClient(t, s, "user", userToken(t, 50, 2, []int64{1}, "collaboration", time.Hour))
	user.waitType("connect", wait)
	n := startPyNode(t, s, "node3", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	n.waitEvent("sync", wait)
	user.emit("ping", 0)
	user.emit("node_info_update", 0, map[string]any{"user": true})
	user.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": 9999, "task_id": 1})
	nodeTraffic(t, n, 1, 2, 40, 2)
	barrier(t, s, user)
	n.disconnect()
	g.want("node_offline", "3", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.app.Shutdown(ctx); err != nil { // writes what is queued: nothing may come after
		t.Fatal(err)
	}
	g.read()

	var types []string
	for _, f := range g.facts {
		types = append(types, f.Type)
	}
	wantTypes := []string{"node_online", "ping", "ping", "node_info_update", "node_metrics_update",
		"algorithm_status_change", "algorithm_log", "algorithm_status_change", "node_offline"}
	if !slices.Equal(types, wantTypes) {
		t.Fatalf("facts %v, want %v", types, wantTypes)
	}
	for _, f := range g.facts {
		at, err := time.Parse(time.RFC3339Nano, f.Time)
		if err != nil || !strings.HasSuffix(f.Time, "Z") || len(f.Time) != len("2006-01-02T15:04:05.000000Z") {
			t.Errorf("%s: time %q: want RFC 3339 UTC with six decimals (%v)", f.Type, f.Time, err)
		}
		if at.Before(start.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: time %s not during the test", f.Type, f.Time)
		}
		if f.V != 1 || f.Instance != "test" || f.node() != "3" || f.NodeName != "org2-node3" || f.CollaborationID != 1 || f.OrganizationID != 2 {
			t.Errorf("fact %s: wrong envelope", f.raw)
		}
	}
	var ping struct {
		SocketID string `json:"socket_id"`
	}
	_ = json.Unmarshal(g.facts[1].Data, &ping)
	socketID := ping.SocketID
	if socketID == "" {
		t.Errorf("ping data %s: no socket id", g.facts[1].Data)
	}
	on, off := g.facts[0], g.facts[8]
	if on.seq() <= 0 || off.seq() <= on.seq() {
		t.Errorf("seq of online %d, offline %d: want increasing", on.seq(), off.seq())
	}
	wantData := []string{
		fmt.Sprintf(`{"id":3,"name":"org2-node3","org_id":2,"seq":%d}`, on.seq()),
		fmt.Sprintf(`{"socket_id":%q}`, socketID),
		fmt.Sprintf(`{"socket_id":%q}`, socketID),
		`{"encryption":false,"allowed_algorithms":"all","run_base":40}`,
		`{"cpu_percent":12.5,"run_base":40}`,
		`{"status":"active","run_id":41,"task_id":40,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}`,
		`{"run_id":41,"task_id":40,"log":"run 41\n"}`,
		`{"status":"completed","run_id":42,"task_id":40,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}`,
		fmt.Sprintf(`{"id":3,"name":"org2-node3","org_id":2,"seq":%d}`, off.seq()),
	}
	norm := func(b []byte) string {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber() // seq may not fit a double
		var v any
		if err := d.Decode(&v); err != nil {
			return "invalid JSON: " + string(b)
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	for i, f := range g.facts {
		if norm(f.Data) != norm([]byte(wantData[i])) {
			t.Errorf("%s data %s, want %s", f.Type, f.Data, wantData[i])
		}
	}
	hook.delivered(t, g)
	if hook.badAuth != 0 {
		t.Errorf("%d webhook requests without the token", hook.badAuth)
	}
	if strings.Contains(s.logText(), outboxToken) {
		t.Error("the webhook token is logged")
	}
}

// TestOutboxCluster: three instances on one Redis, each appending what its
// python-socketio nodes establish, while nodes come and go, one instance is
// stopped (SIGTERM) and one killed (SIGKILL). A consumer group reads every
// fact exactly once: every ping the nodes sent, every valid run event, one
// node_online and one node_offline per node session (decided by exactly one
// instance), with the nodes' own ids, and nothing for a refused event.
func TestOutboxCluster(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	stream := prefix + ":outbox"
	g := newGroup(t, r.URL(), stream)
	hook := newFactHook(t)
	extra := []string{"EVENTSERVER_OUTBOX_STREAM=" + stream, "EVENTSERVER_OUTBOX_MAXLEN=100000",
		"EVENTSERVER_OUTBOX_WEBHOOK_URL=" + hook.srv.URL + "/facts", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN=" + outboxToken}
	a := startInstance(t, "a", r.URL(), prefix, extra...)
	b := startInstance(t, "b", r.URL(), prefix, extra...)
	c := startInstance(t, "c", r.URL(), prefix, extra...)
	ws := clientOpts{transports: "websocket"}
	node := func(p *procServer, name string, id, collab, org int64) *client {
		o := ws
		o.token = nodeToken(t, id, collab, org, time.Hour)
		cl := startPyNode(t, p.server, name, o)
		cl.waitEvent("sync", wait)
		return cl
	}
	// Who each node is: its collaboration and organization.
	who := map[string][2]int64{"3": {1, 2}, "4": {1, 3}, "5": {2, 7}}
	// What was sent: pings per node, the run ids of valid events.
	pings := map[string]int{}
	var statusRuns, logRuns []int64
	traffic := func(n *client, id string, runBase int64, k int) {
		nodeTraffic(t, n, who[id][0], who[id][1], runBase, k)
		pings[id] += k
		statusRuns = append(statusRuns, runBase+1, runBase+2)
		logRuns = append(logRuns, runBase+1)
	}

	// A user's events establish nothing.
	user := startGoClient(t, a.server, "user@a", userToken(t, 50, 2, []int64{1}, "collaboration", time.Hour))
	user.waitType("connect", wait)
	user.emit("ping", 0)
	user.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": 9999, "task_id": 1})

	// Session 1 of each node, one per instance.
	n3 := node(a, "node3@a", 3, 1, 2)
	n4 := node(b, "node4@b", 4, 1, 3)
	n5 := node(c, "node5@c", 5, 2, 7)
	traffic(n3, "3", 100, 3)
	traffic(n4, "4", 200, 5)
	traffic(n5, "5", 300, 4)
	// A second socket of node 3, on c, that closes again: no transition.
	n3c := node(c, "node3@c", 3, 1, 2)
	n3c.emit("ping", 0)
	pings["3"]++
	syncNode(t, n3c, 1, 2, 150, "active")
	statusRuns = append(statusRuns, 150)
	n3c.disconnect()
	barrier(t, a.server, user)

	// c is killed below: what it appended must be in first (a fact an
	// instance has not written when it dies is lost with it).
	for id, n := range pings {
		g.want("ping", id, n)
	}
	g.want("algorithm_status_change", "5", 2)
	g.want("algorithm_log", "5", 1)
	hook.delivered(t, g)

	// SIGTERM of b right after a burst of node 4: b writes what it queued
	// before it exits; node 4 goes offline, decided by a or c.
	for range 20 {
		n4.emit("ping", 0)
	}
	pings["4"] += 20
	syncNode(t, n4, 1, 3, 250, "active")
	statusRuns = append(statusRuns, 250)
	b.stop(syscall.SIGTERM)
	g.want("node_offline", "4", 1)
	hook.delivered(t, g)

	// SIGKILL of c: node 5 goes offline, decided by a once c's heartbeats expire.
	c.stop(syscall.SIGKILL)
	g.want("node_offline", "5", 1)

	// Nodes come and go on a: node 3 leaves and comes back (session 2);
	// node 4 comes back (session 2) and leaves.
	n3.disconnect()
	g.want("node_offline", "3", 1)
	n3b := node(a, "node3@a-2", 3, 1, 2)
	traffic(n3b, "3", 400, 2)
	n4b := node(a, "node4@a-2", 4, 1, 3)
	traffic(n4b, "4", 500, 1)
	n4b.disconnect()
	n3b.disconnect()
	g.want("node_offline", "4", 2)
	g.want("node_offline", "3", 2)

	// No instance is left to write: what the group reads now is all.
	a.stop(syscall.SIGTERM)
	g.read()
	hook.delivered(t, g)
	t.Logf("%d facts read", len(g.facts))

	seen := map[string]bool{}
	byNode := map[string][]outFact{}
	for _, f := range g.facts {
		if seen[f.ID] {
			t.Errorf("fact %s (%s) read twice", f.ID, f.Type)
		}
		seen[f.ID] = true
		w, ok := who[f.node()]
		if !ok || f.CollaborationID != w[0] || f.OrganizationID != w[1] || f.NodeName != fmt.Sprintf("org%d-node%s", w[1], f.node()) {
			t.Errorf("fact with wrong ids: %s", f.raw)
		}
		if id := f.runID(); id >= 9000 {
			t.Errorf("fact for a refused event: %s", f.raw)
		}
		if f.Type == "node_info_update" && !bytes.HasPrefix(f.Data, []byte("{")) {
			t.Errorf("fact for a malformed node_info_update: %s", f.raw)
		}
		if _, err := time.Parse(time.RFC3339Nano, f.Time); err != nil || !strings.HasSuffix(f.Time, "Z") {
			t.Errorf("time %q: %v", f.Time, err)
		}
		byNode[f.node()] = append(byNode[f.node()], f)
	}
	for id, n := range pings {
		if got := g.count("ping", id); got != n {
			t.Errorf("node %s: %d ping facts, %d pings sent", id, got, n)
		}
	}
	var gotStatus, gotLog []int64
	for _, f := range g.facts {
		switch f.Type {
		case "algorithm_status_change":
			gotStatus = append(gotStatus, f.runID())
		case "algorithm_log":
			gotLog = append(gotLog, f.runID())
		}
	}
	for _, s := range [][]int64{statusRuns, logRuns, gotStatus, gotLog} {
		slices.Sort(s)
	}
	if !slices.Equal(gotStatus, statusRuns) {
		t.Errorf("algorithm_status_change facts for runs %v, sent %v", gotStatus, statusRuns)
	}
	if !slices.Equal(gotLog, logRuns) {
		t.Errorf("algorithm_log facts for runs %v, sent %v", gotLog, logRuns)
	}
	// Sessions: node 3 on a, then on a again; node 4 on b, then on a;
	// node 5 on c. In seq order the transitions alternate, starting online;
	// each online was decided by the instance the node connected to, each
	// offline by an instance alive at the time.
	wantSessions := map[string][][2]string{
		"3": {{"a", "a"}, {"a", "a"}},
		"4": {{"b", "a|c"}, {"a", "a"}},
		"5": {{"c", "a"}},
	}
	for id, sessions := range wantSessions {
		var trs []outFact
		for _, f := range byNode[id] {
			if f.Type == "node_online" || f.Type == "node_offline" {
				trs = append(trs, f)
			}
		}
		sort.Slice(trs, func(i, j int) bool { return trs[i].seq() < trs[j].seq() })
		if len(trs) != 2*len(sessions) {
			t.Errorf("node %s: %d transitions, want %d: %v", id, len(trs), 2*len(sessions), trs)
			continue
		}
		for i, s := range sessions {
			on, off := trs[2*i], trs[2*i+1]
			if on.Type != "node_online" || off.Type != "node_offline" || on.seq() == off.seq() {
				t.Errorf("node %s session %d: %s then %s (seq %d, %d)", id, i+1, on.Type, off.Type, on.seq(), off.seq())
			}
			if on.Instance != s[0] || !slices.Contains(strings.Split(s[1], "|"), off.Instance) {
				t.Errorf("node %s session %d: online by %s, offline by %s; want %s and %s", id, i+1, on.Instance, off.Instance, s[0], s[1])
			}
		}
	}
	if hook.badAuth != 0 {
		t.Errorf("%d webhook requests without the token", hook.badAuth)
	}
	for _, p := range []*procServer{a, b, c} {
		if strings.Contains(p.logText(), outboxToken) {
			t.Errorf("%s logs the webhook token", p.name)
		}
	}
}

// TestOutboxShutdownWritesLastFacts: on shutdown an instance writes the
// facts of its drained clients, the last one decided while draining (no
// grace: the node's offline is decided as its socket closes), before it
// stops.
func TestOutboxShutdownWritesLastFacts(t *testing.T) {
	r := redistest.Start(t)
	stream := uniquePrefix(t) + ":outbox"
	g := newGroup(t, r.URL(), stream)
	s := startServer(t, func(c *config.Config) {
		c.OutboxStream, c.OutboxRedisURL = stream, r.URL()
		c.PresenceGrace = 0
	})
	n := startPyNode(t, s, "node3", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	n.waitEvent("sync", wait)
	for range 50 {
		n.emit("ping", 0)
	}
	syncNode(t, n, 1, 2, 7, "active")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	g.read()
	counts := map[string]int{}
	for _, f := range g.facts {
		counts[f.Type]++
	}
	want := map[string]int{"node_online": 1, "ping": 50, "algorithm_status_change": 1, "node_offline": 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("facts after shutdown: %v, want %v", counts, want)
	}
}
