package connlimit

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventserver/eventserver/internal/validate"
	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func req(remote string, xff ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/socket.io/?EIO=4&transport=polling", nil)
	r.RemoteAddr = remote
	for _, h := range xff {
		r.Header.Add("X-Forwarded-For", h)
	}
	return r
}

func TestClientIP(t *testing.T) {
	trusted, err := validate.Prefixes("10.0.0.0/8, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		r      *http.Request
		want   string
		nProxy []string
	}{
		{"direct client", req("203.0.113.7:5000"), "203.0.113.7", nil},
		{"untrusted peer's header is ignored", req("203.0.113.7:5000", "198.51.100.1"), "203.0.113.7", nil},
		{"behind one trusted proxy", req("10.1.2.3:5000", "198.51.100.1"), "198.51.100.1", nil},
		{"a forged hop left of the real one", req("10.1.2.3:5000", "1.2.3.4, 198.51.100.1"), "198.51.100.1", nil},
		{"two trusted proxies", req("127.0.0.1:5000", "198.51.100.1, 10.9.9.9"), "198.51.100.1", nil},
		{"several header lines", req("10.1.2.3:5000", "1.2.3.4", "198.51.100.1"), "198.51.100.1", nil},
		{"only proxies", req("10.1.2.3:5000", "10.0.0.1"), "10.0.0.1", nil},
		{"garbage from the proxy", req("10.1.2.3:5000", "not-an-ip"), "10.1.2.3", nil},
		{"ipv6 peer", req("[2001:db8::1]:5000"), "2001:db8::1", nil},
		{"ipv4-mapped", req("[::ffff:203.0.113.7]:5000"), "203.0.113.7", nil},
	}
	for _, c := range cases {
		if got := ClientIP(c.r, trusted).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if _, err := validate.Prefixes("10.0.0.0/33"); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
	if _, err := validate.Prefixes("example.org"); err == nil {
		t.Error("a host name accepted")
	}
}

func TestAdmit(t *testing.T) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"reason"})
	l := New(Config{Max: 3, PerIP: 2, Refused: refused})
	a1, err := l.Admit(req("203.0.113.7:1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(req("203.0.113.7:2")); err != nil {
		t.Fatal(err)
	}
	_, err = l.Admit(req("203.0.113.7:3"))
	var re *engineio.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusTooManyRequests {
		t.Fatalf("third from one address: %v, want 429", err)
	}
	b1, err := l.Admit(req("198.51.100.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Admit(req("198.51.100.2:1"))
	if !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable {
		t.Fatalf("fourth in all: %v, want 503", err)
	}
	a1()
	a1() // a second release changes nothing
	if l.Len() != 2 {
		t.Fatalf("Len %d after one release, want 2", l.Len())
	}
	if _, err := l.Admit(req("203.0.113.7:4")); err != nil {
		t.Fatalf("after a release, the address has room again: %v", err)
	}
	b1()
	if got := testutil.ToFloat64(refused.WithLabelValues(ReasonPerIP)); got != 1 {
		t.Errorf("per_ip refusals %v, want 1", got)
	}
	if got := testutil.ToFloat64(refused.WithLabelValues(ReasonTotal)); got != 1 {
		t.Errorf("total refusals %v, want 1", got)
	}
	if len(l.byIP) != 1 {
		t.Errorf("addresses kept: %v", l.byIP)
	}
}
