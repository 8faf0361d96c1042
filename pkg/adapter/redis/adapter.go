package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// Adapter is the Redis adapter of one namespace. It is the in-memory
// adapter (embedded) plus what @socket.io/redis-adapter 8.3.0 adds:
// broadcasts are published for the other servers, and fetchSockets,
// socketsJoin, socketsLeave, disconnectSockets, serverSideEmit, allRooms
// and broadcasts with acknowledgements reach every server of the cluster.
//
// Beyond socketio.Adapter it offers ClusterSockets, RemoteJoin,
// RemoteLeave and RemoteDisconnect (reach it with
// nsp.Adapter().(*redis.Adapter)).
type Adapter struct {
	*socketio.MemoryAdapter

	b    *Broker
	nsp  *socketio.Namespace
	name string
	uid  string
	ch   channels
	log  *zap.Logger

	*inFlight // requests and broadcasts with acks; its mu guards them
}

var _ socketio.Adapter = (*Adapter)(nil)

// pending is a request waiting for the other servers' answers. Its fields
// are written under Adapter.mu while it is in Adapter.requests, and read by
// the waiter once done is closed.
type pending struct {
	typ       requestType
	expected  int // answers that complete it
	got       int
	sids      []string
	rooms     []string
	sockets   []socketio.SocketInfo
	responses []any
	err       error
	done      chan struct{}
}

// ackRequest is a broadcast with acknowledgements this server published:
// the other servers' client counts and client acks go to its callbacks
// until its timer removes it.
type ackRequest struct {
	clientCount func(int)
	ack         func(any)
	timer       *time.Timer
}

// TimeoutError is the error of a request that did not get every answer
// in time (a server died, or is too slow).
type TimeoutError struct {
	Op       string        // the request: fetchSockets, allRooms, serverSideEmit...
	Answered int           // servers that answered, this one excluded
	Expected int           // servers that were expected to, this one excluded
	Timeout  time.Duration // how long the request waited
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("redis adapter: %s: timeout reached after %s: %d of %d servers answered",
		e.Op, e.Timeout, e.Answered, e.Expected)
}

func newAdapter(b *Broker, nsp *socketio.Namespace) *Adapter {
	a := &Adapter{
		MemoryAdapter: socketio.NewMemory(nsp),
		b:             b,
		nsp:           nsp,
		name:          nsp.Name(),
		uid:           newID(),
		inFlight:      newInFlight(),
	}
	a.ch = newChannels(b.cfg.Prefix, a.name, a.uid)
	a.log = b.log.With(zap.String("namespace", a.name))
	return a
}

// keys are the subscriptions the adapter needs.
func (a *Adapter) keys() []string {
	return []string{
		patternKey(a.ch.pattern),
		channelKey(a.ch.request),
		channelKey(a.ch.response),
		channelKey(a.ch.specific),
	}
}

// UID is the adapter's id on the wire: messages carrying it are its own.
func (a *Adapter) UID() string { return a.uid }

// Close cancels the pending requests (they fail with ErrClosed), stops
// the subscriptions of the namespace and closes the in-memory adapter. The
// server calls it when it shuts down.
func (a *Adapter) Close() {
	a.shutdown()
	a.b.unregister(a)
	a.MemoryAdapter.Close()
}

// publish sends a message unless the adapter is closed.
func (a *Adapter) publish(channel string, payload []byte, kind string) {
	if !a.isClosed() {
		a.b.publish(channel, payload, kind)
	}
}

func (a *Adapter) publishJSON(channel string, v any, kind string) {
	payload, err := json.Marshal(v)
	if err != nil {
		a.dropUnencodable(kind, err)
		return
	}
	a.publish(channel, payload, kind)
}

func (a *Adapter) dropUnencodable(kind string, err error) {
	a.b.metrics.dropped.WithLabelValues(dropEncode).Inc()
	if a.b.limit.allow(dropEncode) {
		a.log.Warn("redis adapter: cannot encode a message; not published", zap.String("type", kind), zap.Error(err))
	}
}

