package engineio

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// wsConn is a websocket taken from net/http: a file descriptor in a
// poller. Fields marked c.mu are guarded by the session's mutex; the
// others belong to the poller (or to the handler before registration).
type wsConn struct {
	c *Conn
	p *poller
	// c.mu
	fd         int32
	closed     bool
	probe      bool
	registered bool
	wantOut    bool
	pending    []byte // bytes the kernel did not take yet
	// poller
	rx *wsRead // nil while no frame is incomplete (an idle websocket)
}

// wsRead is a websocket's incomplete input.
type wsRead struct {
	rbuf  []byte // an incomplete frame
	msg   []byte // a fragmented message
	msgOp byte
}

// read returns w.rx, made if need be. The poller.
func (w *wsConn) read() *wsRead {
	if w.rx == nil {
		w.rx = &wsRead{}
	}
	return w.rx
}

// tidy drops w.rx once nothing is incomplete. The poller.
func (w *wsConn) tidy() {
	if r := w.rx; r != nil && len(r.rbuf) == 0 && r.msgOp == 0 {
		w.rx = nil
	}
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range splitComma(v) {
			if equalFold(t, token) {
				return true
			}
		}
	}
	return false
}

func splitComma(v string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == ',' {
			t := v[start:i]
			for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
				t = t[1:]
			}
			for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
				t = t[:len(t)-1]
			}
			out = append(out, t)
			start = i + 1
		}
	}
	return out
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

var errNotSyscallConn = errors.New("engineio: hijacked connection has no file descriptor")

// hijack answers 101, writes first (may be nil), and takes the socket
// out of net/http. rest is what the client sent after its request.
func hijack(w http.ResponseWriter, key string, first []byte) (fd int, rest []byte, err error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return -1, nil, err
	}
	defer conn.Close()
	sc, ok := conn.(syscall.Conn) // not so under TLS: terminate TLS in front
	if !ok {
		_, _ = io.WriteString(conn, "HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return -1, nil, errNotSyscallConn
	}
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	_, _ = brw.WriteString(acceptKey(key))
	_, _ = brw.WriteString("\r\n\r\n")
	_, _ = brw.Write(first)
	if err := brw.Flush(); err != nil {
		return -1, nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		rest = append([]byte(nil), b...)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, nil, err
	}
	fd = -1
	cerr := raw.Control(func(f uintptr) {
		fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, nil, cerr
	}
	if err == nil {
		err = unix.SetNonblock(fd, true) // shared with the original already; made sure
	}
	return fd, rest, err
}

func wsKey(r *http.Request) string {
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return ""
	}
	return r.Header.Get("Sec-WebSocket-Key")
}

func (s *Server) pickPoller() *poller {
	i := atomic.AddUint32(&s.next, 1)
	return s.pollers[int(i)%len(s.pollers)]
}

// openWebSocket is a handshake that starts on websocket.
func (s *Server) openWebSocket(w http.ResponseWriter, r *http.Request) {
	key := wsKey(r)
	if key == "" {
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	c := s.newConn(w, r, tWebSocket)
	if c == nil {
		return
	}
	open := s.openPacket(c.id, false)
	fd, rest, err := hijack(w, key, appendFrame(nil, opText, 0, open))
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		s.remove(c)
		return
	}
	ws := &wsConn{c: c, p: s.pickPoller(), fd: int32(fd)}
	c.mu.Lock()
	c.ws = ws
	closed := c.closed
	c.mu.Unlock()
	if closed {
		_ = unix.Close(fd)
		return
	}
	c.start()
	if s.cfg.Hooks.Opened != nil {
		s.cfg.Hooks.Opened(TransportWebSocket)
	}
	if s.onConn != nil {
		c.safe(func() { s.onConn(c) })
	}
	ws.attach(rest)
}

