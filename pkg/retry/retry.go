// Package retry runs the fail-and-recover loops of the server's background
// goroutines (subscriptions, refreshes, writers): an attempt, a pause, the
// next attempt, until the loop is stopped.
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/eventserver/eventserver/pkg/backoff"
)

// ErrStop, returned by an attempt, ends Run at once (Run returns nil).
var ErrStop = errors.New("retry: stop")

// Reset wraps the error of an attempt that got going before it failed (a
// subscription that was made, then lost): the count of failures in a row
// starts again, so the pause is the first one.
func Reset(err error) error { return &resetError{err} }

type resetError struct{ err error }

func (e *resetError) Error() string { return e.err.Error() }
func (e *resetError) Unwrap() error { return e.err }

// Fixed pauses d after every failure.
func Fixed(d time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return d }
}

// Backoff pauses backoff.Pause(failures, minD, maxD): exponential, with
// jitter.
func Backoff(minD, maxD time.Duration) func(int) time.Duration {
	return func(failures int) time.Duration { return backoff.Pause(failures, minD, maxD) }
}

// Loop says how Run paces its attempts.
type Loop struct {
	// Pause is the pause after a failed attempt; failures is the number
	// of failures in a row before that one (0 for the first).
	Pause func(failures int) time.Duration
	// Every is the wait before the first attempt and after each one that
	// succeeded; zero runs them at once.
	Every time.Duration
	// Wake, when it receives, ends a wait early (optional).
	Wake <-chan struct{}
}

// Run calls attempt until ctx ends (it returns ctx's error) or attempt
// returns ErrStop (it returns nil). attempt gets the number of failures in a
// row before it, so that it can log the first failure and the recovery; an
// error is a failure, followed by Pause, nil a success, followed by Every.
// When ctx ends during an attempt, Run returns ctx's error unless the
// attempt returned ErrStop.
func (l Loop) Run(ctx context.Context, attempt func(ctx context.Context, failures int) error) error {
	if l.Every > 0 && !l.wait(ctx, l.Every) {
		return ctx.Err()
	}
	failures := 0
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err := attempt(ctx, failures)
		if errors.Is(err, ErrStop) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var d time.Duration
		var reset *resetError
		switch {
		case err == nil:
			failures, d = 0, l.Every
		case errors.As(err, &reset):
			failures, d = 1, l.Pause(0)
		default:
			d = l.Pause(failures)
			failures++
		}
		if d > 0 && !l.wait(ctx, d) {
			return ctx.Err()
		}
	}
}

// wait waits d, or less when Wake receives; false when ctx ends first.
func (l Loop) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-l.Wake:
	}
	return true
}
