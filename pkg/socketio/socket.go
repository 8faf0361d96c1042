package socketio

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventserver/eventserver/pkg/engineio"
)

// Handshake describes the connection of a socket, as Node's
// socket.handshake.
type Handshake struct {
	Headers http.Header // the headers named in engineio.Config.KeepHeaders
	Query   url.Values
	Auth    map[string]any // the CONNECT payload; {} when none or dropped (Socket.DropAuth)
	Address string
	Time    time.Time
	URL     string
}

// client is the Socket.IO state of one Engine.IO connection; it is the
// connection's engineio.Handler.
type client struct {
	srv     *Server
	conn    *engineio.Conn
	created int64 // unix nanoseconds

	wmu sync.Mutex // keeps a packet's frames together on the connection

	mu      sync.Mutex
	closed  bool
	sockets []*Socket // connected namespaces
	pending []string  // namespaces whose middleware runs
	recon   *reconstruction
	value   any // the application's value of the connection (Socket.ConnValue)
}

type reconstruction struct {
	p    inPacket
	att  [][]byte
	size int
}

// Socket is a client's connection to one namespace.
type Socket struct {
	id     string
	seq    uint64
	nsp    *Namespace
	client *client
	auth   map[string]any // nil: none, or dropped

	mu        sync.Mutex
	connected bool
	rooms     []string // joined rooms, own id excluded (MemoryAdapter)
	data      any
	acks      map[uint64]*pendingAck
	nextAck   uint64
	// ready is set once OnConnection has returned; the packets that
	// arrive before (the client may send right after the CONNECT ack,
	// while OnConnection still runs on another goroutine) wait in early
	// and are handled then, in order, as Node handles them after its
	// connection handlers.
	ready atomic.Bool
	early []inPacket // under mu
}

// maxEarly bounds the packets a socket may send before its OnConnection
// has returned; more closes the connection.
const maxEarly = 1024

type pendingAck struct {
	fn    func(args []any, err error)
	timer *time.Timer
}

// ID of the socket (a room of its own).
func (s *Socket) ID() string { return s.id }

// Namespace of the socket.
func (s *Socket) Namespace() *Namespace { return s.nsp }

// Conn is the Engine.IO connection, shared by the client's namespaces.
func (s *Socket) Conn() *engineio.Conn { return s.client.conn }

// Handshake of the socket's connection.
func (s *Socket) Handshake() Handshake {
	c := s.client.conn
	u := s.client.srv.cfg.Path
	if q := c.Query(); len(q) > 0 {
		u += "?" + q.Encode()
	}
	s.mu.Lock()
	auth := s.auth
	s.mu.Unlock()
	if auth == nil {
		auth = map[string]any{}
	}
	return Handshake{Headers: c.Header(), Query: c.Query(), Auth: auth, Address: c.RemoteAddr(),
		Time: time.Unix(0, s.client.created), URL: u}
}

// DropAuth forgets the CONNECT payload (e.g. a token, once the
// application has used it): Handshake().Auth is {} from then on.
func (s *Socket) DropAuth() { s.mu.Lock(); s.auth = nil; s.mu.Unlock() }

// ConnValue is the application's value of the socket's connection, shared
// by the connection's namespaces (nil until SetConnValue).
func (s *Socket) ConnValue() any {
	c := s.client
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value
}

// SetConnValue sets the application's value of the socket's connection.
func (s *Socket) SetConnValue(v any) {
	c := s.client
	c.mu.Lock()
	c.value = v
	c.mu.Unlock()
}

// Data is the application's value of the socket (fetchSockets reports
// it): the one set with SetData, else the namespace's data function's
// (Namespace.SetDataFunc), else nil.
func (s *Socket) Data() any {
	s.mu.Lock()
	v := s.data
	s.mu.Unlock()
	if v == nil {
		if fn := s.nsp.dataFunc(); fn != nil {
			return fn(s)
		}
	}
	return v
}

// SetData sets the application's value of the socket.
func (s *Socket) SetData(v any) { s.mu.Lock(); s.data = v; s.mu.Unlock() }

// Connected reports whether the socket is still in its namespace.
func (s *Socket) Connected() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.connected }

// Rooms of the socket, its own id first.
func (s *Socket) Rooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{s.id}, s.rooms...)
}

// Join adds the socket to rooms.
func (s *Socket) Join(rooms ...string) { s.nsp.adapter.AddAll(s, rooms) }

