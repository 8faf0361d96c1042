// Package httpapi is eventserver's HTTP API: the publish API that the
// backend uses to send events, the nodes list, and the origin (CORS) policy of the
// Socket.IO endpoint.
package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/metrics"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/presence"
)

// Emitter sends an event to rooms (every client when rooms is empty) except
// the sockets in the except rooms.
type Emitter interface {
	Emit(rooms, except []string, event string, args ...any) error
}

// Cluster answers for every instance of the cluster.
type Cluster interface {
	FetchSockets(ctx context.Context, rooms []string) ([]protocol.SocketInfo, error)
	Instances(ctx context.Context) ([]any, error)
}

// Config configures the API.
type Config struct {
	// Token is the bearer token of every /api/v1 route. Empty: the API is off
	// (404 with a JSON error that says how to turn it on).
	Token string
	// MaxBody bounds a request body in bytes. Zero: 1 MB.
	MaxBody int64
	Emitter Emitter
	// Presence lists the online nodes.
	Presence presence.Store
	// Cluster lists sockets and instances (GET /api/v1/sockets and
	// /api/v1/instances); nil: those routes are off.
	Cluster Cluster
	Logger  *zap.Logger
	Metrics *metrics.Metrics
}

// API serves /api/v1/.
type API struct {
	cfg Config
	log *zap.Logger
}

// New returns the API.
func New(cfg Config) *API {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1000 * 1000
	}
	return &API{cfg: cfg, log: cfg.Logger.Named("api")}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("POST /api/v1/emit", a.guard(a.emit))
	mux.Handle("GET /api/v1/nodes", a.guard(a.nodes))
	if a.cfg.Cluster != nil {
		mux.Handle("GET /api/v1/sockets", a.guard(a.sockets))
		mux.Handle("GET /api/v1/instances", a.guard(a.instances))
	}
	mux.Handle("/api/", a.guard(func(w http.ResponseWriter, r *http.Request) int {
		return writeError(w, http.StatusNotFound, "", "no such route: "+r.Method+" "+r.URL.Path)
	}))
}

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
	return status
}

func writeError(w http.ResponseWriter, status int, field, msg string) int {
	return writeJSON(w, status, apiError{Error: msg, Field: field})
}

