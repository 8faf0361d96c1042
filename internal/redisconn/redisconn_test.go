package redisconn

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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

// TestLogging: go-redis's lines during a Sentinel failover (as the
// Sentinel integration test saw them) come out at their level, and the
// dial failures it repeats several times a second are written once every
// logEvery, with the count of those left out.
func TestLogging(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	now := time.Unix(1000, 0)
	z := newZapLogging(zap.New(core), func() time.Time { return now })
	ctx := context.Background()
	refused := errors.New("dial tcp 127.0.0.1:40993: connect: connection refused")

	z.Printf(ctx, "sentinel: selected addr=%s masterAddr=%s", "127.0.0.1:32953", "127.0.0.1:40993")
	z.Printf(ctx, "sentinel: GetMasterAddrByName addr=%s, master=%q failed: %s", "127.0.0.1:37791", "mymaster", context.Canceled)
	for range 40 { // 5 s of failed dials, 8 a second
		z.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", 5, refused)
		now = now.Add(125 * time.Millisecond)
	}
	z.Printf(ctx, "sentinel: new master=%q addr=%q", "mymaster", "127.0.0.1:35075")
	z.Printf(ctx, "sentinel: new master=%q addr=%q", "mymaster", "127.0.0.1:40993")
	now = now.Add(logEvery)
	z.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", 5, refused)

	type line struct {
		level zapcore.Level
		msg   string
	}
	var got []line
	for _, e := range logs.All() {
		got = append(got, line{e.Level, e.Message})
	}
	want := []line{
		{zapcore.InfoLevel, "sentinel: selected addr=127.0.0.1:32953 masterAddr=127.0.0.1:40993"},
		{zapcore.DebugLevel, `sentinel: GetMasterAddrByName addr=127.0.0.1:37791, master="mymaster" failed: context canceled`},
		{zapcore.WarnLevel, "redis: connection pool: failed to dial after 5 attempts: dial tcp 127.0.0.1:40993: connect: connection refused"},
		{zapcore.WarnLevel, `sentinel: new master="mymaster" addr="127.0.0.1:35075"`},
		{zapcore.WarnLevel, `sentinel: new master="mymaster" addr="127.0.0.1:40993"`},
		{zapcore.WarnLevel, "redis: connection pool: failed to dial after 5 attempts: dial tcp 127.0.0.1:40993: connect: connection refused"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("lines:\n%v\nwant\n%v", got, want)
	}
	if n := logs.All()[5].ContextMap()["suppressed"]; n != int64(39) {
		t.Errorf("suppressed %v, want 39", n)
	}
}
