package engineio

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodeClient drives the official engine.io-client (node_modules): open,
// send a text and a binary message, wait for their echoes and, when it
// may, for the upgrade to websocket, live through a few heartbeats, send
// once more and close. It prints what it saw as one JSON array.
const nodeClient = `
const { Socket } = require("engine.io-client");
const [url, transports] = [process.argv[1], JSON.parse(process.argv[2])];
const s = new Socket(url, { path: "/engine.io/", transports });
const got = [];
let echoes = 0, upgraded = !transports.includes("websocket") || transports[0] === "websocket", sentLast = false;
const step = () => {
  if (echoes === 2 && upgraded && !sentLast) {
    sentLast = true;
    setTimeout(() => s.send("last"), 300);
  }
};
s.on("open", () => { got.push("open:" + s.transport.name); s.send("hello"); s.send(Buffer.from([1, 2, 3])); });
s.on("upgrade", () => { got.push("upgrade:" + s.transport.name); upgraded = true; step(); });
s.on("message", (m) => {
  got.push(typeof m === "string" ? "text:" + m : "bin:" + Buffer.from(m).toString("hex"));
  if (m === "last") { console.log(JSON.stringify(got)); s.close(); return; }
  echoes++; step();
});
s.on("close", (reason) => { if (!sentLast || got[got.length - 1] !== "text:last") { console.log(JSON.stringify(got.concat("close:" + reason))); } });
setTimeout(() => { console.log(JSON.stringify(got.concat("timeout"))); process.exit(1); }, 8000).unref();
`

func TestNodeEngineIOClient(t *testing.T) {
	node, err := exec.LookPath("node")
	modules, _ := filepath.Abs("../../node_modules")
	if _, serr := os.Stat(filepath.Join(modules, "engine.io-client")); err != nil || serr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node or node_modules/engine.io-client missing (run npm ci)")
		}
		t.Skip("node or node_modules/engine.io-client missing (run npm ci)")
	}
	ts := newServer(t, Config{PingInterval: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond}, true)
	for _, tc := range []struct {
		transports string
		want       []string
	}{
		{`["polling","websocket"]`, []string{"open:polling", "text:hello", "bin:010203", "upgrade:websocket", "text:last"}},
		{`["websocket"]`, []string{"open:websocket", "text:hello", "bin:010203", "text:last"}},
		{`["polling"]`, []string{"open:polling", "text:hello", "bin:010203", "text:last"}},
	} {
		t.Run(tc.transports, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "-e", nodeClient, ts.url[:len(ts.url)-len("/engine.io/")], tc.transports)
			cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node: %v: %s", err, out)
			}
			var got []string
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			// The upgrade may come before or after the echoes.
			if !sameSet(got, tc.want) || got[0] != tc.want[0] || got[len(got)-1] != "text:last" {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
