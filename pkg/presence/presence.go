// Package presence tracks which nodes are online.
//
// A node is online while it has at least one live connection. The Store
// reports the transitions (first connection: online; last one gone: offline)
// to the Handler it was built with, exactly once each. The in-memory Store is
// the embedded default of a single instance.
package presence

import (
	"context"
	"encoding/json"
	"time"
)

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
}

// Handler receives transitions, one at a time and in order.
type Handler func(Transition)

// State is what the Store knows of an online node.
type State struct {
	Node
	Instance       string          `json:"-"`
	Connections    int             `json:"connections"`
	ConnectedSince time.Time       `json:"connected_since"`
	LastPing       *time.Time      `json:"last_ping"`
	LastConfig     json.RawMessage `json:"last_config"`
	LastMetrics    json.RawMessage `json:"last_metrics"`
	// LastConfigAt and LastMetricsAt say when those were received.
	LastConfigAt  *time.Time `json:"last_config_at"`
	LastMetricsAt *time.Time `json:"last_metrics_at"`
}

// Store keeps presence. Implementations are safe for concurrent use.
type Store interface {
	// Connect records a live connection; the node's first one makes it online.
	Connect(ctx context.Context, c Conn) error
	// Disconnect removes a connection; the node's last one makes it offline.
	// Removing an unknown connection is not an error and changes nothing.
	Disconnect(ctx context.Context, nodeKey, connID string) error
	// Ping records that the node said it is alive.
	Ping(ctx context.Context, nodeKey string, at time.Time) error
	// SetConfig keeps the node's last configuration (node_info_update).
	SetConfig(ctx context.Context, nodeKey string, cfg json.RawMessage, at time.Time) error
	// SetMetrics keeps the node's last metrics (node_metrics_update).
	SetMetrics(ctx context.Context, nodeKey string, m json.RawMessage, at time.Time) error
	// Online lists the online nodes, sorted by key.
	Online(ctx context.Context) ([]State, error)
}
