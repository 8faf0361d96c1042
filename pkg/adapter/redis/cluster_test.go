package redis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// startRedisCluster starts three redis-server processes (masters, no
// replicas) as one Redis Cluster and returns their addresses. Like
// redistest, it skips without redis-server and redis-cli, except in CI.
func startRedisCluster(t *testing.T) []string {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server or redis-cli not found (CI=true: failing instead of skipping)")
		}
		t.Skip("redis-server or redis-cli not found")
	}
	dir := t.TempDir()
	var addrs []string
	for _, port := range clusterPorts(t, 3) {
		p := strconv.Itoa(port)
		cmd := exec.Command(server, "--port", p, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+p+".conf"), "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--logfile", filepath.Join(dir, p+".log"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		})
		addrs = append(addrs, "127.0.0.1:"+p)
	}
	for _, addr := range addrs {
		cl := newClient(addr)
		testwait.Until(t, wait, addr+" up", func() bool { return cl.Ping(context.Background()).Err() == nil })
		_ = cl.Close()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	if out, err := exec.Command(cli, append(args, "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range addrs {
		cl := newClient(addr)
		testwait.Until(t, wait, addr+" in a healthy cluster", func() bool {
			info, err := cl.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = cl.Close()
	}
	return addrs
}

// clusterPorts finds free ports whose cluster bus ports (+10000) are free
// too.
func clusterPorts(t *testing.T, n int) []int {
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

// TestRedisCluster: the adapter works through a Cluster client, and
// counts servers on every node of the cluster.
func TestRedisCluster(t *testing.T) {
	addrs := startRedisCluster(t)
	c := &cluster{t: t, prefix: uniquePrefix(t), newClient: func() goredis.UniversalClient {
		return goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs: addrs, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		})
	}}
	s0, s1 := c.add(nil), c.add(nil)
	a := s0.connect("/", "a", []string{"r"}, acking("a"))
	b := s1.connect("/", "b", []string{"r"}, acking("b"))

	if err := s0.nsp("/").To("r").Emit("hello"); err != nil {
		t.Fatal(err)
	}
	b.waitCount("hello", 1)
	markers(c, "/", a, b)
	expectCounts(t, "hello", map[*client]int{a: 1, b: 1})

	sockets, err := fetch(s1.nsp("/"))
	if err != nil || socketNames(sockets) != "a b" {
		t.Errorf("fetchSockets: %s %v", socketNames(sockets), err)
	}
	done := make(chan []any, 1)
	s0.nsp("/").To().Timeout(wait).EmitWithAck(func(args []any, err error) {
		if err != nil {
			t.Error(err)
		}
		done <- args
	}, "ping")
	if got := fmt.Sprint(sortedAny(<-done)); got != "[a b]" {
		t.Errorf("acks %s", got)
	}

	// One more subscriber on each node: the count is the sum over nodes.
	for _, addr := range addrs {
		newSpy(t, addr, c.prefix+"-request#/#")
	}
	if n, err := s0.adapter("/").ServerCount(context.Background()); err != nil || n != 5 {
		t.Errorf("server count %d (%v), want 2 servers + 3 subscribers", n, err)
	}
}
