package socketio

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Middleware runs on a CONNECT before the socket joins its namespace. It
// calls next once, now or later from any goroutine: nil connects, an
// error answers CONNECT_ERROR {"message": err.Error()} (plus "data" when
// the error is a *ConnectError).
type Middleware func(s *Socket, next func(error))

// ConnectError is a middleware error with data for the client.
type ConnectError struct {
	Message string
	Data    any
}

func (e *ConnectError) Error() string { return e.Message }

// Ack answers a client's event; nil when the client asked for none. Only
// the first call sends.
type Ack func(args ...any)

// EventHandler handles an event from a client.
type EventHandler func(s *Socket, args []any, ack Ack)

// Namespace is a Socket.IO namespace. Register its handlers before serving.
type Namespace struct {
	srv     *Server
	name    string
	adapter Adapter
	ids     atomic.Uint64 // broadcast ack ids

	mu           sync.RWMutex
	mws          []Middleware
	onConnect    func(*Socket)
	onDisconnect func(s *Socket, reason string)
	onAny        func(s *Socket, event string, args []any, ack Ack)
	events       map[string]EventHandler
	onUpgrade    func(*Socket)
	onHeartbeat  func(*Socket)
	serverSide   map[string]func(args []any, ack Ack)
	data         func(*Socket) any

	sockets [shards]socketShard
}

type socketShard struct {
	mu sync.RWMutex
	m  map[string]*Socket
}

func newNamespace(s *Server, name string) *Namespace {
	n := &Namespace{srv: s, name: name, events: map[string]EventHandler{}, serverSide: map[string]func([]any, Ack){}}
	for i := range n.sockets {
		n.sockets[i].m = make(map[string]*Socket)
	}
	return n
}

// Name of the namespace ("/tasks").
func (n *Namespace) Name() string { return n.name }

// Adapter of the namespace.
func (n *Namespace) Adapter() Adapter { return n.adapter }

// Server of the namespace.
func (n *Namespace) Server() *Server { return n.srv }

// Use adds a connect middleware.
func (n *Namespace) Use(m Middleware) {
	n.mu.Lock()
	n.mws = append(n.mws, m)
	n.mu.Unlock()
}

// OnConnection sets the handler of each new socket, called after the
// CONNECT ack was sent.
func (n *Namespace) OnConnection(fn func(*Socket)) { n.mu.Lock(); n.onConnect = fn; n.mu.Unlock() }

// OnDisconnect sets the handler called once per socket with the reason,
// after it left its rooms.
func (n *Namespace) OnDisconnect(fn func(s *Socket, reason string)) {
	n.mu.Lock()
	n.onDisconnect = fn
	n.mu.Unlock()
}

// On sets the handler of an event from clients.
func (n *Namespace) On(event string, h EventHandler) { n.mu.Lock(); n.events[event] = h; n.mu.Unlock() }

// OnAny sets a handler called for every event, before the event's own.
func (n *Namespace) OnAny(fn func(s *Socket, event string, args []any, ack Ack)) {
	n.mu.Lock()
	n.onAny = fn
	n.mu.Unlock()
}

// OnUpgrade sets the handler called when a socket's transport upgrades to
// websocket.
func (n *Namespace) OnUpgrade(fn func(*Socket)) { n.mu.Lock(); n.onUpgrade = fn; n.mu.Unlock() }

// OnHeartbeat sets the handler called for each Engine.IO pong of a socket's
// connection.
func (n *Namespace) OnHeartbeat(fn func(*Socket)) { n.mu.Lock(); n.onHeartbeat = fn; n.mu.Unlock() }

// SetDataFunc sets the function that gives the data (Socket.Data, what
// fetchSockets reports) of a socket with none set: computed when asked
// rather than kept with every socket.
func (n *Namespace) SetDataFunc(fn func(*Socket) any) { n.mu.Lock(); n.data = fn; n.mu.Unlock() }

func (n *Namespace) dataFunc() func(*Socket) any {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.data
}

// OnServerSideEmit sets the handler of an event that another server sent
// with ServerSideEmit; ack is nil when the sender expects no answer.
func (n *Namespace) OnServerSideEmit(event string, fn func(args []any, ack Ack)) {
	n.mu.Lock()
	n.serverSide[event] = fn
	n.mu.Unlock()
}

// HandleServerSideEmit delivers another server's serverSideEmit (data is
// the event name, then its arguments); an adapter calls it.
func (n *Namespace) HandleServerSideEmit(data []any, ack Ack) {
	if len(data) == 0 {
		return
	}
	event, _ := data[0].(string)
	n.mu.RLock()
	fn := n.serverSide[event]
	n.mu.RUnlock()
	if fn != nil {
		n.srv.safe(func() { fn(data[1:], ack) })
	}
}

