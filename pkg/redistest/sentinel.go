package redistest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name under which a SentinelGroup's sentinels monitor
// the master.
const MasterName = "mymaster"

// SentinelGroup is a Redis master, one replica (--replicaof) and three
// sentinels (quorum 2, down-after 1s, failover-timeout 5s), all local
// processes on free loopback ports, stopped when the test ends. It always
// runs redis-server and redis-sentinel on this machine, whatever
// REDISTEST_BACKEND says: a Sentinel group needs the processes' addresses
// to be the same for the sentinels and for the clients.
type SentinelGroup struct {
	t         testing.TB
	redis     []*localBackend // the master and the replica, in start order
	sentinels []*sentinelProc
}

// sentinelProc is one redis-sentinel process.
type sentinelProc struct {
	bin  []string // the command: redis-sentinel, or redis-server … --sentinel
	dir  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// lookSentinel finds the command that runs a sentinel with config file
// conf: redis-sentinel, else redis-server --sentinel.
func lookSentinel(conf string) ([]string, error) {
	if bin, err := exec.LookPath("redis-sentinel"); err == nil {
		return []string{bin, conf}, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("neither redis-sentinel nor redis-server on PATH: %w", err)
	}
	return []string{bin, conf, "--sentinel"}, nil
}

// StartSentinel starts a master, its replica and three sentinels, and
// waits (up to 20 s) until every sentinel sees the replica and the two
// other sentinels. Without redis-server the test is skipped, or fails when
// CI=true.
func StartSentinel(t testing.TB) *SentinelGroup {
	t.Helper()
	bin, err := lookRedisServer()
	if err == nil {
		_, err = lookSentinel("")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redistest: a Sentinel group needs redis-server and redis-sentinel (CI=true: failing instead of skipping): %v; install Debian's redis-server and redis-sentinel", err)
		}
		t.Skipf("redistest: a Sentinel group needs redis-server and redis-sentinel: %v", err)
	}
	g := &SentinelGroup{t: t}
	t.Cleanup(g.stop) // before any start, so that a process that never answers is stopped too

	master := newLocalBackend(t, bin, freePort(t))
	g.redis = append(g.redis, master)
	master.start()
	replica := newLocalBackend(t, bin, freePort(t))
	replica.args = []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}
	g.redis = append(g.redis, replica)
	replica.start()
	// The sentinels learn of the replica from the master's INFO: start
	// them once the replica is in sync, so that the first INFO lists it.
	g.waitFor(10*time.Second, "the replica in sync with the master", func(ctx context.Context) error {
		return inSync(ctx, master.port)
	})

	for range 3 {
		s := &sentinelProc{dir: t.TempDir(), port: freePort(t)}
		conf := filepath.Join(s.dir, "sentinel.conf")
		// Sentinel rewrites its config file (what it learns), so it
		// must be writable: it is in the test's temporary directory.
		text := strings.Join([]string{
			"port " + strconv.Itoa(s.port),
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + s.dir,
			"logfile " + filepath.Join(s.dir, "sentinel.log"),
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", MasterName, master.port),
			"sentinel down-after-milliseconds " + MasterName + " 1000",
			"sentinel failover-timeout " + MasterName + " 5000",
			"sentinel parallel-syncs " + MasterName + " 1",
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		s.bin, _ = lookSentinel(conf)
		g.sentinels = append(g.sentinels, s)
		s.start(t)
	}
	// Sentinels find each other through hello messages on the master,
	// every 2 s.
	g.waitFor(20*time.Second, "every sentinel to see the replica and the two other sentinels", func(ctx context.Context) error {
		for _, s := range g.sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: addr(s.port)})
			replicas, err := c.Replicas(ctx, MasterName).Result()
			if err == nil && len(replicas) != 1 {
				err = fmt.Errorf("%d replicas", len(replicas))
			}
			var others []map[string]string
			if err == nil {
				others, err = c.Sentinels(ctx, MasterName).Result()
			}
			if err == nil && len(others) != 2 {
				err = fmt.Errorf("%d other sentinels", len(others))
			}
			_ = c.Close()
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", addr(s.port), err)
			}
		}
		return nil
	})
	t.Logf("redistest: Sentinel group %q: master %s, replica %s, sentinels %s",
		MasterName, addr(master.port), addr(replica.port), strings.Join(g.SentinelAddrs(), " "))
	return g
}

