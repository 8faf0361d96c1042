package console

import (
	"sync"
	"time"
)

// failures slows down sign-in attempts per client address: after
// maxFails wrong tokens within window, the address is refused (even with
// the right token) for a delay that doubles with each further failure,
// up to maxDelay. Memory is bounded: at most cap addresses, the idlest
// evicted first.
type failures struct {
	maxFails int
	window   time.Duration
	base     time.Duration
	maxDelay time.Duration
	cap      int
	now      func() time.Time

	mu sync.Mutex
	m  map[string]*failEntry
}

type failEntry struct {
	count   int       // failures since first
	first   time.Time // start of the counting window
	last    time.Time
	strikes int       // blocks so far: the next delay doubles
	until   time.Time // refused until then
}

func newFailures(now func() time.Time) *failures {
	return &failures{maxFails: 5, window: time.Minute, base: 5 * time.Second, maxDelay: 5 * time.Minute, cap: 10000,
		now: now, m: map[string]*failEntry{}}
}

// blocked returns how long addr must still wait, or 0.
func (f *failures) blocked(addr string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[addr]
	if e == nil {
		return 0
	}
	if d := e.until.Sub(f.now()); d > 0 {
		return d
	}
	return 0
}

// fail records a wrong token from addr.
func (f *failures) fail(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	e := f.m[addr]
	if e == nil {
		if len(f.m) >= f.cap {
			f.evictLocked(now)
		}
		e = &failEntry{first: now}
		f.m[addr] = e
	}
	// A quiet address starts counting afresh (but keeps its strikes while
	// it is remembered, so that a slow, patient guesser keeps being slowed).
	if now.Sub(e.last) > f.window && e.until.Before(now) {
		e.count, e.first = 0, now
	}
	e.count++
	e.last = now
	if e.count >= f.maxFails {
		d := f.base << min(e.strikes, 16)
		e.strikes++
		e.until = now.Add(min(d, f.maxDelay))
	}
}

// ok forgets addr after a successful sign-in.
func (f *failures) ok(addr string) {
	f.mu.Lock()
	delete(f.m, addr)
	f.mu.Unlock()
}

// evictLocked drops the entries idle for longer than the longest delay and,
// when that frees nothing, the idlest one.
func (f *failures) evictLocked(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, e := range f.m {
		if now.Sub(e.last) > f.maxDelay+f.window && e.until.Before(now) {
			delete(f.m, k)
			continue
		}
		if oldest == "" || e.last.Before(oldestAt) {
			oldest, oldestAt = k, e.last
		}
	}
	if len(f.m) >= f.cap && oldest != "" {
		delete(f.m, oldest)
	}
}

func (f *failures) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}
