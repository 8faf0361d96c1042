package redis

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// fastHealth is the health interval of fast.
const fastHealth = 200 * time.Millisecond

func fast(cfg *Config) {
	cfg.healthInterval = fastHealth
	cfg.RetryPause = 100 * time.Millisecond
	cfg.PublishTimeout = 300 * time.Millisecond
	cfg.RequestTimeout = time.Second
}

// traffic emits "tick" from s every 10ms until stop is called.
func traffic(s *server) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
				_ = s.nsp("/").Emit("tick", i)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// deliveredAgain emits from one server until a client of another gets
// it: delivery across servers works again.
func deliveredAgain(t *testing.T, from *server, to *client, ev string) {
	t.Helper()
	testwait.Until(t, wait, ev+" delivered across servers", func() bool {
		if to.count(ev) > 0 {
			return true
		}
		_ = from.nsp("/").Emit(ev)
		time.Sleep(50 * time.Millisecond)
		return to.count(ev) > 0
	})
}

func ready(c *cluster) bool {
	for _, s := range c.servers {
		if !s.broker.Ready() {
			return false
		}
	}
	return true
}

// TestRedisRestart: Redis dies and comes back (empty) under traffic,
// three times. Ready goes false, then true once the subscriptions are
// confirmed again; delivery across servers resumes within seconds; local
// delivery never stops; no goroutine is left behind.
func TestRedisRestart(t *testing.T) {
	c := newCluster(t, 2, fast)
	s0, s1 := c.servers[0], c.servers[1]
	a := s0.connect("/", "a", nil)
	b := s1.connect("/", "b", nil)
	deliveredAgain(t, s0, b, "warm-up")
	baseline := runtime.NumGoroutine()
	if n := brokerGoroutines(); n != 10 {
		t.Errorf("%d Broker goroutines, want 5 per Broker", n)
	}

	stop := traffic(s0)
	defer stop()
	for round := range 3 {
		c.redis.Kill()
		testwait.Until(t, wait, "not ready while Redis is down", func() bool { return !s0.broker.Ready() && !s1.broker.Ready() })

		// Local delivery goes on, and emitting does not block.
		ev := fmt.Sprint("local-", round)
		start := time.Now()
		if err := s0.nsp("/").Emit(ev); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("emit took %s with Redis down", took)
		}
		a.waitCount(ev, 1)
		// Requests fail fast, with the local part.
		start = time.Now()
		sockets, err := fetch(s0.nsp("/"))
		if err == nil || socketNames(sockets) != "a" || time.Since(start) > 2*time.Second {
			t.Errorf("fetchSockets with Redis down: %s %v after %s", socketNames(sockets), err, time.Since(start))
		}

		c.redis.Restart()
		testwait.Until(t, wait, "ready again", func() bool { return ready(c) })
		deliveredAgain(t, s0, b, fmt.Sprint("after-", round))
		if b.count("tick") == 0 {
			t.Error("no tick delivered")
		}
	}
	stop()
	testwait.Until(t, wait, "goroutines back to the baseline", func() bool {
		return brokerGoroutines() == 10 && runtime.NumGoroutine() <= baseline+5
	})
	if s0.counter("redis_errors_total", "op", opReceive) == 0 {
		t.Error("connection losses not counted")
	}
	if s0.counter("subscribed") != 1 {
		t.Error("subscription gauge not 1 when ready")
	}
}

