package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// The load balancer of docker-compose.yml, deploy/haproxy/haproxy.cfg, run
// for real: Debian's HAProxy with that file in front of three eventserver
// processes (the binary scripts/build.sh makes, as in the image) on one Redis.

const lbConfig = "deploy/haproxy/haproxy.cfg"

// lbProc is a running HAProxy.
type lbProc struct {
	URL  string
	cmd  *exec.Cmd
	logs testenv.Buffer
	done chan struct{}
}

// startHAProxy checks cfg with `haproxy -c` and runs it in the foreground in
// front of backends (EVENTSERVER_1..3), until the test ends.
func startHAProxy(t *testing.T, cfg string, backends []string) *lbProc {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	need(t, err == nil, "haproxy (Debian package haproxy)")
	addr := freeAddr(t)
	env := append(os.Environ(), "LB_BIND="+addr)
	for i, b := range backends {
		env = append(env, fmt.Sprintf("EVENTSERVER_%d=%s", i+1, b))
	}
	check := exec.Command(bin, "-c", "-f", cfg)
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", cfg, err, out)
	}

	p := &lbProc{URL: "http://" + addr, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-db", "-f", cfg) // -db: foreground, logs to stdout
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("haproxy log:\n%s", tail(p.logs.String(), 80))
		}
	})
	testwait.For(t, wait, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("haproxy exited:\n%s", p.logs.String())
		default:
		}
		resp, err := http.Get(p.URL + "/lb-healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/lb-healthz: %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

var lbLogLine = regexp.MustCompile(`eventservers/(\S+) \S+ (\d{3}) `)

// answers counts the logged answers of the replicas by status code, and the
// requests by replica.
func (p *lbProc) answers() (byStatus map[string]int, byServer map[string]int) {
	byStatus, byServer = map[string]int{}, map[string]int{}
	for _, m := range lbLogLine.FindAllStringSubmatch(p.logs.String(), -1) {
		byServer[m[1]]++
		byStatus[m[2]]++
	}
	return byStatus, byServer
}

// startLBCluster starts Redis, three instances of the shipped binary with
// short heartbeats (so that polling clients make many requests), and HAProxy
// with cfg in front of them.
func startLBCluster(t *testing.T, cfg string) ([]*procServer, *lbProc) {
	t.Helper()
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	bin := buildBinary(t)
	var es []*procServer
	var addrs []string
	for i := 1; i <= 3; i++ {
		p := startInstanceOf(t, bin, fmt.Sprintf("es%d", i), r.URL(), prefix,
			"EVENTSERVER_PING_INTERVAL=500ms", "EVENTSERVER_PING_TIMEOUT=2s")
		es = append(es, p)
		addrs = append(addrs, strings.TrimPrefix(p.URL, "http://"))
	}
	return es, startHAProxy(t, cfg, addrs)
}

// instancesOf maps "node/3", "user/5", ... to the instance that holds the
// client's socket, from GET /api/v1/sockets (the whole cluster).
func instancesOf(t *testing.T, s *server) map[string]string {
	t.Helper()
	code, body := s.do("GET", "/api/v1/sockets", testPublishToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/sockets: %d %s", code, body)
	}
	var v struct {
		Sockets []struct {
			Data struct {
				ClientType string `json:"client_type"`
				ClientID   string `json:"client_id"`
				Instance   string `json:"instance"`
			} `json:"data"`
		} `json:"sockets"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range v.Sockets {
		out[s.Data.ClientType+"/"+s.Data.ClientID] = s.Data.Instance
	}
	return out
}

// TestLoadBalancerSticky: through HAProxy with the repository's config,
// python-socketio and socket.io-client connect with polling, upgrade to
// WebSocket (or keep polling), land on different replicas, and receive events
// that cross replicas; no request reaches a replica that does not know its
// session.
func TestLoadBalancerSticky(t *testing.T) {
	es, lb := startLBCluster(t, filepath.Join(repoRoot(t), lbConfig))
	via := &server{t: t, URL: lb.URL}

	// The first answer sets the sticky cookie.
	resp, err := http.Get(lb.URL + "/socket.io/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get("Set-Cookie"); resp.StatusCode != 200 || !regexp.MustCompile(`^EVENTSERVER=es[123];`).MatchString(c) {
		t.Fatalf("handshake through the load balancer: %d, Set-Cookie %q", resp.StatusCode, c)
	}

	node := startPyNode(t, via, "node@lb", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
	node.waitEvent("sync", wait)
	node.waitType("upgrade", wait)
	var uis []*client
	for i := 0; i < 3; i++ {
		ui := startUI(t, via, fmt.Sprintf("ui%d@lb", i), clientOpts{token: userToken(t, int64(5+i), 2, []int64{1}, "collaboration", time.Hour)})
		ui.waitType("connect", wait)
		ui.waitType("upgrade", wait)
		uis = append(uis, ui)
	}
	// Polling only: every message is an HTTP request, all to one replica.
	pollNode := startPyNode(t, via, "poll-node@lb", clientOpts{token: nodeToken(t, 4, 1, 3, time.Hour), transports: "polling"})
	pollNode.waitEvent("sync", wait)
	pollUI := startUI(t, via, "poll-ui@lb", clientOpts{token: userToken(t, 8, 3, []int64{1}, "collaboration", time.Hour), transports: "polling"})
	pollUI.waitType("connect", wait)
	clients := append([]*client{node, pollNode, pollUI}, uis...)

	// The clients are spread over the replicas: events must cross them.
	where := instancesOf(t, es[0].server)
	if len(where) != 6 {
		t.Fatalf("sockets of the cluster: %v, want 6", where)
	}
	distinct := map[string]bool{}
	for _, inst := range where {
		distinct[inst] = true
	}
	remote := 0
	for _, id := range []string{"user/5", "user/6", "user/7", "user/8"} {
		if where[id] != where["node/3"] {
			remote++
		}
	}
	if len(distinct) < 2 || remote == 0 {
		t.Fatalf("the load balancer put every client on one replica: %v", where)
	}
	t.Logf("clients by replica: %v", where)

	// The backend publishes through the load balancer too.
	via.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":12,"parent_id":null}}`)
	for _, c := range clients {
		jsonEq(t, c.waitEvent("new_task", wait).Args[0], `{"id":12,"parent_id":null}`)
	}
	node.emit("algorithm_status_change", 0, map[string]any{"status": "active", "run_id": 40, "task_id": 12, "collaboration_id": 1, "node_id": 3, "organization_id": 2, "parent_id": nil})
	pollNode.emit("algorithm_log", 0, map[string]any{"collaboration_id": 1, "run_id": 41, "task_id": 12, "log": "polled\n"})
	for _, c := range append([]*client{pollUI}, uis...) {
		jsonEq(t, c.waitEvent("algorithm_status_change", wait).Args[0],
			`{"status":"active","run_id":40,"task_id":12,"job_id":null,"collaboration_id":1,"node_id":3,"organization_id":2,"parent_id":null}`)
		jsonEq(t, c.waitEvent("algorithm_log", wait).Args[0], `{"run_id":41,"task_id":12,"log":"polled\n"}`)
	}

	// Many polling round trips later (500 ms heartbeats), every request has
	// reached the replica that knows its session.
	before, _ := lb.answers()
	testwait.For(t, wait, func() error {
		now, _ := lb.answers()
		if now["200"] < before["200"]+20 {
			return fmt.Errorf("only %d answers so far", now["200"]-before["200"])
		}
		return nil
	})
	byStatus, byServer := lb.answers()
	if byStatus["400"] > 0 {
		t.Errorf("replicas answered 400 (a session on another replica) %d times: %v", byStatus["400"], byStatus)
	}
	for _, c := range clients {
		for _, m := range c.snapshot() {
			if m.Type == "disconnect" || m.Type == "connect_error" || m.Type == "error" {
				t.Errorf("%s: %+v", c.name, m)
			}
		}
	}
	t.Logf("answers by status %v, by replica %v", byStatus, byServer)
}

// nonStickyConfig is the repository's config without the sticky cookie and
// with round robin, what a load balancer does when nobody configures it.
func nonStickyConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), lbConfig))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	cookieLine := regexp.MustCompile(`(?m)^\s*cookie EVENTSERVER .*\n`)
	serverCookie := regexp.MustCompile(`(?m)^(\s*server es\d .*) cookie es\d[ \t]*$`)
	balance := regexp.MustCompile(`(?m)^(\s*)balance leastconn[ \t]*$`)
	if !cookieLine.MatchString(src) || len(serverCookie.FindAllString(src, -1)) != 3 || !balance.MatchString(src) {
		t.Fatalf("%s changed shape: expected a `cookie EVENTSERVER` line, three `server esN ... cookie esN` lines and `balance leastconn`", lbConfig)
	}
	src = cookieLine.ReplaceAllString(src, "")
	src = serverCookie.ReplaceAllString(src, "$1")
	src = balance.ReplaceAllString(src, "${1}balance roundrobin")
	path := filepath.Join(t.TempDir(), "haproxy-nonsticky.cfg")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadBalancerWithoutStickiness shows why the cookie is there: without
