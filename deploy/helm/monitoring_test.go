package helm_test

// The chart's monitoring: the Grafana dashboard (dashboards/eventserver.json,
// shipped as a ConfigMap for Grafana's sidecar) and the PrometheusRule.
// Every PromQL expression of both is parsed with Prometheus's own parser and
// may name only metrics that the real server exports: the binary is built as
// it ships, started in cluster mode with a test Redis, the publish API, the
// backend outbox and the vantage6 queue bridge on, given a little traffic,
// and its /metrics scraped. Each alert is evaluated with Prometheus's rules
// package over synthetic series (what `promtool test rules` does), and must
// fire on a broken series and stay quiet on a healthy one.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

const (
	monitoringValues = "ci/monitoring-values.yaml"
	dashboardFile    = "dashboards/eventserver.json"
	dashboardKey     = "eventserver.json"
)

// prometheusRule holds the fields of monitoring.coreos.com/v1 PrometheusRule
// that the chart sets; decoding is strict, so any other field fails.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name     string      `json:"name"`
			Interval string      `json:"interval,omitempty"`
			Rules    []alertRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// alertNames are the alerts the chart ships, all on by default.
var alertNames = []string{
	"EventserverReplicaDown", "EventserverRedisUnreachable", "EventserverAdapterDrops", "EventserverNodesFlapping",
	"EventserverOutboxQueueFull", "EventserverOutboxDrops", "EventserverPublishErrors",
}

// alerts returns the alerting rules of the rendering's one PrometheusRule.
func alerts(t *testing.T, r *rendering) map[string]alertRule {
	t.Helper()
	pr := one[prometheusRule](t, r, "PrometheusRule")
	out := map[string]alertRule{}
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" {
				t.Errorf("group %s: a rule without an alert name: %+v", g.Name, rule)
			}
			if _, dup := out[rule.Alert]; dup {
				t.Errorf("alert %s twice", rule.Alert)
			}
			out[rule.Alert] = rule
		}
	}
	return out
}

// checkMonitoring is TestRender's check of ci/monitoring-values.yaml.
func checkMonitoring(t *testing.T, r *rendering) {
	// The operator console is on: its token comes from the chart's Secret.
	sec := chartSecret(t, r)
	if got := string(sec.Data["console-token"]); got != "ci-console-token-0123456789" {
		t.Errorf("chart Secret's console-token = %q", got)
	}
	wantSecretRef(t, r, "EVENTSERVER_CONSOLE_TOKEN", sec.Name, "console-token")
	cm := one[corev1.ConfigMap](t, r, "ConfigMap (Grafana dashboard)")
	if cm.Namespace != "monitoring" || cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "vantage6" {
		t.Errorf("dashboard ConfigMap namespace %q labels %v annotations %v, want monitoring, grafana_dashboard=1, grafana_folder", cm.Namespace, cm.Labels, cm.Annotations)
	}
	file, err := os.ReadFile(filepath.Join(chartDir, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data[dashboardKey]; got != strings.TrimRight(string(file), "\n") {
		t.Errorf("the ConfigMap's %s is not %s (%d bytes, file %d)", dashboardKey, dashboardFile, len(got), len(file))
	}
	pr := one[prometheusRule](t, r, "PrometheusRule")
	if pr.Namespace != namespace || pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule namespace %q labels %v", pr.Namespace, pr.Labels)
	}
	got := alerts(t, r)
	for _, name := range alertNames {
		rule, ok := got[name]
		if !ok {
			t.Errorf("alert %s is missing", name)
			continue
		}
		if rule.Labels["severity"] == "" || rule.Labels["team"] != "vantage6" {
			t.Errorf("%s labels %v, want a severity and additionalLabels' team", name, rule.Labels)
		}
		if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
			t.Errorf("%s lacks a summary or description: %v", name, rule.Annotations)
		}
		if _, err := model.ParseDuration(rule.For); err != nil {
			t.Errorf("%s for: %q: %v", name, rule.For, err)
		}
		if !strings.Contains(rule.Expr, `job="eventserver",namespace="`+namespace+`"`) {
			t.Errorf("%s does not select the series of the ServiceMonitor's job and the release namespace: %s", name, rule.Expr)
		}
	}
	if len(got) != len(alertNames) {
		t.Errorf("alerts %v, want %v", keys(got), alertNames)
	}
}

