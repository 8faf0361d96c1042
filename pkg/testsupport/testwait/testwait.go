// Package testwait is how the tests wait: poll a condition with a
// deadline, never a bare sleep.
package testwait

import (
	"testing"
	"time"
)

// For polls f every 10ms until it returns nil, and fails the test with f's
// last error once timeout has passed.
func For(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Until polls cond every 5ms until it holds, and fails the test once d has
// passed, saying what it waited for.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Holds checks, every 5ms and once more at the end, that cond holds for all
// of d.
func Holds(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if !cond() {
			t.Fatalf("%s: stopped holding", what)
		}
	}
	if !cond() {
		t.Fatalf("%s: stopped holding", what)
	}
}
