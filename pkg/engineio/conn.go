package engineio

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

const (
	tPolling uint8 = iota
	tWebSocket
)

// Handler receives the events of one session; set it with SetHandler (or
// set single callbacks with OnMessage, OnClose, OnUpgrade, OnHeartbeat).
// The methods run as the callbacks do (see the package comment).
type Handler interface {
	// OnMessage gets a message; data is valid only during the call.
	OnMessage(data []byte, binary bool)
	// OnClose is called once when the session closes.
	OnClose(reason string, err error)
	// OnUpgrade is called when polling upgrades to websocket.
	OnUpgrade()
	// OnHeartbeat is called for each pong received.
	OnHeartbeat()
}

// funcHandler is the Handler of the single-callback setters.
type funcHandler struct {
	onMessage   func(data []byte, binary bool)
	onClose     func(reason string, err error)
	onUpgrade   func()
	onHeartbeat func()
}

func (f *funcHandler) OnMessage(data []byte, binary bool) {
	if f.onMessage != nil {
		f.onMessage(data, binary)
	}
}

func (f *funcHandler) OnClose(reason string, err error) {
	if f.onClose != nil {
		f.onClose(reason, err)
	}
}

func (f *funcHandler) OnUpgrade() {
	if f.onUpgrade != nil {
		f.onUpgrade()
	}
}

func (f *funcHandler) OnHeartbeat() {
	if f.onHeartbeat != nil {
		f.onHeartbeat()
	}
}

// Conn is one Engine.IO session. Its methods are safe for concurrent use.
//
// An idle websocket session is this struct, its wsConn and its place in
// the server's heartbeat schedule: what only polling needs is in poll
// (nil once upgraded or when it opened on websocket), and no session has
// a timer of its own once connected.
type Conn struct {
	s          *Server
	id         string
	rawQuery   string
	remoteAddr string
	header     []string // name, value, ...: the kept headers; nil once dropped
	release    func()   // Config.Admit's, called once when the session is removed
	h          Handler

	mu           sync.Mutex
	closed       bool
	connected    bool
	transport    uint8
	awaitingPong bool
	lingering    bool        // closed; the next GET gets the queue and the close packet
	closePacket  byte        // answer of the pending GET once closed: pClose or pNoop
	hbIdx        int32       // place in s.hb's heap (s.hb.mu), -1: not scheduled
	hbDue        int64       // unix nanos the heartbeat is due (written under c.mu and s.hb.mu)
	aux          *time.Timer // connect timeout, or linger
	ws           *wsConn
	poll         *pollState
}

// pollState is what a session needs while on polling (and upgrading).
type pollState struct {
	queue     []qpacket // packets waiting for a GET
	queued    int
	pollCh    chan struct{} // the pending GET waits on it
	posting   bool
	upgrading bool
	upTimer   *time.Timer // upgrade timeout
	probe     *wsConn
}

// ID is the session id (sid).
func (c *Conn) ID() string { return c.id }

// Header holds the handshake request headers named in Config.KeepHeaders
// (a new map at each call), until DropHeaders.
func (c *Conn) Header() http.Header {
	c.mu.Lock()
	kv := c.header
	c.mu.Unlock()
	h := make(http.Header, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

// DropHeaders forgets the kept headers (e.g. a token, once the upper layer
// has used it): Header is empty from then on.
func (c *Conn) DropHeaders() {
	c.mu.Lock()
	c.header = nil
	c.mu.Unlock()
}

// Query of the handshake request (parsed at each call).
func (c *Conn) Query() url.Values {
	q, _ := url.ParseQuery(c.rawQuery)
	return q
}

// RemoteAddr of the handshake request.
func (c *Conn) RemoteAddr() string { return c.remoteAddr }

// Transport is "polling" or "websocket".
func (c *Conn) Transport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.transport == tWebSocket {
		return TransportWebSocket
	}
	return TransportPolling
}

// SetHandler sets the session's Handler (replacing single callbacks set
// before).
func (c *Conn) SetHandler(h Handler) {
	c.mu.Lock()
	c.h = h
	c.mu.Unlock()
}

// funcs is the funcHandler to set a single callback in; c.mu.
func (c *Conn) funcs() *funcHandler {
	f, ok := c.h.(*funcHandler)
	if !ok {
		f = &funcHandler{}
		c.h = f
	}
	return f
}

// OnMessage sets the message callback; data is valid only during the call.
func (c *Conn) OnMessage(fn func(data []byte, binary bool)) {
	c.mu.Lock()
	c.funcs().onMessage = fn
	c.mu.Unlock()
}

// OnClose sets the callback called once when the session closes.
func (c *Conn) OnClose(fn func(reason string, err error)) {
	c.mu.Lock()
	c.funcs().onClose = fn
	c.mu.Unlock()
}

// OnUpgrade sets the callback called when polling upgrades to websocket.
func (c *Conn) OnUpgrade(fn func()) {
	c.mu.Lock()
	c.funcs().onUpgrade = fn
	c.mu.Unlock()
}

// OnHeartbeat sets the callback called for each pong received.
func (c *Conn) OnHeartbeat(fn func()) {
	c.mu.Lock()
	c.funcs().onHeartbeat = fn
	c.mu.Unlock()
}

func (c *Conn) handler() Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.h
}

