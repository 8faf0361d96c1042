package redis

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// requestType is the `type` of a request or response, exactly the
// RequestType enum of @socket.io/redis-adapter 8.3.0.
type requestType int

const (
	typeSockets              requestType = 0
	typeAllRooms             requestType = 1
	typeRemoteJoin           requestType = 2
	typeRemoteLeave          requestType = 3
	typeRemoteDisconnect     requestType = 4
	typeRemoteFetch          requestType = 5
	typeServerSideEmit       requestType = 6
	typeBroadcast            requestType = 7
	typeBroadcastClientCount requestType = 8
	typeBroadcastAck         requestType = 9
)

var requestTypeNames = [...]string{
	"sockets", "all_rooms", "remote_join", "remote_leave", "remote_disconnect",
	"remote_fetch", "server_side_emit", "broadcast_request", "broadcast_client_count", "broadcast_ack",
}

// String is the metric label of t.
func (t requestType) String() string {
	if t >= 0 && int(t) < len(requestTypeNames) {
		return requestTypeNames[t]
	}
	return "unknown"
}

// Channels of one namespace, as the Node adapter names them.
type channels struct {
	broadcast string // <prefix>#<nsp>#, and <prefix>#<nsp>#<room># for one room
	pattern   string // the broadcast channels, as a glob
	request   string // <prefix>-request#<nsp>#
	response  string // <prefix>-response#<nsp>#
	specific  string // <prefix>-response#<nsp>#<uid>#
}

func newChannels(prefix, nsp, uid string) channels {
	c := channels{
		broadcast: prefix + "#" + nsp + "#",
		request:   prefix + "-request#" + nsp + "#",
		response:  prefix + "-response#" + nsp + "#",
	}
	c.pattern = globEscape(c.broadcast) + "*"
	c.specific = c.response + uid + "#"
	return c
}

// roomChannel is the channel of a broadcast: the room's own channel for
// exactly one room, else the namespace's.
func (c channels) roomChannel(rooms []string) string {
	if len(rooms) == 1 {
		return c.broadcast + rooms[0] + "#"
	}
	return c.broadcast
}

// globEscape escapes the characters Redis glob patterns treat specially,
// so that the pattern matches the namespace's channels and no others.
// Node subscribes `prefix#nsp#*` unescaped; for the usual names (no *, ?,
// [, ] or \) the two patterns are the same string.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// uidChars are uid2's characters.
const uidChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// newID returns 6 random characters, as uid2(6) does for Node's uid and
// requestId.
func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails
	for i := range b {
		b[i] = uidChars[b[i]%64]
	}
	return string(b[:])
}

// ---- broadcast messages: msgpack [uid, packet, {rooms, except, flags}] ----

// sortedRooms returns rooms sorted, without duplicates and never nil: a
// set, as Node's adapter holds them.
func sortedRooms(rooms []string) []string {
	out := make([]string, len(rooms))
	copy(out, rooms)
	slices.Sort(out)
	return slices.Compact(out)
}

func optsRooms(opts socketio.BroadcastOptions) (rooms, except []string) {
	return sortedRooms(opts.Rooms), sortedRooms(opts.Except)
}

func isLocal(opts socketio.BroadcastOptions) bool { return opts.Flags.Local }

// appendPacket appends a Socket.IO packet as Node's adapter sends it:
// {type, data, nsp}, plus id when it has one.
func appendPacket(b []byte, p *socketio.Packet) ([]byte, error) {
	n := 2
	if p.Data != nil {
		n++
	}
	if p.ID != nil {
		n++
	}
	b = appendMapHeader(b, n)
	b = appendString(b, "type")
	b = appendInt(b, int64(p.Type))
	if p.Data != nil {
		b = appendString(b, "data")
		var err error
		if b, err = appendValue(b, p.Data); err != nil {
			return b, err
		}
	}
	b = appendString(b, "nsp")
	b = appendString(b, p.Nsp)
	if p.ID != nil {
		b = appendString(b, "id")
		b = appendUint(b, *p.ID)
	}
	return b, nil
}

