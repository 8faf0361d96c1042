package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testmetrics"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// Short intervals: a test's whole life is a few TTLs.
const (
	tRefresh = 50 * time.Millisecond
	tTTL     = 200 * time.Millisecond
	tGrace   = 150 * time.Millisecond
	tSweep   = 50 * time.Millisecond
)

// cluster is several RedisStores ("replicas") on one Redis, each with its
// own client, reporting into one journal.
type cluster struct {
	t      *testing.T
	srv    *redistest.Server
	prefix string
	j      journal
	mutate func(*RedisConfig)
	// manual: the replicas are not started (the tests drive the loops).
	manual bool

	mu   sync.Mutex
	seq  int
	reps []*replica
}

type replica struct {
	name string
	*RedisStore
	client *redis.Client
}

func newCluster(t *testing.T, n int, mutate func(*RedisConfig)) *cluster {
	c := &cluster{t: t, srv: redistest.Start(t), prefix: uniquePrefix(t), mutate: mutate}
	for range n {
		c.add()
	}
	return c
}

func (c *cluster) config(name string, client redis.UniversalClient) RedisConfig {
	cfg := RedisConfig{
		Client: client, Handler: c.j.handler(name), Instance: name, Prefix: c.prefix,
		RefreshInterval: tRefresh, TTL: tTTL, Grace: tGrace, SweepInterval: tSweep, Timeout: time.Second,
	}
	if c.mutate != nil {
		c.mutate(&cfg)
	}
	return cfg
}

// add starts one more replica, shut down (then its client closed) when
// the test ends.
func (c *cluster) add() *replica {
	c.t.Helper()
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("r%d", c.seq)
	c.mu.Unlock()
	client := newClient(c.srv.Addr())
	s, err := NewRedis(c.config(name, client))
	if err != nil {
		c.t.Fatal(err)
	}
	if !c.manual {
		s.Start()
	}
	r := &replica{name: name, RedisStore: s, client: client}
	c.t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		_ = client.Close()
	})
	c.mu.Lock()
	c.reps = append(c.reps, r)
	c.mu.Unlock()
	return r
}

func (c *cluster) rep(i int) *replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reps[i]
}

// online is what a store lists, by node key.
func online(t testing.TB, s Store) map[string]State {
	t.Helper()
	states, err := s.Online(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]State{}
	for _, st := range states {
		out[st.Key] = st
	}
	return out
}

func connOn(key, id, instance string) Conn {
	c := conn(key, id)
	c.Instance = instance
	return c
}

// render lists the journal as "+3@r1 -3@r2".
func (j *journal) render() string {
	var s []string
	for _, e := range j.all() {
		s = append(s, fmt.Sprintf("%s%s@%s", map[bool]string{true: "+", false: "-"}[e.Online], e.Node.Key, e.by))
	}
	return strings.Join(s, " ")
}

// kinds lists the journal without who reported: "+3 -3".
func (j *journal) kinds() string {
	var s []string
	for _, e := range j.all() {
		s = append(s, map[bool]string{true: "+", false: "-"}[e.Online]+e.Node.Key)
	}
	return strings.Join(s, " ")
}

