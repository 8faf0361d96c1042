package integration

// Helpers that run the Node reference cluster members of integration/clients:
// node-server.js (socket.io 4.8 + @socket.io/redis-adapter 8) and emitter.js
// (@socket.io/redis-emitter 5), for the mixed Go/Node cluster tests.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// callTimeout bounds how long a command to a Node process may take.
const callTimeout = 10 * time.Second

// needNodeCluster skips (fails with CI=true) without node and the npm packages.
func needNodeCluster(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	_, err := exec.LookPath("node")
	ok := err == nil
	for _, pkg := range []string{"socket.io", "socket.io-client", "@socket.io/redis-adapter", "@socket.io/redis-emitter", "redis"} {
		if _, err := os.Stat(filepath.Join(root, "node_modules", pkg, "package.json")); err != nil {
			ok = false
		}
	}
	need(t, ok, "node and node_modules with socket.io, socket.io-client, @socket.io/redis-adapter, @socket.io/redis-emitter, redis (npm ci)")
	return root
}

// jsonProc is a Node script speaking JSON lines: lines with an "id" answer a
// command, the others are events.
type jsonProc struct {
	t    testing.TB
	name string

	mu      sync.Mutex
	events  []map[string]any
	waiters map[int64]chan map[string]any
	nextID  int64
	exited  bool

	stdinMu sync.Mutex
	stdin   io.WriteCloser
	done    chan struct{} // closed when stdout has ended
	stderr  testenv.Buffer
}

func startJSONProc(t testing.TB, name string, args ...string) *jsonProc {
	t.Helper()
	p := &jsonProc{t: t, name: name, waiters: map[int64]chan map[string]any{}, done: make(chan struct{})}
	cmd := exec.Command("node", args...)
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(stdout)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			p.stdinMu.Lock()
			_ = p.stdin.Close()
			p.stdinMu.Unlock()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			var werr error
			killed := false
			select {
			case werr = <-exited:
			case <-time.After(5 * time.Second):
				killed = true
				_ = cmd.Process.Kill()
				werr = <-exited
			}
			<-p.done
			if killed {
				t.Errorf("%s: did not exit within 5s of stdin EOF; killed", p.name)
			} else if werr != nil {
				t.Errorf("%s: exit: %v", p.name, werr)
			}
			if e := p.stderr.String(); t.Failed() && e != "" {
				t.Logf("%s stderr:\n%s", p.name, e)
			}
		})
	}
	t.Cleanup(stop)
	return p
}

