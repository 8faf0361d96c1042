package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/socketio"
)

// authResult is what the middleware learnt, handed to onConnection.
type authResult struct {
	id     *identity.Identity
	exp    time.Time
	reason string // "" when authenticated: missing, expired, invalid, draining
}

// session is the hub's state of one socket. An idle one is this struct,
// its place in the hub's maps and, while it has a token, its entry in the
// hub's expiry schedule: no logger, timer or buffer of its own (what an
// idle socket never uses is made when first needed).
type session struct {
	h     *Hub
	sock  *socketio.Socket
	id    *identity.Identity // nil: not authenticated
	since time.Time
	// lim bounds the events the socket sends and the log lines they cause;
	// made at its first event, and touched only by its event handler.
	lim *limits
	// work is the session's background work (presence calls, token
	// refresh), run in order by one goroutine at a time, off the
	// connection's goroutine; made when first used (mu).
	work *workQueue

	mu         sync.Mutex
	gone       bool
	joined     bool  // in its rooms (and announced there)
	heartbeats bool  // its Engine.IO heartbeats are recorded (nodes)
	websocket  bool  // its transport
	kicking    bool  // disconnected when its grace is over, unless refreshed
	exp        int64 // its token's exp, unix nanoseconds (the hub's clock)
	seenAt     int64 // last heartbeat handed to presence, unix nanoseconds

	// The hub's expiry schedule (session.mu and expiry.mu to write).
	idx  int32 // place in the schedule; -1: none
	kick bool  // the entry is the end of the grace, not the token's expiry
	due  int64 // unix nanoseconds (real time)
}

// limits are a socket's event and log buckets.
type limits struct {
	events eventBucket // Config.Events
	logs   eventBucket // logBudget
}

// limits returns s.lim, made if need be; the event handler only.
func (s *session) limits() *limits {
	if s.lim == nil {
		s.lim = &limits{}
	}
	return s.lim
}

// workQueue is a session's background work.
type workQueue struct {
	mu      sync.Mutex
	queue   []func()
	running bool
}

func (s *session) clientType() string {
	if s.id == nil {
		return "unauthenticated"
	}
	return string(s.id.Kind)
}

func transportName(websocket bool) string {
	if websocket {
		return engineio.TransportWebSocket
	}
	return engineio.TransportPolling
}

// admin reports whether the socket is on /admin.
func (s *session) admin() bool { return s.sock.Namespace().Name() == protocol.AdminNamespace }

// rooms are the rooms the socket's identity reads (none on /admin), worked
// out when needed rather than kept.
func (s *session) rooms() []string {
	if s.id == nil || s.admin() {
		return nil
	}
	return s.id.Rooms()
}

// seenEvery throttles the Engine.IO heartbeats of one node socket that are
// recorded as its last-seen time.
const seenEvery = 5 * time.Second

// authenticate runs before the CONNECT ack, as a middleware of every
// namespace. It never rejects a token: a socket with a bad token is
// connected, told expired_token or invalid_token, and disconnected after the
// grace, as vantage6 clients expect. The token check and the identity
// resolution (which may call the vantage6 API) run on a goroutine of their
// own, not on the connection's; next is called from there.
func (h *Hub) authenticate(s *socketio.Socket, next func(error)) {
	res := &authResult{}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		res.reason = "draining"
		s.SetData(res)
		next(nil)
		return
	}
	hs := s.Handshake()
	token := auth.BearerToken(hs.Headers.Get("Authorization"))
	fromHeader := token != ""
	if !fromHeader {
		if prev, ok := s.ConnValue().(*authResult); ok {
			// The connection's Authorization token was verified for
			// another namespace and then dropped: its identity holds for
			// this one, as the token would (expired once exp is past).
			s.SetData(h.reuse(prev))
			next(nil)
			return
		}
		token, _ = hs.Auth["token"].(string)
	}
	if token == "" {
		res.reason = "missing"
		s.SetData(res)
		next(nil)
		return
	}
	if err := h.startAuth(); err != nil {
		next(err)
		return
	}
	go func() {
		defer h.endAuth()
		id, exp, err := h.verify(h.ctx, token)
		if err != nil {
			res.reason = reasonOf(err)
			h.log.Info("authentication failed", zap.String("socket_id", s.ID()),
				zap.String("reason", res.reason), zap.String("remote", hs.Address), zap.Error(err))
		} else {
			res.id, res.exp = id, exp
			// The token has done its work: only the identity is kept. The
			// connection's header token is kept as its result, for the
			// connection's other namespaces.
			if fromHeader {
				s.SetConnValue(res)
				s.Conn().DropHeaders()
			}
			s.DropAuth()
		}
		s.SetData(res)
		next(nil)
	}()
}

