package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of redis-server processes on loopback ports,
// made by redis-cli --cluster create, stopped when the test ends.
type Cluster struct {
	t     testing.TB
	dir   string
	addrs []string // every node, masters first as created

	mu    sync.Mutex
	procs map[string]*exec.Cmd // running nodes by address
}

// StartCluster starts masters redis-server processes (at least 3), each
// with replicas replicas, as one Redis Cluster, and waits until every node
// reports cluster_state:ok. Nodes time out after 1 s
// (cluster-node-timeout), so that a replica takes over a killed master
// within seconds; replicas are in sync with their masters when it returns. Without redis-server or redis-cli it skips the test, or
// fails it when CI=true.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redistest: redis-server or redis-cli not found (CI=true: failing instead of skipping)")
		}
		t.Skip("redistest: redis-server or redis-cli not found")
	}
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs 3 masters, not %d", masters)
	}
	c := &Cluster{t: t, dir: t.TempDir(), procs: map[string]*exec.Cmd{}}
	t.Cleanup(c.stopAll)
	for _, port := range clusterFreePorts(t, masters*(1+replicas)) {
		p := strconv.Itoa(port)
		addr := "127.0.0.1:" + p
		cmd := exec.Command(server, "--port", p, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(c.dir, "nodes-"+p+".conf"), "--cluster-node-timeout", "1000",
			"--repl-diskless-sync-delay", "0",
			"--save", "", "--appendonly", "no", "--dir", c.dir, "--daemonize", "no",
			"--logfile", filepath.Join(c.dir, p+".log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("redistest: start %s: %v", addr, err)
		}
		c.mu.Lock()
		c.procs[addr] = cmd
		c.mu.Unlock()
		c.addrs = append(c.addrs, addr)
	}
	for _, addr := range c.addrs {
		waitReady(t, addr, 10*time.Second, func() string { return c.log(addr) })
	}
	args := append([]string{"--cluster", "create"}, c.addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK(30 * time.Second)
	// A replica takes over only once it has synchronized with its master.
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range c.addrs {
		for {
			info, err := onNode(addr, func(cl *goredis.Client) (string, error) {
				return cl.Info(context.Background(), "replication").Result()
			})
			if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: replica %s not in sync: %v\n%s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// clusterFreePorts finds n free ports whose cluster bus ports (+10000) are
// free too.
func clusterFreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 <= 65535 {
			if bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
				_ = bus.Close()
				ports = append(ports, port)
			}
		}
		_ = l.Close()
	}
	return ports
}

func (c *Cluster) log(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	b, _ := os.ReadFile(filepath.Join(c.dir, port+".log"))
	return string(b)
}

// Addrs lists every node's address (host:port), masters first as created.
func (c *Cluster) Addrs() []string { return append([]string(nil), c.addrs...) }

// URL is the cluster as EVENTSERVER_REDIS_URL takes it:
// redis+cluster://first?addr=second&addr=...
func (c *Cluster) URL() string {
	u := "redis+cluster://" + c.addrs[0]
	for i, a := range c.addrs[1:] {
		if i == 0 {
			u += "?addr=" + a
		} else {
			u += "&addr=" + a
		}
	}
	return u
}

// NodeURL is redis://<address of node i>.
func (c *Cluster) NodeURL(i int) string { return "redis://" + c.addrs[i] }

// Client returns a Cluster client of the running nodes, closed when the test
// ends.
func (c *Cluster) Client() *goredis.ClusterClient {
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs: c.running(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func (c *Cluster) running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, a := range c.addrs {
		if c.procs[a] != nil {
			out = append(out, a)
		}
	}
	return out
}

// node runs f with a plain client of one node.
func onNode[T any](addr string, f func(*goredis.Client) (T, error)) (T, error) {
	cl := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer cl.Close()
	return f(cl)
}

// MasterOf is the address of the master that serves key's (or channel's)
// slot, as the running nodes see it.
func (c *Cluster) MasterOf(key string) (string, error) {
	for _, a := range c.running() {
		slot, err := onNode(a, func(cl *goredis.Client) (int64, error) {
			return cl.ClusterKeySlot(context.Background(), key).Result()
		})
		if err != nil {
			continue
		}
		shards, err := onNode(a, func(cl *goredis.Client) ([]goredis.ClusterShard, error) {
			return cl.ClusterShards(context.Background()).Result()
		})
		if err != nil {
			continue
		}
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if r.Start <= slot && slot <= r.End {
					if m := shardMaster(sh); m != "" {
						return m, nil
					}
				}
			}
		}
	}
	return "", fmt.Errorf("redistest: no running node knows the master of %q", key)
}

