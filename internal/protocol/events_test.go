package protocol

import "testing"

func TestKnown(t *testing.T) {
	for _, ev := range []string{
		EventNodeStatusChanged, EventSync, EventExpiredToken, EventInvalidToken, EventNodeOnline, EventNodeOffline,
		EventNewTask, EventKillContainers, EventStatusUpdate, EventAlgorithmStatusChange, EventAlgorithmLog,
		EventMessage, EventNewTaskUpdate, EventDeleteDataframe, EventPing, EventNodeInfoUpdate,
		EventNodeMetricsUpdate, EventError, EventDataframeDeleted, EventRefreshToken,
	} {
		if !Known(ev) {
			t.Errorf("Known(%q) = false", ev)
		}
	}
	if n := len(known); n != 20 {
		t.Errorf("%d known events, want the 20 above", n)
	}
	for _, ev := range []string{"", "other", "connect", "disconnect", "Ping", "new-task"} {
		if Known(ev) {
			t.Errorf("Known(%q) = true", ev)
		}
	}
}
