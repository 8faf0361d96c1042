package app

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

const consoleToken = "console-token-app-test-0123"

// TestConsoleOffWithoutToken: no token, no console.
func TestConsoleOffWithoutToken(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, err := New(testConfig(t, nil), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run() }()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	base := "http://" + a.Addr().String()
	testwait.For(t, 5*time.Second, func() error { _, _, err := get(client, base+"/healthz"); return err })
	if code, _, _ := get(client, base+"/console/"); code != http.StatusNotFound {
		t.Errorf("/console/ without a token: %d, want 404", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

// TestConsoleStreamEndsOnShutdown: in cluster mode, a signed-in console's
// live stream is open when the app shuts down; Shutdown ends it and
// returns in time (http.Server.Shutdown alone would wait for it).
func TestConsoleStreamEndsOnShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r := redistest.Start(t)
	cfg := testConfig(t, map[string]string{
		"EVENTSERVER_CONSOLE_TOKEN": consoleToken,
		"EVENTSERVER_REDIS_URL":     r.URL(),
		"EVENTSERVER_REDIS_PREFIX":  "app-console-test",
		"EVENTSERVER_INSTANCE_ID":   "console-a",
	})
	a, err := New(cfg, zap.NewNop(), WithVersion("1.2.3-test"))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run() }()
	base := "http://" + a.Addr().String()
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{DisableKeepAlives: true}
	client := &http.Client{Jar: jar, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer tr.CloseIdleConnections()
	testwait.For(t, 5*time.Second, func() error { _, _, err := get(client, base+"/readyz"); return err })

	req, _ := http.NewRequest("POST", base+"/console/signin", strings.NewReader(url.Values{"token": {consoleToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	resp, err = client.Get(base + "/console/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	// The reconnection hint, then the first snapshot.
	for _, want := range []string{"retry: 3000\n", "\n", "event: snapshot\n"} {
		if line, err := br.ReadString('\n'); err != nil || line != want {
			t.Errorf("line %q, %v; want %q", line, err, want)
		}
	}
	data, _ := br.ReadString('\n')
	for _, want := range []string{`"instance":"console-a"`, `"redis":"ok"`, `"replicas":[`, `"version":"1.2.3-test"`} {
		if !strings.Contains(data, want) {
			t.Errorf("snapshot lacks %s: %s", want, data)
		}
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Shutdown took %v: it waited for the stream", d)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("stream: %v, want EOF", err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}
