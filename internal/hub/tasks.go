package hub

import (
	"context"
	"errors"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/rooms"
)

// Task is what the vantage6 5 API says of a task: the facts a node's
// algorithm_status_change needs that only the server's database has.
type Task struct {
	ID              int64
	JobID           *int64
	ParentID        *int64
	CollaborationID int64
	// RequiredBy are the tasks that wait on this one.
	RequiredBy []int64
}

// Tasks looks tasks up (vantage6 5.x: internal/v6api). Task may block: the
// hub calls it on the socket's work queue, bounded by ResolveTimeout. fresh
// asks for an answer that is not from a cache: RequiredBy grows as tasks
// are created, the rest of a task never changes.
type Tasks interface {
	Task(ctx context.Context, id int64, fresh bool) (Task, error)
}

// ErrNoTaskLookup is what Tasks returns when the vantage6 server turns out
// not to be 5.x (EVENTSERVER_V6_VERSION=auto found a 4.x API): the status
// change is relayed as 4.x does, without counting a failure.
var ErrNoTaskLookup = errors.New("hub: no task lookup for this vantage6 version")

// relay runs fn now, or on the socket's work queue when tasks are looked
// up (vantage6 5.x), so that a node's status changes and logs keep their
// order behind the lookups, and whenever that queue has work: a node's
// rooms are joined on it after its presence is recorded, and an event the
// node sent right after its CONNECT ack must reach the rooms, the node's
// own copy included, as on python-socketio, which joins them first.
func (s *session) relay(fn func()) error {
	if s.h.cfg.Tasks == nil && !s.queueBusy() {
		fn()
		return nil
	}
	if !s.later(false, fn) {
		return refused("overloaded", "too much background work waiting for this socket")
	}
	return nil
}

// statusChange records and relays a node's algorithm_status_change; with a
// task lookup (vantage6 5.x) it first completes it as 5.x does: job_id is
// the task's job, and a run that completed tells the
// collaboration of each task that waited on its task (new_task_update,
// before the status change). When the API cannot answer, the status change
// is relayed as the node sent it (job_id from the node, else null) and no
// new_task_update is sent: losing the status change would be worse.
func (s *session) statusChange(out protocol.AlgorithmStatusChange) {
	if s.h.cfg.Tasks == nil {
		s.statusChangeOut(out)
		return
	}
	ctx, cancel := context.WithTimeout(s.h.ctx, s.h.cfg.ResolveTimeout)
	defer cancel()
	tasks := s.h.cfg.Tasks
	t, err := tasks.Task(ctx, out.TaskID, out.Status == runCompleted)
	switch {
	case errors.Is(err, ErrNoTaskLookup):
	case err != nil:
		s.h.m.TaskLookups.WithLabelValues("error").Inc()
		s.eventLog(zapcore.WarnLevel, "task lookup failed: algorithm_status_change relayed without the API's job_id",
			zap.Int64("task_id", out.TaskID), zap.Error(err))
	case t.CollaborationID != out.CollaborationID:
		s.h.m.TaskLookups.WithLabelValues("not_own").Inc()
		s.h.m.EventsRefused.WithLabelValues(protocol.EventAlgorithmStatusChange, "not_own").Inc()
		s.eventLog(zapcore.WarnLevel, "event refused", zap.String("event", protocol.EventAlgorithmStatusChange),
			zap.String("reason", "not_own"), zap.Int64("task_id", out.TaskID), zap.Int64("task_collaboration_id", t.CollaborationID))
		return
	default:
		s.h.m.TaskLookups.WithLabelValues("ok").Inc()
		out.JobID = t.JobID
		if out.Status == runCompleted {
			for _, id := range t.RequiredBy {
				s.newTaskUpdate(ctx, id)
			}
		}
	}
	s.statusChangeOut(out)
}

// runCompleted is vantage6's RunStatus.COMPLETED.
const runCompleted = "completed"

// newTaskUpdate tells the collaboration of task id that it may run.
func (s *session) newTaskUpdate(ctx context.Context, id int64) {
	dep, err := s.h.cfg.Tasks.Task(ctx, id, false)
	if err != nil {
		s.h.m.TaskLookups.WithLabelValues("error").Inc()
		s.eventLog(zapcore.WarnLevel, "task lookup failed: no new_task_update for a dependent task",
			zap.Int64("task_id", id), zap.Error(err))
		return
	}
	s.h.m.TaskLookups.WithLabelValues("ok").Inc()
	if err := s.h.Emit([]string{rooms.Collaboration(dep.CollaborationID)}, nil, protocol.EventNewTaskUpdate,
		protocol.NewTaskUpdate{ID: dep.ID, ParentID: dep.ParentID}); err != nil {
		s.eventLog(zapcore.ErrorLevel, "new_task_update", zap.Int64("task_id", id), zap.Error(err))
	}
}

// statusChangeOut records and relays a node's status change.
func (s *session) statusChangeOut(out protocol.AlgorithmStatusChange) {
	s.fact(protocol.FactAlgorithmStatusChange, s.h.cfg.Now(), out)
	if err := s.h.Emit([]string{rooms.Collaboration(out.CollaborationID)}, nil, protocol.EventAlgorithmStatusChange, out); err != nil {
		s.eventLog(zapcore.ErrorLevel, "event", zap.String("event", protocol.EventAlgorithmStatusChange), zap.Error(err))
	}
}

// dataframeDeleted records that the node carried out a delete_dataframe
// (vantage6 5.x), for the backend: the server removes the pending deletion.
// It is not relayed.
func (s *session) dataframeDeleted(args []any) error {
	var in protocol.DataframeDeletedIn
	if err := decodeOne(args, &in); err != nil {
		return err
	}
	switch {
	case in.DfName == nil || *in.DfName == "":
		return refused("malformed", "df_name must be a non-empty string")
	case in.SessionID == nil:
		return refused("malformed", "session_id must be an integer")
	}
	if err := s.own(in.NodeID, nil, nil); err != nil {
		return err
	}
	s.eventLog(zapcore.DebugLevel, "dataframe deleted", zap.String("df_name", *in.DfName), zap.Int64("session_id", *in.SessionID))
	s.fact(protocol.FactDataframeDeleted, s.h.cfg.Now(), protocol.DataframeDeleted{DfName: *in.DfName, SessionID: *in.SessionID, NodeID: s.id.ID})
	return nil
}