func (a *Adapter) dropMalformed(what string, err error) {
	a.b.metrics.dropped.WithLabelValues(dropMalformed).Inc()
	if a.b.limit.allow(dropMalformed) {
		a.log.Warn("redis adapter: malformed message ignored", zap.String("channel", what), zap.Error(err))
	}
}

// ---- socketio.Adapter ----

// ServerCount is the number of servers with this namespace (PUBSUB
// NUMSUB of its request channel). It is on the path of an emit with
// acknowledgements, so it waits at most PublishTimeout; when Redis cannot
// tell, it is 1 (no other server can be reached anyway), with the error.
func (a *Adapter) ServerCount(ctx context.Context) (int, error) {
	n, err := a.serverCount(ctx, a.b.cfg.PublishTimeout)
	if err != nil {
		if a.b.limit.allow(opNumSub) {
			a.log.Warn("redis adapter: server count unknown; counting this server only", zap.Error(err))
		}
		return 1, err
	}
	return int(max(n, 1)), nil
}

func (a *Adapter) serverCount(ctx context.Context, timeout time.Duration) (int64, error) {
	n, err := a.b.serverCount(ctx, a.ch.request, timeout)
	if err == nil {
		a.b.metrics.serverCount.WithLabelValues(a.name).Set(float64(n))
	}
	return n, err
}

// Broadcast delivers a packet locally and, unless flagged local, publishes
// it for the other servers: on the room's channel for exactly one room,
// on the namespace's channel otherwise.
func (a *Adapter) Broadcast(packet *socketio.Packet, opts socketio.BroadcastOptions) {
	packet.Nsp = a.name
	if !isLocal(opts) {
		rooms, except := optsRooms(opts)
		payload, err := encodeBroadcast(make([]byte, 0, 256), a.uid, packet, rooms, except, &opts.Flags)
		if err != nil {
			a.dropUnencodable(kindBroadcast, err)
		} else {
			a.publish(a.ch.roomChannel(rooms), payload, kindBroadcast)
		}
	}
	a.MemoryAdapter.Broadcast(packet, opts)
}

// BroadcastWithAck delivers a packet locally and, unless flagged local,
// sends a BROADCAST request to the other servers; their client counts and
// their clients' acknowledgements come back to clientCount and ack until
// the broadcast's timeout. The request is encoded, and registered, before
// the local delivery gives the packet its id and before Redis can echo
// it, so this server never delivers it twice.
func (a *Adapter) BroadcastWithAck(packet *socketio.Packet, opts socketio.BroadcastOptions, clientCount func(int), ack func(any)) {
	packet.Nsp = a.name
	if !isLocal(opts) {
		rooms, except := optsRooms(opts)
		id := newID()
		payload, err := encodeBroadcastRequest(a.uid, id, packet, rooms, except, &opts.Flags)
		if err != nil {
			a.dropUnencodable(typeBroadcast.String(), err)
		} else if a.addAck(id, clientCount, ack, a.ackTimeout(opts)) {
			a.publish(a.ch.request, payload, typeBroadcast.String())
		}
	}
	// The in-memory adapter sets the packet's ack id: on a copy, so that
	// the caller's packet stays as it was.
	local := *packet
	local.ID = nil
	a.MemoryAdapter.BroadcastWithAck(&local, opts, clientCount, ack)
}

// ackTimeout is the timeout of a broadcast with acknowledgements: its
// flag, else RequestTimeout.
func (a *Adapter) ackTimeout(opts socketio.BroadcastOptions) time.Duration {
	if opts.Flags.Timeout > 0 {
		return opts.Flags.Timeout
	}
	return a.b.cfg.RequestTimeout
}

// FetchSockets returns the matching sockets of every server, once every
// server answered or after RequestTimeout (or when ctx is done); on a
// timeout it returns the sockets that did arrive and a *TimeoutError.
// When the servers cannot be counted (Redis down), it returns the local
// sockets and the error.
func (a *Adapter) FetchSockets(ctx context.Context, opts socketio.BroadcastOptions) ([]socketio.SocketInfo, error) {
	local, _ := a.MemoryAdapter.FetchSockets(ctx, opts)
	if isLocal(opts) {
		return local, nil
	}
	id := newID()
	payload, err := json.Marshal(fetchRequest{UID: a.uid, RequestID: id, Type: typeRemoteFetch, Opts: newWireOpts(opts)})
	if err != nil {
		return local, err
	}
	p, err := a.ask(ctx, "fetchSockets", typeRemoteFetch, id, payload)
	if p != nil {
		local = append(local, p.sockets...)
	}
	return local, err
}

