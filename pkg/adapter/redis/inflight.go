package redis

import (
	"sync"
	"time"
)

// inFlight is what an adapter of either broker waits for: its requests to
// the other servers, and its broadcasts with acknowledgements. mu also
// guards what the adapter keeps beside them under it.
type inFlight struct {
	mu       sync.Mutex
	closed   bool
	requests map[string]*pending
	acks     map[string]*ackRequest
}

func newInFlight() *inFlight {
	return &inFlight{requests: map[string]*pending{}, acks: map[string]*ackRequest{}}
}

// addAck keeps a broadcast with acknowledgements under id until timeout:
// as in Node, there is no telling when every client has answered, so it
// is forgotten after the broadcast's timeout. False once closed.
func (f *inFlight) addAck(id string, clientCount func(int), ack func(any), timeout time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	ar := &ackRequest{clientCount: clientCount, ack: ack}
	ar.timer = time.AfterFunc(timeout, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.acks[id] == ar {
			delete(f.acks, id)
		}
	})
	f.acks[id] = ar
	return true
}

// ackOf is the broadcast with acknowledgements of id, or nil.
func (f *inFlight) ackOf(id string) *ackRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acks[id]
}

// shutdown ends every request with ErrClosed and forgets every broadcast
// with acknowledgements; later calls do nothing.
func (f *inFlight) shutdown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for id, p := range f.requests {
		p.err = ErrClosed
		close(p.done)
		delete(f.requests, id)
	}
	for id, ar := range f.acks {
		ar.timer.Stop()
		delete(f.acks, id)
	}
}

func (f *inFlight) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}
