// Command refserver is the Go reference server of the conformance suite,
// configured like the official protocol suites' reference servers
// (pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6): with --mode
// engineio an Engine.IO echo server on pkg/engineio; with --mode socketio
// a Socket.IO server on pkg/socketio serving "/" and "/custom" as
// node-socketio.js does. It prints one JSON line
// {"url":"http://HOST:PORT"} once listening and exits 0 when stdin
// reaches EOF.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/eventserver/eventserver/pkg/socketio"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "refserver:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("refserver", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	mode := fs.String("mode", "engineio", "protocol layer to serve: engineio or socketio")
	path := fs.String("path", "", "mount path (default /engine.io/ or /socket.io/, after --mode)")
	connectTimeout := fs.Int("connect-timeout", 1000, "socketio: ms before a session without a namespace is closed")
	_ = fs.Bool("deflate", false, "accepted and ignored: permessage-deflate is never negotiated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := engineio.Config{
		PingInterval: 300 * time.Millisecond,
		PingTimeout:  200 * time.Millisecond,
		MaxPayload:   1_000_000,
	}
	var (
		handler  http.Handler
		shutdown func(context.Context) error
	)
	switch *mode {
	case "engineio":
		if *path == "" {
			*path = "/engine.io/"
		}
		eio, err := engineio.NewServer(cfg)
		if err != nil {
			return err
		}
		eio.OnConnection(func(c *engineio.Conn) {
			c.SetConnected()
			c.OnMessage(func(data []byte, binary bool) { _ = c.Send(data, binary) })
		})
		handler, shutdown = eio, eio.Shutdown
	case "socketio":
		if *path == "" {
			*path = "/socket.io/"
		}
		if *connectTimeout <= 0 {
			return fmt.Errorf("bad --connect-timeout %d", *connectTimeout)
		}
		cfg.ConnectTimeout = time.Duration(*connectTimeout) * time.Millisecond
		sio, err := socketio.NewServer(socketio.Config{Engine: cfg, Path: *path})
		if err != nil {
			return err
		}
		for _, name := range []string{"/", "/custom"} {
			serveEcho(sio.Of(name))
		}
		handler, shutdown = sio, sio.Shutdown
	default:
		return fmt.Errorf("unsupported --mode %q (engineio or socketio)", *mode)
	}
	mux := http.NewServeMux()
	mux.Handle(*path, handler)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		_ = shutdown(context.Background())
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	line, _ := json.Marshal(map[string]string{"url": "http://" + ln.Addr().String()})
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = shutdown(ctx)
	if e := srv.Shutdown(ctx); err == nil {
		err = e
	}
	if e := <-served; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// serveEcho: on connection emit "auth" with the handshake auth, answer
// "message" with "message-back" and the same arguments, ack
// "message-with-ack" with the same arguments.
func serveEcho(nsp *socketio.Namespace) {
	nsp.OnConnection(func(s *socketio.Socket) { _ = s.Emit("auth", s.Handshake().Auth) })
	nsp.On("message", func(s *socketio.Socket, args []any, _ socketio.Ack) {
		_ = s.Emit("message-back", args...)
	})
	nsp.On("message-with-ack", func(_ *socketio.Socket, args []any, ack socketio.Ack) {
		if ack != nil {
			ack(args...)
		}
	})
}
