package conformance

// Socket.IO v5 cases against the reference server: on "/" and "/custom" it
// emits "auth" with the handshake auth on connection, answers "message"
// with "message-back" and the same arguments, and acks "message-with-ack"
// with the same arguments. The connect timeout is connectTimeout.

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSocketIO(t *testing.T) {
	runSuite(t, socketIOTargets(), socketIOCases)
}

// sio is a client of the target's Socket.IO server.
func sio(t *testing.T, r *targetRun) *client {
	return newClient(t, r.url(t, "socketio", sioPath, "--connect-timeout", "1000"), sioPath)
}

// checkConnect wants a CONNECT answer for prefix ("40" or "40/custom,")
// carrying exactly {"sid": string}.
func checkConnect(t *testing.T, pkt, prefix string) string {
	t.Helper()
	if !strings.HasPrefix(pkt, prefix) {
		t.Fatalf("got %q, want %s{\"sid\":...}", pkt, prefix)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(pkt[len(prefix):]), &m); err != nil {
		t.Fatalf("CONNECT payload %q: %v", pkt, err)
	}
	sid, ok := m["sid"].(string)
	if len(m) != 1 || !ok || sid == "" {
		t.Fatalf("CONNECT payload %q: want exactly a string sid", pkt)
	}
	return sid
}

// join connects w to nsp ("" for the main namespace) with the handshake
// auth payload auth ("" for none) and wants the CONNECT answer and the auth
// echo.
func join(t *testing.T, w *wsConn, nsp, auth string) {
	t.Helper()
	connect, event := "40", "42"
	if nsp != "" {
		connect, event = "40"+nsp+",", "42"+nsp+","
	}
	w.send(connect + auth)
	checkConnect(t, w.expectText(), connect)
	if auth == "" {
		auth = "{}"
	}
	w.expect(event + `["auth",` + auth + `]`)
}

// sioConnect opens a websocket and connects to the main namespace.
func sioConnect(t *testing.T, c *client) *wsConn {
	t.Helper()
	w, _ := c.openWS(false)
	join(t, w, "", "")
	return w
}

// wantClosed wants the server to end the connection with no more messages.
func wantClosed(t *testing.T, w *wsConn) {
	t.Helper()
	if got := w.waitClosed(2 * time.Second); len(got) != 0 {
		t.Errorf("got %v before the close", got)
	}
}

