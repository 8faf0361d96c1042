package socketio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// echoNamespace: "join" joins the rooms named, "echo" emits "echo" back,
// "ack" acks with the arguments; every disconnect reason is recorded.
func echoNamespace(n *Namespace, ev *events) {
	n.OnConnection(func(s *Socket) { ev.add("connect " + s.ID()) })
	n.OnDisconnect(func(s *Socket, reason string) { ev.add("disconnect " + reason) })
	n.On("join", func(s *Socket, args []any, ack Ack) {
		for _, a := range args {
			s.Join(a.(string))
		}
		if ack != nil {
			ack()
		}
	})
	n.On("echo", func(s *Socket, args []any, _ Ack) { _ = s.Emit("echo", args...) })
	n.On("ack", func(_ *Socket, args []any, ack Ack) { ack(args...) })
	n.On("panic", func(*Socket, []any, Ack) { panic("boom") })
}

func TestMiddlewareAndNamespaces(t *testing.T) {
	ts := newTestServer(t, Config{})
	ev := newEvents()
	ts.Use(func(s *Socket, next func(error)) {
		if s.Handshake().Auth["token"] != "good" {
			next(&ConnectError{Message: "invalid_token", Data: map[string]any{"reason": "expired"}})
			return
		}
		go next(nil) // a middleware may answer later, from its own goroutine
	})
	echoNamespace(ts.Of("/tasks"), ev)

	c := ts.dial(t)
	c.send(`0{"token":"good"}`)
	c.expect(`4{"message":"Invalid namespace"}`)
	c.send(`0/tasks,{"token":"bad"}`)
	c.expect(`4/tasks,{"data":{"reason":"expired"},"message":"invalid_token"}`)
	sid := c.connect("/tasks", `{"token":"good"}`)
	if got := ev.next(t); got != "connect "+sid {
		t.Fatalf("got %q", got)
	}
	if ts.Of("/tasks").Socket(sid) == nil || ts.Of("/tasks").Len() != 1 {
		t.Fatal("socket not in its namespace")
	}
	// A handler's panic is contained.
	c.send(`2/tasks,["panic"]`)
	c.send(`2/tasks,["echo",12345678901234567890,{"id":9007199254740993}]`)
	c.expect(`2/tasks,["echo",12345678901234567890,{"id":9007199254740993}]`)
}

func TestConnectTimeoutStopsAtConnect(t *testing.T) {
	ts := newTestServer(t, Config{Engine: engineio.Config{ConnectTimeout: 200 * time.Millisecond}})
	ts.Of("/")
	late := ts.dial(t)
	ok := ts.dial(t)
	ok.connect("/", "")
	late.closed()
	ok.nothing(300 * time.Millisecond) // well past the timeout: still open
	ok.send(`2["x"]`)
}

// TestConnectTimeoutAfterLastNamespace: when the server disconnects the
// last socket of a connection, the connect timeout runs again; a client
// that connects a namespace in time keeps its connection.
func TestConnectTimeoutAfterLastNamespace(t *testing.T) {
	ts := newTestServer(t, Config{Engine: engineio.Config{ConnectTimeout: 200 * time.Millisecond}})
	nsp := ts.Of("/tasks")
	left := ts.dial(t)
	back := ts.dial(t)
	sid := left.connect("/tasks", "")
	sid2 := back.connect("/tasks", "")
	nsp.Socket(sid).Disconnect(false)
	nsp.Socket(sid2).Disconnect(false)
	left.expect(`1/tasks,`)
	back.expect(`1/tasks,`)
	back.connect("/tasks", "") // within the timeout: stays
	left.closed()
	back.nothing(300 * time.Millisecond)
	back.send(`2/tasks,["x"]`)
}

