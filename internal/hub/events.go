package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/textclip"
)

// errRefused is a client event the server will not act on; reason is a
// metric label.
type errRefused struct {
	reason string
	msg    string
}

func (e *errRefused) Error() string { return e.msg }

func refused(reason, format string, args ...any) error {
	return &errRefused{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// onEvent receives every event the client sends, on the connection's
// goroutine: what may block (presence, token checks) is handed to the
// session's queue. It never panics: a panic in a handler is logged and the
// event dropped.
func (s *session) onEvent(event string, args []any, ack socketio.Ack) {
	s.h.m.EventsIn.WithLabelValues(metricEvent(event)).Inc()
	if !s.admit(event) {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.logger().Error("panic while handling event", zap.String("event", event), zap.Any("panic", p), zap.Stack("stack"))
		}
	}()
	if err := s.handle(event, args, ack); err != nil {
		var r *errRefused
		if errors.As(err, &r) {
			s.h.m.EventsRefused.WithLabelValues(metricEvent(event), r.reason).Inc()
			lvl := zapcore.WarnLevel
			if r.reason == "not_node" || r.reason == "unauthenticated" {
				lvl = zapcore.DebugLevel
			}
			s.eventLog(lvl, "event refused", zap.String("event", event), zap.String("reason", r.reason), zap.String("detail", r.msg))
			return
		}
		s.eventLog(zapcore.ErrorLevel, "event", zap.String("event", event), zap.Error(err))
	}
}

// admit applies the socket's event rate (Config.Events): an event over it
// is dropped without an answer, and a socket that floods past
// FloodDisconnect is disconnected. One log line when a flood starts and
// one when it is cut off: the flood itself writes none.
func (s *session) admit(event string) bool {
	l := &s.h.cfg.Events
	b := &s.limits().events
	wasFlooding := b.floodSince != 0
	switch b.take(l, s.h.cfg.Now().UnixNano()) {
	case admitted:
		return true
	case dropped:
		s.h.m.EventsRefused.WithLabelValues(metricEvent(event), "rate").Inc()
		if !wasFlooding {
			s.logger().Warn("events over the socket's rate are dropped", zap.String("event", event),
				zap.Float64("rate", l.Rate), zap.Int("burst", l.burst()), zap.Duration("disconnect_after", l.FloodDisconnect))
		}
		return false
	}
	s.h.m.EventsRefused.WithLabelValues(metricEvent(event), "rate").Inc()
	s.h.m.EventFloodDisconnects.Inc()
	s.logger().Warn("socket disconnected: over its event rate for too long", zap.String("event", event),
		zap.Float64("rate", l.Rate), zap.Duration("flooding_for", l.FloodDisconnect))
	s.sock.Disconnect(true)
	return false
}

// logBudget bounds the lines one socket's events make the server log, at
// any level: a burst of 20, then 2 a second. What is over it is counted
// (eventserver_client_log_lines_suppressed_total), not written, so that no
// client can fill the disk or the log pipeline.
var logBudget = EventLimit{Rate: 2, Burst: 20}

// eventLog writes a line about one of the socket's events, within the
// socket's log budget. Lines below the logger's level cost no budget.
func (s *session) eventLog(lvl zapcore.Level, msg string, fields ...zap.Field) {
	if !s.h.log.Core().Enabled(lvl) {
		return
	}
	if s.limits().logs.take(&logBudget, s.h.cfg.Now().UnixNano()) != admitted {
		s.h.m.ClientLogSuppressed.Inc()
		return
	}
	if ce := s.logger().Check(lvl, msg); ce != nil {
		ce.Write(fields...)
	}
}

// presenceLater hands a presence update of event to the session's queue; a
// full queue drops it (counted as refused, "overloaded").
func (s *session) presenceLater(event string, fn func(ctx context.Context) error) error {
	if !s.later(false, func() {
		if err := fn(context.Background()); err != nil {
			s.logger().Error("event", zap.String("event", event), zap.Error(err))
		}
	}) {
		return refused("overloaded", "too much background work waiting for this socket")
	}
	return nil
}

func (s *session) handle(event string, args []any, ack socketio.Ack) error {
	if event == protocol.EventRefreshToken {
		if !s.later(false, func() { s.refresh(args, ack) }) {
			return refused("overloaded", "too much background work waiting for this socket")
		}
		return nil
	}
	if s.id == nil {
		return refused("unauthenticated", "socket is not authenticated")
	}
	if s.id.Kind != rooms.KindNode {
		switch event {
		case protocol.EventMessage, protocol.EventError:
			s.eventLog(zapcore.DebugLevel, "client "+event, zap.String("text", clip(args)))
			return nil
		}
		return refused("not_node", "events that users send lead to no action")
	}
	now := s.h.cfg.Now()
	key := s.nodeKey()
	switch event {
	case protocol.EventPing:
		s.fact(protocol.FactPing, now, pingData{SocketID: s.sock.ID()})
		return s.presenceLater(event, func(ctx context.Context) error { return s.h.presence.Ping(ctx, key, now) })
	case protocol.EventNodeInfoUpdate:
		obj, err := oneObject(args)
		if err != nil {
			return err
		}
		s.fact(protocol.FactNodeInfoUpdate, now, obj)
		return s.presenceLater(event, func(ctx context.Context) error { return s.h.presence.SetConfig(ctx, key, obj, now) })
	case protocol.EventNodeMetricsUpdate:
		obj, err := oneObject(args)
		if err != nil {
			return err
		}
		s.fact(protocol.FactNodeMetricsUpdate, now, obj)
		return s.presenceLater(event, func(ctx context.Context) error { return s.h.presence.SetMetrics(ctx, key, obj, now) })
	case protocol.EventAlgorithmStatusChange:
		return s.algorithmStatusChange(args)
	case protocol.EventAlgorithmLog:
		return s.algorithmLog(args)
	case protocol.EventDataframeDeleted:
		return s.dataframeDeleted(args)
	case protocol.EventMessage:
		s.eventLog(zapcore.DebugLevel, "node message", zap.String("text", clip(args)))
		return nil
	case protocol.EventError:
		s.eventLog(zapcore.DebugLevel, "node error", zap.String("text", clip(args)))
		return nil
	}
	s.logger().Debug("unknown event ignored", zap.String("event", event), zap.Int("args", len(args)))
	return nil
}

// oneObject checks that args is exactly one JSON object and returns its encoding.
func oneObject(args []any) (json.RawMessage, error) {
	if len(args) != 1 {
		return nil, refused("malformed", "want exactly one argument, got %d", len(args))
	}
	if _, ok := args[0].(map[string]any); !ok {
		return nil, refused("malformed", "want a JSON object, got %T", args[0])
	}
	b, err := json.Marshal(args[0])
	if err != nil {
		return nil, refused("malformed", "argument cannot be encoded: %v", err)
	}
	return b, nil
}

// decodeOne decodes the single object argument into v.
func decodeOne(args []any, v any) error {
	b, err := oneObject(args)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return refused("malformed", "%v", err)
	}
	return nil
}