func TestRedisConfig(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	ok := RedisConfig{Client: client, Instance: "i1"}
	tests := []struct {
		name    string
		mutate  func(*RedisConfig)
		wantErr string
	}{
		{name: "defaults", mutate: func(*RedisConfig) {}},
		{name: "no client", mutate: func(c *RedisConfig) { c.Client = nil }, wantErr: "presence: RedisConfig.Client is required"},
		{name: "no instance", mutate: func(c *RedisConfig) { c.Instance = "" }, wantErr: "presence: RedisConfig.Instance is required"},
		{name: "brace in prefix", mutate: func(c *RedisConfig) { c.Prefix = "a{b" }, wantErr: "presence: Prefix"},
		{name: "TTL below twice refresh", mutate: func(c *RedisConfig) { c.RefreshInterval, c.TTL = time.Second, 1999*time.Millisecond }, wantErr: "presence: TTL 1.999s must be at least twice RefreshInterval 1s"},
		{name: "TTL exactly twice refresh", mutate: func(c *RedisConfig) { c.RefreshInterval, c.TTL = time.Second, 2*time.Second }},
		{name: "TTL below default refresh", mutate: func(c *RedisConfig) { c.TTL = 9 * time.Second }, wantErr: "presence: TTL 9s must be at least twice RefreshInterval 5s"},
		{name: "negative refresh", mutate: func(c *RedisConfig) { c.RefreshInterval = -1 }, wantErr: "presence: RefreshInterval"},
		{name: "negative sweep", mutate: func(c *RedisConfig) { c.SweepInterval = -time.Second }, wantErr: "presence: SweepInterval"},
		{name: "negative grace", mutate: func(c *RedisConfig) { c.Grace = -time.Second }, wantErr: "presence: Grace"},
		{name: "no grace", mutate: func(c *RedisConfig) { c.Grace = NoGrace }},
		{name: "negative stale", mutate: func(c *RedisConfig) { c.StaleAfter = -time.Second }, wantErr: "presence: StaleAfter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
			}
			if _, err := NewRedis(cfg); err == nil {
				t.Fatal("NewRedis accepted it")
			}
		})
	}
	d, err := ok.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if d.RefreshInterval != 5*time.Second || d.TTL != 15*time.Second || d.Grace != 5*time.Second || d.SweepInterval != time.Second ||
		d.StaleAfter != 65*time.Second || d.Prefix != "eventserver:presence" || d.Timeout != 5*time.Second || d.RetryPause != time.Second {
		t.Errorf("defaults: %+v", d)
	}
	if d, _ := (RedisConfig{Client: client, Instance: "i", RefreshInterval: time.Second}).withDefaults(); d.TTL != 3*time.Second {
		t.Errorf("TTL with a 1s refresh = %s, want 3s", d.TTL)
	}
	if d, _ := (RedisConfig{Client: client, Instance: "i", RefreshInterval: 100 * time.Millisecond}).withDefaults(); d.RetryPause != 100*time.Millisecond {
		t.Errorf("RetryPause = %s, want at most the refresh interval", d.RetryPause)
	}
}

// TestRedisOnlineOffline: a node that connects is announced once by the
// replica it connected to; all replicas list it; when it goes, exactly one
// replica announces its offline, after the grace.
func TestRedisOnlineOffline(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3, nil)
	a, b := c.rep(0), c.rep(1)
	since := time.Now().Truncate(time.Microsecond)
	cn := connOn("3", "s1", a.name)
	cn.Since = since
	must(t, a.Connect(ctx, cn))
	if got := c.j.render(); got != "+3@r1" {
		t.Fatalf("after connect: %q, want the online from r1 at once", got)
	}
	for i := range 3 {
		st, ok := online(t, c.rep(i))["3"]
		if !ok || st.Instance != "r1" || st.Connections != 1 || !st.ConnectedSince.Equal(since) || !sameNode(st.Node, node("3")) {
			t.Fatalf("replica %d lists %+v", i, st)
		}
	}
	must(t, b.Ping(ctx, "3", since.Add(time.Second))) // any replica may record it
	must(t, a.SetConfig(ctx, "3", json.RawMessage(`{"a":1}`), since.Add(2*time.Second)))
	must(t, a.SetMetrics(ctx, "3", json.RawMessage(`{"m":1}`), since.Add(3*time.Second)))
	st := online(t, c.rep(2))["3"]
	if st.LastPing == nil || !st.LastPing.Equal(since.Add(time.Second)) || string(st.LastConfig) != `{"a":1}` ||
		string(st.LastMetrics) != `{"m":1}` || !st.LastMetricsAt.Equal(since.Add(3*time.Second)) || !st.LastSeen.Equal(*st.LastPing) || st.Stale {
		t.Errorf("state = %+v", st)
	}

	gone := time.Now()
	must(t, a.Disconnect(ctx, "3", "s1"))
	testwait.Until(t, 5*time.Second, "the offline", func() bool { return c.j.len() == 2 })
	evs := c.j.all()
	if evs[1].Online || !sameNode(evs[1].Node, node("3")) || evs[1].Seq <= evs[0].Seq {
		t.Fatalf("journal:\n%s", &c.j)
	}
	if d := evs[1].at.Sub(gone); d < tGrace {
		t.Errorf("offline %s after the disconnect, before the grace %s", d, tGrace)
	}
	testwait.Holds(t, 3*tTTL, "one online, one offline", func() bool { return c.j.len() == 2 })
	if len(online(t, b)) != 0 {
		t.Errorf("still listed: %+v", online(t, b))
	}
}

