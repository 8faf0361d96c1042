package outbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// TestStreamOnRedisCluster: the outbox writes one stream (one key, so one
// slot) and works through a Cluster client on a 3-master Redis Cluster.
func TestStreamOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t, 3, 0)
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { _ = cl.Close() })
	o, _ := start(t, Config{Stream: testStream, Client: cl})
	for i := range 20 {
		o.Add(nodeFact("ping", i))
	}
	testwait.For(t, 5*time.Second, func() error {
		n, err := cl.XLen(context.Background(), testStream).Result()
		if err != nil || n != 20 {
			return fmt.Errorf("stream length %d (%v), want 20", n, err)
		}
		return nil
	})
}
