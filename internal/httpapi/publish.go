// Package httpapi is eventserver's HTTP API: the publish API that the
// backend uses to send events, the nodes list, and the origin (CORS) policy of the
// Socket.IO endpoint.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
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
	Metrics *Metrics
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
		start := time.Now()
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
		a.cfg.Metrics.PublishDuration.Observe(time.Since(start).Seconds())
	})
}