func TestRedisNoTransitionWhenItShouldNot(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, c *cluster)
		want string // the journal, kinds only
		// online: node 3 is listed at the end, with this instance
		online string
	}{
		{
			name: "reconnect on another replica within the grace",
			run: func(t *testing.T, c *cluster) {
				must(t, c.rep(0).Connect(ctx, connOn("3", "s1", "r1")))
				must(t, c.rep(0).Disconnect(ctx, "3", "s1"))
				must(t, c.rep(1).Connect(ctx, connOn("3", "s2", "r2")))
			},
			want: "+3", online: "r2",
		},
		{
			name: "overlapping move: the old socket closes late",
			run: func(t *testing.T, c *cluster) {
				must(t, c.rep(0).Connect(ctx, connOn("3", "s1", "r1")))
				must(t, c.rep(1).Connect(ctx, connOn("3", "s2", "r2")))
				must(t, c.rep(0).Disconnect(ctx, "3", "s1"))
			},
			want: "+3", online: "r2",
		},
		{
			name: "two connections, one closes",
			run: func(t *testing.T, c *cluster) {
				must(t, c.rep(0).Connect(ctx, connOn("3", "s1", "r1")))
				must(t, c.rep(0).Connect(ctx, connOn("3", "s2", "r1")))
				must(t, c.rep(0).Disconnect(ctx, "3", "s2"))
			},
			want: "+3", online: "r1",
		},
		{
			name: "duplicate connect and unknown disconnects",
			run: func(t *testing.T, c *cluster) {
				must(t, c.rep(0).Connect(ctx, connOn("3", "s1", "r1")))
				must(t, c.rep(0).Connect(ctx, connOn("3", "s1", "r1")))
				must(t, c.rep(1).Disconnect(ctx, "3", "s1")) // not r2's connection
				must(t, c.rep(0).Disconnect(ctx, "3", "nope"))
				must(t, c.rep(0).Disconnect(ctx, "4", "s1"))
			},
			want: "+3", online: "r1",
		},
		{
			name: "reconnect after the grace: offline then online",
			run: func(t *testing.T, c *cluster) {
				must(t, c.rep(0).Connect(ctx, connOn("3", "s1", "r1")))
				must(t, c.rep(0).Disconnect(ctx, "3", "s1"))
				testwait.Until(t, 5*time.Second, "the offline", func() bool { return c.j.len() == 2 })
				must(t, c.rep(1).Connect(ctx, connOn("3", "s2", "r2")))
			},
			want: "+3 -3 +3", online: "r2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 3, nil)
			tt.run(t, c)
			testwait.Holds(t, tGrace+3*tTTL, "journal "+tt.want, func() bool { return c.j.kinds() == tt.want })
			st, ok := online(t, c.rep(2))["3"]
			if !ok || st.Instance != tt.online || st.Connections == 0 {
				t.Errorf("node 3 listed as %+v (listed: %v), want online on %s", st, ok, tt.online)
			}
		})
	}
}

// TestRedisReplicaDies: a replica that dies without a word (its loops stop,
// it never hands over) loses its connections when their entries expire;
// exactly one survivor reports each offline, within TTL + sweep + 1s.
func TestRedisReplicaDies(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3, nil)
	a, b := c.rep(0), c.rep(1)
	must(t, a.Connect(ctx, connOn("3", "s1", "r1")))
	must(t, a.Connect(ctx, connOn("4", "s2", "r1")))
	must(t, a.Connect(ctx, connOn("4", "s3", "r1")))
	must(t, b.Connect(ctx, connOn("5", "s4", "r2"))) // unaffected
	must(t, a.Connect(ctx, connOn("5", "s5", "r1"))) // keeps its other connection
	died := time.Now()
	a.kill()
	testwait.Until(t, tTTL+tSweep+time.Second, "offline of nodes 3 and 4", func() bool { return c.j.len() == 5 })
	testwait.Holds(t, 3*tTTL, "no more transitions", func() bool { return c.j.len() == 5 })
	var offs []string
	for _, e := range c.j.all()[3:] {
		if e.Online || e.by == "r1" {
			t.Errorf("unexpected %+v", e)
		}
		if d := e.at.Sub(died); d < tTTL-tRefresh {
			t.Errorf("offline of node %s %s after the death, before the TTL", e.Node.Key, d)
		}
		offs = append(offs, e.Node.Key)
	}
	if strings.Join(offs, ",") != "3,4" && strings.Join(offs, ",") != "4,3" {
		t.Errorf("offline nodes %v, want 3 and 4", offs)
	}
	l := online(t, b)
	if len(l) != 1 || l["5"].Instance != "r2" || l["5"].Connections != 1 {
		t.Errorf("online = %+v, want only node 5 on r2", l)
	}
	if v := testCounter(t, b.m.expirations) + testCounter(t, c.rep(2).m.expirations); v != 4 {
		t.Errorf("expirations counted %v, want 4", v)
	}
}