// TestRedisPaused: a hung Redis (SIGSTOP) keeps its connections open and
// answers nothing. Emitting still returns at once and delivers locally,
// requests and the server count end by their timeouts, readiness goes
// false, and everything recovers when Redis does.
func TestRedisPaused(t *testing.T) {
	c := newCluster(t, 2, fast)
	s0, s1 := c.servers[0], c.servers[1]
	a := s0.connect("/", "a", []string{"r"})
	b := s1.connect("/", "b", []string{"r"})
	deliveredAgain(t, s0, b, "warm-up")

	c.redis.Pause()
	defer c.redis.Resume()
	start := time.Now()
	for i := range 200 {
		if err := s0.nsp("/").To("r").Emit("paused", i); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Errorf("200 emits took %s with Redis paused (publish timeout 300ms)", took)
	}
	a.waitCount("paused", 200)

	start = time.Now()
	if n, err := s0.adapter("/").ServerCount(context.Background()); n != 1 || err == nil {
		t.Errorf("server count %d (%v) with Redis paused", n, err)
	}
	if took := time.Since(start); took > 600*time.Millisecond {
		t.Errorf("ServerCount took %s (publish timeout 300ms)", took)
	}
	start = time.Now()
	sockets, err := fetch(s0.nsp("/"))
	if took := time.Since(start); err == nil || took > 1500*time.Millisecond || socketNames(sockets) != "a" {
		t.Errorf("fetchSockets: %s %v after %s (request timeout 1s)", socketNames(sockets), err, took)
	}
	acked := make(chan error, 1)
	if err := s0.nsp("/").Adapter().ServerSideEmit([]any{"q"}, func(_ []any, err error) { acked <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acked:
		if err == nil {
			t.Error("serverSideEmitWithAck succeeded with Redis paused")
		}
	case <-time.After(2 * time.Second):
		t.Error("serverSideEmitWithAck did not complete by its timeout")
	}
	testwait.Until(t, wait, "not ready while Redis is paused", func() bool { return !s0.broker.Ready() && !s1.broker.Ready() })
	testwait.Until(t, wait, "lost publishes counted", func() bool {
		return s0.counter("messages_dropped_total", "reason", dropStale)+s0.counter("redis_errors_total", "op", opPublish) > 0
	})

	c.redis.Resume()
	testwait.Until(t, wait, "ready again", func() bool { return ready(c) })
	deliveredAgain(t, s0, b, "resumed")
}

// TestCloseStopsEverything: Close ends every goroutine the Broker
// started, pending requests included, and is idempotent; an adapter
// closed alone stops its subscriptions.
func TestCloseStopsEverything(t *testing.T) {
	c := newCluster(t, 2, nil)
	s0 := c.servers[0]
	zombie(t, c, "/")
	acked := make(chan error, 1)
	if err := s0.nsp("/").Adapter().ServerSideEmit([]any{"q"}, func(_ []any, err error) { acked <- err }); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, wait, "request pending", func() bool {
		ad := s0.adapter("/")
		ad.mu.Lock()
		defer ad.mu.Unlock()
		return len(ad.requests) == 1
	})
	if err := s0.broker.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acked:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("pending request ended with %v", err)
		}
	default:
		t.Error("Close returned before the pending request ended")
	}
	if err := s0.broker.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if s0.broker.Ready() {
		t.Error("ready after Close")
	}
	testwait.Until(t, wait, "only the other Broker's 5 goroutines", func() bool { return brokerGoroutines() == 5 })
	if err := s0.nsp("/").ServerSideEmit("after-close"); err != nil {
		t.Errorf("emit after Close: %v", err)
	}

	// A dynamic namespace's adapter is closed alone: its channels go.
	s1 := c.servers[1]
	nsp := s1.nsp("/dyn")
	testwait.Until(t, wait, "subscribed to /dyn", s1.broker.Ready)
	numsub := func() int64 {
		m, err := s1.client.PubSubNumSub(context.Background(), c.prefix+"-request#/dyn#").Result()
		if err != nil {
			t.Fatal(err)
		}
		return m[c.prefix+"-request#/dyn#"]
	}
	testwait.Until(t, wait, "/dyn request channel subscribed", func() bool { return numsub() == 1 })
	nsp.Adapter().Close()
	testwait.Until(t, wait, "/dyn request channel unsubscribed", func() bool { return numsub() == 0 })
	testwait.Until(t, wait, "ready without /dyn", s1.broker.Ready)

	s1.close()
	noBrokerGoroutines(t)
}

