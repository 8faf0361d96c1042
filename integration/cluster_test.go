package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// raced is built with the race detector.
var raced builtBinary

// clusterBinary is cmd/eventserver built with -race, once for the package.
func clusterBinary(t *testing.T) string {
	return raced.get(t, nil, "go", "build", "-race", "-o", "OUT", "./cmd/eventserver")
}

// procServer is one eventserver process of a cluster.
type procServer struct {
	*server
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

func (p *procServer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

func (p *procServer) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// startInstance starts an eventserver process that is a member of the
// cluster on redisURL with prefix.
func startInstance(t *testing.T, name, redisURL, prefix string, extra ...string) *procServer {
	t.Helper()
	return startInstanceOf(t, clusterBinary(t), name, redisURL, prefix, extra...)
}

// startInstanceOf is startInstance with the given binary.
func startInstanceOf(t *testing.T, bin, name, redisURL, prefix string, extra ...string) *procServer {
	t.Helper()
	addr := freeAddr(t)
	p := &procServer{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(),
		"EVENTSERVER_LISTEN="+addr,
		"EVENTSERVER_INSTANCE_ID="+name,
		"EVENTSERVER_JWT_SECRET="+testSecret,
		"EVENTSERVER_PUBLISH_TOKEN="+testPublishToken,
		"EVENTSERVER_REDIS_URL="+redisURL,
		"EVENTSERVER_REDIS_PREFIX="+prefix,
		"EVENTSERVER_REDIS_REQUEST_TIMEOUT=2s",
		"EVENTSERVER_AUTH_GRACE=700ms",
		"EVENTSERVER_SHUTDOWN_DELAY=0s",
		"EVENTSERVER_DRAIN_TIMEOUT=200ms",
		"EVENTSERVER_LOG_LEVEL=debug",
		"EVENTSERVER_PRESENCE_GRACE=1s",
		"EVENTSERVER_PRESENCE_REFRESH=300ms",
		"EVENTSERVER_PRESENCE_TTL=1200ms",
	)
	p.cmd.Env = append(p.cmd.Env, extra...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	p.server = &server{t: t, URL: "http://" + addr}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, tail(p.logText(), 60))
		}
		if strings.Contains(p.logText(), "WARNING: DATA RACE") {
			t.Errorf("%s: data race:\n%s", name, p.logText())
		}
	})
	waitReadyz(t, p.URL, http.StatusOK)
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop signals the process and waits for it (killing it after 10 s).
func (p *procServer) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// uniquePrefix gives each test its own channels on the shared Redis.
func uniquePrefix(t testing.TB) string {
	return "es-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + fmt.Sprint("-", time.Now().UnixNano()%1e6)
}

