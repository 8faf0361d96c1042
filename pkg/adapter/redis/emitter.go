package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// emitterUID is the uid of messages from an emitter, as Node's
// @socket.io/redis-emitter sends it: no server has it, so every server
// delivers them.
const emitterUID = "emitter"

// Emitter publishes broadcasts into a cluster from outside it, in the wire
// format of Node's @socket.io/redis-emitter (byte for byte, checked by
// integration/emitter_test.go): a process with no Socket.IO
// server (a backend, a load generator) reaches the clients of every server
// that shares the Redis and the prefix, Go or Node.
type Emitter struct {
	client goredis.UniversalClient
	prefix string
}

// NewEmitter returns an emitter that publishes with client under prefix
// (the servers' EVENTSERVER_REDIS_PREFIX; "socket.io" when empty).
func NewEmitter(client goredis.UniversalClient, prefix string) *Emitter {
	if prefix == "" {
		prefix = "socket.io"
	}
	return &Emitter{client: client, prefix: prefix}
}

// Emit sends event with args to the sockets of namespace nsp in rooms (all
// of the namespace's sockets when rooms is empty) that are in none of the
// except rooms, on every server. It returns once Redis has accepted the
// message; it does not know how many clients got it.
func (e *Emitter) Emit(ctx context.Context, nsp string, rooms, except []string, event string, args ...any) error {
	if nsp == "" || nsp[0] != '/' {
		return fmt.Errorf("redis emitter: namespace %q must start with /", nsp)
	}
	if event == "" {
		return errors.New("redis emitter: empty event name")
	}
	p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: nsp, Data: append([]any{event}, args...)}
	// [uid, packet, {rooms, flags, except}]: the emitter's order of the
	// options (a server's broadcasts say {rooms, except, flags}).
	b := appendString(appendArrayHeader(make([]byte, 0, 256), 3), emitterUID)
	b, err := appendPacket(b, p)
	if err != nil {
		return fmt.Errorf("redis emitter: %w", err)
	}
	b = appendStrings(appendString(appendMapHeader(b, 3), "rooms"), rooms)
	b = appendFlags(appendString(b, "flags"), nil)
	payload := appendStrings(appendString(b, "except"), except)
	ch := newChannels(e.prefix, nsp, emitterUID).roomChannel(rooms)
	return e.client.Publish(ctx, ch, payload).Err()
}
