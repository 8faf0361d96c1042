package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/config"
)

// builtBinary is a binary that the package builds once, on first use, and
// TestMain removes.
type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// get builds the binary with the command args (run from the repository
// root; the argument "OUT" stands for the output path) the first time, and
// returns its path.
func (b *builtBinary) get(t *testing.T, env []string, args ...string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "eventserver-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "eventserver")
		argv := slices.Clone(args)
		for i, a := range argv {
			if a == "OUT" {
				argv[i] = b.path
			}
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%v: %v\n%s", args, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// shipped is built by scripts/build.sh, the script the Dockerfile runs.
var shipped builtBinary

// buildBinary is the binary that ships (static, trimmed, stripped, from
// scripts/build.sh): the tests of the binary and of the load balancer run
// it. The cluster tests use a -race build instead.
func buildBinary(t *testing.T) string {
	return shipped.get(t, []string{"VERSION=integration-test"}, "sh", "scripts/build.sh", "OUT")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBinarySIGTERM: the real binary serves a python node, and on SIGTERM it
// turns not-ready, disconnects the node and exits 0.
func TestBinarySIGTERM(t *testing.T) {
	bin := buildBinary(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"EVENTSERVER_LISTEN="+addr, "EVENTSERVER_JWT_SECRET="+testSecret,
		"EVENTSERVER_SHUTDOWN_DELAY=500ms", "EVENTSERVER_DRAIN_TIMEOUT=200ms")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	s := &server{t: t, URL: "http://" + addr}
	waitReadyz(t, s.URL, http.StatusOK)
	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
	node.waitEvent("sync", wait)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, s.URL, http.StatusServiceUnavailable)
	node.waitType("disconnect", wait)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(wait):
		t.Fatalf("still running 10s after SIGTERM\n%s", logs.String())
	}
	for _, want := range []string{`"msg":"signal received"`, `"msg":"draining"`, `"msg":"shut down"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// TestBinaryRefusesBadConfig: no key, or an invalid value, stops start-up
// with a message that names what to set.
func TestBinaryRefusesBadConfig(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "EVENTSERVER_JWT_SECRET"},
		{[]string{"EVENTSERVER_JWT_SECRET=x", "EVENTSERVER_PING_TIMEOUT=soon"}, "EVENTSERVER_PING_TIMEOUT"},
		{[]string{"EVENTSERVER_JWT_SECRET=x", "EVENTSERVER_MAX_PAYLOAD=lots"}, "EVENTSERVER_MAX_PAYLOAD"},
		{[]string{"EVENTSERVER_JWT_PUBLIC_KEY_FILE=/nonexistent.pem"}, "EVENTSERVER_JWT_PUBLIC_KEY_FILE"},
	} {
		cmd := exec.Command(bin, "--listen", "127.0.0.1:0")
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want 2\n%s", tc.env, err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: message %q does not name %s", tc.env, out, tc.want)
		}
	}
}

// TestOversizedMessage: a message over EVENTSERVER_MAX_PAYLOAD closes that
// client's connection (as Engine.IO does) and nothing else.
func TestOversizedMessage(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MaxPayload = 4096 })
	ui := startUI(t, s, "ui", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	ui.waitType("connect", wait)
	node := startPyNode(t, s, "node", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "websocket"})
	node.waitEvent("sync", wait)
	node.emit("algorithm_log", 0, map[string]any{"run_id": 1, "task_id": 1, "log": strings.Repeat("x", 10000)})
	node.waitType("disconnect", wait)
	ui.waitEvent("node-offline", wait)
	if n := len(ui.events("algorithm_log")); n != 0 {
		t.Errorf("oversized log relayed %d times", n)
	}
	// The server still serves.
	s.mustPublish(`{"event":"status_update","room":"collaboration_1","data":{"run_id":1}}`)
	ui.waitEvent("status_update", wait)
}