// upgrade opens the probe websocket of a polling session.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, c *Conn) {
	key := wsKey(r)
	c.mu.Lock()
	closed, taken := c.closed, c.transport != tPolling || c.poll.probe != nil
	c.mu.Unlock()
	if closed || key == "" {
		writeError(w, http.StatusBadRequest, errBadRequest, "")
		return
	}
	if taken { // upgraded or upgrading already: open, then close at once, as Node does
		if fd, _, err := hijack(w, key, closeFrame(closeNormal)); fd >= 0 && err == nil {
			_ = unix.Close(fd)
		}
		return
	}
	fd, rest, err := hijack(w, key, nil)
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return
	}
	ws := &wsConn{c: c, p: s.pickPoller(), fd: int32(fd), probe: true}
	c.mu.Lock()
	if c.closed || c.transport != tPolling || c.poll.probe != nil {
		c.mu.Unlock()
		_ = unix.Close(fd)
		return
	}
	c.poll.probe = ws
	c.poll.upTimer = time.AfterFunc(s.cfg.UpgradeTimeout, func() { c.upgradeTimeout(ws) })
	c.mu.Unlock()
	ws.attach(rest)
}

func (c *Conn) upgradeTimeout(w *wsConn) {
	if !c.s.enter() {
		return
	}
	defer c.s.leave()
	w.fail(closeNormal, ReasonTransportError, nil)
}

// attach handles bytes that came with the upgrade request, then hands
// the socket to its poller.
func (w *wsConn) attach(rest []byte) {
	if len(rest) > 0 {
		w.feed(rest)
	}
	c := w.c
	c.mu.Lock()
	var err error
	if !w.closed {
		err = w.p.add(w)
	}
	c.mu.Unlock()
	if err != nil {
		w.fail(closeGoingAway, ReasonShutdown, err)
	}
}