// SetConnected stops the connect timeout.
func (c *Conn) SetConnected() {
	c.mu.Lock()
	c.connected = true
	if c.aux != nil {
		c.aux.Stop()
		c.aux = nil
	}
	c.mu.Unlock()
}

// SetIdle restarts the connect timeout: the upper layer has nothing open
// on the session any more (its last namespace left), and a client that
// opens none again within Config.ConnectTimeout is closed, as one that
// never opened any.
func (c *Conn) SetIdle() {
	d := c.s.cfg.ConnectTimeout
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 || c.closed || !c.connected {
		return
	}
	c.connected = false
	if c.aux != nil {
		c.aux.Stop()
	}
	c.aux = time.AfterFunc(d, c.connectTimeout)
}

// Close closes the session with reason; queued packets are still
// delivered to a polling client on its next GET.
func (c *Conn) Close(reason string) {
	c.closeWith(reason, nil, closeNormal, true)
}

// safe runs a user callback; a panic closes the session instead of the
// process (the poller and timers have no net/http recover).
func (c *Conn) safe(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			c.closeWith(ReasonTransportError, fmt.Errorf("engineio: callback panic: %v", v), closeGoingAway, false)
		}
	}()
	fn()
}

func (c *Conn) start() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.s.hb.schedule(c, time.Now().Add(c.s.cfg.PingInterval).UnixNano())
	if d := c.s.cfg.ConnectTimeout; d > 0 && !c.connected {
		c.aux = time.AfterFunc(d, c.connectTimeout)
	}
	c.mu.Unlock()
}

func (c *Conn) connectTimeout() {
	if !c.s.enter() {
		return
	}
	defer c.s.leave()
	c.mu.Lock()
	late := !c.connected
	c.mu.Unlock()
	if late {
		c.closeWith(ReasonConnectTimeout, nil, closeNormal, false)
	}
}

func (c *Conn) heartbeat() {
	if !c.s.enter() {
		return
	}
	defer c.s.leave()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if now := time.Now().UnixNano(); now < c.hbDue {
		c.s.hb.schedule(c, c.hbDue) // a pong came meanwhile: scheduled again already
		c.mu.Unlock()
		return
	}
	if c.awaitingPong {
		c.mu.Unlock()
		c.closeWith(ReasonPingTimeout, nil, closeNormal, false)
		return
	}
	c.awaitingPong = true
	c.s.hb.schedule(c, c.hbDue+int64(c.s.cfg.PingTimeout)) // from when the ping was due, not from a late run
	post := c.writeLocked(framePing, qpacket{data: framePing[2:]})
	c.mu.Unlock()
	post()
}

// pingExpired closes the session if its pong is overdue, so that a
// request is never served after the deadline because the timer is late.
func (c *Conn) pingExpired() bool {
	c.mu.Lock()
	due := c.hbDue
	if !c.awaitingPong {
		due += int64(c.s.cfg.PingTimeout) // the ping itself is late
	}
	late := !c.closed && time.Now().UnixNano() >= due
	c.mu.Unlock()
	if late {
		c.closeWith(ReasonPingTimeout, nil, closeNormal, false)
	}
	return late
}

func (c *Conn) setHeartbeat(d time.Duration) {
	c.s.hb.schedule(c, time.Now().Add(d).UnixNano())
}