// it, a polling client's requests go to replicas that do not know its
// session (400), and it never connects. WebSocket-only clients need no
// stickiness: they connect and receive events through the same balancer.
func TestLoadBalancerWithoutStickiness(t *testing.T) {
	_, lb := startLBCluster(t, nonStickyConfig(t))
	via := &server{t: t, URL: lb.URL}

	poller := startPyNode(t, via, "poll-node@lb", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour), transports: "polling"})
	failed := poller.wait(wait, "a failed connect", func(m msg) bool {
		return m.Type == "connect_error" || m.Type == "error" || m.Type == "disconnect"
	})
	t.Logf("polling client without stickiness: %+v", failed)
	byStatus, byServer := lb.answers()
	if byStatus["400"] == 0 {
		t.Errorf("no replica answered 400 (session unknown): %v", byStatus)
	}
	if len(byServer) < 2 {
		t.Errorf("requests reached only %v", byServer)
	}

	wsNode := startPyNode(t, via, "ws-node@lb", clientOpts{token: nodeToken(t, 4, 1, 3, time.Hour), transports: "websocket"})
	wsNode.waitEvent("sync", wait)
	wsUI := startUI(t, via, "ws-ui@lb", clientOpts{token: userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour), transports: "websocket"})
	wsUI.waitType("connect", wait)
	via.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":13,"parent_id":null}}`)
	jsonEq(t, wsNode.waitEvent("new_task", wait).Args[0], `{"id":13,"parent_id":null}`)
	jsonEq(t, wsUI.waitEvent("new_task", wait).Args[0], `{"id":13,"parent_id":null}`)
	if n := len(poller.events("sync")); n != 0 {
		t.Errorf("the polling client got sync %d times without stickiness", n)
	}
}
