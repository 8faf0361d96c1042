package socketio

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/eventserver/eventserver/pkg/engineio"
)

// BroadcastFlags are the flags of a broadcast, as Node's adapters carry
// them (Local is never sent to other servers).
type BroadcastFlags struct {
	Local                bool
	Volatile             bool
	Compress             *bool
	Timeout              time.Duration // ack timeout; 0: none
	ExpectSingleResponse bool
}

// BroadcastOptions select the sockets of a broadcast: those in any of
// Rooms (every socket of the namespace when Rooms is empty) and in none of
// Except. A socket id is a room of its own.
type BroadcastOptions struct {
	Rooms  []string
	Except []string
	Flags  BroadcastFlags
}

// SocketInfo describes a socket of the cluster, as fetchSockets answers.
type SocketInfo struct {
	ID        string
	Handshake Handshake
	Rooms     []string
	Data      any
}

// ErrNoCluster is returned by the in-memory adapter for what needs other
// servers (serverSideEmit).
var ErrNoCluster = errors.New("socketio: the adapter has no other servers")

// Adapter keeps a namespace's room index and carries its broadcasts and
// requests, like Node's Adapter class. MemoryAdapter is the single-server
// implementation; a cluster adapter embeds it for local delivery and
// adds the messages to other servers. Broadcast and the membership
// methods must not block; the methods that take a context may wait for
// other servers.
type Adapter interface {
	AddAll(s *Socket, rooms []string)
	Del(s *Socket, room string)
	DelAll(s *Socket)
	Broadcast(p *Packet, opts BroadcastOptions)
	// BroadcastWithAck calls clientCount once per server with the number
	// of sockets reached there, and ack with each client's first argument.
	BroadcastWithAck(p *Packet, opts BroadcastOptions, clientCount func(n int), ack func(arg any))
	FetchSockets(ctx context.Context, opts BroadcastOptions) ([]SocketInfo, error)
	AddSockets(opts BroadcastOptions, rooms []string)
	DelSockets(opts BroadcastOptions, rooms []string)
	DisconnectSockets(opts BroadcastOptions, close bool)
	// ServerSideEmit sends data (event name first) to the other servers'
	// namespace; with ack non-nil, ack gets their answers (first argument
	// of each) or an error once the adapter's timeout passed.
	ServerSideEmit(data []any, ack func(answers []any, err error)) error
	ServerCount(ctx context.Context) (int, error)
	AllRooms(ctx context.Context) ([]string, error)
	Close()
}

// SocketObserver is implemented by an adapter that must know when a
// socket enters its namespace (its own room is implicit, so AddAll does
// not tell): the sharded Redis adapter subscribes the socket's own room
// channel then. SocketAdded runs before the connect handlers and must not
// block.
type SocketObserver interface {
	SocketAdded(s *Socket)
}

// AdapterFactory makes a namespace's adapter.
type AdapterFactory func(nsp *Namespace) Adapter

const shards = 32

var seed = maphash.MakeSeed()

func shardOf(key string) int { return int(maphash.String(seed, key) % shards) }

type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]roomSet
}

// roomSet is the members of one room: the only one inline (a room of one
// socket, the most common, costs no map of its own), or a set once two.
type roomSet struct {
	one  *Socket
	many map[*Socket]struct{}
}

// add returns the set with s added.
func (rs roomSet) add(s *Socket) roomSet {
	switch {
	case rs.many != nil:
		rs.many[s] = struct{}{}
	case rs.one == nil || rs.one == s:
		rs.one = s
	default:
		rs.many = map[*Socket]struct{}{rs.one: {}, s: {}}
		rs.one = nil
	}
	return rs
}

// del returns the set without s; empty is true when no member is left.
func (rs roomSet) del(s *Socket) (out roomSet, empty bool) {
	if rs.many == nil {
		if rs.one == s {
			rs.one = nil
		}
		return rs, rs.one == nil
	}
	delete(rs.many, s)
	if len(rs.many) == 1 {
		for m := range rs.many {
			rs.one = m
		}
		rs.many = nil
	}
	return rs, rs.one == nil && len(rs.many) == 0
}

// appendTo appends the members to dst.
func (rs roomSet) appendTo(dst []*Socket) []*Socket {
	if rs.one != nil {
		return append(dst, rs.one)
	}
	for s := range rs.many {
		dst = append(dst, s)
	}
	return dst
}

