package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

const healthcheckUsage = `Usage:
  eventserver healthcheck [--ready] [--url URL] [--timeout 3s]

Asks a running eventserver whether it is alive (GET /healthz) or, with
--ready, ready for traffic (GET /readyz), and exits 0 when it answers 200 and
1 otherwise. It is the container image's health check: the image has no shell
and no curl. Without --url it asks 127.0.0.1 on the port of
EVENTSERVER_LISTEN (default 7600).

Flags:
`

// Healthcheck runs "eventserver healthcheck".
func Healthcheck(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eventserver healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, healthcheckUsage); fs.PrintDefaults() }
	ready := fs.Bool("ready", false, "ask /readyz instead of /healthz")
	rawURL := fs.String("url", "", "URL to ask (default: http://127.0.0.1:<port of EVENTSERVER_LISTEN>/healthz)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "eventserver healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "eventserver healthcheck: --timeout must be positive")
		return 2
	}
	target := *rawURL
	if target == "" {
		var err error
		if target, err = localHealthURL(getenv("EVENTSERVER_LISTEN"), *ready); err != nil {
			fmt.Fprintln(stderr, "eventserver healthcheck:", err)
			return 2
		}
	} else if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "eventserver healthcheck: --url %q is not an http(s) URL\n", target)
		return 2
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintln(stderr, "eventserver healthcheck:", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "eventserver healthcheck:", err)
		return 1
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "eventserver healthcheck: %s answered %s\n", target, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", target, resp.Status)
	return 0
}

// localHealthURL is the health URL on the loopback interface for the
// server's listen address (":7600", "0.0.0.0:7600", "[::]:8080", ...).
func localHealthURL(listen string, ready bool) (string, error) {
	if listen == "" {
		listen = ":7600"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return "", fmt.Errorf("EVENTSERVER_LISTEN %q is not host:port", listen)
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	path := "/healthz"
	if ready {
		path = "/readyz"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
