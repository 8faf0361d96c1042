package integration

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every goroutine the servers started (sockets, timers,
// transports, the HTTP server) has ended once the tests shut them down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(cleanupM{m},
		// What package init started (the Go client's network monitor).
		goleak.IgnoreCurrent(),
		// Keep-alive connections of the tests' own HTTP client.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// cleanupM removes the binaries the tests built once the tests have run.
type cleanupM struct{ m *testing.M }

func (c cleanupM) Run() int {
	code := c.m.Run()
	for _, p := range []string{shipped.path, raced.path} {
		if p != "" {
			_ = os.RemoveAll(filepath.Dir(p))
		}
	}
	return code
}
