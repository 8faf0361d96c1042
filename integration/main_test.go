package integration

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every goroutine the servers started (sockets, timers,
// transports, the HTTP server) has ended once the tests shut them down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// What package init started (the Go client's network monitor).
		goleak.IgnoreCurrent(),
		// Keep-alive connections of the tests' own HTTP client.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