// Leave removes the socket from room.
func (s *Socket) Leave(room string) { s.nsp.adapter.Del(s, room) }

// To selects rooms for a broadcast that excludes this socket.
func (s *Socket) To(rooms ...string) BroadcastOperator {
	return s.nsp.To(rooms...).Except(s.id)
}

// Emit sends an event to this socket.
func (s *Socket) Emit(event string, args ...any) error {
	return s.send(&Packet{Type: PacketEvent, Nsp: s.nsp.name, Data: append([]any{event}, args...)})
}

// EmitWithAck sends an event and calls ack once with the client's answer,
// or with ErrAckTimeout after timeout (0: no timeout), or ErrDisconnected.
func (s *Socket) EmitWithAck(timeout time.Duration, ack func(args []any, err error), event string, args ...any) error {
	s.mu.Lock()
	id := s.nextAck
	s.nextAck++
	s.mu.Unlock()
	if !s.addAck(id, ack, timeout) {
		return ErrDisconnected
	}
	err := s.send(&Packet{Type: PacketEvent, Nsp: s.nsp.name, Data: append([]any{event}, args...), ID: &id})
	if err != nil {
		s.takeAck(id)
	}
	return err
}

// addAck registers an ack; false when the socket is disconnected.
func (s *Socket) addAck(id uint64, fn func([]any, error), timeout time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.connected {
		return false
	}
	if s.acks == nil {
		s.acks = make(map[uint64]*pendingAck, 1)
	}
	pa := &pendingAck{fn: fn}
	if timeout > 0 {
		srv := s.client.srv
		pa.timer = time.AfterFunc(timeout, func() {
			if !srv.enter() {
				return
			}
			defer srv.leave()
			if p := s.takeAck(id); p != nil {
				srv.safe(func() { p.fn(nil, ErrAckTimeout) })
			}
		})
	}
	s.acks[id] = pa
	return true
}

func (s *Socket) takeAck(id uint64) *pendingAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.acks[id]
	if p != nil {
		delete(s.acks, id)
		if p.timer != nil {
			p.timer.Stop()
		}
	}
	return p
}

// Disconnect leaves the namespace ("server namespace disconnect"); close
// also closes the connection and its other namespaces.
func (s *Socket) Disconnect(close bool) {
	if close {
		s.client.disconnectAll()
		return
	}
	if s.Connected() {
		_ = s.send(&Packet{Type: PacketDisconnect, Nsp: s.nsp.name})
	}
	s.onClose(ReasonServerDisconnect)
}

// send encodes a packet for this socket alone.
func (s *Socket) send(p *Packet) error {
	text, att, err := encodePacket(p)
	if err != nil {
		return err
	}
	c := s.client
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.Send(text, false); err != nil {
		return err
	}
	for _, b := range att {
		if err := c.conn.Send(b, true); err != nil {
			return err
		}
	}
	return nil
}

// writeFrames writes a prepared packet; a closed connection is skipped.
func (s *Socket) writeFrames(f prepared) {
	c := s.client
	c.wmu.Lock()
	for _, fr := range f {
		if c.conn.WritePrepared(fr) != nil {
			break
		}
	}
	c.wmu.Unlock()
}

// onClose leaves the namespace once: rooms, acks, then OnDisconnect.
func (s *Socket) onClose(reason string) {
	s.mu.Lock()
	if !s.connected {
		s.mu.Unlock()
		return
	}
	s.connected = false
	acks := s.acks
	s.acks = nil
	s.mu.Unlock()
	s.nsp.adapter.DelAll(s)
	s.nsp.remove(s)
	s.client.removeSocket(s)
	for _, p := range acks {
		if p.timer != nil {
			p.timer.Stop()
		}
		s.client.srv.safe(func() { p.fn(nil, ErrDisconnected) })
	}
	s.nsp.mu.RLock()
	fn := s.nsp.onDisconnect
	s.nsp.mu.RUnlock()
	if fn != nil {
		s.client.srv.safe(func() { fn(s, reason) })
	}
}

