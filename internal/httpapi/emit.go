// POST /api/v1/emit: the backend sends an event to rooms.

package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/protocol"
)

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

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

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