// own checks that the ids a node put in a payload are its own.
func (s *session) own(nodeID, collaborationID, organizationID *int64) error {
	if collaborationID != nil && *collaborationID != s.id.CollaborationID() {
		return refused("not_own", "collaboration_id %d is not the node's own (%d)", *collaborationID, s.id.CollaborationID())
	}
	if nodeID != nil && strconv.FormatInt(*nodeID, 10) != s.id.ID.String() {
		return refused("not_own", "node_id %d is not the node's own (%s)", *nodeID, s.id.ID.String())
	}
	if organizationID != nil && *organizationID != s.id.OrganizationID {
		return refused("not_own", "organization_id %d is not the node's own (%d)", *organizationID, s.id.OrganizationID)
	}
	return nil
}

func (s *session) algorithmStatusChange(args []any) error {
	var in protocol.AlgorithmStatusChangeIn
	if err := decodeOne(args, &in); err != nil {
		return err
	}
	switch {
	case in.Status == nil || *in.Status == "":
		return refused("malformed", "status must be a non-empty string")
	case in.RunID == nil:
		return refused("malformed", "run_id must be an integer")
	case in.TaskID == nil:
		return refused("malformed", "task_id must be an integer")
	}
	var parent *int64
	if p := bytes.TrimSpace(in.ParentID); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		var v int64
		if err := json.Unmarshal(p, &v); err != nil {
			return refused("malformed", "parent_id must be an integer or null")
		}
		parent = &v
	}
	if err := s.own(in.NodeID, in.CollaborationID, in.OrganizationID); err != nil {
		return err
	}
	cid := s.id.CollaborationID()
	out := protocol.AlgorithmStatusChange{
		Status:          *in.Status,
		RunID:           *in.RunID,
		TaskID:          *in.TaskID,
		JobID:           in.JobID,
		CollaborationID: cid,
		NodeID:          s.id.ID,
		OrganizationID:  s.id.OrganizationID,
		ParentID:        parent,
	}
	s.eventLog(zapcore.DebugLevel, "algorithm status change", zap.String("status", out.Status), zap.Int64("run_id", out.RunID),
		zap.Int64("task_id", out.TaskID))
	return s.relay(func() { s.statusChange(out) })
}