// TestRedisReplicaDiesNodeMoves: the node reconnects to another replica
// before its old entry expires: nothing is reported.
func TestRedisReplicaDiesNodeMoves(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 2, nil)
	a, b := c.rep(0), c.rep(1)
	must(t, a.Connect(ctx, connOn("3", "s1", "r1")))
	a.kill()
	must(t, b.Connect(ctx, connOn("3", "s2", "r2")))
	testwait.Holds(t, 4*tTTL, "only the first online", func() bool { return c.j.render() == "+3@r1" })
	if st := online(t, b)["3"]; st.Connections != 1 || st.Instance != "r2" {
		t.Errorf("node 3 = %+v", st)
	}
}

// TestRedisShutdownHandsOver: a clean shutdown removes the replica's
// connections at once: their offline comes after the grace, well before
// the TTL, decided by a survivor; a reconnect elsewhere within the grace
// cancels it.
func TestRedisShutdownHandsOver(t *testing.T) {
	ctx := context.Background()
	const ttl = 3 * time.Second
	c := newCluster(t, 2, func(cfg *RedisConfig) {
		cfg.TTL, cfg.RefreshInterval, cfg.Grace = ttl, time.Second, 100*time.Millisecond
	})
	a, b := c.rep(0), c.rep(1)
	must(t, a.Connect(ctx, connOn("3", "s1", "r1")))
	must(t, a.Connect(ctx, connOn("4", "s2", "r1")))
	start := time.Now()
	must(t, a.Shutdown(ctx))
	must(t, a.Shutdown(ctx))
	if err := a.Connect(ctx, connOn("5", "s3", "r1")); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Shutdown = %v, want ErrClosed", err)
	}
	must(t, a.Disconnect(ctx, "3", "s1")) // the hub may still report it: a no-op
	must(t, b.Connect(ctx, connOn("4", "s4", "r2")))
	testwait.Until(t, ttl/2, "node 3's offline, before the TTL", func() bool { return c.j.len() == 3 })
	if e := c.j.all()[2]; e.Online || e.Node.Key != "3" || e.by != "r2" {
		t.Errorf("journal:\n%s", &c.j)
	}
	if d := time.Since(start); d >= ttl {
		t.Errorf("offline after %s, not before the TTL %s", d, ttl)
	}
	testwait.Holds(t, 300*time.Millisecond, "node 4 moved: nothing more", func() bool { return c.j.len() == 3 })
}

// TestRedisRestart: Redis restarts empty (or is flushed); the replicas
// register their connections again, with their data, and nobody is told
// anything.
func TestRedisRestart(t *testing.T) {
	for _, how := range []string{"restart", "flush"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t, 3, nil)
			a, b := c.rep(0), c.rep(1)
			since := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
			for i, r := range []*replica{a, a, b, b, a} {
				cn := connOn(fmt.Sprint(i+1), fmt.Sprintf("s%d", i+1), r.name)
				cn.Since = since
				must(t, r.Connect(ctx, cn))
				must(t, r.Ping(ctx, cn.Node.Key, time.Now()))
			}
			cn := connOn("2", "s9", "r2") // node 2 on two replicas
			cn.Since = time.Now()
			must(t, b.Connect(ctx, cn))
			must(t, a.SetConfig(ctx, "1", json.RawMessage(`{"c":1}`), since))
			before := online(t, c.rep(2))
			if len(before) != 5 || c.j.len() != 5 {
				t.Fatalf("before: %d online, journal:\n%s", len(before), &c.j)
			}
			if how == "restart" {
				c.srv.Restart()
			} else {
				must(t, a.client.FlushAll(ctx).Err())
			}
			testwait.Until(t, 5*time.Second, "every node listed again", func() bool {
				l, err := c.rep(2).Online(ctx)
				return err == nil && len(l) == 5
			})
			testwait.Holds(t, 3*tTTL, "no transition", func() bool { return c.j.len() == 5 })
			after := online(t, c.rep(2))
			for k, st := range before {
				got := after[k]
				if got.Connections != st.Connections || !got.ConnectedSince.Equal(since) || got.LastPing == nil ||
					string(got.LastConfig) != string(st.LastConfig) || got.Stale {
					t.Errorf("node %s after: %+v\nbefore: %+v", k, got, st)
				}
			}
			// Life goes on: one offline when a node goes.
			must(t, a.Disconnect(ctx, "1", "s1"))
			testwait.Until(t, 5*time.Second, "node 1's offline", func() bool { return c.j.kinds() == "+1 +2 +3 +4 +5 -1" })
			testwait.Holds(t, 2*tTTL, "nothing else", func() bool { return c.j.len() == 6 })
		})
	}
}

