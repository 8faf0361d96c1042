package deploy_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yml as `docker compose` would (schema
// validation, interpolation, merge keys, normalization) with env as the only
// environment.
func loadCompose(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return opts.LoadProject(ctx)
}

// settingNames are the EVENTSERVER_* variables the binary reads, from the
// README's settings table (which a test in internal/config keeps equal to
// the binary).
func settingNames(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(EVENTSERVER_[A-Z0-9_]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		names[m[1]] = true
	}
	if len(names) < 20 {
		t.Fatalf("found only %d settings in the README's table", len(names))
	}
	return names
}

const (
	composeSecret = "compose-test-secret"
	composeToken  = "compose-test-publish-token"
)

// TestComposeFile validates docker-compose.yml offline with compose-go and
// checks what makes it a working cluster: Redis, three replicas built from
// the Dockerfile with the same secrets and distinct instance ids, HAProxy with
// the repository's config in front of exactly those replicas, health checks
// and start order, and one published port.
func TestComposeFile(t *testing.T) {
	p, err := loadCompose(t, "EVENTSERVER_JWT_SECRET="+composeSecret, "EVENTSERVER_PUBLISH_TOKEN="+composeToken)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	known := settingNames(t)
	root := repoRoot(t)

	var replicas []string
	for name := range p.Services {
		if strings.HasPrefix(name, "eventserver-") {
			replicas = append(replicas, name)
		}
	}
	slices.Sort(replicas)
	want := []string{"eventserver-1", "eventserver-2", "eventserver-3"}
	if !slices.Equal(replicas, want) {
		t.Fatalf("replicas %v, want %v", replicas, want)
	}
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, []string{"eventserver-1", "eventserver-2", "eventserver-3", "lb", "redis"}) {
		t.Errorf("services %v, want redis, three replicas and lb", got)
	}

	// Redis: healthy before the replicas start, not published.
	redis := p.Services["redis"]
	composeHealthcheck(t, "redis", redis.HealthCheck)
	if len(redis.Ports) > 0 {
		t.Errorf("redis publishes %v; only the load balancer should", redis.Ports)
	}

	ids := map[string]bool{}
	var shutdown time.Duration
	for _, name := range replicas {
		s := p.Services[name]
		if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s: build %+v, want the repository's Dockerfile", name, s.Build)
		}
		env := s.Environment
		for k := range env {
			if strings.HasPrefix(k, "EVENTSERVER_") && !known[k] {
				t.Errorf("%s: %s is not a setting of the binary", name, k)
			}
		}
		get := func(k string) string {
			if v := env[k]; v != nil {
				return *v
			}
			return ""
		}
		if get("EVENTSERVER_JWT_SECRET") != composeSecret || get("EVENTSERVER_PUBLISH_TOKEN") != composeToken {
			t.Errorf("%s: the secrets do not come from the environment", name)
		}
		if get("EVENTSERVER_REDIS_URL") != "redis://redis:6379/0" {
			t.Errorf("%s: EVENTSERVER_REDIS_URL %q, want the redis service", name, get("EVENTSERVER_REDIS_URL"))
		}
		if id := get("EVENTSERVER_INSTANCE_ID"); id != name || ids[id] {
			t.Errorf("%s: EVENTSERVER_INSTANCE_ID %q, want its own name", name, id)
		}
		ids[get("EVENTSERVER_INSTANCE_ID")] = true
		if _, ok := env["EVENTSERVER_LISTEN"]; ok {
			t.Errorf("%s: sets EVENTSERVER_LISTEN; the image and the load balancer expect :7600", name)
		}
		if d, ok := s.DependsOn["redis"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: does not wait for a healthy redis: %+v", name, s.DependsOn)
		}
		hc := composeHealthcheck(t, name, s.HealthCheck)
		if !slices.Equal(hc, []string{"CMD", "/eventserver", "healthcheck", "--ready"}) {
			t.Errorf("%s: health check %v, want the binary's own readiness check", name, hc)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes %v; only the load balancer should", name, s.Ports)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want read_only, cap_drop ALL and no-new-privileges", name)
		}
		delay, err1 := time.ParseDuration(get("EVENTSERVER_SHUTDOWN_DELAY"))
		drain, err2 := time.ParseDuration(get("EVENTSERVER_DRAIN_TIMEOUT"))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: shutdown delay and drain timeout must be set: %v %v", name, err1, err2)
		}
		// The binary stops at the latest 10 s after delay + drain.
		shutdown = delay + drain + 10*time.Second
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < shutdown {
			t.Errorf("%s: stop_grace_period %v is shorter than the shutdown (%s)", name, s.StopGracePeriod, shutdown)
		}
	}

	// The load balancer: the repository's config, pointed at every replica
	// on the port the image listens on, and the one published port.
	lb, ok := p.Services["lb"]
	if !ok {
		t.Fatal("no lb service")
	}
	var cfgMounted bool
	for _, v := range lb.Volumes {
		if v.Source == filepath.Join(root, "deploy", "haproxy", "haproxy.cfg") && v.Target == "/usr/local/etc/haproxy/haproxy.cfg" && v.ReadOnly {
			cfgMounted = true
		}
	}
	if !cfgMounted {
		t.Errorf("lb does not mount deploy/haproxy/haproxy.cfg read-only: %+v", lb.Volumes)
	}
	cfg, err := os.ReadFile(filepath.Join(root, "deploy", "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	servers := regexp.MustCompile(`(?m)^\s*server \S+ "\$\{(EVENTSERVER_\d+)\}"`).FindAllStringSubmatch(string(cfg), -1)
	if len(servers) != len(replicas) {
		t.Errorf("haproxy.cfg has %d servers for %d replicas", len(servers), len(replicas))
	}
	var targets []string
	for _, m := range servers {
		v := lb.Environment[m[1]]
		if v == nil {
			t.Errorf("lb: %s (a server in haproxy.cfg) is not set", m[1])
			continue
		}
		host, port, err := net.SplitHostPort(*v)
		if err != nil || port != "7600" {
			t.Errorf("lb: %s=%s, want <replica>:7600", m[1], *v)
		}
		targets = append(targets, host)
	}
	slices.Sort(targets)
	if !slices.Equal(targets, replicas) {
		t.Errorf("the load balancer points at %v, want %v", targets, replicas)
	}
	for _, r := range replicas {
		if d, ok := lb.DependsOn[r]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("lb does not wait for a healthy %s", r)
		}
	}
	composeHealthcheck(t, "lb", lb.HealthCheck)
	if len(lb.Ports) != 1 {
		t.Fatalf("lb publishes %d ports, want 1", len(lb.Ports))
	}
	port := lb.Ports[0]
	bind := lb.Environment["LB_BIND"]
	if bind == nil || *bind != fmt.Sprintf(":%d", port.Target) {
		t.Errorf("lb publishes container port %d but LB_BIND is %v", port.Target, bind)
	}
	if port.Published != "7600" || port.HostIP != "127.0.0.1" {
		t.Errorf("lb publishes %s:%s by default, want 127.0.0.1:7600", port.HostIP, port.Published)
	}
	if !strings.Contains(strings.Join(lb.HealthCheck.Test, " "), "/lb-healthz") || !strings.Contains(string(cfg), "monitor-uri /lb-healthz") {
		t.Error("the lb health check and haproxy.cfg's monitor-uri disagree")
	}
}

