// Package socketio is a lean Socket.IO v5 server on pkg/engineio:
// namespaces (served only when registered), connect middleware, events
// and acks both ways, binary attachments, a sharded room index, and
// broadcasts encoded once and written as the same frames to every member.
//
// A socket is a few small structs: no goroutine, no emitter map. Handlers
// are registered per namespace and run on the goroutine that received the
// packet (the engineio poller for websockets, the net/http handler for
// polling): they must not block; hand long work off. Middleware may call
// next later, from another goroutine.
//
// Event arguments are decoded JSON with numbers as json.Number (integers
// above 2^53 stay exact), binary attachments as []byte. Arguments sent are
// encoded with encoding/json; []byte at any depth of []any and
// map[string]any values becomes an attachment.
package socketio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventserver/eventserver/pkg/engineio"
)

// Disconnect reasons, as Node names them; the engineio close reasons
// ("transport close", "ping timeout", "server shutting down", ...) are
// passed through.
const (
	ReasonClientDisconnect = "client namespace disconnect"
	ReasonServerDisconnect = "server namespace disconnect"
	ReasonParseError       = engineio.ReasonParseError
)

// Errors.
var (
	ErrDisconnected = errors.New("socketio: socket disconnected")
	ErrAckTimeout   = errors.New("socketio: operation has timed out")
	ErrShutdown     = errors.New("socketio: server shut down")
)

// Config of a Server. Zero values take the documented defaults.
type Config struct {
	// Engine configures the Engine.IO server (its ConnectTimeout bounds
	// how long a session may stay without a namespace).
	Engine engineio.Config
	// Path the server is mounted at, for Handshake.URL. Default "/socket.io/".
	Path string
	// MaxAttachments of one binary packet. Default 10 (as Node).
	MaxAttachments int
	// Adapter makes each namespace's adapter. Default NewMemoryAdapter.
	Adapter AdapterFactory
	// OnError, if set, is told of what cannot be encoded or a handler panic.
	OnError func(err error)
}

// Server is a Socket.IO server; mount it with http.Handle.
type Server struct {
	cfg Config
	eio *engineio.Server

	mu       sync.RWMutex
	nsps     map[string]*Namespace
	mws      []Middleware
	closing  bool
	inflight sync.WaitGroup // ack timers and broadcast-ack waits
	seq      atomic.Uint64
}

// NewServer starts the Engine.IO server; call Shutdown to stop it.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Path == "" {
		cfg.Path = "/socket.io/"
	}
	if cfg.MaxAttachments <= 0 {
		cfg.MaxAttachments = 10
	}
	if cfg.Adapter == nil {
		cfg.Adapter = NewMemoryAdapter
	}
	eio, err := engineio.NewServer(cfg.Engine)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, eio: eio, nsps: make(map[string]*Namespace)}
	eio.OnConnection(s.onConn)
	return s, nil
}

// Engine is the Engine.IO server underneath.
func (s *Server) Engine() *engineio.Server { return s.eio }

// ServeHTTP answers Engine.IO requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.eio.ServeHTTP(w, r) }

// Use adds a middleware run on a CONNECT to any namespace, before the
// namespace's own. Call it before serving.
func (s *Server) Use(m Middleware) {
	s.mu.Lock()
	s.mws = append(s.mws, m)
	s.mu.Unlock()
}

// Of returns the namespace name ("/" or "/tasks"), registering it on first
// use. Only registered namespaces are served: a CONNECT to another gets
// CONNECT_ERROR {"message":"Invalid namespace"}.
func (s *Server) Of(name string) *Namespace {
	if name == "" || name[0] != '/' {
		name = "/" + name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nsps[name]; n != nil {
		return n
	}
	n := newNamespace(s, name)
	n.adapter = s.cfg.Adapter(n)
	s.nsps[name] = n
	return n
}

func (s *Server) lookup(name string) (*Namespace, []Middleware) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nsps[name], s.mws
}

// enter registers work that Shutdown waits for; false once shutting down.
func (s *Server) enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closing {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) leave() { s.inflight.Done() }

// Shutdown disconnects every socket ("server shutting down"), closes the
// adapters and waits for the Engine.IO server and the timers in flight.
// It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closing
	s.closing = true
	nsps := make([]*Namespace, 0, len(s.nsps))
	for _, n := range s.nsps {
		nsps = append(nsps, n)
	}
	s.mu.Unlock()
	err := s.eio.Shutdown(ctx) // closes every session: its sockets disconnect
	if first {
		for _, n := range nsps {
			n.adapter.Close()
		}
	}
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

func (s *Server) encodeError(err error) {
	if s.cfg.OnError != nil {
		s.cfg.OnError(err)
	}
}

func newSocketID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Server) onConn(c *engineio.Conn) {
	c.SetHandler(&client{srv: s, conn: c, created: time.Now().UnixNano()})
}
