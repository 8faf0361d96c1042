// Package hub serves the vantage6 /tasks namespace: it authenticates each
// socket, puts it in the rooms its identity may read, carries the events of
// the protocol and reports node presence.
package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zishang520/socket.io/servers/socket/v3"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/metrics"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/rooms"
)

// Verifier checks a client's token.
type Verifier interface {
	Verify(token string) (*auth.Claims, error)
}

// Config configures a Hub.
type Config struct {
	// Server is the Socket.IO server; the hub serves its /tasks namespace. Required.
	Server *socket.Server
	// Verifier and Resolver authenticate clients. Required.
	Verifier Verifier
	Resolver identity.Resolver
	// NewPresence builds the presence store, given the hub's transition
	// handler. Nil: an in-memory store with the default grace.
	NewPresence func(presence.Handler) (presence.Store, error)
	// AuthGrace is how long a socket whose token failed or expired stays
	// before it is disconnected. Zero: 5s.
	AuthGrace time.Duration
	// UserTokenExpiry is what a connected user whose token expires gets.
	// Zero: UserExpiryKeep. Nodes are always disconnected after AuthGrace.
	UserTokenExpiry UserExpiry
	// ResolveTimeout bounds identity resolution. Zero: 10s.
	ResolveTimeout time.Duration
	// Instance names this instance. Logger and Metrics are required.
	Instance string
	Logger   *zap.Logger
	Metrics  *metrics.Metrics
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Facts receives what nodes establish (online, offline, ping and the
	// node events that pass validation), for the backend; nil: none.
	Facts FactSink
}

// UserExpiry is the policy for a connected user whose token expires.
type UserExpiry string

const (
	// UserExpiryKeep tells the user expired_token once and keeps its
	// socket and rooms, as vantage6 4.14 does (it checks a token only at
	// connect; its UI has no expired_token handler and never reconnects
	// after a server disconnect).
	UserExpiryKeep UserExpiry = "keep"
	// UserExpiryDisconnect tells the user expired_token and disconnects it
	// after the auth grace unless it sends refresh_token first.
	UserExpiryDisconnect UserExpiry = "disconnect"
)

// Hub is the /tasks namespace's logic.
type Hub struct {
	cfg      Config
	nsp      socket.Namespace
	admin    socket.Namespace // /admin: node-status-changed for global-scope users
	log      *zap.Logger
	m        *metrics.Metrics
	presence presence.Store

	mu       sync.Mutex
	sessions map[socket.SocketId]*session
	closed   bool
}

// New registers the hub's handlers on the server's /tasks namespace.
func New(cfg Config) (*Hub, error) {
	switch {
	case cfg.Server == nil:
		return nil, errors.New("hub: Server is required")
	case cfg.Verifier == nil || cfg.Resolver == nil:
		return nil, errors.New("hub: Verifier and Resolver are required")
	case cfg.Logger == nil || cfg.Metrics == nil:
		return nil, errors.New("hub: Logger and Metrics are required")
	}
	if cfg.AuthGrace <= 0 {
		cfg.AuthGrace = 5 * time.Second
	}
	switch cfg.UserTokenExpiry {
	case "":
		cfg.UserTokenExpiry = UserExpiryKeep
	case UserExpiryKeep, UserExpiryDisconnect:
	default:
		return nil, fmt.Errorf("hub: UserTokenExpiry %q: want %q or %q", cfg.UserTokenExpiry, UserExpiryKeep, UserExpiryDisconnect)
	}
	if cfg.ResolveTimeout <= 0 {
		cfg.ResolveTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Logger.Named("hub"),
		m:        cfg.Metrics,
		sessions: map[socket.SocketId]*session{},
	}
	if cfg.NewPresence != nil {
		p, err := cfg.NewPresence(h.onTransition)
		if err != nil {
			return nil, err
		}
		h.presence = p
	} else {
		h.presence = presence.NewMemory(h.onTransition)
	}
	h.nsp = cfg.Server.Of(protocol.Namespace, nil)
	h.nsp.Use(h.authenticate)
	if err := h.nsp.On(EventInstance, h.onInstanceRequest); err != nil {
		return nil, err
	}
	if err := h.nsp.On("connection", func(args ...any) {
		if s, ok := first[*socket.Socket](args); ok {
			h.onConnection(s, false)
		}
	}); err != nil {
		return nil, err
	}
	h.admin = cfg.Server.Of(protocol.AdminNamespace, nil)
	h.admin.Use(h.authenticate)
	if err := h.admin.On("connection", func(args ...any) {
		if s, ok := first[*socket.Socket](args); ok {
			h.onConnection(s, true)
		}
	}); err != nil {
		return nil, err
	}
	return h, nil
}

// Presence is the hub's presence store.
func (h *Hub) Presence() presence.Store { return h.presence }

// Namespace is the /tasks namespace, for the publish API.
func (h *Hub) Namespace() socket.Namespace { return h.nsp }

// unauthenticatedRoom holds the sockets whose token failed, for the grace
// before they are disconnected, so that namespace-wide emits skip them.
const unauthenticatedRoom = "eventserver:unauthenticated"

// Emit sends an event to rooms (every authenticated client of the namespace
// when rooms is empty), except the sockets in except. It counts the event.
func (h *Hub) Emit(roomList, except []string, event string, args ...any) error {
	return h.emitVia(h.nsp.To(toRooms(roomList)...), except, event, args)
}

// emitVia emits on op, skipping the except rooms and the unauthenticated
// sockets, and counts the event.
func (h *Hub) emitVia(op *socket.BroadcastOperator, except []string, event string, args []any) error {
	h.m.EventsOut.WithLabelValues(metricEvent(event)).Inc()
	return op.Except(toRooms(append(slices.Clip(except), unauthenticatedRoom))...).Emit(event, args...)
}

// adminRoom holds the /admin sockets allowed to read node-status-changed,
// so that refused sockets never get it during their grace.
const adminRoom = "eventserver:admin"

// mayAdmin reports whether id may use /admin: a user allowed to see every
// collaboration (global event scope), as 4.14's admin namespace.
func mayAdmin(id *identity.Identity) bool {
	return id != nil && id.Kind == rooms.KindUser && id.Scope == rooms.ScopeGlobal
}

// Connections is the number of sockets on this instance's /tasks and /admin
// namespaces.
func (h *Hub) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Drain disconnects every socket, spread evenly over window, so that clients
// reconnect elsewhere without a storm. It returns early when ctx ends, after
// disconnecting the rest at once. New connections are refused from the start.
func (h *Hub) Drain(ctx context.Context, window time.Duration) {
	h.mu.Lock()
	h.closed = true
	all := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	if len(all) == 0 {
		return
	}
	h.log.Info("draining", zap.Int("sockets", len(all)), zap.Duration("window", window))
	step := window / time.Duration(len(all))
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i, s := range all {
		if i > 0 && step > 0 {
			t.Reset(step)
			select {
			case <-t.C:
			case <-ctx.Done():
				step = 0
			}
		}
		s.sock.Disconnect(true)
	}
}

func (h *Hub) onTransition(tr presence.Transition) {
	event, label := protocol.EventNodeOffline, "offline"
	if tr.Online {
		event, label = protocol.EventNodeOnline, "online"
	}
	nodeRooms := rooms.For(rooms.Client{
		Kind:             rooms.KindNode,
		OrganizationID:   tr.Node.OrganizationID,
		CollaborationIDs: []int64{tr.Node.CollaborationID},
	})
	payload := protocol.NodeStatus{ID: tr.Node.ID, Name: tr.Node.Name, OrgID: tr.Node.OrganizationID}
	if err := h.Emit(nodeRooms, nil, event, payload); err != nil {
		h.log.Error("emit node status", zap.String("event", event), zap.Error(err))
	}
	h.transitionFact(tr, payload)
	// 4.14 tells /admin at every node connect and disconnect, with no
	// argument. The transition is decided once for the cluster, and the
	// broadcast goes through the adapter to every instance.
	h.m.EventsOut.WithLabelValues(metricEvent(protocol.EventNodeStatusChanged)).Inc()
	if err := h.admin.To(adminRoom).Emit(protocol.EventNodeStatusChanged); err != nil {
		h.log.Error("emit "+protocol.EventNodeStatusChanged, zap.Error(err))
	}
	h.log.Info("node "+label, zap.String("node_id", tr.Node.Key), zap.String("node_name", tr.Node.Name),
		zap.Int64("collaboration_id", tr.Node.CollaborationID))
}

func toRooms(in []string) []socket.Room {
	out := make([]socket.Room, len(in))
	for i, r := range in {
		out[i] = socket.Room(r)
	}
	return out
}

func first[T any](args []any) (T, bool) {
	var zero T
	if len(args) == 0 {
		return zero, false
	}
	v, ok := args[0].(T)
	return v, ok
}

var knownEvents = map[string]bool{
	protocol.EventPing: true, protocol.EventNodeInfoUpdate: true, protocol.EventNodeMetricsUpdate: true,
	protocol.EventAlgorithmStatusChange: true, protocol.EventAlgorithmLog: true, protocol.EventMessage: true,
	protocol.EventError: true, protocol.EventRefreshToken: true,
	protocol.EventSync: true, protocol.EventExpiredToken: true, protocol.EventInvalidToken: true,
	protocol.EventNodeOnline: true, protocol.EventNodeOffline: true, protocol.EventNewTask: true,
	protocol.EventKillContainers: true, protocol.EventStatusUpdate: true, protocol.EventNodeStatusChanged: true,
}

// metricEvent bounds the label values of event metrics.
func metricEvent(ev string) string {
	if knownEvents[ev] {
		return ev
	}
	return "other"
}

// SocketInfo is one socket of the cluster, as fetchSockets reports it.
type SocketInfo struct {
	ID    string   `json:"id"`
	Rooms []string `json:"rooms"`
	Data  any      `json:"data"`
}

// FetchSockets lists the sockets in rooms (every socket when rooms is
// empty) on every instance of the cluster. In cluster mode it waits for the
// other instances up to the adapter's request timeout, or ctx.
func (h *Hub) FetchSockets(ctx context.Context, roomList []string) ([]SocketInfo, error) {
	type result struct {
		sockets []*socket.RemoteSocket
		err     error
	}
	done := make(chan result, 1)
	h.nsp.In(toRooms(roomList)...).FetchSockets()(func(s []*socket.RemoteSocket, err error) {
		done <- result{s, err}
	})
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		out := make([]SocketInfo, 0, len(r.sockets))
		for _, s := range r.sockets {
			info := SocketInfo{ID: string(s.Id()), Rooms: []string{}, Data: s.Data()}
			if s.Rooms() != nil {
				for _, room := range s.Rooms().Keys() {
					info.Rooms = append(info.Rooms, string(room))
				}
				slices.Sort(info.Rooms)
			}
			out = append(out, info)
		}
		slices.SortFunc(out, func(a, b SocketInfo) int { return strings.Compare(a.ID, b.ID) })
		return out, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// EventInstance is the server-side event by which instances of a cluster
// ask each other who they are (GET /api/v1/instances).
const EventInstance = "eventserver:instance"

// instanceInfo is this instance's answer to EventInstance.
func (h *Hub) instanceInfo() map[string]any {
	return map[string]any{"instance": h.cfg.Instance, "connections": h.Connections()}
}

func (h *Hub) onInstanceRequest(args ...any) {
	if len(args) == 0 {
		return
	}
	info := h.instanceInfo()
	switch ack := args[len(args)-1].(type) {
	case socket.Ack:
		ack([]any{info}, nil)
	case func(...any):
		ack(info)
	}
}

// Instances asks every other instance of the cluster who it is and adds this
// one. Instances that do not answer within the adapter's request timeout are
// missing, and the error says how many answered.
func (h *Hub) Instances(ctx context.Context) ([]any, error) {
	type result struct {
		answers []any
		err     error
	}
	done := make(chan result, 1)
	err := h.nsp.ServerSideEmitWithAck(EventInstance)(func(answers []any, err error) {
		done <- result{answers, err}
	})
	self := h.instanceInfo()
	if err != nil {
		// A single instance without a cluster adapter: only itself.
		return []any{self}, nil
	}
	select {
	case r := <-done:
		return append([]any{self}, r.answers...), r.err
	case <-ctx.Done():
		return []any{self}, ctx.Err()
	}
}
