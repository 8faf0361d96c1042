package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// MemoryConfig configures a Memory store.
type MemoryConfig struct {
	// Handler receives the transitions; nil: none are reported.
	Handler Handler
	// Grace is how long a node whose last connection went stays online,
	// waiting for a reconnect that cancels its offline. Zero: DefaultGrace
	// (5s); NoGrace: offline at once.
	Grace time.Duration
	// StaleAfter: a connected node that has not pinged (nor connected) for
	// longer is reported stale. Zero: DefaultStaleAfter (65s).
	StaleAfter time.Duration
	// Logger receives the stale notices; nil logs nothing.
	Logger *zap.Logger
	// Registerer receives the store's metrics (eventserver_presence_*);
	// nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock of stale detection and of the transitions' numbers
	// (SeqBase of the creation time); nil: time.Now.
	Now func() time.Time
}

func (c MemoryConfig) withDefaults() (MemoryConfig, error) {
	switch {
	case c.Grace < 0 && c.Grace != NoGrace:
		return c, fmt.Errorf("presence: Grace %s is negative (NoGrace is -1ns)", c.Grace)
	case c.StaleAfter < 0:
		return c, fmt.Errorf("presence: StaleAfter %s is negative", c.StaleAfter)
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Memory is the Store of a single instance.
type Memory struct {
	cfg   MemoryConfig
	out   *transitionQueue
	m     *metrics
	stale *staleWatch

	mu     sync.Mutex
	nodes  map[string]*memNode
	seq    int64
	closed bool
}

type memNode struct {
	state         State
	conns         map[string]struct{}
	lastConnect   time.Time
	lastHeartbeat time.Time
	// grace is armed while the node has no connection and its offline is
	// pending; graceID tells its firing from an earlier, cancelled one's.
	grace   *time.Timer
	graceID *struct{ _ byte }
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Store with the default configuration that
// reports transitions to h (which may be nil). See NewMemoryWithConfig.
func NewMemory(h Handler) *Memory {
	m, err := NewMemoryWithConfig(MemoryConfig{Handler: h})
	if err != nil {
		panic(err) // unreachable: the defaults are valid and nothing is registered
	}
	return m
}

// NewMemoryWithConfig returns an empty Store. Transitions are delivered
// one at a time, in the order they were decided, never while the Store's
// lock is held: the handler may cause a call to the Store (a broadcast that
// closes a socket), whose transition is then delivered after it returns.
// Online is delivered by the Connect that decides it; offline after the
// grace, from a timer's goroutine (by Disconnect itself with NoGrace).
func NewMemoryWithConfig(cfg MemoryConfig) (*Memory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer, false)
	if err != nil {
		return nil, fmt.Errorf("presence: metrics: %w", err)
	}
	return &Memory{
		cfg:   cfg,
		out:   &transitionQueue{h: cfg.Handler, log: cfg.Logger},
		m:     met,
		stale: newStaleWatch(cfg.StaleAfter, cfg.Now, cfg.Logger),
		nodes: map[string]*memNode{},
		// Numbered from the store's creation, as RedisStore numbers from
		// its state's: a restarted instance's transitions follow the last
		// ones of the process before it.
		seq: SeqBase(cfg.Now()),
	}, nil
}

// decide numbers and queues a transition; the caller holds m.mu and calls
// m.out.deliver after releasing it.
func (m *Memory) decide(tr Transition) {
	m.seq++
	tr.Seq = m.seq
	m.m.counted([]Transition{tr})
	m.m.online.Set(float64(len(m.nodes)))
	m.out.add(tr)
}

// Connect implements Store.
func (m *Memory) Connect(_ context.Context, c Conn) error {
	defer m.out.deliver()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
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
	n.state.Instance = c.Instance
	if c.Since.After(n.lastConnect) {
		n.lastConnect = c.Since
	}
	if n.grace != nil {
		// A reconnect within the grace: the node never went.
		n.grace.Stop()
		n.grace, n.graceID = nil, nil
	}
	seen := n.lastConnect
	if n.state.LastPing != nil && n.state.LastPing.After(seen) {
		seen = *n.state.LastPing
	}
	m.stale.seen(c.Node.Key, c.Node.Name, seen)
	if !ok {
		m.decide(Transition{Online: true, Node: c.Node})
	}
	return nil
}

// Disconnect implements Store.
func (m *Memory) Disconnect(_ context.Context, nodeKey, connID string) error {
	defer m.out.deliver()
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
	m.stale.forget(nodeKey)
	if m.cfg.Grace == NoGrace || m.closed {
		delete(m.nodes, nodeKey)
		if !m.closed {
			m.decide(Transition{Online: false, Node: n.state.Node})
		}
		return nil
	}
	id := &struct{ _ byte }{}
	n.graceID = id
	n.grace = time.AfterFunc(m.cfg.Grace, func() { m.expire(nodeKey, n, id) })
	return nil
}

// expire decides the offline of a node whose grace timer id fired, unless
// a reconnect cancelled it meanwhile.
func (m *Memory) expire(key string, n *memNode, id *struct{ _ byte }) {
	defer m.out.deliver()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.nodes[key] != n || n.graceID != id || len(n.conns) > 0 {
		return
	}
	delete(m.nodes, key)
	m.decide(Transition{Online: false, Node: n.state.Node})
}

func (m *Memory) update(nodeKey string, f func(*memNode)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.nodes[nodeKey]; ok {
		f(n)
	}
}

// Ping implements Store.
func (m *Memory) Ping(_ context.Context, nodeKey string, at time.Time) error {
	m.update(nodeKey, func(n *memNode) {
		n.state.LastPing = &at
		if len(n.conns) > 0 {
			m.stale.seen(nodeKey, n.state.Name, at)
		}
	})
	return nil
}

// Seen implements Store.
func (m *Memory) Seen(_ context.Context, nodeKey string, at time.Time) error {
	m.update(nodeKey, func(n *memNode) {
		if at.After(n.lastHeartbeat) {
			n.lastHeartbeat = at
		}
	})
	return nil
}

// SetConfig implements Store.
func (m *Memory) SetConfig(_ context.Context, nodeKey string, cfg json.RawMessage, at time.Time) error {
	m.update(nodeKey, func(n *memNode) { n.state.LastConfig, n.state.LastConfigAt = cfg, &at })
	return nil
}

// SetMetrics implements Store.
func (m *Memory) SetMetrics(_ context.Context, nodeKey string, v json.RawMessage, at time.Time) error {
	m.update(nodeKey, func(n *memNode) { n.state.LastMetrics, n.state.LastMetricsAt = v, &at })
	return nil
}

// Online implements Store.
func (m *Memory) Online(context.Context) ([]State, error) {
	now := m.cfg.Now()
	m.mu.Lock()
	out := make([]State, 0, len(m.nodes))
	for _, n := range m.nodes {
		if len(n.conns) == 0 {
			continue // in its grace
		}
		s := n.state
		s.finish(n.lastConnect, n.lastHeartbeat, now, m.cfg.StaleAfter)
		out = append(out, s)
	}
	m.mu.Unlock()
	sortStates(out)
	return out, nil
}

// Shutdown implements Store: a single instance has nobody to hand over to,
// so it stops its timers; pending offlines are not reported.
func (m *Memory) Shutdown(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for _, n := range m.nodes {
		if n.grace != nil {
			n.grace.Stop()
			n.grace, n.graceID = nil, nil
		}
	}
	m.stale.stop()
	return nil
}
