// Package protocol holds the names and payloads of the vantage6 /tasks
// protocol, in one place for the handlers, the tests and the load generator.
package protocol

import "encoding/json"

// Namespace carries every event.
const Namespace = "/tasks"

// AdminNamespace is vantage6 4.14's /admin: users allowed to see every
// collaboration get EventNodeStatusChanged there.
const AdminNamespace = "/admin"

// EventNodeStatusChanged is sent on AdminNamespace, with no arguments, when
// a node comes online or goes offline.
const EventNodeStatusChanged = "node-status-changed"

// Events the server sends.
const (
	EventSync                  = "sync"          // to a node on (re)connect; no arguments
	EventExpiredToken          = "expired_token" // to one socket; no arguments
	EventInvalidToken          = "invalid_token" // to one socket; no arguments
	EventNodeOnline            = "node-online"   // NodeStatus, to every room of the node
	EventNodeOffline           = "node-offline"  // NodeStatus, to every room of the node
	EventNewTask               = "new_task"      // from the backend
	EventKillContainers        = "kill_containers"
	EventStatusUpdate          = "status_update"
	EventAlgorithmStatusChange = "algorithm_status_change" // AlgorithmStatusChange, relayed
	EventAlgorithmLog          = "algorithm_log"           // AlgorithmLog, relayed
	EventMessage               = "message"                 // a string, on room join/leave
	// vantage6 5.x: NewTaskUpdate, to the collaboration of each task that
	// waited on a run's task when that run completes.
	EventNewTaskUpdate = "new_task_update"
	// vantage6 5.x: {"df_name", "session_id"} from the backend, to a
	// collaboration's nodes (through the publish API or the queue).
	EventDeleteDataframe = "delete_dataframe"
)

// Events clients send.
const (
	EventPing              = "ping"
	EventNodeInfoUpdate    = "node_info_update"
	EventNodeMetricsUpdate = "node_metrics_update"
	EventError             = "error"
	// EventDataframeDeleted (vantage6 5.x) is DataframeDeletedIn: a node
	// carried out a delete_dataframe.
	EventDataframeDeleted = "dataframe_deleted"
	// EventRefreshToken is ours: {"token": "..."} with an ack.
	EventRefreshToken = "refresh_token"
)

// known are the events of the protocol, both ways.
var known = map[string]bool{
	EventNodeStatusChanged: true,
	EventSync:              true, EventExpiredToken: true, EventInvalidToken: true, EventNodeOnline: true, EventNodeOffline: true,
	EventNewTask: true, EventKillContainers: true, EventStatusUpdate: true, EventAlgorithmStatusChange: true,
	EventAlgorithmLog: true, EventMessage: true, EventNewTaskUpdate: true, EventDeleteDataframe: true,
	EventPing: true, EventNodeInfoUpdate: true, EventNodeMetricsUpdate: true, EventError: true,
	EventDataframeDeleted: true, EventRefreshToken: true,
}

// Known reports whether event is one of the protocol's events (sent by the
// server or by clients), e.g. to bound the label values of metrics.
func Known(event string) bool { return known[event] }

// Reserved are names a client or the publish API may not use as events.
var Reserved = map[string]bool{
	"connect": true, "connect_error": true, "disconnect": true, "disconnecting": true,
	"newListener": true, "removeListener": true,
}

// NodeStatus is the argument of node-online and node-offline.
type NodeStatus struct {
	ID    any    `json:"id"`
	Name  string `json:"name"`
	OrgID int64  `json:"org_id"`
}

// AlgorithmStatusChangeIn is what a node sends. Pointers tell absent from zero.
type AlgorithmStatusChangeIn struct {
	NodeID          *int64          `json:"node_id"`
	Status          *string         `json:"status"`
	RunID           *int64          `json:"run_id"`
	TaskID          *int64          `json:"task_id"`
	JobID           *int64          `json:"job_id"`
	CollaborationID *int64          `json:"collaboration_id"`
	OrganizationID  *int64          `json:"organization_id"`
	ParentID        json.RawMessage `json:"parent_id"`
}

// AlgorithmStatusChange is what the server relays: exactly these eight keys,
// as vantage6 4.14 does. JobID is null unless the node sent one: the server
// has no database to look it up.
type AlgorithmStatusChange struct {
	Status          string `json:"status"`
	RunID           int64  `json:"run_id"`
	TaskID          int64  `json:"task_id"`
	JobID           *int64 `json:"job_id"`
	CollaborationID int64  `json:"collaboration_id"`
	NodeID          any    `json:"node_id"`
	OrganizationID  int64  `json:"organization_id"`
	ParentID        *int64 `json:"parent_id"`
}

// AlgorithmLogIn is what a node sends.
type AlgorithmLogIn struct {
	CollaborationID *int64  `json:"collaboration_id"`
	NodeID          *int64  `json:"node_id"`
	RunID           *int64  `json:"run_id"`
	TaskID          *int64  `json:"task_id"`
	Log             *string `json:"log"`
}

// AlgorithmLog is what the server relays.
type AlgorithmLog struct {
	RunID  int64  `json:"run_id"`
	TaskID int64  `json:"task_id"`
	Log    string `json:"log"`
}

// NewTaskUpdate is the argument of new_task_update (vantage6 5.x): a task
// that depended on a completed run's task may now run.
type NewTaskUpdate struct {
	ID       int64  `json:"id"`
	ParentID *int64 `json:"parent_id"`
}

// DataframeDeletedIn is what a node sends when it has deleted a dataframe
// (vantage6 5.x). Pointers tell absent from zero.
type DataframeDeletedIn struct {
	DfName    *string `json:"df_name"`
	SessionID *int64  `json:"session_id"`
	NodeID    *int64  `json:"node_id"`
}

// DataframeDeleted is the data of a dataframe_deleted fact: what the
// vantage6 5 server stores (it removes the pending deletion).
type DataframeDeleted struct {
	DfName    string `json:"df_name"`
	SessionID int64  `json:"session_id"`
	NodeID    any    `json:"node_id"`
}

// RefreshTokenIn is the argument of refresh_token.
type RefreshTokenIn struct {
	Token string `json:"token"`
}

// RefreshTokenAck answers refresh_token.
type RefreshTokenAck struct {
	OK    bool   `json:"ok"`
	Exp   int64  `json:"exp,omitempty"`
	Error string `json:"error,omitempty"`
}
