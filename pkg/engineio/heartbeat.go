package engineio

import (
	"sync"
	"time"
)

// heartbeats is the server's one schedule of session heartbeats: a heap of
// sessions by due time (Conn.hbDue), run by one goroutine, in place of a
// timer per session. A session is in it from its start to its close; its
// heartbeat (Conn.heartbeat) pings it or closes it, and schedules it again.
//
// Lock order: Conn.mu, then heartbeats.mu; run takes no Conn.mu while it
// holds heartbeats.mu.
type heartbeats struct {
	mu   sync.Mutex
	heap []*Conn
	wake chan struct{} // a new earliest due time
	done chan struct{} // closed by stop
	once sync.Once
}

func newHeartbeats() *heartbeats {
	return &heartbeats{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// schedule puts c in the schedule at due, or moves it there. c.mu is held.
func (hb *heartbeats) schedule(c *Conn, due int64) {
	hb.mu.Lock()
	c.hbDue = due
	if c.hbIdx < 0 {
		c.hbIdx = int32(len(hb.heap))
		hb.heap = append(hb.heap, c)
		hb.up(int(c.hbIdx))
	} else if !hb.up(int(c.hbIdx)) {
		hb.down(int(c.hbIdx))
	}
	first := c.hbIdx == 0
	hb.mu.Unlock()
	if first {
		select {
		case hb.wake <- struct{}{}:
		default:
		}
	}
}

// cancel takes c out of the schedule. c.mu is held.
func (hb *heartbeats) cancel(c *Conn) {
	hb.mu.Lock()
	if i := int(c.hbIdx); i >= 0 {
		last := len(hb.heap) - 1
		if i != last {
			hb.swap(i, last)
		}
		hb.heap[last] = nil
		hb.heap = hb.heap[:last]
		c.hbIdx = -1
		if i != last && !hb.up(i) {
			hb.down(i)
		}
	}
	if cap(hb.heap) > 1024 && len(hb.heap) < cap(hb.heap)/4 {
		hb.heap = append([]*Conn(nil), hb.heap...) // give back what a peak took
	}
	hb.mu.Unlock()
}

func (hb *heartbeats) less(i, j int) bool { return hb.heap[i].hbDue < hb.heap[j].hbDue }

func (hb *heartbeats) swap(i, j int) {
	h := hb.heap
	h[i], h[j] = h[j], h[i]
	h[i].hbIdx = int32(i)
	h[j].hbIdx = int32(j)
}

// up moves item i towards the root; true if it moved.
func (hb *heartbeats) up(i int) bool {
	moved := false
	for i > 0 {
		parent := (i - 1) / 2
		if !hb.less(i, parent) {
			break
		}
		hb.swap(i, parent)
		i = parent
		moved = true
	}
	return moved
}

func (hb *heartbeats) down(i int) {
	n := len(hb.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && hb.less(r, l) {
			m = r
		}
		if !hb.less(m, i) {
			return
		}
		hb.swap(i, m)
		i = m
	}
}

// popDue takes the sessions due by now out of the schedule, into batch.
func (hb *heartbeats) popDue(now int64, batch []*Conn) ([]*Conn, time.Duration) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	for len(hb.heap) > 0 && hb.heap[0].hbDue <= now {
		c := hb.heap[0]
		last := len(hb.heap) - 1
		hb.swap(0, last)
		hb.heap[last] = nil
		hb.heap = hb.heap[:last]
		c.hbIdx = -1
		hb.down(0)
		batch = append(batch, c)
	}
	if len(hb.heap) == 0 {
		return batch, -1
	}
	return batch, time.Duration(hb.heap[0].hbDue - now)
}

func (hb *heartbeats) stop() { hb.once.Do(func() { close(hb.done) }) }

// run beats the due sessions until stop; s.inflight counts it.
func (hb *heartbeats) run(s *Server) {
	defer s.inflight.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var batch []*Conn
	for {
		var next time.Duration
		batch, next = hb.popDue(time.Now().UnixNano(), batch[:0])
		for i, c := range batch {
			c.heartbeat()
			batch[i] = nil
		}
		if len(batch) > 0 {
			continue // the beats took time: look again before sleeping
		}
		if next < 0 {
			next = time.Hour
		}
		t.Reset(next)
		select {
		case <-t.C:
		case <-hb.wake:
		case <-hb.done:
			return
		}
	}
}
