package hub

// The methods below act on this instance's sockets only. They serve messages
// that every instance receives by itself (the Flask-SocketIO message queue),
// where going through the cluster adapter would deliver each event once per
// instance.

// EmitLocal is Emit restricted to this instance's sockets: to rooms (every
// authenticated socket of the namespace when rooms is empty), except the
// sockets in the except rooms (a socket id is a room of its own).
func (h *Hub) EmitLocal(roomList, except []string, event string, args ...any) error {
	return h.emitVia(h.nsp.Local().To(roomList...), except, event, args)
}

// LeaveLocal makes this instance's sockets leave room.
func (h *Hub) LeaveLocal(room string) {
	h.nsp.Local().In(room).SocketsLeave(room)
}

// DisconnectLocal disconnects the socket with id sid when it is on this
// instance, and reports whether it was.
func (h *Hub) DisconnectLocal(sid string) bool {
	h.mu.Lock()
	s, ok := h.sessions[sid]
	h.mu.Unlock()
	if ok {
		s.sock.Disconnect(true)
	}
	return ok
}
