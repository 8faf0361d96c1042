package integration

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// rawUpgrade sends the WebSocket upgrade of the curl (with origin as
// Origin, none when ""), and returns the status, the body of a refusal, and
// the first text frame after a 101 (Engine.IO's open packet).
func rawUpgrade(t *testing.T, s *server, origin string) (int, string) {
	t.Helper()
	addr := strings.TrimPrefix(s.URL, "http://")
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	req := "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n" +
		"Host: " + addr + "\r\n" +
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	if origin != "" {
		req += "Origin: " + origin + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// One unmasked text frame from the server: Engine.IO's open packet.
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("reading the first frame: %v", err)
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		t.Fatal("open packet longer than 64 KiB")
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(payload)
}

// TestWebSocketUpgradeOrigin: the WebSocket upgrade follows
// EVENTSERVER_CORS_ORIGINS, as polling does: a listed origin, a same-origin
// one and none are upgraded; any other is refused with 403 on every transport.
func TestWebSocketUpgradeOrigin(t *testing.T) {
	const ui = "https://portal.example.org"
	s := startServer(t, func(c *config.Config) { c.CORSOrigins = []string{ui} })
	for _, tc := range []struct {
		name, origin string
		want         int
	}{
		{"listed", ui, http.StatusSwitchingProtocols},
		{"listed with trailing slash", ui + "/", http.StatusSwitchingProtocols},
		{"same-origin", s.URL, http.StatusSwitchingProtocols},
		{"no Origin", "", http.StatusSwitchingProtocols},
		{"not listed", "https://evil.example", http.StatusForbidden},
		{"not listed: other scheme", "http://portal.example.org", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := rawUpgrade(t, s, tc.origin)
			if code != tc.want {
				t.Fatalf("status %d (%q), want %d", code, body, tc.want)
			}
			if code == http.StatusSwitchingProtocols && !(strings.HasPrefix(body, "0{") && strings.Contains(body, `"sid":"`)) {
				t.Fatalf("first frame %q, want the Engine.IO open packet", body)
			}
			if code == http.StatusForbidden && !strings.Contains(body, "EVENTSERVER_CORS_ORIGINS") {
				t.Fatalf("refusal body %q does not name EVENTSERVER_CORS_ORIGINS", body)
			}
		})
	}
	// Polling from the refused origin is refused too.
	req, _ := http.NewRequest("GET", s.URL+"/socket.io/?EIO=4&transport=polling", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("polling from a refused origin: %d %v", resp.StatusCode, resp.Header)
	}
	if got := s.metric(`eventserver_origin_refused_total{transport="websocket"}`); got != 2 {
		t.Errorf(`eventserver_origin_refused_total{transport="websocket"} = %v, want 2`, got)
	}
	if got := s.metric(`eventserver_origin_refused_total{transport="polling"}`); got != 1 {
		t.Errorf(`eventserver_origin_refused_total{transport="polling"} = %v, want 1`, got)
	}
	if n := len(s.logs.FilterMessageSnippet("EVENTSERVER_CORS_ORIGINS does not allow").All()); n != 2 {
		t.Errorf("%d refusal log lines, want 2 (one per origin):\n%s", n, s.logText())
	}

	// With an empty list, python-socketio's websocket-client (which sends
	// "Origin: http://<server host:port>") still connects over WebSocket.
	s0 := startServer(t, nil)
	node := startPyNode(t, s0, "py-ws", clientOpts{token: nodeToken(t, 1, 1, 1, time.Hour), transports: "websocket"})
	node.waitEvent("sync", wait)
	if got := s0.metric(`eventserver_connections{client_type="node",transport="websocket"}`); got != 1 {
		t.Errorf("python node over websocket: connections gauge %v, want 1", got)
	}
	if code, _ := rawUpgrade(t, s0, "https://portal.example.org"); code != http.StatusForbidden {
		t.Errorf("empty list, foreign origin upgrade: %d, want 403", code)
	}
}

