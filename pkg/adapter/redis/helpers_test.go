package redis

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	goredis "github.com/redis/go-redis/v9"
	gosio "github.com/zishang520/socket.io/clients/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testclient"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// wait is how long a test waits for something that should happen at once.
const wait = 10 * time.Second

var prefixSeq atomic.Int64

// uniquePrefix is a channel prefix no other test uses.
func uniquePrefix(t testing.TB) string {
	return fmt.Sprintf("t%d-%s", prefixSeq.Add(1), strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
}

// testCounter reads a counter.
func testCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// cluster is several Socket.IO servers sharing one Redis.
type cluster struct {
	t       testing.TB
	redis   *redistest.Server
	prefix  string
	servers []*server
	mutate  func(*Config) // applied to every server's Config first
	// newClient makes each server's Redis client; nil: a standalone
	// client of redis.
	newClient func() goredis.UniversalClient
}

// server is one Socket.IO server with its own Redis client and Broker.
type server struct {
	t      testing.TB
	name   string
	io     *socketio.Server
	http   *httptest.Server
	broker *Broker        // classic mode
	sb     *ShardedBroker // sharded modes
	client goredis.UniversalClient
	reg    *prometheus.Registry
	closed atomic.Bool
}

// newCluster starts Redis and n servers. mutate may adjust each Config.
func newCluster(t testing.TB, n int, mutate func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, redis: redistest.Start(t), prefix: uniquePrefix(t), mutate: mutate}
	for range n {
		c.add(nil)
	}
	return c
}

// newBenchCluster is a one-server cluster that logs nothing and queues a
// lot.
func newBenchCluster(b *testing.B) *cluster {
	return newCluster(b, 1, func(cfg *Config) {
		cfg.Logger = zap.NewNop()
		cfg.QueueSize = 1 << 20
	})
}

func newClient(addr string) *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr:         addr,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   -1,
	})
}