func TestRoomsAndBroadcasts(t *testing.T) {
	ts := newTestServer(t, Config{})
	ev := newEvents()
	nsp := ts.Of("/tasks")
	echoNamespace(nsp, ev)
	var cs []*wsClient
	var ids []string
	for i := range 3 {
		c := ts.dial(t)
		ids = append(ids, c.connect("/tasks", ""))
		ev.next(t)
		c.send(fmt.Sprintf(`2/tasks,1["join","all","r%d"]`, i))
		c.expect(`3/tasks,1[]`)
		cs = append(cs, c)
	}
	nsp.To("all").Except(ids[1]).Emit("news", 1, "two", []byte{3})
	for _, i := range []int{0, 2} {
		cs[i].expect(`51-/tasks,["news",1,"two",{"_placeholder":true,"num":0}]`)
		if m := cs[i].next(); string(m.bin) != "\x03" {
			t.Fatalf("attachment %v", m.bin)
		}
	}
	// Several rooms reach a socket once; a socket id is a room.
	nsp.To("r0", "all", ids[2]).Except("r2").Emit("once")
	cs[0].expect(`2/tasks,["once"]`)
	cs[1].expect(`2/tasks,["once"]`)
	nsp.Local().Emit("everyone")
	for _, c := range cs {
		c.expect(`2/tasks,["everyone"]`)
	}
	// A socket's To excludes itself.
	nsp.Socket(ids[0]).To("all").Emit("from0")
	cs[1].expect(`2/tasks,["from0"]`)
	cs[2].expect(`2/tasks,["from0"]`)
	cs[0].nothing(100 * time.Millisecond)

	ctx := context.Background()
	got, err := nsp.In("r1").FetchSockets(ctx)
	if err != nil || len(got) != 1 || got[0].ID != ids[1] || !slices.Equal(got[0].Rooms, []string{ids[1], "all", "r1"}) {
		t.Fatalf("fetchSockets %+v %v", got, err)
	}
	rooms, _ := nsp.Adapter().AllRooms(ctx)
	if len(rooms) != 7 {
		t.Fatalf("rooms %v", rooms)
	}
	nsp.In("r2").SocketsJoin("late")
	nsp.In("all").SocketsLeave("r0")
	nsp.To("late", "r0").Emit("moved")
	cs[2].expect(`2/tasks,["moved"]`)
	cs[0].nothing(100 * time.Millisecond)

	nsp.In("r1").DisconnectSockets(false)
	cs[1].expect(`1/tasks,`)
	if got := ev.next(t); got != "disconnect "+ReasonServerDisconnect {
		t.Fatalf("got %q", got)
	}
	if nsp.Len() != 2 || nsp.Adapter().(*MemoryAdapter).HasRoom("r1") {
		t.Fatal("the disconnected socket is still indexed")
	}
	nsp.In("r2").DisconnectSockets(true)
	cs[2].expect(`1/tasks,`)
	cs[2].closed()
	ev.next(t)
}

