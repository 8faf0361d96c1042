package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errDown = errors.New("down")

// TestRunCountsFailuresAndPauses: the failures in a row reach the attempt and
// the pause; a success resets them, and so does Reset.
func TestRunCountsFailuresAndPauses(t *testing.T) {
	results := []error{errDown, errDown, nil, errDown, Reset(errDown), errDown, ErrStop}
	var seen, paused []int
	l := Loop{Pause: func(n int) time.Duration { paused = append(paused, n); return time.Millisecond }}
	i := 0
	err := l.Run(context.Background(), func(_ context.Context, failures int) error {
		seen = append(seen, failures)
		i++
		return results[i-1]
	})
	if err != nil {
		t.Fatalf("Run = %v, want nil after ErrStop", err)
	}
	if want := []int{0, 1, 2, 0, 1, 1, 2}; !equal(seen, want) {
		t.Errorf("failures seen by the attempts %v, want %v", seen, want)
	}
	if want := []int{0, 1, 0, 0, 1}; !equal(paused, want) {
		t.Errorf("pauses asked for %v, want %v", paused, want)
	}
}

// TestRunStopsWithContext: a cancelled context ends a pause, and the
// outcome of an attempt during which it ended is not retried.
func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	calls := make(chan struct{}, 10)
	go func() {
		done <- Loop{Pause: Fixed(time.Hour)}.Run(ctx, func(context.Context, int) error {
			calls <- struct{}{}
			return errDown
		})
	}()
	<-calls
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when ctx ended")
	}
	if len(calls) != 0 {
		t.Errorf("%d more attempts after ctx ended", len(calls))
	}

	// Already ended: no attempt.
	if err := (Loop{Pause: Fixed(0)}).Run(ctx, func(context.Context, int) error {
		t.Error("attempt with an ended context")
		return nil
	}); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// TestRunEveryAndWake: Every paces the first attempt and the successes;
// Wake ends the wait early.
func TestRunEveryAndWake(t *testing.T) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	start := time.Now()
	n := 0
	err := Loop{Every: time.Hour, Pause: Fixed(time.Hour), Wake: wake}.Run(context.Background(), func(context.Context, int) error {
		n++
		if n == 1 {
			wake <- struct{}{}
			return nil
		}
		return ErrStop
	})
	if err != nil || n != 2 {
		t.Fatalf("Run = %v after %d attempts, want nil after 2", err, n)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("took %s: Wake did not end the waits", d)
	}
}

func TestBackoffAndFixed(t *testing.T) {
	if d := Fixed(3 * time.Second)(7); d != 3*time.Second {
		t.Errorf("Fixed = %s", d)
	}
	for n := range 10 {
		if d := Backoff(time.Second, 8*time.Second)(n); d < 500*time.Millisecond || d > 8*time.Second {
			t.Errorf("Backoff(%d) = %s, out of [min/2, max]", n, d)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
