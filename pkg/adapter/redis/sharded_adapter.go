package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// ShardedAdapter is the adapter of one namespace in a sharded mode: the
// in-memory adapter plus what Node's ShardedRedisAdapter
// (@socket.io/redis-adapter 8.3.0, on socket.io-adapter's ClusterAdapter)
// adds. See the package documentation for the wire format.
type ShardedAdapter struct {
	*socketio.MemoryAdapter

	b           *ShardedBroker
	nsp         *socketio.Namespace
	name        string
	uid         string
	channel     string // P#N#
	respChannel string // P#N#uid#
	log         *zap.Logger

	*inFlight // requests and broadcasts with acks; its mu guards them

	subMu    sync.Mutex
	subRooms map[string]bool // rooms whose channel is subscribed
}

var (
	_ socketio.Adapter        = (*ShardedAdapter)(nil)
	_ socketio.SocketObserver = (*ShardedAdapter)(nil)
)

func newShardedAdapter(b *ShardedBroker, nsp *socketio.Namespace) *ShardedAdapter {
	a := &ShardedAdapter{
		MemoryAdapter: socketio.NewMemory(nsp),
		b:             b,
		nsp:           nsp,
		name:          nsp.Name(),
		uid:           newHexID(),
		inFlight:      newInFlight(),
		subRooms:      map[string]bool{},
	}
	a.channel = b.cfg.Prefix + "#" + a.name + "#"
	a.respChannel = a.channel + a.uid + "#"
	a.log = b.log.With(zap.String("namespace", a.name))
	return a
}

// UID is the adapter's id on the wire.
func (a *ShardedAdapter) UID() string { return a.uid }

// dynamicChannel is the channel of one room.
func (a *ShardedAdapter) dynamicChannel(room string) string { return a.channel + room + "#" }

// Close fails the pending requests, releases the namespace's channels and
// closes the in-memory adapter.
func (a *ShardedAdapter) Close() {
	a.shutdown()
	a.subMu.Lock()
	channels := []string{a.channel, a.respChannel}
	for room := range a.subRooms {
		channels = append(channels, a.dynamicChannel(room))
	}
	n := len(a.subRooms)
	a.subRooms = map[string]bool{}
	a.subMu.Unlock()
	a.b.forget(a, channels)
	a.b.mu.Lock()
	a.b.rooms -= n
	a.b.roomChannels.Set(float64(a.b.rooms))
	a.b.mu.Unlock()
	a.MemoryAdapter.Close()
}

// ---- room channels (dynamic modes) ----

// AddAll adds s to rooms, subscribing the channels of rooms it creates.
func (a *ShardedAdapter) AddAll(s *socketio.Socket, rooms []string) {
	a.MemoryAdapter.AddAll(s, rooms)
	a.syncRooms(rooms, "")
}

// Del removes s from room, releasing its channel when it was the last.
func (a *ShardedAdapter) Del(s *socketio.Socket, room string) {
	a.MemoryAdapter.Del(s, room)
	a.syncRooms([]string{room}, "")
}

// DelAll removes s from every room (it is leaving the namespace).
func (a *ShardedAdapter) DelAll(s *socketio.Socket) {
	rooms := s.Rooms() // its own id first
	a.MemoryAdapter.DelAll(s)
	a.syncRooms(rooms, s.ID())
}

// SocketAdded subscribes the channel of a socket's own room in
// dynamic-private mode, as Node does when the socket joins it.
func (a *ShardedAdapter) SocketAdded(s *socketio.Socket) {
	a.syncRooms([]string{s.ID()}, "")
}

// wantRoom tells whether room's channel should be subscribed: in
// dynamic mode for a public room (not a local socket's id) with a local
// member, in dynamic-private mode for any room with a local member.
func (a *ShardedAdapter) wantRoom(room, leaving string) bool {
	mode := a.b.cfg.Mode
	if mode != ModeDynamic && mode != ModeDynamicPrivate {
		return false
	}
	if a.nsp.Socket(room) != nil { // a socket's own room: private
		return mode == ModeDynamicPrivate && room != leaving
	}
	return a.MemoryAdapter.HasRoom(room)
}

