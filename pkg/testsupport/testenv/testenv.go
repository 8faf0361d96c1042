// Package testenv is what the tests that run other programs share: skipping
// without a prerequisite (failing under CI=true) and a buffer a child
// process may write to while the test reads it.
package testenv

import (
	"bytes"
	"os"
	"sync"
	"testing"
)

// Need skips a test that lacks what (a program, node_modules, ...), except
// under CI=true, where it fails.
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (CI=true: failing instead of skipping); .ci/run installs it", what)
	}
	t.Skipf("%s is missing; run .ci/run or install it", what)
}

// Buffer is a bytes.Buffer safe for os/exec's copying goroutine and the
// test's reads.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
