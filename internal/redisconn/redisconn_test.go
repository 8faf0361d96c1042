package redisconn

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestNewClient(t *testing.T) {
	for _, tc := range []struct {
		url  string
		mode Mode
		err  string
	}{
		{"redis://127.0.0.1:6379/0", Standalone, ""},
		{"rediss://user:pw@redis.example:6380/2", Standalone, ""},
		{"unix:///run/redis.sock", Standalone, ""},
		{"redis+sentinel://s1:26379?master_name=mymaster&addr=s2:26379", Sentinel, ""},
		{"redis+sentinel://s1:26379", "", "master_name"},
		{"redis+cluster://c1:7000?addr=c2:7000&addr=c3:7000", Cluster, ""},
		{"http://x", "", "scheme"},
		{"redis+mesh://x", "", "unknown deployment"},
		{"redis://127.0.0.1:6379?bogus=1", "", "bogus"},
		{"redis://user:hunter2@[::1", "", "not a URL"},
	} {
		c, mode, err := NewClient(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.url, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%s: the error shows the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if mode != tc.mode {
			t.Errorf("%s: mode %s, want %s", tc.url, mode, tc.mode)
		}
		_ = c.Close()
	}
}

func TestTimeouts(t *testing.T) {
	c, _, err := NewClient("redis://127.0.0.1:1/0?read_timeout=7s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.DialTimeout != 2*time.Second || o.ReadTimeout != 7*time.Second || o.WriteTimeout != 2*time.Second {
		t.Errorf("timeouts dial %s read %s write %s", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
	}
}

func TestRedact(t *testing.T) {
	if got := Redact("redis://user:hunter2@h:6379/0"); strings.Contains(got, "hunter2") {
		t.Errorf("Redact kept the password: %s", got)
	}
}