// add starts one more server; its namespaces "/" and "/tasks" exist.
func (c *cluster) add(mutate func(*Config)) *server {
	t := c.t
	t.Helper()
	s := &server{t: t, name: fmt.Sprintf("s%d", len(c.servers)), reg: prometheus.NewRegistry()}
	if c.newClient != nil {
		s.client = c.newClient()
	} else {
		s.client = newClient(c.redis.Addr())
	}
	cfg := Config{
		Client:         s.client,
		Prefix:         c.prefix,
		RequestTimeout: 2 * time.Second,
		PublishTimeout: 500 * time.Millisecond,
		RetryPause:     100 * time.Millisecond,
		Logger:         zaptest.NewLogger(t).Named(s.name),
		Registerer:     s.reg,
	}
	for _, f := range []func(*Config){c.mutate, mutate} {
		if f != nil {
			f(&cfg)
		}
	}
	var (
		factory socketio.AdapterFactory
		ready   func() bool
	)
	if cfg.Mode.Sharded() {
		b, err := NewShardedBroker(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b.Start()
		s.sb, factory, ready = b, b.New, b.Ready
	} else {
		b, err := NewBroker(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b.Start()
		s.broker, factory, ready = b, b.New, b.Ready
	}
	// fetchSockets reports the kept headers (wire_test checks Node's shape).
	io, err := socketio.NewServer(socketio.Config{Adapter: factory, Engine: engineio.Config{KeepHeaders: []string{"User-Agent"}}})
	if err != nil {
		t.Fatal(err)
	}
	s.io = io
	for _, nsp := range []string{"/", "/tasks"} {
		s.io.Of(nsp).OnConnection(joinFromAuth)
	}
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", s.io)
	s.http = httptest.NewServer(mux)
	t.Cleanup(s.close)
	c.servers = append(c.servers, s)
	testwait.Until(t, wait, s.name+" ready", ready)
	return s
}

// joinFromAuth joins the rooms a test client names in its auth and keeps
// its name as socket data (a socket joins rooms once connected: connect
// waits for them).
func joinFromAuth(s *socketio.Socket) {
	auth := s.Handshake().Auth
	if rooms, ok := auth["rooms"].([]any); ok {
		for _, r := range rooms {
			s.Join(fmt.Sprint(r))
		}
	}
	s.SetData(map[string]any{"name": auth["name"]})
}

// close stops the server: the socket.io server (which closes its
// adapters), the Broker, the HTTP server and the Redis client.
func (s *server) close() {
	if s.closed.Swap(true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.io.Shutdown(ctx); err != nil {
		s.t.Error(err)
	}
	if s.sb != nil {
		if err := s.sb.Shutdown(context.Background()); err != nil {
			s.t.Error(err)
		}
	} else if err := s.broker.Shutdown(context.Background()); err != nil {
		s.t.Error(err)
	}
	s.http.Close()
	_ = s.client.Close()
}

func (s *server) nsp(name string) *socketio.Namespace { return s.io.Of(name) }

func (s *server) adapter(name string) *Adapter { return s.nsp(name).Adapter().(*Adapter) }

// counter reads a counter of the server's registry.
func (s *server) counter(name string, labels ...string) float64 {
	for _, mf := range mustGather(s.t, s.reg) {
		if mf.GetName() != metricPrefix+name {
			continue
		}
		total := 0.0
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
		return total
	}
	return 0
}

func mustGather(t testing.TB, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// client is a Socket.IO client that records the events it receives.
type client struct {
	t    testing.TB
	name string
	sock *gosio.Socket

	mu     sync.Mutex
	events []event
	acks   bool // answer every event with an ack
	ackArg any
}

type event struct {
	name string
	args []any
}

type clientOpt func(*client)

// acking makes the client acknowledge every event that asks for it, with
// arg.
func acking(arg any) clientOpt {
	return func(c *client) { c.acks = true; c.ackArg = arg }
}

// connect connects a client to nsp on s, in rooms, on a Manager already
// open (testclient.OpenManager says why).
func (s *server) connect(nsp, name string, rooms []string, opts ...clientOpt) *client {
	t := s.t
	t.Helper()
	c := &client{t: t, name: name}
	for _, o := range opts {
		o(c)
	}
	o := gosio.DefaultOptions()
	o.SetTransports(types.NewSet(gosio.WebSocket))
	o.SetReconnection(false)
	o.SetForceNew(true)
	o.SetAutoConnect(false)
	o.SetAuth(map[string]any{"rooms": rooms, "name": name})
	m := testclient.OpenManager(t, s.http.URL, name, o)
	sock := m.Socket(nsp, o)
	c.sock = sock
	sock.OnAny(func(args ...any) {
		ev := event{args: args[1:]}
		ev.name, _ = args[0].(string)
		if n := len(ev.args); n > 0 {
			if ack, ok := ev.args[n-1].(func([]any, error)); ok {
				ev.args = ev.args[:n-1]
				c.mu.Lock()
				answer, arg := c.acks, c.ackArg
				c.mu.Unlock()
				if answer {
					ack([]any{arg}, nil)
				}
			}
		}
		c.mu.Lock()
		c.events = append(c.events, ev)
		c.mu.Unlock()
	})
	_ = sock.On("disconnect", func(args ...any) {
		c.mu.Lock()
		c.events = append(c.events, event{name: "disconnect", args: args})
		c.mu.Unlock()
	})
	t.Cleanup(func() { sock.Disconnect() })
	sock.Connect()
	testwait.Until(t, wait, name+" connected", func() bool {
		if !sock.Connected() || sock.Id() == "" {
			return false
		}
		sock := s.nsp(nsp).Socket(c.id())
		if sock == nil {
			return false
		}
		m, _ := sock.Data().(map[string]any)
		return m["name"] == name && len(sock.Rooms()) == 1+len(rooms)
	})
	return c
}

func (c *client) id() string { return string(c.sock.Id()) }

// rooms are the rooms of the client's socket on s, nil when s does not
// have it.
func (s *server) rooms(nsp string, c *client) []string {
	if sock := s.nsp(nsp).Socket(c.id()); sock != nil {
		return sock.Rooms()
	}
	return nil
}

// count is how many times the client got event name.
func (c *client) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events {
		if e.name == name {
			n++
		}
	}
	return n
}

// args are the arguments of the first event name.
func (c *client) args(name string) []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.name == name {
			return e.args
		}
	}
	return nil
}

func (c *client) waitCount(name string, n int) {
	c.t.Helper()
	testwait.Until(c.t, wait, fmt.Sprintf("%s to get %q %d times", c.name, name, n), func() bool { return c.count(name) >= n })
}

// spy is a raw Redis subscriber that records what is published.
type spy struct {
	ps   *goredis.PubSub
	mu   sync.Mutex
	msgs []*goredis.Message
	done chan struct{}
}

// newSpy subscribes to channels (patterns when they contain '*') on the
// Redis at addr.
func newSpy(t testing.TB, addr string, channels ...string) *spy {
	t.Helper()
	cl := newClient(addr)
	t.Cleanup(func() { _ = cl.Close() })
	ctx := context.Background()
	s := &spy{ps: cl.Subscribe(ctx), done: make(chan struct{})}
	for _, ch := range channels {
		var err error
		if strings.Contains(ch, "*") {
			err = s.ps.PSubscribe(ctx, ch)
		} else {
			err = s.ps.Subscribe(ctx, ch)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for range channels {
		if _, err := s.ps.ReceiveTimeout(ctx, wait); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		defer close(s.done)
		for {
			m, err := s.ps.Receive(ctx)
			if err != nil {
				return
			}
			if msg, ok := m.(*goredis.Message); ok {
				s.mu.Lock()
				s.msgs = append(s.msgs, msg)
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { _ = s.ps.Close(); <-s.done })
	return s
}

// find returns the first message whose payload satisfies ok.
func (s *spy) find(ok func(*goredis.Message) bool) *goredis.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if ok(m) {
			return m
		}
	}
	return nil
}

func (s *spy) wait(t testing.TB, what string, ok func(*goredis.Message) bool) *goredis.Message {
	t.Helper()
	var m *goredis.Message
	testwait.Until(t, wait, what, func() bool { m = s.find(ok); return m != nil })
	return m
}

// brokerGoroutines counts the goroutines running a Broker method.
func brokerGoroutines() int {
	n, _ := brokerStacks()
	return n
}

// brokerStacks also returns the stacks, for failure messages.
func brokerStacks() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	var stacks []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pkg/adapter/redis.(*Broker)") {
			count++
			stacks = append(stacks, g)
		}
	}
	return count, strings.Join(stacks, "\n\n")
}
