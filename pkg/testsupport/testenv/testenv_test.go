package testenv

import (
	"sync"
	"testing"
)

func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 400 {
		t.Fatalf("got %d bytes, want 400", n)
	}
}

func TestNeedPasses(t *testing.T) {
	Need(t, true, "nothing") // must neither skip nor fail
	if t.Skipped() || t.Failed() {
		t.Fatal("Need(ok=true) skipped or failed")
	}
}
