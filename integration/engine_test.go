package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/gorilla/websocket"

	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// The four defects that the official protocol suites found in the
// Engine.IO layer of the library core, checked against the real binary
// (integration/conformance checks them against the bare engine): an
// invalid polling packet closes the session; a chunked body over
// EVENTSERVER_MAX_PAYLOAD is refused with 413; a websocket message over it
// is refused, compressed or not; every long-poll GET gets an answer.

// startBinary runs the shipped binary with env added to the test's
// environment and returns its base URL once it is ready.
func startBinary(t *testing.T, env ...string) string {
	t.Helper()
	base, _ := startBinaryLogs(t, env...)
	return base
}

// startBinaryLogs is startBinary that also returns what the binary writes
// (its logs), as it writes it.
func startBinaryLogs(t *testing.T, env ...string) (string, *testenv.Buffer) {
	t.Helper()
	bin := buildBinary(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "EVENTSERVER_LISTEN="+addr, "EVENTSERVER_JWT_SECRET="+testSecret,
		"EVENTSERVER_SHUTDOWN_DELAY=0s", "EVENTSERVER_DRAIN_TIMEOUT=0s")
	cmd.Env = append(cmd.Env, env...)
	logs := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("eventserver logs:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	waitReadyz(t, base, http.StatusOK)
	return base, logs
}

var engineClient = &http.Client{Timeout: 5 * time.Second}

// eioOpen makes a polling session and returns its sid.
func eioOpen(t *testing.T, base string) string {
	t.Helper()
	resp, err := engineClient.Get(base + "/socket.io/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(body) == 0 || body[0] != '0' {
		t.Fatalf("handshake: %d %q", resp.StatusCode, body)
	}
	var open struct {
		Sid string `json:"sid"`
	}
	if err := json.Unmarshal(body[1:], &open); err != nil || open.Sid == "" {
		t.Fatalf("handshake %q: %v", body, err)
	}
	return open.Sid
}

func eioURL(base, sid string) string {
	return base + "/socket.io/?EIO=4&transport=polling&sid=" + sid
}

func eioGet(base, sid string) (int, string, error) {
	resp, err := engineClient.Get(eioURL(base, sid))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func eioPost(base, sid string, body io.Reader, size int64) (int, error) {
	req, err := http.NewRequest(http.MethodPost, eioURL(base, sid), body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = size // -1: chunked
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	resp, err := engineClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func TestBinaryEngineDefects(t *testing.T) {
	const maxPayload = 10000
	base := startBinary(t, fmt.Sprintf("EVENTSERVER_MAX_PAYLOAD=%d", maxPayload))

	t.Run("invalid polling packet closes the session", func(t *testing.T) {
		sid := eioOpen(t, base)
		status, err := eioPost(base, sid, strings.NewReader("abc"), 3)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusBadRequest {
			t.Errorf("POST abc: status %d, want 400", status)
		}
		testwait.For(t, wait, func() error {
			status, body, err := eioGet(base, sid)
			if err != nil {
				return err
			}
			if status != http.StatusBadRequest || !strings.Contains(body, `"code":1`) {
				return fmt.Errorf("GET after the invalid packet: %d %q, want 400 unknown sid", status, body)
			}
			return nil
		})
	})

	t.Run("chunked body over max payload is 413", func(t *testing.T) {
		sid := eioOpen(t, base)
		// A valid packet followed by more than maxPayload of filler: none
		// of it may be read as a payload.
		body := io.MultiReader(strings.NewReader("4"), strings.NewReader(strings.Repeat("x", 4*maxPayload)))
		status, err := eioPost(base, sid, body, -1)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked POST of %d bytes: status %d, want 413", 4*maxPayload+1, status)
		}
	})

	t.Run("websocket message over max payload is refused, compressed or not", func(t *testing.T) {
		for _, compress := range []bool{false, true} {
			d := websocket.Dialer{EnableCompression: compress, HandshakeTimeout: 5 * time.Second}
			ws, resp, err := d.Dial(strings.Replace(base, "http://", "ws://", 1)+"/socket.io/?EIO=4&transport=websocket", nil)
			if err != nil {
				t.Fatalf("compress=%v: dial: %v", compress, err)
			}
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			_, open, err := ws.ReadMessage()
			if err != nil || len(open) == 0 || open[0] != '0' {
				t.Fatalf("compress=%v: open packet %q: %v", compress, open, err)
			}
			ws.EnableWriteCompression(compress)
			// Highly compressible: deflated it is far under the limit.
			if err := ws.WriteMessage(websocket.TextMessage, []byte("4"+strings.Repeat("a", 20*maxPayload))); err != nil {
				// The server closed the connection while the message was
				// still being written: refused.
				t.Logf("compress=%v: write: %v", compress, err)
				_ = ws.Close()
				continue
			}
			_ = ws.SetReadDeadline(time.Now().Add(wait))
			for {
				_, m, err := ws.ReadMessage()
				if err == nil {
					if string(m) == "2" { // a ping may come first
						continue
					}
					t.Fatalf("compress=%v (extensions %q): got %q, want the connection closed", compress, ext, m)
				}
				var ce *websocket.CloseError
				if errors.As(err, &ce) && ce.Code != websocket.CloseMessageTooBig {
					t.Errorf("compress=%v: close code %d, want %d", compress, ce.Code, websocket.CloseMessageTooBig)
				}
				var ne interface{ Timeout() bool }
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("compress=%v (extensions %q): still open after %s", compress, ext, wait)
				}
				break
			}
			_ = ws.Close()
		}
	})

	t.Run("every long-poll GET gets an answer", func(t *testing.T) {
		for i := range 50 {
			sid := eioOpen(t, base)
			got := make(chan error, 1)
			go func() {
				status, body, err := eioGet(base, sid)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("status %d %q", status, body)
				}
				got <- err
			}()
			// The close packet races the GET: before, during or after it.
			if _, err := eioPost(base, sid, strings.NewReader("1"), 1); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				if err != nil && !strings.Contains(err.Error(), "400") {
					t.Fatalf("race %d: GET: %v", i, err)
				}
			case <-time.After(wait):
				t.Fatalf("race %d: the long-poll GET got no answer within %s", i, wait)
			}
		}
	})
}