// guard checks the bearer token and counts the request by status.
func (a *API) guard(h func(http.ResponseWriter, *http.Request) int) http.Handler {
	want := []byte(a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := func() int {
			if len(want) == 0 {
				return writeError(w, http.StatusNotFound, "", "the publish API is off: set EVENTSERVER_PUBLISH_TOKEN to turn it on")
			}
			got := []byte(auth.BearerToken(r.Header.Get("Authorization")))
			if len(got) == 0 || subtle.ConstantTimeCompare(got, want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="eventserver"`)
				return writeError(w, http.StatusUnauthorized, "", "missing or wrong bearer token")
			}
			return h(w, r)
		}()
		a.cfg.Metrics.PublishRequests.WithLabelValues(strconv.Itoa(status)).Inc()
	})
}

// EmitRequest is the body of POST /api/v1/emit.
type EmitRequest struct {
	Event     string          `json:"event"`
	Room      *string         `json:"room"`
	Rooms     []string        `json:"rooms"`
	Except    []string        `json:"except"`
	Namespace *string         `json:"namespace"`
	Data      json.RawMessage `json:"data"`
	Args      json.RawMessage `json:"args"`
}

// fieldError is a request error that names its field.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// parse validates a request and returns the rooms and the event's arguments.
func (req *EmitRequest) parse() (rooms []string, args []any, err error) {
	switch {
	case req.Event == "":
		return nil, nil, &fieldError{"event", "required: the event name, e.g. new_task"}
	case protocol.Reserved[req.Event]:
		return nil, nil, &fieldError{"event", fmt.Sprintf("%q is a reserved Socket.IO event name", req.Event)}
	case len(req.Event) > 128:
		return nil, nil, &fieldError{"event", "longer than 128 characters"}
	}
	if req.Namespace != nil && *req.Namespace != protocol.Namespace {
		return nil, nil, &fieldError{"namespace", fmt.Sprintf("unknown namespace %q: the only one is %q", *req.Namespace, protocol.Namespace)}
	}
	if req.Room != nil && req.Rooms != nil {
		return nil, nil, &fieldError{"rooms", `give "room" or "rooms", not both`}
	}
	if req.Room != nil {
		if *req.Room == "" {
			return nil, nil, &fieldError{"room", "must not be empty; leave it out to reach every client"}
		}
		rooms = []string{*req.Room}
	}
	if req.Rooms != nil {
		if len(req.Rooms) == 0 {
			return nil, nil, &fieldError{"rooms", "must not be empty; leave it out to reach every client"}
		}
		for _, r := range req.Rooms {
			if r == "" {
				return nil, nil, &fieldError{"rooms", "a room name is empty"}
			}
		}
		rooms = req.Rooms
	}
	for _, r := range req.Except {
		if r == "" {
			return nil, nil, &fieldError{"except", "a room name is empty"}
		}
	}
	hasData, hasArgs := len(req.Data) > 0, len(req.Args) > 0
	switch {
	case hasData && hasArgs:
		return nil, nil, &fieldError{"args", `give "data" (one argument) or "args" (a list), not both`}
	case hasData && isNull(req.Data):
		// "data": null is no argument, as python-socketio's emit(event,
		// data=None) and the queue bridge: vantage6 sends sync,
		// expired_token and invalid_token so, and a node's handlers for
		// them take none. One null argument is "args": [null].
		args = nil
	case hasData:
		args = []any{json.RawMessage(req.Data)}
	case hasArgs:
		var list []json.RawMessage
		if err := json.Unmarshal(req.Args, &list); err != nil || list == nil {
			return nil, nil, &fieldError{"args", "must be a JSON array of the event's arguments"}
		}
		args = make([]any, len(list))
		for i, a := range list {
			args[i] = a
		}
	}
	return rooms, args, nil
}

func (a *API) emit(w http.ResponseWriter, r *http.Request) int {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body larger than %d bytes (EVENTSERVER_MAX_PAYLOAD)", a.cfg.MaxBody))
		}
		return writeError(w, http.StatusBadRequest, "", "cannot read body: "+err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req EmitRequest
	if err := dec.Decode(&req); err != nil {
		return writeError(w, http.StatusBadRequest, jsonField(err), "invalid JSON body: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return writeError(w, http.StatusBadRequest, "", "invalid JSON body: data after the object")
	}
	rooms, args, err := req.parse()
	if err != nil {
		var fe *fieldError
		errors.As(err, &fe)
		return writeError(w, http.StatusBadRequest, fe.field, fe.Error())
	}
	if err := a.cfg.Emitter.Emit(rooms, req.Except, req.Event, args...); err != nil {
		a.log.Error("emit", zap.String("event", req.Event), zap.Error(err))
		return writeError(w, http.StatusInternalServerError, "", "emit failed: "+err.Error())
	}
	a.log.Debug("published", zap.String("event", req.Event), zap.Strings("rooms", rooms), zap.Strings("except", req.Except))
	return writeJSON(w, http.StatusAccepted, map[string]any{"ok": true})
}

// isNull reports whether raw is the JSON literal null.
func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// jsonField names the field of a decoding error, where it can.
func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
		return strings.Trim(strings.TrimPrefix(s, "json: unknown field "), `"`)
	}
	return ""
}

// NodeView is one node in GET /api/v1/nodes.
type NodeView struct {
	ID              json.RawMessage `json:"id"`
	Name            string          `json:"name"`
	OrganizationID  int64           `json:"organization_id"`
	CollaborationID int64           `json:"collaboration_id"`
	Instance        string          `json:"instance"`
	Connections     int             `json:"connections"`
	ConnectedSince  time.Time       `json:"connected_since"`
	LastPing        *time.Time      `json:"last_ping"`
	LastSeen        time.Time       `json:"last_seen"`
	Stale           bool            `json:"stale"`
	LastConfig      json.RawMessage `json:"last_config"`
	LastConfigAt    *time.Time      `json:"last_config_at"`
	LastMetrics     json.RawMessage `json:"last_metrics"`
	LastMetricsAt   *time.Time      `json:"last_metrics_at"`
}

func (a *API) nodes(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	states, err := a.cfg.Presence.Online(ctx)
	if err != nil {
		a.log.Error("list nodes", zap.Error(err))
		return writeError(w, http.StatusServiceUnavailable, "", "presence unavailable: "+err.Error())
	}
	out := make([]NodeView, len(states))
	for i, s := range states {
		out[i] = NodeView{
			ID: s.ID, Name: s.Name, OrganizationID: s.OrganizationID, CollaborationID: s.CollaborationID,
			Instance: s.Instance, Connections: s.Connections, ConnectedSince: s.ConnectedSince.UTC(), LastPing: s.LastPing,
			LastSeen: s.LastSeen.UTC(), Stale: s.Stale,
			LastConfig: s.LastConfig, LastConfigAt: s.LastConfigAt, LastMetrics: s.LastMetrics, LastMetricsAt: s.LastMetricsAt,
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"nodes": out})
}

// sockets answers GET /api/v1/sockets[?room=R&room=S]: the sockets of the
// whole cluster in those rooms (all when none), with who they are.
func (a *API) sockets(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	list, err := a.cfg.Cluster.FetchSockets(ctx, r.URL.Query()["room"])
	if err != nil {
		a.log.Warn("fetch sockets", zap.Error(err))
		return writeError(w, http.StatusGatewayTimeout, "", "fetching the sockets of the cluster: "+err.Error())
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sockets": list})
}

// instances answers GET /api/v1/instances: every instance of the cluster
// that answered, this one first. When some did not answer in time the list
// is partial and "incomplete" says why.
func (a *API) instances(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	list, err := a.cfg.Cluster.Instances(ctx)
	resp := map[string]any{"instances": list}
	if err != nil {
		a.log.Warn("instances", zap.Error(err))
		resp["incomplete"] = err.Error()
	}
	return writeJSON(w, http.StatusOK, resp)
}