// noBrokerGoroutines checks that no Broker goroutine is left once Close
// returned. A goroutine that has called wg.Done may take a moment more to
// be gone, hence the short poll.
func noBrokerGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		n, stacks := brokerStacks()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Broker goroutines after Close:\n%s", n, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnreachableRedis: with no Redis at all, the Broker is not ready,
// retries at its pace rather than in a busy loop, delivers locally, and
// closes promptly.
func TestUnreachableRedis(t *testing.T) {
	cl := newClient("127.0.0.1:1")
	defer cl.Close()
	b, err := NewBroker(Config{Client: cl, RetryPause: 100 * time.Millisecond, PublishTimeout: 200 * time.Millisecond, RequestTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	io, err := socketio.NewServer(socketio.Config{Adapter: b.New})
	if err != nil {
		t.Fatal(err)
	}
	nsp := io.Of("/")
	testwait.Holds(t, time.Second, "not ready without Redis", func() bool { return !b.Ready() })
	attempts := testCounter(b.metrics.redisErrors.WithLabelValues(opReceive))
	if attempts < 3 || attempts > 15 {
		t.Errorf("%v connection attempts in 1s with a 100ms retry pause", attempts)
	}
	if err := nsp.Emit("x"); err != nil {
		t.Error(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := io.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %s", took)
	}
	noBrokerGoroutines(t)
}

// TestInboundQueueOverflow: when message handling stalls, the bounded
// queue drops and counts, and the reader goes on (the connection stays
// healthy).
func TestInboundQueueOverflow(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.add(func(cfg *Config) { cfg.QueueSize = 2; cfg.healthInterval = 200 * time.Millisecond })
	s0, s1 := c.servers[0], c.servers[1]
	b := s1.connect("/", "b", nil)
	release := make(chan struct{})
	blocked := make(chan struct{})
	s1.nsp("/").OnServerSideEmit("block", func([]any, socketio.Ack) {
		close(blocked)
		<-release
	})
	if err := s0.nsp("/").ServerSideEmit("block"); err != nil {
		t.Fatal(err)
	}
	<-blocked
	for i := range 50 {
		_ = s0.nsp("/").Emit("flood", i)
	}
	testwait.Until(t, wait, "overflow counted", func() bool {
		return s1.counter("messages_dropped_total", "reason", dropInboundFull) > 0
	})
	// The reader still answers the health checks.
	testwait.Holds(t, 600*time.Millisecond, "ready while only the handler is stalled", s1.broker.Ready)
	close(release)
	deliveredAgain(t, s0, b, "after")
	if n := b.count("flood"); n == 0 || n >= 50 {
		t.Errorf("%d of 50 flood messages delivered with a queue of 2", n)
	}
}

// splitClient publishes through one Redis and subscribes on another, the
// way a go-redis Sentinel client does right after a failover while the old
// master is still up: its pool moved to the new master, its subscription
// connection did not.
type splitClient struct {
	goredis.UniversalClient // everything but subscriptions
	sub                     atomic.Pointer[goredis.Client]
}

func (c *splitClient) Subscribe(ctx context.Context, channels ...string) *goredis.PubSub {
	return c.sub.Load().Subscribe(ctx, channels...)
}

func (c *splitClient) PSubscribe(ctx context.Context, patterns ...string) *goredis.PubSub {
	return c.sub.Load().PSubscribe(ctx, patterns...)
}

// TestDeafSubscription: a subscription connection that is alive but on
// another server than the one publishes reach (the old master after a
// Sentinel failover) is noticed by the canary and replaced, so that
// delivery across servers resumes as soon as the client points its
// subscriptions at the new master, instead of when the old master drops
// its clients, or never.
func TestDeafSubscription(t *testing.T) {
	c := newCluster(t, 1, fast)
	s0 := c.servers[0]
	old := redistest.Start(t)
	oldClient, newSub := newClient(old.Addr()), newClient(c.redis.Addr())
	t.Cleanup(func() { _ = oldClient.Close(); _ = newSub.Close() })
	split := &splitClient{UniversalClient: newClient(c.redis.Addr())}
	split.sub.Store(oldClient)
	c.newClient = func() goredis.UniversalClient { return split }
	s1 := c.add(nil)
	b := s1.connect("/", "b", nil)
	_ = s0.nsp("/").Emit("deaf")

	testwait.Until(t, wait, "the canary to find the deaf subscription", func() bool {
		return s1.counter("redis_errors_total", "op", opCanary) >= 2
	})
	if n := s0.counter("redis_errors_total", "op", opCanary); n != 0 {
		t.Errorf("s0, subscribed where it publishes, counted %v deaf subscriptions", n)
	}
	if b.count("deaf") != 0 {
		t.Fatal("a deaf subscription delivered")
	}

	split.sub.Store(newSub) // the client follows the failover
	deliveredAgain(t, s0, b, "after")
	testwait.Until(t, wait, "s1 ready", s1.broker.Ready)
	n := s1.counter("redis_errors_total", "op", opCanary)
	testwait.Holds(t, 10*fastHealth, "s1 ready", s1.broker.Ready)
	if now := s1.counter("redis_errors_total", "op", opCanary); now != n {
		t.Errorf("canary failures went on after the subscription moved: %v, then %v", n, now)
	}
}
