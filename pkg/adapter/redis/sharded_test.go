package redis

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

func shardedMode(mode Mode) func(*Config) {
	return func(cfg *Config) { cfg.Mode = mode }
}

func (s *server) sharded(name string) *ShardedAdapter {
	return s.nsp(name).Adapter().(*ShardedAdapter)
}

// shardChannels lists the sharded channels with subscribers that match
// pattern on every node of addrs, sorted.
func shardChannels(t testing.TB, addrs []string, pattern string) []string {
	t.Helper()
	var out []string
	for _, addr := range addrs {
		cl := newClient(addr)
		chs, err := cl.PubSubShardChannels(context.Background(), pattern).Result()
		_ = cl.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, chs...)
	}
	slices.Sort(out)
	return out
}

// exerciseSharded runs every broadcast shape and request between two
// servers of c and checks what each client got.
func exerciseSharded(t *testing.T, c *cluster) {
	s0, s1 := c.servers[0], c.servers[1]
	a := s0.connect("/", "a", []string{"r1"}, acking("a"))
	b := s1.connect("/", "b", []string{"r1", "r2"}, acking("b"))
	d := s1.connect("/", "d", []string{"r2"}, acking("d"))
	all := []*client{a, b, d}

	emit := func(op interface{ Emit(string, ...any) error }, ev string) {
		t.Helper()
		if err := op.Emit(ev); err != nil {
			t.Fatal(err)
		}
	}
	emit(s0.nsp("/").To("r1"), "room")                // one room: its channel in the dynamic modes
	emit(s0.nsp("/").To("r1", "r2"), "rooms")         // several rooms
	emit(s0.nsp("/").Except("r2"), "except")          // all but a room
	emit(s0.nsp("/"), "all")                          // everybody
	emit(s0.nsp("/").To(b.id()), "direct")            // one socket id
	emit(s1.nsp("/").To("r1").Except(b.id()), "back") // the other way
	markers(c, "/", all...)
	expectCounts(t, "room", map[*client]int{a: 1, b: 1, d: 0})
	expectCounts(t, "rooms", map[*client]int{a: 1, b: 1, d: 1})
	expectCounts(t, "except", map[*client]int{a: 1, b: 0, d: 0})
	expectCounts(t, "all", map[*client]int{a: 1, b: 1, d: 1})
	expectCounts(t, "direct", map[*client]int{a: 0, b: 1, d: 0})
	expectCounts(t, "back", map[*client]int{a: 1, b: 0, d: 0})

	if n, err := s0.sharded("/").ServerCount(context.Background()); err != nil || n != 2 {
		t.Errorf("server count %d %v", n, err)
	}
	sockets, err := fetch(s0.nsp("/"))
	if err != nil || socketNames(sockets) != "a b d" {
		t.Errorf("fetchSockets: %q %v", socketNames(sockets), err)
	}
	sockets, err = fetch(s1.nsp("/").To("r1"))
	if err != nil || socketNames(sockets) != "a b" {
		t.Errorf("fetchSockets r1: %q %v", socketNames(sockets), err)
	}
	rooms, err := s0.sharded("/").AllRooms(context.Background())
	if err != nil || !slices.Contains(rooms, "r2") || !slices.Contains(rooms, b.id()) {
		t.Errorf("allRooms %v %v", rooms, err)
	}

	// serverSideEmit with an acknowledgement.
	s1.nsp("/").OnServerSideEmit("question", func(args []any, ack socketio.Ack) { ack(fmt.Sprint("s1:", args[0])) })
	answers, err := s0.nsp("/").ServerSideEmitWithAck(context.Background(), "question", 7)
	if err != nil || fmt.Sprint(answers) != "[s1:7]" {
		t.Errorf("serverSideEmit answers %v %v", answers, err)
	}

	// A broadcast with acknowledgements, to a room on both servers.
	done := make(chan []any, 1)
	s0.nsp("/").To("r1", "r2").Timeout(wait).EmitWithAck(func(args []any, err error) {
		if err != nil {
			t.Error(err)
		}
		done <- args
	}, "ping")
	if got := fmt.Sprint(sortedAny(<-done)); got != "[a b d]" {
		t.Errorf("acks %s", got)
	}

	// socketsJoin, socketsLeave, disconnectSockets reach the other server.
	s0.nsp("/").To("r2").SocketsJoin("joined")
	testwait.Until(t, wait, "remote join", func() bool { return slices.Contains(s1.rooms("/", d), "joined") })
	s0.nsp("/").To("joined").SocketsLeave("r2")
	testwait.Until(t, wait, "remote leave", func() bool { return !slices.Contains(s1.rooms("/", d), "r2") })
	s0.nsp("/").To("joined").DisconnectSockets(true)
	testwait.Until(t, wait, "remote disconnect", func() bool { return s1.nsp("/").Socket(d.id()) == nil })
}

// TestShardedAcrossServers: two Go servers on one Redis 7 in each sharded
// mode: every broadcast shape, fetchSockets, allRooms, serverSideEmit and
// broadcasts with acknowledgements.
func TestShardedAcrossServers(t *testing.T) {
	for _, mode := range []Mode{ModeStatic, ModeDynamic, ModeDynamicPrivate} {
		t.Run(string(mode), func(t *testing.T) {
			exerciseSharded(t, newCluster(t, 2, shardedMode(mode)))
		})
	}
}

