package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSentinelFailover: a group starts with every sentinel seeing the
// replica and each other; after SIGKILL of the master the sentinels
// promote the replica, and a go-redis failover client on the group's
// sentinels reads, from the new master, what it wrote to the old one.
func TestSentinelFailover(t *testing.T) {
	g := StartSentinel(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: g.SentinelAddrs(),
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d replicas, %v", n, err)
	}
	old := g.KillMaster()
	start := time.Now()
	promoted := g.WaitFailover(old, 20*time.Second)
	t.Logf("failover %s -> %s in %s", old, promoted, time.Since(start).Round(time.Millisecond))
	if promoted == old {
		t.Fatalf("still %s", old)
	}
	var v string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v, err = c.Get(ctx, "k").Result(); err == nil {
			break
		}
	}
	if err != nil || v != "v" {
		t.Fatalf("GET k after the failover: %q, %v", v, err)
	}
}

// TestSentinelSwitchover: SENTINEL FAILOVER promotes the replica while the
// master is up.
func TestSentinelSwitchover(t *testing.T) {
	g := StartSentinel(t)
	old := g.Switchover()
	if promoted := g.WaitFailover(old, 20*time.Second); promoted == old {
		t.Fatalf("still %s", old)
	}
}
