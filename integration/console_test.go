package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
)

const testConsoleToken = "console-token-integration-0123"

// consoleBrowser is integration/clients/console.js: the console in
// headless Chromium, one command at a time.
type consoleBrowser struct {
	t     *testing.T
	c     *client
	next  int
	dir   string
	shots []string
}

// startConsoleBrowser starts console.js; screenshots go to dir.
func startConsoleBrowser(t *testing.T, dir string) *consoleBrowser {
	t.Helper()
	root := repoRoot(t)
	_, errC := os.Stat(chromiumPath)
	need(t, errC == nil, "Debian's chromium ("+chromiumPath+")")
	_, errN := exec.LookPath("node")
	_, errP := os.Stat(filepath.Join(root, "node_modules", "playwright-core"))
	need(t, errN == nil && errP == nil, "node and node_modules/playwright-core (npm ci)")
	cmd := exec.Command("node", filepath.Join(root, "integration", "clients", "console.js"), "--chromium", chromiumPath)
	cmd.Dir = root
	b := &consoleBrowser{t: t, c: startProcClient(t, "console", cmd), dir: dir}
	b.c.waitType("browser", time.Minute)
	return b
}

// do runs one command and returns its answer; a failure fails the test.
func (b *consoleBrowser) do(cmd string, kv ...any) string {
	b.t.Helper()
	b.next++
	id := b.next
	m := map[string]any{"cmd": cmd, "id": id}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b.c.sendFn(m)
	ans := b.c.wait(90*time.Second, fmt.Sprintf("the answer to %v", m), func(r msg) bool {
		return (r.Type == "result" || r.Type == "fail") && r.ID == id
	})
	if ans.Type == "fail" {
		b.shot("failed")
		b.t.Fatalf("console %s %v: %s", cmd, kv, ans.Message)
	}
	return ans.Message
}

// shot saves a screenshot of the page as <n>-<name>.png.
func (b *consoleBrowser) shot(name string) {
	b.t.Helper()
	p := filepath.Join(b.dir, fmt.Sprintf("%d-%s.png", len(b.shots)+1, name))
	b.shots = append(b.shots, p)
	if name != "failed" {
		b.do("screenshot", "path", p)
	} else {
		b.c.sendFn(map[string]any{"cmd": "screenshot", "path": p, "id": -1})
	}
}

