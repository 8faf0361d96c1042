// Command refserver is the Go reference server of the conformance suite:
// an Engine.IO echo server on pkg/engineio, configured like the official
// engine.io-protocol suite's reference server (pingInterval 300 ms,
// pingTimeout 200 ms, maxPayload 1e6). It prints one JSON line
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
	mode := fs.String("mode", "engineio", "protocol layer to serve (only: engineio)")
	path := fs.String("path", "/engine.io/", "mount path")
	_ = fs.Bool("deflate", false, "accepted and ignored: permessage-deflate is never negotiated, so maxPayload bounds what is decoded")
	connectTimeout := fs.Int("connect-timeout", 0, "ms a session may live before the upper layer marks it connected (0: none; the echo of engineio mode marks it at once)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mode != "engineio" {
		return fmt.Errorf("unsupported --mode %q (only \"engineio\")", *mode)
	}
	eio, err := engineio.NewServer(engineio.Config{
		PingInterval: 300 * time.Millisecond,
		PingTimeout:  200 * time.Millisecond,
		MaxPayload:   1_000_000,
		// Without effect in engineio mode, where the echo marks every
		// session connected at once; socketio mode (step 2) needs it.
		ConnectTimeout: time.Duration(*connectTimeout) * time.Millisecond,
	})
	if err != nil {
		return err
	}
	eio.OnConnection(func(c *engineio.Conn) {
		c.SetConnected()
		c.OnMessage(func(data []byte, binary bool) { _ = c.Send(data, binary) })
	})
	mux := http.NewServeMux()
	mux.Handle(*path, eio)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		_ = eio.Shutdown(context.Background())
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
	err = eio.Shutdown(ctx)
	if e := srv.Shutdown(ctx); err == nil {
		err = e
	}
	if e := <-served; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
