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

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/prometheus/client_golang/prometheus"
)

// Verifier checks a client's token.
type Verifier interface {
	Verify(token string) (*auth.Claims, error)
}

// Config configures a Hub.
type Config struct {
	// Server is the Socket.IO server; the hub registers its /tasks and
	// /admin namespaces, behind a server-wide authentication middleware.
	// Required.
	Server *socketio.Server
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
	// Events bounds the events each socket sends. Zero: no bound.
	Events EventLimit
	// ResolveTimeout bounds identity resolution. Zero: 10s.
	ResolveTimeout time.Duration
	// MaxPendingAuth bounds the authentications in flight (token check and
	// identity resolution, off the connection's goroutine); a CONNECT over
	// it gets CONNECT_ERROR "server busy". Zero: 4096.
	MaxPendingAuth int
	// Instance names this instance. Logger is required. Registerer
	// receives the hub's metrics; nil: a registry of their own.
	Instance   string
	Logger     *zap.Logger
	Registerer prometheus.Registerer
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Facts receives what nodes establish (online, offline, ping and the
	// node events that pass validation), for the backend; nil: none.
	Facts FactSink
	// Tasks, for vantage6 5.x, looks up the task of a node's
	// algorithm_status_change: its job_id is relayed, and a completed run
	// sends new_task_update for each task that waited on it. Nil (4.x):
	// relayed as the node sent it.
	Tasks Tasks
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
	nsp      *socketio.Namespace
	admin    *socketio.Namespace // /admin: node-status-changed for global-scope users
	log      *zap.Logger
	m        *metrics
	presence presence.Store
	expiry   *expiry // token expiries and auth-grace disconnects

	// ctx bounds the work the hub runs off the connections' goroutines
	// (authentication, presence); Shutdown cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*session // by socket id (ids are unique across namespaces)
	closed   bool                // draining: new connections are refused
	stopped  bool                // shut down: no new background work
	pending  int                 // authentications in flight
	work     sync.WaitGroup      // background work: authentications, session queues
}

// New registers the hub's handlers on the server's /tasks namespace.
func New(cfg Config) (*Hub, error) {
	switch {
	case cfg.Server == nil:
		return nil, errors.New("hub: Server is required")
	case cfg.Verifier == nil || cfg.Resolver == nil:
		return nil, errors.New("hub: Verifier and Resolver are required")
	case cfg.Logger == nil:
		return nil, errors.New("hub: Logger is required")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("hub: metrics: %w", err)
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
	if cfg.MaxPendingAuth <= 0 {
		cfg.MaxPendingAuth = 4096
	}
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Logger.Named("hub"),
		m:        m,
		sessions: map[string]*session{},
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.expiry = newExpiry(h)
	if cfg.NewPresence != nil {
		p, err := cfg.NewPresence(h.onTransition)
		if err != nil {
			return nil, err
		}
		h.presence = p
	} else {
		h.presence = presence.NewMemory(h.onTransition)
	}
	// Every namespace served is behind the same authentication; only /tasks
	// and /admin are registered (another gets CONNECT_ERROR "Invalid
	// namespace", as Node).
	cfg.Server.Use(h.authenticate)
	h.nsp = cfg.Server.Of(protocol.Namespace)
	h.nsp.OnConnection(func(s *socketio.Socket) { h.onConnection(s, false) })
	h.nsp.OnServerSideEmit(EventInstance, h.onInstanceRequest)
	h.admin = cfg.Server.Of(protocol.AdminNamespace)
	h.admin.OnConnection(func(s *socketio.Socket) { h.onConnection(s, true) })
	for _, n := range []*socketio.Namespace{h.nsp, h.admin} {
		n.OnDisconnect(h.onDisconnect)
		n.OnAny(h.onAny)
		n.OnUpgrade(h.onUpgrade)
		n.OnHeartbeat(h.onHeartbeat)
		n.SetDataFunc(h.socketData)
	}
	return h, nil
}

// Presence is the hub's presence store.
func (h *Hub) Presence() presence.Store { return h.presence }

// Namespace is the /tasks namespace, for the publish API.
func (h *Hub) Namespace() *socketio.Namespace { return h.nsp }

// session returns the hub's session of a socket, or nil.
func (h *Hub) session(id string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[id]
}

// socketData is a socket's data (what fetchSockets shows of it, on any
// instance of the cluster): its session's summary, made when asked.
func (h *Hub) socketData(s *socketio.Socket) any {
	if sess := h.session(s.ID()); sess != nil {
		return sess.summary()
	}
	return nil
}

func (h *Hub) onDisconnect(s *socketio.Socket, reason string) {
	if sess := h.session(s.ID()); sess != nil {
		sess.onDisconnect(reason)
	}
}

func (h *Hub) onAny(s *socketio.Socket, event string, args []any, ack socketio.Ack) {
	if sess := h.session(s.ID()); sess != nil {
		sess.onEvent(event, args, ack)
	}
}

func (h *Hub) onUpgrade(s *socketio.Socket) {
	if sess := h.session(s.ID()); sess != nil {
		sess.onUpgrade()
	}
}

func (h *Hub) onHeartbeat(s *socketio.Socket) {
	if sess := h.session(s.ID()); sess != nil && sess.heartbeats {
		sess.onHeartbeat()
	}
}

// enter registers background work that Shutdown waits for; false once
// the hub is shut down.
func (h *Hub) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	h.work.Add(1)
	return true
}

// Shutdown stops the background work: the token checks in flight are
// cancelled, and the session queues (presence calls, each bounded by the
// store's own timeout) are waited for, up to ctx. Call it after the
// Socket.IO server is shut down, before the presence store. It is
// idempotent.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.cancel()
	h.expiry.stop()
	done := make(chan struct{})
	go func() { h.work.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unauthenticatedRoom holds the sockets whose token failed, for the grace
// before they are disconnected, so that namespace-wide emits skip them.
const unauthenticatedRoom = "eventserver:unauthenticated"

// Emit sends an event to rooms (every authenticated client of the namespace
// when rooms is empty), except the sockets in except. It counts the event.
func (h *Hub) Emit(roomList, except []string, event string, args ...any) error {
	return h.emitVia(h.nsp.To(roomList...), except, event, args)
}

// emitVia emits on op, skipping the except rooms and the unauthenticated
// sockets, and counts the event.
func (h *Hub) emitVia(op socketio.BroadcastOperator, except []string, event string, args []any) error {
	h.m.EventsOut.WithLabelValues(metricEvent(event)).Inc()
	return op.Except(append(slices.Clip(except), unauthenticatedRoom)...).Emit(event, args...)
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

// metricEvent bounds the label values of event metrics.
func metricEvent(ev string) string {
	if protocol.Known(ev) {
		return ev
	}
	return "other"
}

// FetchSockets lists the sockets in rooms (every socket when rooms is
// empty) on every instance of the cluster. In cluster mode it waits for the
// other instances up to the adapter's request timeout, or ctx.
func (h *Hub) FetchSockets(ctx context.Context, roomList []string) ([]protocol.SocketInfo, error) {
	list, err := h.nsp.In(roomList...).FetchSockets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.SocketInfo, 0, len(list))
	for _, s := range list {
		info := protocol.SocketInfo{ID: s.ID, Rooms: append([]string{}, s.Rooms...), Data: s.Data}
		slices.Sort(info.Rooms)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b protocol.SocketInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// EventInstance is the server-side event by which instances of a cluster
// ask each other who they are (GET /api/v1/instances).
const EventInstance = "eventserver:instance"

// instanceInfo is this instance's answer to EventInstance.
func (h *Hub) instanceInfo() map[string]any {
	return map[string]any{"instance": h.cfg.Instance, "connections": h.Connections()}
}

func (h *Hub) onInstanceRequest(_ []any, ack socketio.Ack) {
	if ack != nil {
		ack(h.instanceInfo())
	}
}

// Instances asks every other instance of the cluster who it is and adds this
// one. Instances that do not answer within the adapter's request timeout are
// missing, and the error says how many answered.
func (h *Hub) Instances(ctx context.Context) ([]any, error) {
	answers, err := h.nsp.ServerSideEmitWithAck(ctx, EventInstance)
	self := h.instanceInfo()
	if errors.Is(err, socketio.ErrNoCluster) {
		// A single instance without a cluster adapter: only itself.
		return []any{self}, nil
	}
	return append([]any{self}, answers...), err
}
