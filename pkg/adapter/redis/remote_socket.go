package redis

import (
	"encoding/json"
	"strings"

	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// remoteSocket is a socket of another server, as REMOTE_FETCH returns it.
// BroadcastOperator.FetchSockets wraps it in a socket.RemoteSocket, whose
// Emit, Join, Leave and Disconnect go through this adapter.
type remoteSocket struct {
	id        socket.SocketId
	handshake *socket.Handshake
	rooms     *types.Set[socket.Room]
	data      any
}

var _ socket.SocketDetails = (*remoteSocket)(nil)

func (r *remoteSocket) Id() socket.SocketId            { return r.id }
func (r *remoteSocket) Handshake() *socket.Handshake   { return r.handshake }
func (r *remoteSocket) Rooms() *types.Set[socket.Room] { return r.rooms }
func (r *remoteSocket) Data() any                      { return r.data }

// remoteSocketFrom reads one element of a REMOTE_FETCH response.
func remoteSocketFrom(v any) (*remoteSocket, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	id, ok := m["id"].(string)
	if !ok {
		return nil, false
	}
	r := &remoteSocket{
		id:        socket.SocketId(id),
		handshake: handshakeFrom(m["handshake"]),
		rooms:     types.NewSet[socket.Room](),
		data:      m["data"],
	}
	for _, room := range toStrings(m["rooms"]) {
		r.rooms.Add(socket.Room(room))
	}
	return r, true
}

// handshakeFrom reads a handshake; header and query values become string
// or []string, as the library's own handshakes hold them.
func handshakeFrom(v any) *socket.Handshake {
	m, _ := v.(map[string]any)
	h := &socket.Handshake{
		Headers: types.IncomingHttpHeaders(stringValues(m["headers"])),
		Query:   types.ParsedUrlQuery(stringValues(m["query"])),
	}
	h.Time, _ = m["time"].(string)
	h.Address, _ = m["address"].(string)
	h.Xdomain, _ = m["xdomain"].(bool)
	h.Secure, _ = m["secure"].(bool)
	h.Issued, _ = toInt(m["issued"])
	h.Url, _ = m["url"].(string)
	if auth, ok := m["auth"].(map[string]any); ok {
		h.Auth = auth
	} else {
		h.Auth = map[string]any{}
	}
	return h
}

func stringValues(v any) map[string]any {
	m, _ := v.(map[string]any)
	out := make(map[string]any, len(m))
	for k, e := range m {
		switch e := e.(type) {
		case []any:
			out[k] = toStrings(e)
		default:
			if s, ok := toStr(e); ok {
				out[k] = s
			}
		}
	}
	return out
}

// wireHandshakeOf turns a local handshake into Node's shape.
func wireHandshakeOf(h *socket.Handshake) wireHandshake {
	if h == nil {
		return wireHandshake{Headers: map[string]any{}, Query: map[string]any{}, Auth: map[string]any{}}
	}
	w := wireHandshake{
		Headers: nodeValues(h.Headers, strings.ToLower), // Node's header names are lower case

		Time:    h.Time,
		Address: h.Address,
		Xdomain: h.Xdomain,
		Secure:  h.Secure,
		Issued:  h.Issued,
		URL:     h.Url,
		Query:   nodeValues(h.Query, nil),
		Auth:    h.Auth,
	}
	if w.Auth == nil {
		w.Auth = map[string]any{}
	} else if _, err := json.Marshal(w.Auth); err != nil {
		w.Auth = map[string]any{}
	}
	return w
}

// nodeValues turns a []string of one value into that value, as Node's
// headers and parsed query hold it; key, if not nil, renames the keys.
func nodeValues[M ~map[string]any](m M, key func(string) string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if key != nil {
			k = key(k)
		}
		switch v := v.(type) {
		case []string:
			if len(v) == 1 {
				out[k] = v[0]
			} else {
				out[k] = v
			}
		case string:
			out[k] = v
		default:
			if _, err := json.Marshal(v); err == nil {
				out[k] = v
			}
		}
	}
	return out
}