// inSync reports nil when the Redis on port is a master with one replica
// online.
func inSync(ctx context.Context, port int) error {
	c := redis.NewClient(&redis.Options{Addr: addr(port), MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:master") || !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
		return fmt.Errorf("replication: %s", strings.Join(strings.Fields(info), " "))
	}
	return nil
}

func (s *sentinelProc) start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin[0], s.bin[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start sentinel: %v", err)
	}
	s.cmd = cmd
	waitReady(t, addr(s.port), 10*time.Second, func() string {
		log, _ := os.ReadFile(filepath.Join(s.dir, "sentinel.log"))
		return string(log)
	})
}

func (s *sentinelProc) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// stop kills every process of the group.
func (g *SentinelGroup) stop() {
	for _, s := range g.sentinels {
		s.kill()
	}
	for _, r := range g.redis {
		r.kill()
	}
}

// waitFor polls f every 50 ms until it returns nil, and fails the test
// with its last error after timeout.
func (g *SentinelGroup) waitFor(timeout time.Duration, what string, f func(context.Context) error) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("redistest: after %s, still waiting for %s: %v\n%s", timeout, what, err, g.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logs returns the tail of every process's log, for a failure message.
func (g *SentinelGroup) logs() string {
	var b strings.Builder
	for _, r := range g.redis {
		log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
		fmt.Fprintf(&b, "--- redis %s\n%s", addr(r.port), lastLines(string(log), 15))
	}
	for _, s := range g.sentinels {
		log, _ := os.ReadFile(filepath.Join(s.dir, "sentinel.log"))
		fmt.Fprintf(&b, "--- sentinel %s\n%s", addr(s.port), lastLines(string(log), 15))
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// SentinelAddrs are the sentinels' host:port.
func (g *SentinelGroup) SentinelAddrs() []string {
	var out []string
	for _, s := range g.sentinels {
		out = append(out, addr(s.port))
	}
	return out
}

// URL is the group's redis+sentinel:// URL, as EVENTSERVER_REDIS_URL
// takes it: the first sentinel in the host, the others in addr
// parameters.
func (g *SentinelGroup) URL() string {
	addrs := g.SentinelAddrs()
	q := url.Values{"master_name": {MasterName}}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	return "redis+sentinel://" + addrs[0] + "?" + q.Encode()
}

// MasterAddr is the master's host:port as the first sentinel that answers
// reports it.
func (g *SentinelGroup) MasterAddr() string {
	g.t.Helper()
	var master string
	g.waitFor(5*time.Second, "a sentinel to name the master", func(ctx context.Context) error {
		var err error
		master, err = g.masterOf(ctx, g.sentinels[0])
		for _, s := range g.sentinels[1:] {
			if err == nil {
				break
			}
			master, err = g.masterOf(ctx, s)
		}
		return err
	})
	return master
}

func (g *SentinelGroup) masterOf(ctx context.Context, s *sentinelProc) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr(s.port), MaxRetries: -1})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("get-master-addr-by-name: %v", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// KillMaster sends SIGKILL to the current master and waits for it, and
// returns its address.
func (g *SentinelGroup) KillMaster() string {
	g.t.Helper()
	master := g.MasterAddr()
	for _, r := range g.redis {
		if addr(r.port) == master {
			r.kill()
			return master
		}
	}
	g.t.Fatalf("redistest: the sentinels name %s as master, which is none of the group's servers", master)
	return ""
}

// WaitFailover waits up to timeout until every sentinel names a master
// other than old and that server answers as a master, and returns its
// address.
func (g *SentinelGroup) WaitFailover(old string, timeout time.Duration) string {
	g.t.Helper()
	var promoted string
	g.waitFor(timeout, "the failover away from "+old, func(ctx context.Context) error {
		promoted = ""
		for _, s := range g.sentinels {
			m, err := g.masterOf(ctx, s)
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", addr(s.port), err)
			}
			if m == old || (promoted != "" && m != promoted) {
				return fmt.Errorf("sentinel %s names %s as master", addr(s.port), m)
			}
			promoted = m
		}
		c := redis.NewClient(&redis.Options{Addr: promoted, MaxRetries: -1})
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("promoted %s: %w", promoted, err)
		}
		if !strings.Contains(info, "role:master") {
			return fmt.Errorf("promoted %s is not a master yet", promoted)
		}
		return nil
	})
	return promoted
}

// Switchover asks a sentinel for a failover while the master is up
// (SENTINEL FAILOVER, as an operator does before maintenance) and returns
// the master's address; WaitFailover then waits for its end. The old
// master stays up and becomes a replica of the promoted one.
func (g *SentinelGroup) Switchover() string {
	g.t.Helper()
	master := g.MasterAddr()
	g.waitFor(10*time.Second, "a sentinel to accept SENTINEL FAILOVER", func(ctx context.Context) error {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr(g.sentinels[0].port), MaxRetries: -1})
		defer c.Close()
		return c.Failover(ctx, MasterName).Err()
	})
	return master
}
