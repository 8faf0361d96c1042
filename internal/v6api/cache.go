package v6api

import (
	"sync"
	"time"
)

// cache keeps values for a fixed time. Expired entries are dropped when they
// are read and, every ttl, by a sweep on write; there is no goroutine.
type cache struct {
	ttl time.Duration

	mu        sync.Mutex
	m         map[string]cacheEntry
	lastSweep time.Time
}

type cacheEntry struct {
	v   any
	exp time.Time
}

func newCache(ttl time.Duration) *cache {
	return &cache{ttl: ttl, m: map[string]cacheEntry{}}
}

func (c *cache) get(key string, now time.Time) (any, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	if !now.Before(e.exp) {
		delete(c.m, key)
		return nil, false
	}
	return e.v, true
}

func (c *cache) put(key string, v any, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) >= c.ttl {
		for k, e := range c.m {
			if !now.Before(e.exp) {
				delete(c.m, k)
			}
		}
		c.lastSweep = now
	}
	c.m[key] = cacheEntry{v: v, exp: now.Add(c.ttl)}
}

// len is the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