// AddSockets makes the matching sockets of every server join rooms.
func (a *Adapter) AddSockets(opts socketio.BroadcastOptions, rooms []string) {
	a.MemoryAdapter.AddSockets(opts, rooms)
	if !isLocal(opts) {
		a.publishJSON(a.ch.request, roomsRequest{UID: a.uid, Type: typeRemoteJoin, Opts: newWireOpts(opts), Rooms: nonNil(rooms)}, typeRemoteJoin.String())
	}
}

// DelSockets makes the matching sockets of every server leave rooms.
func (a *Adapter) DelSockets(opts socketio.BroadcastOptions, rooms []string) {
	a.MemoryAdapter.DelSockets(opts, rooms)
	if !isLocal(opts) {
		a.publishJSON(a.ch.request, roomsRequest{UID: a.uid, Type: typeRemoteLeave, Opts: newWireOpts(opts), Rooms: nonNil(rooms)}, typeRemoteLeave.String())
	}
}

// DisconnectSockets disconnects the matching sockets of every server.
func (a *Adapter) DisconnectSockets(opts socketio.BroadcastOptions, close bool) {
	a.MemoryAdapter.DisconnectSockets(opts, close)
	if !isLocal(opts) {
		a.publishJSON(a.ch.request, disconnectRequest{UID: a.uid, Type: typeRemoteDisconnect, Opts: newWireOpts(opts), Close: close}, typeRemoteDisconnect.String())
	}
}

// ServerSideEmit sends data ([event, args...]) to the other servers. With
// ack not nil, each other server's listener gets an acknowledgement
// callback, and ack gets one response per server (the first argument of
// its callback, as in Node) once all answered, or what arrived with a
// *TimeoutError after RequestTimeout. ack runs in a goroutine of the
// Broker. The error is about the message itself (it cannot be encoded),
// or ErrClosed.
func (a *Adapter) ServerSideEmit(data []any, ack func(answers []any, err error)) error {
	if ack != nil {
		return a.serverSideEmitWithAck(data, ack)
	}
	payload, err := json.Marshal(serverSideEmitRequest{UID: a.uid, Type: typeServerSideEmit, Data: nonNil(data)})
	if err != nil {
		return fmt.Errorf("redis adapter: serverSideEmit: %w", err)
	}
	a.publish(a.ch.request, payload, typeServerSideEmit.String())
	return nil
}

func (a *Adapter) serverSideEmitWithAck(data []any, ack func([]any, error)) error {
	id := newID()
	payload, err := json.Marshal(serverSideEmitRequest{UID: a.uid, RequestID: id, Type: typeServerSideEmit, Data: nonNil(data)})
	if err != nil {
		return fmt.Errorf("redis adapter: serverSideEmit: %w", err)
	}
	if a.isClosed() || !a.b.spawn(func() {
		responses := []any{}
		p, err := a.ask(context.Background(), "serverSideEmit", typeServerSideEmit, id, payload)
		if p != nil && p.responses != nil {
			responses = p.responses
		}
		ack(responses, err)
	}) {
		return ErrClosed
	}
	return nil
}

// AllRooms returns the rooms of every server (socket ids included),
// sorted.
func (a *Adapter) AllRooms(ctx context.Context) ([]string, error) {
	rooms := a.Rooms()
	id := newID()
	payload, err := json.Marshal(allRoomsRequest{UID: a.uid, RequestID: id, Type: typeAllRooms})
	if err != nil {
		return rooms, err
	}
	p, err := a.ask(ctx, "allRooms", typeAllRooms, id, payload)
	if p != nil && len(p.rooms) > 0 {
		rooms = sortedRooms(append(rooms, p.rooms...))
	}
	return rooms, err
}

