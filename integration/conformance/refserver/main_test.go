package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRejectsUnknownMode(t *testing.T) {
	err := run([]string{"--mode", "nats"}, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unsupported --mode") {
		t.Fatalf("err %v", err)
	}
}

// TestHandshakeAndEcho runs the server as the suite does: read the URL
// line, open a session, echo a message, close stdin, expect a clean exit.
func TestHandshakeAndEcho(t *testing.T) {
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--listen", "127.0.0.1:0", "--deflate", "--connect-timeout", "1000"}, stdinR, stdoutW)
		_ = stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ URL string }
	if err := json.Unmarshal([]byte(line), &out); err != nil || !strings.HasPrefix(out.URL, "http://127.0.0.1:") {
		t.Fatalf("line %q: %v", line, err)
	}
	base := out.URL + "/engine.io/?EIO=4&transport=polling"
	body := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return string(b)
	}
	open := body(http.Get(base))
	var h struct {
		Sid                       string
		PingInterval, PingTimeout int
		MaxPayload                int
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(open, "0")), &h); err != nil {
		t.Fatal(err)
	}
	if h.PingInterval != 300 || h.PingTimeout != 200 || h.MaxPayload != 1e6 {
		t.Fatalf("handshake %+v", h)
	}
	sid := base + "&sid=" + h.Sid
	if got := body(http.Post(sid, "text/plain", strings.NewReader("4hello\x1ebAQIDBA=="))); got != "ok" {
		t.Fatalf("post %q", got)
	}
	if got := body(http.Get(sid)); got != "4hello\x1ebAQIDBA==" {
		t.Fatalf("echo %q", got)
	}
	_ = stdinW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after stdin EOF")
	}
	_, _ = io.Copy(io.Discard, stdoutR)
}