// checkCustomRules: the selector, thresholds, windows, durations and
// severities come from the values, and an alert can be turned off.
func checkCustomRules(t *testing.T, r *rendering) {
	got := alerts(t, r)
	if _, ok := got["EventserverReplicaDown"]; ok || len(got) != len(alertNames)-1 {
		t.Errorf("alerts %v, want all but EventserverReplicaDown", keys(got))
	}
	for name, rule := range got {
		if strings.Contains(rule.Expr, `job="eventserver"`) || !strings.Contains(rule.Expr, `{job="events",namespace="v6"`) {
			t.Errorf("%s does not use the selector of the values: %s", name, rule.Expr)
		}
	}
	if e := got["EventserverNodesFlapping"].Expr; !strings.Contains(e, "eventserver_presence_node_offline_max{") || !strings.HasSuffix(e, "> 9") {
		t.Errorf("EventserverNodesFlapping = %s, want the per-node gauge and threshold 9", e)
	}
	if e := got["EventserverAdapterDrops"].Expr; !strings.Contains(e, "[30m]") {
		t.Errorf("EventserverAdapterDrops = %s, want window 30m", e)
	}
	if p := got["EventserverPublishErrors"]; p.For != "10m" || p.Labels["severity"] != "critical" {
		t.Errorf("EventserverPublishErrors for %q labels %v", p.For, p.Labels)
	}
	if e := got["EventserverOutboxQueueFull"].Expr; !strings.HasSuffix(e, ">= 180") {
		t.Errorf("EventserverOutboxQueueFull = %s, want 0.9 of outbox.queueSize 200", e)
	}
	wantNone[corev1.ConfigMap](t, r, "ConfigMap (dashboards are off)")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// monitoring renders ci/monitoring-values.yaml and returns the dashboard
// (as the ConfigMap carries it) and the alerting rules.
func monitoring(t *testing.T) ([]byte, map[string]alertRule) {
	t.Helper()
	out, errOut, err := template(t, chartDir, []string{filepath.Join(chartDir, monitoringValues)}, nil)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, errOut)
	}
	r := newRendering(t, decode(t, out))
	cm := one[corev1.ConfigMap](t, r, "ConfigMap (Grafana dashboard)")
	return []byte(cm.Data[dashboardKey]), alerts(t, r)
}

// --- the dashboard ---

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// grafanaVars are Grafana's built-in interval variables, given a value so
// that the expression parses.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")

var dashboardVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// dashboardExprs checks the dashboard's shape and returns its PromQL: every
// target's expression and each query variable's metric selector, Grafana's
// variables substituted, keyed by where they come from.
func dashboardExprs(t *testing.T, b []byte) map[string]string {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if !json.Valid(b) || dec.More() {
		t.Fatal("the dashboard is not one JSON document")
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q uid %q: want both", d.Title, d.UID)
	}
	vars := map[string]bool{}
	exprs := map[string]string{}
	var hasDS, hasReplica bool
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch {
		case v.Type == "datasource":
			var q string
			_ = json.Unmarshal(v.Query, &q)
			hasDS = v.Name == "datasource" && q == "prometheus"
		case v.Type == "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s does not query ${datasource}: %+v", v.Name, v.Datasource)
			}
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil {
				_ = json.Unmarshal(v.Query, &q.Query)
			}
			m := regexp.MustCompile(`^label_values\((.+),\s*([a-z_]+)\)$`).FindStringSubmatch(q.Query)
			if m == nil {
				t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
				continue
			}
			exprs["variable "+v.Name] = m[1]
			if v.Name == "instance" || v.Name == "pod" {
				hasReplica = m[2] == v.Name
			}
		}
	}
	if !hasDS {
		t.Error(`no "datasource" variable of type datasource for prometheus`)
	}
	if !hasReplica {
		t.Error("no instance or pod variable over that label")
	}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v out of the 24 columns", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" || len(p.Targets) == 0 {
				t.Errorf("panel %d %q: want a title and at least one target", p.ID, p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if refs[tg.RefID] || tg.RefID == "" {
					t.Errorf("panel %q: refId %q empty or twice", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q target %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
				}
				exprs[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
			}
		}
	}
	walk(d.Panels)
	// Substitute Grafana's variables: built-in intervals get a duration,
	// the dashboard's own a regular expression (they are used with =~ only;
	// one used elsewhere fails to parse).
	for where, e := range exprs {
		e = grafanaVars.Replace(e)
		for _, m := range dashboardVar.FindAllStringSubmatch(e, -1) {
			if !vars[m[1]] {
				t.Errorf("%s uses $%s, which the dashboard does not define", where, m[1])
			}
		}
		exprs[where] = dashboardVar.ReplaceAllString(e, ".*")
	}
	return exprs
}

