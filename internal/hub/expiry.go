package hub

import (
	"container/heap"
	"sync"
	"time"
)

// expiry is the hub's one schedule of token expiries and auth-grace
// disconnects: a heap of sessions by due time and one goroutine, in place
// of a timer (and its closure) per socket. A session is in it at most once:
// its token's expiry, or the disconnect at the end of its grace
// (session.kicking), whichever is armed.
//
// The goroutine runs while something is scheduled, is counted in the hub's
// work, and stops at Shutdown. Lock order: session.mu, then expiry.mu.
type expiry struct {
	h *Hub

	mu      sync.Mutex
	q       expHeap
	running bool
	stopped bool
	wake    chan struct{}
}

func newExpiry(h *Hub) *expiry { return &expiry{h: h, wake: make(chan struct{}, 1)} }

// expHeap orders sessions by session.due (expiry.mu).
type expHeap []*session

func (q expHeap) Len() int           { return len(q) }
func (q expHeap) Less(i, j int) bool { return q[i].due < q[j].due }
func (q expHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx = int32(i)
	q[j].idx = int32(j)
}
func (q *expHeap) Push(x any) {
	s := x.(*session)
	s.idx = int32(len(*q))
	*q = append(*q, s)
}
func (q *expHeap) Pop() any {
	old := *q
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	s.idx = -1
	return s
}

// schedule arms s's one entry after d (real time, as a timer would),
// replacing what was armed. session.mu is held.
func (e *expiry) schedule(s *session, d time.Duration, kick bool) {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	s.due = time.Now().Add(d).UnixNano()
	s.kick = kick
	if s.idx < 0 {
		heap.Push(&e.q, s)
	} else {
		heap.Fix(&e.q, int(s.idx))
	}
	first := s.idx == 0
	start := !e.running && e.h.enter()
	if start {
		e.running = true
	}
	e.mu.Unlock()
	if start {
		go e.run()
	} else if first {
		e.poke()
	}
}

// cancel disarms s's entry. session.mu is held.
func (e *expiry) cancel(s *session) {
	e.mu.Lock()
	if s.idx >= 0 {
		heap.Remove(&e.q, int(s.idx))
	}
	empty := len(e.q) == 0
	if cap(e.q) > 1024 && len(e.q) < cap(e.q)/4 {
		e.q = append(expHeap(nil), e.q...) // give back what a peak took
	}
	e.mu.Unlock()
	if empty {
		e.poke() // the goroutine stops when nothing is left
	}
}

func (e *expiry) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// stop ends the goroutine; nothing is scheduled any more.
func (e *expiry) stop() {
	e.mu.Lock()
	e.stopped = true
	for len(e.q) > 0 {
		heap.Pop(&e.q)
	}
	e.mu.Unlock()
	e.poke()
}

// next pops a due entry (and whether it was a kick), or says how long
// until the next one; ok false when the goroutine should stop (nothing
// scheduled, or stopped).
func (e *expiry) next() (s *session, kick bool, wait time.Duration, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped || len(e.q) == 0 {
		e.running = false
		return nil, false, 0, false
	}
	if wait = time.Duration(e.q[0].due - time.Now().UnixNano()); wait > 0 {
		return nil, false, wait, true
	}
	s = heap.Pop(&e.q).(*session)
	return s, s.kick, 0, true
}

func (e *expiry) run() {
	defer e.h.work.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s, kick, wait, ok := e.next()
		if !ok {
			return
		}
		if s != nil {
			if kick {
				s.onGraceOver()
			} else {
				s.onExpired()
			}
			continue
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-e.wake:
		}
	}
}
