package socketio

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
)

// TestNodeClient runs the official socket.io-client 4.8 (testdata/client.js)
// against the server: auth through a server-level middleware, an event,
// acks both ways with binary, and a namespace disconnect; polling only,
// websocket only, and polling upgraded to websocket.
func TestNodeClient(t *testing.T) {
	_, err := exec.LookPath("node")
	_, statErr := os.Stat(filepath.Join("..", "..", "node_modules", "socket.io-client", "package.json"))
	testenv.Need(t, err == nil && statErr == nil, "node and node_modules/socket.io-client (npm ci)")

	ts := newTestServer(t, Config{})
	ts.Use(func(s *Socket, next func(error)) {
		if s.Handshake().Auth["token"] != "good" {
			next(&ConnectError{Message: "invalid_token"})
			return
		}
		next(nil)
	})
	nsp := ts.Of("/tasks")
	reasons := make(chan string, 4)
	nsp.OnConnection(func(s *Socket) { _ = s.Emit("welcome", s.Handshake().Auth) })
	nsp.On("ack", func(_ *Socket, args []any, ack Ack) { ack(args...) })
	nsp.On("ask", func(s *Socket, _ []any, _ Ack) {
		_ = s.EmitWithAck(5*time.Second, func(args []any, err error) {
			if err != nil {
				_ = s.Emit("answer", err.Error())
				return
			}
			_ = s.Emit("answer", args...)
		}, "question", 41)
	})
	nsp.OnDisconnect(func(_ *Socket, reason string) { reasons <- reason })

	for _, tc := range []struct {
		name, transports, upgrade, transport string
	}{
		{"polling", `["polling"]`, "0", "polling"},
		{"websocket", `["websocket"]`, "0", "websocket"},
		{"upgrade", `["polling","websocket"]`, "1", "websocket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "client.js"), ts.url, tc.transports, tc.upgrade)
			var stderr testenv.Buffer
			cmd.Stderr = &stderr
			outb, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v\n%s\n%s", err, outb, stderr.String())
			}
			want := `{"welcome":{"token":"good"}}` + "\n" +
				`{"ack":[12,"two",[1,2,3]]}` + "\n" +
				`{"answer":42,"transport":"` + tc.transport + `"}` + "\n"
			if got := string(outb); got != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
			select {
			case r := <-reasons:
				if r != ReasonClientDisconnect {
					t.Fatalf("reason %q", r)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no disconnect")
			}
		})
	}
}
