package hub

import (
	"testing"

	"github.com/eventserver/eventserver/pkg/rooms"
)

// TestRoomTexts: the join and leave messages are worded as vantage6 4.14's
// websockets.py words them (brackets on join only).
func TestRoomTexts(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{joinText(rooms.KindNode, "org1-node", "collaboration_1"), "Node <org1-node> joined room <collaboration_1>"},
		{joinText(rooms.KindUser, "alice", "collaboration_1_organization_2"), "User <alice> joined room <collaboration_1_organization_2>"},
		{leaveText("org1-node", "collaboration_1"), "org1-node left room collaboration_1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
