package hub

import "time"

// EventLimit bounds the events one socket may send: a token bucket of
// Burst events refilled at Rate a second. Events over it are dropped
// without an answer (counted as refused, reason "rate"); a socket that
// keeps sending over its rate for FloodDisconnect is disconnected.
type EventLimit struct {
	// Rate is the sustained events a second; 0: no limit.
	Rate float64
	// Burst is how many may come at once. Zero: one second's worth, at least 1.
	Burst int
	// FloodDisconnect disconnects a socket over its rate that long without
	// a pause; 0: never.
	FloodDisconnect time.Duration
}

// eventBucket is one socket's state; it is touched only by the socket's
// event handler, which runs for one event at a time.
type eventBucket struct {
	tokens     float64
	last       int64 // unix nanoseconds of the last refill; 0: never (full)
	floodSince int64 // unix nanoseconds of the first refusal of this flood; 0: none
}

// verdict of one event.
type verdict uint8

const (
	admitted verdict = iota
	dropped          // over the rate
	flooding         // over the rate for FloodDisconnect: disconnect
)

// take decides on one event arriving at now.
func (b *eventBucket) take(l *EventLimit, now int64) verdict {
	if l.Rate <= 0 {
		return admitted
	}
	burst := float64(l.burst())
	if b.last == 0 {
		b.tokens = burst
	} else if now > b.last {
		b.tokens = min(burst, b.tokens+float64(now-b.last)*l.Rate/1e9)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		// The flood is over once the client has let its bucket refill to
		// half: a pause, not the odd event let through at the rate.
		if b.floodSince != 0 && b.tokens >= burst/2 {
			b.floodSince = 0
		}
		if b.floodSince != 0 && l.FloodDisconnect > 0 && now-b.floodSince >= int64(l.FloodDisconnect) {
			return flooding
		}
		return admitted
	}
	if b.floodSince == 0 {
		b.floodSince = now
	}
	if l.FloodDisconnect > 0 && now-b.floodSince >= int64(l.FloodDisconnect) {
		return flooding
	}
	return dropped
}

func (l *EventLimit) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(l.Rate))
}
