package redis

import (
	"context"
	"testing"
	"time"
)

// TestEmitter: an emitter outside the cluster reaches the clients of every
// server: in one room (the room's channel), in several rooms and the whole
// namespace (the namespace's channel), with except, with binary arguments.
func TestEmitter(t *testing.T) {
	c := newCluster(t, 2, nil)
	a, b := c.servers[0], c.servers[1]
	inR := a.connect("/tasks", "in-r@a", []string{"r"})
	inRS := b.connect("/tasks", "in-r-s@b", []string{"r", "s"})
	inT := b.connect("/tasks", "in-t@b", []string{"t"})
	other := a.connect("/", "root@a", []string{"r"})

	rdb := newClient(c.redis.Addr())
	defer rdb.Close()
	em := NewEmitter(rdb, c.prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(em.Emit(ctx, "/tasks", []string{"r"}, nil, "one-room", map[string]any{"id": 1}))
	must(em.Emit(ctx, "/tasks", []string{"r", "t"}, []string{"s"}, "rooms-except", "x"))
	must(em.Emit(ctx, "/tasks", nil, nil, "namespace", []byte{0, 1, 255}, 2.5))

	inR.waitCount("one-room", 1)
	inRS.waitCount("one-room", 1)
	inR.waitCount("rooms-except", 1)
	inT.waitCount("rooms-except", 1)
	for _, cl := range []*client{inR, inRS, inT} {
		cl.waitCount("namespace", 1)
	}
	if got := inRS.count("rooms-except"); got != 0 {
		t.Errorf("a socket in an except room got the event %d times", got)
	}
	if got := inT.count("one-room"); got != 0 {
		t.Errorf("a socket outside the room got it")
	}
	if got := other.count("one-room") + other.count("namespace"); got != 0 {
		t.Errorf("a socket of another namespace got %d events", got)
	}
	args := inT.args("namespace")
	if len(args) != 2 {
		t.Fatalf("namespace args %v", args)
	}
	// The Go client hands binary over as a *types.BytesBuffer.
	if bin, ok := args[0].(interface{ Bytes() []byte }); !ok || string(bin.Bytes()) != "\x00\x01\xff" {
		t.Errorf("binary argument arrived as %T %v", args[0], args[0])
	}

	for _, bad := range []struct{ nsp, event string }{{"tasks", "e"}, {"", "e"}, {"/tasks", ""}} {
		if err := em.Emit(ctx, bad.nsp, nil, nil, bad.event); err == nil {
			t.Errorf("Emit(%q, %q) accepted", bad.nsp, bad.event)
		}
	}
}