// Send sends a message: text, or binary when binary is true.
func (c *Conn) Send(data []byte, binary bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	var post func()
	if c.transport == tWebSocket {
		bp := framePool.Get().(*[]byte)
		var f []byte
		if binary {
			f = appendFrame((*bp)[:0], opBinary, 0, data)
		} else {
			f = appendFrame((*bp)[:0], opText, pMessage, data)
		}
		post = c.writeLocked(f, qpacket{})
		*bp = f
		if cap(f) <= 64<<10 {
			framePool.Put(bp)
		}
	} else {
		var q qpacket
		if binary {
			q = qpacket{data: append([]byte(nil), data...), bin: true}
		} else {
			q = qpacket{data: append([]byte{pMessage}, data...)}
		}
		post = c.writeLocked(nil, q)
	}
	c.mu.Unlock()
	post()
	return nil
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// PreparedFrame is a message encoded once — as a ready websocket frame
// and as a polling packet — to be written to many connections.
type PreparedFrame struct {
	frame []byte // websocket frame; frame[hlen:] is the packet
	hlen  int
	bin   bool
}

// NewPreparedFrame encodes a message once for WritePrepared.
func NewPreparedFrame(data []byte, binary bool) *PreparedFrame {
	n := len(data)
	op, prefix := byte(opBinary), byte(0)
	if !binary {
		op, prefix = opText, pMessage
		n++
	}
	f := appendFrame(make([]byte, 0, frameHeaderLen(n)+n), op, prefix, data)
	return &PreparedFrame{frame: f, hlen: frameHeaderLen(n), bin: binary}
}

// Bytes is the websocket frame (for tests and metrics).
func (p *PreparedFrame) Bytes() []byte { return p.frame }

// WritePrepared writes a prepared message; the frame is shared, not copied.
func (c *Conn) WritePrepared(p *PreparedFrame) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	post := c.writeLocked(p.frame, qpacket{data: p.frame[p.hlen:], bin: p.bin})
	c.mu.Unlock()
	post()
	return nil
}

func nop() {}

// writeLocked writes a websocket frame or queues a polling packet,
// whichever the current transport takes. It returns what to run once
// c.mu is released (a close).
func (c *Conn) writeLocked(frame []byte, q qpacket) func() {
	if c.closed {
		return nop
	}
	if c.transport == tWebSocket {
		if c.ws == nil { // still in its handshake
			return nop
		}
		if frame == nil {
			frame = qFrame(q)
		}
		if err := c.ws.write(frame); err != nil {
			return c.failLocked(err)
		}
		return nop
	}
	if q.data == nil {
		return nop
	}
	p := c.poll
	if p == nil {
		return nop
	}
	n := q.pollLen()
	if p.queued+n > c.s.cfg.MaxWriteQueue {
		return c.failLocked(ErrSlowConsumer)
	}
	p.queue = append(p.queue, q)
	p.queued += n + 1
	c.wakePoll()
	return nop
}

// failLocked turns a write error into a close after unlock.
func (c *Conn) failLocked(err error) func() {
	if err == ErrSlowConsumer {
		return func() {
			if h := c.s.cfg.Hooks.SlowConsumer; h != nil {
				h()
			}
			c.closeWith(ReasonSlowConsumer, err, closeGoingAway, false)
		}
	}
	return func() { c.closeWith(ReasonTransportError, err, closeGoingAway, false) }
}

func qFrame(q qpacket) []byte {
	if q.bin {
		return appendFrame(nil, opBinary, 0, q.data)
	}
	return appendFrame(nil, opText, 0, q.data)
}

func (c *Conn) wakePoll() {
	if c.poll != nil && c.poll.pollCh != nil {
		select {
		case c.poll.pollCh <- struct{}{}:
		default:
		}
	}
}

// closeWith closes the session once. linger keeps a polling session
// without a pending GET until its next GET (or PingTimeout) when it has
// packets queued or the client closed it: a GET that raced the close
// packet is answered rather than refused.
func (c *Conn) closeWith(reason string, err error, code int, linger bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.s.hb.cancel(c)
	if c.aux != nil {
		c.aux.Stop()
	}
	p := c.poll
	if p != nil {
		if p.upTimer != nil {
			p.upTimer.Stop()
		}
		if p.probe != nil {
			p.probe.closeLocked(code)
			p.probe = nil
		}
	}
	if c.ws != nil {
		c.ws.closeLocked(code)
	}
	if reason == ReasonTransportClose {
		c.closePacket = pNoop
	} else {
		c.closePacket = pClose
	}
	if p != nil && p.pollCh != nil {
		c.wakePoll()
	} else if linger && p != nil && c.transport == tPolling && (len(p.queue) > 0 || reason == ReasonTransportClose) {
		c.lingering = true
		c.aux = time.AfterFunc(c.s.cfg.PingTimeout, func() {
			if c.s.enter() {
				c.s.remove(c)
				c.s.leave()
			}
		})
	}
	lingering := c.lingering
	h := c.h
	c.mu.Unlock()
	if !lingering {
		c.s.remove(c)
	}
	if hook := c.s.cfg.Hooks.Closed; hook != nil {
		hook(reason)
	}
	if h != nil {
		defer func() { _ = recover() }()
		h.OnClose(reason, err)
	}
}

