package redis

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// remoteSocketFrom reads one element of a REMOTE_FETCH response: a socket
// of another server, as FetchSockets returns it.
func remoteSocketFrom(v any) (socketio.SocketInfo, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return socketio.SocketInfo{}, false
	}
	id, ok := m["id"].(string)
	if !ok {
		return socketio.SocketInfo{}, false
	}
	return socketio.SocketInfo{
		ID:        id,
		Handshake: handshakeFrom(m["handshake"]),
		Rooms:     toStrings(m["rooms"]),
		Data:      m["data"],
	}, true
}

// handshakeFrom reads a handshake in Node's shape. Header names become
// canonical (http.Header.Get finds them); its time is "issued", the
// milliseconds since the epoch.
func handshakeFrom(v any) socketio.Handshake {
	m, _ := v.(map[string]any)
	h := socketio.Handshake{Headers: http.Header{}, Query: url.Values{}}
	for k, vals := range stringValues(m["headers"]) {
		for _, s := range vals {
			h.Headers.Add(k, s)
		}
	}
	for k, vals := range stringValues(m["query"]) {
		h.Query[k] = vals
	}
	h.Address, _ = m["address"].(string)
	h.URL, _ = m["url"].(string)
	if ms, ok := toInt(m["issued"]); ok && ms > 0 {
		h.Time = time.UnixMilli(ms)
	}
	if auth, ok := m["auth"].(map[string]any); ok {
		h.Auth = auth
	} else {
		h.Auth = map[string]any{}
	}
	return h
}

// stringValues reads a map of string or array values (numbers as JS prints
// them), skipping anything else.
func stringValues(v any) map[string][]string {
	m, _ := v.(map[string]any)
	out := make(map[string][]string, len(m))
	for k, e := range m {
		switch e := e.(type) {
		case []any:
			out[k] = toStrings(e)
		default:
			if s, ok := toStr(e); ok {
				out[k] = []string{s}
			}
		}
	}
	return out
}

// nodeDate is t as JavaScript's Date.prototype.toString prints it in UTC,
// Node's handshake.time; empty for the zero time.
func nodeDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("Mon Jan 02 2006 15:04:05 GMT-0700") + " (Coordinated Universal Time)"
}

// wireHandshakeOf turns a local handshake into Node's shape. xdomain is
// whether the request had an Origin header (Node's rule), as far as the
// kept headers tell; secure is not known here and is false.
func wireHandshakeOf(h socketio.Handshake) wireHandshake {
	w := wireHandshake{
		Headers: nodeValues(h.Headers, strings.ToLower), // Node's header names are lower case
		Time:    nodeDate(h.Time),
		Address: h.Address,
		Xdomain: h.Headers.Get("Origin") != "",
		URL:     h.URL,
		Query:   nodeValues(h.Query, nil),
		Auth:    h.Auth,
	}
	if !h.Time.IsZero() {
		w.Issued = h.Time.UnixMilli()
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
func nodeValues[M ~map[string][]string](m M, key func(string) string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if key != nil {
			k = key(k)
		}
		if len(v) == 1 {
			out[k] = v[0]
		} else {
			out[k] = v
		}
	}
	return out
}