func writeFd(fd int, b []byte) (int, error) {
	off := 0
	for off < len(b) {
		n, err := unix.Write(fd, b[off:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return off, nil
		case err != nil:
			return off, err
		}
		off += n
	}
	return off, nil
}

// write sends a frame now or queues what the kernel did not take. c.mu.
func (w *wsConn) write(b []byte) error {
	if w.closed {
		return ErrClosed
	}
	max := w.c.s.cfg.MaxWriteQueue
	if len(w.pending) > 0 {
		if len(w.pending)+len(b) > max {
			return ErrSlowConsumer
		}
		w.pending = append(w.pending, b...)
		return nil
	}
	n, err := writeFd(int(w.fd), b)
	if err != nil {
		return err
	}
	if n < len(b) {
		if len(b)-n > max {
			return ErrSlowConsumer
		}
		w.pending = append([]byte(nil), b[n:]...)
		w.watchOut(true)
	}
	return nil
}

func (w *wsConn) watchOut(on bool) {
	w.wantOut = on
	if w.registered {
		w.p.mod(int(w.fd), on)
	}
}

// flush writes pending bytes when the socket is writable again.
func (w *wsConn) flush() {
	c := w.c
	c.mu.Lock()
	if w.closed || len(w.pending) == 0 {
		c.mu.Unlock()
		return
	}
	n, err := writeFd(int(w.fd), w.pending)
	if err == nil {
		if n == len(w.pending) {
			w.pending = nil
			w.watchOut(false)
		} else {
			w.pending = append(w.pending[:0], w.pending[n:]...)
		}
	}
	c.mu.Unlock()
	if err != nil {
		w.fail(closeGoingAway, ReasonTransportError, err)
	}
}

// closeLocked sends a close frame if it can and closes the socket. c.mu.
func (w *wsConn) closeLocked(code int) {
	if w.closed {
		return
	}
	w.closed = true
	if len(w.pending) == 0 {
		_, _ = writeFd(int(w.fd), closeFrame(code))
	}
	w.pending = nil
	if w.registered {
		w.p.del(int(w.fd))
	}
	_ = unix.Close(int(w.fd))
	w.fd = -1
}

// fail closes the websocket; for the session's main websocket that
// closes the session, for a probe only the probe.
func (w *wsConn) fail(code int, reason string, err error) {
	c := w.c
	c.mu.Lock()
	if c.ws != w {
		w.closeLocked(code)
		if p := c.poll; p != nil && p.probe == w {
			p.probe = nil
			p.upgrading = false
			if p.upTimer != nil {
				p.upTimer.Stop()
			}
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.closeWith(reason, err, code, false)
}

func (w *wsConn) isClosed() bool {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.closed
}

// feed parses client frames; an incomplete one waits in rx.rbuf.
func (w *wsConn) feed(in []byte) {
	buf := in
	if w.rx != nil && len(w.rx.rbuf) > 0 {
		w.rx.rbuf = append(w.rx.rbuf, in...)
		buf = w.rx.rbuf
	}
	max := w.c.s.cfg.MaxPayload
	for len(buf) > 0 {
		h, ok, code := parseFrameHeader(buf, max)
		if code != 0 {
			err := ErrProtocol
			if code == closeTooBig {
				err = ErrMessageTooBig
			}
			w.rx = nil
			w.fail(code, ReasonTransportError, err)
			return
		}
		if !ok || len(buf) < h.hlen+h.length {
			break
		}
		payload := buf[h.hlen : h.hlen+h.length]
		unmask(payload, h.mask)
		buf = buf[h.hlen+h.length:]
		if w.frame(h, payload, max) {
			w.rx = nil
			return
		}
	}
	switch {
	case len(buf) == 0:
		if w.rx != nil {
			w.rx.rbuf = nil
		}
	case w.rx != nil && len(w.rx.rbuf) > 0:
		w.rx.rbuf = append(w.rx.rbuf[:0], buf...)
	default:
		w.read().rbuf = append([]byte(nil), buf...)
	}
	w.tidy()
}

// frame handles one client frame; true when the socket is closed.
func (w *wsConn) frame(h frameHeader, payload []byte, max int) bool {
	switch h.op {
	case opText, opBinary:
		if w.rx != nil && w.rx.msgOp != 0 {
			w.fail(closeProtocol, ReasonTransportError, ErrProtocol)
			return true
		}
		if !h.fin {
			r := w.read()
			r.msgOp = h.op
			r.msg = append([]byte(nil), payload...)
			return false
		}
		return w.message(h.op, payload)
	case opCont:
		if w.rx == nil || w.rx.msgOp == 0 {
			w.fail(closeProtocol, ReasonTransportError, ErrProtocol)
			return true
		}
		r := w.rx
		if len(r.msg)+len(payload) > max {
			w.fail(closeTooBig, ReasonTransportError, ErrMessageTooBig)
			return true
		}
		r.msg = append(r.msg, payload...)
		if !h.fin {
			return false
		}
		op, m := r.msgOp, r.msg
		r.msgOp, r.msg = 0, nil
		return w.message(op, m)
	case opPing:
		c := w.c
		c.mu.Lock()
		err := w.write(appendFrame(nil, opPong, 0, payload))
		post := nop
		if err != nil {
			post = c.failLocked(err)
		}
		c.mu.Unlock()
		post()
		return w.isClosed()
	case opPong:
		return false
	case opClose:
		w.fail(closeNormal, ReasonTransportClose, nil)
		return true
	}
	w.fail(closeProtocol, ReasonTransportError, ErrProtocol)
	return true
}

// message handles one complete websocket message.
func (w *wsConn) message(op byte, m []byte) bool {
	c := w.c
	c.mu.Lock()
	probe := w.probe
	c.mu.Unlock()
	if op == opBinary {
		if probe {
			w.fail(closeProtocol, ReasonTransportError, ErrProtocol)
			return true
		}
		c.onPacket(packet{typ: pMessage, bin: true, data: m})
		return w.isClosed()
	}
	if !utf8.Valid(m) {
		w.fail(closeInvalidData, ReasonTransportError, ErrProtocol)
		return true
	}
	if probe {
		return w.probePacket(m)
	}
	p, err := decodePacket(m, true)
	if err == nil && !fromClient(p.typ) {
		if p.typ == pPing && string(p.data) == "probe" {
			return false // a late probe on the upgraded socket
		}
		err = errBadPacket
	}
	if err != nil {
		c.closeWith(ReasonParseError, err, closeProtocol, false)
		return true
	}
	if p.typ == pClose {
		// As Node's engine.io: over websocket the client closes the
		// socket itself; a close packet is ignored (a peer that keeps the
		// socket open is an idle connection, and pings still run).
		return false
	}
	c.onPacket(p)
	return w.isClosed()
}

var frameProbe = []byte{0x80 | opText, 6, '3', 'p', 'r', 'o', 'b', 'e'}

// probePacket runs the upgrade: "2probe" → "3probe", then "5".
func (w *wsConn) probePacket(m []byte) bool {
	c := w.c
	switch string(m) {
	case "2probe":
		c.mu.Lock()
		if c.closed || w.closed {
			c.mu.Unlock()
			return true
		}
		err := w.write(frameProbe)
		if err == nil && c.poll != nil {
			c.poll.upgrading = true
			c.wakePoll()
		}
		c.mu.Unlock()
		if err != nil {
			w.fail(closeGoingAway, ReasonTransportError, err)
			return true
		}
		return false
	case "5":
		c.mu.Lock()
		p := c.poll
		if c.closed || w.closed || p == nil || !p.upgrading || p.probe != w {
			c.mu.Unlock()
			w.fail(closeProtocol, ReasonTransportError, ErrProtocol)
			return true
		}
		c.transport = tWebSocket
		c.ws, p.probe, w.probe, p.upgrading = w, nil, false, false
		if p.upTimer != nil {
			p.upTimer.Stop()
			p.upTimer = nil
		}
		var err error
		for _, q := range p.queue {
			if err = w.write(qFrame(q)); err != nil {
				break
			}
		}
		p.queue, p.queued = nil, 0
		c.wakePoll()
		c.poll = nil // the pending GET, if any, has its own reference
		h := c.h
		post := nop
		if err != nil {
			post = c.failLocked(err)
		}
		c.mu.Unlock()
		post()
		if hook := c.s.cfg.Hooks.Upgraded; hook != nil {
			hook()
		}
		if h != nil {
			c.safe(h.OnUpgrade)
		}
		return w.isClosed()
	}
	w.fail(closeProtocol, ReasonTransportError, ErrProtocol)
	return true
}

// poller is one epoll loop over websockets.
type poller struct {
	s       *Server
	epfd    int
	evfd    int
	mu      sync.Mutex
	stopped bool
	conns   []*wsConn // by file descriptor
}

func newPoller(s *Server) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, err
	}
	return &poller{s: s, epfd: epfd, evfd: evfd}, nil
}

// add registers w; w.c.mu is held.
func (p *poller) add(w *wsConn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrServerShutdown
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: w.fd}
	if w.wantOut {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(w.fd), &ev); err != nil {
		return err
	}
	fd := int(w.fd)
	if fd >= len(p.conns) {
		p.conns = append(p.conns, make([]*wsConn, fd+1-len(p.conns))...)
	}
	p.conns[fd] = w
	w.registered = true
	return nil
}