// fromClient reports whether a client may send a packet of type typ on
// an open transport (a v4 client never pings).
func fromClient(typ byte) bool {
	return typ == pMessage || typ == pPong || typ == pClose || typ == pNoop
}

// onPacket handles a packet from the client on the current transport.
func (c *Conn) onPacket(p packet) (stop bool) {
	switch p.typ {
	case pMessage:
		if h := c.handler(); h != nil {
			c.safe(func() { h.OnMessage(p.data, p.bin) })
		}
	case pPong:
		c.mu.Lock()
		if c.awaitingPong && !c.closed {
			c.awaitingPong = false
			c.setHeartbeat(c.s.cfg.PingInterval)
		}
		h := c.h
		c.mu.Unlock()
		if h != nil {
			c.safe(h.OnHeartbeat)
		}
	case pNoop:
	case pClose:
		c.closeWith(ReasonTransportClose, nil, closeNormal, true)
		return true
	default:
		c.closeWith(ReasonParseError, errBadPacket, closeProtocol, false)
		return true
	}
	return false
}

// upgradeGrace is how long a GET that arrives while a probe websocket is
// attached waits for the upgrade to finish before it is ended with a noop:
// the client may have sent "2probe" and "5" before this GET, and the
// poller may not have read them yet.
const upgradeGrace = 50 * time.Millisecond

// poll answers a long-polling GET: at once if packets wait, else when
// one is queued or the session closes or upgrades.
func (c *Conn) longPoll(w http.ResponseWriter, r *http.Request) {
	if c.pingExpired() {
		writeError(w, http.StatusBadRequest, errUnknownSid, "")
		return
	}
	c.mu.Lock()
	if c.transport != tPolling {
		c.mu.Unlock()
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	p := c.poll
	if p.pollCh != nil {
		c.mu.Unlock()
		c.closeWith(ReasonTransportError, ErrPollOverlap, closeProtocol, false)
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	if c.closed && !c.lingering {
		c.mu.Unlock()
		writeError(w, http.StatusBadRequest, errUnknownSid, "")
		return
	}
	var grace <-chan time.Time
	if p.probe != nil {
		t := time.NewTimer(upgradeGrace)
		defer t.Stop()
		grace = t.C
	}
	for !c.closed && len(p.queue) == 0 && c.transport == tPolling && !(p.upgrading && grace == nil) {
		ch := make(chan struct{}, 1)
		p.pollCh = ch
		c.mu.Unlock()
		select {
		case <-ch:
		case <-grace:
			grace = nil
		case <-r.Context().Done():
		}
		c.mu.Lock()
		p.pollCh = nil
		if r.Context().Err() != nil && !c.closed {
			c.mu.Unlock()
			return // the client left; its packets stay queued
		}
	}
	if c.transport != tPolling { // upgraded meanwhile: this GET came after "5"
		c.mu.Unlock()
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	body := appendPayload(make([]byte, 0, p.queued+1), p.queue)
	p.queue, p.queued = nil, 0
	end := byte(0)
	if c.closed {
		end = c.closePacket
	} else if p.upgrading {
		end = pNoop
	}
	if end != 0 {
		if len(body) > 0 {
			body = append(body, recordSeparator)
		}
		body = append(body, end)
	}
	drop := c.lingering
	c.mu.Unlock()
	if drop {
		c.s.remove(c)
	}
	writePoll(w, body)
}

// post takes a polling payload. Nothing is delivered from a body over
// MaxPayload (413) or with an invalid packet (400, session closed).
func (c *Conn) post(w http.ResponseWriter, r *http.Request) {
	max := c.s.cfg.MaxPayload
	if c.pingExpired() {
		writeError(w, http.StatusBadRequest, errUnknownSid, "")
		return
	}
	c.mu.Lock()
	if c.transport != tPolling || c.closed {
		c.mu.Unlock()
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	p := c.poll
	if p.posting {
		c.mu.Unlock()
		c.closeWith(ReasonTransportError, ErrPollOverlap, closeProtocol, false)
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	p.posting = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		p.posting = false
		c.mu.Unlock()
	}()
	if r.ContentLength > int64(max) {
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if len(body) > max {
		// A body without a length (chunked) that passes the bound: 413 after
		// at most max payload + 1 bytes read, nothing of it delivered. The
		// session stays usable, as with Node (the conformance suite's
		// maxpayload/polling-chunked checks it against Node's engine.io).
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	pks, err := decodePayload(body)
	for _, pk := range pks {
		if !fromClient(pk.typ) {
			err = errBadPacket
		}
	}
	if err != nil {
		c.closeWith(ReasonParseError, err, closeProtocol, false)
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	for _, pk := range pks {
		if c.onPacket(pk) {
			break
		}
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "ok")
}
