package socketio

import (
	"slices"
	"testing"
)

// TestRoomSet: a room of one keeps its member inline; a second makes a
// set, and leaving back to one member makes it inline again.
func TestRoomSet(t *testing.T) {
	a, b, c := &Socket{seq: 1}, &Socket{seq: 2}, &Socket{seq: 3}
	members := func(rs roomSet) []*Socket {
		out := rs.appendTo(nil)
		slices.SortFunc(out, bySeq)
		return out
	}
	var rs roomSet
	rs = rs.add(a).add(a)
	if rs.one != a || rs.many != nil || len(members(rs)) != 1 {
		t.Fatalf("one member: %+v", rs)
	}
	rs = rs.add(b).add(c)
	if rs.one != nil || !slices.Equal(members(rs), []*Socket{a, b, c}) {
		t.Fatalf("three members: %+v", rs)
	}
	rs, empty := rs.del(a)
	if empty || !slices.Equal(members(rs), []*Socket{b, c}) {
		t.Fatalf("after a left: %+v", rs)
	}
	rs, empty = rs.del(c)
	if empty || rs.one != b || rs.many != nil {
		t.Fatalf("after c left: %+v", rs)
	}
	if _, empty = rs.del(a); empty {
		t.Fatal("a non-member's leave emptied the room")
	}
	if rs, empty = rs.del(b); !empty || len(members(rs)) != 0 {
		t.Fatalf("after b left: %+v", rs)
	}
}