// ---- requests beyond socketio.Adapter ----

// localSids lists the ids of the local sockets in any of rooms (all
// sockets when rooms is empty), sorted.
func (a *Adapter) localSids(rooms []string) []string {
	local, _ := a.MemoryAdapter.FetchSockets(context.Background(), socketio.BroadcastOptions{Rooms: rooms})
	sids := make([]string, 0, len(local))
	for _, s := range local {
		sids = append(sids, s.ID)
	}
	slices.Sort(sids)
	return sids
}

// ClusterSockets returns the ids of the sockets in any of rooms (all
// sockets when rooms is empty) on every server, sorted: the SOCKETS
// request.
func (a *Adapter) ClusterSockets(ctx context.Context, rooms []string) ([]string, error) {
	sids := a.localSids(rooms)
	id := newID()
	payload, err := json.Marshal(socketsRequest{UID: a.uid, RequestID: id, Type: typeSockets, Rooms: sortedRooms(rooms)})
	if err != nil {
		return sids, err
	}
	p, err := a.ask(ctx, "sockets", typeSockets, id, payload)
	if p != nil && len(p.sids) > 0 {
		sids = sortedRooms(append(sids, p.sids...))
	}
	return sids, err
}

// RemoteJoin makes the socket sid, wherever it is, join room. It returns
// once the socket's server confirmed, or a *TimeoutError.
func (a *Adapter) RemoteJoin(ctx context.Context, sid, room string) error {
	if s := a.nsp.Socket(sid); s != nil {
		s.Join(room)
		return nil
	}
	id := newID()
	return a.askOne(ctx, "remoteJoin", typeRemoteJoin, id,
		sidRoomRequest{UID: a.uid, RequestID: id, Type: typeRemoteJoin, Sid: sid, Room: room})
}

// RemoteLeave makes the socket sid, wherever it is, leave room.
func (a *Adapter) RemoteLeave(ctx context.Context, sid, room string) error {
	if s := a.nsp.Socket(sid); s != nil {
		s.Leave(room)
		return nil
	}
	id := newID()
	return a.askOne(ctx, "remoteLeave", typeRemoteLeave, id,
		sidRoomRequest{UID: a.uid, RequestID: id, Type: typeRemoteLeave, Sid: sid, Room: room})
}

// RemoteDisconnect disconnects the socket sid, wherever it is; close also
// closes its connection.
func (a *Adapter) RemoteDisconnect(ctx context.Context, sid string, close bool) error {
	if s := a.nsp.Socket(sid); s != nil {
		s.Disconnect(close)
		return nil
	}
	id := newID()
	return a.askOne(ctx, "remoteDisconnect", typeRemoteDisconnect, id,
		sidDisconnectRequest{UID: a.uid, RequestID: id, Type: typeRemoteDisconnect, Sid: sid, Close: close})
}

func (a *Adapter) askOne(ctx context.Context, op string, typ requestType, id string, request any) error {
	payload, err := json.Marshal(request)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.b.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	_, err = a.await(ctx, op, typ, id, payload, 1, start)
	return err
}

// ask sends a request to every other server and waits for their answers,
// RequestTimeout at most in all.
func (a *Adapter) ask(ctx context.Context, op string, typ requestType, id string, payload []byte) (*pending, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.b.cfg.RequestTimeout)
	defer cancel()
	n, err := a.serverCount(ctx, a.b.cfg.RequestTimeout)
	if err != nil {
		a.b.metrics.requestSeconds.WithLabelValues(typ.String()).Observe(time.Since(start).Seconds())
		return nil, fmt.Errorf("redis adapter: %s: %w", op, err)
	}
	if n <= 1 {
		// Node's rule: nobody else to ask.
		a.b.metrics.requestSeconds.WithLabelValues(typ.String()).Observe(time.Since(start).Seconds())
		return &pending{}, nil
	}
	return a.await(ctx, op, typ, id, payload, int(n)-1, start)
}