func (s *session) algorithmLog(args []any) error {
	var in protocol.AlgorithmLogIn
	if err := decodeOne(args, &in); err != nil {
		return err
	}
	switch {
	case in.RunID == nil:
		return refused("malformed", "run_id must be an integer")
	case in.TaskID == nil:
		return refused("malformed", "task_id must be an integer")
	case in.Log == nil:
		return refused("malformed", "log must be a string")
	}
	if err := s.own(in.NodeID, in.CollaborationID, nil); err != nil {
		return err
	}
	cid := s.id.CollaborationID()
	out := protocol.AlgorithmLog{RunID: *in.RunID, TaskID: *in.TaskID, Log: *in.Log}
	at := s.h.cfg.Now()
	return s.relay(func() {
		s.fact(protocol.FactAlgorithmLog, at, out)
		if err := s.h.Emit([]string{rooms.Collaboration(cid)}, nil, protocol.EventAlgorithmLog, out); err != nil {
			s.eventLog(zapcore.ErrorLevel, "event", zap.String("event", protocol.EventAlgorithmLog), zap.Error(err))
		}
	})
}

// refresh handles refresh_token: {"token": "..."}. A valid token of the same
// client keeps the socket and its rooms and re-arms the expiry. It may block
// (the vantage6 API): it runs on the session's queue.
func (s *session) refresh(args []any, ack socketio.Ack) {
	answer := func(a protocol.RefreshTokenAck) {
		if !a.OK {
			s.h.m.AuthFailures.WithLabelValues("refresh_" + a.Error).Inc()
			s.logger().Info("refresh_token refused", zap.String("error", a.Error))
		}
		if ack != nil {
			ack(a)
		}
	}
	if s.id == nil {
		answer(protocol.RefreshTokenAck{Error: "unauthenticated"})
		return
	}
	var in protocol.RefreshTokenIn
	if err := decodeOne(args, &in); err != nil || in.Token == "" {
		answer(protocol.RefreshTokenAck{Error: "malformed"})
		return
	}
	id, exp, err := s.h.verify(s.h.ctx, in.Token)
	if err != nil {
		answer(protocol.RefreshTokenAck{Error: reasonOf(err) + "_token"})
		return
	}
	if id.Kind != s.id.Kind || id.ID != s.id.ID {
		answer(protocol.RefreshTokenAck{Error: "identity_mismatch"})
		return
	}
	s.scheduleExpiry(exp)
	s.logger().Info("token refreshed", zap.Time("exp", exp))
	answer(protocol.RefreshTokenAck{OK: true, Exp: exp.Unix()})
}

// clip renders a client's message or error argument for a log line, at
// most 1 KB.
func clip(args []any) string {
	var s string
	if len(args) > 0 {
		if str, ok := args[0].(string); ok {
			s = str
		} else {
			b, _ := json.Marshal(args[0])
			s = string(b)
		}
	}
	return textclip.Cut(s, 1024)
}
