package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	redisadapter "github.com/eventserver/eventserver/pkg/adapter/redis"
	"github.com/eventserver/eventserver/pkg/redistest"
)

// TestGoEmitterMatchesNode: the Go emitter publishes the same bytes on the
// same channels as Node's @socket.io/redis-emitter for the same emits, and a
// Node socket.io server with @socket.io/redis-adapter delivers them.
func TestGoEmitterMatchesNode(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	node := startEmitter(t, r.URL(), prefix)

	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spy := rdb.PSubscribe(ctx, prefix+"#*")
	defer spy.Close()
	if _, err := spy.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	next := func() *goredis.Message {
		t.Helper()
		m, err := spy.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	em := redisadapter.NewEmitter(rdb, prefix)

	cases := []struct {
		name          string
		rooms, except []string
		event         string
		args          []any
	}{
		{"one room", []string{"collaboration_1"}, nil, "new_task", []any{map[string]any{"id": 12, "parent_id": nil}}},
		{"rooms and except", []string{"a", "b"}, []string{"c"}, "e", []any{"x", 1, true}},
		{"namespace, no argument", nil, nil, "ping", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := map[string]any{"cmd": "emit", "event": tc.event, "args": tc.args}
			if tc.args == nil {
				cmd["args"] = []any{}
			}
			if tc.rooms != nil {
				cmd["rooms"] = tc.rooms
			}
			if tc.except != nil {
				cmd["except"] = tc.except
			}
			node.mustCall(cmd)
			want := next()
			if err := em.Emit(ctx, "/tasks", tc.rooms, tc.except, tc.event, tc.args...); err != nil {
				t.Fatal(err)
			}
			got := next()
			if got.Channel != want.Channel {
				t.Errorf("channel %q, Node's emitter %q", got.Channel, want.Channel)
			}
			if !bytes.Equal([]byte(got.Payload), []byte(want.Payload)) {
				t.Errorf("payload\n% x\nNode's emitter\n% x", got.Payload, want.Payload)
			}
		})
	}

	// A Node server of the same prefix delivers what the Go emitter sends.
	srv := startNodeServer(t, r.URL(), prefix)
	ui := startUIAuth(t, srv.URL, "ui@node", map[string]any{"rooms": []string{"collaboration_1"}})
	ui.waitType("connect", wait)
	if err := em.Emit(ctx, "/tasks", []string{"collaboration_1"}, nil, "new_task", map[string]any{"id": 13}); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, ui.waitEvent("new_task", wait).Args[0], `{"id":13}`)
}