func (p *poller) mod(fd int, out bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

func (p *poller) del(fd int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	if fd < len(p.conns) {
		p.conns[fd] = nil
	}
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (p *poller) stop() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:])
}

func (p *poller) run() {
	defer p.s.inflight.Done()
	evs := make([]unix.EpollEvent, 128)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.EpollWait(p.epfd, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break
		}
		for i := 0; i < n; i++ {
			fd := int(evs[i].Fd)
			if fd == p.evfd {
				p.close()
				return
			}
			p.mu.Lock()
			var w *wsConn
			if fd < len(p.conns) {
				w = p.conns[fd]
			}
			p.mu.Unlock()
			if w == nil {
				continue
			}
			if evs[i].Events&unix.EPOLLOUT != 0 {
				w.flush()
			}
			if evs[i].Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				p.readable(w, buf)
			}
		}
	}
	p.close()
}

func (p *poller) readable(w *wsConn, buf []byte) {
	c := w.c
	c.mu.Lock()
	if w.closed {
		c.mu.Unlock()
		return
	}
	var n int
	var err error
	for {
		n, err = unix.Read(int(w.fd), buf)
		if err != unix.EINTR {
			break
		}
	}
	c.mu.Unlock()
	switch {
	case n > 0:
		w.feed(buf[:n])
	case err == unix.EAGAIN:
	default:
		w.fail(closeNormal, ReasonTransportClose, err)
	}
}

// close fails what is still registered and releases the poller.
func (p *poller) close() {
	p.mu.Lock()
	var left []*wsConn
	for _, w := range p.conns {
		if w != nil {
			left = append(left, w)
		}
	}
	p.mu.Unlock()
	for _, w := range left {
		w.fail(closeGoingAway, ReasonShutdown, ErrServerShutdown)
	}
	p.mu.Lock()
	p.stopped = true
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.evfd)
	p.mu.Unlock()
}