// appendFlags appends the flags Node's BroadcastOperator sets, each only
// when set; timeout is in milliseconds. Local is never sent: a local
// broadcast is not published.
func appendFlags(b []byte, f *socketio.BroadcastFlags) []byte {
	if f == nil {
		return appendMapHeader(b, 0)
	}
	n := 0
	if f.Volatile {
		n++
	}
	if f.Compress != nil {
		n++
	}
	if f.Timeout > 0 {
		n++
	}
	if f.ExpectSingleResponse {
		n++
	}
	b = appendMapHeader(b, n)
	if f.Volatile {
		b = appendBool(appendString(b, "volatile"), true)
	}
	if f.Compress != nil {
		b = appendBool(appendString(b, "compress"), *f.Compress)
	}
	if f.Timeout > 0 {
		b = appendInt(appendString(b, "timeout"), f.Timeout.Milliseconds())
	}
	if f.ExpectSingleResponse {
		b = appendBool(appendString(b, "expectSingleResponse"), true)
	}
	return b
}

// appendOpts appends {rooms, except, flags}; the arrays are [] when empty.
func appendOpts(b []byte, rooms, except []string, flags *socketio.BroadcastFlags) []byte {
	b = appendMapHeader(b, 3)
	b = appendStrings(appendString(b, "rooms"), rooms)
	b = appendStrings(appendString(b, "except"), except)
	return appendFlags(appendString(b, "flags"), flags)
}

// encodeBroadcast encodes a broadcast message.
func encodeBroadcast(b []byte, uid string, p *socketio.Packet, rooms, except []string, flags *socketio.BroadcastFlags) ([]byte, error) {
	b = appendArrayHeader(b, 3)
	b = appendString(b, uid)
	b, err := appendPacket(b, p)
	if err != nil {
		return nil, err
	}
	return appendOpts(b, rooms, except, flags), nil
}

// broadcastMessage is a decoded broadcast message.
type broadcastMessage struct {
	uid    string
	packet *socketio.Packet // nil when the message had none
	opts   socketio.BroadcastOptions
}

var errMalformed = errors.New("malformed message")

// decodeBroadcast decodes a broadcast message.
func decodeBroadcast(payload string) (*broadcastMessage, error) {
	v, err := decodeMsgpack(payload)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) < 3 {
		return nil, fmt.Errorf("%w: not [uid, packet, opts]", errMalformed)
	}
	m := &broadcastMessage{}
	m.uid, _ = arr[0].(string)
	if arr[1] != nil {
		pm, ok := arr[1].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: packet is not an object", errMalformed)
		}
		if m.packet, err = packetFrom(pm); err != nil {
			return nil, err
		}
	}
	om, ok := arr[2].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: opts is not an object", errMalformed)
	}
	m.opts = optsFrom(om)
	return m, nil
}

// packetFrom builds a packet from its wire object. A missing nsp is "/",
// as in Node. BINARY_EVENT and BINARY_ACK become EVENT and ACK: the local
// encoder finds the binary parts again. Data must be an array when
// present.
func packetFrom(m map[string]any) (*socketio.Packet, error) {
	t, ok := toInt(m["type"])
	if !ok {
		return nil, fmt.Errorf("%w: packet without a type", errMalformed)
	}
	if t < int64(socketio.PacketConnect) || t > int64(socketio.PacketBinaryAck) {
		return nil, fmt.Errorf("%w: packet type %d", errMalformed, t)
	}
	p := &socketio.Packet{Type: socketio.PacketType(t), Nsp: "/"}
	switch p.Type {
	case socketio.PacketBinaryEvent:
		p.Type = socketio.PacketEvent
	case socketio.PacketBinaryAck:
		p.Type = socketio.PacketAck
	}
	switch d := m["data"].(type) {
	case nil:
	case []any:
		p.Data = d
	default:
		return nil, fmt.Errorf("%w: packet data is not an array", errMalformed)
	}
	if nsp, ok := m["nsp"].(string); ok {
		p.Nsp = nsp
	}
	if id, ok := toInt(m["id"]); ok && id >= 0 {
		u := uint64(id)
		p.ID = &u
	}
	return p, nil
}