// composeHealthcheck returns the test command of a service's health check,
// failing when there is none.
func composeHealthcheck(t *testing.T, name string, hc *types.HealthCheckConfig) []string {
	t.Helper()
	if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Interval == nil {
		t.Errorf("%s: no health check: %+v", name, hc)
		return nil
	}
	if hc.Test[0] != "CMD" {
		t.Errorf("%s: health check %v should use CMD (the eventserver image has no shell)", name, hc.Test)
	}
	return hc.Test
}

// TestComposeNeedsSecrets: without the two secrets compose stops with a
// message that names them, instead of starting with a default secret.
func TestComposeNeedsSecrets(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "EVENTSERVER_JWT_SECRET"},
		{[]string{"EVENTSERVER_JWT_SECRET=x"}, "EVENTSERVER_PUBLISH_TOKEN"},
		{[]string{"EVENTSERVER_PUBLISH_TOKEN=publish-token-of-16"}, "EVENTSERVER_JWT_SECRET"},
	} {
		_, err := loadCompose(t, tc.env...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
	// The port and bind address can be changed.
	p, err := loadCompose(t, "EVENTSERVER_JWT_SECRET=x", "EVENTSERVER_PUBLISH_TOKEN=publish-token-of-16", "EVENTSERVER_PORT=9000", "EVENTSERVER_BIND=0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if port := p.Services["lb"].Ports[0]; port.Published != "9000" || port.HostIP != "0.0.0.0" {
		t.Errorf("published %s:%s, want 0.0.0.0:9000", port.HostIP, port.Published)
	}
}
