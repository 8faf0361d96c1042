package presence

import (
	"context"
	"testing"
	"time"
)

// TestMemoryHandlerMayCallStore: a handler that leads to a Store call (a
// broadcast that closes a socket) neither deadlocks nor loses the
// transition, which is delivered after the handler returns.
func TestMemoryHandlerMayCallStore(t *testing.T) {
	ctx := context.Background()
	var got []Transition
	var m *Memory
	m = newMemory(t, func(tr Transition) {
		got = append(got, tr)
		if tr.Online && tr.Node.Key == "1" {
			if err := m.Disconnect(ctx, "2", "b"); err != nil {
				t.Error(err)
			}
		}
	})
	if err := m.Connect(ctx, Conn{Node: Node{Key: "2"}, ID: "b", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Connect(ctx, Conn{Node: Node{Key: "1"}, ID: "a", Since: time.Now()})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: the handler's call into the Store never returned")
	}
	want := []Transition{{Online: true, Node: Node{Key: "2"}}, {Online: true, Node: Node{Key: "1"}}, {Online: false, Node: Node{Key: "2"}}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].Online != want[i].Online || got[i].Node.Key != want[i].Node.Key {
			t.Fatalf("transition %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