func TestAcksBothWays(t *testing.T) {
	ts := newTestServer(t, Config{})
	ev := newEvents()
	nsp := ts.Of("/tasks")
	echoNamespace(nsp, ev)
	c := ts.dial(t)
	sid := c.connect("/tasks", "")
	ev.next(t)
	s := nsp.Socket(sid)

	// Client → server, binary both ways.
	c.send(`51-/tasks,5["ack",{"_placeholder":true,"num":0},99999999999999999999]`)
	c.sendBinary([]byte{7, 8})
	c.expect(`61-/tasks,5[{"_placeholder":true,"num":0},99999999999999999999]`)
	if m := c.next(); string(m.bin) != "\x07\x08" {
		t.Fatalf("attachment %v", m.bin)
	}

	// Server → client.
	res := make(chan string, 4)
	answer := func(args []any, err error) { res <- fmt.Sprint(args, err) }
	if err := s.EmitWithAck(time.Second, answer, "q", 1); err != nil {
		t.Fatal(err)
	}
	c.expect(`2/tasks,0["q",1]`)
	c.send(`3/tasks,0["a",12345678901234567890]`)
	if got := <-res; got != "[a 12345678901234567890] <nil>" {
		t.Fatalf("ack %s", got)
	}
	_ = s.EmitWithAck(50*time.Millisecond, answer, "q")
	c.expect(`2/tasks,1["q"]`)
	if got := <-res; got != "[] "+ErrAckTimeout.Error() {
		t.Fatalf("ack %s", got)
	}
	c.send(`3/tasks,1["late"]`) // a late or unknown ack is ignored
	_ = s.EmitWithAck(0, answer, "q")
	c.expect(`2/tasks,2["q"]`)

	// A broadcast with acks: each client's first argument.
	c2 := ts.dial(t)
	c2.connect("/tasks", "")
	ev.next(t)
	done := make(chan string, 1)
	nsp.To().Timeout(2*time.Second).EmitWithAck(func(r []any, err error) {
		slices.SortFunc(r, func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		done <- fmt.Sprint(r, err)
	}, "poll")
	c.expect(`2/tasks,0["poll"]`)
	c2.expect(`2/tasks,0["poll"]`)
	c.send(`3/tasks,0["one","ignored"]`)
	c2.send(`3/tasks,0["two"]`)
	if got := <-done; got != "[one two] <nil>" {
		t.Fatalf("broadcast ack %s", got)
	}
	// A disconnect fails the pending ack.
	c.send(`1/tasks,`)
	if got := <-res; got != "[] "+ErrDisconnected.Error() {
		t.Fatalf("ack %s", got)
	}
	if got := ev.next(t); got != "disconnect "+ReasonClientDisconnect {
		t.Fatalf("got %q", got)
	}
}

func TestDisconnectReasons(t *testing.T) {
	ts := newTestServer(t, Config{Engine: engineio.Config{MaxPayload: 1000}})
	ev := newEvents()
	echoNamespace(ts.Of("/tasks"), ev)
	echoNamespace(ts.Of("/"), ev)
	reason := func(c *wsClient) string {
		t.Helper()
		if got := ev.next(t); got != "disconnect "+"" && strings.HasPrefix(got, "disconnect ") {
			return strings.TrimPrefix(got, "disconnect ")
		}
		t.Fatal("no disconnect")
		return ""
	}
	open := func() *wsClient {
		c := ts.dial(t)
		c.connect("/tasks", "")
		ev.next(t)
		return c
	}
	cases := []struct {
		name string
		act  func(c *wsClient)
		want string
	}{
		{"transport close", func(c *wsClient) { c.close() }, engineio.ReasonTransportClose},
		{"unknown type", func(c *wsClient) { c.send("9") }, ReasonParseError},
		{"bad json", func(c *wsClient) { c.send(`2/tasks,["a"`) }, ReasonParseError},
		{"connect twice", func(c *wsClient) { c.send(`0/tasks,`) }, ReasonParseError},
		{"event to another namespace", func(c *wsClient) { c.send(`2["echo"]`) }, ReasonParseError},
		{"binary without header", func(c *wsClient) { c.sendBinary([]byte{1}) }, ReasonParseError},
		{"text inside a binary packet", func(c *wsClient) {
			c.send(`51-/tasks,["echo",{"_placeholder":true,"num":0}]`)
			c.send(`2/tasks,["echo"]`)
		}, ReasonParseError},
		{"placeholder out of range", func(c *wsClient) {
			c.send(`51-/tasks,["echo",{"_placeholder":true,"num":1}]`)
			c.sendBinary([]byte{1})
		}, ReasonParseError},
		{"too many attachments", func(c *wsClient) { c.send(`511-/tasks,["echo"]`) }, ReasonParseError},
		{"pending binary over maxPayload", func(c *wsClient) {
			c.send(`52-/tasks,["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
			c.sendBinary(make([]byte, 600))
			c.sendBinary(make([]byte, 600))
		}, ReasonParseError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := open()
			tc.act(c)
			if got := reason(c); got != tc.want {
				t.Fatalf("reason %q, want %q", got, tc.want)
			}
			c.closed()
		})
	}
	// A namespace disconnect keeps the session and the other namespace.
	c := ts.dial(t)
	c.connect("/", "")
	ev.next(t)
	c.connect("/tasks", "")
	ev.next(t)
	c.send(`1/tasks,`)
	if got := reason(c); got != ReasonClientDisconnect {
		t.Fatalf("reason %q", got)
	}
	c.send(`2["echo","still"]`)
	c.expect(`2["echo","still"]`)
	// Shutdown: every socket, with Node's reason.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := reason(c); got != engineio.ReasonShutdown {
		t.Fatalf("reason %q", got)
	}
	c.closed()
	if err := ts.Shutdown(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestServerSideEmitNeedsACluster(t *testing.T) {
	ts := newTestServer(t, Config{})
	nsp := ts.Of("/tasks")
	if err := nsp.ServerSideEmit("x"); !errors.Is(err, ErrNoCluster) {
		t.Fatalf("err %v", err)
	}
	if _, err := nsp.ServerSideEmitWithAck(context.Background(), "x"); !errors.Is(err, ErrNoCluster) {
		t.Fatalf("err %v", err)
	}
	got := make(chan []any, 1)
	nsp.OnServerSideEmit("x", func(args []any, ack Ack) { got <- args; ack("answer") })
	var answered []any
	nsp.HandleServerSideEmit([]any{"x", 1}, func(a ...any) { answered = a })
	if a := <-got; len(a) != 1 || a[0] != 1 || answered[0] != "answer" {
		t.Fatalf("got %v, answered %v", a, answered)
	}
	testwait.Until(t, time.Second, "no socket", func() bool { return nsp.Len() == 0 })
}

// TestBroadcastAckTimeoutFreesPending: a client that never answers a
// broadcast with acks holds no pending ack past the broadcast's timeout
// (a resource a client could otherwise make the server keep until it
// disconnects).
func TestBroadcastAckTimeoutFreesPending(t *testing.T) {
	ts := newTestServer(t, Config{})
	ev := newEvents()
	nsp := ts.Of("/tasks")
	echoNamespace(nsp, ev)
	c := ts.dial(t)
	sid := c.connect("/tasks", "")
	ev.next(t)
	done := make(chan error, 1)
	nsp.To().Timeout(100*time.Millisecond).EmitWithAck(func(_ []any, err error) { done <- err }, "poll")
	c.expect(`2/tasks,0["poll"]`)
	if err := <-done; err == nil {
		t.Fatal("broadcast ack without an answer: no error")
	}
	s := nsp.Socket(sid)
	if s == nil {
		t.Fatalf("socket %s not found", sid)
	}
	testwait.For(t, 2*time.Second, func() error {
		s.mu.Lock()
		n := len(s.acks)
		s.mu.Unlock()
		if n != 0 {
			return fmt.Errorf("%d pending acks after the broadcast's timeout", n)
		}
		return nil
	})
}

// uncountedAdapter cannot count the servers of its cluster (Redis is down,
// or the count timed out under load).
type uncountedAdapter struct{ Adapter }

func (uncountedAdapter) ServerCount(context.Context) (int, error) {
	return 0, errors.New("servers cannot be counted")
}

// TestBroadcastAckUncountedServers: when the servers cannot be counted, a
// broadcast with acks ends at its timeout with an error, even though every
// local client answered: other servers may have members that did not.
func TestBroadcastAckUncountedServers(t *testing.T) {
	ts := newTestServer(t, Config{Adapter: func(n *Namespace) Adapter {
		return uncountedAdapter{NewMemoryAdapter(n)}
	}})
	ev := newEvents()
	nsp := ts.Of("/tasks")
	echoNamespace(nsp, ev)
	c := ts.dial(t)
	c.connect("/tasks", "")
	ev.next(t)
	done := make(chan error, 1)
	nsp.To().Timeout(300*time.Millisecond).EmitWithAck(func(_ []any, err error) { done <- err }, "poll")
	c.expect(`2/tasks,0["poll"]`)
	c.send(`3/tasks,0["yes"]`)
	if err := <-done; !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("err %v, want the ack timeout: the servers were never counted", err)
	}
}

// TestEventsBeforeOnConnectionReturns: a client may send right after the
// CONNECT ack, while OnConnection still runs (on the goroutine of an
// asynchronous middleware); those events wait and are handled after it, in
// order, none lost (the hub drops events of a socket it does not know yet,
// and lost a node's first events so).
func TestEventsBeforeOnConnectionReturns(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.Use(func(_ *Socket, next func(error)) { go next(nil) })
	n := ts.Of("/tasks")
	var mu sync.Mutex
	known := map[string]bool{}
	var got []string
	setUp := make(chan struct{})
	n.OnConnection(func(s *Socket) {
		<-setUp // the events below are sent meanwhile
		mu.Lock()
		known[s.ID()] = true
		mu.Unlock()
	})
	done := make(chan struct{})
	n.OnAny(func(s *Socket, event string, args []any, _ Ack) {
		mu.Lock()
		defer mu.Unlock()
		if !known[s.ID()] {
			got = append(got, "before OnConnection: "+event)
			return
		}
		got = append(got, event)
		if event == "e49" {
			close(done)
		}
	})
	c := ts.dial(t)
	sid := c.connect("/tasks", `{}`)
	for i := range 50 {
		c.send(fmt.Sprintf(`2/tasks,["e%d"]`, i))
	}
	// The reader has taken them all: they wait, none was handled.
	deadline := time.Now().Add(3 * time.Second)
	for {
		s := n.Socket(sid)
		s.mu.Lock()
		waiting := len(s.early)
		s.mu.Unlock()
		if waiting == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events waiting, want 50", waiting)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(setUp)
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("not every event was handled")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, e := range got {
		if e != fmt.Sprintf("e%d", i) {
			t.Fatalf("event %d: %q (all: %q)", i, e, got)
		}
	}
}
