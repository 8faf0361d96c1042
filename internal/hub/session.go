package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zishang520/socket.io/servers/socket/v3"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/rooms"
)

// authResult is what the middleware learnt, handed to onConnection.
type authResult struct {
	id     *identity.Identity
	exp    time.Time
	reason string // "" when authenticated: missing, expired, invalid, draining
}

// session is the hub's state of one socket.
type session struct {
	h         *Hub
	sock      *socket.Socket
	id        *identity.Identity // nil: not authenticated
	rooms     []string
	log       *zap.Logger
	since     time.Time
	clientTyp string

	mu        sync.Mutex
	transport string
	exp       time.Time
	expTimer  *time.Timer // fires at exp
	kickTimer *time.Timer // fires after the grace, unless refreshed
	gone      bool
	seenAt    time.Time // last heartbeat handed to presence
}

// seenEvery throttles the Engine.IO heartbeats of one node socket that are
// recorded as its last-seen time.
const seenEvery = 5 * time.Second

// authenticate runs before the CONNECT ack. It never rejects: a socket with a
// bad token is connected, told expired_token or invalid_token, and
// disconnected after the grace, as vantage6 clients expect.
func (h *Hub) authenticate(s *socket.Socket, next func(*socket.ExtendedError)) {
	res := &authResult{}
	defer func() {
		s.SetData(res)
		next(nil)
	}()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		res.reason = "draining"
		return
	}
	token := auth.BearerToken(s.Request().Request().Header.Get("Authorization"))
	if token == "" {
		if a := s.Handshake().Auth; a != nil {
			token, _ = a["token"].(string)
		}
	}
	if token == "" {
		res.reason = "missing"
		return
	}
	id, exp, err := h.verify(token)
	if err != nil {
		res.reason = reasonOf(err)
		h.log.Info("authentication failed", zap.String("socket_id", string(s.Id())),
			zap.String("reason", res.reason), zap.String("remote", s.Conn().RemoteAddress()), zap.Error(err))
		return
	}
	res.id, res.exp = id, exp
}

// verify checks a token and resolves its identity.
func (h *Hub) verify(token string) (*identity.Identity, time.Time, error) {
	claims, err := h.cfg.Verifier.Verify(token)
	if err != nil {
		return nil, time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ResolveTimeout)
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
func (h *Hub) onConnection(s *socket.Socket, admin bool) {
	res, _ := s.Data().(*authResult)
	if res == nil {
		res = &authResult{reason: "invalid"}
	}
	if admin && res.id != nil && !mayAdmin(res.id) {
		// A valid token, but not of a user who may see every
		// collaboration: told invalid_token and disconnected, as a bad token.
		h.log.Info("refused on "+protocol.AdminNamespace+": not a user with the global event scope",
			zap.String("socket_id", string(s.Id())), zap.String("client_type", string(res.id.Kind)),
			zap.String("client_id", res.id.ID.String()))
		res = &authResult{reason: "not_admin"}
	}
	transport := s.Conn().Transport().Name()
	sess := &session{
		h:         h,
		sock:      s,
		id:        res.id,
		since:     h.cfg.Now(),
		transport: transport,
		clientTyp: "unauthenticated",
	}
	fields := []zap.Field{zap.String("socket_id", string(s.Id()))}
	if admin {
		fields = append(fields, zap.String("namespace", protocol.AdminNamespace))
	}
	if sess.id != nil {
		sess.clientTyp = string(sess.id.Kind)
		if !admin {
			sess.rooms = sess.id.Rooms()
		}
		fields = append(fields, zap.String("client_type", sess.clientTyp), zap.String("client_id", sess.id.ID.String()))
	}
	sess.log = h.log.With(fields...)
	// What fetchSockets shows of this socket, on any instance of the cluster.
	s.SetData(sess.summary())

	h.mu.Lock()
	h.sessions[s.Id()] = sess
	h.mu.Unlock()
	h.m.Connections.WithLabelValues(sess.clientTyp, transport).Inc()

	_ = s.Conn().On("upgrade", func(...any) { sess.onUpgrade() })
	_ = s.On("disconnect", func(args ...any) {
		reason, _ := first[string](args)
		sess.onDisconnect(reason)
	})
	s.OnAny(sess.onEvent)

	if sess.id == nil {
		sess.refuse(res.reason)
		return
	}
	sess.scheduleExpiry(res.exp)
	if admin {
		s.Join(adminRoom)
		sess.log.Info("client connected", zap.String("transport", transport), zap.String("name", sess.id.Name))
		return
	}
	if sess.id.Kind == rooms.KindNode {
		sess.emit(protocol.EventSync)
		err := h.presence.Connect(context.Background(), presence.Conn{
			Node:     sess.node(),
			ID:       string(s.Id()),
			Instance: h.cfg.Instance,
			Since:    sess.since,
		})
		if err != nil {
			sess.log.Error("presence connect", zap.Error(err))
		}
		_ = s.Conn().On("heartbeat", func(...any) { sess.onHeartbeat() })
	}
	s.Join(toRooms(sess.rooms)...)
	for _, r := range sess.rooms {
		if rooms.Announced(r) {
			sess.announce(r, joinText(sess.id.Kind, sess.id.Name, r))
		}
	}
	sess.log.Info("client connected", zap.Strings("rooms", sess.rooms), zap.String("transport", transport),
		zap.String("name", sess.id.Name))
}

// summary is the socket's data: who it is, as plain values that every
// instance of the cluster (and a Node peer) can decode from fetchSockets.
func (s *session) summary() map[string]any {
	d := map[string]any{"client_type": s.clientTyp, "instance": s.h.cfg.Instance}
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
		s.log.Warn("emit", zap.String("event", event), zap.Error(err))
	}
}

