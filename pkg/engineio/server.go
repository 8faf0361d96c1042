// Package engineio is a lean Engine.IO v4 server: HTTP long-polling on
// net/http, and websockets taken out of net/http by Hijack into a small
// epoll loop, so that an idle websocket is a few small structs and a file
// descriptor, with no goroutine of its own and no writer goroutine.
//
// Callbacks run on the goroutine that received the data: the poller for
// websocket messages (they must not block: hand long work off), the
// net/http handler for polling. The byte slices handed to OnMessage are
// valid only during the call. The package is Linux-only (epoll).
// permessage-deflate is never negotiated, so maxPayload always bounds
// what is decoded.
package engineio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Config of a Server. Zero values take the documented defaults.
type Config struct {
	// PingInterval between two server pings. Default 25s.
	PingInterval time.Duration
	// PingTimeout after a ping for the pong. Default 20s.
	PingTimeout time.Duration
	// MaxPayload is the largest polling body and websocket message, in
	// bytes. Default 1,000,000.
	MaxPayload int
	// UpgradeTimeout bounds a polling → websocket upgrade. Default 10s.
	UpgradeTimeout time.Duration
	// ConnectTimeout closes a session ("connect timeout") that the upper
	// layer has not marked with Conn.SetConnected by then. Default 0: none.
	ConnectTimeout time.Duration
	// MaxWriteQueue bounds the bytes waiting to be written to one
	// connection; over it the connection is closed ("slow consumer").
	// Default 1 MiB.
	MaxWriteQueue int
	// KeepHeaders names the handshake request headers that Conn.Header
	// keeps (each costs memory for the life of the session). Default none.
	KeepHeaders []string
	// Pollers is the number of epoll loops. Default 1.
	Pollers int
	// CheckRequest, if set, is called for every handshake, poll and
	// upgrade request; an error answers 403 with its text.
	CheckRequest func(*http.Request) error
	// Admit, if set, is asked before each new session (a handshake, on
	// either transport). It returns the function to call when the session
	// ends, or a *RefusedError, answered with its status and message (any
	// other error: 503).
	Admit func(*http.Request) (release func(), err error)
	// Hooks for metrics; every field is optional.
	Hooks Hooks
}

// Hooks let the application count what happens; they must be cheap and
// must not block.
type Hooks struct {
	Opened       func(transport string)
	Closed       func(reason string)
	Upgraded     func()
	SlowConsumer func()
}

// Close reasons given to OnClose and Hooks.Closed.
const (
	ReasonTransportClose = "transport close"
	ReasonTransportError = "transport error"
	ReasonParseError     = "parse error"
	ReasonPingTimeout    = "ping timeout"
	ReasonSlowConsumer   = "slow consumer"
	ReasonConnectTimeout = "connect timeout"
	ReasonShutdown       = "server shutting down"
	ReasonForced         = "forced close"
)

// Errors reported to OnClose or returned by Conn methods.
var (
	ErrClosed         = errors.New("engineio: connection closed")
	ErrMessageTooBig  = errors.New("engineio: message over maxPayload")
	ErrProtocol       = errors.New("engineio: websocket protocol error")
	ErrPollOverlap    = errors.New("engineio: overlapping polling request")
	ErrSlowConsumer   = errors.New("engineio: write queue over its bound")
	ErrServerShutdown = errors.New("engineio: server shut down")
)

// Transport names.
const (
	TransportPolling   = "polling"
	TransportWebSocket = "websocket"
)

// Server is an Engine.IO v4 server; mount it with http.Handle.
type Server struct {
	cfg     Config
	onConn  func(*Conn)
	pollers []*poller
	next    uint32

	hb *heartbeats

	mu       sync.RWMutex
	closing  bool
	sessions map[string]*Conn
	inflight sync.WaitGroup // handlers, timer callbacks, pollers and the heartbeats
}

// NewServer starts the pollers; call Shutdown to stop them.
func NewServer(cfg Config) (*Server, error) {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 25 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 20 * time.Second
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 1_000_000
	}
	if cfg.UpgradeTimeout <= 0 {
		cfg.UpgradeTimeout = 10 * time.Second
	}
	if cfg.MaxWriteQueue <= 0 {
		cfg.MaxWriteQueue = 1 << 20
	}
	if cfg.Pollers <= 0 {
		cfg.Pollers = 1
	}
	s := &Server{cfg: cfg, sessions: make(map[string]*Conn)}
	for range cfg.Pollers {
		p, err := newPoller(s)
		if err != nil {
			for _, q := range s.pollers {
				q.stop()
			}
			s.inflight.Wait()
			return nil, fmt.Errorf("engineio: poller: %w", err)
		}
		s.pollers = append(s.pollers, p)
		s.inflight.Add(1)
		go p.run()
	}
	s.hb = newHeartbeats()
	s.inflight.Add(1)
	go s.hb.run(s)
	return s, nil
}

// OnConnection sets the function called for each new session, before any
// of its messages; set the Conn's callbacks there.
func (s *Server) OnConnection(fn func(*Conn)) { s.onConn = fn }

// Len is the number of open sessions.
func (s *Server) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sessions)
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

// Shutdown closes every session, stops the pollers and waits for the
// handlers and callbacks in flight. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closing
	s.closing = true
	conns := make([]*Conn, 0, len(s.sessions))
	for _, c := range s.sessions {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if first {
		for _, c := range conns {
			c.closeWith(ReasonShutdown, ErrServerShutdown, closeGoingAway, false)
			c.mu.Lock()
			if c.aux != nil {
				c.aux.Stop() // a lingering session
			}
			c.mu.Unlock()
			s.remove(c)
		}
		for _, p := range s.pollers {
			p.stop()
		}
		s.hb.stop()
	}
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) lookup(sid string) *Conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[sid]
}

