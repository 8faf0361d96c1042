// Package presence tracks which nodes are online.
//
// A node is online while it has at least one live connection anywhere. The
// Store reports the transitions to the Handler it was built with, exactly
// once each: online when the node's first connection arrives; offline when
// its last one is gone and a grace period has passed without a reconnect
// (so a node that merely moves, or reconnects quickly, emits nothing).
//
// Memory is the store of a single instance (the embedded default).
// RedisStore shares presence between the replicas of a cluster: every live
// connection has a heartbeat entry in Redis that its replica refreshes, every
// write that decides a transition is one Lua script, and a sweeper on every
// replica finds the entries of a replica that died.
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults of MemoryConfig and RedisConfig.
const (
	DefaultGrace           = 5 * time.Second
	DefaultStaleAfter      = 65 * time.Second
	DefaultRefreshInterval = 5 * time.Second
	// DefaultTTL is the TTL when RefreshInterval is the default; a zero TTL
	// is 3 × RefreshInterval.
	DefaultTTL           = 15 * time.Second
	DefaultSweepInterval = time.Second
	DefaultPrefix        = "eventserver:presence"
	DefaultTimeout       = 5 * time.Second
	DefaultRetryPause    = time.Second
)

// NoGrace as a Grace decides a node's offline as soon as its last
// connection is gone.
const NoGrace time.Duration = -1

// ErrClosed is returned by Connect after Shutdown.
var ErrClosed = errors.New("presence: store is shut down")

// Node describes a node; it is what node-online and node-offline carry and
// what the nodes API lists.
type Node struct {
	// Key identifies the node uniquely (its id as a string).
	Key string
	// ID is the JSON encoding of the node's id (a number for vantage6 4.x).
	ID              json.RawMessage
	Name            string
	OrganizationID  int64
	CollaborationID int64
}

// Conn is one live connection of a node.
type Conn struct {
	Node Node
	// ID identifies the connection (the Socket.IO socket id).
	ID string
	// Instance is the instance that holds the connection.
	Instance string
	// Since is when it connected.
	Since time.Time
}

// Transition is a node coming online or going offline.
type Transition struct {
	Online bool
	Node   Node
	// Seq orders the transitions as they were decided, increasing: for
	// RedisStore cluster-wide, for Memory within the process: SeqBase of
	// the creation time of the Redis state (or of the Memory store) plus a
	// counter, so that it keeps increasing when Redis loses its state or a
	// single instance restarts.
	Seq int64
}

// Handler receives the transitions a store decides, one at a time (never
// concurrently). It may be called from the goroutine of a Store call or
// from a background goroutine (grace timers, the sweeper), never while the
// store holds a lock: it may call the Store. Memory delivers them in the
// order it decided them; with RedisStore, transitions of one node are
// decided far apart (a grace or a TTL), and Seq gives their exact order
// across replicas.
type Handler func(Transition)

// State is what the Store knows of an online node.
type State struct {
	Node
	// Instance is the instance of the node's latest connection.
	Instance string `json:"-"`
	// Connections counts its live connections (at least one).
	Connections int `json:"connections"`
	// ConnectedSince is when the node came online (a move keeps it).
	ConnectedSince time.Time `json:"connected_since"`
	// LastPing is when the node last sent a ping event.
	LastPing *time.Time `json:"last_ping"`
	// LastSeen is the latest of its latest connect, LastPing and the latest
	// Engine.IO heartbeat of its connections.
	LastSeen time.Time `json:"last_seen"`
	// Stale: connected, but neither a ping event nor a connect came for
	// longer than StaleAfter (vantage6's 65-second rule).
	Stale       bool            `json:"stale"`
	LastConfig  json.RawMessage `json:"last_config"`
	LastMetrics json.RawMessage `json:"last_metrics"`
	// LastConfigAt and LastMetricsAt say when those were received.
	LastConfigAt  *time.Time `json:"last_config_at"`
	LastMetricsAt *time.Time `json:"last_metrics_at"`
}

