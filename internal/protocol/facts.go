package protocol

import (
	"encoding/json"
	"time"
)

// Types of facts. Node events keep their event's name; presence transitions
// are node_online and node_offline.
const (
	FactNodeOnline            = "node_online"
	FactNodeOffline           = "node_offline"
	FactPing                  = "ping"
	FactNodeInfoUpdate        = "node_info_update"
	FactNodeMetricsUpdate     = "node_metrics_update"
	FactAlgorithmStatusChange = "algorithm_status_change"
	FactAlgorithmLog          = "algorithm_log"
	FactDataframeDeleted      = "dataframe_deleted" // vantage6 5.x
)

// Fact is one thing a node established, for the backend: the hub makes
// them, the outbox (internal/outbox) delivers them.
type Fact struct {
	// ID identifies the fact uniquely (a UUIDv7); empty: the outbox makes
	// one. A consumer deduplicates by it: the outbox delivers at least once.
	ID string
	// Type is one of the Fact* constants.
	Type string
	// Time is when the server received the event or decided the
	// transition; zero: when the outbox gets it.
	Time time.Time
	// Instance is the instance that received the event (for transitions:
	// that decided it); empty: the outbox's.
	Instance string
	// NodeID is the JSON encoding of the node's id (a number for vantage6
	// 4.x, a string for Keycloak subjects).
	NodeID          json.RawMessage
	NodeName        string
	CollaborationID int64
	OrganizationID  int64
	// Data is the JSON of what the fact carries (see the README's
	// "Backend outbox"); nil: null.
	Data json.RawMessage
}

// SocketInfo is one socket of the cluster, as fetchSockets reports it (the
// publish API's GET /api/v1/sockets).
type SocketInfo struct {
	ID    string   `json:"id"`
	Rooms []string `json:"rooms"`
	Data  any      `json:"data"`
}
