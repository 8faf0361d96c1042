package cli

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
		case "/readyz":
			if ready.Load() {
				w.WriteHeader(http.StatusOK)
			} else {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	env := func(listen string) func(string) string {
		return func(k string) string {
			if k == "EVENTSERVER_LISTEN" {
				return listen
			}
			return ""
		}
	}

	run := func(getenv func(string) string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"healthcheck"}, args...), getenv, &out, &errb)
		return code, out.String() + errb.String()
	}

	cases := []struct {
		name   string
		listen string
		args   []string
		ready  bool
		want   int
		output string
	}{
		{"alive from EVENTSERVER_LISTEN", ":" + port, nil, false, 0, "/healthz: 200 OK"},
		{"alive on 0.0.0.0", "0.0.0.0:" + port, nil, false, 0, "http://127.0.0.1:" + port + "/healthz"},
		{"not ready", ":" + port, []string{"--ready"}, false, 1, "503 Service Unavailable"},
		{"ready", ":" + port, []string{"--ready"}, true, 0, "/readyz: 200 OK"},
		{"explicit url", "", []string{"--url", srv.URL + "/healthz"}, false, 0, "200 OK"},
		{"explicit url 404", "", []string{"--url", srv.URL + "/nope"}, false, 1, "404 Not Found"},
		{"nothing listens", "127.0.0.1:1", nil, false, 1, "connect"},
		{"bad listen", "7600", nil, false, 2, `EVENTSERVER_LISTEN "7600" is not host:port`},
		{"bad url", "", []string{"--url", "ftp://x/healthz"}, false, 2, "is not an http(s) URL"},
		{"stray argument", "", []string{"now"}, false, 2, `unexpected argument "now"`},
		{"bad timeout", "", []string{"--timeout", "0s"}, false, 2, "--timeout must be positive"},
		{"help", "", []string{"--help"}, false, 0, "Usage:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ready.Store(tc.ready)
			code, out := run(env(tc.listen), tc.args...)
			if code != tc.want || !strings.Contains(out, tc.output) {
				t.Fatalf("exit %d, output %q; want exit %d and output containing %q", code, out, tc.want, tc.output)
			}
		})
	}
}
