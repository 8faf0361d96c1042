package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// markers makes every server broadcast "marker" to the whole namespace
// and waits until every client got one from each. Redis keeps the order
// of one publisher's messages, and each server delivers in that order:
// once a client has a server's marker, it has everything that server
// broadcast before, duplicates included.
func markers(c *cluster, nsp string, clients ...*client) {
	c.t.Helper()
	before := make([]int, len(clients))
	for i, cl := range clients {
		before[i] = cl.count("marker")
	}
	for _, s := range c.servers {
		if err := s.nsp(nsp).Emit("marker", s.name); err != nil {
			c.t.Fatal(err)
		}
	}
	for i, cl := range clients {
		cl.waitCount("marker", before[i]+len(c.servers))
	}
}

func expectCounts(t *testing.T, ev string, want map[*client]int) {
	t.Helper()
	for cl, n := range want {
		if got := cl.count(ev); got != n {
			t.Errorf("%s got %q %d times, want %d", cl.name, ev, got, n)
		}
	}
}

// TestBroadcastAcrossServers: a broadcast from one server reaches the
// matching clients of every server exactly once, whether it targets one
// room, several rooms, the whole namespace, or the namespace except some
// rooms (fault a).
func TestBroadcastAcrossServers(t *testing.T) {
	c := newCluster(t, 3, nil)
	s0, s1, s2 := c.servers[0], c.servers[1], c.servers[2]
	a := s0.connect("/tasks", "a", []string{"r1"})
	b := s1.connect("/tasks", "b", []string{"r1", "r2"})
	cc := s2.connect("/tasks", "c", []string{"r2"})
	d := s1.connect("/tasks", "d", nil)
	root := s2.connect("/", "root", []string{"r1", "r2"}) // another namespace, same rooms
	all := []*client{a, b, cc, d}

	check := func(t *testing.T, ev string, emit func() error, want map[*client]int) {
		t.Helper()
		if err := emit(); err != nil {
			t.Fatal(err)
		}
		markers(c, "/tasks", all...)
		markers(c, "/", root)
		want[root] = 0
		expectCounts(t, ev, want)
	}
	t.Run("one room", func(t *testing.T) {
		check(t, "one", func() error { return s0.nsp("/tasks").To("r1").Emit("one", 1) },
			map[*client]int{a: 1, b: 1, cc: 0, d: 0})
	})
	t.Run("several rooms", func(t *testing.T) {
		check(t, "multi", func() error { return s1.nsp("/tasks").To("r1", "r2").Emit("multi") },
			map[*client]int{a: 1, b: 1, cc: 1, d: 0})
	})
	t.Run("namespace", func(t *testing.T) {
		check(t, "all", func() error { return s2.nsp("/tasks").Emit("all", map[string]any{"x": 1}) },
			map[*client]int{a: 1, b: 1, cc: 1, d: 1})
	})
	t.Run("except only", func(t *testing.T) {
		check(t, "except", func() error { return s0.nsp("/tasks").Except("r1").Emit("except") },
			map[*client]int{a: 0, b: 0, cc: 1, d: 1})
	})
	t.Run("rooms except", func(t *testing.T) {
		check(t, "roomsExcept", func() error { return s0.nsp("/tasks").To("r2").Except("r1").Emit("roomsExcept") },
			map[*client]int{a: 0, b: 0, cc: 1, d: 0})
	})
	t.Run("one socket", func(t *testing.T) {
		check(t, "direct", func() error { return s2.nsp("/tasks").To(b.id()).Emit("direct") },
			map[*client]int{a: 0, b: 1, cc: 0, d: 0})
	})
	t.Run("local", func(t *testing.T) {
		check(t, "local", func() error { return s1.nsp("/tasks").Local().Emit("local") },
			map[*client]int{a: 0, b: 1, cc: 0, d: 1})
	})
	if got := s0.counter("messages_published_total", "type", "broadcast"); got == 0 {
		t.Error("no broadcast counted as published")
	}
	if got := s1.counter("messages_received_total", "type", "broadcast"); got == 0 {
		t.Error("no broadcast counted as received")
	}
}