// TestRedisLostStateDetails drives two replicas by hand (no loops) through
// a flush: a disconnect before the restore, a move during the window and a
// new node in the window each get what they should.
func TestRedisLostStateDetails(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 0, func(cfg *RedisConfig) {
		cfg.TTL = time.Second
		cfg.RefreshInterval = 100 * time.Millisecond
	})
	c.manual = true
	a, b := c.add(), c.add()
	must(t, a.Connect(ctx, connOn("1", "s1", "r1"))) // moves to b during the window
	must(t, a.Connect(ctx, connOn("2", "s2", "r1"))) // goes before a restores
	must(t, a.Connect(ctx, connOn("3", "s3", "r1"))) // just restored
	if c.j.kinds() != "+1 +2 +3" {
		t.Fatalf("journal:\n%s", &c.j)
	}
	must(t, a.client.FlushAll(ctx).Err())

	must(t, a.Disconnect(ctx, "2", "s2"))            // first to notice: a new epoch with a window
	must(t, b.Connect(ctx, connOn("1", "s4", "r2"))) // node 1 moves
	must(t, a.Disconnect(ctx, "1", "s1"))
	must(t, b.Connect(ctx, connOn("6", "s6", "r2"))) // node 6 is new
	if c.j.len() != 3 {
		t.Fatalf("transitions in the window:\n%s", &c.j)
	}
	must(t, a.refresh(ctx)) // restores node 3
	l := online(t, b)
	if len(l) != 3 || l["3"].Connections != 1 || l["1"].Connections != 1 || l["6"].Connections != 1 {
		t.Fatalf("online after the restore: %+v (node 2 pending: not listed)", l)
	}
	must(t, b.sweep(ctx))
	if c.j.len() != 3 {
		t.Fatalf("sweep in the window reported:\n%s", &c.j)
	}
	// After the window (a TTL): node 2 offline, node 6 announced, node 1
	// (it was online before) not.
	testwait.Until(t, 5*time.Second, "the window's end", func() bool {
		must(t, a.refresh(ctx))
		must(t, b.refresh(ctx))
		must(t, b.sweep(ctx))
		if c.j.len() > 5 {
			t.Fatalf("journal:\n%s", &c.j)
		}
		return c.j.len() == 5
	})
	if got := c.j.kinds(); got != "+1 +2 +3 -2 +6" && got != "+1 +2 +3 +6 -2" {
		t.Fatalf("journal:\n%s", &c.j)
	}
	must(t, a.sweep(ctx))
	must(t, b.sweep(ctx))
	checkSequences(t, &c.j, map[string]bool{"1": true, "2": false, "3": true, "6": true})
}

// TestRedisSweptReplicaReturns: a replica that was silent for longer than
// the TTL (a long GC pause, a partition) had its connections swept and
// their offline reported; when it comes back its nodes are announced again
// (not restored silently: the epoch is the same, so this was a real
// offline, not a loss of Redis's state).
func TestRedisSweptReplicaReturns(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 2, nil)
	a := c.rep(0)
	must(t, a.Connect(ctx, connOn("3", "s1", "r1")))
	a.stopLoops()
	testwait.Until(t, 5*time.Second, "the offline by r2", func() bool { return c.j.render() == "+3@r1 -3@r2" })
	a.startLoops()
	testwait.Until(t, 5*time.Second, "online again", func() bool { return c.j.render() == "+3@r1 -3@r2 +3@r1" })
	testwait.Holds(t, 3*tTTL, "nothing more", func() bool { return c.j.len() == 3 })
	if v := testCounter(t, a.m.reregistered.WithLabelValues(modeConnect)); v != 1 {
		t.Errorf("reregistered{mode=connect} = %v, want 1", v)
	}
}

