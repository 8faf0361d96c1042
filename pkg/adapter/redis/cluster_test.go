package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	goredis "github.com/redis/go-redis/v9"
)

// startRedisCluster starts a Redis Cluster of three masters without
// replicas (redistest.StartCluster) and returns their addresses.
func startRedisCluster(t *testing.T) []string {
	t.Helper()
	return redistest.StartCluster(t, 3, 0).Addrs()
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
