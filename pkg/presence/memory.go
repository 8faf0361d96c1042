package presence

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is the Store of a single instance.
type Memory struct {
	handler Handler

	mu         sync.Mutex
	nodes      map[string]*memNode
	pending    []Transition // decided, not yet delivered
	delivering bool
}

type memNode struct {
	state State
	conns map[string]struct{}
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Store that reports transitions to h (which may
// be nil). Transitions are delivered one at a time, in the order they were
// decided, never while the Store's lock is held: h may cause a call to the
// Store (a broadcast that closes a socket), whose transition is then
// delivered after h returns. Usually the call that decides a transition
// delivers it before returning.
func NewMemory(h Handler) *Memory {
	return &Memory{handler: h, nodes: map[string]*memNode{}}
}

// decide queues a transition; the caller holds m.mu and calls deliver after
// releasing it.
func (m *Memory) decide(tr Transition) {
	if m.handler != nil {
		m.pending = append(m.pending, tr)
	}
}

// deliver hands the queued transitions to the handler, unless another call
// is doing so already (it will deliver them too).
func (m *Memory) deliver() {
	for {
		m.mu.Lock()
		if m.delivering || len(m.pending) == 0 {
			m.mu.Unlock()
			return
		}
		m.delivering = true
		batch := m.pending
		m.pending = nil
		m.mu.Unlock()
		func() {
			defer func() {
				m.mu.Lock()
				m.delivering = false
				m.mu.Unlock()
			}()
			for _, tr := range batch {
				m.handler(tr)
			}
		}()
	}
}

// Connect implements Store.
func (m *Memory) Connect(_ context.Context, c Conn) error {
	defer m.deliver()
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.nodes[c.Node.Key]
	if !ok {
		n = &memNode{
			state: State{Node: c.Node, Instance: c.Instance, ConnectedSince: c.Since},
			conns: map[string]struct{}{},
		}
		m.nodes[c.Node.Key] = n
	}
	if _, dup := n.conns[c.ID]; dup {
		return nil
	}
	n.conns[c.ID] = struct{}{}
	n.state.Connections = len(n.conns)
	if !ok {
		m.decide(Transition{Online: true, Node: c.Node})
	}
	return nil
}

// Disconnect implements Store.
func (m *Memory) Disconnect(_ context.Context, nodeKey, connID string) error {
	defer m.deliver()
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.nodes[nodeKey]
	if !ok {
		return nil
	}
	if _, ok := n.conns[connID]; !ok {
		return nil
	}
	delete(n.conns, connID)
	n.state.Connections = len(n.conns)
	if len(n.conns) > 0 {
		return nil
	}
	delete(m.nodes, nodeKey)
	m.decide(Transition{Online: false, Node: n.state.Node})
	return nil
}

func (m *Memory) update(nodeKey string, f func(*State)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.nodes[nodeKey]; ok {
		f(&n.state)
	}
}

// Ping implements Store.
func (m *Memory) Ping(_ context.Context, nodeKey string, at time.Time) error {
	m.update(nodeKey, func(s *State) { s.LastPing = &at })
	return nil
}

// SetConfig implements Store.
func (m *Memory) SetConfig(_ context.Context, nodeKey string, cfg json.RawMessage, at time.Time) error {
	m.update(nodeKey, func(s *State) { s.LastConfig, s.LastConfigAt = cfg, &at })
	return nil
}

// SetMetrics implements Store.
func (m *Memory) SetMetrics(_ context.Context, nodeKey string, v json.RawMessage, at time.Time) error {
	m.update(nodeKey, func(s *State) { s.LastMetrics, s.LastMetricsAt = v, &at })
	return nil
}

// Online implements Store.
func (m *Memory) Online(context.Context) ([]State, error) {
	m.mu.Lock()
	out := make([]State, 0, len(m.nodes))
	for _, n := range m.nodes {
		out = append(out, n.state)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b State) int {
		if len(a.Key) != len(b.Key) {
			return len(a.Key) - len(b.Key)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}
