package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// recorder collects the transitions a Memory reports.
type recorder struct {
	mu sync.Mutex
	ts []Transition
}

func (r *recorder) handle(t Transition) {
	r.mu.Lock()
	r.ts = append(r.ts, t)
	r.mu.Unlock()
}

// take returns the transitions so far and forgets them.
func (r *recorder) take() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts := r.ts
	r.ts = nil
	return ts
}

func node(key string) Node {
	id, _ := strconv.Atoi(key)
	return Node{
		Key:             key,
		ID:              json.RawMessage(key),
		Name:            "node-" + key,
		OrganizationID:  int64(id) * 10,
		CollaborationID: int64(id) * 100,
	}
}

func conn(key, id string) Conn {
	return Conn{Node: node(key), ID: id, Instance: "i1", Since: time.Unix(1700000000, 0)}
}

func sameNode(a, b Node) bool {
	return a.Key == b.Key && string(a.ID) == string(b.ID) && a.Name == b.Name &&
		a.OrganizationID == b.OrganizationID && a.CollaborationID == b.CollaborationID
}

// op is one step of a scenario.
type op struct {
	connect bool // Connect, else Disconnect
	key, id string
}

func connectOp(key, id string) op    { return op{connect: true, key: key, id: id} }
func disconnectOp(key, id string) op { return op{key: key, id: id} }

func TestMemoryTransitions(t *testing.T) {
	type want struct {
		online bool
		key    string
	}
	tests := []struct {
		name string
		ops  []op
		// want lists the transitions reported by the last op only.
		want []want
		// online lists the keys of the nodes online after all ops, with
		// their connection counts.
		online map[string]int
	}{
		{
			name:   "first connect is online",
			ops:    []op{connectOp("3", "a")},
			want:   []want{{true, "3"}},
			online: map[string]int{"3": 1},
		},
		{
			name:   "second connection of the same node reports nothing",
			ops:    []op{connectOp("3", "a"), connectOp("3", "b")},
			want:   nil,
			online: map[string]int{"3": 2},
		},
		{
			name:   "duplicate connect of the same conn id is a no-op",
			ops:    []op{connectOp("3", "a"), connectOp("3", "a")},
			want:   nil,
			online: map[string]int{"3": 1},
		},
		{
			name:   "disconnecting one of two reports nothing",
			ops:    []op{connectOp("3", "a"), connectOp("3", "b"), disconnectOp("3", "a")},
			want:   nil,
			online: map[string]int{"3": 1},
		},
		{
			name:   "last disconnect is offline",
			ops:    []op{connectOp("3", "a"), connectOp("3", "b"), disconnectOp("3", "a"), disconnectOp("3", "b")},
			want:   []want{{false, "3"}},
			online: map[string]int{},
		},
		{
			name:   "single connection disconnect is offline",
			ops:    []op{connectOp("3", "a"), disconnectOp("3", "a")},
			want:   []want{{false, "3"}},
			online: map[string]int{},
		},
		{
			name:   "disconnect of unknown node is a no-op",
			ops:    []op{connectOp("3", "a"), disconnectOp("4", "a")},
			want:   nil,
			online: map[string]int{"3": 1},
		},
		{
			name:   "disconnect of unknown conn is a no-op",
			ops:    []op{connectOp("3", "a"), disconnectOp("3", "zzz")},
			want:   nil,
			online: map[string]int{"3": 1},
		},
		{
			name:   "disconnect on an empty store is a no-op",
			ops:    []op{disconnectOp("3", "a")},
			want:   nil,
			online: map[string]int{},
		},
		{
			name:   "second disconnect of the same conn is a no-op",
			ops:    []op{connectOp("3", "a"), disconnectOp("3", "a"), disconnectOp("3", "a")},
			want:   nil,
			online: map[string]int{},
		},
		{
			name:   "reconnect after offline is online again",
			ops:    []op{connectOp("3", "a"), disconnectOp("3", "a"), connectOp("3", "b")},
			want:   []want{{true, "3"}},
			online: map[string]int{"3": 1},
		},
		{
			name:   "same conn id on two nodes is independent",
			ops:    []op{connectOp("3", "a"), connectOp("4", "a"), disconnectOp("3", "a")},
			want:   []want{{false, "3"}},
			online: map[string]int{"4": 1},
		},
		{
			name:   "other node coming online",
			ops:    []op{connectOp("3", "a"), connectOp("4", "b")},
			want:   []want{{true, "4"}},
			online: map[string]int{"3": 1, "4": 1},
		},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			m := newMemory(t, rec.handle)
			for i, o := range tt.ops {
				if i == len(tt.ops)-1 {
					rec.take()
				}
				var err error
				if o.connect {
					err = m.Connect(ctx, conn(o.key, o.id))
				} else {
					err = m.Disconnect(ctx, o.key, o.id)
				}
				if err != nil {
					t.Fatalf("op %d %+v: %v", i, o, err)
				}
			}
			got := rec.take()
			if len(got) != len(tt.want) {
				t.Fatalf("last op reported %d transitions %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if got[i].Online != w.online || !sameNode(got[i].Node, node(w.key)) {
					t.Errorf("transition %d = %+v, want online=%v with node %+v", i, got[i], w.online, node(w.key))
				}
			}
			states, err := m.Online(ctx)
			if err != nil {
				t.Fatal(err)
			}
			gotOnline := map[string]int{}
			for _, s := range states {
				gotOnline[s.Key] = s.Connections
			}
			if fmt.Sprint(gotOnline) != fmt.Sprint(tt.online) {
				t.Errorf("Online() = %v, want %v", gotOnline, tt.online)
			}
		})
	}
}

