package redistest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lookRedisServer finds the redis-server binary on PATH.
func lookRedisServer() (string, error) { return exec.LookPath("redis-server") }

// localBackend runs a redis-server process.
type localBackend struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string // more redis-server arguments (--replicaof ...)

	mu  sync.Mutex
	cmd *exec.Cmd
}

func newLocalBackend(t testing.TB, bin string, port int) *localBackend {
	return &localBackend{t: t, bin: bin, dir: t.TempDir(), port: port}
}

func (l *localBackend) start() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	args := append([]string{"--port", strconv.Itoa(l.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", l.dir, "--daemonize", "no",
		"--logfile", filepath.Join(l.dir, "redis.log")}, l.args...)
	cmd := exec.Command(l.bin, args...)
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("redistest: start: %v", err)
	}
	l.cmd = cmd
	waitReady(l.t, addr(l.port), 10*time.Second, func() string {
		log, _ := os.ReadFile(filepath.Join(l.dir, "redis.log"))
		return string(log)
	})
}

// kill sends SIGKILL and waits for the process.
func (l *localBackend) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cmd == nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot die
	_ = l.cmd.Process.Kill()
	_ = l.cmd.Wait()
	l.cmd = nil
}

func (l *localBackend) pause()  { l.signal(syscall.SIGSTOP) }
func (l *localBackend) resume() { l.signal(syscall.SIGCONT) }

func (l *localBackend) signal(sig syscall.Signal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cmd != nil {
		_ = l.cmd.Process.Signal(sig)
	}
}

func (l *localBackend) running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cmd != nil
}
