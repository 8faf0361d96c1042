package testenv

import (
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// DefaultRabbitMQ is the RabbitMQ of the tests unless EVENTSERVER_TEST_AMQP_URL
// names another: the broker .ci/run starts (Debian's rabbitmq-server, whose
// guest user may log in from localhost).
const DefaultRabbitMQ = "amqp://guest:guest@127.0.0.1:5672/"

// RabbitMQ returns the URL of the tests' RabbitMQ (EVENTSERVER_TEST_AMQP_URL,
// else DefaultRabbitMQ), skipping the test (failing under CI=true) when its
// port does not answer.
func RabbitMQ(t testing.TB) string {
	t.Helper()
	raw := os.Getenv("EVENTSERVER_TEST_AMQP_URL")
	if raw == "" {
		raw = DefaultRabbitMQ
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal("EVENTSERVER_TEST_AMQP_URL is not a URL")
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "5672")
	}
	ok := false
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		_ = c.Close()
		ok = true
	}
	Need(t, ok, "RabbitMQ at "+addr+" (EVENTSERVER_TEST_AMQP_URL; .ci/run starts rabbitmq-server)")
	return raw
}
