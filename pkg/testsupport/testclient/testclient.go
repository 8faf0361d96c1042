// Package testclient opens the Go Socket.IO client for tests.
package testclient

import (
	"testing"
	"time"

	gosio "github.com/zishang520/socket.io/clients/socket/v3"
)

// OpenManager opens a Manager on url and returns it once its engine is open.
//
// The Go client (v3.0.6) races with itself while its Manager opens: the
// Manager may miss the engine's "open"; it emits "open" (and a socket sends
// CONNECT) before it listens to the engine's data, so the answer can be
// lost; and Socket.Connect can send CONNECT twice, which makes a ghost
// socket on the server. So the Manager is opened first, alone (and thrown
// away for a new one if it misses its "open"; no socket exists yet), and
// sockets connect on the open Manager, which has none of these races. opts
// should say SetAutoConnect(false). name is the client in failures.
func OpenManager(t testing.TB, url, name string, opts gosio.ManagerOptionsInterface) *gosio.Manager {
	t.Helper()
	for attempt := 1; ; attempt++ {
		candidate := gosio.NewManager(url, opts)
		opened := make(chan error, 1)
		candidate.Open(func(err error) {
			select {
			case opened <- err:
			default:
			}
		})
		select {
		case err := <-opened:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			settleUpgrade(candidate, opts)
			return candidate
		case <-time.After(2 * time.Second):
			if e := candidate.Engine(); e != nil {
				e.Close()
			}
			if attempt == 5 {
				t.Fatalf("%s: the client's engine never opened", name)
			}
		}
	}
}

// settleUpgrade waits, up to 2 seconds, for an engine that opened with
// polling and may use WebSocket to finish its upgrade, so that no socket
// writes its CONNECT while the engine switches transports: under load, a
// CONNECT written then was seen lost (the server never heard of the socket).
// An engine that does not upgrade in that time is used as it is.
func settleUpgrade(m *gosio.Manager, opts gosio.ManagerOptionsInterface) {
	canUpgrade := false
	if ts := opts.Transports(); ts != nil {
		for _, tr := range ts.Keys() {
			canUpgrade = canUpgrade || tr.Name() == "websocket"
		}
	}
	if !canUpgrade {
		return
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		e := m.Engine()
		if e == nil || e.Transport() == nil || e.Transport().Name() != "polling" {
			return
		}
	}
}