func (p *jsonProc) read(stdout io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		p.mu.Lock()
		if id, ok := m["id"].(float64); ok {
			if ch := p.waiters[int64(id)]; ch != nil {
				delete(p.waiters, int64(id))
				ch <- m
			}
		} else {
			p.events = append(p.events, m)
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.exited = true
	for id, ch := range p.waiters {
		delete(p.waiters, id)
		close(ch)
	}
	p.mu.Unlock()
}

// call sends cmd with a fresh "id" and returns the answer (ok or not); the
// test fails when none comes within callTimeout.
func (p *jsonProc) call(cmd map[string]any) map[string]any {
	p.t.Helper()
	ch := make(chan map[string]any, 1)
	p.mu.Lock()
	if p.exited {
		p.mu.Unlock()
		p.t.Fatalf("%s: %v: the process has exited; stderr:\n%s", p.name, cmd, p.stderrText())
	}
	p.nextID++
	id := p.nextID
	p.waiters[id] = ch
	p.mu.Unlock()

	line := make(map[string]any, len(cmd)+1)
	for k, v := range cmd {
		line[k] = v
	}
	line["id"] = id
	b, err := json.Marshal(line)
	if err != nil {
		p.t.Fatal(err)
	}
	p.stdinMu.Lock()
	_, err = p.stdin.Write(append(b, '\n'))
	p.stdinMu.Unlock()
	if err != nil {
		p.t.Fatalf("%s: write %s: %v", p.name, b, err)
	}
	select {
	case ans, ok := <-ch:
		if !ok {
			p.t.Fatalf("%s: %s: the process exited without answering; stderr:\n%s", p.name, b, p.stderrText())
		}
		return ans
	case <-time.After(callTimeout):
		p.mu.Lock()
		delete(p.waiters, id)
		p.mu.Unlock()
		p.t.Fatalf("%s: %s: no answer within %s", p.name, b, callTimeout)
		return nil
	}
}

// mustCall is call that fails the test unless the answer has "ok":true.
func (p *jsonProc) mustCall(cmd map[string]any) map[string]any {
	p.t.Helper()
	ans := p.call(cmd)
	if ans["ok"] != true {
		p.t.Fatalf("%s: %v answered %v", p.name, cmd, ans)
	}
	return ans
}

// stderrText is what the process wrote to stderr so far.
func (p *jsonProc) stderrText() string { return p.stderr.String() }

// eventsSnapshot returns the event lines received so far.
func (p *jsonProc) eventsSnapshot() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// waitEvent returns the first event line that matches, waiting up to timeout.
func (p *jsonProc) waitEvent(timeout time.Duration, what string, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	var found map[string]any
	testwait.For(p.t, timeout, func() error {
		for _, m := range p.eventsSnapshot() {
			if match(m) {
				found = m
				return nil
			}
		}
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		if exited {
			p.t.Fatalf("%s: exited before %s; got %v; stderr:\n%s", p.name, what, p.eventsSnapshot(), p.stderrText())
		}
		return fmt.Errorf("%s: no %s; got %v", p.name, what, p.eventsSnapshot())
	})
	return found
}

// waitType waits for an event line of that type.
func (p *jsonProc) waitType(typ string, timeout time.Duration) map[string]any {
	p.t.Helper()
	return p.waitEvent(timeout, typ, func(m map[string]any) bool { return m["type"] == typ })
}

// nodeServer is a running integration/clients/node-server.js.
type nodeServer struct {
	*jsonProc
	URL  string // http://127.0.0.1:PORT
	Port int
}

// startNodeServer runs a Node socket.io server with the Redis adapter on
// redisURL and prefix; extra are more node-server.js arguments (e.g.
// "--sse-events", "a,b"). It returns once the adapter is subscribed and the
// server listens.
func startNodeServer(t testing.TB, redisURL, prefix string, extra ...string) *nodeServer {
	t.Helper()
	root := needNodeCluster(t)
	args := []string{filepath.Join(root, "integration", "clients", "node-server.js"),
		"--redis", redisURL, "--prefix", prefix, "--port", "0"}
	args = append(args, extra...)
	p := startJSONProc(t, "node-server", args...)
	m := p.waitType("listening", 15*time.Second)
	port, ok := m["port"].(float64)
	if !ok || port <= 0 {
		t.Fatalf("node-server: bad listening line %v", m)
	}
	p.name = fmt.Sprintf("node-server:%d", int(port))
	return &nodeServer{jsonProc: p, URL: fmt.Sprintf("http://127.0.0.1:%d", int(port)), Port: int(port)}
}

// emitter is a running integration/clients/emitter.js.
type emitter struct {
	*jsonProc
}

// startEmitter runs @socket.io/redis-emitter on redisURL and prefix.
func startEmitter(t testing.TB, redisURL, prefix string) *emitter {
	t.Helper()
	root := needNodeCluster(t)
	p := startJSONProc(t, "emitter", filepath.Join(root, "integration", "clients", "emitter.js"),
		"--redis", redisURL, "--prefix", prefix)
	p.waitType("ready", 15*time.Second)
	return &emitter{jsonProc: p}
}

// startUIAuth runs ui.js against a server without authentication, connecting
// to /tasks with auth (e.g. {"rooms":["r1"],"data":{...}}: node-server.js
// joins those rooms and sets socket.data).
func startUIAuth(t testing.TB, url, name string, auth any) *client {
	t.Helper()
	root := needNodeCluster(t)
	b, err := json.Marshal(auth)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join(root, "integration", "clients", "ui.js"), "--url", url,
		"--no-reconnect", "--auth-mode", "none", "--auth-json", string(b)}
	return startProcClient(t, name, exec.Command("node", args...))
}