// TestShardedRoomChannels: a room's channel is subscribed while a local
// socket is in it (dynamic: public rooms; dynamic-private: socket ids
// too; static: none), and released when the last one leaves.
func TestShardedRoomChannels(t *testing.T) {
	for _, mode := range []Mode{ModeStatic, ModeDynamic, ModeDynamicPrivate} {
		t.Run(string(mode), func(t *testing.T) {
			c := newCluster(t, 1, shardedMode(mode))
			s := c.servers[0]
			addrs := []string{c.redis.Addr()}
			ns := c.prefix + "#/#"
			uid := s.sharded("/").UID()
			a := s.connect("/", "a", []string{"r1"})
			b := s.connect("/", "b", []string{"r1", "r2"})
			base := []string{ns, ns + uid + "#"}
			want := func(rooms ...string) []string {
				out := slices.Clone(base)
				if mode == ModeStatic {
					slices.Sort(out)
					return out
				}
				for _, r := range rooms {
					if mode == ModeDynamicPrivate || (r != a.id() && r != b.id()) {
						out = append(out, ns+r+"#")
					}
				}
				slices.Sort(out)
				return slices.Compact(out)
			}
			check := func(what string, w []string) {
				t.Helper()
				testwait.For(t, wait, func() error {
					if got := shardChannels(t, addrs, ns+"*"); !slices.Equal(got, w) {
						return fmt.Errorf("%s: channels %v, want %v", what, got, w)
					}
					return nil
				})
				if n := s.counter("room_channels"); int(n) != len(w)-2 {
					t.Errorf("%s: room_channels gauge %v, want %d", what, n, len(w)-2)
				}
			}
			check("two sockets", want("r1", "r2", a.id(), b.id()))
			s.nsp("/").Socket(b.id()).Leave("r2")
			check("b left r2", want("r1", a.id(), b.id()))
			s.nsp("/").Socket(a.id()).Disconnect(true)
			check("a gone", want("r1", b.id()))
			s.nsp("/").Socket(b.id()).Leave("r1")
			check("r1 empty", want(b.id()))
			// Close releases everything.
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := s.io.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			testwait.Until(t, wait, "no channel left", func() bool { return len(shardChannels(t, addrs, c.prefix+"#*")) == 0 })
		})
	}
}

// TestShardedRedisCluster: the sharded modes on a 3-master Redis Cluster:
// the channels spread over the masters, each subscribed on its own.
func TestShardedRedisCluster(t *testing.T) {
	addrs := startRedisCluster(t)
	c := &cluster{t: t, prefix: uniquePrefix(t), mutate: shardedMode(ModeDynamic), newClient: func() goredis.UniversalClient {
		return goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs: addrs, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		})
	}}
	c.add(nil)
	c.add(nil)
	exerciseSharded(t, c)
	// Room channels on more than one master.
	nodes := 0
	for _, addr := range addrs {
		if len(shardChannels(t, []string{addr}, c.prefix+"#*")) > 0 {
			nodes++
		}
	}
	if nodes < 2 {
		t.Errorf("channels on %d nodes: %v", nodes, shardChannels(t, addrs, c.prefix+"#*"))
	}
}

// TestShardedReadyAcrossJoins: a room joined (a room channel to subscribe)
// does not make the server unready while its channel is on its way.
func TestShardedReadyAcrossJoins(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.Mode = ModeDynamicPrivate
		cfg.Logger = zap.New(core)
	})
	s := c.servers[0]
	for i := range 4 {
		s.connect("/", fmt.Sprint("c", i), []string{fmt.Sprint("room", i)})
		if !s.sb.Ready() {
			t.Errorf("not ready right after client %d joined its room", i)
		}
	}
	testwait.Until(t, wait, "room channels subscribed", func() bool { return s.counter("room_channels") == 8 })
	if n := logs.FilterMessageSnippet("not ready").Len(); n != 0 {
		t.Errorf("%d 'not ready' logs while rooms were joined", n)
	}
}

// shardedGoroutines counts the goroutines running a ShardedBroker method.
func shardedGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var stacks []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pkg/adapter/redis.(*ShardedBroker)") {
			stacks = append(stacks, g)
		}
	}
	return len(stacks), strings.Join(stacks, "\n\n")
}

// TestShardedShutdownStopsGoroutines: Shutdown stops every goroutine of
// the Broker, the readers of its subscription connections included.
func TestShardedShutdownStopsGoroutines(t *testing.T) {
	c := newCluster(t, 1, shardedMode(ModeDynamic))
	s := c.servers[0]
	s.connect("/", "a", []string{"r1", "r2"})
	testwait.Until(t, wait, "room channels", func() bool { return s.counter("room_channels") == 2 })
	if n, _ := shardedGoroutines(); n < 5 {
		t.Fatalf("%d goroutines of the Broker, want the supervisor, 2 dispatchers, the publisher and a reader", n)
	}
	s.close()
	testwait.For(t, wait, func() error {
		if n, stacks := shardedGoroutines(); n != 0 {
			return fmt.Errorf("%d goroutines left:\n%s", n, stacks)
		}
		return nil
	})
}
