package app

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/internal/identity"
)

// TestV6ResolverWiring: with EVENTSERVER_V6_API_URL the hub resolves through
// the vantage6 API (its metrics are exported and its settings logged, the
// password never); without it, through the token's claims.
func TestV6ResolverWiring(t *testing.T) {
	const pw = "svc-password-never-logged"
	core, logs := observer.New(zapcore.InfoLevel)
	a, err := New(testConfig(t, map[string]string{
		"EVENTSERVER_SHUTDOWN_DELAY": "0s",
		"EVENTSERVER_V6_API_URL":     "http://127.0.0.1:1/api",
		"EVENTSERVER_V6_USERNAME":    "eventserver",
		"EVENTSERVER_V6_PASSWORD":    pw,
		"EVENTSERVER_V6_TIMEOUT":     "7s",
	}), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, a)
	defer func() {
		stop()
		for _, e := range logs.All() {
			for _, f := range e.Context {
				if strings.Contains(f.String, pw) {
					t.Errorf("log %q has the password in %s", e.Message, f.Key)
				}
			}
		}
	}()
	if a.v6 == nil || !a.v6.HasServiceAccount() {
		t.Fatal("no vantage6 resolver with a service account")
	}
	if got := logs.FilterMessage("identity from the vantage6 API").All(); len(got) != 1 ||
		got[0].ContextMap()["service_username"] != "eventserver" || got[0].ContextMap()["timeout"] != 7*time.Second {
		t.Errorf("start-up log: %v", got)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	code, body, err := get(client, "http://"+a.Addr().String()+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", code, err)
	}
	if !strings.Contains(body, `eventserver_v6_api_requests_total{call="node",outcome="ok"} 0`) {
		t.Errorf("GET /metrics lacks the vantage6 API metrics")
	}

	r, timeout, err := (&App{cfg: testConfig(t, nil), log: zap.NewNop()}).newResolver()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(identity.ClaimsResolver); !ok || timeout != 0 {
		t.Errorf("without EVENTSERVER_V6_API_URL: %T, %s; want the claims resolver", r, timeout)
	}
}

func TestV6ConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"username without password", map[string]string{"EVENTSERVER_V6_API_URL": "https://v6.example.org/api",
			"EVENTSERVER_V6_USERNAME": "eventserver"}, "EVENTSERVER_V6_PASSWORD"},
		{"service account without URL", map[string]string{"EVENTSERVER_V6_USERNAME": "eventserver",
			"EVENTSERVER_V6_PASSWORD": "pw"}, "EVENTSERVER_V6_API_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(testConfig(t, tc.env), zap.NewNop())
			if err == nil {
				a.ln.Close()
				t.Fatal("New: want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %s", err, tc.want)
			}
		})
	}
}