// TestClusterCrossInstance: a python node on instance A, a Node UI on B and
// a Go client on C see every event of the protocol with the same rooms and
// isolation as on one instance.
func TestClusterCrossInstance(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	a := startInstance(t, "a", r.URL(), prefix)
	b := startInstance(t, "b", r.URL(), prefix)
	c := startInstance(t, "c", r.URL(), prefix)

	ui := startUI(t, b.server, "ui@b", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)})
	ui.waitType("connect", wait)
	ui.wait(wait, "upgrade", func(m msg) bool { return m.Type == "upgrade" })
	gc := startGoClient(t, c.server, "go-org@c", userToken(t, 6, 2, []int64{1}, "organization", time.Hour))
	gc.waitType("connect", wait)
	other := startPyNode(t, c.server, "node-c2@c", clientOpts{token: nodeToken(t, 9, 2, 7, time.Hour)})
	other.waitEvent("sync", wait)

	node := startPyNode(t, a.server, "node@a", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
	if len(node.waitEvent("sync", wait).Args) != 0 {
		t.Fatal("sync with arguments")
	}
	for _, cl := range []*client{ui, gc, other} {
		jsonEq(t, cl.waitEvent("node-online", wait).Args[0], `{"id":3,"name":"org2-node3","org_id":2}`)
	}
	ui.wait(wait, "join message", func(m msg) bool {
		return m.Event == "message" && string(m.Args[0]) == `"Node <org2-node3> joined room <collaboration_1>"`
	})

	c.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":12,"parent_id":null}}`)
	jsonEq(t, node.waitEvent("new_task", wait).Args[0], `{"id":12,"parent_id":null}`)
	b.mustPublish(`{"event":"kill_containers","room":"collaboration_1","data":{"node_id":3,"collaboration_id":1}}`)
	jsonEq(t, node.waitEvent("kill_containers", wait).Args[0], `{"node_id":3,"collaboration_id":1}`)
	a.mustPublish(`{"event":"status_update","rooms":["collaboration_1_organization_2"],"data":{"run_id":40}}`)
	jsonEq(t, gc.waitEvent("status_update", wait).Args[0], `{"run_id":40}`)

	node.emit("algorithm_status_change", 0, map[string]any{"node_id": 3, "status": "active", "run_id": 40, "task_id": 12, "collaboration_id": 1, "organization_id": 2, "parent_id": nil})
	node.emit("algorithm_log", 0, map[string]any{"collaboration_id": 1, "run_id": 40, "task_id": 12, "log": "x\n"})
	want := `{"status":"active","run_id":40,"task_id":12,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}`
	jsonEq(t, ui.waitEvent("algorithm_status_change", wait).Args[0], want)
	jsonEq(t, node.waitEvent("algorithm_status_change", wait).Args[0], want)
	jsonEq(t, ui.waitEvent("algorithm_log", wait).Args[0], `{"run_id":40,"task_id":12,"log":"x\n"}`)
	// A node that speaks for another collaboration is refused on its own instance.
	node.emit("algorithm_status_change", 0, map[string]any{"status": "failed", "run_id": 1, "task_id": 1, "collaboration_id": 2})

	// sockets API on C answers for the whole cluster.
	code, body := c.do("GET", "/api/v1/sockets?room=collaboration_1", testPublishToken, "")
	if code != 200 || !strings.Contains(body, `"instance":"a"`) || !strings.Contains(body, `"instance":"b"`) {
		t.Errorf("sockets of collaboration_1 from c: %d %s", code, body)
	}

	node.disconnect()
	for _, cl := range []*client{ui, gc, other} {
		jsonEq(t, cl.waitEvent("node-offline", wait).Args[0], `{"id":3,"name":"org2-node3","org_id":2}`)
	}
	all := []*client{ui, gc, other}
	barrier(t, a.server, all...)

	for _, cl := range all {
		for _, ev := range []string{"node-online", "node-offline"} {
			if n := len(cl.events(ev)); n != 1 {
				t.Errorf("%s: %s %d times", cl.name, ev, n)
			}
		}
	}
	if names := other.eventNames(); strings.Contains(strings.Join(names, " "), "algorithm") || strings.Contains(strings.Join(names, " "), "new_task") {
		t.Errorf("node of collaboration 2 got collaboration 1's events: %v", names)
	}
	for _, m := range other.events("message") {
		if strings.Contains(string(m.Args[0]), "org2-node3") {
			t.Errorf("node of collaboration 2 got a join message of collaboration 1: %s", m.Args[0])
		}
	}
	if n := len(gc.events("algorithm_status_change")) + len(gc.events("new_task")); n != 0 {
		t.Errorf("organization-scoped user got collaboration events: %v", gc.eventNames())
	}
	if n := len(ui.events("algorithm_status_change")); n != 1 {
		t.Errorf("ui got algorithm_status_change %d times (refused one relayed?)", n)
	}
}

