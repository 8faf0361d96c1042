package presence

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// TestRedisClusterOneSlot: presence on a 3-master Redis Cluster. Every
// script touches several keys; they share the hash tag {prefix} and so
// one slot: no CROSSSLOT error, and the replicas agree as on one Redis.
// The flap counter's transaction is on one key.
func TestRedisClusterOneSlot(t *testing.T) {
	rc := redistest.StartCluster(t, 3, 0)
	newClusterClient := func() *redis.ClusterClient {
		cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	c := &cluster{t: t, prefix: uniquePrefix(t)}
	var reps []*RedisStore
	for _, name := range []string{"r1", "r2"} {
		s, err := NewRedis(c.config(name, newClusterClient()))
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		reps = append(reps, s)
	}
	a, b := reps[0], reps[1]
	ctx := context.Background()
	since := time.Now().Truncate(time.Microsecond)
	must(t, a.Connect(ctx, connOn("3", "s1", "r1")))
	must(t, b.Ping(ctx, "3", since.Add(time.Second)))
	must(t, a.SetConfig(ctx, "3", json.RawMessage(`{"a":1}`), since.Add(2*time.Second)))
	st, ok := online(t, b)["3"]
	if !ok || st.Instance != "r1" || string(st.LastConfig) != `{"a":1}` {
		t.Fatalf("r2 lists %+v (%v)", st, ok)
	}
	must(t, a.Disconnect(ctx, "3", "s1"))
	testwait.Until(t, 5*time.Second, "online then offline", func() bool { return c.j.len() >= 2 })
	if got := c.j.kinds(); got != "+3 -3" {
		t.Errorf("journal %q", got)
	}
	if len(online(t, b)) != 0 {
		t.Errorf("still listed: %+v", online(t, b))
	}

	f, err := NewFlaps(FlapsConfig{Client: newClusterClient(), Prefix: c.prefix + ":flaps"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range c.j.all() {
		f.Record(tr.Transition)
	}
	if got := f.Max(); got != 1 {
		t.Errorf("flaps max %d, want 1 offline transition", got)
	}
}