// await registers a request, publishes it and waits for expected answers
// until ctx is done.
func (a *Adapter) await(ctx context.Context, op string, typ requestType, id string, payload []byte, expected int, start time.Time) (*pending, error) {
	defer func() {
		a.b.metrics.requestSeconds.WithLabelValues(typ.String()).Observe(time.Since(start).Seconds())
	}()
	p := &pending{typ: typ, expected: expected, done: make(chan struct{})}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	a.requests[id] = p
	a.mu.Unlock()
	a.publish(a.ch.request, payload, typ.String())

	var stop <-chan struct{} = a.b.ctx.Done()
	select {
	case <-p.done:
		return p, p.err
	case <-ctx.Done():
	case <-stop:
	}
	a.mu.Lock()
	if _, waiting := a.requests[id]; !waiting {
		// Completed (or closed) meanwhile.
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

// ---- inbound messages ----

// handle takes one message from the dispatcher.
func (a *Adapter) handle(in inbound) {
	if a.isClosed() {
		return
	}
	switch {
	case in.pattern != "":
		a.onBroadcast(in.channel, in.payload)
	case in.channel == a.ch.request:
		a.onRequest(in.payload)
	case in.channel == a.ch.response || in.channel == a.ch.specific:
		a.onResponse(in.payload)
	}
}

// onBroadcast delivers another server's broadcast locally. As Node, it
// skips without decoding a room channel of a room this server does not
// have, and skips its own messages and packets of another namespace.
func (a *Adapter) onBroadcast(channel, payload string) {
	if !strings.HasPrefix(channel, a.ch.broadcast) {
		return
	}
	if len(channel) > len(a.ch.broadcast) {
		room := channel[len(a.ch.broadcast) : len(channel)-1]
		if room != "" && !a.HasRoom(room) {
			return
		}
	}
	m, err := decodeBroadcast(payload)
	if err != nil {
		a.dropMalformed(channel, err)
		return
	}
	if m.uid == a.uid || m.packet == nil || m.packet.Nsp != a.name {
		return
	}
	a.b.metrics.received.WithLabelValues(kindBroadcast).Inc()
	a.MemoryAdapter.Broadcast(m.packet, m.opts)
}

func (a *Adapter) hasRequest(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.requests[id]
	return ok
}

// respond publishes a JSON response on the namespace's response
// channel, as Node does (publishOnSpecificResponseChannel is off by
// default).
func (a *Adapter) respond(typ requestType, v any) {
	a.publishJSON(a.ch.response, v, responseLabel(typ))
}

// responseLabel is the metric label of a response to a request of type
// typ; BROADCAST's responses have types of their own.
func responseLabel(typ requestType) string {
	if typ == typeBroadcastClientCount || typ == typeBroadcastAck {
		return typ.String()
	}
	return typ.String() + "_response"
}

// onRequest answers another server's request.
func (a *Adapter) onRequest(payload string) {
	req, err := decodeObject(payload)
	if err != nil {
		a.dropMalformed(a.ch.request, err)
		return
	}
	t, ok := toInt(req["type"])
	if !ok {
		a.dropMalformed(a.ch.request, fmt.Errorf("%w: request without a type", errMalformed))
		return
	}
	typ := requestType(t)
	uid, _ := req["uid"].(string)
	own := uid != "" && uid == a.uid
	id, _ := toStr(req["requestId"])
	if own {
		// Our own request, back from Redis: what it asks was done
		// locally already.
		return
	}
	a.b.metrics.received.WithLabelValues(typ.String()).Inc()

	switch typ {
	case typeSockets:
		a.onSocketsRequest(typ, id, req)
	case typeAllRooms:
		a.onAllRoomsRequest(typ, id)
	case typeRemoteJoin, typeRemoteLeave:
		a.onRemoteJoinLeave(typ, id, req)
	case typeRemoteDisconnect:
		a.onRemoteDisconnect(typ, id, req)
	case typeRemoteFetch:
		a.onRemoteFetch(typ, id, req)
	case typeServerSideEmit:
		a.onServerSideEmit(typ, id, req)
	case typeBroadcast:
		a.onBroadcastRequest(id, req)
	}
}

// onSocketsRequest answers SOCKETS with the local sockets in the rooms.
func (a *Adapter) onSocketsRequest(typ requestType, id string, req map[string]any) {
	if a.hasRequest(id) {
		return
	}
	a.respond(typ, socketsResponse{RequestID: id, Sockets: a.localSids(toStrings(req["rooms"]))})
}

// onAllRoomsRequest answers ALL_ROOMS with the local rooms.
func (a *Adapter) onAllRoomsRequest(typ requestType, id string) {
	if a.hasRequest(id) {
		return
	}
	a.respond(typ, roomsResponse{RequestID: id, Rooms: nonNil(a.Rooms())})
}

// onRemoteJoinLeave carries out REMOTE_JOIN or REMOTE_LEAVE: for the
// sockets the options select, or for one socket by id (answered).
func (a *Adapter) onRemoteJoinLeave(typ requestType, id string, req map[string]any) {
	if req["opts"] != nil {
		opts := wireOptsFrom(req["opts"])
		rooms := toStrings(req["rooms"])
		if typ == typeRemoteJoin {
			a.MemoryAdapter.AddSockets(opts, rooms)
		} else {
			a.MemoryAdapter.DelSockets(opts, rooms)
		}
		return
	}
	sid, _ := req["sid"].(string)
	s := a.nsp.Socket(sid)
	if s == nil {
		return
	}
	room, _ := toStr(req["room"])
	if typ == typeRemoteJoin {
		s.Join(room)
	} else {
		s.Leave(room)
	}
	a.respond(typ, doneResponse{RequestID: id})
}

// onRemoteDisconnect carries out REMOTE_DISCONNECT: for the sockets the
// options select, or for one socket by id (answered).
func (a *Adapter) onRemoteDisconnect(typ requestType, id string, req map[string]any) {
	closeConn, _ := req["close"].(bool)
	if req["opts"] != nil {
		a.MemoryAdapter.DisconnectSockets(wireOptsFrom(req["opts"]), closeConn)
		return
	}
	sid, _ := req["sid"].(string)
	s := a.nsp.Socket(sid)
	if s == nil {
		return
	}
	s.Disconnect(closeConn)
	a.respond(typ, doneResponse{RequestID: id})
}

// onRemoteFetch answers REMOTE_FETCH with the local sockets the options
// select.
func (a *Adapter) onRemoteFetch(typ requestType, id string, req map[string]any) {
	if a.hasRequest(id) {
		return
	}
	local, _ := a.MemoryAdapter.FetchSockets(context.Background(), wireOptsFrom(req["opts"]))
	a.respond(typ, fetchResponse{RequestID: id, Sockets: a.fetched(local)})
}

// onServerSideEmit hands SERVER_SIDE_EMIT to the namespace's listeners,
// and answers with the first argument of the first acknowledgement when
// the request has an id.
func (a *Adapter) onServerSideEmit(typ requestType, id string, req map[string]any) {
	data, ok := req["data"].([]any)
	if !ok {
		a.dropMalformed(a.ch.request, fmt.Errorf("%w: serverSideEmit without a data array", errMalformed))
		return
	}
	if req["requestId"] == nil {
		a.nsp.HandleServerSideEmit(data, nil)
		return
	}
	var once sync.Once
	a.nsp.HandleServerSideEmit(data, func(args ...any) {
		// Only one argument is sent back, as in Node.
		once.Do(func() { a.respond(typ, serverSideEmitResponse{Type: typ, RequestID: id, Data: a.firstArgJSON(args)}) })
	})
}

// onBroadcastRequest carries out BROADCAST (a broadcast with
// acknowledgements): the local client count, then each acknowledgement.
func (a *Adapter) onBroadcastRequest(id string, req map[string]any) {
	if a.ackOf(id) != nil {
		return
	}
	pm, ok := req["packet"].(map[string]any)
	if !ok {
		a.dropMalformed(a.ch.request, fmt.Errorf("%w: broadcast without a packet", errMalformed))
		return
	}
	packet, err := packetFrom(pm)
	if err != nil {
		a.dropMalformed(a.ch.request, err)
		return
	}
	om, _ := req["opts"].(map[string]any)
	opts := optsFrom(om)
	packet.ID = nil
	a.MemoryAdapter.BroadcastWithAck(packet, opts, func(n int) {
		a.respond(typeBroadcastClientCount, clientCountResponse{Type: typeBroadcastClientCount, RequestID: id, ClientCount: uint64(max(n, 0))})
	}, func(arg any) {
		payload, err := encodeBroadcastAck(id, []any{arg})
		if err != nil {
			a.dropUnencodable(typeBroadcastAck.String(), err)
			return
		}
		a.publish(a.ch.response, payload, typeBroadcastAck.String())
	})
}

// firstArgJSON is the JSON of args[0]; nil (the key is left out) without
// arguments, null when it cannot be encoded.
func (a *Adapter) firstArgJSON(args []any) json.RawMessage {
	if len(args) == 0 {
		return nil
	}
	raw, err := json.Marshal(args[0])
	if err != nil {
		a.dropUnencodable(responseLabel(typeServerSideEmit), err)
		return json.RawMessage("null")
	}
	return raw
}

// fetched describes local sockets for a REMOTE_FETCH response. A socket's
// data that JSON cannot encode is sent as null (and counted), so that the
// answer always goes out.
func (a *Adapter) fetched(local []socketio.SocketInfo) []fetchedSocket {
	out := make([]fetchedSocket, 0, len(local))
	for _, s := range local {
		data, err := json.Marshal(s.Data)
		if err != nil {
			a.dropUnencodable("socket_data", err)
			data = json.RawMessage("null")
		}
		out = append(out, fetchedSocket{
			ID:        s.ID,
			Handshake: wireHandshakeOf(s.Handshake),
			Rooms:     sortedRooms(s.Rooms),
			Data:      data,
		})
	}
	return out
}

// onResponse takes another server's answer to one of our requests.
func (a *Adapter) onResponse(payload string) {
	resp, err := decodeObject(payload)
	if err != nil {
		a.dropMalformed(a.ch.response, err)
		return
	}
	id, _ := toStr(resp["requestId"])
	t, _ := toInt(resp["type"])

	if ar := a.ackOf(id); ar != nil {
		// The callbacks end in the caller's acknowledgement callback,
		// which may wait for a request of its own: they run on a goroutine
		// of their own, not on the response dispatcher. The
		// BroadcastOperator takes them in any order.
		switch requestType(t) {
		case typeBroadcastClientCount:
			a.b.metrics.received.WithLabelValues(typeBroadcastClientCount.String()).Inc()
			n, _ := toInt(resp["clientCount"])
			a.b.spawn(func() { ar.clientCount(int(max(n, 0))) })
		case typeBroadcastAck:
			a.b.metrics.received.WithLabelValues(typeBroadcastAck.String()).Inc()
			// One response per client, as Node's ack(response.packet).
			packet := resp["packet"]
			a.b.spawn(func() { ar.ack(packet) })
		}
		return
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.requests[id]
	if id == "" || p == nil {
		return
	}
	a.b.metrics.received.WithLabelValues(responseLabel(p.typ)).Inc()
	switch p.typ {
	case typeSockets, typeRemoteFetch:
		p.got++
		arr, ok := resp["sockets"].([]any)
		if !ok {
			return // as Node: counted, but it cannot complete the request
		}
		for _, e := range arr {
			if p.typ == typeSockets {
				if sid, ok := toStr(e); ok {
					p.sids = append(p.sids, sid)
				}
			} else if rs, ok := remoteSocketFrom(e); ok {
				p.sockets = append(p.sockets, rs)
			}
		}
	case typeAllRooms:
		p.got++
		arr, ok := resp["rooms"].([]any)
		if !ok {
			return
		}
		p.rooms = append(p.rooms, toStrings(arr)...)
	case typeRemoteJoin, typeRemoteLeave, typeRemoteDisconnect:
		p.got++
	case typeServerSideEmit:
		p.got++
		p.responses = append(p.responses, resp["data"])
	}
	if p.got >= p.expected {
		delete(a.requests, id)
		close(p.done)
	}
}

// ---- helpers ----

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