// TestClusterRedisFaults: Redis stopped under traffic (readiness false,
// local delivery works, publishes answer at once), then restarted (delivery
// resumes within seconds, no goroutine growth).
func TestClusterRedisFaults(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	a := startInstance(t, "a", r.URL(), prefix)
	b := startInstance(t, "b", r.URL(), prefix)
	localUser := startUI(t, a.server, "user@a", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	localUser.waitType("connect", wait)
	remoteUser := startUI(t, b.server, "user@b", clientOpts{token: userToken(t, 6, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	remoteUser.waitType("connect", wait)
	barrier(t, a.server, localUser, remoteUser)
	goroutinesBefore := a.metric("go_goroutines")

	// Traffic through the whole fault: a publish every 20 ms from b.
	stop := make(chan struct{})
	traffic := make(chan int, 1)
	go func() {
		n := 0
		defer func() { traffic <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			req, _ := http.NewRequest("POST", b.URL+"/api/v1/emit", strings.NewReader(`{"event":"traffic","room":"collaboration_1","data":null}`))
			req.Header.Set("Authorization", "Bearer "+testPublishToken)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				n++
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()

	r.Kill()
	waitReadyz(t, a.URL, http.StatusServiceUnavailable)
	waitReadyz(t, b.URL, http.StatusServiceUnavailable)
	// Local delivery still works, and the publish answers at once.
	start := time.Now()
	a.mustPublish(`{"event":"status_update","room":"collaboration_1","data":{"run_id":1}}`)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("publish took %s with Redis down", d)
	}
	localUser.waitEvent("status_update", wait)

	r.Restart()
	waitReadyz(t, a.URL, http.StatusOK)
	waitReadyz(t, b.URL, http.StatusOK)
	a.mustPublish(`{"event":"status_update","room":"collaboration_1","data":{"run_id":2}}`)
	remoteUser.wait(wait, "status_update after the restart", func(m msg) bool {
		return m.Event == "status_update" && string(m.Args[0]) == `{"run_id":2}`
	})
	// b's traffic reaches a's user again.
	seen := len(localUser.events("traffic"))
	testwait.For(t, wait, func() error {
		if n := len(localUser.events("traffic")); n <= seen+5 {
			return fmt.Errorf("traffic from b after the restart: %d new", n-seen)
		}
		return nil
	})
	close(stop)
	if n := <-traffic; n < 10 {
		t.Errorf("only %d publishes went through during the test", n)
	}
	// No goroutine growth: what the fault started has ended.
	testwait.For(t, wait, func() error {
		if now := a.metric("go_goroutines"); now > goroutinesBefore+5 {
			return fmt.Errorf("goroutines of a: %v before the fault, %v after", goroutinesBefore, now)
		}
		return nil
	})
	for _, p := range []*procServer{a, b} {
		if strings.Contains(p.logText(), "panic") {
			t.Errorf("%s panicked:\n%s", p.name, tail(p.logText(), 40))
		}
	}
}

// TestClusterInstanceKilled: after SIGKILL of one instance the others keep
// serving, and their fetchSockets no longer wait for it.
func TestClusterInstanceKilled(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	a := startInstance(t, "a", r.URL(), prefix)
	b := startInstance(t, "b", r.URL(), prefix)
	c := startInstance(t, "c", r.URL(), prefix)
	ua := startUI(t, a.server, "user@a", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	ub := startUI(t, b.server, "user@b", clientOpts{token: userToken(t, 6, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	uc := startUI(t, c.server, "user@c", clientOpts{token: userToken(t, 7, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	for _, u := range []*client{ua, ub, uc} {
		u.waitType("connect", wait)
	}
	countSockets := func(p *procServer) int {
		code, body := p.do("GET", "/api/v1/sockets", testPublishToken, "")
		if code != 200 {
			t.Fatalf("sockets: %d %s", code, body)
		}
		var resp struct {
			Sockets []json.RawMessage `json:"sockets"`
		}
		_ = json.Unmarshal([]byte(body), &resp)
		return len(resp.Sockets)
	}
	if n := countSockets(a); n != 3 {
		t.Fatalf("a sees %d sockets, want 3", n)
	}
	c.stop(syscall.SIGKILL)
	uc.waitType("disconnect", wait)
	start := time.Now()
	if n := countSockets(a); n != 2 {
		t.Errorf("a sees %d sockets after c died, want 2", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("fetchSockets took %s after c died", d)
	}
	b.mustPublish(`{"event":"status_update","room":"collaboration_1","data":{"run_id":3}}`)
	ua.waitEvent("status_update", wait)
	ub.waitEvent("status_update", wait)
}