// TestConsole: the operator console in a real browser on a 3-replica
// cluster with python-socketio nodes: a wrong token is refused, sign-in,
// a node goes online and offline live, the timeline and the traffic move,
// the replicas table lists the three, the search box filters, sign-out.
func TestConsole(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		need(t, false, "Debian's chromium ("+chromiumPath+")")
	}
	dir := os.Getenv("EVENTSERVER_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	tok := "EVENTSERVER_CONSOLE_TOKEN=" + testConsoleToken
	a := startInstance(t, "replica-a", r.URL(), prefix, tok)
	b := startInstance(t, "replica-b", r.URL(), prefix, tok)
	c := startInstance(t, "replica-c", r.URL(), prefix, tok)

	br := startConsoleBrowser(t, dir)
	const wait = "timeout"
	br.do("goto", "url", a.URL+"/console/")
	br.do("waitFor", "selector", "#token")
	br.shot("signin")

	// A wrong token (here the publish token) is refused, with a message.
	br.do("fill", "selector", "#token", "value", testPublishToken)
	br.do("press", "selector", "#token", "key", "Enter")
	br.do("waitText", "selector", "#signin-message", "text", "Wrong console token")
	br.shot("wrong-token")
	if got := a.metric(`eventserver_console_signins_total{outcome="wrong_token"}`); got != 1 {
		t.Errorf("wrong_token sign-ins %v, want 1", got)
	}

	// Sign in: the console shows the three replicas, live.
	br.do("fill", "selector", "#token", "value", testConsoleToken)
	signedInAt := len(br.c.snapshot())
	br.do("click", "selector", "#signin-button")
	br.do("waitText", "selector", "#status", "text", "Live")
	br.do("waitText", "selector", "#replica-summary", "text", "3 replicas answering")
	for _, name := range []string{"replica-a", "replica-b", "replica-c"} {
		br.do("waitText", "selector", `#replicas tr[data-instance="`+name+`"]`, "text", "ready")
	}
	if n := br.do("count", "selector", "#replicas tbody tr.replica"); n != "3" {
		t.Errorf("%s replica rows, want 3", n)
	}
	br.shot("signed-in")

	// Nodes on two replicas come online, seen without a reload.
	n7 := startPyNode(t, b.server, "node7@b", clientOpts{token: nodeToken(t, 7, 1, 2, time.Hour)})
	n8 := startPyNode(t, c.server, "node8@c", clientOpts{token: nodeToken(t, 8, 2, 3, time.Hour)})
	n7.waitEvent("sync", 30*time.Second)
	n8.waitEvent("sync", 30*time.Second)
	n7.emit("ping", 0)
	n7.emit("node_info_update", 0, map[string]any{"version": "4.14.0", "algorithms": []string{"v6-average-py"}})
	br.do("waitText", "selector", `#nodes tr[data-key="7"] .status`, "text", "online")
	br.do("waitText", "selector", `#nodes tr[data-key="7"]`, "text", "replica-b")
	br.do("waitText", "selector", `#nodes tr[data-key="8"]`, "text", "replica-c")
	br.do("waitText", "selector", "#replicas", "text", "replica-b")
	br.do("waitText", "selector", "#timeline-summary", "text", "2 transitions")
	br.do("waitFor", "selector", `#timeline figure[data-collaboration="2"]`)

	// Traffic through the publish API, on two replicas, moves the counters.
	for i := range 6 {
		s := a
		if i%2 == 1 {
			s = b
		}
		s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":` + strconv.Itoa(i) + `,"parent_id":null}}`)
	}
	br.do("waitNotText", "selector", "#traffic-publish-total", "text", "0", wait, 30000)
	br.do("waitNotText", "selector", "#traffic-out-total", "text", "0", wait, 30000)
	br.do("waitNotText", "selector", "#traffic-in-total", "text", "0", wait, 30000)
	br.do("waitText", "selector", `#nodes tr[data-key="7"] td:nth-child(4)`, "text", "ago")
	br.shot("online")

	// The search box filters by name or id.
	br.do("fill", "selector", "#search", "value", "node8")
	br.do("waitText", "selector", "#node-summary", "text", "1 of 2 match")
	if n := br.do("count", "selector", "#nodes tr.node"); n != "1" {
		t.Errorf("%s nodes shown for node8, want 1", n)
	}
	br.do("waitFor", "selector", `#nodes tr[data-key="7"]`, "state", "hidden")
	br.shot("search")
	br.do("fill", "selector", "#search", "value", "")
	br.do("waitFor", "selector", `#nodes tr[data-key="7"]`)

	// Node 7 stops: offline, live, and on the timeline.
	n7.disconnect()
	br.do("waitText", "selector", `#nodes tr[data-key="7"] .status`, "text", "offline")
	br.do("waitText", "selector", "#timeline-summary", "text", "3 transitions")
	br.do("waitText", "selector", "#recent", "text", "went offline")
	br.shot("offline")

	// No page error, no console error since the sign-in (a
	// Content-Security-Policy violation would be one).
	for _, m := range br.c.snapshot()[signedInAt:] {
		if m.Type == "error" || m.Type == "console" {
			t.Errorf("page reported %s: %s", m.Type, m.Message)
		}
	}

	// Sign out: back to the sign-in page; the API refuses the browser now.
	br.do("click", "selector", "#signout")
	br.do("waitFor", "selector", "#token")
	br.shot("signed-out")
	if st := br.do("fetch", "path", "/console/api/snapshot"); st != "401" {
		t.Errorf("snapshot after sign-out: %s, want 401", st)
	}
	if got := a.metric(`eventserver_console_signins_total{outcome="ok"}`); got != 1 {
		t.Errorf("ok sign-ins %v, want 1", got)
	}

	for _, p := range br.shots {
		st, err := os.Stat(p)
		if err != nil || st.Size() == 0 {
			t.Errorf("screenshot %s: %v", p, err)
		}
	}
	t.Logf("screenshots in %s", dir)
}
