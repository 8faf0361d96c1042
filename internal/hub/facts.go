package hub

import (
	"encoding/json"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/presence"
)

// FactSink receives the facts that nodes establish, for the backend
// (internal/outbox). Add must not block: it is called on the socket's event
// path and from the presence handler.
type FactSink interface {
	Add(protocol.Fact)
}

// fact records what the session's node established, once its event passed
// validation. It is a no-op without a sink.
func (s *session) fact(typ string, at time.Time, data any) {
	sink := s.h.cfg.Facts
	if sink == nil || s.id == nil {
		return
	}
	raw, err := rawJSON(data)
	if err != nil {
		s.logger().Error("outbox: fact data cannot be encoded", zap.String("type", typ), zap.Error(err))
		return
	}
	nodeID, _ := s.id.ID.MarshalJSON()
	sink.Add(protocol.Fact{
		Type:            typ,
		Time:            at,
		Instance:        s.h.cfg.Instance,
		NodeID:          nodeID,
		NodeName:        s.id.Name,
		CollaborationID: s.id.CollaborationID(),
		OrganizationID:  s.id.OrganizationID,
		Data:            raw,
	})
}

// transitionFact records a node_online or node_offline that this instance's
// presence store decided (exactly one instance decides each).
func (h *Hub) transitionFact(tr presence.Transition, status protocol.NodeStatus) {
	sink := h.cfg.Facts
	if sink == nil {
		return
	}
	typ := protocol.FactNodeOffline
	if tr.Online {
		typ = protocol.FactNodeOnline
	}
	data, err := json.Marshal(transitionData{NodeStatus: status, Seq: tr.Seq})
	if err != nil {
		h.log.Error("outbox: transition cannot be encoded", zap.String("type", typ), zap.Error(err))
		return
	}
	sink.Add(protocol.Fact{
		Type:            typ,
		Time:            h.cfg.Now(),
		Instance:        h.cfg.Instance,
		NodeID:          tr.Node.ID,
		NodeName:        tr.Node.Name,
		CollaborationID: tr.Node.CollaborationID,
		OrganizationID:  tr.Node.OrganizationID,
		Data:            data,
	})
}

// transitionData is the data of node_online and node_offline: what
// node-online and node-offline carry, and the transition's order.
type transitionData struct {
	protocol.NodeStatus
	// Seq orders the transitions of the cluster as presence decided them
	// (increasing, not contiguous): facts written by different instances
	// may reach the stream out of order.
	Seq int64 `json:"seq"`
}

// pingData is the data of a ping fact.
type pingData struct {
	SocketID string `json:"socket_id"`
}

func rawJSON(v any) (json.RawMessage, error) {
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	return json.Marshal(v)
}