// syncRooms brings the subscriptions of rooms in line with wantRoom.
func (a *ShardedAdapter) syncRooms(rooms []string, leaving string) {
	mode := a.b.cfg.Mode
	if mode != ModeDynamic && mode != ModeDynamicPrivate {
		return
	}
	a.subMu.Lock()
	defer a.subMu.Unlock()
	if a.isClosed() {
		return
	}
	for _, room := range rooms {
		want := a.wantRoom(room, leaving)
		if want == a.subRooms[room] {
			continue
		}
		if want {
			a.subRooms[room] = true
		} else {
			delete(a.subRooms, room)
		}
		a.b.setRoom(a, a.dynamicChannel(room), want)
	}
}

// SubscribedRooms lists the rooms whose channel the adapter subscribed,
// sorted.
func (a *ShardedAdapter) SubscribedRooms() []string {
	a.subMu.Lock()
	defer a.subMu.Unlock()
	out := make([]string, 0, len(a.subRooms))
	for r := range a.subRooms {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// ---- publishing ----

func (a *ShardedAdapter) publish(typ clusterType, data object, channel string) {
	if a.isClosed() {
		return
	}
	payload, err := encodeSharded(typ, shardedMessage(typ, data, a.uid, a.name))
	if err != nil {
		a.b.metrics.dropped.WithLabelValues(dropEncode).Inc()
		if a.b.limit.allow(dropEncode) {
			a.log.Warn("redis adapter: cannot encode a message; not published", zap.String("type", typ.String()), zap.Error(err))
		}
		return
	}
	a.b.publish(channel, payload, typ.String())
}

// publishResponse answers the server requesterUID on its response
// channel.
func (a *ShardedAdapter) publishResponse(requesterUID string, typ clusterType, data object) {
	a.publish(typ, data, a.channel+requesterUID+"#")
}

// computeChannel is the channel of a broadcast without acknowledgements
// (see shardedChannel).
func (a *ShardedAdapter) computeChannel(rooms []string) string {
	return shardedChannel(a.b.cfg.Mode, a.channel, rooms)
}

// ---- socketio.Adapter ----

// ServerCount is the number of subscribers of the namespace's channel
// (PUBSUB SHARDNUMSUB), waiting at most PublishTimeout; 1 with the error
// when Redis cannot tell.
func (a *ShardedAdapter) ServerCount(ctx context.Context) (int, error) {
	n, err := a.serverCount(ctx, a.b.cfg.PublishTimeout)
	if err != nil {
		if a.b.limit.allow(opNumSub) {
			a.log.Warn("redis adapter: server count unknown; counting this server only", zap.Error(err))
		}
		return 1, err
	}
	return int(max(n, 1)), nil
}

func (a *ShardedAdapter) serverCount(ctx context.Context, timeout time.Duration) (int64, error) {
	n, err := a.b.serverCount(ctx, a.channel, timeout)
	if err == nil {
		a.b.metrics.serverCount.WithLabelValues(a.name).Set(float64(n))
	}
	return n, err
}

// Broadcast delivers a packet locally and, unless flagged local,
// publishes it (BROADCAST).
func (a *ShardedAdapter) Broadcast(packet *socketio.Packet, opts socketio.BroadcastOptions) {
	packet.Nsp = a.name
	if !isLocal(opts) {
		rooms := setRooms(opts.Rooms)
		a.publish(ctBroadcast, broadcastData(packet, "", opts), a.computeChannel(rooms))
	}
	a.MemoryAdapter.Broadcast(packet, opts)
}

// BroadcastWithAck publishes a BROADCAST with a request id on the
// namespace's channel; the other servers' client counts and acks come
// back until the broadcast's timeout (else RequestTimeout).
func (a *ShardedAdapter) BroadcastWithAck(packet *socketio.Packet, opts socketio.BroadcastOptions, clientCount func(int), ack func(any)) {
	packet.Nsp = a.name
	if !isLocal(opts) {
		id := newHexID()
		timeout := opts.Flags.Timeout
		if timeout <= 0 {
			timeout = a.b.cfg.RequestTimeout
		}
		if a.addAck(id, clientCount, ack, timeout) {
			p := *packet
			p.ID = nil
			a.publish(ctBroadcast, broadcastData(&p, id, opts), a.channel)
		}
	}
	local := *packet
	local.ID = nil
	a.MemoryAdapter.BroadcastWithAck(&local, opts, clientCount, ack)
}

// FetchSockets returns the matching sockets of every server (FETCH_SOCKETS
// to servers - 1 others, counted with PUBSUB SHARDNUMSUB), waiting the
// flags' timeout, else RequestTimeout; on a timeout it returns what
// arrived and a *TimeoutError.
func (a *ShardedAdapter) FetchSockets(ctx context.Context, opts socketio.BroadcastOptions) ([]socketio.SocketInfo, error) {
	local, _ := a.MemoryAdapter.FetchSockets(ctx, opts)
	if isLocal(opts) {
		return local, nil
	}
	timeout := opts.Flags.Timeout
	if timeout <= 0 {
		timeout = a.b.cfg.RequestTimeout
	}
	id := newHexID()
	p, err := a.ask(ctx, "fetchSockets", ctFetchSockets, id, fetchSocketsData(opts, id), timeout)
	if p != nil {
		local = append(local, p.sockets...)
	}
	return local, err
}

// AddSockets makes the matching sockets of every server join rooms.
func (a *ShardedAdapter) AddSockets(opts socketio.BroadcastOptions, rooms []string) {
	if !isLocal(opts) {
		a.publish(ctSocketsJoin, roomsData(opts, rooms), a.channel)
	}
	a.MemoryAdapter.AddSockets(opts, rooms)
}

// DelSockets makes the matching sockets of every server leave rooms.
func (a *ShardedAdapter) DelSockets(opts socketio.BroadcastOptions, rooms []string) {
	if !isLocal(opts) {
		a.publish(ctSocketsLeave, roomsData(opts, rooms), a.channel)
	}
	a.MemoryAdapter.DelSockets(opts, rooms)
}

// DisconnectSockets disconnects the matching sockets of every server.
func (a *ShardedAdapter) DisconnectSockets(opts socketio.BroadcastOptions, close bool) {
	if !isLocal(opts) {
		a.publish(ctDisconnectSockets, object{{"opts", optsObject(opts)}, {"close", close}}, a.channel)
	}
	a.MemoryAdapter.DisconnectSockets(opts, close)
}

// ServerSideEmit sends data ([event, args...]) to the other servers
// (SERVER_SIDE_EMIT). With ack, ack gets one answer per other server, or
// what arrived and a *TimeoutError after RequestTimeout; it runs in a
// goroutine of the Broker.
func (a *ShardedAdapter) ServerSideEmit(data []any, ack func(answers []any, err error)) error {
	if _, err := json.Marshal(data); err != nil && !objectHasBinary(data) {
		return fmt.Errorf("redis adapter: serverSideEmit: %w", err)
	}
	if ack == nil {
		a.publish(ctServerSideEmit, serverSideEmitData("", data), a.channel)
		return nil
	}
	id := newHexID()
	if a.isClosed() || !a.b.spawn(func() {
		responses := []any{}
		p, err := a.ask(context.Background(), "serverSideEmit", ctServerSideEmit, id, serverSideEmitData(id, data), a.b.cfg.RequestTimeout)
		if p != nil && p.responses != nil {
			responses = p.responses
		}
		ack(responses, err)
	}) {
		return ErrClosed
	}
	return nil
}

// AllRooms returns the rooms of every server's sockets (socket ids
// included), sorted. Node's sharded adapter has no ALL_ROOMS request: this
// is the rooms of a cluster-wide FETCH_SOCKETS, which Node servers answer.
func (a *ShardedAdapter) AllRooms(ctx context.Context) ([]string, error) {
	sockets, err := a.FetchSockets(ctx, socketio.BroadcastOptions{})
	rooms := a.Rooms()
	for _, s := range sockets {
		rooms = append(rooms, s.ID)
		rooms = append(rooms, s.Rooms...)
	}
	return sortedRooms(rooms), err
}

// ask publishes a request to the servers - 1 others and waits for their
// answers, timeout at most in all.
func (a *ShardedAdapter) ask(ctx context.Context, op string, typ clusterType, id string, data object, timeout time.Duration) (*pending, error) {
	start := time.Now()
	defer func() {
		a.b.metrics.requestSeconds.WithLabelValues(typ.String()).Observe(time.Since(start).Seconds())
	}()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n, err := a.serverCount(ctx, timeout)
	if err != nil {
		return nil, fmt.Errorf("redis adapter: %s: %w", op, err)
	}
	expected := int(n) - 1
	if expected <= 0 {
		return &pending{}, nil
	}
	p := &pending{expected: expected, done: make(chan struct{})}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	a.requests[id] = p
	a.mu.Unlock()
	a.publish(typ, data, a.channel)

	select {
	case <-p.done:
		return p, p.err
	case <-ctx.Done():
	case <-a.b.ctx.Done():
	}
	a.mu.Lock()
	if _, waiting := a.requests[id]; !waiting {
		a.mu.Unlock()
		<-p.done
		return p, p.err
	}
	delete(a.requests, id)
	got := p.got
	a.mu.Unlock()
	if a.b.ctx.Err() != nil {
		return p, ErrClosed
	}
	return p, &TimeoutError{Op: op, Answered: got, Expected: expected, Timeout: time.Since(start).Round(time.Millisecond)}
}

// ---- inbound ----

// handle takes one message: a response on the adapter's response channel,
// anything else on the namespace's and rooms' channels (where response
// types are taken as responses too, as Node does).
func (a *ShardedAdapter) handle(in inbound) {
	if a.isClosed() {
		return
	}
	m, err := decodeObject(in.payload)
	if err != nil {
		a.b.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		if a.b.limit.allow(dropMalformed) {
			a.log.Warn("redis adapter: malformed message ignored", zap.String("channel", in.channel), zap.Error(err))
		}
		return
	}
	if in.channel == a.respChannel {
		a.onResponse(m)
		return
	}
	a.onMessage(m)
}

func (a *ShardedAdapter) onMessage(m map[string]any) {
	if uid, _ := m["uid"].(string); uid == a.uid {
		return
	}
	if nsp, _ := m["nsp"].(string); nsp != a.name {
		return
	}
	t, _ := toInt(m["type"])
	typ := clusterType(t)
	from, _ := m["uid"].(string)
	data, _ := m["data"].(map[string]any)
	switch typ {
	case ctBroadcast:
		a.b.metrics.received.WithLabelValues(typ.String()).Inc()
		a.onBroadcast(from, data)
	case ctSocketsJoin, ctSocketsLeave:
		a.b.metrics.received.WithLabelValues(typ.String()).Inc()
		opts := optsFrom(mapOf(data["opts"]))
		rooms := toStrings(data["rooms"])
		if typ == ctSocketsJoin {
			a.MemoryAdapter.AddSockets(opts, rooms)
		} else {
			a.MemoryAdapter.DelSockets(opts, rooms)
		}
	case ctDisconnectSockets:
		a.b.metrics.received.WithLabelValues(typ.String()).Inc()
		closeConn, _ := data["close"].(bool)
		a.MemoryAdapter.DisconnectSockets(optsFrom(mapOf(data["opts"])), closeConn)
	case ctFetchSockets:
		a.b.metrics.received.WithLabelValues(typ.String()).Inc()
		id, _ := toStr(data["requestId"])
		local, _ := a.MemoryAdapter.FetchSockets(context.Background(), optsFrom(mapOf(data["opts"])))
		for i, s := range local {
			if _, err := json.Marshal(s.Data); err != nil && !objectHasBinary(s.Data) {
				a.b.metrics.dropped.WithLabelValues(dropEncode).Inc()
				local[i].Data = nil
			}
		}
		a.publishResponse(from, ctFetchSocketsResponse, fetchSocketsResponseData(id, local))
	case ctServerSideEmit:
		a.b.metrics.received.WithLabelValues(typ.String()).Inc()
		a.onServerSideEmit(from, data)
	case ctFetchSocketsResponse, ctServerSideEmitResponse, ctBroadcastClientCount, ctBroadcastAck:
		a.onResponse(m)
	}
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func (a *ShardedAdapter) onBroadcast(from string, data map[string]any) {
	pm, ok := data["packet"].(map[string]any)
	if !ok {
		a.b.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return
	}
	packet, err := packetFrom(pm)
	if err != nil {
		a.b.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return
	}
	opts := optsFrom(mapOf(data["opts"]))
	id, withAck := toStr(data["requestId"])
	if !withAck {
		a.MemoryAdapter.Broadcast(packet, opts)
		return
	}
	packet.ID = nil
	a.MemoryAdapter.BroadcastWithAck(packet, opts, func(n int) {
		a.publishResponse(from, ctBroadcastClientCount, clientCountData(id, n))
	}, func(arg any) {
		a.publishResponse(from, ctBroadcastAck, broadcastAckData(id, arg))
	})
}

func (a *ShardedAdapter) onServerSideEmit(from string, data map[string]any) {
	packet, ok := data["packet"].([]any)
	if !ok {
		a.b.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return
	}
	id, withAck := toStr(data["requestId"])
	if !withAck {
		a.nsp.HandleServerSideEmit(packet, nil)
		return
	}
	var once sync.Once
	a.nsp.HandleServerSideEmit(packet, func(args ...any) {
		once.Do(func() {
			if len(args) > 0 {
				if _, err := json.Marshal(args[0]); err != nil && !objectHasBinary(args[0]) {
					args = []any{nil}
				}
			}
			a.publishResponse(from, ctServerSideEmitResponse, serverSideEmitResponseData(id, args))
		})
	})
}

// onResponse takes another server's answer to one of our requests.
func (a *ShardedAdapter) onResponse(m map[string]any) {
	t, _ := toInt(m["type"])
	typ := clusterType(t)
	data, _ := m["data"].(map[string]any)
	id, _ := toStr(data["requestId"])
	switch typ {
	case ctBroadcastClientCount, ctBroadcastAck:
		ar := a.ackOf(id)
		if ar == nil {
			return
		}
		a.b.metrics.received.WithLabelValues(typ.String()).Inc()
		if typ == ctBroadcastClientCount {
			n, _ := toInt(data["clientCount"])
			a.b.spawn(func() { ar.clientCount(int(max(n, 0))) })
		} else {
			packet := data["packet"]
			a.b.spawn(func() { ar.ack(packet) })
		}
	case ctFetchSocketsResponse, ctServerSideEmitResponse:
		a.mu.Lock()
		defer a.mu.Unlock()
		p := a.requests[id]
		if id == "" || p == nil {
			return
		}
		a.b.metrics.received.WithLabelValues(typ.String()).Inc()
		p.got++
		if typ == ctFetchSocketsResponse {
			arr, _ := data["sockets"].([]any)
			for _, e := range arr {
				if rs, ok := remoteSocketFrom(e); ok {
					p.sockets = append(p.sockets, rs)
				}
			}
		} else {
			p.responses = append(p.responses, data["packet"])
		}
		if p.got >= p.expected {
			delete(a.requests, id)
			close(p.done)
		}
	}
}