// Failover makes a replica of master take its place gracefully (CLUSTER
// FAILOVER on the replica: master becomes its replica) and returns the new
// master once every running node agrees.
func (c *Cluster) Failover(master string) string {
	c.t.Helper()
	info, err := onNode(master, func(cl *goredis.Client) (string, error) {
		return cl.Info(context.Background(), "replication").Result()
	})
	if err != nil {
		c.t.Fatalf("redistest: INFO replication on %s: %v", master, err)
	}
	// slave0:ip=127.0.0.1,port=6380,state=online,...
	replica := ""
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "slave0:") {
			continue
		}
		var ip, port string
		for _, kv := range strings.Split(strings.TrimSpace(line[len("slave0:"):]), ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			}
		}
		replica = net.JoinHostPort(ip, port)
	}
	if replica == "" {
		c.t.Fatalf("redistest: %s has no replica:\n%s", master, info)
	}
	if _, err := onNode(replica, func(cl *goredis.Client) (string, error) {
		return cl.ClusterFailover(context.Background()).Result()
	}); err != nil {
		c.t.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", replica, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		role, err := onNode(replica, func(cl *goredis.Client) (string, error) {
			return cl.Info(context.Background(), "replication").Result()
		})
		if err == nil && strings.Contains(role, "role:master") && c.state() == "" {
			return replica
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: %s did not take over from %s: %v %s", replica, master, err, c.state())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shardMaster is the address of a shard's healthy master, or "".
func shardMaster(sh goredis.ClusterShard) string {
	for _, n := range sh.Nodes {
		if n.Role == "master" && n.Health == "online" {
			return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
		}
	}
	return ""
}

// Kill SIGKILLs the node at addr.
func (c *Cluster) Kill(addr string) {
	c.mu.Lock()
	cmd := c.procs[addr]
	delete(c.procs, addr)
	c.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// WaitOK waits until every running node reports cluster_state:ok and
// agrees on which node serves every slot.
func (c *Cluster) WaitOK(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		last = c.state()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: cluster not ok after %s: %s", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// state is "" when the cluster is ok, else what is wrong.
func (c *Cluster) state() string {
	var view string
	for _, a := range c.running() {
		info, err := onNode(a, func(cl *goredis.Client) (string, error) { return cl.ClusterInfo(context.Background()).Result() })
		if err != nil {
			return a + ": " + err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return a + ": not cluster_state:ok"
		}
		shards, err := onNode(a, func(cl *goredis.Client) ([]goredis.ClusterShard, error) {
			return cl.ClusterShards(context.Background()).Result()
		})
		if err != nil {
			return a + ": " + err.Error()
		}
		var b strings.Builder
		for _, sh := range shards {
			if len(sh.Slots) == 0 {
				continue
			}
			m := shardMaster(sh)
			if m == "" {
				return a + ": a shard without a healthy master"
			}
			for _, r := range sh.Slots {
				fmt.Fprintf(&b, "%d-%d:%s ", r.Start, r.End, m)
			}
		}
		if v := sortedFields(b.String()); view == "" {
			view = v
		} else if v != view {
			return "nodes disagree on the slot map"
		}
	}
	return ""
}

func sortedFields(s string) string {
	f := strings.Fields(s)
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j] < f[j-1]; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
	return strings.Join(f, " ")
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	procs := c.procs
	c.procs = map[string]*exec.Cmd{}
	c.mu.Unlock()
	for _, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}