// TestRedisPausedLongerThanTTL: Redis itself stops answering for longer
// than the TTL: no replica could refresh, so nobody's entries are expired
// when it comes back, and a node that reconnected meanwhile (its Connect
// failed) is not reported offline by its old pending deadline.
func TestRedisPausedLongerThanTTL(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 2, nil)
	must(t, c.rep(0).Connect(ctx, connOn("1", "s1", "r1")))
	must(t, c.rep(1).Connect(ctx, connOn("2", "s2", "r2")))
	must(t, c.rep(1).Connect(ctx, connOn("3", "s3", "r2")))
	must(t, c.rep(1).Disconnect(ctx, "3", "s3")) // pending when Redis stops
	c.srv.Pause()
	outage := time.Now()
	if err := c.rep(0).Connect(ctx, connOn("3", "s4", "r1")); err == nil {
		t.Error("Connect to a paused Redis did not fail")
	}
	time.Sleep(3*tTTL - time.Since(outage)) // the rest of the outage, if any (the client timed out after 1s)
	c.srv.Resume()
	testwait.Holds(t, 4*tTTL, "no transition", func() bool {
		ok := c.j.kinds() == "+1 +2 +3"
		if !ok {
			t.Logf("journal:\n%s", &c.j)
		}
		return ok
	})
	l := online(t, c.rep(0))
	if len(l) != 3 || l["3"].Connections != 1 || l["3"].Instance != "r1" {
		t.Errorf("online = %+v", l)
	}
}

// TestRedisDown: calls fail while Redis is down; the store keeps the
// connections and the removals, and settles them when Redis is back.
func TestRedisDown(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c := newCluster(t, 1, func(cfg *RedisConfig) {
		cfg.Timeout = 200 * time.Millisecond
		cfg.RetryPause = 20 * time.Millisecond
		cfg.Registerer = reg
	})
	a := c.rep(0)
	must(t, a.Connect(ctx, connOn("1", "s1", "r1")))
	must(t, a.Connect(ctx, connOn("3", "s3", "r1")))
	c.srv.Kill()
	if err := a.Connect(ctx, connOn("2", "s2", "r1")); err == nil {
		t.Fatal("Connect with Redis down did not fail")
	}
	if err := a.Disconnect(ctx, "3", "s3"); err == nil {
		t.Fatal("Disconnect with Redis down did not fail")
	}
	if _, err := a.Online(ctx); err == nil {
		t.Fatal("Online with Redis down did not fail")
	}
	testwait.Until(t, 5*time.Second, "refresh errors", func() bool { return testCounter(t, a.m.refreshErrors) >= 2 })
	down := time.Now()
	n0 := testCounter(t, a.m.refreshErrors)
	c.srv.Restart() // empty
	// Node 1 is restored silently; node 2 (never registered) is announced
	// when the restore window ends; node 3's removal (retried) makes it
	// offline after the window.
	testwait.Until(t, 5*time.Second, "nodes 2 and 3 settled", func() bool { return c.j.len() == 4 })
	if got := c.j.kinds(); got != "+1 +3 +2 -3" && got != "+1 +3 -3 +2" {
		t.Fatalf("journal:\n%s", &c.j)
	}
	testwait.Holds(t, 2*tTTL, "nothing more", func() bool { return c.j.len() == 4 })
	l := online(t, a)
	if len(l) != 2 || l["1"].Connections != 1 || l["2"].Connections != 1 {
		t.Errorf("online = %+v", l)
	}
	// No spinning while down: at most one refresh per RetryPause (and the
	// time the failed calls took).
	if n, max := testCounter(t, a.m.refreshErrors)-n0, float64(time.Since(down)/(20*time.Millisecond))+2; n > max {
		t.Errorf("%v refresh errors, want at most %v", n, max)
	}
	if v := testmetrics.Value(t, reg, "eventserver_presence_refresh_errors_total"); v < 2 {
		t.Errorf("refresh_errors_total = %v", v)
	}
}

