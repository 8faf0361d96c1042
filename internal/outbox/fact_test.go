package outbox

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/internal/protocol"
)

func TestNewID(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for range 10000 {
		id := NewID(now)
		if !uuidV7.MatchString(id) {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("%q twice", id)
		}
		seen[id] = true
	}
	// The first 48 bits are the Unix milliseconds: ids sort by time.
	a, b := NewID(now), NewID(now.Add(time.Millisecond))
	if a[:13] >= b[:13] || !strings.HasPrefix(a, "01972b5c-ee00-") {
		t.Errorf("ids %s, %s: want the time prefix 01972b5c-ee00-... and increasing", a, b)
	}
}

func TestConfigErrors(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{Instance: "i"}, "neither"},
		{"stream without client", Config{Stream: "s", Instance: "i"}, "Client"},
		{"no instance", Config{Stream: "s", Client: client}, "Instance"},
		{"ftp webhook", Config{WebhookURL: "ftp://h/x", Instance: "i"}, "http"},
		{"webhook without host", Config{WebhookURL: "https:///x", Instance: "i"}, "host"},
		{"webhook with user", Config{WebhookURL: "https://u:pw@h/x", Instance: "i"}, "user information"},
		{"negative", Config{Stream: "s", Client: client, Instance: "i", QueueSize: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := New(tt.cfg)
			if err == nil {
				_ = o.Shutdown(t.Context())
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q prints the password", err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	if got := RedactURL("https://hooks.example/v1/facts?token=s3cret#x"); got != "https://hooks.example/v1/facts" {
		t.Errorf("RedactURL = %q", got)
	}
}

// TestNilOutbox: the methods of a nil outbox do nothing, so that callers
// need not check whether it is configured.
func TestNilOutbox(t *testing.T) {
	var o *Outbox
	o.Add(protocol.Fact{Type: protocol.FactPing})
	if o.Queued() != 0 || o.Shutdown(t.Context()) != nil {
		t.Error("nil outbox")
	}
}