func TestMemoryOfflineCarriesNodeData(t *testing.T) {
	ctx := context.Background()
	var rec recorder
	m := newMemory(t, rec.handle)
	n := Node{Key: "3", ID: json.RawMessage(`3`), Name: "org1-node", OrganizationID: 2, CollaborationID: 1}
	if err := m.Connect(ctx, Conn{Node: n, ID: "a", Instance: "i1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := m.Disconnect(ctx, "3", "a"); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	if len(got) != 2 {
		t.Fatalf("got %d transitions %+v, want 2", len(got), got)
	}
	if !got[0].Online || !sameNode(got[0].Node, n) {
		t.Errorf("first transition = %+v, want online %+v", got[0], n)
	}
	if got[1].Online || !sameNode(got[1].Node, n) {
		t.Errorf("second transition = %+v, want offline %+v", got[1], n)
	}
}

func TestMemoryNilHandler(t *testing.T) {
	ctx := context.Background()
	m := newMemory(t, nil)
	if err := m.Connect(ctx, conn("1", "a")); err != nil {
		t.Fatal(err)
	}
	if err := m.Disconnect(ctx, "1", "a"); err != nil {
		t.Fatal(err)
	}
	if states, _ := m.Online(ctx); len(states) != 0 {
		t.Errorf("Online() = %+v, want none", states)
	}
}

func TestMemoryUpdates(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := json.RawMessage(`{"encryption":false,"allowed_algorithms":"all"}`)
	met := json.RawMessage(`{"cpu":0.5}`)

	tests := []struct {
		name   string
		key    string // node the update is for; "3" is online, "4" is not
		update func(m *Memory, key string) error
		check  func(t *testing.T, s State)
	}{
		{
			name:   "ping",
			key:    "3",
			update: func(m *Memory, key string) error { return m.Ping(ctx, key, at) },
			check: func(t *testing.T, s State) {
				if s.LastPing == nil || !s.LastPing.Equal(at) {
					t.Errorf("LastPing = %v, want %v", s.LastPing, at)
				}
			},
		},
		{
			name:   "config",
			key:    "3",
			update: func(m *Memory, key string) error { return m.SetConfig(ctx, key, cfg, at) },
			check: func(t *testing.T, s State) {
				if string(s.LastConfig) != string(cfg) {
					t.Errorf("LastConfig = %s, want %s", s.LastConfig, cfg)
				}
				if s.LastConfigAt == nil || !s.LastConfigAt.Equal(at) {
					t.Errorf("LastConfigAt = %v, want %v", s.LastConfigAt, at)
				}
			},
		},
		{
			name:   "metrics",
			key:    "3",
			update: func(m *Memory, key string) error { return m.SetMetrics(ctx, key, met, at) },
			check: func(t *testing.T, s State) {
				if string(s.LastMetrics) != string(met) {
					t.Errorf("LastMetrics = %s, want %s", s.LastMetrics, met)
				}
				if s.LastMetricsAt == nil || !s.LastMetricsAt.Equal(at) {
					t.Errorf("LastMetricsAt = %v, want %v", s.LastMetricsAt, at)
				}
			},
		},
		{name: "ping offline node", key: "4", update: func(m *Memory, key string) error { return m.Ping(ctx, key, at) }},
		{name: "config offline node", key: "4", update: func(m *Memory, key string) error { return m.SetConfig(ctx, key, cfg, at) }},
		{name: "metrics offline node", key: "4", update: func(m *Memory, key string) error { return m.SetMetrics(ctx, key, met, at) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			m := newMemory(t, rec.handle)
			if err := m.Connect(ctx, conn("3", "a")); err != nil {
				t.Fatal(err)
			}
			rec.take()
			if err := tt.update(m, tt.key); err != nil {
				t.Fatalf("update: %v", err)
			}
			if got := rec.take(); len(got) != 0 {
				t.Errorf("update reported transitions %+v", got)
			}
			states, err := m.Online(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(states) != 1 || states[0].Key != "3" {
				t.Fatalf("Online() = %+v, want only node 3 (an update must not bring a node online)", states)
			}
			s := states[0]
			if s.Connections != 1 || s.Instance != "i1" || !s.ConnectedSince.Equal(time.Unix(1700000000, 0)) || !sameNode(s.Node, node("3")) {
				t.Errorf("state = %+v, want node 3 with 1 connection on i1", s)
			}
			if tt.check != nil {
				tt.check(t, s)
			} else if s.LastPing != nil || s.LastConfig != nil || s.LastMetrics != nil || s.LastConfigAt != nil || s.LastMetricsAt != nil {
				t.Errorf("an update of an offline node changed node 3: %+v", s)
			}
		})
	}
}

func TestMemoryUpdateForgottenAfterOffline(t *testing.T) {
	ctx := context.Background()
	m := newMemory(t, nil)
	_ = m.Connect(ctx, conn("3", "a"))
	_ = m.Ping(ctx, "3", time.Now())
	_ = m.SetConfig(ctx, "3", json.RawMessage(`{}`), time.Now())
	_ = m.Disconnect(ctx, "3", "a")
	_ = m.Ping(ctx, "3", time.Now())
	_ = m.Connect(ctx, conn("3", "b"))
	states, _ := m.Online(ctx)
	if len(states) != 1 {
		t.Fatalf("Online() = %+v", states)
	}
	if states[0].LastPing != nil || states[0].LastConfig != nil {
		t.Errorf("state after reconnect kept old data: %+v", states[0])
	}
}

func TestMemoryOnlineSorted(t *testing.T) {
	tests := []struct {
		name string
		keys []string
		want []string
	}{
		{"numeric", []string{"10", "2", "1", "100", "3"}, []string{"1", "2", "3", "10", "100"}},
		{"2 before 10", []string{"10", "2"}, []string{"2", "10"}},
		{"same length", []string{"31", "13", "22"}, []string{"13", "22", "31"}},
		{"one", []string{"7"}, []string{"7"}},
		{"none", nil, []string{}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemory(t, nil)
			for _, k := range tt.keys {
				if err := m.Connect(ctx, conn(k, "c-"+k)); err != nil {
					t.Fatal(err)
				}
			}
			states, err := m.Online(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, 0, len(states))
			for _, s := range states {
				got = append(got, s.Key)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Online() keys = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMemoryConcurrent runs many goroutines that connect and disconnect
// distinct connections of a few nodes. For each node the reported
// transitions must alternate online/offline, start with online, and end
// offline once every connection is gone.
func TestMemoryConcurrent(t *testing.T) {
	const (
		nodes      = 4
		goroutines = 32
		rounds     = 200
	)
	ctx := context.Background()
	var mu sync.Mutex
	seq := map[string][]bool{}
	m := newMemory(t, func(tr Transition) {
		mu.Lock()
		seq[tr.Node.Key] = append(seq[tr.Node.Key], tr.Online)
		mu.Unlock()
	})

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range rounds {
				key := strconv.Itoa(1 + r.IntN(nodes))
				id := fmt.Sprintf("g%d-%d", g, i)
				if err := m.Connect(ctx, conn(key, id)); err != nil {
					t.Error(err)
					return
				}
				if r.IntN(3) == 0 {
					_ = m.Ping(ctx, key, time.Now())
					_, _ = m.Online(ctx)
				}
				if r.IntN(4) == 0 {
					// A duplicate and an unknown disconnect change nothing.
					_ = m.Connect(ctx, conn(key, id))
					_ = m.Disconnect(ctx, key, id+"-unknown")
				}
				if err := m.Disconnect(ctx, key, id); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	states, _ := m.Online(ctx)
	if len(states) != 0 {
		t.Errorf("nodes still online after every disconnect: %+v", states)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seq) == 0 {
		t.Fatal("no transitions reported")
	}
	for key, s := range seq {
		if len(s) == 0 || len(s)%2 != 0 {
			t.Errorf("node %s: %d transitions, want a positive even number", key, len(s))
		}
		for i, online := range s {
			if online != (i%2 == 0) {
				t.Errorf("node %s: transition %d is online=%v, want alternating starting with online", key, i, online)
				break
			}
		}
		if len(s) > 0 && s[len(s)-1] {
			t.Errorf("node %s: last transition is online, want offline", key)
		}
	}
}