// onPacket handles a packet of the socket's namespace, or keeps it until
// the socket is ready.
func (s *Socket) onPacket(p inPacket) {
	if s.ready.Load() {
		s.handle(p)
		return
	}
	s.mu.Lock()
	if !s.ready.Load() {
		if len(s.early) >= maxEarly {
			s.mu.Unlock()
			s.client.fail()
			return
		}
		s.early = append(s.early, p)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.handle(p)
}

// setReady handles the packets that came before OnConnection returned,
// then lets the next ones through.
func (s *Socket) setReady() {
	for {
		s.mu.Lock()
		early := s.early
		s.early = nil
		if len(early) == 0 {
			s.ready.Store(true)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, p := range early {
			s.handle(p)
		}
	}
}

// handle acts on a packet of the socket's namespace.
func (s *Socket) handle(p inPacket) {
	switch p.typ {
	case PacketEvent, PacketBinaryEvent:
		args := p.data.([]any)
		var event string
		switch name := args[0].(type) {
		case string:
			event = name
		case json.Number:
			event = string(name)
		}
		var ack Ack
		if p.hasID {
			ack = s.ackFunc(p.id)
		}
		n := s.nsp
		n.mu.RLock()
		onAny, h := n.onAny, n.events[event]
		n.mu.RUnlock()
		s.client.srv.safe(func() {
			if onAny != nil {
				onAny(s, event, args[1:], ack)
			}
			if h != nil {
				h(s, args[1:], ack)
			}
		})
	case PacketAck, PacketBinaryAck:
		if !p.hasID {
			return
		}
		if pa := s.takeAck(p.id); pa != nil {
			args := p.data.([]any)
			s.client.srv.safe(func() { pa.fn(args, nil) })
		}
	case PacketDisconnect:
		s.onClose(ReasonClientDisconnect)
	}
}

func (s *Socket) ackFunc(id uint64) Ack {
	var once sync.Once
	return func(args ...any) {
		once.Do(func() {
			if args == nil {
				args = []any{}
			}
			_ = s.send(&Packet{Type: PacketAck, Nsp: s.nsp.name, Data: args, ID: &id})
		})
	}
}

// safe runs a user function; a panic is reported, not propagated.
func (s *Server) safe(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			s.encodeError(fmt.Errorf("socketio: handler panic: %v", v))
		}
	}()
	fn()
}

// ---- client ----

func (c *client) fail() { c.conn.Close(ReasonParseError) }

