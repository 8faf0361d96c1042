package validate

import (
	"strings"
	"testing"
)

// TestJWKSURL: the URL must be https (http only on a loopback host).
func TestJWKSURL(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"https://kc.example.org/realms/v6/protocol/openid-connect/certs", true},
		{"http://127.0.0.1:8080/certs", true},
		{"http://localhost/certs", true},
		{"http://kc.example.org/certs", false},
		{"https://user:pw@kc.example.org/certs", false},
		{"ftp://kc.example.org/certs", false},
		{"/certs", false},
	} {
		err := JWKSURL(c.url)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.url, err, c.ok)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%s: the error repeats the password", c.url)
		}
	}
}

func TestAMQPURL(t *testing.T) {
	for raw, want := range map[string]bool{
		"amqp://guest:guest@127.0.0.1:5672/": true,
		"AMQPS://u:p@rabbit/vhost":           true,
		"redis://127.0.0.1:6379":             false,
		"amqp:/nohost":                       false,
		"":                                   false,
	} {
		if got := IsAMQPURL(raw); got != want {
			t.Errorf("IsAMQPURL(%q) = %v", raw, got)
		}
	}
	if err := AMQPURL("amqp://user:s3cret@rabbit:5672/v6"); err != nil {
		t.Errorf("AMQPURL: %v", err)
	}
	for _, bad := range []string{"amqp://user:s3cret@rabbit:notaport/", "amqp://user:s3cret@rab bit/", "amqp://user:s3cret@rabbit/?heartbeat=x", "http://user:s3cret@rabbit/"} {
		err := AMQPURL(bad)
		if err == nil {
			t.Errorf("AMQPURL(%q): no error", bad)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("AMQPURL(%q) prints the password: %v", bad, err)
		}
	}
}

// TestURLs: WebhookURL and V6URL; their errors never show the password.
func TestURLs(t *testing.T) {
	for _, c := range []struct {
		check     func(string) error
		raw, want string // want: a part of the error; "" for none
	}{
		{WebhookURL, "https://backend.example.org/facts?key=1", ""},
		{WebhookURL, "http://127.0.0.1:9000/", ""},
		{WebhookURL, "ftp://backend/", "want an http or https URL"},
		{WebhookURL, "https:///path", "no host"},
		{WebhookURL, "https://u:s3cret@backend/", "user information"},
		{WebhookURL, "https://backend/#x", "fragment"},
		{WebhookURL, "https://backend/%zz", "not a URL"},
		{V6URL, "https://v6.example.org/api", ""},
		{V6URL, "http://localhost:7601/api", ""},
		{V6URL, "v6.example.org/api", "http or https"},
		{V6URL, "https://admin:s3cret@v6.example.org", "EVENTSERVER_V6_USERNAME"},
		{V6URL, "https:///api", "no host"},
		{V6URL, "https://v6.example.org/api?x=1", "query or a fragment"},
		{V6URL, "https://v6.example.org/api?", "query or a fragment"},
	} {
		err := c.check(c.raw)
		if (err == nil) != (c.want == "") || (err != nil && (!strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret"))) {
			t.Errorf("%s: %v, want %q", c.raw, err, c.want)
		}
	}
}

func TestV6Version(t *testing.T) {
	for in, want := range map[string]int{"": 4, "4": 4, " 5 ": 5, "AUTO": 0, V6VersionAuto: 0} {
		if got, err := V6Version(in); got != want || err != nil {
			t.Errorf("V6Version(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := V6Version("6"); err == nil || err.Error() != `vantage6 version "6": want 4, 5 or auto` {
		t.Errorf("V6Version(6): %v", err)
	}
}
