// Package testclock is a clock that tests move by hand, safe for
// concurrent use (the code under test reads it from its own goroutines).
package testclock

import (
	"sync"
	"time"
)

// Clock is a settable clock; its Now is what code under test is given as
// its clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock that reads t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