// TestNodeReferenceCluster checks the Node scripts themselves on a pure Node
// cluster (two node-server.js and an emitter on one Redis), so that mixed
// Go/Node cluster tests can rely on them.
func TestNodeReferenceCluster(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	a := startNodeServer(t, r.URL(), prefix)
	b := startNodeServer(t, r.URL(), prefix, "--sse-events", "ping-sse")
	em := startEmitter(t, r.URL(), prefix)

	if got := a.mustCall(map[string]any{"cmd": "serverCount", "nsp": "/tasks"})["count"]; got != float64(2) {
		t.Fatalf("serverCount: %v, want 2", got)
	}

	ui := startUIAuth(t, b.URL, "ui@b", map[string]any{"rooms": []string{"r1"}, "data": map[string]any{"who": "ui-b"}})
	sid := ui.waitType("connect", wait).Sid
	conn := b.waitType("connection", wait)
	if conn["sid"] != sid || conn["nsp"] != "/tasks" {
		t.Fatalf("connection line %v, want sid %s on /tasks", conn, sid)
	}

	// A room broadcast from A reaches the client on B.
	a.mustCall(map[string]any{"cmd": "emit", "nsp": "/tasks", "rooms": []string{"r1"}, "event": "hello", "args": []any{map[string]any{"n": 1}, "two"}})
	jsonEq(t, mustMarshal(t, ui.waitEvent("hello", wait).Args), `[{"n":1},"two"]`)

	// "except" holds: the excluded broadcast is published before the marker,
	// on the same connection, so it would have arrived first.
	a.mustCall(map[string]any{"cmd": "emit", "rooms": []string{"r1"}, "except": []string{"r1"}, "event": "excluded"})
	a.mustCall(map[string]any{"cmd": "emit", "event": "marker"})
	ui.waitEvent("marker", wait)
	if n := len(ui.events("excluded")); n != 0 {
		t.Fatalf("got %d excluded events", n)
	}

	// The emitter reaches it, by room and by socket id.
	ans := em.mustCall(map[string]any{"cmd": "emit", "nsp": "/tasks", "rooms": []string{"r1"}, "event": "from-emitter", "args": []any{42}})
	if ans["receivers"] != float64(2) { // one pattern subscription per server
		t.Errorf("emitter receivers %v, want 2", ans["receivers"])
	}
	jsonEq(t, mustMarshal(t, ui.waitEvent("from-emitter", wait).Args), `[42]`)
	em.mustCall(map[string]any{"cmd": "emit", "rooms": []string{sid}, "event": "to-sid"})
	ui.waitEvent("to-sid", wait)

	// fetchSockets from A sees B's socket, its rooms and data.
	socks := a.mustCall(map[string]any{"cmd": "fetchSockets", "nsp": "/tasks", "rooms": []string{"r1"}})["sockets"].([]any)
	if len(socks) != 1 {
		t.Fatalf("fetchSockets: %v", socks)
	}
	s0 := socks[0].(map[string]any)
	if s0["id"] != sid || s0["local"] != false {
		t.Fatalf("fetchSockets: %v, want remote %s", s0, sid)
	}
	wantRooms := []string{sid, "r1"}
	slices.Sort(wantRooms) // node-server.js sorts rooms
	jsonEq(t, mustMarshal(t, s0["rooms"]), string(mustMarshal(t, wantRooms)))
	jsonEq(t, mustMarshal(t, s0["data"]), `{"who":"ui-b"}`)

	// allRooms from A includes B's rooms.
	rooms := a.mustCall(map[string]any{"cmd": "allRooms"})["rooms"].([]any)
	if !slices.Contains(rooms, any("r1")) || !slices.Contains(rooms, any(sid)) {
		t.Fatalf("allRooms: %v", rooms)
	}

	// serverSideEmitWithAck from A gets B's answer (B has a listener for it).
	ans = a.mustCall(map[string]any{"cmd": "serverSideEmitWithAck", "nsp": "/tasks", "event": "ping-sse", "args": []any{1, "x"}, "timeout": 3000})
	jsonEq(t, mustMarshal(t, ans["responses"]), `[{"from":"node","event":"ping-sse"}]`)
	sse := b.waitType("server_side_emit", wait)
	jsonEq(t, mustMarshal(t, sse), `{"type":"server_side_emit","nsp":"/tasks","event":"ping-sse","args":[1,"x"],"acked":true,"via":"listener","reply":{"from":"node","event":"ping-sse"}}`)
	// ... and through the catch-all, without a listener.
	ans = a.mustCall(map[string]any{"cmd": "serverSideEmitWithAck", "event": "other", "timeout": 3000})
	jsonEq(t, mustMarshal(t, ans["responses"]), `[{"from":"node","event":"other"}]`)

	// A plain serverSideEmit from the emitter reaches both servers.
	em.mustCall(map[string]any{"cmd": "serverSideEmit", "event": "from-em", "args": []any{"z"}})
	for _, s := range []*nodeServer{a, b} {
		s.waitEvent(wait, "server_side_emit from-em", func(m map[string]any) bool {
			return m["type"] == "server_side_emit" && m["event"] == "from-em" && m["acked"] == false
		})
	}

	// socketsJoin through the emitter, seen from A.
	em.mustCall(map[string]any{"cmd": "socketsJoin", "rooms": []string{"r1"}, "join": []string{"r2"}})
	testwait.For(t, wait, func() error {
		s := a.mustCall(map[string]any{"cmd": "fetchSockets", "rooms": []string{"r2"}})["sockets"].([]any)
		if len(s) != 1 {
			return fmt.Errorf("fetchSockets r2: %v", s)
		}
		return nil
	})

	// disconnectSockets from A disconnects the client on B.
	a.mustCall(map[string]any{"cmd": "disconnectSockets", "rooms": []string{"r2"}, "close": true})
	ui.waitType("disconnect", wait)
	b.waitType("disconnect", wait)

	if got := a.call(map[string]any{"cmd": "nope"}); got["ok"] != false {
		t.Fatalf("unknown command answered %v", got)
	}
}

func mustMarshal(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