func (c *client) OnMessage(data []byte, binary bool) {
	c.mu.Lock()
	if binary {
		r := c.recon
		if r == nil {
			c.mu.Unlock()
			c.fail()
			return
		}
		r.size += len(data)
		if r.size > c.maxPending() {
			c.recon = nil
			c.mu.Unlock()
			c.fail()
			return
		}
		r.att = append(r.att, append([]byte(nil), data...))
		if len(r.att) < r.p.attachments {
			c.mu.Unlock()
			return
		}
		c.recon = nil
		c.mu.Unlock()
		v, err := reconstruct(r.p.data, r.att)
		if err != nil {
			c.fail()
			return
		}
		r.p.data = v
		c.dispatch(r.p)
		return
	}
	if c.recon != nil {
		c.recon = nil
		c.mu.Unlock()
		c.fail()
		return
	}
	p, err := decodePacket(data, c.srv.cfg.MaxAttachments)
	if err != nil {
		c.mu.Unlock()
		c.fail()
		return
	}
	if p.attachments > 0 {
		c.recon = &reconstruction{p: p, att: make([][]byte, 0, p.attachments)}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.dispatch(p)
}

func (c *client) maxPending() int {
	if m := c.srv.cfg.Engine.MaxPayload; m > 0 {
		return m
	}
	return 1_000_000
}

func (c *client) socketOf(nsp string) *Socket {
	for _, s := range c.sockets {
		if s.nsp.name == nsp {
			return s
		}
	}
	return nil
}

func (c *client) dispatch(p inPacket) {
	c.mu.Lock()
	s := c.socketOf(p.nsp)
	connecting := false
	for _, n := range c.pending {
		connecting = connecting || n == p.nsp
	}
	c.mu.Unlock()
	switch {
	case p.typ == PacketConnect && s == nil && !connecting:
		c.connect(p)
	case s != nil && p.typ != PacketConnect && p.typ != PacketConnectError:
		s.onPacket(p)
	default:
		c.fail() // invalid state, as Node: close
	}
}

func (c *client) connect(p inPacket) {
	nsp, mws := c.srv.lookup(p.nsp)
	if nsp == nil {
		c.connectError(p.nsp, &ConnectError{Message: "Invalid namespace"})
		return
	}
	auth, _ := p.data.(map[string]any)
	if len(auth) == 0 {
		auth = nil // Handshake makes {} when asked
	}
	s := &Socket{id: newSocketID(), seq: c.srv.seq.Add(1), nsp: nsp, client: c, auth: auth}
	c.mu.Lock()
	c.pending = append(c.pending, p.nsp)
	c.mu.Unlock()
	nsp.mu.RLock()
	chain := append(append([]Middleware(nil), mws...), nsp.mws...)
	nsp.mu.RUnlock()
	c.run(s, chain)
}

// run calls the middleware chain; each next may come from any goroutine.
func (c *client) run(s *Socket, chain []Middleware) {
	if len(chain) == 0 {
		c.joined(s, nil)
		return
	}
	var once sync.Once
	next := func(err error) {
		once.Do(func() {
			if err != nil {
				c.joined(s, err)
				return
			}
			c.run(s, chain[1:])
		})
	}
	c.srv.safe(func() { chain[0](s, next) })
}

// joined ends a CONNECT: the CONNECT ack and OnConnection, or CONNECT_ERROR.
func (c *client) joined(s *Socket, err error) {
	name := s.nsp.name
	c.mu.Lock()
	for i, n := range c.pending {
		if n == name {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			break
		}
	}
	if c.closed {
		c.mu.Unlock()
		return
	}
	if err == nil {
		s.connected = true // not yet visible to others
		c.sockets = append(c.sockets, s)
		s.nsp.add(s)
	}
	c.mu.Unlock()
	if err != nil {
		ce, ok := err.(*ConnectError)
		if !ok {
			ce = &ConnectError{Message: err.Error()}
		}
		c.connectError(name, ce)
		return
	}
	c.conn.SetConnected()
	b := appendHeader(make([]byte, 0, 64), PacketConnect, 0, name, nil)
	b = append(append(append(b, `{"sid":"`...), s.id...), `"}`...)
	c.wmu.Lock()
	_ = c.conn.Send(b, false)
	c.wmu.Unlock()
	s.nsp.mu.RLock()
	fn := s.nsp.onConnect
	s.nsp.mu.RUnlock()
	if fn != nil {
		c.srv.safe(func() { fn(s) })
	}
	s.setReady()
}

func (c *client) connectError(nsp string, e *ConnectError) {
	body := map[string]any{"message": e.Message}
	if e.Data != nil {
		body["data"] = e.Data
	}
	b, err := appendJSON(appendHeader(nil, PacketConnectError, 0, nsp, nil), body)
	if err != nil {
		c.srv.encodeError(err)
		return
	}
	c.wmu.Lock()
	_ = c.conn.Send(b, false)
	c.wmu.Unlock()
}

func (c *client) removeSocket(s *Socket) {
	c.mu.Lock()
	for i, x := range c.sockets {
		if x == s {
			c.sockets = append(c.sockets[:i], c.sockets[i+1:]...)
			break
		}
	}
	idle := len(c.sockets) == 0 && len(c.pending) == 0
	c.mu.Unlock()
	if idle {
		// Nothing open on the connection: the connect timeout applies
		// again (a real client closes it itself; one that does not would
		// otherwise hold it for good, e.g. after the server disconnects
		// its only socket for a bad token).
		c.conn.SetIdle()
	}
}

func (c *client) snapshot() []*Socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Socket(nil), c.sockets...)
}

// disconnectAll is Disconnect(true): every namespace, then the connection.
func (c *client) disconnectAll() {
	for _, s := range c.snapshot() {
		s.Disconnect(false)
	}
	c.conn.Close(engineio.ReasonForced)
}

func (c *client) OnClose(reason string, _ error) {
	c.mu.Lock()
	c.closed = true
	c.recon = nil
	c.mu.Unlock()
	for _, s := range c.snapshot() {
		s.onClose(reason)
	}
}

func (c *client) OnUpgrade() {
	for _, s := range c.snapshot() {
		s.nsp.mu.RLock()
		fn := s.nsp.onUpgrade
		s.nsp.mu.RUnlock()
		if fn != nil {
			c.srv.safe(func() { fn(s) })
		}
	}
}

func (c *client) OnHeartbeat() {
	for _, s := range c.snapshot() {
		s.nsp.mu.RLock()
		fn := s.nsp.onHeartbeat
		s.nsp.mu.RUnlock()
		if fn != nil {
			c.srv.safe(func() { fn(s) })
		}
	}
}
