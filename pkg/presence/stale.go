package presence

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// staleWatch logs, once, when a connected node stops pinging for longer
// than after, and again (at info) when it pings again. It uses one timer per
// node and no goroutine of its own.
type staleWatch struct {
	after time.Duration
	now   func() time.Time
	log   *zap.Logger

	mu      sync.Mutex
	nodes   map[string]*staleEntry
	stopped bool
}

type staleEntry struct {
	name  string
	last  time.Time
	timer *time.Timer
	stale bool
}

func newStaleWatch(after time.Duration, now func() time.Time, log *zap.Logger) *staleWatch {
	return &staleWatch{after: after, now: now, log: log, nodes: map[string]*staleEntry{}}
}

// seen records a sign of life of a connected node (a connect or a ping).
func (w *staleWatch) seen(key, name string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	e, ok := w.nodes[key]
	if !ok {
		e = &staleEntry{name: name, last: at}
		w.nodes[key] = e
		e.timer = time.AfterFunc(w.wait(at), func() { w.fire(key, e) })
		return
	}
	if at.Before(e.last) {
		return
	}
	e.last = at
	if e.stale {
		e.stale = false
		w.log.Info("node no longer stale", zap.String("node_id", key), zap.String("node_name", e.name),
			zap.Time("last_seen", at))
	}
	e.timer.Reset(w.wait(at))
}

func (w *staleWatch) wait(last time.Time) time.Duration {
	return max(0, last.Add(w.after).Sub(w.now())) + time.Millisecond
}

func (w *staleWatch) fire(key string, e *staleEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.nodes[key] != e || e.stale {
		return
	}
	if d := w.now().Sub(e.last); d <= w.after {
		e.timer.Reset(w.wait(e.last))
		return
	}
	e.stale = true
	w.log.Warn("node stale: connected but silent", zap.String("node_id", key), zap.String("node_name", e.name),
		zap.Time("last_seen", e.last), zap.Duration("stale_after", w.after))
}

// forget stops watching a node (it has no connection left here).
func (w *staleWatch) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.nodes[key]; ok {
		e.timer.Stop()
		delete(w.nodes, key)
	}
}

// stop stops every timer; seen does nothing afterwards.
func (w *staleWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	for k, e := range w.nodes {
		e.timer.Stop()
		delete(w.nodes, k)
	}
}