// Store keeps presence. Implementations are safe for concurrent use.
type Store interface {
	// Connect records a live connection; the node's first one makes it
	// online (a reconnect within the grace cancels a pending offline and
	// reports nothing). Connecting a known connection again is a no-op.
	Connect(ctx context.Context, c Conn) error
	// Disconnect removes a connection; when it was the node's last one, the
	// node goes offline after the grace unless it reconnects. Removing an
	// unknown connection is not an error and changes nothing.
	Disconnect(ctx context.Context, nodeKey, connID string) error
	// Ping records that the node said it is alive (its ping event).
	Ping(ctx context.Context, nodeKey string, at time.Time) error
	// Seen records that the node's connection is alive (an Engine.IO
	// heartbeat): it moves LastSeen, not the stale rule, which wants ping
	// events.
	Seen(ctx context.Context, nodeKey string, at time.Time) error
	// SetConfig keeps the node's last configuration (node_info_update).
	SetConfig(ctx context.Context, nodeKey string, cfg json.RawMessage, at time.Time) error
	// SetMetrics keeps the node's last metrics (node_metrics_update).
	SetMetrics(ctx context.Context, nodeKey string, m json.RawMessage, at time.Time) error
	// Online lists the online nodes, those with at least one live
	// connection (of the whole cluster for RedisStore), sorted by key,
	// numerically first. A node in its grace (no connection, offline not
	// yet decided) is not listed; its data is kept for a reconnect.
	Online(ctx context.Context) ([]State, error)
	// Shutdown hands this instance's connections over (each node left
	// without a connection goes offline after the grace, decided by
	// another replica, unless it reconnects there) and stops the store's
	// background work. Call it after the sockets are closed. Later calls
	// return at once; Connect fails with ErrClosed afterwards.
	Shutdown(ctx context.Context) error
}

// sortStates sorts by key, shorter keys first (numeric ids in order).
func sortStates(out []State) {
	slices.SortFunc(out, func(a, b State) int {
		if len(a.Key) != len(b.Key) {
			return len(a.Key) - len(b.Key)
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// finish fills LastSeen and Stale of a state, given its latest connect and
// its latest heartbeat.
func (s *State) finish(lastConnect, lastHeartbeat, now time.Time, staleAfter time.Duration) {
	alive := lastConnect
	if s.LastPing != nil && s.LastPing.After(alive) {
		alive = *s.LastPing
	}
	s.Stale = s.Connections > 0 && now.Sub(alive) > staleAfter
	s.LastSeen = alive
	if lastHeartbeat.After(s.LastSeen) {
		s.LastSeen = lastHeartbeat
	}
}

// transitionQueue delivers decided transitions to the handler one at a time, in the
// order they were decided, never under a store's lock.
type transitionQueue struct {
	h   Handler
	log *zap.Logger

	mu         sync.Mutex
	pending    []Transition
	delivering bool
}

func (o *transitionQueue) add(trs ...Transition) {
	if o.h == nil || len(trs) == 0 {
		return
	}
	o.mu.Lock()
	o.pending = append(o.pending, trs...)
	o.mu.Unlock()
}

// deliver hands the queued transitions to the handler, unless another call
// is doing so already (it will deliver them too).
func (o *transitionQueue) deliver() {
	if o.h == nil {
		return
	}
	for {
		o.mu.Lock()
		if o.delivering || len(o.pending) == 0 {
			o.mu.Unlock()
			return
		}
		o.delivering = true
		batch := o.pending
		o.pending = nil
		o.mu.Unlock()
		for _, tr := range batch {
			o.call(tr)
		}
		o.mu.Lock()
		o.delivering = false
		o.mu.Unlock()
	}
}

// call runs the handler; a panic is logged, not spread to a background
// goroutine where it would end the process.
func (o *transitionQueue) call(tr Transition) {
	defer func() {
		if r := recover(); r != nil {
			o.log.Error("presence handler panicked", zap.Any("panic", r),
				zap.String("node_id", tr.Node.Key), zap.Bool("online", tr.Online))
		}
	}()
	o.h(tr)
}
