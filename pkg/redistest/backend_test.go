package redistest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	tclog "github.com/testcontainers/testcontainers-go/log"
	"go.uber.org/goleak"
)

// TestDockerProbe runs the real Docker detection. This file's tests run
// before redistest_test.go's, so it is the process's first, uncached,
// detection. It must be quick and quiet and leave no goroutine behind; on a
// machine without an engine (this one, CI) it must say so.
func TestDockerProbe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	prev := tclog.Default()
	rec := &recLogger{}
	tclog.SetDefault(rec)
	defer tclog.SetDefault(prev)

	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	defer cancel()
	start := time.Now()
	host, err := probeDocker(ctx)
	elapsed := time.Since(start)
	t.Logf("probe: %v, host %q, err %v", elapsed, host, err)
	if elapsed > 2*time.Second {
		t.Errorf("Docker detection took %v, want < 2s", elapsed)
	}
	if err == nil {
		t.Skipf("a Docker engine is reachable at %s: the no-engine case cannot be checked here", host)
	}
	if lines := rec.lines(); len(lines) > 0 {
		t.Errorf("detection without an engine logged:\n%s", strings.Join(lines, "\n"))
	}
	if _, err2 := dockerProbe(); err2 == nil {
		t.Error("the cached probe found an engine that probeDocker did not")
	}
}

// recLogger records what testcontainers-go logs.
type recLogger struct {
	mu sync.Mutex
	l  []string
}

func (r *recLogger) Printf(format string, v ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.l = append(r.l, fmt.Sprintf(format, v...))
}

func (r *recLogger) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.l...)
}

// TestProbeBounded: a detection that hangs, ignoring its context, still
// returns by the deadline.
func TestProbeBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hang := func(context.Context) (string, error) { <-release; return "", nil }

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := probeWith(ctx, hang)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

func TestChooseBackend(t *testing.T) {
	up := func() (string, error) { return "unix:///var/run/docker.sock", nil }
	down := func() (string, error) { return "", errors.New("socket not found") }
	unused := func() (string, error) { t.Error("probed Docker although local was forced"); return "", nil }

	for _, tc := range []struct {
		env     string
		probe   func() (string, error)
		want    backendKind
		inWhy   string // in the reason, or in the error
		wantErr bool
	}{
		{env: "", probe: up, want: backendDocker, inWhy: "unix:///var/run/docker.sock"},
		{env: "", probe: down, want: backendLocal, inWhy: "socket not found"},
		{env: "auto", probe: down, want: backendLocal, inWhy: "no usable Docker engine"},
		{env: "local", probe: unused, want: backendLocal, inWhy: "REDISTEST_BACKEND=local"},
		{env: " Local ", probe: unused, want: backendLocal},
		{env: "docker", probe: up, want: backendDocker, inWhy: "REDISTEST_BACKEND=docker"},
		{env: "DOCKER", probe: up, want: backendDocker},
		{env: "docker", probe: down, wantErr: true, inWhy: "REDISTEST_BACKEND=docker but no usable Docker engine: socket not found"},
		{env: "podman", probe: unused, wantErr: true, inWhy: `REDISTEST_BACKEND="podman"`},
	} {
		kind, reason, err := chooseBackend(tc.env, tc.probe)
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), tc.inWhy) {
				t.Errorf("%q: err = %v, want one with %q", tc.env, err, tc.inWhy)
			}
			continue
		}
		if err != nil || kind != tc.want || !strings.Contains(reason, tc.inWhy) {
			t.Errorf("%q: %q, %q, %v; want %q with %q", tc.env, kind, reason, err, tc.want, tc.inWhy)
		}
	}
}

func TestIsLocalDaemonHost(t *testing.T) {
	for host, want := range map[string]bool{
		"unix:///var/run/docker.sock":       true,
		"unix:///run/user/1000/docker.sock": true,
		"npipe:////./pipe/docker_engine":    true,
		"tcp://127.0.0.1:2375":              true,
		"tcp://localhost:2376":              true,
		"tcp://[::1]:2375":                  true,
		"tcp://docker:2375":                 false,
		"tcp://10.0.0.5:2376":               false,
		"ssh://me@build-host":               false,
		"":                                  false,
		"::not a url":                       false,
	} {
		if got := isLocalDaemonHost(host); got != want {
			t.Errorf("isLocalDaemonHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestForcedLocal: REDISTEST_BACKEND=local uses redis-server, even where
// Docker runs.
func TestForcedLocal(t *testing.T) {
	t.Setenv(backendEnv, "local")
	s := Start(t)
	if _, ok := s.b.(*localBackend); !ok {
		t.Fatalf("backend %T, want *localBackend", s.b)
	}
	if err := ping(s.Addr()); err != nil {
		t.Fatal(err)
	}
}

// TestForcedDockerUnavailable: REDISTEST_BACKEND=docker without an engine
// fails the test (even outside CI) with a clear message.
func TestForcedDockerUnavailable(t *testing.T) {
	if host, err := dockerProbe(); err == nil {
		t.Skipf("a Docker engine is reachable at %s", host)
	}
	t.Setenv(backendEnv, "docker")
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() { // Start ends this goroutine with Fatal
		defer close(done)
		Start(f)
		t.Error("Start returned")
	}()
	<-done
	msg := strings.Join(f.fatals, "\n")
	if !strings.Contains(msg, "REDISTEST_BACKEND=docker but no usable Docker engine") {
		t.Errorf("Fatal said %q", msg)
	}
}

// fakeTB records Fatal and Skip instead of ending the real test.
type fakeTB struct {
	testing.TB
	fatals []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatal(args ...any) {
	f.fatals = append(f.fatals, fmt.Sprint(args...))
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.Fatal("skip: " + fmt.Sprintf(format, args...)) }