// TestBinaryAcrossServers: []byte arrives as binary on another server.
func TestBinaryAcrossServers(t *testing.T) {
	c := newCluster(t, 2, nil)
	b := c.servers[1].connect("/", "b", nil)
	payload := []byte{0, 1, 2, 0xfe, 0xff}
	if err := c.servers[0].nsp("/").Emit("bin", payload, "text"); err != nil {
		t.Fatal(err)
	}
	b.waitCount("bin", 1)
	args := b.args("bin")
	if len(args) != 2 || args[1] != "text" {
		t.Fatalf("args %#v", args)
	}
	var got []byte
	switch v := args[0].(type) {
	case []byte:
		got = v
	case interface{ Bytes() []byte }:
		got = v.Bytes()
	default:
		t.Fatalf("binary arrived as %T", args[0])
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("got %x want %x", got, payload)
	}
}

// TestBroadcastWithAck: an emit with acknowledgements reaches every
// server's clients once, the emitter's own clients included (its request
// comes back from Redis and must be ignored: fault b), and collects one
// answer per client.
func TestBroadcastWithAck(t *testing.T) {
	c := newCluster(t, 3, nil)
	s0, s1, s2 := c.servers[0], c.servers[1], c.servers[2]
	a := s0.connect("/", "a", []string{"r"}, acking("from-a"))
	b := s1.connect("/", "b", []string{"r"}, acking("from-b"))
	b2 := s1.connect("/", "b2", nil, acking("from-b2"))
	s2.connect("/", "c", nil, acking("from-c"))

	type result struct {
		args []any
		err  error
	}
	emit := func(op socketio.BroadcastOperator) result {
		done := make(chan result, 1)
		op.EmitWithAck(func(args []any, err error) { done <- result{args, err} }, "ping", 1)
		select {
		case r := <-done:
			return r
		case <-time.After(wait):
			t.Fatal("no acknowledgement")
			return result{}
		}
	}
	r := emit(s0.nsp("/").To("r").Timeout(3 * time.Second))
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := fmt.Sprint(sortedAny(r.args))
	if got != "[from-a from-b]" {
		t.Errorf("responses %s", got)
	}
	markers(c, "/", a, b, b2)
	expectCounts(t, "ping", map[*client]int{a: 1, b: 1, b2: 0})

	r = emit(s1.nsp("/").To().Timeout(3 * time.Second))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := fmt.Sprint(sortedAny(r.args)); got != "[from-a from-b from-b2 from-c]" {
		t.Errorf("namespace-wide responses %s", got)
	}
	markers(c, "/", a, b, b2)
	expectCounts(t, "ping", map[*client]int{a: 2, b: 2, b2: 1})

	// Every server forgets the request after its timeout.
	for _, s := range c.servers {
		ad := s.adapter("/")
		testwait.Until(t, wait, "ack requests forgotten", func() bool {
			ad.mu.Lock()
			defer ad.mu.Unlock()
			return len(ad.acks) == 0
		})
	}
}

// TestBroadcastWithAckOnTheWire: the answers to a Node-shaped BROADCAST
// request are a JSON client count (type 8) and msgpack acks (type 9).
func TestBroadcastWithAckOnTheWire(t *testing.T) {
	c := newCluster(t, 1, nil)
	s0 := c.servers[0]
	s0.connect("/", "a", []string{"r"}, acking("pong"))
	spy := newSpy(t, c.redis.Addr(), c.prefix+"-response#/#")
	req := make([]byte, 0)
	req = appendMapHeader(req, 5)
	req = appendString(appendString(req, "uid"), "NODEPEER")
	req = appendString(appendString(req, "requestId"), "req-42")
	req = appendInt(appendString(req, "type"), 7)
	req = appendString(req, "packet")
	req, _ = appendValue(req, map[string]any{"type": 2, "data": []any{"ping"}, "nsp": "/"})
	req = appendOpts(appendString(req, "opts"), []string{"r"}, []string{}, &socketio.BroadcastFlags{Timeout: time.Second})
	if err := s0.client.Publish(context.Background(), c.prefix+"-request#/#", req).Err(); err != nil {
		t.Fatal(err)
	}
	count := spy.wait(t, "client count", func(m *goredis.Message) bool { return strings.HasPrefix(m.Payload, "{") })
	if count.Payload != `{"type":8,"requestId":"req-42","clientCount":1}` {
		t.Errorf("client count %s", count.Payload)
	}
	ack := spy.wait(t, "ack", func(m *goredis.Message) bool { return !strings.HasPrefix(m.Payload, "{") })
	v, err := decodeMsgpack(ack.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, map[string]any{"type": int64(9), "requestId": "req-42", "packet": "pong"}) {
		t.Errorf("ack %#v", v)
	}
}