// ServerSideEmit sends an event to this namespace on the other servers.
func (n *Namespace) ServerSideEmit(event string, args ...any) error {
	return n.adapter.ServerSideEmit(append([]any{event}, args...), nil)
}

// ServerSideEmitWithAck sends an event to the other servers and waits for
// their answers (the first argument of each).
func (n *Namespace) ServerSideEmitWithAck(ctx context.Context, event string, args ...any) ([]any, error) {
	type result struct {
		answers []any
		err     error
	}
	done := make(chan result, 1)
	err := n.adapter.ServerSideEmit(append([]any{event}, args...), func(a []any, err error) {
		select {
		case done <- result{a, err}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	select {
	case r := <-done:
		return r.answers, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Socket returns the local socket with id, or nil.
func (n *Namespace) Socket(id string) *Socket {
	sh := &n.sockets[shardOf(id)]
	sh.mu.RLock()
	s := sh.m[id]
	sh.mu.RUnlock()
	return s
}

// Len is the number of local sockets.
func (n *Namespace) Len() int {
	total := 0
	for i := range n.sockets {
		sh := &n.sockets[i]
		sh.mu.RLock()
		total += len(sh.m)
		sh.mu.RUnlock()
	}
	return total
}

func (n *Namespace) add(s *Socket) {
	sh := &n.sockets[shardOf(s.id)]
	sh.mu.Lock()
	sh.m[s.id] = s
	sh.mu.Unlock()
	if o, ok := n.adapter.(SocketObserver); ok {
		o.SocketAdded(s)
	}
}

func (n *Namespace) remove(s *Socket) {
	sh := &n.sockets[shardOf(s.id)]
	sh.mu.Lock()
	if sh.m[s.id] == s {
		delete(sh.m, s.id)
	}
	sh.mu.Unlock()
}

func (n *Namespace) appendSockets(dst []*Socket) []*Socket {
	for i := range n.sockets {
		sh := &n.sockets[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			dst = append(dst, s)
		}
		sh.mu.RUnlock()
	}
	return dst
}

func (n *Namespace) eachSocket(fn func(*Socket)) {
	bp := socketsPool.Get().(*[]*Socket)
	list := n.appendSockets((*bp)[:0])
	for _, s := range list {
		fn(s)
	}
	clear(list)
	*bp = list[:0]
	socketsPool.Put(bp)
}

// To selects the sockets in rooms for a broadcast (In is the same).
func (n *Namespace) To(rooms ...string) BroadcastOperator {
	return BroadcastOperator{nsp: n}.To(rooms...)
}

// In is To.
func (n *Namespace) In(rooms ...string) BroadcastOperator { return n.To(rooms...) }

// Except excludes the sockets in rooms from a broadcast.
func (n *Namespace) Except(rooms ...string) BroadcastOperator {
	return BroadcastOperator{nsp: n}.Except(rooms...)
}

// Local restricts a broadcast to this server.
func (n *Namespace) Local() BroadcastOperator { return BroadcastOperator{nsp: n}.Local() }

// Emit sends an event to every socket of the namespace.
func (n *Namespace) Emit(event string, args ...any) error {
	return BroadcastOperator{nsp: n}.Emit(event, args...)
}

// FetchSockets lists the sockets of the namespace on every server.
func (n *Namespace) FetchSockets(ctx context.Context) ([]SocketInfo, error) {
	return BroadcastOperator{nsp: n}.FetchSockets(ctx)
}

// DisconnectSockets disconnects every socket of the namespace.
func (n *Namespace) DisconnectSockets(close bool) { BroadcastOperator{nsp: n}.DisconnectSockets(close) }

// BroadcastOperator is an immutable selection of sockets: each method
// returns a new one.
type BroadcastOperator struct {
	nsp  *Namespace
	opts BroadcastOptions
}

// To adds rooms to the selection.
func (b BroadcastOperator) To(rooms ...string) BroadcastOperator {
	b.opts.Rooms = append(slices.Clip(b.opts.Rooms), rooms...)
	return b
}

// In is To.
func (b BroadcastOperator) In(rooms ...string) BroadcastOperator { return b.To(rooms...) }

// Except excludes the sockets in rooms.
func (b BroadcastOperator) Except(rooms ...string) BroadcastOperator {
	b.opts.Except = append(slices.Clip(b.opts.Except), rooms...)
	return b
}

// Local restricts the operation to this server.
func (b BroadcastOperator) Local() BroadcastOperator { b.opts.Flags.Local = true; return b }

// Volatile marks the broadcast volatile (carried to other servers).
func (b BroadcastOperator) Volatile() BroadcastOperator { b.opts.Flags.Volatile = true; return b }

// Timeout sets the ack timeout of EmitWithAck.
func (b BroadcastOperator) Timeout(d time.Duration) BroadcastOperator {
	b.opts.Flags.Timeout = d
	return b
}

// Options of the selection.
func (b BroadcastOperator) Options() BroadcastOptions { return b.opts }

// Emit broadcasts an event: encoded once, the same frames to every member.
func (b BroadcastOperator) Emit(event string, args ...any) error {
	data := make([]any, 0, 1+len(args))
	data = append(append(data, event), args...)
	b.nsp.adapter.Broadcast(&Packet{Type: PacketEvent, Nsp: b.nsp.name, Data: data}, b.opts)
	return nil
}

// EmitWithAck broadcasts an event and calls done once with every client's
// first ack argument, or with ErrAckTimeout and what arrived when the
// Timeout (default 5s) passes first.
func (b BroadcastOperator) EmitWithAck(done func(responses []any, err error), event string, args ...any) {
	s := b.nsp.srv
	if b.opts.Flags.Timeout <= 0 {
		b.opts.Flags.Timeout = 5 * time.Second
	}
	if !s.enter() {
		done(nil, ErrShutdown)
		return
	}
	st := &ackState{done: done, expectedServers: -1, leave: s.leave}
	// Set under the lock: a timeout shorter than this goroutine's next step
	// may fire first, and finish reads the timer under the same lock.
	st.mu.Lock()
	st.timer = time.AfterFunc(b.opts.Flags.Timeout, func() { st.finish(ErrAckTimeout) })
	st.mu.Unlock()
	// The server count may need a round trip to other servers.
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.Flags.Timeout)
		defer cancel()
		n, err := b.nsp.adapter.ServerCount(ctx)
		if err != nil {
			// Without the count the broadcast cannot know when every
			// server has answered: it ends at its timeout, with the
			// answers that came, rather than completing early as if
			// this server were the only one.
			return
		}
		st.mu.Lock()
		st.expectedServers = n
		st.mu.Unlock()
		st.check()
	}()
	data := append([]any{event}, args...)
	b.nsp.adapter.BroadcastWithAck(&Packet{Type: PacketEvent, Nsp: b.nsp.name, Data: data}, b.opts,
		func(n int) {
			st.mu.Lock()
			st.expectedClients += n
			st.servers++
			st.mu.Unlock()
			st.check()
		},
		func(arg any) {
			st.mu.Lock()
			st.responses = append(st.responses, arg)
			st.mu.Unlock()
			st.check()
		})
}

type ackState struct {
	mu              sync.Mutex
	done            func([]any, error)
	timer           *time.Timer
	expectedServers int
	servers         int
	expectedClients int
	responses       []any
	finished        bool
	leave           func()
}

func (st *ackState) check() {
	st.mu.Lock()
	complete := st.expectedServers >= 0 && st.servers >= st.expectedServers && len(st.responses) >= st.expectedClients
	st.mu.Unlock()
	if complete {
		st.finish(nil)
	}
}

func (st *ackState) finish(err error) {
	st.mu.Lock()
	if st.finished {
		st.mu.Unlock()
		return
	}
	st.finished = true
	st.timer.Stop()
	res := st.responses
	leave := st.leave
	st.mu.Unlock()
	st.done(res, err)
	if leave != nil {
		leave()
	}
}

// FetchSockets lists the selected sockets on every server.
func (b BroadcastOperator) FetchSockets(ctx context.Context) ([]SocketInfo, error) {
	return b.nsp.adapter.FetchSockets(ctx, b.opts)
}

// SocketsJoin makes the selected sockets join rooms.
func (b BroadcastOperator) SocketsJoin(rooms ...string) { b.nsp.adapter.AddSockets(b.opts, rooms) }

// SocketsLeave makes the selected sockets leave rooms.
func (b BroadcastOperator) SocketsLeave(rooms ...string) { b.nsp.adapter.DelSockets(b.opts, rooms) }

// DisconnectSockets disconnects the selected sockets; close closes their
// whole connection.
func (b BroadcastOperator) DisconnectSockets(close bool) {
	b.nsp.adapter.DisconnectSockets(b.opts, close)
}
