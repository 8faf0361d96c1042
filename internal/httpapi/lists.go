// GET /api/v1/nodes, /api/v1/sockets and /api/v1/instances: what the
// cluster holds, for operators and the backend.

package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"go.uber.org/zap"
)

func (a *API) nodes(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	states, err := a.cfg.Presence.Online(ctx)
	if err != nil {
		a.log.Error("list nodes", zap.Error(err))
		return writeError(w, http.StatusServiceUnavailable, "", "presence unavailable: "+err.Error())
	}
	out := make([]NodeView, len(states))
	for i, s := range states {
		out[i] = NodeView{
			ID: s.ID, Name: s.Name, OrganizationID: s.OrganizationID, CollaborationID: s.CollaborationID,
			Instance: s.Instance, Connections: s.Connections, ConnectedSince: s.ConnectedSince.UTC(), LastPing: s.LastPing,
			LastSeen: s.LastSeen.UTC(), Stale: s.Stale,
			LastConfig: s.LastConfig, LastConfigAt: s.LastConfigAt, LastMetrics: s.LastMetrics, LastMetricsAt: s.LastMetricsAt,
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"nodes": out})
}

// sockets answers GET /api/v1/sockets[?room=R&room=S]: the sockets of the
// whole cluster in those rooms (all when none), with who they are.
func (a *API) sockets(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	list, err := a.cfg.Cluster.FetchSockets(ctx, r.URL.Query()["room"])
	if err != nil {
		a.log.Warn("fetch sockets", zap.Error(err))
		return writeError(w, http.StatusGatewayTimeout, "", "fetching the sockets of the cluster: "+err.Error())
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sockets": list})
}

// instances answers GET /api/v1/instances: every instance of the cluster
// that answered, this one first. When some did not answer in time the list
// is partial and "incomplete" says why.
func (a *API) instances(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	list, err := a.cfg.Cluster.Instances(ctx)
	resp := map[string]any{"instances": list}
	if err != nil {
		a.log.Warn("instances", zap.Error(err))
		resp["incomplete"] = err.Error()
	}
	return writeJSON(w, http.StatusOK, resp)
}

// NodeView is one node in GET /api/v1/nodes.
type NodeView struct {
	ID              json.RawMessage `json:"id"`
	Name            string          `json:"name"`
	OrganizationID  int64           `json:"organization_id"`
	CollaborationID int64           `json:"collaboration_id"`
	Instance        string          `json:"instance"`
	Connections     int             `json:"connections"`
	ConnectedSince  time.Time       `json:"connected_since"`
	LastPing        *time.Time      `json:"last_ping"`
	LastSeen        time.Time       `json:"last_seen"`
	Stale           bool            `json:"stale"`
	LastConfig      json.RawMessage `json:"last_config"`
	LastConfigAt    *time.Time      `json:"last_config_at"`
	LastMetrics     json.RawMessage `json:"last_metrics"`
	LastMetricsAt   *time.Time      `json:"last_metrics_at"`
}
