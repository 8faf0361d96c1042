package redistest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

const (
	redisImage = "redis:7"
	redisPort  = "6379/tcp"

	// dockerProbeTimeout bounds the detection of a Docker engine.
	dockerProbeTimeout = time.Second
	// dockerStartTimeout bounds creating and starting the container,
	// including pulling the image the first time.
	dockerStartTimeout = 5 * time.Minute
	// dockerReadyTimeout bounds the wait for PING once the container runs.
	dockerReadyTimeout = 30 * time.Second
	// dockerOpTimeout bounds stop, pause and unpause.
	dockerOpTimeout = 30 * time.Second
)

// dockerProbe reports whether a local Docker engine answers, and where. It
// probes once per process: what testcontainers-go finds (it caches its own
// discovery too) does not change while the tests run.
var dockerProbe = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	defer cancel()
	return probeDocker(ctx)
})

// probeDocker looks for the Docker engine the way testcontainers-go does
// (~/.testcontainers.properties, DOCKER_HOST, the default and rootless
// sockets), pings it, and checks that it is local, so that a port it
// publishes on 127.0.0.1 is this machine's. It prints nothing and returns by
// ctx's deadline even if a call under it does not.
func probeDocker(ctx context.Context) (string, error) { return probeWith(ctx, pingDocker) }

func probeWith(ctx context.Context, ping func(context.Context) (string, error)) (string, error) {
	type result struct {
		host string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		host, err := ping(ctx)
		done <- result{host, err}
	}()
	select {
	case r := <-done:
		return r.host, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("no answer from the Docker engine: %w", ctx.Err())
	}
}

func pingDocker(ctx context.Context) (string, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return "", fmt.Errorf("testcontainers found none: %w", err)
	}
	defer cli.Close() // no idle connection (and its goroutines) left behind
	host := cli.DaemonHost()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		return "", fmt.Errorf("ping %s: %w", host, err)
	}
	if !isLocalDaemonHost(host) {
		return "", fmt.Errorf("engine %s is not on this machine: its ports are not on this 127.0.0.1", host)
	}
	return host, nil
}

// isLocalDaemonHost reports whether a Docker host address (unix://…,
// npipe://…, tcp://host:port, …) is on this machine.
func isLocalDaemonHost(host string) bool {
	u, err := url.Parse(host)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "unix", "npipe":
		return true
	case "tcp", "http", "https":
		h := u.Hostname()
		if strings.EqualFold(h, "localhost") {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	default: // ssh:// and anything else: another machine, or unknown
		return false
	}
}

// dockerBackend runs redis:7 in a container whose port 6379 is published on
// a fixed 127.0.0.1 port. Kill stops the container and start starts it
// again: the same container, so the same port binding, and with no
// persistence (--save "" --appendonly no) a restarted Redis is empty. The
// container is removed when the test ends; Ryuk, testcontainers-go's
// reaper, left at its defaults, removes it if the test process dies first.
type dockerBackend struct {
	t    testing.TB
	port int
	cli  *testcontainers.DockerClient // for pause and unpause

	mu     sync.Mutex
	ctr    *testcontainers.DockerContainer // nil until the first start
	up     bool
	paused bool
}

func newDockerBackend(t testing.TB, port int) *dockerBackend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dockerOpTimeout)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("redistest: Docker client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return &dockerBackend{t: t, port: port, cli: cli}
}

func (d *dockerBackend) start() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), dockerStartTimeout)
	defer cancel()
	if d.ctr == nil {
		ctr, err := testcontainers.Run(ctx, redisImage,
			testcontainers.WithLogger(tclog.TestLogger(d.t)),
			// The image already turns protected mode off (connections come
			// through the published port, not from loopback); say so anyway.
			testcontainers.WithCmd("redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"),
			testcontainers.WithExposedPorts(redisPort),
			testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
				hc.PortBindings = network.PortMap{
					network.MustParsePort(redisPort): {{
						HostIP:   netip.MustParseAddr("127.0.0.1"),
						HostPort: strconv.Itoa(d.port),
					}},
				}
			}),
		)
		// Registered before the error check: Run can return a container
		// that was created but did not start.
		d.t.Cleanup(func() { d.terminate(ctr) })
		if err != nil {
			d.t.Fatalf("redistest: run %s on %s: %v", redisImage, addr(d.port), err)
		}
		d.ctr = ctr
	} else if err := d.ctr.Start(ctx); err != nil {
		d.t.Fatalf("redistest: restart container %s: %v", shortID(d.ctr), err)
	}
	d.up = true
	waitReady(d.t, addr(d.port), dockerReadyTimeout, d.logs)
}

// terminate stops and removes the container at the end of the test.
func (d *dockerBackend) terminate(ctr *testcontainers.DockerContainer) {
	if ctr == nil {
		return
	}
	d.kill() // unpauses first
	// TerminateContainer ignores "not found" and "removal already in progress".
	if err := testcontainers.TerminateContainer(ctr, testcontainers.StopTimeout(0)); err != nil {
		d.t.Errorf("redistest: remove container %s: %v", shortID(ctr), err)
	}
}

// kill stops the container at once (no grace period: SIGKILL).
func (d *dockerBackend) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.up {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerOpTimeout)
	defer cancel()
	if d.paused { // as with SIGCONT before SIGKILL: do not rely on stopping a frozen container
		if _, err := d.cli.ContainerUnpause(ctx, d.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
			d.t.Errorf("redistest: unpause container %s: %v", shortID(d.ctr), err)
		}
		d.paused = false
	}
	noGrace := time.Duration(0)
	if err := d.ctr.Stop(ctx, &noGrace); err != nil {
		d.t.Errorf("redistest: stop container %s: %v", shortID(d.ctr), err)
	}
	d.up = false
}

// pause is docker pause: the cgroup freezer, as SIGSTOP for a process.
func (d *dockerBackend) pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.up || d.paused {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerOpTimeout)
	defer cancel()
	if _, err := d.cli.ContainerPause(ctx, d.ctr.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		d.t.Errorf("redistest: pause container %s: %v", shortID(d.ctr), err)
		return
	}
	d.paused = true
}

func (d *dockerBackend) resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.up || !d.paused {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerOpTimeout)
	defer cancel()
	if _, err := d.cli.ContainerUnpause(ctx, d.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		d.t.Errorf("redistest: unpause container %s: %v", shortID(d.ctr), err)
		return
	}
	d.paused = false
}

func (d *dockerBackend) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.up
}

// logs is the end of the container's log, for a failure message.
func (d *dockerBackend) logs() string {
	if d.ctr == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := d.ctr.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("(container logs: %v)", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s\n(container logs: %v)", b, err)
	}
	return "container logs:\n" + string(b) +
		"\n(the engine must publish ports on this machine's 127.0.0.1; otherwise set " + backendEnv + "=local)"
}

func shortID(ctr *testcontainers.DockerContainer) string {
	id := ctr.GetContainerID()
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