func (s *Server) remove(c *Conn) {
	s.mu.Lock()
	removed := s.sessions[c.id] == c
	if removed {
		delete(s.sessions, c.id)
	}
	s.mu.Unlock()
	if removed && c.release != nil {
		c.release()
	}
}

// RefusedError is an Admit refusal: the handshake is answered with Status
// and an Engine.IO error body with Message.
type RefusedError struct {
	Status  int
	Message string
}

func (e *RefusedError) Error() string { return e.Message }

// Engine.IO error codes, as Node's engine.io answers them.
const (
	errTransportUnknown   = 0
	errUnknownSid         = 1
	errBadHandshakeMethod = 2
	errBadRequest         = 3
	errForbidden          = 4
	errUnsupportedVersion = 5
)

var errMessages = [...]string{
	"Transport unknown", "Session ID unknown", "Bad handshake method",
	"Bad request", "Forbidden", "Unsupported protocol version",
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	if msg == "" {
		msg = errMessages[code]
	}
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ServeHTTP answers Engine.IO requests (mount it at /engine.io/ or
// /socket.io/; the path is not checked).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeError(w, http.StatusServiceUnavailable, errBadRequest, "Server shutting down")
		return
	}
	defer s.leave()
	q := r.URL.Query()
	transport := q.Get("transport")
	if transport != TransportPolling && transport != TransportWebSocket {
		writeError(w, http.StatusBadRequest, errTransportUnknown, "")
		return
	}
	if q.Get("EIO") != "4" {
		writeError(w, http.StatusBadRequest, errUnsupportedVersion, "")
		return
	}
	if s.cfg.CheckRequest != nil {
		if err := s.cfg.CheckRequest(r); err != nil {
			writeError(w, http.StatusForbidden, errForbidden, err.Error())
			return
		}
	}
	isWS := transport == TransportWebSocket
	if isWS && (r.Method != http.MethodGet || !headerHas(r.Header, "Upgrade", "websocket")) {
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusBadRequest, errBadHandshakeMethod, "")
			return
		}
		s.handshake(w, r, isWS)
		return
	}
	c := s.lookup(sid)
	if c == nil {
		writeError(w, http.StatusBadRequest, errUnknownSid, "")
		return
	}
	switch {
	case isWS:
		s.upgrade(w, r, c)
	case r.Method == http.MethodGet:
		c.longPoll(w, r)
	case r.Method == http.MethodPost:
		c.post(w, r)
	default:
		writeError(w, http.StatusBadRequest, errBadRequest, "")
	}
}

func newSid() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Server) openPacket(sid string, upgrades bool) []byte {
	b := make([]byte, 0, 128)
	b = append(b, pOpen)
	b = append(b, `{"sid":"`...)
	b = append(b, sid...)
	if upgrades {
		b = append(b, `","upgrades":["websocket"],"pingInterval":`...)
	} else {
		b = append(b, `","upgrades":[],"pingInterval":`...)
	}
	b = strconv.AppendInt(b, s.cfg.PingInterval.Milliseconds(), 10)
	b = append(b, `,"pingTimeout":`...)
	b = strconv.AppendInt(b, s.cfg.PingTimeout.Milliseconds(), 10)
	b = append(b, `,"maxPayload":`...)
	b = strconv.AppendInt(b, int64(s.cfg.MaxPayload), 10)
	return append(b, '}')
}

// newConn registers a session; nil (503 answered) if the server is
// shutting down.
func (s *Server) newConn(w http.ResponseWriter, r *http.Request, transport uint8) *Conn {
	c := &Conn{
		s:          s,
		id:         newSid(),
		header:     keepHeaders(r.Header, s.cfg.KeepHeaders),
		rawQuery:   r.URL.RawQuery,
		remoteAddr: r.RemoteAddr,
		transport:  transport,
		hbIdx:      -1,
	}
	if transport == tPolling {
		c.poll = &pollState{}
	}
	if s.cfg.Admit != nil {
		release, err := s.cfg.Admit(r)
		if err != nil {
			status, msg := http.StatusServiceUnavailable, err.Error()
			var refused *RefusedError
			if errors.As(err, &refused) {
				status = refused.Status
			}
			writeError(w, status, errBadRequest, msg)
			return nil
		}
		c.release = release
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		if c.release != nil {
			c.release()
		}
		writeError(w, http.StatusServiceUnavailable, errBadRequest, "Server shutting down")
		return nil
	}
	s.sessions[c.id] = c
	s.mu.Unlock()
	return c
}

// keepHeaders copies the values of the named headers as a flat list of
// name, value pairs (a map per session would cost a few hundred bytes
// more for its life).
func keepHeaders(h http.Header, names []string) []string {
	n := 0
	for _, name := range names {
		n += len(h.Values(name))
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, 2*n)
	for _, name := range names {
		key := http.CanonicalHeaderKey(name)
		for _, v := range h.Values(name) {
			out = append(out, key, v)
		}
	}
	return out
}

func (s *Server) handshake(w http.ResponseWriter, r *http.Request, isWS bool) {
	if isWS {
		s.openWebSocket(w, r)
		return
	}
	c := s.newConn(w, r, tPolling)
	if c == nil {
		return
	}
	open := s.openPacket(c.id, true)
	c.start()
	if s.cfg.Hooks.Opened != nil {
		s.cfg.Hooks.Opened(TransportPolling)
	}
	if s.onConn != nil {
		c.safe(func() { s.onConn(c) })
	}
	writePoll(w, open)
}

func writePoll(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}