// TestBroadcastWithAckTimeoutRace runs many broadcasts with acks whose
// timeouts expire while answers still arrive, under -race (fault e).
func TestBroadcastWithAckTimeoutRace(t *testing.T) {
	c := newCluster(t, 2, nil)
	s0, s1 := c.servers[0], c.servers[1]
	s0.connect("/", "a", nil, acking("a"))
	s1.connect("/", "b", nil, acking("b"))
	silent := s1.connect("/", "silent", nil) // never answers: every broadcast times out
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := time.Duration(50+5*(i%10)) * time.Millisecond
			done := make(chan struct{})
			s0.nsp("/").To().Timeout(timeout).EmitWithAck(func(args []any, err error) {
				if err == nil {
					errs <- fmt.Errorf("broadcast %d completed although a client never answers", i)
				}
				close(done)
			}, "race", i)
			select {
			case <-done:
			case <-time.After(wait):
				errs <- fmt.Errorf("broadcast %d never completed", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ad := s0.adapter("/")
	testwait.Until(t, wait, "ack requests forgotten", func() bool {
		ad.mu.Lock()
		defer ad.mu.Unlock()
		return len(ad.acks) == 0
	})
	if s1.nsp("/").Socket(silent.id()) == nil {
		t.Fatal("silent socket gone")
	}
}

// TestFetchSockets: fetchSockets returns the sockets of every server with
// their id, rooms, data and handshake; the remote ones can be reached.
func TestFetchSockets(t *testing.T) {
	c := newCluster(t, 3, nil)
	s0, s1, s2 := c.servers[0], c.servers[1], c.servers[2]
	a := s0.connect("/tasks", "a", []string{"r1"})
	b := s1.connect("/tasks", "b", []string{"r1", "r2"})
	s2.connect("/tasks", "c", []string{"r2"})

	sockets, err := fetch(s0.nsp("/tasks").In("r1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := socketNames(sockets); got != "a b" {
		t.Fatalf("sockets in r1: %s", got)
	}
	var rb *socketio.SocketInfo
	for i := range sockets {
		if sockets[i].ID == b.id() {
			rb = &sockets[i]
		}
	}
	if rb == nil {
		t.Fatal("b missing")
	}
	want := []string{b.id(), "r1", "r2"}
	slices.Sort(want)
	if got := sortedRooms(rb.Rooms); !reflect.DeepEqual(got, want) {
		t.Errorf("b's rooms %v", got)
	}
	if rb.Handshake.Auth["name"] != "b" || rb.Handshake.Address == "" || rb.Handshake.Time.IsZero() ||
		rb.Handshake.Headers.Get("User-Agent") == "" {
		t.Errorf("b's handshake %+v", rb.Handshake)
	}

	all, err := fetch(s2.nsp("/tasks").Except("r1"))
	if err != nil || socketNames(all) != "c" {
		t.Errorf("except r1: %s %v", socketNames(all), err)
	}
	if l, err := fetch(s0.nsp("/tasks").Local()); err != nil || socketNames(l) != "a" {
		t.Errorf("local: %s %v", socketNames(l), err)
	}

	// A remote socket is reachable: emit, join, leave, disconnect.
	if err := s0.nsp("/tasks").To(rb.ID).Emit("direct", "hi"); err != nil {
		t.Fatal(err)
	}
	b.waitCount("direct", 1)
	ad, ctx := s0.adapter("/tasks"), context.Background()
	if err := ad.RemoteJoin(ctx, rb.ID, "joined"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, wait, "b in joined", func() bool { return s1.adapter("/tasks").HasRoom("joined") })
	if err := ad.RemoteLeave(ctx, rb.ID, "joined"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, wait, "b out of joined", func() bool { return !s1.adapter("/tasks").HasRoom("joined") })
	if err := ad.RemoteDisconnect(ctx, rb.ID, false); err != nil {
		t.Fatal(err)
	}
	b.waitCount("disconnect", 1)
	if a.count("disconnect") != 0 {
		t.Error("a disconnected too")
	}
	if got := s0.counter("request_duration_seconds", "type", "remote_fetch"); got == 0 {
		t.Error("request latency not observed")
	}
}

// fetcher is a namespace or a broadcast operator.
type fetcher interface {
	FetchSockets(ctx context.Context) ([]socketio.SocketInfo, error)
}

func fetch(op fetcher) ([]socketio.SocketInfo, error) {
	return op.FetchSockets(context.Background())
}

func socketNames(sockets []socketio.SocketInfo) string {
	var names []string
	for _, s := range sockets {
		m, _ := s.Data.(map[string]any)
		names = append(names, fmt.Sprint(m["name"]))
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func sortedAny(v []any) []string {
	out := make([]string, len(v))
	for i, e := range v {
		out[i] = fmt.Sprint(e)
	}
	sort.Strings(out)
	return out
}

// zombie subscribes to a namespace's request channel and never answers:
// what a SIGKILLed server looks like until Redis notices its dead
// connection.
func zombie(t testing.TB, c *cluster, nsp string) {
	t.Helper()
	newSpy(t, c.redis.Addr(), c.prefix+"-request#"+nsp+"#")
}

// TestRequestsCompleteWhenAServerNeverAnswers: every request returns by
// its timeout, with what arrived and an error that says how many of how
// many servers answered.
func TestRequestsCompleteWhenAServerNeverAnswers(t *testing.T) {
	c := newCluster(t, 2, func(cfg *Config) { cfg.RequestTimeout = 700 * time.Millisecond })
	s0, s1 := c.servers[0], c.servers[1]
	s0.connect("/", "a", []string{"r"})
	s1.connect("/", "b", []string{"r"})
	s1.nsp("/").OnServerSideEmit("question", func(args []any, ack socketio.Ack) {
		if ack != nil {
			ack("answer")
		}
	})
	zombie(t, c, "/")

	checkTimeout := func(t *testing.T, op string, start time.Time, err error) {
		t.Helper()
		var te *TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("%s: error %v, want a *TimeoutError", op, err)
		}
		if te.Answered != 1 || te.Expected != 2 || !strings.Contains(err.Error(), "1 of 2 servers answered") {
			t.Errorf("%s: %v", op, err)
		}
		if took := time.Since(start); took < 600*time.Millisecond || took > 2*time.Second {
			t.Errorf("%s took %s with a 700ms timeout", op, took)
		}
	}
	t.Run("fetchSockets", func(t *testing.T) {
		start := time.Now()
		sockets, err := fetch(s0.nsp("/").In("r"))
		checkTimeout(t, "fetchSockets", start, err)
		if socketNames(sockets) != "a b" {
			t.Errorf("sockets %s", socketNames(sockets))
		}
	})
	t.Run("allRooms", func(t *testing.T) {
		start := time.Now()
		rooms, err := s0.adapter("/").AllRooms(context.Background())
		checkTimeout(t, "allRooms", start, err)
		if !slices.Contains(rooms, "r") || len(rooms) != 3 { // r and the two socket ids
			t.Errorf("rooms %v", rooms)
		}
	})
	t.Run("sockets", func(t *testing.T) {
		start := time.Now()
		sids, err := s0.adapter("/").ClusterSockets(context.Background(), []string{"r"})
		checkTimeout(t, "sockets", start, err)
		if len(sids) != 2 {
			t.Errorf("sids %v", sids)
		}
	})
	t.Run("serverSideEmitWithAck", func(t *testing.T) {
		start := time.Now()
		args, err := s0.nsp("/").ServerSideEmitWithAck(context.Background(), "question")
		checkTimeout(t, "serverSideEmit", start, err)
		if !reflect.DeepEqual(args, []any{"answer"}) {
			t.Errorf("responses %#v", args)
		}
	})
	t.Run("remoteJoin of a socket nobody has", func(t *testing.T) {
		start := time.Now()
		err := s0.adapter("/").RemoteJoin(context.Background(), "no-such-socket", "room")
		var te *TimeoutError
		if !errors.As(err, &te) || te.Answered != 0 || te.Expected != 1 {
			t.Errorf("error %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %s", took)
		}
	})
}

// TestFetchSocketsAfterAPeerLeft: once a server is gone, requests count
// only the servers left and complete at once.
func TestFetchSocketsAfterAPeerLeft(t *testing.T) {
	c := newCluster(t, 3, nil)
	s0, s1, s2 := c.servers[0], c.servers[1], c.servers[2]
	s0.connect("/", "a", nil)
	s1.connect("/", "b", nil)
	s2.connect("/", "c", nil)
	if got, err := fetch(s0.nsp("/")); err != nil || socketNames(got) != "a b c" {
		t.Fatalf("%s %v", socketNames(got), err)
	}
	s2.close()
	testwait.Until(t, wait, "two servers left", func() bool {
		n, err := s0.adapter("/").ServerCount(context.Background())
		return err == nil && n == 2
	})
	start := time.Now()
	got, err := fetch(s0.nsp("/"))
	if err != nil || socketNames(got) != "a b" {
		t.Errorf("%s %v", socketNames(got), err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("fetchSockets took %s", took)
	}
}

// TestServerSideEmit: without ack, the other servers' listeners get the
// arguments (not the emitter's); with ack, the emitter gets one answer per
// other server, each the first argument of its callback (fault d).
func TestServerSideEmit(t *testing.T) {
	c := newCluster(t, 3, nil)
	var mu sync.Mutex
	got := map[string][]any{}
	for _, s := range c.servers {
		s.nsp("/").OnServerSideEmit("hello", func(args []any, _ socketio.Ack) {
			mu.Lock()
			got[s.name] = args
			mu.Unlock()
		})
		s.nsp("/").OnServerSideEmit("question", func(_ []any, ack socketio.Ack) {
			ack("answer-of-"+s.name, "ignored second argument")
		})
	}
	if err := c.servers[0].nsp("/").ServerSideEmit("hello", 1, "two", map[string]any{"three": 3}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, wait, "s1 and s2 got hello", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	mu.Lock()
	if _, self := got["s0"]; self {
		t.Error("the emitter got its own event")
	}
	if !reflect.DeepEqual(got["s1"], []any{int64(1), "two", map[string]any{"three": int64(3)}}) {
		t.Errorf("s1 got %#v", got["s1"])
	}
	mu.Unlock()

	spy := newSpy(t, c.redis.Addr(), c.prefix+"-response#/#")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	answers, err := c.servers[0].nsp("/").ServerSideEmitWithAck(ctx, "question", "?")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sortedAny(answers)) != "[answer-of-s1 answer-of-s2]" {
		t.Errorf("answers %#v", answers)
	}
	// On the wire: {type: 6, requestId, data: <one argument>}.
	m := spy.wait(t, "a response", func(m *goredis.Message) bool { return strings.Contains(m.Payload, "answer-of-s1") })
	var resp map[string]any
	if err := json.Unmarshal([]byte(m.Payload), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp) != 3 || resp["type"] != float64(6) || resp["data"] != "answer-of-s1" {
		t.Errorf("response %s", m.Payload)
	}
	if id, ok := resp["requestId"].(string); !ok || id == "" {
		t.Errorf("response %s", m.Payload)
	}

	// Alone in the cluster: the ack gets no answer and no error at once.
	solo := newCluster(t, 1, nil).servers[0]
	if r, err := solo.nsp("/").ServerSideEmitWithAck(ctx, "question"); err != nil || len(r) != 0 {
		t.Errorf("alone: %#v %v", r, err)
	}
}

// TestSocketsJoinLeaveDisconnect: socketsJoin, socketsLeave and
// disconnectSockets act on every server, and so do their one-socket
// forms.
func TestSocketsJoinLeaveDisconnect(t *testing.T) {
	c := newCluster(t, 2, nil)
	s0, s1 := c.servers[0], c.servers[1]
	a := s0.connect("/", "a", []string{"r1"})
	b := s1.connect("/", "b", []string{"r1"})
	other := s1.connect("/", "other", []string{"r2"})
	inRoom := func(s *server, cl *client, room string) bool {
		return slices.Contains(s.rooms("/", cl), room)
	}

	s0.nsp("/").In("r1").SocketsJoin("joined", "also")
	if !inRoom(s0, a, "joined") {
		t.Error("the local socket did not join at once")
	}
	testwait.Until(t, wait, "b joined", func() bool { return inRoom(s1, b, "joined") && inRoom(s1, b, "also") })
	if inRoom(s1, other, "joined") {
		t.Error("other joined")
	}
	s1.nsp("/").Except("r2").SocketsLeave("also")
	testwait.Until(t, wait, "a and b left also", func() bool { return !inRoom(s0, a, "also") && !inRoom(s1, b, "also") })

	ad := s0.adapter("/")
	ctx := context.Background()
	if err := ad.RemoteJoin(ctx, b.id(), "solo"); err != nil {
		t.Fatal(err)
	}
	if !inRoom(s1, b, "solo") {
		t.Error("remoteJoin returned before the join")
	}
	if err := ad.RemoteLeave(ctx, b.id(), "solo"); err != nil || inRoom(s1, b, "solo") {
		t.Errorf("remoteLeave: %v", err)
	}
	if err := ad.RemoteJoin(ctx, a.id(), "local"); err != nil || !inRoom(s0, a, "local") {
		t.Errorf("remoteJoin of a local socket: %v", err)
	}

	s0.nsp("/").In("joined").DisconnectSockets(false)
	a.waitCount("disconnect", 1)
	b.waitCount("disconnect", 1)
	if other.count("disconnect") != 0 {
		t.Error("other disconnected")
	}
	if err := ad.RemoteDisconnect(ctx, other.id(), true); err != nil {
		t.Fatal(err)
	}
	other.waitCount("disconnect", 1)
}

// TestClusterSocketsAndAllRooms: the SOCKETS and ALL_ROOMS requests.
func TestClusterSocketsAndAllRooms(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := c.servers[0].connect("/", "a", []string{"r1"})
	b := c.servers[1].connect("/", "b", []string{"r2"})
	ad := c.servers[0].adapter("/")
	sids, err := ad.ClusterSockets(context.Background(), []string{"r1", "r2"})
	if err != nil || len(sids) != 2 || !slices.Contains(sids, a.id()) || !slices.Contains(sids, b.id()) {
		t.Errorf("sockets %v %v", sids, err)
	}
	sids, err = ad.ClusterSockets(context.Background(), []string{"r2"})
	if err != nil || len(sids) != 1 || !slices.Contains(sids, b.id()) {
		t.Errorf("sockets of r2 %v %v", sids, err)
	}
	rooms, err := ad.AllRooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a.id(), b.id(), "r1", "r2"}
	slices.Sort(want)
	if got := sortedRooms(rooms); !reflect.DeepEqual(got, want) {
		t.Errorf("rooms %v want %v", got, want)
	}
}

// TestHandlersMayWaitForRequests: a server-side event listener, or a
// disconnect handler run by another server's disconnectSockets, runs on
// the dispatcher, and may make a request and wait for its answers.
func TestHandlersMayWaitForRequests(t *testing.T) {
	c := newCluster(t, 2, nil)
	s0, s1 := c.servers[0], c.servers[1]
	s0.connect("/", "a", nil)
	s1.connect("/", "b", nil)
	type result struct {
		names string
		err   error
		took  time.Duration
	}
	results := make(chan result, 2)
	probe := func() {
		start := time.Now()
		sockets, err := fetch(s1.nsp("/"))
		results <- result{socketNames(sockets), err, time.Since(start)}
	}
	s1.nsp("/").OnServerSideEmit("probe", func([]any, socketio.Ack) { probe() })
	s1.nsp("/").OnDisconnect(func(s *socketio.Socket, _ string) {
		if m, _ := s.Data().(map[string]any); m["name"] == "c" {
			probe()
		}
	})
	s1.connect("/", "c", []string{"doomed"}) // connected after the handler is set

	check := func(what, want string) {
		t.Helper()
		select {
		case r := <-results:
			if r.err != nil || r.names != want || r.took > time.Second {
				t.Errorf("%s: fetchSockets got %q, %v after %s", what, r.names, r.err, r.took)
			}
		case <-time.After(wait):
			t.Fatalf("%s: no result", what)
		}
	}
	if err := s0.nsp("/").ServerSideEmit("probe"); err != nil {
		t.Fatal(err)
	}
	check("server-side event", "a b c")

	// An acknowledgement callback, completed by another server's answer.
	s0.connect("/", "acker", []string{"ackers"}, acking("ok"))
	s1.nsp("/").To("ackers").Timeout(wait).EmitWithAck(func(args []any, err error) { probe() }, "ping")
	check("acknowledgement callback", "a acker b c")

	s0.nsp("/").In("doomed").DisconnectSockets(false)
	check("disconnect handler", "a acker b")
}
