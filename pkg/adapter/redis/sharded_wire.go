package redis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// Mode is how the adapter uses Redis pub/sub: classic (PUBLISH and
// SUBSCRIBE, Node's createAdapter) or one of the three subscription modes
// of Node's createShardedAdapter (SPUBLISH and SSUBSCRIBE, Redis 7).
type Mode string

// Modes.
const (
	// ModeClassic is Node's createAdapter: NewBroker.
	ModeClassic Mode = "classic"
	// ModeStatic: one sharded channel per namespace, P#N#, for every
	// message (and P#N#uid# for the responses to one server).
	ModeStatic Mode = "static"
	// ModeDynamic: ModeStatic plus one channel per public room (not a
	// socket id), P#N#room#, subscribed while a local socket is in it;
	// a broadcast without acknowledgement to exactly one room goes there.
	ModeDynamic Mode = "dynamic"
	// ModeDynamicPrivate: as ModeDynamic, for every room, socket ids
	// included.
	ModeDynamicPrivate Mode = "dynamic-private"
)

// ParseMode reads a Mode; "" is ModeClassic.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeClassic, nil
	case ModeClassic, ModeStatic, ModeDynamic, ModeDynamicPrivate:
		return m, nil
	}
	return "", fmt.Errorf("redis adapter: subscription mode %q: want classic, static, dynamic or dynamic-private", s)
}

// Sharded reports whether m is one of the sharded modes.
func (m Mode) Sharded() bool { return m == ModeStatic || m == ModeDynamic || m == ModeDynamicPrivate }

// ClusterBroker is what a Broker and a ShardedBroker have in common: what a
// server needs of either.
type ClusterBroker interface {
	Start()
	New(nsp *socketio.Namespace) socketio.Adapter
	Ready() bool
	Shutdown(ctx context.Context) error
}