// MemoryAdapter is the in-memory Adapter: a room index sharded by room
// name. A broadcast copies the members under a shard's read lock and
// writes to them with no lock held.
type MemoryAdapter struct {
	nsp    *Namespace
	shards [shards]roomShard
}

var _ Adapter = (*MemoryAdapter)(nil)

// NewMemoryAdapter is the default AdapterFactory.
func NewMemoryAdapter(nsp *Namespace) Adapter { return newMemoryAdapter(nsp) }

func newMemoryAdapter(nsp *Namespace) *MemoryAdapter {
	a := &MemoryAdapter{nsp: nsp}
	for i := range a.shards {
		a.shards[i].rooms = make(map[string]roomSet)
	}
	return a
}

// NewMemory returns the in-memory adapter of nsp, for a cluster adapter to
// embed.
func NewMemory(nsp *Namespace) *MemoryAdapter { return newMemoryAdapter(nsp) }

// Namespace of the adapter.
func (a *MemoryAdapter) Namespace() *Namespace { return a.nsp }

// AddAll adds s to rooms (its own id is implicit).
func (a *MemoryAdapter) AddAll(s *Socket, rooms []string) {
	for _, r := range rooms {
		if r == s.id {
			continue
		}
		s.mu.Lock()
		if !s.connected || slices.Contains(s.rooms, r) {
			s.mu.Unlock()
			continue
		}
		s.rooms = append(s.rooms, r)
		s.mu.Unlock()
		sh := &a.shards[shardOf(r)]
		sh.mu.Lock()
		sh.rooms[r] = sh.rooms[r].add(s)
		sh.mu.Unlock()
	}
}

// Del removes s from room.
func (a *MemoryAdapter) Del(s *Socket, room string) {
	s.mu.Lock()
	i := slices.Index(s.rooms, room)
	if i < 0 {
		s.mu.Unlock()
		return
	}
	s.rooms = slices.Delete(s.rooms, i, i+1)
	s.mu.Unlock()
	a.delMember(s, room)
}

func (a *MemoryAdapter) delMember(s *Socket, room string) {
	sh := &a.shards[shardOf(room)]
	sh.mu.Lock()
	if rs, ok := sh.rooms[room]; ok {
		if rs, empty := rs.del(s); empty {
			delete(sh.rooms, room)
		} else {
			sh.rooms[room] = rs
		}
	}
	sh.mu.Unlock()
}

// DelAll removes s from every room.
func (a *MemoryAdapter) DelAll(s *Socket) {
	s.mu.Lock()
	rooms := s.rooms
	s.rooms = nil
	s.mu.Unlock()
	for _, r := range rooms {
		a.delMember(s, r)
	}
}

// HasRoom reports whether a local socket is in room.
func (a *MemoryAdapter) HasRoom(room string) bool {
	sh := &a.shards[shardOf(room)]
	sh.mu.RLock()
	_, ok := sh.rooms[room]
	sh.mu.RUnlock()
	return ok || a.nsp.Socket(room) != nil
}

// Rooms lists the local rooms, socket ids included.
func (a *MemoryAdapter) Rooms() []string {
	var out []string
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.RLock()
		for r := range sh.rooms {
			out = append(out, r)
		}
		sh.mu.RUnlock()
	}
	a.nsp.eachSocket(func(s *Socket) { out = append(out, s.id) })
	slices.Sort(out)
	return slices.Compact(out)
}

var socketsPool = sync.Pool{New: func() any { s := make([]*Socket, 0, 256); return &s }}