// reuse is the result of the connection's header token for another of its
// namespaces: the same identity, or expired once the token's exp (and the
// verifier's leeway) is past, as a new check of the token would say.
func (h *Hub) reuse(prev *authResult) *authResult {
	if prev.id == nil {
		return &authResult{reason: prev.reason}
	}
	var leeway time.Duration
	if l, ok := h.cfg.Verifier.(interface{ Leeway() time.Duration }); ok {
		leeway = l.Leeway()
	}
	if h.cfg.Now().After(prev.exp.Add(leeway)) {
		return &authResult{reason: "expired"}
	}
	return &authResult{id: prev.id, exp: prev.exp}
}

// startAuth counts an authentication in flight: a CONNECT_ERROR when the
// hub is shut down or has MaxPendingAuth in flight.
func (h *Hub) startAuth() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.stopped:
		return &socketio.ConnectError{Message: "server shutting down"}
	case h.pending >= h.cfg.MaxPendingAuth:
		h.m.AuthFailures.WithLabelValues("busy").Inc()
		return &socketio.ConnectError{Message: "server busy"}
	}
	h.pending++
	h.work.Add(1)
	return nil
}

func (h *Hub) endAuth() {
	h.mu.Lock()
	h.pending--
	h.mu.Unlock()
	h.work.Done()
}

// maxQueue bounds the background work a session may have waiting; what
// goes over it (heartbeats, node reports) is dropped. The connect and the
// disconnect of a node are never dropped.
const maxQueue = 64

// later runs fn after the session's earlier background work, off the
// connection's goroutine. must: never dropped for the bound (still dropped,
// and reported false, once the hub is shut down).
func (s *session) later(must bool, fn func()) bool {
	s.mu.Lock()
	if s.work == nil {
		s.work = &workQueue{}
	}
	q := s.work
	s.mu.Unlock()
	q.mu.Lock()
	if !must && len(q.queue) >= maxQueue {
		q.mu.Unlock()
		return false
	}
	if q.running {
		q.queue = append(q.queue, fn)
		q.mu.Unlock()
		return true
	}
	if !s.h.enter() {
		q.mu.Unlock()
		return false
	}
	q.queue = append(q.queue, fn)
	q.running = true
	q.mu.Unlock()
	go s.runQueue(q)
	return true
}

// queueBusy reports whether the session's work queue has work queued or
// running: what is queued now runs after it.
func (s *session) queueBusy() bool {
	s.mu.Lock()
	q := s.work
	s.mu.Unlock()
	if q == nil {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}

func (s *session) runQueue(q *workQueue) {
	defer s.h.work.Done()
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.queue = nil
			q.mu.Unlock()
			return
		}
		fn := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.mu.Unlock()
		s.safe(fn)
	}
}

// safe runs fn; a panic is logged, not propagated.
func (s *session) safe(fn func()) {
	defer func() {
		if p := recover(); p != nil {
			s.logger().Error("panic in background work", zap.Any("panic", p), zap.Stack("stack"))
		}
	}()
	fn()
}

// verify checks a token and resolves its identity. It may block (the
// vantage6 API): never call it on a connection's goroutine.
func (h *Hub) verify(ctx context.Context, token string) (*identity.Identity, time.Time, error) {
	claims, err := h.cfg.Verifier.Verify(token)
	if err != nil {
		return nil, time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ResolveTimeout)
	defer cancel()
	id, err := h.cfg.Resolver.Resolve(ctx, token, claims)
	if err != nil {
		return nil, time.Time{}, err
	}
	return id, claims.ExpiresAt, nil
}