// TestRedisStale: a node that stops pinging is stale in the list of every
// replica, and logged once by the replica that holds its connection.
func TestRedisStale(t *testing.T) {
	ctx := context.Background()
	core, logs := observer.New(zapcore.InfoLevel)
	const after = 150 * time.Millisecond
	c := newCluster(t, 2, func(cfg *RedisConfig) {
		cfg.StaleAfter = after
		cfg.Logger = zap.New(core).Named(cfg.Instance)
	})
	a, b := c.rep(0), c.rep(1)
	cn := connOn("3", "s1", "r1")
	cn.Since = time.Now()
	must(t, a.Connect(ctx, cn))
	if online(t, b)["3"].Stale {
		t.Fatal("stale at once")
	}
	testwait.Until(t, 5*time.Second, "stale on r2", func() bool { return online(t, b)["3"].Stale })
	staleLines := func() []observer.LoggedEntry { return logs.FilterMessage("node stale: connected but silent").All() }
	testwait.Until(t, 5*time.Second, "the stale line", func() bool { return len(staleLines()) == 1 })
	testwait.Holds(t, 2*after, "one line", func() bool { return len(staleLines()) == 1 })
	if e := staleLines()[0]; e.LoggerName != "r1" || e.ContextMap()["node_id"] != "3" {
		t.Errorf("stale line %+v, want it from r1 about node 3", e)
	}
	must(t, a.Ping(ctx, "3", time.Now()))
	if online(t, b)["3"].Stale {
		t.Error("stale after a ping")
	}
	if n := logs.FilterMessage("node no longer stale").Len(); n != 1 {
		t.Errorf("%d 'no longer stale' lines", n)
	}
}

func TestRedisMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c := newCluster(t, 2, func(cfg *RedisConfig) { cfg.Registerer = reg })
	must(t, c.rep(0).Connect(ctx, connOn("1", "s1", "r1")))
	must(t, c.rep(0).Connect(ctx, connOn("2", "s2", "r1")))
	must(t, c.rep(0).Disconnect(ctx, "2", "s2"))
	testwait.Until(t, 5*time.Second, "the offline", func() bool { return c.j.len() == 3 })
	testwait.Until(t, 5*time.Second, "the gauge", func() bool {
		return testmetrics.Value(t, reg, "eventserver_presence_online_nodes") == 1
	})
	for _, m := range []struct {
		name   string
		labels []string
		want   func(float64) bool
	}{
		{"eventserver_presence_transitions_total", []string{"kind", "online"}, func(v float64) bool { return v == 2 }},
		{"eventserver_presence_transitions_total", []string{"kind", "offline"}, func(v float64) bool { return v == 1 }},
		{"eventserver_presence_sweeps_total", nil, func(v float64) bool { return v >= 2 }},
		{"eventserver_presence_expirations_total", nil, func(v float64) bool { return v == 0 }},
		{"eventserver_presence_refresh_duration_seconds", nil, func(v float64) bool { return v >= 1 }},
		{"eventserver_presence_refresh_errors_total", nil, func(v float64) bool { return v == 0 }},
		{"eventserver_presence_sweep_errors_total", nil, func(v float64) bool { return v == 0 }},
	} {
		if v := testmetrics.Value(t, reg, m.name, m.labels...); !m.want(v) {
			t.Errorf("%s%v = %v", m.name, m.labels, v)
		}
	}
}

// TestRedisHandlerMayCallStore: the handler runs outside the store's
// locks, from Connect or from the sweeper, and may call the store.
func TestRedisHandlerMayCallStore(t *testing.T) {
	ctx := context.Background()
	var s *RedisStore
	var mu sync.Mutex
	var got []string
	c := newCluster(t, 0, nil)
	client := newClient(c.srv.Addr())
	defer client.Close()
	cfg := c.config("r1", client)
	cfg.Handler = func(tr Transition) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%v%s", tr.Online, tr.Node.Key))
		mu.Unlock()
		if tr.Online && tr.Node.Key == "1" {
			must(t, s.Disconnect(ctx, "1", "s1"))
		}
		if !tr.Online && tr.Node.Key == "1" {
			must(t, s.Connect(ctx, connOn("2", "s2", "r1")))
		}
	}
	var err error
	s, err = NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown(ctx)
	must(t, s.Connect(ctx, connOn("1", "s1", "r1")))
	testwait.Until(t, 5*time.Second, "online 1, offline 1, online 2", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(got, " ") == "true1 false1 true2"
	})
}

func testCounter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