func (s *session) announce(room, msg string) {
	if err := s.h.Emit([]string{room}, nil, protocol.EventMessage, msg); err != nil {
		s.log.Warn("announce", zap.String("room", room), zap.Error(err))
	}
}

// refuse tells the client why it is not authenticated and disconnects it
// after the grace.
func (s *session) refuse(reason string) {
	if reason == "draining" {
		// Not the client's fault: close the connection so that it
		// reconnects, to another instance.
		s.log.Info("instance is draining: closing new connection")
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
	s.log.Info("unauthenticated socket: told "+event+", disconnecting after grace",
		zap.String("reason", reason), zap.Duration("grace", s.h.cfg.AuthGrace))
	s.mu.Lock()
	s.startKickLocked()
	s.mu.Unlock()
}

func (s *session) startKickLocked() {
	if s.gone || s.kickTimer != nil {
		return
	}
	s.kickTimer = time.AfterFunc(s.h.cfg.AuthGrace, func() {
		s.log.Info("disconnecting: no valid token after grace")
		s.sock.Disconnect(false)
	})
}

// scheduleExpiry arms the timer that tells the client its token expired.
func (s *session) scheduleExpiry(exp time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	if s.expTimer != nil {
		s.expTimer.Stop()
	}
	if s.kickTimer != nil {
		s.kickTimer.Stop()
		s.kickTimer = nil
	}
	s.exp = exp
	s.expTimer = time.AfterFunc(exp.Sub(s.h.cfg.Now()), s.onExpired)
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
	if s.gone || s.h.cfg.Now().Before(s.exp) {
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
		s.log.Info("token expired while connected: told expired_token, keeping the socket and its rooms",
			zap.String("policy", "EVENTSERVER_USER_TOKEN_EXPIRY="+string(UserExpiryKeep)))
	} else {
		s.h.m.AuthFailures.WithLabelValues("expired_while_connected").Inc()
		s.log.Info("token expired while connected: told expired_token, disconnecting after grace",
			zap.Duration("grace", s.h.cfg.AuthGrace))
	}
	s.emit(protocol.EventExpiredToken)
}

// onHeartbeat records, at most every seenEvery, that a node's connection
// is alive (Engine.IO heartbeats and packets), as its last-seen time.
func (s *session) onHeartbeat() {
	now := s.h.cfg.Now()
	s.mu.Lock()
	if s.gone || now.Sub(s.seenAt) < seenEvery {
		s.mu.Unlock()
		return
	}
	s.seenAt = now
	s.mu.Unlock()
	if err := s.h.presence.Seen(context.Background(), s.nodeKey(), now); err != nil {
		s.log.Warn("presence heartbeat", zap.Error(err))
	}
}

func (s *session) onUpgrade() {
	s.mu.Lock()
	old := s.transport
	s.transport = s.sock.Conn().Transport().Name()
	now, gone := s.transport, s.gone
	s.mu.Unlock()
	if gone || old == now {
		return
	}
	s.h.m.Connections.WithLabelValues(s.clientTyp, old).Dec()
	s.h.m.Connections.WithLabelValues(s.clientTyp, now).Inc()
	s.log.Debug("transport upgraded", zap.String("transport", now))
}

func (s *session) onDisconnect(reason string) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	s.gone = true
	if s.expTimer != nil {
		s.expTimer.Stop()
	}
	if s.kickTimer != nil {
		s.kickTimer.Stop()
	}
	transport := s.transport
	s.mu.Unlock()

	h := s.h
	h.mu.Lock()
	delete(h.sessions, s.sock.Id())
	h.mu.Unlock()
	h.m.Connections.WithLabelValues(s.clientTyp, transport).Dec()

	if s.id == nil {
		s.log.Debug("unauthenticated socket disconnected", zap.String("reason", reason))
		return
	}
	for _, r := range s.rooms {
		if rooms.Announced(r) {
			s.announce(r, leaveText(s.id.Name, r))
		}
	}
	if s.id.Kind == rooms.KindNode {
		if err := h.presence.Disconnect(context.Background(), s.nodeKey(), string(s.sock.Id())); err != nil {
			s.log.Error("presence disconnect", zap.Error(err))
		}
	}
	s.log.Info("client disconnected", zap.String("reason", reason),
		zap.Duration("connected_for", h.cfg.Now().Sub(s.since)))
}