// metricNames parses each expression and returns the metric names it
// selects, with where each is used.
func metricNames(t *testing.T, exprs map[string]string) map[string][]string {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	used := map[string][]string{}
	for where, e := range exprs {
		ast, err := p.ParseExpr(e)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, e, err)
			continue
		}
		n := 0
		parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			if name == "" {
				t.Errorf("%s: a selector without a metric name: %s", where, vs)
				return nil
			}
			n++
			used[name] = append(used[name], where)
			return nil
		})
		if n == 0 {
			t.Errorf("%s: %q selects no metric", where, e)
		}
	}
	return used
}

// synthetic are the series Prometheus makes itself.
var synthetic = map[string]bool{"up": true}

// unexported lists the names used that the scrape does not have.
func unexported(used map[string][]string, exported map[string]bool) []string {
	var out []string
	for name, where := range used {
		if !exported[name] && !synthetic[name] {
			sort.Strings(where)
			out = append(out, fmt.Sprintf("%s (in %s)", name, strings.Join(where, "; ")))
		}
	}
	sort.Strings(out)
	return out
}

// exportedNames are the series names of a scrape: a histogram's _bucket,
// _sum and _count, a summary's own name with its _sum and _count.
func exportedNames(families map[string]*dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for name, mf := range families {
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

// dashboardCovers are metrics the dashboard must chart (issue 12's list).
var dashboardCovers = []string{
	"eventserver_connections", "eventserver_presence_transitions_total", "eventserver_presence_online_nodes",
	"eventserver_events_received_total", "eventserver_events_sent_total", "eventserver_events_refused_total",
	"eventserver_publish_requests_total", "eventserver_publish_request_duration_seconds_bucket",
	"eventserver_redis_adapter_messages_published_total", "eventserver_redis_adapter_messages_received_total",
	"eventserver_redis_adapter_messages_dropped_total", "eventserver_redis_adapter_subscribed", "up",
	"eventserver_presence_sweeps_total", "eventserver_presence_expirations_total", "eventserver_presence_refresh_duration_seconds_bucket",
	"eventserver_outbox_queue_length", "go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_count",
	"process_cpu_seconds_total", "process_resident_memory_bytes",
}

// TestDashboardAndRulesUseExportedMetrics: the dashboard is valid JSON of
// the expected shape, every expression of it and of the alert rules parses
// and names only metrics that a live server exports.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	helmBin(t)
	dash, rules := monitoring(t)
	exprs := dashboardExprs(t, dash)
	for name, r := range rules {
		exprs["alert "+name] = r.Expr
	}
	used := metricNames(t, exprs)
	for _, m := range dashboardCovers {
		if len(used[m]) == 0 {
			t.Errorf("the dashboard does not chart %s", m)
		}
	}
	exported := exportedNames(scrapeLiveServer(t))
	if bad := unexported(used, exported); len(bad) > 0 {
		t.Errorf("metrics that the server does not export (as a live /metrics shows):\n  %s", strings.Join(bad, "\n  "))
	}
}

// TestUnexportedCatchesMadeUpNames: the comparison reports a metric that no
// scrape has, whatever its suffix.
func TestUnexportedCatchesMadeUpNames(t *testing.T) {
	families, err := parseMetrics(strings.NewReader("# TYPE eventserver_connections gauge\neventserver_connections 1\n" +
		"# TYPE eventserver_x_seconds histogram\neventserver_x_seconds_bucket{le=\"+Inf\"} 1\neventserver_x_seconds_sum 1\neventserver_x_seconds_count 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	used := metricNames(t, map[string]string{
		"a": `sum(eventserver_connections) + sum(rate(eventserver_made_up_total[5m]))`,
		"b": `histogram_quantile(0.9, rate(eventserver_x_seconds_bucket[5m])) + up + eventserver_x_seconds`,
	})
	got := unexported(used, exportedNames(families))
	if len(got) != 2 || !strings.HasPrefix(got[0], "eventserver_made_up_total ") || !strings.HasPrefix(got[1], "eventserver_x_seconds ") {
		t.Errorf("unexported = %v, want the made-up counter and the histogram's bare name", got)
	}
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// --- the live server ---

const (
	livePublishToken = "live-publish-token-0123456789"
	liveJWTSecret    = "live-jwt-secret"
)

// scrapeLiveServer builds the binary as it ships (scripts/build.sh), runs
// it in cluster mode with every metric-bearing feature on, drives a little
// traffic so that the label values which only appear with use do appear,
// and returns its /metrics.
func scrapeLiveServer(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "eventserver")
	build := exec.Command("sh", "scripts/build.sh", bin)
	build.Dir = root
	build.Env = append(os.Environ(), "VERSION=monitoring-test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, out)
	}
	rs := redistest.Start(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	base := "http://" + addr
	prefix := fmt.Sprintf("monitoring-test-%d", time.Now().UnixNano())
	channel := prefix + "-flask-socketio"

	srv := exec.Command(bin)
	srv.Env = []string{
		"EVENTSERVER_LISTEN=" + addr,
		"EVENTSERVER_JWT_SECRET=" + liveJWTSecret,
		"EVENTSERVER_REDIS_URL=" + rs.URL(),
		"EVENTSERVER_REDIS_PREFIX=" + prefix,
		"EVENTSERVER_PUBLISH_TOKEN=" + livePublishToken,
		"EVENTSERVER_OUTBOX_STREAM=" + prefix + ":outbox",
		"EVENTSERVER_OUTBOX_WEBHOOK_URL=" + hook.URL + "/facts",
		// Collectors of the vantage6 API client register at start; it is
		// asked only when a client connects with a token to resolve.
		"EVENTSERVER_V6_API_URL=" + hook.URL + "/api",
		"EVENTSERVER_V6_QUEUE_CHANNEL=" + channel,
		"EVENTSERVER_SHUTDOWN_DELAY=0s",
		"EVENTSERVER_DRAIN_TIMEOUT=0s",
		"EVENTSERVER_LOG_LEVEL=warn",
	}
	var logs syncBuffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("eventserver's log:\n%s", logs.String())
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	testwait.For(t, 20*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("eventserver exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})

	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The publish API: an emit (202), a wrong token (401), the cluster's
	// sockets (a request to the other servers through Redis).
	if code, body := do("POST", "/api/v1/emit", livePublishToken, `{"event":"new_task","room":"collaboration_1","data":{"id":1}}`); code != http.StatusAccepted {
		t.Fatalf("emit: %d %s", code, body)
	}
	if code, _ := do("POST", "/api/v1/emit", "wrong-token", `{"event":"new_task"}`); code != http.StatusUnauthorized {
		t.Fatalf("emit with a wrong token: %d, want 401", code)
	}
	if code, body := do("GET", "/api/v1/sockets", livePublishToken, ""); code != http.StatusOK {
		t.Fatalf("sockets: %d %s", code, body)
	}
	// A Socket.IO client over long-polling: an invalid token, an event it
	// may not send, a close.
	code, open := do("GET", "/socket.io/?EIO=4&transport=polling", "", "")
	sid := regexp.MustCompile(`"sid":"([^"]+)"`).FindStringSubmatch(open)
	if code != http.StatusOK || sid == nil {
		t.Fatalf("Engine.IO handshake: %d %s", code, open)
	}
	session := "/socket.io/?EIO=4&transport=polling&sid=" + sid[1]
	for _, packet := range []string{`40/tasks,{"token":"not-a-jwt"}`, `42/tasks,["ping"]`, `1`} {
		if code, body := do("POST", session, "", packet); code != http.StatusOK {
			t.Fatalf("POST %q: %d %s", packet, code, body)
		}
	}
	// The vantage6 queue: one message, as python-socketio (5.14+) sends it.
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.Publish(ctx, channel, `{"method":"emit","event":"new_task","data":{"id":2},"namespace":"/tasks","room":"collaboration_1"}`).Err(); err != nil {
		t.Fatal(err)
	}

	// Wait until what the traffic makes is there.
	driven := []string{
		"eventserver_publish_requests_total", "eventserver_events_sent_total", "eventserver_events_received_total",
		"eventserver_events_refused_total", "eventserver_auth_failures_total", "eventserver_engineio_sessions_closed_total",
		"eventserver_redis_adapter_server_count", "eventserver_redis_adapter_request_duration_seconds", "eventserver_v6_queue_messages_total",
	}
	var families map[string]*dto.MetricFamily
	testwait.For(t, 10*time.Second, func() error {
		resp, err := client.Get(base + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		families, err = parseMetrics(resp.Body)
		if err != nil {
			return fmt.Errorf("/metrics does not parse: %w", err)
		}
		var missing []string
		for _, name := range driven {
			if mf := families[name]; mf == nil || len(mf.GetMetric()) == 0 {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not in /metrics yet: %v", missing)
		}
		return nil
	})
	return families
}

// syncBuffer is a bytes.Buffer that the process's output and the test may
// use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// --- the alerts, evaluated ---

// alertCase is one synthetic history (promtool's `load 1m` series notation,
// starting at 0) and whether the alert fires when it has been evaluated
// every minute up to `at`.
type alertCase struct {
	name   string
	series []string
	at     time.Duration
	fires  bool
}

// The rules select job="eventserver" in the release namespace (the
// ServiceMonitor's job label is the chart name).
const sel = `job="eventserver",namespace="vantage6"`

func alertCases(queueSize int) map[string][]alertCase {
	full, light := queueSize, queueSize/10
	return map[string][]alertCase{
		"EventserverReplicaDown": {
			{"a replica is down for 10 minutes", []string{`up{` + sel + `,instance="a"} 1x20`, `up{` + sel + `,instance="b"} 1x5 0x15`}, 15 * time.Minute, true},
			{"no replica is scraped at all", []string{`up{job="other",namespace="vantage6",instance="a"} 1x20`}, 10 * time.Minute, true},
			{"a replica restarts within a minute", []string{`up{` + sel + `,instance="a"} 1x5 0 1x14`}, 15 * time.Minute, false},
			{"every replica is up", []string{`up{` + sel + `,instance="a"} 1x20`, `up{` + sel + `,instance="b"} 1x20`}, 15 * time.Minute, false},
		},
		"EventserverRedisUnreachable": {
			{"subscriptions lost for 5 minutes", []string{`eventserver_redis_adapter_subscribed{` + sel + `,instance="a"} 1x3 0x5`}, 8 * time.Minute, true},
			{"one scrape without subscriptions", []string{`eventserver_redis_adapter_subscribed{` + sel + `,instance="a"} 1x3 0 1x5`}, 8 * time.Minute, false},
			{"subscribed all along", []string{`eventserver_redis_adapter_subscribed{` + sel + `,instance="a"} 1x10`}, 8 * time.Minute, false},
		},
		"EventserverAdapterDrops": {
			{"inbound queue full", []string{`eventserver_redis_adapter_messages_dropped_total{` + sel + `,instance="a",reason="inbound_queue_full"} 0x5 3x5`}, 8 * time.Minute, true},
			{"no drops", []string{`eventserver_redis_adapter_messages_dropped_total{` + sel + `,instance="a",reason="inbound_queue_full"} 0x10`}, 8 * time.Minute, false},
		},
		"EventserverNodesFlapping": {
			// Replica a recorded node 7's transitions, the last of them
			// counted with those b decided: the gauge climbs to 6.
			{"one node offline six times in ten minutes", []string{
				`eventserver_presence_node_offline_max{` + sel + `,instance="a"} 0 1 1 2 3 3 4 5 6 6 6`,
				`eventserver_presence_node_offline_max{` + sel + `,instance="b"} 0 0 1 1 1 2 2 2 2 2 2`,
			}, 10 * time.Minute, true},
			// Many nodes went offline once each (a network blip): no node flaps.
			{"forty nodes offline once each", []string{
				`eventserver_presence_node_offline_max{` + sel + `,instance="a"} 0 1x9`,
				`eventserver_presence_node_offline_max{` + sel + `,instance="b"} 0 1x9`,
				`eventserver_presence_transitions_total{` + sel + `,instance="a",kind="offline"} 0 20x9`,
				`eventserver_presence_transitions_total{` + sel + `,instance="b",kind="offline"} 0 20x9`,
			}, 10 * time.Minute, false},
		},
		"EventserverOutboxQueueFull": {
			{"the webhook's queue is full", []string{fmt.Sprintf(`eventserver_outbox_queue_length{`+sel+`,instance="a",sink="webhook"} 0 %d %dx10`, light, full)}, 10 * time.Minute, true},
			{"a short backlog", []string{fmt.Sprintf(`eventserver_outbox_queue_length{`+sel+`,instance="a",sink="webhook"} 0 %d %d 0x10`, full, full)}, 10 * time.Minute, false},
			{"a light load", []string{fmt.Sprintf(`eventserver_outbox_queue_length{`+sel+`,instance="a",sink="webhook"} %dx10`, light)}, 10 * time.Minute, false},
		},
		"EventserverOutboxDrops": {
			{"facts dropped", []string{`eventserver_outbox_dropped_total{` + sel + `,instance="a",sink="stream"} 0x3 5x5`}, 6 * time.Minute, true},
			{"nothing dropped", []string{`eventserver_outbox_dropped_total{` + sel + `,instance="a",sink="stream"} 0x10`}, 6 * time.Minute, false},
		},
		"EventserverPublishErrors": {
			{"a sixth of the requests fail", []string{
				`eventserver_publish_requests_total{` + sel + `,instance="a",status="202"} 0+100x20`,
				`eventserver_publish_requests_total{` + sel + `,instance="b",status="500"} 0+20x20`,
			}, 15 * time.Minute, true},
			{"one in a hundred fails", []string{
				`eventserver_publish_requests_total{` + sel + `,instance="a",status="202"} 0+100x20`,
				`eventserver_publish_requests_total{` + sel + `,instance="b",status="503"} 0+1x20`,
			}, 15 * time.Minute, false},
			{"client errors are not server errors", []string{
				`eventserver_publish_requests_total{` + sel + `,instance="a",status="202"} 0+100x20`,
				`eventserver_publish_requests_total{` + sel + `,instance="a",status="401"} 0+50x20`,
			}, 15 * time.Minute, false},
		},
	}
}

// TestAlertRules evaluates each alerting rule of the rendered chart over
// synthetic series, as `promtool test rules` does, with the rules package.
func TestAlertRules(t *testing.T) {
	helmBin(t)
	_, rendered := monitoring(t)
	var vals struct {
		Outbox struct{ QueueSize int }
	}
	b, err := os.ReadFile(filepath.Join(chartDir, monitoringValues))
	if err != nil {
		t.Fatal(err)
	}
	if err := sigsyaml.Unmarshal(b, &vals); err != nil || vals.Outbox.QueueSize < 10 {
		t.Fatalf("outbox.queueSize of %s: %v, %d", monitoringValues, err, vals.Outbox.QueueSize)
	}
	cases := alertCases(vals.Outbox.QueueSize)
	for name := range rendered {
		if !slices.ContainsFunc(cases[name], func(c alertCase) bool { return c.fires }) {
			t.Errorf("alert %s has no case that makes it fire", name)
		}
	}
	for name := range cases {
		if _, ok := rendered[name]; !ok {
			t.Errorf("cases for %s, which the chart does not render", name)
		}
	}
	p := parser.NewParser(parser.Options{})
	for name, rule := range rendered {
		for _, c := range cases[name] {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				expr, err := p.ParseExpr(rule.Expr)
				if err != nil {
					t.Fatalf("%s: %v", rule.Expr, err)
				}
				hold, err := model.ParseDuration(rule.For)
				if err != nil {
					t.Fatal(err)
				}
				storage := promqltest.LoadedStorage(t, "load 1m\n  "+strings.Join(c.series, "\n  "))
				engine := promqltest.NewTestEngine(t, false, 0, 1_000_000)
				ar := rules.NewAlertingRule(name, expr, time.Duration(hold), 0,
					labels.FromMap(rule.Labels), labels.FromMap(rule.Annotations), labels.EmptyLabels(), "", true,
					slog.New(slog.DiscardHandler))
				query := rules.EngineQueryFunc(engine, storage)
				start := time.Unix(0, 0).UTC()
				for at := time.Duration(0); at <= c.at; at += time.Minute {
					if _, err := ar.Eval(context.Background(), 0, start.Add(at), query, nil, 0); err != nil {
						t.Fatalf("at %s: %v", at, err)
					}
				}
				var firing []string
				for _, a := range ar.ActiveAlerts() {
					if a.State != rules.StateFiring {
						continue
					}
					firing = append(firing, a.Labels.String())
					a.Annotations.Range(func(an labels.Label) {
						if strings.Contains(an.Value, "error expanding") || strings.Contains(an.Value, "<no value>") || strings.Contains(an.Value, "{{") {
							t.Errorf("annotation %s does not expand: %s", an.Name, an.Value)
						}
					})
					if a.Labels.Get("severity") == "" || a.Labels.Get("alertname") != name {
						t.Errorf("alert labels %s lack severity or alertname", a.Labels)
					}
				}
				if fires := len(firing) > 0; fires != c.fires {
					t.Errorf("%s at %s: firing %v, want firing %v\nexpr: %s\nseries:\n  %s", c.name, c.at, firing, c.fires, rule.Expr, strings.Join(c.series, "\n  "))
				}
			})
		}
	}
}