// NewClusterBroker returns the broker of cfg.Mode: a ShardedBroker for a
// sharded mode, else a (classic) Broker.
func NewClusterBroker(cfg Config) (ClusterBroker, error) {
	if cfg.Mode.Sharded() {
		b, err := NewShardedBroker(cfg)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := NewBroker(cfg)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// clusterType is the `type` of a message of Node's ClusterAdapter
// (socket.io-adapter 2.5), on which the sharded adapter is built.
type clusterType int

const (
	ctInitialHeartbeat       clusterType = 1
	ctHeartbeat              clusterType = 2
	ctBroadcast              clusterType = 3
	ctSocketsJoin            clusterType = 4
	ctSocketsLeave           clusterType = 5
	ctDisconnectSockets      clusterType = 6
	ctFetchSockets           clusterType = 7
	ctFetchSocketsResponse   clusterType = 8
	ctServerSideEmit         clusterType = 9
	ctServerSideEmitResponse clusterType = 10
	ctBroadcastClientCount   clusterType = 11
	ctBroadcastAck           clusterType = 12
	ctAdapterClose           clusterType = 13
)

var clusterTypeNames = [...]string{
	"unknown", "initial_heartbeat", "heartbeat", "broadcast", "sockets_join", "sockets_leave",
	"disconnect_sockets", "fetch_sockets", "fetch_sockets_response", "server_side_emit",
	"server_side_emit_response", "broadcast_client_count", "broadcast_ack", "adapter_close",
}

// String is the metric label of t.
func (t clusterType) String() string {
	if t > 0 && int(t) < len(clusterTypeNames) {
		return clusterTypeNames[t]
	}
	return "unknown"
}

// mayContainBinary lists the types Node encodes with msgpack when their
// data holds binary.
func (t clusterType) mayContainBinary() bool {
	switch t {
	case ctBroadcast, ctBroadcastAck, ctFetchSocketsResponse, ctServerSideEmit, ctServerSideEmitResponse:
		return true
	}
	return false
}

// newHexID returns 16 hex characters, as the ClusterAdapter's randomId()
// (its uid and request ids).
func newHexID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// field and object are a JSON object with its keys in order: the order
// in which Node builds the message, which JSON.stringify and notepack
// keep. A key left out is JS undefined.
type field struct {
	k string
	v any
}

type object []field

// shardedMessage is a ClusterMessage or ClusterResponse: {type, data,
// uid, nsp}, uid and nsp added last as publishAndReturnOffset and
// publishResponse do.
func shardedMessage(typ clusterType, data object, uid, nsp string) object {
	m := object{{"type", int(typ)}}
	if data != nil {
		m = append(m, field{"data", data})
	}
	return append(m, field{"uid", uid}, field{"nsp", nsp})
}

// encodeSharded encodes a message as Node's sharded adapter does:
// msgpack when its type may carry binary and its data does, JSON
// otherwise.
func encodeSharded(typ clusterType, m object) ([]byte, error) {
	if typ.mayContainBinary() && objectHasBinary(m) {
		return appendObject(make([]byte, 0, 256), m, 0)
	}
	var buf bytes.Buffer
	buf.Grow(256)
	if err := writeObjectJSON(&buf, m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func objectHasBinary(v any) bool {
	switch x := v.(type) {
	case object:
		for _, f := range x {
			if objectHasBinary(f.v) {
				return true
			}
		}
	case []object:
		for _, o := range x {
			if objectHasBinary(o) {
				return true
			}
		}
	case []byte:
		return true
	case []any:
		for _, e := range x {
			if objectHasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if objectHasBinary(e) {
				return true
			}
		}
	}
	return false
}

// writeObjectJSON writes v as JSON.stringify would: no spaces, and <, >
// and & as themselves.
func writeObjectJSON(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case object:
		buf.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeObjectJSON(buf, f.k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeObjectJSON(buf, f.v); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case []object:
		buf.WriteByte('[')
		for i, o := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeObjectJSON(buf, o); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
	return nil
}

// appendObject appends v as notepack would.
func appendObject(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, errDepth
	}
	switch x := v.(type) {
	case object:
		b = appendMapHeader(b, len(x))
		for _, f := range x {
			b = appendString(b, f.k)
			var err error
			if b, err = appendObject(b, f.v, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []object:
		b = appendArrayHeader(b, len(x))
		for _, o := range x {
			var err error
			if b, err = appendObject(b, o, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return appendAny(b, v, depth)
}

// setRooms returns rooms in order without repeats, never nil: a JS Set
// spread into an array.
func setRooms(rooms []string) []string {
	out := make([]string, 0, len(rooms))
	seen := make(map[string]struct{}, len(rooms))
	for _, r := range rooms {
		if _, dup := seen[r]; !dup {
			seen[r] = struct{}{}
			out = append(out, r)
		}
	}
	return out
}

// packetObject is a Socket.IO packet as socket.io's BroadcastOperator
// builds it and the ClusterAdapter publishes it: {type, data}; nsp and id
// are set later, by the in-memory adapter.
func packetObject(p *socketio.Packet) object {
	return object{{"type", int(p.Type)}, {"data", nonNil(p.Data)}}
}

// flagsObject is the BroadcastOperator's flags, each only when set;
// timeout in milliseconds.
func flagsObject(f socketio.BroadcastFlags) object {
	o := object{}
	if f.Volatile {
		o = append(o, field{"volatile", true})
	}
	if f.Compress != nil {
		o = append(o, field{"compress", *f.Compress})
	}
	if f.Timeout > 0 {
		o = append(o, field{"timeout", f.Timeout.Milliseconds()})
	}
	if f.ExpectSingleResponse {
		o = append(o, field{"expectSingleResponse", true})
	}
	return o
}

// optsObject is encodeOptions(opts): {rooms, except, flags}.
func optsObject(opts socketio.BroadcastOptions) object {
	return object{
		{"rooms", setRooms(opts.Rooms)},
		{"except", setRooms(opts.Except)},
		{"flags", flagsObject(opts.Flags)},
	}
}

// broadcastData is BROADCAST's data: {packet, requestId, opts}, requestId
// only with acknowledgements.
func broadcastData(p *socketio.Packet, requestID string, opts socketio.BroadcastOptions) object {
	d := object{{"packet", packetObject(p)}}
	if requestID != "" {
		d = append(d, field{"requestId", requestID})
	}
	return append(d, field{"opts", optsObject(opts)})
}

// socketObject describes a local socket in FETCH_SOCKETS_RESPONSE: {id,
// handshake, rooms, data}.
func socketObject(s socketio.SocketInfo) object {
	return object{
		{"id", s.ID},
		{"handshake", wireHandshakeOf(s.Handshake)},
		{"rooms", setRooms(s.Rooms)},
		{"data", s.Data},
	}
}

// shardedChannel is Node's computeChannel for a BROADCAST without
// acknowledgements: the room's channel, P#N#room#, for exactly one room
// in dynamic mode (unless the room looks like a socket id: 20
// characters) and in dynamic-private mode; the namespace's channel,
// nsChannel, otherwise.
func shardedChannel(mode Mode, nsChannel string, rooms []string) string {
	if len(rooms) == 1 {
		switch mode {
		case ModeDynamic:
			if len(rooms[0]) != 20 {
				return nsChannel + rooms[0] + "#"
			}
		case ModeDynamicPrivate:
			return nsChannel + rooms[0] + "#"
		}
	}
	return nsChannel
}

// roomsData is SOCKETS_JOIN's and SOCKETS_LEAVE's data: {opts, rooms}.
func roomsData(opts socketio.BroadcastOptions, rooms []string) object {
	return object{{"opts", optsObject(opts)}, {"rooms", nonNil(rooms)}}
}

// fetchSocketsData is FETCH_SOCKETS's data: {opts, requestId}.
func fetchSocketsData(opts socketio.BroadcastOptions, requestID string) object {
	return object{{"opts", optsObject(opts)}, {"requestId", requestID}}
}

// serverSideEmitData is SERVER_SIDE_EMIT's data: {packet}, or {requestId,
// packet} with acknowledgements.
func serverSideEmitData(requestID string, packet []any) object {
	if requestID == "" {
		return object{{"packet", nonNil(packet)}}
	}
	return object{{"requestId", requestID}, {"packet", nonNil(packet)}}
}

// serverSideEmitResponseData is SERVER_SIDE_EMIT_RESPONSE's data:
// {requestId, packet}, packet the first argument of the acknowledgement
// and left out without one (JS undefined).
func serverSideEmitResponseData(requestID string, args []any) object {
	d := object{{"requestId", requestID}}
	if len(args) > 0 {
		d = append(d, field{"packet", args[0]})
	}
	return d
}

// clientCountData is BROADCAST_CLIENT_COUNT's data.
func clientCountData(requestID string, n int) object {
	return object{{"requestId", requestID}, {"clientCount", max(n, 0)}}
}

// broadcastAckData is BROADCAST_ACK's data: one client's first argument.
func broadcastAckData(requestID string, arg any) object {
	return object{{"requestId", requestID}, {"packet", arg}}
}

// fetchSocketsResponseData is FETCH_SOCKETS_RESPONSE's data.
func fetchSocketsResponseData(requestID string, sockets []socketio.SocketInfo) object {
	list := make([]object, 0, len(sockets))
	for _, s := range sockets {
		list = append(list, socketObject(s))
	}
	return object{{"requestId", requestID}, {"sockets", list}}
}