// uiPage is the page a browser loads from a UI origin: socket.io-client 4.8
// with the vantage6 UI's options (Authorization as an extra header,
// withCredentials), reporting on the console as browser.js expects.
var uiPage = template.Must(template.New("ui").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ui</title>
<script src="/socket.io.min.js"></script></head>
<body><script>
const server = {{.Server}};
const token = {{.Token}};
const transports = {{.Transports}};
function out(o) { console.log("ES " + JSON.stringify(o)); }
const opts = {
  extraHeaders: { Authorization: "Bearer " + token },
  withCredentials: true,
  reconnection: false,
};
if (transports.length > 0) opts.transports = transports;
// A browser's WebSocket carries no extra header: a websocket-only page
// sends its token in the handshake's auth instead.
if ({{.Auth}}) opts.auth = { token };
const socket = io(server + "/tasks", opts);
socket.io.on("open", () => {
  out({ type: "open", transport: socket.io.engine.transport.name });
  socket.io.engine.on("upgrade", (t) => out({ type: "upgrade", transport: t.name }));
});
socket.on("connect", () => out({ type: "connect", sid: socket.id, transport: socket.io.engine.transport.name }));
socket.on("connect_error", (e) => out({ type: "connect_error", message: String(e && e.message) }));
socket.on("disconnect", (r) => out({ type: "disconnect", reason: r }));
socket.onAny((event, ...args) => out({ type: "event", event, args, transport: socket.io.engine.transport.name }));
</script></body></html>
`))

// uiOrigin serves uiPage and socket.io-client's browser bundle on a
// 127.0.0.1 port of its own: an origin of its own for the browser.
type uiOrigin struct {
	*httptest.Server
	server atomic.Pointer[string] // eventserver's URL, set once it runs
	token  string
}

func startUIOrigin(t *testing.T, token string) *uiOrigin {
	t.Helper()
	bundle := filepath.Join(repoRoot(t), "node_modules", "socket.io-client", "dist", "socket.io.min.js")
	o := &uiOrigin{token: token}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /socket.io.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, bundle)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		transports := []string{}
		if tr := r.URL.Query().Get("transports"); tr != "" {
			transports = strings.Split(tr, ",")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err := uiPage.Execute(w, map[string]any{"Server": *o.server.Load(), "Token": o.token, "Transports": transports, "Auth": r.URL.Query().Has("auth")})
		if err != nil {
			t.Errorf("page: %v", err)
		}
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	o.Server = httptest.NewServer(mux)
	t.Cleanup(o.Close)
	return o
}

const chromiumPath = "/usr/bin/chromium"

// startBrowser opens pages (name, URL) in one headless Chromium
// (integration/clients/browser.js), each page in a context of its own, and
// returns a client for each, by name; a page is loaded once its client
// reports "ready".
func startBrowser(t *testing.T, pages ...[2]string) map[string]*client {
	t.Helper()
	root := repoRoot(t)
	_, errC := os.Stat(chromiumPath)
	need(t, errC == nil, "Debian's chromium ("+chromiumPath+")")
	_, errN := exec.LookPath("node")
	_, errP := os.Stat(filepath.Join(root, "node_modules", "playwright-core"))
	_, errB := os.Stat(filepath.Join(root, "node_modules", "socket.io-client", "dist", "socket.io.min.js"))
	need(t, errN == nil && errP == nil && errB == nil, "node and node_modules/playwright-core, socket.io-client (npm ci)")
	args := []string{filepath.Join(root, "integration", "clients", "browser.js"), "--chromium", chromiumPath}
	clients := map[string]*client{}
	for _, p := range pages {
		args = append(args, "--page", p[0]+"="+p[1])
		clients[p[0]] = &client{t: t, name: p[0]}
	}
	cmd := exec.Command("node", args...)
	cmd.Dir = root
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	browser := &client{t: t, name: "browser"} // lines of no page
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			var m struct {
				Page string `json:"page"`
				msg
			}
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if c := clients[m.Page]; c != nil {
				c.add(m.msg)
			} else {
				browser.add(m.msg)
			}
		}
	}()
	t.Cleanup(func() {
		_, _ = io.WriteString(stdin, `{"cmd":"disconnect"}`+"\n")
		_ = stdin.Close()
		waitOrKill(cmd)
		<-readDone
		if t.Failed() {
			for _, c := range append([]*client{browser}, slices.Collect(maps.Values(clients))...) {
				for _, m := range c.snapshot() {
					t.Logf("%s: %+v", c.name, m)
				}
			}
			t.Logf("browser.js stderr:\n%s", stderr.String())
		}
	})
	return clients
}

// TestBrowserCrossOrigin: the vantage6 UI in a real browser (headless
// Chromium), on an origin that EVENTSERVER_CORS_ORIGINS lists, connects by
// polling (its Authorization header making Chromium send the preflight,
// which passes), upgrades to WebSocket and receives new_task published
// through the API; websocket-only connects too. The same page on an origin
// that is not listed gets no connection, whatever its transports.
func TestBrowserCrossOrigin(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		need(t, false, "Debian's chromium ("+chromiumPath+")")
	}
	token := userToken(t, 21, 3, []int64{2}, "collaboration", time.Hour)
	allowed := startUIOrigin(t, token)
	refused := startUIOrigin(t, token)
	s := startServer(t, func(c *config.Config) { c.CORSOrigins = []string{allowed.URL} })
	allowed.server.Store(&s.URL)
	refused.server.Store(&s.URL)
	if allowed.URL == refused.URL || !strings.HasPrefix(allowed.URL, "http://127.0.0.1:") || !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("origins %s %s %s", allowed.URL, refused.URL, s.URL)
	}

	pages := startBrowser(t,
		[2]string{"ui", allowed.URL + "/"},
		[2]string{"ui-ws-only", allowed.URL + "/?transports=websocket&auth"},
		[2]string{"foreign", refused.URL + "/"},
		[2]string{"foreign-ws-only", refused.URL + "/?transports=websocket&auth"},
	)
	ui, wsOnly, foreign, foreignWS := pages["ui"], pages["ui-ws-only"], pages["foreign"], pages["foreign-ws-only"]
	for _, c := range []*client{ui, wsOnly, foreign, foreignWS} {
		c.waitType("ready", 60*time.Second)
	}

	// The UI: opened by polling, with the preflight of its Authorization
	// header passed as Chromium performed it, then upgraded.
	open := ui.waitType("open", wait)
	if open.Transport != "polling" {
		t.Fatalf("opened on %q, want polling first", open.Transport)
	}
	ui.waitType("connect", wait)
	ui.wait(wait, "preflight answered 204", func(m msg) bool {
		return m.Type == "preflight" && m.Reason == "204" && strings.HasPrefix(m.Message, s.URL+"/socket.io/")
	})
	ui.wait(wait, "upgrade to websocket", func(m msg) bool { return m.Type == "upgrade" && m.Transport == "websocket" })
	wsOnly.wait(wait, "connect over websocket", func(m msg) bool { return m.Type == "connect" && m.Transport == "websocket" })
	testwait.For(t, wait, func() error {
		if got := s.metric(`eventserver_connections{client_type="user",transport="websocket"}`); got != 2 {
			return fmt.Errorf("user websocket connections %v, want 2", got)
		}
		return nil
	})

	// new_task through the API reaches both, over WebSocket.
	s.mustPublish(`{"event":"new_task","room":"collaboration_2","data":{"id":31,"parent_id":null}}`)
	for _, c := range []*client{ui, wsOnly} {
		nt := c.wait(wait, "new_task over websocket", func(m msg) bool {
			return m.Type == "event" && m.Event == "new_task" && m.Transport == "websocket"
		})
		if len(nt.Args) != 1 {
			t.Fatalf("%s: new_task args %s", c.name, nt.Args)
		}
		jsonEq(t, nt.Args[0], `{"id":31,"parent_id":null}`)
	}

	// The foreign origin: no connection on either transport.
	foreign.waitType("connect_error", wait)
	foreignWS.waitType("connect_error", wait)
	for _, c := range []*client{foreign, foreignWS} {
		for _, m := range c.snapshot() {
			if m.Type == "connect" || m.Type == "open" || m.Type == "event" {
				t.Errorf("%s: got %s from a refused origin: %s", c.name, m.Type, c.describe())
			}
		}
	}
	foreign.wait(wait, "preflight refused", func(m msg) bool { return m.Type == "preflight" && m.Reason == "403" })
	if got := s.metric(`eventserver_origin_refused_total{transport="preflight"}`); got < 1 {
		t.Errorf(`eventserver_origin_refused_total{transport="preflight"} = %v, want >= 1`, got)
	}
	if got := s.metric(`eventserver_origin_refused_total{transport="websocket"}`); got < 1 {
		t.Errorf(`eventserver_origin_refused_total{transport="websocket"} = %v, want >= 1`, got)
	}
	if n := len(s.logs.FilterMessageSnippet("EVENTSERVER_CORS_ORIGINS does not allow").All()); n != 1 {
		t.Errorf("%d refusal log lines, want 1 (one origin, once a minute)", n)
	}
	if strings.Contains(s.logText(), token) {
		t.Error("the logs carry the token")
	}
}