var socketIOCases = []testCase{
	{"connect/main", func(t *testing.T, r *targetRun) {
		sioConnect(t, sio(t, r))
	}},
	{"connect/main-with-auth", func(t *testing.T, r *targetRun) {
		w, _ := sio(t, r).openWS(false)
		join(t, w, "", `{"token":"123"}`)
	}},
	{"connect/custom", func(t *testing.T, r *targetRun) {
		w, _ := sio(t, r).openWS(false)
		join(t, w, "/custom", "")
	}},
	{"connect/custom-with-auth", func(t *testing.T, r *targetRun) {
		w, _ := sio(t, r).openWS(false)
		join(t, w, "/custom", `{"token":"abc"}`)
	}},
	{"connect/invalid-namespace", func(t *testing.T, r *targetRun) {
		w, _ := sio(t, r).openWS(false)
		w.send("40/random")
		w.expect(`44/random,{"message":"Invalid namespace"}`)
		// The connection stays usable.
		join(t, w, "", "")
	}},
	{"connect/invalid-handshake", func(t *testing.T, r *targetRun) {
		w, _ := sio(t, r).openWS(false)
		w.send("4abc")
		wantClosed(t, w)
	}},
	{"connect/several-namespaces", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		join(t, w, "/custom", "")
		w.send(`42/custom,["message","to custom"]`)
		w.expect(`42/custom,["message-back","to custom"]`)
		w.send(`42["message","to main"]`)
		w.expect(`42["message-back","to main"]`)
	}},
	{"connect/timeout", func(t *testing.T, r *targetRun) {
		// Pings are answered: only the missing CONNECT ends the session.
		c := sio(t, r)
		start := time.Now()
		w, _ := c.openWS(false)
		wantClosed(t, w)
		if d := time.Since(start); d < connectTimeout-100*time.Millisecond || d > connectTimeout+2*time.Second {
			t.Errorf("closed after %s, want about %s", d, connectTimeout)
		}
	}},
	{"connect/timeout-polling", func(t *testing.T, r *targetRun) {
		c := sio(t, r)
		start := time.Now()
		sid, _ := c.handshake()
		deadline := time.Now().Add(connectTimeout + 2*time.Second)
		for {
			st, body, err := c.get(sid)
			if err != nil || (st != http.StatusOK && st != http.StatusBadRequest) {
				t.Fatalf("GET: %d %q %v", st, body, err)
			}
			if st == http.StatusBadRequest || slices.Contains(splitPayload(body), "1") {
				break
			}
			if slices.Contains(splitPayload(body), "2") {
				c.mustPost(sid, "3")
			}
			if time.Now().After(deadline) {
				t.Fatalf("session still open after %s", time.Since(start))
			}
		}
		if d := time.Since(start); d < connectTimeout-100*time.Millisecond {
			t.Errorf("closed after %s, want about %s", d, connectTimeout)
		}
	}},
	{"disconnect/main", func(t *testing.T, r *targetRun) {
		// The Engine.IO session outlives the namespace: the next packet is
		// a ping; an event to the left namespace then closes it (Node).
		c := sio(t, r)
		w, _ := c.openWS(true)
		join(t, w, "", "")
		w.send("41")
		w.expect("2")
		w.send("3")
		w.send(`42["message","x"]`)
		wantClosed(t, w)
	}},
	{"disconnect/custom", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		join(t, w, "/custom", "")
		w.send("41/custom,")
		w.send(`42["message","to main"]`)
		w.expect(`42["message-back","to main"]`)
	}},
	{"message/event", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send(`42["message",1,"2",{"3":[true]}]`)
		w.expect(`42["message-back",1,"2",{"3":[true]}]`)
	}},
	{"message/ack", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send(`42456["message-with-ack",1,"2",{"3":[false]}]`)
		w.expect(`43456[1,"2",{"3":[false]}]`)
	}},
	{"message/ack-custom", func(t *testing.T, r *targetRun) {
		w, _ := sio(t, r).openWS(false)
		join(t, w, "/custom", "")
		w.send(`42/custom,7["message-with-ack","x"]`)
		w.expect(`43/custom,7["x"]`)
	}},
	{"message/binary", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send(`452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
		w.sendBinary([]byte{1, 2, 3})
		w.sendBinary([]byte{4, 5, 6})
		w.expect(`452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
		w.expectBinary([]byte{1, 2, 3})
		w.expectBinary([]byte{4, 5, 6})
	}},
	{"message/binary-ack", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send(`452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
		w.sendBinary([]byte{1, 2, 3})
		w.sendBinary([]byte{4, 5, 6})
		w.expect(`462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
		w.expectBinary([]byte{1, 2, 3})
		w.expectBinary([]byte{4, 5, 6})
	}},
	{"message/binary-polling", func(t *testing.T, r *targetRun) {
		c := sio(t, r)
		sid, _ := c.handshake()
		c.mustPost(sid, "40")
		got := c.collect(sid, 2)
		checkConnect(t, got[0], "40")
		if got[1] != `42["auth",{}]` {
			t.Fatalf("got %q, want the auth event", got[1])
		}
		c.mustPost(sid, "451-[\"message\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID")
		want := []string{`451-["message-back",{"_placeholder":true,"num":0}]`, "bAQID"}
		if got := c.collect(sid, 2); !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}},
	{"invalid/unknown-packet-type", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send("4abc")
		wantClosed(t, w)
	}},
	{"invalid/payload-format", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send("42{}")
		wantClosed(t, w)
	}},
	{"invalid/ack-id", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send(`42abc["message-with-ack",1,"2",{"3":[false]}]`)
		wantClosed(t, w)
	}},
	{"invalid/binary-count", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send(`45x-["message",{"_placeholder":true,"num":0}]`)
		wantClosed(t, w)
	}},
	{"invalid/connect-twice", func(t *testing.T, r *targetRun) {
		w := sioConnect(t, sio(t, r))
		w.send("40")
		wantClosed(t, w)
	}},
}