func bySeq(a, b *Socket) int {
	switch {
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// members appends the local sockets of rooms (all sockets when rooms is
// empty), sorted and without duplicates when several rooms are given.
func (a *MemoryAdapter) members(dst []*Socket, rooms []string) []*Socket {
	if len(rooms) == 0 {
		return a.nsp.appendSockets(dst)
	}
	implicit := false
	for _, r := range rooms {
		sh := &a.shards[shardOf(r)]
		sh.mu.RLock()
		dst = sh.rooms[r].appendTo(dst)
		sh.mu.RUnlock()
		if s := a.nsp.Socket(r); s != nil {
			dst = append(dst, s)
			implicit = true
		}
	}
	if len(rooms) > 1 || (implicit && len(dst) > 1) {
		slices.SortFunc(dst, bySeq)
		dst = slices.Compact(dst)
	}
	return dst
}

// apply calls fn for every local socket that opts select, with no lock
// held.
func (a *MemoryAdapter) apply(opts BroadcastOptions, fn func(*Socket)) {
	bp := socketsPool.Get().(*[]*Socket)
	list := a.members((*bp)[:0], opts.Rooms)
	var ex []*Socket
	var ep *[]*Socket
	if len(opts.Except) > 0 {
		ep = socketsPool.Get().(*[]*Socket)
		ex = a.members((*ep)[:0], opts.Except)
		slices.SortFunc(ex, bySeq)
	}
	for _, s := range list {
		if ex != nil {
			if _, found := slices.BinarySearchFunc(ex, s, bySeq); found {
				continue
			}
		}
		fn(s)
	}
	clear(list)
	*bp = list[:0]
	socketsPool.Put(bp)
	if ep != nil {
		clear(ex)
		*ep = ex[:0]
		socketsPool.Put(ep)
	}
}

// Broadcast encodes p once and writes the same frames to every selected
// local socket.
func (a *MemoryAdapter) Broadcast(p *Packet, opts BroadcastOptions) {
	p.Nsp = a.nsp.name
	frames, err := prepare(p)
	if err != nil {
		a.nsp.srv.encodeError(err)
		return
	}
	a.apply(opts, func(s *Socket) { s.writeFrames(frames) })
}

// BroadcastWithAck is Broadcast with an ack id; each client's ack calls
// ack with its first argument.
func (a *MemoryAdapter) BroadcastWithAck(p *Packet, opts BroadcastOptions, clientCount func(int), ack func(any)) {
	p.Nsp = a.nsp.name
	id := a.nsp.ids.Add(1) - 1
	p.ID = &id
	frames, err := prepare(p)
	if err != nil {
		a.nsp.srv.encodeError(err)
		clientCount(0)
		return
	}
	n := 0
	a.apply(opts, func(s *Socket) {
		if s.addAck(id, func(args []any, err error) {
			if err == nil {
				var first any
				if len(args) > 0 {
					first = args[0]
				}
				ack(first)
			}
		}, opts.Flags.Timeout) {
			n++
			s.writeFrames(frames)
		}
	})
	clientCount(n)
}

// FetchSockets describes the local sockets that opts select.
func (a *MemoryAdapter) FetchSockets(_ context.Context, opts BroadcastOptions) ([]SocketInfo, error) {
	var out []SocketInfo
	a.apply(opts, func(s *Socket) {
		out = append(out, SocketInfo{ID: s.id, Handshake: s.Handshake(), Rooms: s.Rooms(), Data: s.Data()})
	})
	return out, nil
}

// AddSockets makes the selected local sockets join rooms.
func (a *MemoryAdapter) AddSockets(opts BroadcastOptions, rooms []string) {
	a.apply(opts, func(s *Socket) { s.Join(rooms...) })
}

// DelSockets makes the selected local sockets leave rooms.
func (a *MemoryAdapter) DelSockets(opts BroadcastOptions, rooms []string) {
	a.apply(opts, func(s *Socket) {
		for _, r := range rooms {
			s.Leave(r)
		}
	})
}

// DisconnectSockets disconnects the selected local sockets.
func (a *MemoryAdapter) DisconnectSockets(opts BroadcastOptions, close bool) {
	a.apply(opts, func(s *Socket) { s.Disconnect(close) })
}

// ServerSideEmit has no other server to reach.
func (a *MemoryAdapter) ServerSideEmit([]any, func([]any, error)) error { return ErrNoCluster }

// ServerCount is 1.
func (a *MemoryAdapter) ServerCount(context.Context) (int, error) { return 1, nil }

// AllRooms lists the local rooms.
func (a *MemoryAdapter) AllRooms(context.Context) ([]string, error) { return a.Rooms(), nil }

// Close does nothing.
func (a *MemoryAdapter) Close() {}

// prepared is a packet encoded once: its text frame, then its attachments.
type prepared []*engineio.PreparedFrame

func prepare(p *Packet) (prepared, error) {
	text, att, err := encodePacket(p)
	if err != nil {
		return nil, err
	}
	out := make(prepared, 0, 1+len(att))
	out = append(out, engineio.NewPreparedFrame(text, false))
	for _, b := range att {
		out = append(out, engineio.NewPreparedFrame(b, true))
	}
	return out, nil
}
