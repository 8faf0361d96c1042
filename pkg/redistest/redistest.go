// Package redistest starts a real Redis for tests on a fixed loopback port,
// which the test can stop, restart, pause and resume.
//
// Following the project's rule for integration tests, it runs Redis in a
// container with testcontainers-go when a Docker engine is reachable, and a
// local redis-server otherwise. REDISTEST_BACKEND=local or
// REDISTEST_BACKEND=docker forces one of them; a forced backend that is not
// available fails the test.
//
// Without either the test is skipped, except when CI=true, where it fails:
// CI must have what the tests need.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// backendEnv is the environment variable that forces a backend: "local"
// (redis-server) or "docker" (a container). Empty or "auto" chooses Docker
// when an engine is reachable, else redis-server.
const backendEnv = "REDISTEST_BACKEND"

// Server is one Redis server, on a port that stays the same for its life.
type Server struct {
	t    testing.TB
	port int
	b    backend
}

// backend runs Redis on one fixed loopback port. Methods other than start
// are safe for concurrent use.
type backend interface {
	// start starts a new, empty Redis on the port and waits until it
	// answers PING; it fails the test if it cannot.
	start()
	// kill stops Redis at once; a no-op when it is not running.
	kill()
	// pause freezes Redis: connections stay open but nothing answers.
	pause()
	// resume continues a paused Redis.
	resume()
	// running reports whether Redis is up (paused counts as up).
	running() bool
}

type backendKind string

const (
	backendLocal  backendKind = "local"
	backendDocker backendKind = "docker"
)

// chooseBackend decides the backend from the value of REDISTEST_BACKEND and,
// unless local is forced, from probe, which reports whether a Docker engine
// is reachable (nil error) and where. reason says why, for the test log.
func chooseBackend(env string, probe func() (string, error)) (kind backendKind, reason string, err error) {
	switch strings.ToLower(strings.TrimSpace(env)) {
	case "local":
		return backendLocal, backendEnv + "=local", nil
	case "docker":
		host, perr := probe()
		if perr != nil {
			return "", "", fmt.Errorf("redistest: %s=docker but no usable Docker engine: %v", backendEnv, perr)
		}
		return backendDocker, fmt.Sprintf("%s=docker, engine %s", backendEnv, host), nil
	case "", "auto":
		host, perr := probe()
		if perr != nil {
			return backendLocal, fmt.Sprintf("no usable Docker engine: %v", perr), nil
		}
		return backendDocker, "Docker engine " + host, nil
	default:
		return "", "", fmt.Errorf("redistest: %s=%q: want local, docker, auto or empty", backendEnv, env)
	}
}

// Start starts Redis on a free loopback port, in a container when a Docker
// engine is reachable and as a local redis-server otherwise; it is stopped
// (and its container removed) when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	kind, reason, err := chooseBackend(os.Getenv(backendEnv), dockerProbe)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t}
	switch kind {
	case backendDocker:
		s.port = freePort(t)
		s.b = newDockerBackend(t, s.port)
	default:
		bin, err := lookRedisServer()
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("redistest: redis-server not found (%s; CI=true: failing instead of skipping); install Debian's redis-server", reason)
			}
			t.Skipf("redistest: redis-server not found (%s): %v", reason, err)
		}
		s.port = freePort(t)
		s.b = newLocalBackend(t, bin, s.port)
	}
	t.Logf("redistest: %s backend on %s (%s)", kind, s.Addr(), reason)
	t.Cleanup(s.Kill) // before start, so that a server that never answers is stopped too
	s.b.start()
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is host:port.
func (s *Server) Addr() string { return addr(s.port) }

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// URL is redis://host:port/0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// waitReady waits until Redis at addr answers PING, or fails t after
// timeout with what diag says.
func waitReady(t testing.TB, addr string, timeout time.Duration, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if err := ping(addr); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("redistest: Redis on %s not answering: %v\n%s", addr, err, diag())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill stops the server at once and waits for it. It is a no-op when the
// server is not running.
func (s *Server) Kill() { s.b.kill() }

// Restart kills the server and starts a new, empty one on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.b.kill()
	s.b.start()
}

// Pause freezes the server (SIGSTOP, or docker pause): connections stay
// open but nothing answers, as with a hung server or a network partition.
func (s *Server) Pause() { s.b.pause() }

// Resume continues a paused server.
func (s *Server) Resume() { s.b.resume() }

// Running reports whether the server is up (a paused one is).
func (s *Server) Running() bool { return s.b.running() }