func reasonOf(err error) string {
	if errors.Is(err, auth.ErrExpired) {
		return "expired"
	}
	return "invalid"
}

// onConnection sets up a socket of /tasks, or of /admin when admin is true.
// It runs after the CONNECT ack was sent, so that no event precedes it.
func (h *Hub) onConnection(s *socketio.Socket, admin bool) {
	res, _ := s.Data().(*authResult)
	if res == nil {
		res = &authResult{reason: "invalid"}
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed && res.reason == "" {
		// Drain started while the token was checked.
		res = &authResult{reason: "draining"}
	}
	if admin && res.id != nil && !mayAdmin(res.id) {
		// A valid token, but not of a user who may see every
		// collaboration: told invalid_token and disconnected, as a bad token.
		h.log.Info("refused on "+protocol.AdminNamespace+": not a user with the global event scope",
			zap.String("socket_id", s.ID()), zap.String("client_type", string(res.id.Kind)),
			zap.String("client_id", res.id.ID.String()))
		res = &authResult{reason: "not_admin"}
	}
	transport := s.Conn().Transport()
	sess := &session{
		h:         h,
		sock:      s,
		id:        res.id,
		since:     h.cfg.Now(),
		websocket: transport == engineio.TransportWebSocket,
		idx:       -1,
	}
	if sess.id != nil && !admin {
		sess.heartbeats = sess.id.Kind == rooms.KindNode
	}

	if sess.heartbeats {
		// A node: sync right after the CONNECT ack; then, off this
		// goroutine, presence (whose node-online reaches the node's rooms
		// before the node is in them, so not the node itself) and only then
		// its rooms. Queued before the session is visible, so that the
		// disconnect's work always follows.
		sess.emit(protocol.EventSync)
		conn := presence.Conn{Node: sess.node(), ID: s.ID(), Instance: h.cfg.Instance, Since: sess.since}
		sess.later(true, func() {
			if err := h.presence.Connect(context.Background(), conn); err != nil {
				sess.logger().Error("presence connect", zap.Error(err))
			}
			sess.joinRooms()
		})
	}
	h.mu.Lock()
	h.sessions[s.ID()] = sess
	h.mu.Unlock()
	// What fetchSockets shows of this socket is made from the session when
	// asked (Hub.socketData), not kept.
	s.SetData(nil)
	h.m.Connections.WithLabelValues(sess.clientType(), transport).Inc()
	if !s.Connected() {
		// Gone while it was set up: its disconnect may have found no
		// session.
		sess.onDisconnect("transport close")
		return
	}

	if sess.id == nil {
		sess.refuse(res.reason)
		return
	}
	sess.scheduleExpiry(res.exp)
	if admin {
		s.Join(adminRoom)
		sess.logger().Info("client connected", zap.String("transport", transport), zap.String("name", sess.id.Name))
		return
	}
	if !sess.heartbeats {
		sess.joinRooms()
	}
}

// joinRooms puts the socket in its identity's rooms and tells the rooms
// that announce it, unless the socket is already gone.
func (s *session) joinRooms() {
	s.mu.Lock()
	gone, transport := s.gone, transportName(s.websocket)
	s.joined = !gone
	s.mu.Unlock()
	if gone {
		return
	}
	roomList := s.rooms()
	s.sock.Join(roomList...)
	for _, r := range roomList {
		if rooms.Announced(r) {
			s.announce(r, joinText(s.id.Kind, s.id.Name, r))
		}
	}
	s.logger().Info("client connected", zap.Strings("rooms", roomList), zap.String("transport", transport),
		zap.String("name", s.id.Name))
}

// summary is the socket's data: who it is, as plain values that every
// instance of the cluster (and a Node peer) can decode from fetchSockets.
func (s *session) summary() map[string]any {
	d := map[string]any{"client_type": s.clientType(), "instance": s.h.cfg.Instance}
	if s.id != nil {
		d["client_id"] = s.id.ID.String()
		d["name"] = s.id.Name
	}
	return d
}

func title(k rooms.Kind) string {
	if k == rooms.KindNode {
		return "Node"
	}
	return "User"
}

// joinText is the message sent to a room that a client joined, as vantage6
// 4.14 words it: f"{session.type.title()} <{session.name}> joined room <{room}>".
func joinText(k rooms.Kind, name, room string) string {
	return fmt.Sprintf("%s <%s> joined room <%s>", title(k), name, room)
}

// leaveText is the message sent to a room that a client left; 4.14 puts no
// brackets here: f"{name} left room {room}".
func leaveText(name, room string) string {
	return fmt.Sprintf("%s left room %s", name, room)
}

// nodeKey is the node's key in the presence store.
func (s *session) nodeKey() string { return s.id.ID.String() }

// node describes the node for the presence store, at connect.
func (s *session) node() presence.Node {
	idJSON, _ := s.id.ID.MarshalJSON()
	return presence.Node{
		Key:             s.nodeKey(),
		ID:              idJSON,
		Name:            s.id.Name,
		OrganizationID:  s.id.OrganizationID,
		CollaborationID: s.id.CollaborationID(),
	}
}

// emit sends an event to this socket only.
func (s *session) emit(event string, args ...any) {
	s.h.m.EventsOut.WithLabelValues(metricEvent(event)).Inc()
	if err := s.sock.Emit(event, args...); err != nil {
		s.logger().Warn("emit", zap.String("event", event), zap.Error(err))
	}
}

func (s *session) announce(room, msg string) {
	if err := s.h.Emit([]string{room}, nil, protocol.EventMessage, msg); err != nil {
		s.logger().Warn("announce", zap.String("room", room), zap.Error(err))
	}
}

// refuse tells the client why it is not authenticated and disconnects it
// after the grace.
func (s *session) refuse(reason string) {
	if reason == "draining" {
		// Not the client's fault: close the connection so that it
		// reconnects, to another instance.
		s.logger().Info("instance is draining: closing new connection")
		s.sock.Disconnect(true)
		return
	}
	s.h.m.AuthFailures.WithLabelValues(reason).Inc()
	event := protocol.EventInvalidToken
	if reason == "expired" {
		event = protocol.EventExpiredToken
	}
	s.sock.Join(unauthenticatedRoom)
	s.emit(event)
	s.logger().Info("unauthenticated socket: told "+event+", disconnecting after grace",
		zap.String("reason", reason), zap.Duration("grace", s.h.cfg.AuthGrace))
	s.mu.Lock()
	s.startKickLocked()
	s.mu.Unlock()
}

func (s *session) startKickLocked() {
	if s.gone || s.kicking {
		return
	}
	s.kicking = true
	s.h.expiry.schedule(s, s.h.cfg.AuthGrace, true)
}

// onGraceOver disconnects the socket at the end of its grace, unless it
// refreshed its token meanwhile.
func (s *session) onGraceOver() {
	s.mu.Lock()
	kick := s.kicking && !s.gone
	s.mu.Unlock()
	if !kick {
		return
	}
	s.logger().Info("disconnecting: no valid token after grace")
	s.sock.Disconnect(false)
}

// scheduleExpiry arms the socket's entry in the hub's expiry schedule at
// exp, to tell the client its token expired; a pending disconnect after the
// grace is called off.
func (s *session) scheduleExpiry(exp time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	s.kicking = false
	s.exp = exp.UnixNano()
	s.h.expiry.schedule(s, exp.Sub(s.h.cfg.Now()), false)
}

// keepOnExpiry reports whether a socket of kind k stays connected when its
// token expires: users under UserExpiryKeep do; nodes never (the real node
// answers expired_token by logging in again and reconnecting).
func keepOnExpiry(k rooms.Kind, policy UserExpiry) bool {
	return k == rooms.KindUser && policy == UserExpiryKeep
}

// onExpired runs once per armed expiry: it tells the client expired_token,
// once, and either keeps the socket and its rooms (a user under the keep
// policy: its identity did not change) or disconnects it after the grace
// unless it refreshes. refresh_token re-arms the expiry in both cases.
func (s *session) onExpired() {
	s.mu.Lock()
	if s.gone || s.h.cfg.Now().UnixNano() < s.exp {
		s.mu.Unlock()
		return
	}
	keep := keepOnExpiry(s.id.Kind, s.h.cfg.UserTokenExpiry)
	if !keep {
		s.startKickLocked()
	}
	s.mu.Unlock()
	if keep {
		s.h.m.AuthFailures.WithLabelValues("expired_while_connected_kept").Inc()
		s.logger().Info("token expired while connected: told expired_token, keeping the socket and its rooms",
			zap.String("policy", "EVENTSERVER_USER_TOKEN_EXPIRY="+string(UserExpiryKeep)))
	} else {
		s.h.m.AuthFailures.WithLabelValues("expired_while_connected").Inc()
		s.logger().Info("token expired while connected: told expired_token, disconnecting after grace",
			zap.Duration("grace", s.h.cfg.AuthGrace))
	}
	s.emit(protocol.EventExpiredToken)
}

// onHeartbeat records, at most every seenEvery, that a node's connection
// is alive (Engine.IO heartbeats and packets), as its last-seen time.
func (s *session) onHeartbeat() {
	now := s.h.cfg.Now()
	s.mu.Lock()
	if s.gone || now.UnixNano()-s.seenAt < int64(seenEvery) {
		s.mu.Unlock()
		return
	}
	s.seenAt = now.UnixNano()
	s.mu.Unlock()
	s.later(false, func() {
		if err := s.h.presence.Seen(context.Background(), s.nodeKey(), now); err != nil {
			s.logger().Warn("presence heartbeat", zap.Error(err))
		}
	})
}

func (s *session) onUpgrade() {
	s.mu.Lock()
	old := transportName(s.websocket)
	now := s.sock.Conn().Transport()
	s.websocket = now == engineio.TransportWebSocket
	gone := s.gone
	s.mu.Unlock()
	if gone || old == now {
		return
	}
	s.h.m.Connections.WithLabelValues(s.clientType(), old).Dec()
	s.h.m.Connections.WithLabelValues(s.clientType(), now).Inc()
	s.logger().Debug("transport upgraded", zap.String("transport", now))
}

func (s *session) onDisconnect(reason string) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	s.gone = true
	s.h.expiry.cancel(s)
	transport := transportName(s.websocket)
	s.mu.Unlock()

	h := s.h
	h.mu.Lock()
	if h.sessions[s.sock.ID()] == s {
		delete(h.sessions, s.sock.ID())
	}
	h.mu.Unlock()
	h.m.Connections.WithLabelValues(s.clientType(), transport).Dec()

	if s.id == nil {
		s.logger().Debug("unauthenticated socket disconnected", zap.String("reason", reason))
		return
	}
	leave := func() {
		s.mu.Lock()
		joined := s.joined
		s.mu.Unlock()
		if !joined {
			return
		}
		for _, r := range s.rooms() {
			if rooms.Announced(r) {
				s.announce(r, leaveText(s.id.Name, r))
			}
		}
	}
	if s.heartbeats {
		// A node: after its queued join, then presence.
		key, sid := s.nodeKey(), s.sock.ID()
		s.later(true, func() {
			leave()
			if err := h.presence.Disconnect(context.Background(), key, sid); err != nil {
				s.logger().Error("presence disconnect", zap.Error(err))
			}
		})
	} else {
		leave()
	}
	s.logger().Info("client disconnected", zap.String("reason", reason),
		zap.Duration("connected_for", h.cfg.Now().Sub(s.since)))
}

// logger is the hub's logger with the socket's fields. It is built for
// each line rather than kept: a logger per socket (zap's With encodes its
// fields into a core of its own) cost more than a kilobyte for every idle
// connection, for lines that a socket writes a few times in its life.
func (s *session) logger() *zap.Logger {
	fields := make([]zap.Field, 0, 4)
	fields = append(fields, zap.String("socket_id", s.sock.ID()))
	if s.sock.Namespace().Name() == protocol.AdminNamespace {
		fields = append(fields, zap.String("namespace", protocol.AdminNamespace))
	}
	if s.id != nil {
		fields = append(fields, zap.String("client_type", s.clientType()), zap.String("client_id", s.id.ID.String()))
	}
	return s.h.log.With(fields...)
}