// optsFrom builds broadcast options from {rooms, except, flags}.
func optsFrom(m map[string]any) socketio.BroadcastOptions {
	o := wireOptsFrom(m)
	if f, ok := m["flags"].(map[string]any); ok {
		o.Flags.Volatile, _ = f["volatile"].(bool)
		if c, ok := f["compress"].(bool); ok {
			o.Flags.Compress = &c
		}
		if ms, ok := toFloat(f["timeout"]); ok && ms > 0 {
			o.Flags.Timeout = msDuration(ms)
		}
		o.Flags.ExpectSingleResponse, _ = f["expectSingleResponse"].(bool)
	}
	return o
}

// msDuration converts a peer's timeout in milliseconds; one beyond what a
// Duration holds (about 292 years) is the longest Duration, not the
// negative number the conversion would make of it.
func msDuration(ms float64) time.Duration {
	ns := ms * float64(time.Millisecond)
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// ---- requests and responses ----

// wireOpts is the opts of a JSON request: {rooms, except}.
type wireOpts struct {
	Rooms  []string `json:"rooms"`
	Except []string `json:"except"`
}

func newWireOpts(opts socketio.BroadcastOptions) wireOpts {
	r, e := optsRooms(opts)
	return wireOpts{Rooms: r, Except: e}
}

// Requests, field for field and in Node's order.
type (
	socketsRequest struct {
		UID       string      `json:"uid"`
		RequestID string      `json:"requestId"`
		Type      requestType `json:"type"`
		Rooms     []string    `json:"rooms"`
	}
	allRoomsRequest struct {
		UID       string      `json:"uid"`
		RequestID string      `json:"requestId"`
		Type      requestType `json:"type"`
	}
	// REMOTE_JOIN and REMOTE_LEAVE with opts.
	roomsRequest struct {
		UID   string      `json:"uid"`
		Type  requestType `json:"type"`
		Opts  wireOpts    `json:"opts"`
		Rooms []string    `json:"rooms"`
	}
	disconnectRequest struct {
		UID   string      `json:"uid"`
		Type  requestType `json:"type"`
		Opts  wireOpts    `json:"opts"`
		Close bool        `json:"close"`
	}
	// REMOTE_JOIN and REMOTE_LEAVE of one socket.
	sidRoomRequest struct {
		UID       string      `json:"uid"`
		RequestID string      `json:"requestId"`
		Type      requestType `json:"type"`
		Sid       string      `json:"sid"`
		Room      string      `json:"room"`
	}
	sidDisconnectRequest struct {
		UID       string      `json:"uid"`
		RequestID string      `json:"requestId"`
		Type      requestType `json:"type"`
		Sid       string      `json:"sid"`
		Close     bool        `json:"close"`
	}
	fetchRequest struct {
		UID       string      `json:"uid"`
		RequestID string      `json:"requestId"`
		Type      requestType `json:"type"`
		Opts      wireOpts    `json:"opts"`
	}
	serverSideEmitRequest struct {
		UID       string      `json:"uid"`
		RequestID string      `json:"requestId,omitempty"` // absent: no ack
		Type      requestType `json:"type"`
		Data      []any       `json:"data"`
	}
)

// Responses.
type (
	socketsResponse struct {
		RequestID string   `json:"requestId"`
		Sockets   []string `json:"sockets"`
	}
	roomsResponse struct {
		RequestID string   `json:"requestId"`
		Rooms     []string `json:"rooms"`
	}
	doneResponse struct {
		RequestID string `json:"requestId"`
	}
	fetchResponse struct {
		RequestID string          `json:"requestId"`
		Sockets   []fetchedSocket `json:"sockets"`
	}
	fetchedSocket struct {
		ID        string          `json:"id"`
		Handshake wireHandshake   `json:"handshake"`
		Rooms     []string        `json:"rooms"`
		Data      json.RawMessage `json:"data"`
	}
	serverSideEmitResponse struct {
		Type      requestType     `json:"type"`
		RequestID string          `json:"requestId"`
		Data      json.RawMessage `json:"data,omitempty"` // absent: undefined
	}
	clientCountResponse struct {
		Type        requestType `json:"type"`
		RequestID   string      `json:"requestId"`
		ClientCount uint64      `json:"clientCount"`
	}
)

// wireHandshake is a handshake as Node's socket.handshake looks: header
// and query values are strings, arrays only for repeated names.
type wireHandshake struct {
	Headers map[string]any `json:"headers"`
	Time    string         `json:"time"`
	Address string         `json:"address"`
	Xdomain bool           `json:"xdomain"`
	Secure  bool           `json:"secure"`
	Issued  int64          `json:"issued"`
	URL     string         `json:"url"`
	Query   map[string]any `json:"query"`
	Auth    map[string]any `json:"auth"`
}

// encodeBroadcastRequest encodes a BROADCAST request (msgpack, as Node):
// {uid, requestId, type: 7, packet, opts: {rooms, except, flags}}.
func encodeBroadcastRequest(uid, requestID string, p *socketio.Packet, rooms, except []string, flags *socketio.BroadcastFlags) ([]byte, error) {
	b := make([]byte, 0, 128)
	b = appendMapHeader(b, 5)
	b = appendString(appendString(b, "uid"), uid)
	b = appendString(appendString(b, "requestId"), requestID)
	b = appendInt(appendString(b, "type"), int64(typeBroadcast))
	b, err := appendPacket(appendString(b, "packet"), p)
	if err != nil {
		return nil, err
	}
	return appendOpts(appendString(b, "opts"), rooms, except, flags), nil
}

// encodeBroadcastAck encodes a BROADCAST_ACK response (msgpack, as
// Node): {type: 9, requestId, packet}; packet is left out when the client
// acknowledged with no argument (JS undefined).
func encodeBroadcastAck(requestID string, args []any) ([]byte, error) {
	b := make([]byte, 0, 64)
	n := 2
	if len(args) > 0 {
		n++
	}
	b = appendMapHeader(b, n)
	b = appendInt(appendString(b, "type"), int64(typeBroadcastAck))
	b = appendString(appendString(b, "requestId"), requestID)
	if len(args) > 0 {
		var err error
		if b, err = appendValue(appendString(b, "packet"), args[0]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// decodeObject decodes a request or a response: JSON when it starts with
// "{", msgpack otherwise, as Node decides.
func decodeObject(payload string) (map[string]any, error) {
	var (
		v   any
		err error
	)
	if strings.HasPrefix(payload, "{") {
		v, err = decodeJSON([]byte(payload))
	} else {
		v, err = decodeMsgpack(payload)
	}
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not an object", errMalformed)
	}
	return m, nil
}

// ---- loose accessors of decoded values ----

func toInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), true
		}
	case float64:
		// float64(math.MaxInt64) is 2^63, one past the range: < not <=.
		if v == math.Trunc(v) && v >= math.MinInt64 && v < math.MaxInt64 {
			return int64(v), true
		}
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// toStr returns a string, or a number as JS would print it (rooms may be
// numbers in Node).
func toStr(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	case uint64:
		return strconv.FormatUint(v, 10), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	}
	return "", false
}

// toStrings returns the strings of an array (numbers included), skipping
// anything else.
func toStrings(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		if s, ok := toStr(e); ok {
			out = append(out, s)
		}
	}
	return out
}

// wireOptsFrom reads the opts of a request into broadcast options.
func wireOptsFrom(v any) socketio.BroadcastOptions {
	m, _ := v.(map[string]any)
	return socketio.BroadcastOptions{Rooms: toStrings(m["rooms"]), Except: toStrings(m["except"])}
}
