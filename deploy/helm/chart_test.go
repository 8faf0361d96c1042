// Package helm_test proves the Helm chart in deploy/helm/eventserver: it
// lints and renders the chart with helm, decodes every rendered object
// strictly into its Kubernetes API type, and checks what the objects mean
// (probes, graceful shutdown, pod security, settings, secrets, stickiness,
// Redis, the vantage6 API identity, the queue bridge, the backend outbox),
// that eventserver's own configuration code (config.Load and Validate)
// accepts the settings of every rendering, that misconfigurations are
// refused (and, where the server refuses them too, that it does), and that
// values.yaml is documented.
//
// helm is found through $HELM or PATH. Without it the tests are skipped, or
// fail when CI=true. Install it with
//
//	GOBIN=/tmp/helmbin go install helm.sh/helm/v3/cmd/helm@v3.22.0
//	export PATH=/tmp/helmbin:$PATH
package helm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/eventserver/eventserver/internal/config"
)

const (
	chartDir    = "eventserver"
	kubeVersion = "1.31.0"
	release     = "rel"
	namespace   = "vantage6"
	// The fixed part of terminationGracePeriodSeconds: eventserver exits at
	// most SHUTDOWN_DELAY + DRAIN_TIMEOUT + 10s after SIGTERM.
	exitMargin = 10 * time.Second
	// jwtSecretArg is the one value the default values need.
	jwtSecretArg = "auth.jwtSecret.value=test-jwt-secret-value"
)

// secretEnv are the settings that may hold a secret: they must come from a
// Secret through secretKeyRef, never from a plain value. Redis URLs may hold
// a password, and the webhook URL's query a secret.
var secretEnv = []string{
	"EVENTSERVER_JWT_SECRET", "EVENTSERVER_PUBLISH_TOKEN", "EVENTSERVER_REDIS_URL",
	"EVENTSERVER_V6_PASSWORD", "EVENTSERVER_V6_QUEUE_URL",
	"EVENTSERVER_OUTBOX_REDIS_URL", "EVENTSERVER_OUTBOX_WEBHOOK_URL", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN",
	"EVENTSERVER_CONSOLE_TOKEN",
}

// secretStrings are secret values used by the tests' values; none may appear
// in a plain env value or anywhere but a Secret.
var secretStrings = []string{
	"test-jwt-secret-value", "ci-jwt-secret-not-for-production", "ci-publish-token-0123456789", "ci-console-token-0123456789",
	v6PasswordValue, "queue-redis-password", "outbox-redis-password", "webhook-query-secret", webhookTokenValue, "rabbit-password",
}

// Secret values of the "vantage6 and outbox secrets as values" case.
const (
	v6PasswordValue   = "v6-service-account-password"
	v6QueueURLValue   = "redis://:queue-redis-password@v6-redis.vantage6.svc:6379/0"
	outboxRedisValue  = "rediss://:outbox-redis-password@outbox-redis.example.org:6380/2"
	webhookURLValue   = "https://backend.example.org/eventserver/facts?key=webhook-query-secret"
	webhookTokenValue = "webhook-bearer-token-value"
)

// v6Env are the settings of the vantage6 API identity, the queue bridge and
// the backend outbox: all off by default.
var v6Env = []string{
	"EVENTSERVER_V6_API_URL", "EVENTSERVER_V6_USERNAME", "EVENTSERVER_V6_PASSWORD", "EVENTSERVER_V6_TIMEOUT", "EVENTSERVER_V6_CACHE_TTL",
	"EVENTSERVER_V6_QUEUE_CHANNEL", "EVENTSERVER_V6_QUEUE_URL",
	"EVENTSERVER_OUTBOX_STREAM", "EVENTSERVER_OUTBOX_MAXLEN", "EVENTSERVER_OUTBOX_REDIS_URL", "EVENTSERVER_OUTBOX_QUEUE_SIZE",
	"EVENTSERVER_OUTBOX_WEBHOOK_URL", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN", "EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS", "EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT",
}

// placeholders stand in for the items of Secrets the chart does not create,
// when the rendered settings are given to the server's own configuration
// code (serverConfig). Each is a value the server accepts.
var placeholders = map[string]string{
	"EVENTSERVER_JWT_SECRET":           "placeholder-jwt-secret",
	"EVENTSERVER_PUBLISH_TOKEN":        "placeholder-publish-token-0123456789",
	"EVENTSERVER_CONSOLE_TOKEN":        "placeholder-console-token-0123456789",
	"EVENTSERVER_REDIS_URL":            "redis://redis.placeholder:6379/0",
	"EVENTSERVER_V6_PASSWORD":          "placeholder-password",
	"EVENTSERVER_V6_QUEUE_URL":         "redis://v6-redis.placeholder:6379/0",
	"EVENTSERVER_OUTBOX_REDIS_URL":     "redis://outbox-redis.placeholder:6379/0",
	"EVENTSERVER_OUTBOX_WEBHOOK_URL":   "https://hooks.placeholder.example/facts?key=k",
	"EVENTSERVER_OUTBOX_WEBHOOK_TOKEN": "placeholder-webhook-token",
}

// helmBin returns the helm binary, or skips the test (fails it with CI=true).
func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err != nil {
			t.Fatalf("HELM=%s: %v", h, err)
		}
		return h
	}
	h, err := exec.LookPath("helm")
	if err == nil {
		return h
	}
	msg := "helm not found on PATH (nor $HELM): install it with `GOBIN=/tmp/helmbin go install helm.sh/helm/v3/cmd/helm@v3.22.0` and add /tmp/helmbin to PATH, or set HELM=/path/to/helm"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// runHelm runs helm with its own empty home, so that no user configuration
// or repository cache is read or written.
func runHelm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig"),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// valueArgs turns a case's values files and --set pairs into helm flags.
func valueArgs(files, sets []string) []string {
	var args []string
	for _, f := range files {
		args = append(args, "--values", f)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return args
}

func template(t *testing.T, chart string, files, sets []string, extra ...string) (string, string, error) {
	t.Helper()
	args := append([]string{"template", release, chart, "--namespace", namespace, "--kube-version", kubeVersion}, extra...)
	return runHelm(t, append(args, valueArgs(files, sets)...)...)
}

// --- rendering and strict decoding ---

// object is one rendered Kubernetes object, decoded into its API type.
type object struct {
	source string // "# Source:" of the document
	kind   string // apiVersion/kind
	obj    any    // *appsv1.Deployment, *corev1.Service, ...
}

// serviceMonitor holds the fields of monitoring.coreos.com/v1 ServiceMonitor
// that the chart sets; decoding is strict, so any other field fails.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string `json:"jobLabel,omitempty"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port              string           `json:"port"`
			Path              string           `json:"path"`
			Scheme            string           `json:"scheme,omitempty"`
			Interval          string           `json:"interval,omitempty"`
			ScrapeTimeout     string           `json:"scrapeTimeout,omitempty"`
			Relabelings       []map[string]any `json:"relabelings,omitempty"`
			MetricRelabelings []map[string]any `json:"metricRelabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// kinds are the objects the chart may render. Any other kind fails the test.
var kinds = map[string]func() any{
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"networking.k8s.io/v1/Ingress":            func() any { return &networkingv1.Ingress{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &serviceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &prometheusRule{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)
var sourceLine = regexp.MustCompile(`(?m)^# Source: (.*)$`)

// decode splits helm's output into documents and decodes each strictly.
func decode(t *testing.T, out string) []object {
	t.Helper()
	var objs []object
	for _, doc := range docSep.Split(out, -1) {
		src := ""
		if m := sourceLine.FindStringSubmatch(doc); m != nil {
			src = m[1]
		}
		var generic map[string]any
		if err := sigsyaml.Unmarshal([]byte(doc), &generic); err != nil {
			t.Fatalf("%s: not YAML: %v\n%s", src, err, doc)
		}
		if len(generic) == 0 {
			continue // comments only
		}
		var tm metav1.TypeMeta
		if err := sigsyaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		kind := tm.APIVersion + "/" + tm.Kind
		newObj, ok := kinds[kind]
		if !ok {
			t.Fatalf("%s: unexpected kind %s (add it to the test's kinds with its Go type)", src, kind)
		}
		obj := newObj()
		if err := sigsyaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %s does not decode strictly: %v\n%s", src, kind, err, doc)
		}
		// encoding/json matches field names case-insensitively and drops
		// nothing it cannot place; re-encode and compare, so that a
		// misspelt case or a lost value fails too.
		back, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		var again map[string]any
		if err := json.Unmarshal(back, &again); err != nil {
			t.Fatal(err)
		}
		if diff := diffJSON("", normalize(generic), normalize(again)); diff != "" {
			t.Fatalf("%s: %s does not survive a round trip through its Go type (misspelt or dropped field?):\n%s", src, kind, diff)
		}
		objs = append(objs, object{source: src, kind: kind, obj: obj})
	}
	if len(objs) == 0 {
		t.Fatal("helm rendered nothing")
	}
	return objs
}

// normalize makes YAML-decoded and JSON-decoded values comparable.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// diffJSON lists the paths where a (the rendered YAML) and b (the re-encoded
// object) differ. Creation timestamps that the Go types add are ignored.
func diffJSON(at string, a, b any) string {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %v became %v\n", at, a, b)
		}
		var out strings.Builder
		keys := map[string]bool{}
		for k := range a {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			av, inA := a[k]
			bv, inB := bm[k]
			switch {
			case !inA && isEmpty(bv):
			case !inA:
				out.WriteString(fmt.Sprintf("%s.%s: added %v\n", at, k, bv))
			case !inB:
				out.WriteString(fmt.Sprintf("%s.%s: %v was dropped\n", at, k, av))
			default:
				out.WriteString(diffJSON(at+"."+k, av, bv))
			}
		}
		return out.String()
	case []any:
		bs, ok := b.([]any)
		if !ok || len(bs) != len(a) {
			return fmt.Sprintf("%s: %v became %v\n", at, a, b)
		}
		var out strings.Builder
		for i := range a {
			out.WriteString(diffJSON(fmt.Sprintf("%s[%d]", at, i), a[i], bs[i]))
		}
		return out.String()
	default:
		if !reflect.DeepEqual(a, b) {
			return fmt.Sprintf("%s: %v became %v\n", at, a, b)
		}
		return ""
	}
}

// isEmpty reports the zero values that Go types add for fields without
// omitempty (status: {}, a PodDisruptionBudget's status counters, ...). A
// misspelt field still fails: its original spelling is reported dropped.
func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case float64:
		return v == 0
	case string:
		return v == ""
	case map[string]any:
		for _, x := range v {
			if !isEmpty(x) {
				return false
			}
		}
		return true
	}
	return false
}

// all returns the rendered objects of type T.
func all[T any](objs []object) []*T {
	var out []*T
	for _, o := range objs {
		if x, ok := o.obj.(*T); ok {
			out = append(out, x)
		}
	}
	return out
}

// --- the settings eventserver reads ---

// settingNames lists every EVENTSERVER_* variable eventserver reads, from the
// same table that the README carries (config.Markdown).
func settingNames(t *testing.T) map[string]bool {
	t.Helper()
	var table bytes.Buffer
	config.Markdown(&table)
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(EVENTSERVER_[A-Z0-9_]+)` \\|").FindAllStringSubmatch(table.String(), -1) {
		names[m[1]] = true
	}
	if len(names) < 10 || !names["EVENTSERVER_REDIS_URL"] || !names["EVENTSERVER_DRAIN_TIMEOUT"] {
		t.Fatalf("could not read the settings table of internal/config:\n%s", table.String())
	}
	return names
}

// --- the cases ---

type renderCase struct {
	name  string
	files []string // values files, relative to the chart
	sets  []string // --set pairs
	extra []string // more helm template flags
	check func(t *testing.T, r *rendering)
}

// rendering is one rendered chart with its eventserver workload found.
type rendering struct {
	objs      []object
	deploy    *appsv1.Deployment // the eventserver Deployment
	container *corev1.Container  // the eventserver container
	env       map[string]corev1.EnvVar
}

func renderCases() []renderCase {
	return []renderCase{
		{
			name: "defaults",
			sets: []string{jwtSecretArg},
			check: func(t *testing.T, r *rendering) {
				if got := deref(r.deploy.Spec.Replicas); got != 1 {
					t.Errorf("replicas = %d, want 1", got)
				}
				wantNone[networkingv1.Ingress](t, r, "Ingress")
				wantNone[autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler")
				wantNone[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget (one pod)")
				wantNone[serviceMonitor](t, r, "ServiceMonitor")
				wantNone[prometheusRule](t, r, "PrometheusRule")
				wantNone[corev1.ConfigMap](t, r, "ConfigMap (Grafana dashboard)")
				for _, name := range append([]string{"EVENTSERVER_REDIS_URL", "EVENTSERVER_PUBLISH_TOKEN", "EVENTSERVER_JWT_PUBLIC_KEY_FILE"}, v6Env...) {
					if _, ok := r.env[name]; ok {
						t.Errorf("%s is set by default", name)
					}
				}
				if got := deref(r.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds); got != 35 {
					t.Errorf("terminationGracePeriodSeconds = %d, want 35 (5 preStop + 5 delay + 10 drain + 10 + 5 margin)", got)
				}
				ps := r.deploy.Spec.Template.Spec
				if ps.Affinity == nil || ps.Affinity.PodAntiAffinity == nil || len(ps.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
					t.Errorf("want a preferred pod anti-affinity by default, got %+v", ps.Affinity)
				}
				if len(ps.TopologySpreadConstraints) != 1 || ps.TopologySpreadConstraints[0].WhenUnsatisfiable != corev1.ScheduleAnyway {
					t.Errorf("want one ScheduleAnyway topology spread constraint by default, got %+v", ps.TopologySpreadConstraints)
				}
				res := r.container.Resources
				if res.Requests.Cpu().IsZero() || res.Requests.Memory().IsZero() || res.Limits.Memory().IsZero() {
					t.Errorf("want cpu and memory requests and a memory limit by default, got %+v", res)
				}
				if r.deploy.Spec.Template.Spec.Containers[0].StartupProbe != nil {
					t.Error("startup probe is on by default")
				}
				if r.deploy.Spec.Template.Spec.AutomountServiceAccountToken == nil || *r.deploy.Spec.Template.Spec.AutomountServiceAccountToken {
					t.Error("the service account token is mounted; eventserver does not use the API")
				}
				if got := r.container.Image; got != "eventserver/eventserver:0.1.0" {
					t.Errorf("image = %q, want eventserver/eventserver:<appVersion>", got)
				}
			},
		},
		{
			name: "defaults with ingress",
			sets: []string{jwtSecretArg, "ingress.enabled=true", "ingress.hosts[0]=events.example.org"},
			check: func(t *testing.T, r *rendering) {
				ing := one[networkingv1.Ingress](t, r, "Ingress")
				wantNginxAffinity(t, ing)
				if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
					t.Errorf("ingressClassName = %v, want nginx", ing.Spec.IngressClassName)
				}
			},
		},
		{
			name:  "ci/minimal",
			files: []string{"ci/minimal-values.yaml"},
			check: func(t *testing.T, r *rendering) {
				sec := chartSecret(t, r)
				for _, k := range []string{"jwt-secret", "publish-token"} {
					if len(sec.Data[k]) == 0 {
						t.Errorf("chart Secret lacks %s", k)
					}
				}
				if got := string(sec.Data["publish-token"]); got != "ci-publish-token-0123456789" {
					t.Errorf("publish-token = %q", got)
				}
				wantNone[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget (one pod)")
			},
		},
		{
			name:  "ci/cluster-external-redis",
			files: []string{"ci/cluster-external-redis-values.yaml"},
			check: func(t *testing.T, r *rendering) {
				wantNone[corev1.Secret](t, r, "Secret (every secret is external)")
				if _, ok := r.deploy.Spec.Template.Annotations["checksum/secret"]; ok {
					t.Error("checksum/secret without a chart-created Secret")
				}
				wantSecretRef(t, r, "EVENTSERVER_REDIS_URL", "eventserver-redis", "url")
				wantSecretRef(t, r, "EVENTSERVER_PUBLISH_TOKEN", "eventserver-publish", "token")
				if got := r.env["EVENTSERVER_REDIS_SUBSCRIPTION_MODE"].Value; got != "dynamic" {
					t.Errorf("EVENTSERVER_REDIS_SUBSCRIPTION_MODE = %q, want dynamic", got)
				}
				if mode := serverConfig(t, r).RedisSubscriptionMode; mode != "dynamic" {
					t.Errorf("the server reads subscription mode %q, want dynamic", mode)
				}
				if _, ok := r.env["EVENTSERVER_JWT_SECRET"]; ok {
					t.Error("EVENTSERVER_JWT_SECRET set though only a public key is configured")
				}
				vol := publicKeyVolume(t, r)
				if vol.Secret.SecretName != "eventserver-jwt" || len(vol.Secret.Items) != 1 || vol.Secret.Items[0].Key != "public.pem" {
					t.Errorf("public key volume = %+v, want secret eventserver-jwt key public.pem", vol.Secret)
				}
				hpa := one[autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler")
				if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 12 || len(hpa.Spec.Metrics) != 2 {
					t.Errorf("HPA spec = %+v", hpa.Spec)
				}
				pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
				if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 || pdb.Spec.MaxUnavailable != nil {
					t.Errorf("PDB spec = %+v, want minAvailable 2 only", pdb.Spec)
				}
				sm := one[serviceMonitor](t, r, "ServiceMonitor")
				if sm.Namespace != "monitoring" || sm.Labels["release"] != "kube-prometheus-stack" || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
					t.Errorf("ServiceMonitor namespace %q labels %v namespaceSelector %v", sm.Namespace, sm.Labels, sm.Spec.NamespaceSelector)
				}
				ing := one[networkingv1.Ingress](t, r, "Ingress")
				wantNginxAffinity(t, ing)
				if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "events-example-org-tls" {
					t.Errorf("Ingress TLS = %+v", ing.Spec.TLS)
				}
				if got := r.env["EVENTSERVER_CORS_ORIGINS"].Value; got != "https://portal.example.org,https://admin.example.org" {
					t.Errorf("EVENTSERVER_CORS_ORIGINS = %q", got)
				}
				if got := r.env["EVENTSERVER_PRESENCE_STALE"].Value; got != "90s" {
					t.Errorf("EVENTSERVER_PRESENCE_STALE = %q, want extraEnv's 90s to win", got)
				}
				if got := deref(r.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds); got != 90 {
					t.Errorf("terminationGracePeriodSeconds = %d, want the explicit 90", got)
				}
				if sp := r.container.StartupProbe; sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != "/healthz" {
					t.Errorf("startup probe = %+v, want GET /healthz", sp)
				}
				if !strings.HasPrefix(r.container.Image, "eventserver/eventserver@sha256:") {
					t.Errorf("image = %q, want the digest", r.container.Image)
				}
				aa := r.deploy.Spec.Template.Spec.Affinity
				if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
					t.Errorf("podAntiAffinityPreset hard: affinity = %+v", aa)
				}
			},
		},
		{
			name:  "ci/in-chart-redis-traefik",
			files: []string{"ci/in-chart-redis-traefik-values.yaml"},
			check: func(t *testing.T, r *rendering) {
				if got := deref(r.deploy.Spec.Replicas); got != 2 {
					t.Errorf("replicas = %d, want 2", got)
				}
				redisName := release + "-eventserver-redis"
				var redis *appsv1.Deployment
				for _, d := range all[appsv1.Deployment](r.objs) {
					if d.Name == redisName {
						redis = d
					}
				}
				if redis == nil {
					t.Fatalf("no in-chart Redis Deployment %s", redisName)
				}
				rc := redis.Spec.Template.Spec.Containers[0]
				if rc.Image != "redis:7-alpine" {
					t.Errorf("redis image = %q", rc.Image)
				}
				if u := effectiveUser(redis.Spec.Template.Spec, rc); u != 999 {
					t.Errorf("redis runs as uid %d, want 999", u)
				}
				var redisSvc *corev1.Service
				for _, s := range all[corev1.Service](r.objs) {
					if s.Name == redisName {
						redisSvc = s
					}
				}
				if redisSvc == nil || !selects(redisSvc.Spec.Selector, redis.Spec.Template.Labels) || selects(redisSvc.Spec.Selector, r.deploy.Spec.Template.Labels) {
					t.Errorf("the Redis Service must select the Redis pod only: %+v", redisSvc)
				}
				np := one[networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
				if sel, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); !sel.Matches(labels.Set(redis.Spec.Template.Labels)) {
					t.Error("the NetworkPolicy does not protect the Redis pod")
				}
				if from := np.Spec.Ingress[0].From[0].PodSelector; from == nil || !selects(from.MatchLabels, r.deploy.Spec.Template.Labels) {
					t.Error("the NetworkPolicy does not let eventserver in")
				}
				sec := chartSecret(t, r)
				wantSecretRef(t, r, "EVENTSERVER_REDIS_URL", sec.Name, "redis-url")
				if got, want := string(sec.Data["redis-url"]), "redis://"+redisName+":6379/0"; got != want {
					t.Errorf("redis-url = %q, want %q", got, want)
				}
				vol := publicKeyVolume(t, r)
				if vol.Secret.SecretName != sec.Name || len(sec.Data[vol.Secret.Items[0].Key]) == 0 {
					t.Errorf("public key volume %+v does not point at the chart Secret's PEM", vol.Secret)
				}
				if _, ok := r.env["EVENTSERVER_JWT_SECRET"]; !ok {
					t.Error("EVENTSERVER_JWT_SECRET missing though both key kinds are configured")
				}
				svc := eventserverService(t, r)
				if svc.Annotations["traefik.ingress.kubernetes.io/service.sticky.cookie"] != "true" {
					t.Errorf("Service annotations = %v, want Traefik sticky cookie", svc.Annotations)
				}
				if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP || svc.Spec.SessionAffinityConfig == nil {
					t.Errorf("Service sessionAffinity = %q", svc.Spec.SessionAffinity)
				}
				ing := one[networkingv1.Ingress](t, r, "Ingress")
				for k := range ing.Annotations {
					if strings.HasPrefix(k, "nginx.ingress.kubernetes.io/") {
						t.Errorf("Ingress keeps %s though the values unset it", k)
					}
				}
				pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
				if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
					t.Errorf("PDB = %+v, want maxUnavailable 1", pdb.Spec)
				}
				if a := r.deploy.Spec.Template.Spec.Affinity; a != nil {
					t.Errorf("podAntiAffinityPreset none: affinity = %+v", a)
				}
			},
		},
		{
			name:  "ci/in-front-of-vantage6",
			files: []string{"ci/in-front-of-vantage6-values.yaml"},
			check: func(t *testing.T, r *rendering) {
				wantNone[corev1.Secret](t, r, "Secret (every secret is external)")
				wantSecretRef(t, r, "EVENTSERVER_JWT_SECRET", "vantage6-server", "jwt-secret-key")
				wantSecretRef(t, r, "EVENTSERVER_REDIS_URL", "eventserver-redis", "url")
				wantSecretRef(t, r, "EVENTSERVER_V6_PASSWORD", "eventserver-v6-service-account", "password")
				wantSecretRef(t, r, "EVENTSERVER_OUTBOX_WEBHOOK_URL", "eventserver-outbox-webhook", "url")
				wantSecretRef(t, r, "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN", "eventserver-outbox-webhook", "token")
				wantValues(t, r, map[string]string{
					"EVENTSERVER_V6_API_URL":              "https://v6.example.org/api",
					"EVENTSERVER_V6_TIMEOUT":              "3s",
					"EVENTSERVER_V6_CACHE_TTL":            "1m",
					"EVENTSERVER_V6_USERNAME":             "eventserver-service",
					"EVENTSERVER_V6_QUEUE_CHANNEL":        "flask-socketio",
					"EVENTSERVER_OUTBOX_STREAM":           "eventserver:outbox",
					"EVENTSERVER_OUTBOX_MAXLEN":           "1000000", // not 1e+06
					"EVENTSERVER_OUTBOX_QUEUE_SIZE":       "20000",
					"EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS": "8",
					"EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT":  "2s",
				})
				// The queue and the stream use the cluster's Redis.
				for _, name := range []string{"EVENTSERVER_V6_QUEUE_URL", "EVENTSERVER_OUTBOX_REDIS_URL"} {
					if e, ok := r.env[name]; ok {
						t.Errorf("%s = %+v, want it unset (the cluster's Redis)", name, e)
					}
				}
				cfg := serverConfig(t, r)
				if cfg.V6APIURL != "https://v6.example.org/api" || cfg.V6Username != "eventserver-service" || cfg.V6Password == "" ||
					cfg.V6Timeout != 3*time.Second || cfg.V6CacheTTL != time.Minute || cfg.V6QueueChannel != "flask-socketio" ||
					cfg.OutboxStream != "eventserver:outbox" || cfg.OutboxMaxLen != 1000000 || cfg.OutboxQueueSize != 20000 ||
					cfg.OutboxWebhookURL == "" || cfg.OutboxWebhookToken == "" || cfg.OutboxWebhookAttempts != 8 || cfg.OutboxWebhookTimeout != 2*time.Second {
					t.Errorf("the server reads %+v", cfg)
				}
				ing := one[networkingv1.Ingress](t, r, "Ingress")
				if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "v6.example.org" || ing.Spec.Rules[0].HTTP.Paths[0].Path != "/socket.io/" {
					t.Errorf("Ingress rules = %+v, want /socket.io/ of v6.example.org", ing.Spec.Rules)
				}
			},
		},
		{
			name:  "ci/in-front-of-vantage6-5",
			files: []string{"ci/in-front-of-vantage6-5-values.yaml"},
			check: func(t *testing.T, r *rendering) {
				wantNone[corev1.Secret](t, r, "Secret (every secret is external)")
				wantSecretRef(t, r, "EVENTSERVER_V6_PASSWORD", "eventserver-keycloak-client", "secret")
				wantSecretRef(t, r, "EVENTSERVER_V6_QUEUE_URL", "vantage6-rabbitmq", "uri")
				wantValues(t, r, map[string]string{
					"EVENTSERVER_JWT_JWKS_URL":     "https://keycloak.example.org/realms/vantage6/protocol/openid-connect/certs",
					"EVENTSERVER_JWT_ISSUER":       "https://keycloak.example.org/realms/vantage6",
					"EVENTSERVER_JWT_AUDIENCE":     "vantage6",
					"EVENTSERVER_V6_API_URL":       "https://hq.example.org/api",
					"EVENTSERVER_V6_VERSION":       "5",
					"EVENTSERVER_V6_TOKEN_URL":     "https://keycloak.example.org/realms/vantage6/protocol/openid-connect/token",
					"EVENTSERVER_V6_USERNAME":      "eventserver",
					"EVENTSERVER_V6_QUEUE_CHANNEL": "flask-socketio",
				})
				if e, ok := r.env["EVENTSERVER_JWT_SECRET"]; ok {
					t.Errorf("EVENTSERVER_JWT_SECRET = %+v, want it unset (Keycloak's keys only)", e)
				}
				cfg := serverConfig(t, r)
				if cfg.JWTJWKSURL == "" || cfg.JWTIssuer != "https://keycloak.example.org/realms/vantage6" || cfg.JWTAudience != "vantage6" ||
					cfg.V6Version != "5" || cfg.V6TokenURL == "" || cfg.V6Password == "" || cfg.V6QueueURL == "" {
					t.Errorf("the server reads %+v", cfg)
				}
			},
		},
		{
			// One pod without a cluster Redis: the queue and the stream have
			// their own, and every new secret is a value in the chart's Secret.
			name: "vantage6 and outbox secrets as values",
			sets: []string{jwtSecretArg,
				"vantage6.api.url=http://vantage6-server.vantage6.svc:7601/api",
				"vantage6.api.cacheTTL=0s",
				"vantage6.api.serviceAccount.username=eventserver",
				"vantage6.api.serviceAccount.password.value=" + v6PasswordValue,
				"vantage6.queue.channel=flask-socketio",
				"vantage6.queue.url.value=" + v6QueueURLValue,
				"outbox.stream=eventserver:outbox",
				"outbox.redisUrl.value=" + outboxRedisValue,
				"outbox.webhook.url.value=" + webhookURLValue,
				"outbox.webhook.token.value=" + webhookTokenValue,
			},
			check: func(t *testing.T, r *rendering) {
				if _, ok := r.env["EVENTSERVER_REDIS_URL"]; ok {
					t.Error("EVENTSERVER_REDIS_URL is set without a cluster Redis")
				}
				sec := chartSecret(t, r)
				for env, want := range map[string]struct{ key, value string }{
					"EVENTSERVER_V6_PASSWORD":          {"v6-password", v6PasswordValue},
					"EVENTSERVER_V6_QUEUE_URL":         {"v6-queue-url", v6QueueURLValue},
					"EVENTSERVER_OUTBOX_REDIS_URL":     {"outbox-redis-url", outboxRedisValue},
					"EVENTSERVER_OUTBOX_WEBHOOK_URL":   {"outbox-webhook-url", webhookURLValue},
					"EVENTSERVER_OUTBOX_WEBHOOK_TOKEN": {"outbox-webhook-token", webhookTokenValue},
				} {
					wantSecretRef(t, r, env, sec.Name, want.key)
					if got := string(sec.Data[want.key]); got != want.value {
						t.Errorf("Secret %s[%s] = %q, want %q", sec.Name, want.key, got, want.value)
					}
				}
				// The defaults of values.yaml are passed along with the features.
				wantValues(t, r, map[string]string{
					"EVENTSERVER_V6_API_URL":              "http://vantage6-server.vantage6.svc:7601/api",
					"EVENTSERVER_V6_USERNAME":             "eventserver",
					"EVENTSERVER_V6_TIMEOUT":              "5s",
					"EVENTSERVER_V6_CACHE_TTL":            "0s",
					"EVENTSERVER_OUTBOX_MAXLEN":           "100000",
					"EVENTSERVER_OUTBOX_QUEUE_SIZE":       "10000",
					"EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS": "5",
					"EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT":  "5s",
				})
				cfg := serverConfig(t, r)
				if cfg.V6Password != v6PasswordValue || cfg.V6QueueURL != v6QueueURLValue || cfg.OutboxRedisURL != outboxRedisValue ||
					cfg.OutboxWebhookURL != webhookURLValue || cfg.OutboxWebhookToken != webhookTokenValue || cfg.V6CacheTTL != 0 || cfg.RedisURL != "" {
					t.Errorf("the server reads %+v", cfg)
				}
			},
		},
		{
			// The webhook needs no Redis; without a stream, nothing of the
			// stream is passed.
			name: "outbox webhook only",
			sets: []string{jwtSecretArg, "outbox.webhook.url.existingSecret=backend-hook", "outbox.maxLen=5", "outbox.queueSize=7", "outbox.webhook.attempts=1"},
			check: func(t *testing.T, r *rendering) {
				wantSecretRef(t, r, "EVENTSERVER_OUTBOX_WEBHOOK_URL", "backend-hook", "outbox-webhook-url")
				wantValues(t, r, map[string]string{"EVENTSERVER_OUTBOX_QUEUE_SIZE": "7", "EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS": "1"})
				for _, name := range []string{"EVENTSERVER_OUTBOX_STREAM", "EVENTSERVER_OUTBOX_MAXLEN", "EVENTSERVER_OUTBOX_REDIS_URL", "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN", "EVENTSERVER_REDIS_URL"} {
					if _, ok := r.env[name]; ok {
						t.Errorf("%s is set with a webhook only", name)
					}
				}
			},
		},
		{
			// The API without a service account, and the queue on the
			// in-chart Redis: both valid for the server.
			name: "vantage6 API without a service account, queue on the in-chart Redis",
			sets: []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api", "vantage6.queue.channel=flask-socketio", "redis.enabled=true"},
			check: func(t *testing.T, r *rendering) {
				wantValues(t, r, map[string]string{"EVENTSERVER_V6_API_URL": "https://v6.example.org/api", "EVENTSERVER_V6_QUEUE_CHANNEL": "flask-socketio"})
				for _, name := range []string{"EVENTSERVER_V6_USERNAME", "EVENTSERVER_V6_PASSWORD", "EVENTSERVER_V6_QUEUE_URL"} {
					if _, ok := r.env[name]; ok {
						t.Errorf("%s is set", name)
					}
				}
				if cfg := serverConfig(t, r); cfg.V6QueueURL != "" || cfg.RedisURL == "" {
					t.Errorf("the queue must fall back to the cluster's Redis: %+v", cfg)
				}
			},
		},
		{
			name:  "ci/monitoring",
			files: []string{"ci/monitoring-values.yaml"},
			check: checkMonitoring,
		},
		{
			name: "alert rules with a custom selector, thresholds and some alerts off",
			sets: []string{jwtSecretArg, "prometheus.rules.enabled=true", `prometheus.rules.selector=job="events"\,namespace="v6"`,
				"prometheus.rules.replicaDown.enabled=false", "prometheus.rules.nodeFlapping.threshold=9", "prometheus.rules.adapterDrops.window=30m",
				"prometheus.rules.publishErrors.for=10m", "prometheus.rules.publishErrors.severity=critical", "outbox.webhook.url.existingSecret=hook", "outbox.queueSize=200"},
			check: checkCustomRules,
		},
		{
			name:  "oldest supported Kubernetes",
			sets:  []string{jwtSecretArg},
			extra: []string{"--kube-version", "1.30.0"},
			check: func(t *testing.T, r *rendering) {},
		},
		{
			name: "boundary grace period",
			// 5 + 5 + 10 + 10 = 30 is the least; 31 must be accepted.
			sets: []string{jwtSecretArg, "terminationGracePeriodSeconds=31"},
			check: func(t *testing.T, r *rendering) {
				if got := deref(r.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds); got != 31 {
					t.Errorf("terminationGracePeriodSeconds = %d, want 31", got)
				}
			},
		},
	}
}

// TestRender renders every case, decodes every object strictly and checks
// what the chart promises.
func TestRender(t *testing.T) {
	helmBin(t)
	names := settingNames(t)
	cases := renderCases()
	// Every values file in ci/ has its case.
	ciFiles, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if len(ciFiles) < 3 {
		t.Fatalf("want at least 3 values files in %s/ci, found %v", chartDir, ciFiles)
	}
	for _, f := range ciFiles {
		rel, _ := filepath.Rel(chartDir, f)
		if !slices.ContainsFunc(cases, func(c renderCase) bool { return slices.Contains(c.files, filepath.ToSlash(rel)) }) {
			t.Errorf("%s has no case in TestRender", f)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			files := make([]string, len(c.files))
			for i, f := range c.files {
				files[i] = filepath.Join(chartDir, f)
			}
			out, errOut, err := template(t, chartDir, files, c.sets, c.extra...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, errOut)
			}
			r := newRendering(t, decode(t, out))
			checkCommon(t, r, names)
			c.check(t, r)
		})
	}
}

func newRendering(t *testing.T, objs []object) *rendering {
	t.Helper()
	r := &rendering{objs: objs, env: map[string]corev1.EnvVar{}}
	for _, d := range all[appsv1.Deployment](objs) {
		if d.Labels["app.kubernetes.io/component"] == "eventserver" {
			if r.deploy != nil {
				t.Fatal("two eventserver Deployments")
			}
			r.deploy = d
		}
	}
	if r.deploy == nil {
		t.Fatal("no eventserver Deployment")
	}
	for i := range r.deploy.Spec.Template.Spec.Containers {
		if c := &r.deploy.Spec.Template.Spec.Containers[i]; c.Name == "eventserver" {
			r.container = c
		}
	}
	if r.container == nil {
		t.Fatal("no eventserver container")
	}
	for _, e := range r.container.Env {
		if _, dup := r.env[e.Name]; dup {
			t.Errorf("env %s is set twice", e.Name)
		}
		r.env[e.Name] = e
	}
	return r
}

// checkCommon holds for every rendering.
func checkCommon(t *testing.T, r *rendering, settings map[string]bool) {
	pod := r.deploy.Spec.Template.Spec
	c := r.container

	// Selectors select their own pods only.
	for _, d := range all[appsv1.Deployment](r.objs) {
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: selector %v does not match its pods %v", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
		}
		if d != r.deploy && selects(r.deploy.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("the eventserver selector also matches the pods of %s", d.Name)
		}
	}

	// The port, and the probes on it.
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 7600 {
		t.Errorf("ports = %+v, want one named http on 7600", c.Ports)
	}
	wantHTTPProbe(t, "readiness", c.ReadinessProbe, "/readyz")
	wantHTTPProbe(t, "liveness", c.LivenessProbe, "/healthz")
	if c.StartupProbe != nil {
		wantHTTPProbe(t, "startup", c.StartupProbe, "/healthz")
	}

	// Rolling update that never lowers capacity.
	st := r.deploy.Spec.Strategy
	if st.Type != appsv1.RollingUpdateDeploymentStrategyType || st.RollingUpdate == nil ||
		st.RollingUpdate.MaxUnavailable == nil || st.RollingUpdate.MaxUnavailable.IntValue() != 0 ||
		st.RollingUpdate.MaxSurge == nil || st.RollingUpdate.MaxSurge.IntValue() != 1 {
		t.Errorf("strategy = %+v, want RollingUpdate maxUnavailable 0 maxSurge 1", st)
	}

	// Graceful shutdown: preStop sleep, then SIGTERM, then at most
	// SHUTDOWN_DELAY + DRAIN_TIMEOUT + 10s.
	var preStop time.Duration
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Errorf("want a preStop sleep action, got %+v", c.Lifecycle)
	} else {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if c.Lifecycle.PreStop.Exec != nil || c.Lifecycle.PreStop.HTTPGet != nil {
			t.Error("the preStop hook must only sleep (the image has no shell)")
		}
	}
	delay := envDuration(t, r, "EVENTSERVER_SHUTDOWN_DELAY")
	drain := envDuration(t, r, "EVENTSERVER_DRAIN_TIMEOUT")
	grace := time.Duration(deref(pod.TerminationGracePeriodSeconds)) * time.Second
	if need := preStop + delay + drain + exitMargin; grace <= need {
		t.Errorf("terminationGracePeriodSeconds %s is not more than preStop %s + shutdown delay %s + drain %s + %s = %s", grace, preStop, delay, drain, exitMargin, need)
	}

	// Pod security: restricted, on every container of every workload.
	for _, d := range all[appsv1.Deployment](r.objs) {
		wantRestricted(t, d.Name, d.Spec.Template.Spec)
	}
	if u := effectiveUser(pod, *c); u != 65532 {
		t.Errorf("eventserver runs as uid %d, want 65532", u)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != 65532 {
		t.Error("want fsGroup 65532 on the eventserver pod")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("service links are on: they add EVENTSERVER_SERVICE_* variables next to the settings")
	}

	// Settings: every EVENTSERVER_* name is one eventserver reads.
	for _, e := range c.Env {
		if !settings[e.Name] {
			t.Errorf("env %s is not an eventserver setting (see the README's settings table)", e.Name)
		}
	}
	if e := r.env["EVENTSERVER_LISTEN"]; e.Value != ":7600" {
		t.Errorf("EVENTSERVER_LISTEN = %q, want :7600 (the container port)", e.Value)
	}
	if e, ok := r.env["EVENTSERVER_INSTANCE_ID"]; !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("EVENTSERVER_INSTANCE_ID = %+v, want the pod name (downward API)", e)
	}
	_, secret := r.env["EVENTSERVER_JWT_SECRET"]
	_, pem := r.env["EVENTSERVER_JWT_PUBLIC_KEY_FILE"]
	_, jwks := r.env["EVENTSERVER_JWT_JWKS_URL"]
	if !secret && !pem && !jwks {
		t.Error("none of EVENTSERVER_JWT_SECRET, EVENTSERVER_JWT_PUBLIC_KEY_FILE and EVENTSERVER_JWT_JWKS_URL: the server would not start")
	}
	if _, ok := r.env["EVENTSERVER_JWT_PUBLIC_KEY_FILE"]; ok {
		publicKeyVolume(t, r)
	}

	// Secrets reach the pod through secretKeyRef only, and a chart-created
	// Secret that is referenced holds the key.
	secrets := map[string]*corev1.Secret{}
	for _, s := range all[corev1.Secret](r.objs) {
		secrets[s.Name] = s
	}
	for _, name := range secretEnv {
		e, ok := r.env[name]
		if !ok {
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s must come from a Secret through secretKeyRef, got %+v", name, e)
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if s, ok := secrets[ref.Name]; ok && len(s.Data[ref.Key]) == 0 {
			t.Errorf("%s refers to key %q that the chart's Secret %s lacks", name, ref.Key, ref.Name)
		}
	}
	for _, o := range r.objs {
		if _, isSecret := o.obj.(*corev1.Secret); isSecret {
			continue
		}
		b, _ := json.Marshal(o.obj)
		for _, s := range secretStrings {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s (%s) contains a secret value", o.kind, o.source)
			}
		}
	}
	// Every item of a chart-created Secret is used by the pod (a key that
	// the Secret and the Deployment spell differently fails here or above).
	for _, s := range secrets {
		for key := range s.Data {
			used := false
			for _, e := range c.Env {
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Name == s.Name && ref.SecretKeyRef.Key == key {
					used = true
				}
			}
			for _, v := range pod.Volumes {
				if v.Secret != nil && v.Secret.SecretName == s.Name && slices.ContainsFunc(v.Secret.Items, func(i corev1.KeyToPath) bool { return i.Key == key }) {
					used = true
				}
			}
			if !used {
				t.Errorf("item %s of the chart's Secret %s is used by no env or volume", key, s.Name)
			}
		}
	}
	if len(secrets) > 0 {
		if r.deploy.Spec.Template.Annotations["checksum/secret"] == "" {
			t.Error("a chart-created Secret but no checksum/secret annotation: pods would not roll when it changes")
		}
	}

	// The server's own configuration code accepts what the pod gets.
	serverConfig(t, r)

	// Several pods: HPA without replicas, Redis, and a PDB.
	hpas := all[autoscalingv2.HorizontalPodAutoscaler](r.objs)
	if len(hpas) > 0 {
		if r.deploy.Spec.Replicas != nil {
			t.Errorf("replicas = %d with an HPA: the HPA and helm upgrades would fight", *r.deploy.Spec.Replicas)
		}
		ref := hpas[0].Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != r.deploy.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("HPA targets %+v", ref)
		}
	} else if r.deploy.Spec.Replicas == nil {
		t.Error("no replicas field and no HPA")
	}
	if len(hpas) > 0 || deref(r.deploy.Spec.Replicas) > 1 {
		if _, ok := r.env["EVENTSERVER_REDIS_URL"]; !ok {
			t.Error("several pods without EVENTSERVER_REDIS_URL")
		}
		pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
		if pdb != nil && (pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, r.deploy.Spec.Template.Labels)) {
			t.Error("the PodDisruptionBudget does not select the eventserver pods")
		}
	}

	// The Service, and what points at it.
	svc := eventserverService(t, r)
	if svc != nil {
		if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].TargetPort.String() != "http" {
			t.Errorf("Service spec = %+v, want ClusterIP with port http -> http", svc.Spec)
		}
		for _, ing := range all[networkingv1.Ingress](r.objs) {
			for _, rule := range ing.Spec.Rules {
				for _, p := range rule.HTTP.Paths {
					if b := p.Backend.Service; b == nil || b.Name != svc.Name || b.Port.Name != "http" {
						t.Errorf("Ingress backend %+v, want service %s port http", p.Backend, svc.Name)
					}
				}
			}
		}
		for _, sm := range all[serviceMonitor](r.objs) {
			if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) {
				t.Error("the ServiceMonitor does not select the eventserver Service")
			}
			if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
				t.Errorf("ServiceMonitor endpoints = %+v, want port http path /metrics", sm.Spec.Endpoints)
			}
		}
	}

	// Images carry no registry host.
	for _, d := range all[appsv1.Deployment](r.objs) {
		for _, ct := range append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...) {
			if first, _, ok := strings.Cut(ct.Image, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
				t.Errorf("%s: image %q names a registry host", d.Name, ct.Image)
			}
		}
	}
}

func wantHTTPProbe(t *testing.T, what string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe = %+v, want GET %s", what, p, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
		t.Errorf("%s probe GET %s on port %s, want %s on http", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

// wantRestricted checks the Pod Security Standard "restricted" on every container.
func wantRestricted(t *testing.T, name string, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: host namespaces", name)
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s/%s: no securityContext", name, c.Name)
			continue
		}
		nonRoot := psc.RunAsNonRoot
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if nonRoot == nil || !*nonRoot {
			t.Errorf("%s/%s: runAsNonRoot is not true", name, c.Name)
		}
		if effectiveUser(pod, c) <= 0 {
			t.Errorf("%s/%s: no non-zero runAsUser", name, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s/%s: allowPrivilegeEscalation is not false", name, c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s/%s: privileged", name, c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: readOnlyRootFilesystem is not true", name, c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s/%s: capabilities must drop ALL and add none, got %+v", name, c.Name, sc.Capabilities)
		}
		seccomp := psc.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s/%s: seccompProfile is not RuntimeDefault", name, c.Name)
		}
	}
}

func effectiveUser(pod corev1.PodSpec, c corev1.Container) int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return *c.SecurityContext.RunAsUser
	}
	if pod.SecurityContext != nil && pod.SecurityContext.RunAsUser != nil {
		return *pod.SecurityContext.RunAsUser
	}
	return -1
}

func envDuration(t *testing.T, r *rendering, name string) time.Duration {
	t.Helper()
	e, ok := r.env[name]
	if !ok {
		t.Errorf("%s is not set; the grace period is computed from it", name)
		return 0
	}
	d, err := time.ParseDuration(e.Value)
	if err != nil {
		t.Errorf("%s = %q: %v", name, e.Value, err)
	}
	return d
}

// publicKeyVolume checks that EVENTSERVER_JWT_PUBLIC_KEY_FILE is a file of a
// Secret volume and returns that volume.
func publicKeyVolume(t *testing.T, r *rendering) corev1.Volume {
	t.Helper()
	file := r.env["EVENTSERVER_JWT_PUBLIC_KEY_FILE"].Value
	if file == "" {
		t.Fatal("EVENTSERVER_JWT_PUBLIC_KEY_FILE is not set")
	}
	dir, base := path.Split(file)
	for _, m := range r.container.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for _, v := range r.deploy.Spec.Template.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil || len(v.Secret.Items) != 1 || v.Secret.Items[0].Path != base {
				t.Fatalf("volume %s must be a Secret volume with one item at %s, got %+v", v.Name, base, v.VolumeSource)
			}
			if !m.ReadOnly {
				t.Errorf("mount %s is not read-only", m.Name)
			}
			return v
		}
	}
	t.Fatalf("EVENTSERVER_JWT_PUBLIC_KEY_FILE=%s is on no mounted volume", file)
	return corev1.Volume{}
}

func wantSecretRef(t *testing.T, r *rendering, env, secret, key string) {
	t.Helper()
	e := r.env[env]
	if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secret || e.ValueFrom.SecretKeyRef.Key != key {
		t.Errorf("%s = %+v, want secretKeyRef %s/%s", env, e, secret, key)
	}
}

// wantValues checks settings that must be plain values (not from a Secret).
func wantValues(t *testing.T, r *rendering, want map[string]string) {
	t.Helper()
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		e, ok := r.env[name]
		if !ok || e.ValueFrom != nil || e.Value != want[name] {
			t.Errorf("%s = %+v, want the value %q", name, e, want[name])
		}
	}
}

// serverConfig gives the rendered settings to the server's own
// configuration code (config.Load, then Validate) as the pod would get them:
// plain values as they are, items of the chart's Secret as it stores them,
// items of other Secrets as placeholders, the public key file as a
// temporary file. The server must accept them.
func serverConfig(t *testing.T, r *rendering) *config.Config {
	t.Helper()
	secrets := map[string]*corev1.Secret{}
	for _, s := range all[corev1.Secret](r.objs) {
		secrets[s.Name] = s
	}
	env := map[string]string{}
	for _, e := range r.container.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "pod-0"
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if s, ok := secrets[ref.Name]; ok {
				env[e.Name] = string(s.Data[ref.Key])
			} else if p, ok := placeholders[e.Name]; ok {
				env[e.Name] = p
			} else {
				t.Errorf("%s comes from Secret %s, which the chart does not create, and the test's placeholders lack it", e.Name, ref.Name)
			}
		default:
			t.Errorf("%s: unexpected source %+v", e.Name, e.ValueFrom)
		}
	}
	if env["EVENTSERVER_JWT_PUBLIC_KEY_FILE"] != "" {
		f := filepath.Join(t.TempDir(), "public-key.pem")
		if err := os.WriteFile(f, []byte("placeholder"), 0o600); err != nil {
			t.Fatal(err)
		}
		env["EVENTSERVER_JWT_PUBLIC_KEY_FILE"] = f
	}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("eventserver would refuse to start with the rendered settings: %v", err)
	}
	return cfg
}

func wantNginxAffinity(t *testing.T, ing *networkingv1.Ingress) {
	t.Helper()
	if ing == nil {
		return
	}
	for k, v := range map[string]string{
		"nginx.ingress.kubernetes.io/affinity":            "cookie",
		"nginx.ingress.kubernetes.io/affinity-mode":       "persistent",
		"nginx.ingress.kubernetes.io/session-cookie-name": "eventserver-affinity",
		"nginx.ingress.kubernetes.io/session-cookie-path": "/",
	} {
		if got := ing.Annotations[k]; got != v {
			t.Errorf("Ingress annotation %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"nginx.ingress.kubernetes.io/session-cookie-max-age", "nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"} {
		var n int
		if _, err := fmt.Sscan(ing.Annotations[k], &n); err != nil || n < 60 {
			t.Errorf("Ingress annotation %s = %q, want at least 60 seconds", k, ing.Annotations[k])
		}
	}
}

func chartSecret(t *testing.T, r *rendering) *corev1.Secret {
	t.Helper()
	return one[corev1.Secret](t, r, "Secret")
}

func eventserverService(t *testing.T, r *rendering) *corev1.Service {
	t.Helper()
	var found *corev1.Service
	for _, s := range all[corev1.Service](r.objs) {
		if selects(s.Spec.Selector, r.deploy.Spec.Template.Labels) {
			if found != nil {
				t.Error("two Services select the eventserver pods")
			}
			found = s
		}
	}
	if found == nil {
		t.Error("no Service selects the eventserver pods")
	}
	return found
}

func one[T any](t *testing.T, r *rendering, what string) *T {
	t.Helper()
	xs := all[T](r.objs)
	if len(xs) != 1 {
		t.Fatalf("want one %s, got %d", what, len(xs))
	}
	return xs[0]
}

func wantNone[T any](t *testing.T, r *rendering, what string) {
	t.Helper()
	if n := len(all[T](r.objs)); n != 0 {
		t.Errorf("want no %s, got %d", what, n)
	}
}

// selects reports whether a non-empty selector matches the labels.
func selects(selector, lbls map[string]string) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(lbls))
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// --- refusals ---

// TestRefusals: configurations that would give a broken or unsafe
// deployment make helm template fail with a message that says why.
func TestRefusals(t *testing.T) {
	helmBin(t)
	for _, c := range []struct {
		name  string
		sets  []string
		want  string
		extra []string
		// binary, when set, is the environment the server would get
		// without the chart (plus a JWT secret): it must refuse it too,
		// so that the chart refuses nothing the server accepts.
		binary []string
	}{
		{"no JWT key", nil, "no key to verify client tokens", nil, nil},
		{"JWK Set over http", []string{"auth.jwks.url=http://keycloak.example.org/certs"}, "auth.jwks.url must be an https URL", nil,
			[]string{"EVENTSERVER_JWT_JWKS_URL=http://keycloak.example.org/certs"}},
		{"both Redis kinds", []string{jwtSecretArg, "redis.enabled=true", "redis.url=redis://redis.example:6379/0"}, "both the in-chart Redis (redis.enabled) and an external Redis", nil, nil},
		{"both Redis kinds, existing secret", []string{jwtSecretArg, "redis.enabled=true", "redis.existingSecret=redis"}, "both the in-chart Redis (redis.enabled) and an external Redis", nil, nil},
		{"grace period too small", []string{jwtSecretArg, "terminationGracePeriodSeconds=30"}, "terminationGracePeriodSeconds (30) is too small", nil, nil},
		{"grace period too small for a longer drain", []string{jwtSecretArg, "terminationGracePeriodSeconds=60", "shutdown.drainTimeoutSeconds=60"}, "terminationGracePeriodSeconds (60) is too small", nil, nil},
		{"several replicas without Redis", []string{jwtSecretArg, "replicaCount=3"}, "need Redis", nil, nil},
		{"autoscaling without Redis", []string{jwtSecretArg, "autoscaling.enabled=true"}, "need Redis", nil, nil},
		{"short publish token", []string{jwtSecretArg, "auth.publishToken.value=short"}, "at least 16 characters", nil, nil},
		{"short console token", []string{jwtSecretArg, "auth.consoleToken.value=short"}, "auth.consoleToken.value must be at least 16 characters", nil, nil},
		{"console token equal to the publish token", []string{jwtSecretArg, "auth.publishToken.value=same-token-0123456789", "auth.consoleToken.value=same-token-0123456789"}, "must differ from auth.publishToken.value", nil, nil},
		{"console token as value and existing Secret", []string{jwtSecretArg, "auth.consoleToken.value=ci-console-token-0123456789", "auth.consoleToken.existingSecret=x"}, "auth.consoleToken: set either value or existingSecret", nil, nil},
		{"value and existing secret", []string{jwtSecretArg, "auth.jwtSecret.existingSecret=jwt"}, "auth.jwtSecret: set either value or existingSecret", nil, nil},
		{"extraEnv overriding the drain", []string{jwtSecretArg, "extraEnv[0].name=EVENTSERVER_DRAIN_TIMEOUT", "extraEnv[0].value=1h"}, "extraEnv must not set EVENTSERVER_DRAIN_TIMEOUT", nil, nil},
		{"ingress without hosts", []string{jwtSecretArg, "ingress.enabled=true"}, "ingress.enabled needs at least one host", nil, nil},
		{"alert duration without a unit", []string{jwtSecretArg, "prometheus.rules.enabled=true", "prometheus.rules.redisUnreachable.for=60"}, "prometheus.rules.redisUnreachable.for must be a Prometheus duration", nil, nil},
		{"alert window of Go's syntax", []string{jwtSecretArg, "prometheus.rules.enabled=true", "prometheus.rules.adapterDrops.window=1m30s5ms0.5s"}, "prometheus.rules.adapterDrops.window must be a Prometheus duration", nil, nil},
		{"alert threshold not a number", []string{jwtSecretArg, "prometheus.rules.enabled=true", "prometheus.rules.adapterDrops.threshold=many"}, "prometheus.rules.adapterDrops.threshold must be a number", nil, nil},
		{"dashboard without a sidecar label", []string{jwtSecretArg, "grafana.dashboards.enabled=true", "grafana.dashboards.label="}, "grafana.dashboards.label must name the label", nil, nil},
		// The preStop sleep action needs Kubernetes 1.30.
		{"Kubernetes 1.29", []string{jwtSecretArg}, "chart requires kubeVersion", []string{"--kube-version", "1.29.0"}, nil},

		// The vantage6 API identity: what config.Validate refuses.
		{name: "service account username without password",
			sets:   []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api", "vantage6.api.serviceAccount.username=svc"},
			want:   "vantage6.api.serviceAccount.username is set but the password is not",
			binary: []string{"EVENTSERVER_V6_API_URL=https://v6.example.org/api", "EVENTSERVER_V6_USERNAME=svc"}},
		{name: "service account password without username",
			sets:   []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api", "vantage6.api.serviceAccount.password.existingSecret=v6-account"},
			want:   "vantage6.api.serviceAccount.password is set but the username is not",
			binary: []string{"EVENTSERVER_V6_API_URL=https://v6.example.org/api", "EVENTSERVER_V6_PASSWORD=pw"}},
		{name: "service account without API URL",
			sets:   []string{jwtSecretArg, "vantage6.api.serviceAccount.username=svc", "vantage6.api.serviceAccount.password.value=pw"},
			want:   "vantage6.api.serviceAccount needs vantage6.api.url",
			binary: []string{"EVENTSERVER_V6_USERNAME=svc", "EVENTSERVER_V6_PASSWORD=pw"}},
		{name: "service account password value and existing secret",
			sets: []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api", "vantage6.api.serviceAccount.username=svc", "vantage6.api.serviceAccount.password.value=pw", "vantage6.api.serviceAccount.password.existingSecret=v6-account"},
			want: "vantage6.api.serviceAccount.password: set either value or existingSecret, not both"},
		{name: "API URL with user information",
			sets:   []string{jwtSecretArg, "vantage6.api.url=https://svc:pw@v6.example.org/api"},
			want:   "vantage6.api.url must be the vantage6 API's http or https base URL",
			binary: []string{"EVENTSERVER_V6_API_URL=https://svc:pw@v6.example.org/api"}},
		{name: "API URL with a query",
			sets:   []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api?x=1"},
			want:   "vantage6.api.url must be the vantage6 API's http or https base URL",
			binary: []string{"EVENTSERVER_V6_API_URL=https://v6.example.org/api?x=1"}},
		{name: "API URL without a scheme",
			sets:   []string{jwtSecretArg, "vantage6.api.url=v6.example.org/api"},
			want:   "vantage6.api.url must be the vantage6 API's http or https base URL",
			binary: []string{"EVENTSERVER_V6_API_URL=v6.example.org/api"}},
		{name: "API timeout without a unit",
			sets:   []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api", "vantage6.api.timeout=5"},
			want:   "vantage6.api.timeout must be a Go duration",
			binary: []string{"EVENTSERVER_V6_API_URL=https://v6.example.org/api", "EVENTSERVER_V6_TIMEOUT=5"}},
		{name: "negative cache TTL",
			sets:   []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api", "vantage6.api.cacheTTL=-1s"},
			want:   "vantage6.api.cacheTTL must be a Go duration",
			binary: []string{"EVENTSERVER_V6_API_URL=https://v6.example.org/api", "EVENTSERVER_V6_CACHE_TTL=-1s"}},

		// The Flask-SocketIO queue bridge.
		{name: "queue channel without any Redis",
			sets:   []string{jwtSecretArg, "vantage6.queue.channel=flask-socketio"},
			want:   "vantage6.queue.channel needs a message queue",
			binary: []string{"EVENTSERVER_V6_QUEUE_CHANNEL=flask-socketio"}},
		{name: "queue channel with a pattern",
			sets:   []string{jwtSecretArg, "redis.enabled=true", "vantage6.queue.channel=flask-*"},
			want:   "vantage6.queue.channel must be a channel name",
			binary: []string{"EVENTSERVER_REDIS_URL=redis://r:6379/0", "EVENTSERVER_V6_QUEUE_CHANNEL=flask-*"}},
		{name: "queue URL of neither RabbitMQ nor Redis",
			sets:   []string{jwtSecretArg, "vantage6.queue.channel=flask-socketio", "vantage6.queue.url.value=http://guest:rabbit-password@rabbitmq:15672"},
			want:   "vantage6.queue.url.value must be an amqp://",
			binary: []string{"EVENTSERVER_V6_QUEUE_CHANNEL=flask-socketio", "EVENTSERVER_V6_QUEUE_URL=http://guest:rabbit-password@rabbitmq:15672"}},
		{name: "queue URL value and existing secret",
			sets: []string{jwtSecretArg, "vantage6.queue.channel=flask-socketio", "vantage6.queue.url.value=redis://r:6379/0", "vantage6.queue.url.existingSecret=v6-queue"},
			want: "vantage6.queue.url: set either value or existingSecret, not both"},
		// The server ignores a queue URL without a channel; the chart refuses
		// it, as the bridge the user meant would be off.
		{name: "queue URL without channel",
			sets: []string{jwtSecretArg, "vantage6.queue.url.existingSecret=v6-queue"},
			want: "vantage6.queue.url is set but vantage6.queue.channel is empty"},

		// The backend outbox.
		{name: "outbox stream without any Redis",
			sets:   []string{jwtSecretArg, "outbox.stream=eventserver:outbox"},
			want:   "outbox.stream needs a Redis",
			binary: []string{"EVENTSERVER_OUTBOX_STREAM=eventserver:outbox"}},
		{name: "outbox Redis URL without stream",
			sets:   []string{jwtSecretArg, "outbox.redisUrl.value=redis://outbox:6379/0"},
			want:   "outbox.redisUrl is set but outbox.stream is empty",
			binary: []string{"EVENTSERVER_OUTBOX_REDIS_URL=redis://outbox:6379/0"}},
		{name: "outbox Redis URL from an existing secret without stream",
			sets:   []string{jwtSecretArg, "outbox.redisUrl.existingSecret=outbox-redis"},
			want:   "outbox.redisUrl is set but outbox.stream is empty",
			binary: []string{"EVENTSERVER_OUTBOX_REDIS_URL=redis://outbox:6379/0"}},
		{name: "outbox stream with a space",
			sets:   []string{jwtSecretArg, "redis.enabled=true", "outbox.stream=event server"},
			want:   "outbox.stream must be a Redis key without spaces",
			binary: []string{"EVENTSERVER_REDIS_URL=redis://r:6379/0", "EVENTSERVER_OUTBOX_STREAM=event server"}},
		{name: "outbox Redis URL of another scheme",
			sets:   []string{jwtSecretArg, "outbox.stream=s", "outbox.redisUrl.value=http://outbox:6379"},
			want:   "outbox.redisUrl.value must be a redis://",
			binary: []string{"EVENTSERVER_OUTBOX_STREAM=s", "EVENTSERVER_OUTBOX_REDIS_URL=http://outbox:6379"}},
		{name: "webhook token without URL",
			sets:   []string{jwtSecretArg, "outbox.webhook.token.value=tok"},
			want:   "outbox.webhook.token is set but outbox.webhook.url is not",
			binary: []string{"EVENTSERVER_OUTBOX_WEBHOOK_TOKEN=tok"}},
		{name: "webhook token from an existing secret without URL",
			sets:   []string{jwtSecretArg, "outbox.webhook.token.existingSecret=hook"},
			want:   "outbox.webhook.token is set but outbox.webhook.url is not",
			binary: []string{"EVENTSERVER_OUTBOX_WEBHOOK_TOKEN=tok"}},
		{name: "webhook URL with user information",
			sets:   []string{jwtSecretArg, "outbox.webhook.url.value=https://user:webhook-query-secret@backend.example.org/facts"},
			want:   "outbox.webhook.url.value must be an http or https URL",
			binary: []string{"EVENTSERVER_OUTBOX_WEBHOOK_URL=https://user:webhook-query-secret@backend.example.org/facts"}},
		{name: "webhook URL with a fragment",
			sets:   []string{jwtSecretArg, "outbox.webhook.url.value=https://backend.example.org/facts#webhook-query-secret"},
			want:   "outbox.webhook.url.value must be an http or https URL",
			binary: []string{"EVENTSERVER_OUTBOX_WEBHOOK_URL=https://backend.example.org/facts#webhook-query-secret"}},
		{name: "webhook token value and existing secret",
			sets: []string{jwtSecretArg, "outbox.webhook.url.value=https://backend.example.org/facts", "outbox.webhook.token.value=tok", "outbox.webhook.token.existingSecret=hook"},
			want: "outbox.webhook.token: set either value or existingSecret, not both"},
		{name: "no webhook attempts",
			sets:   []string{jwtSecretArg, "outbox.webhook.url.value=https://backend.example.org/facts", "outbox.webhook.attempts=0"},
			want:   "outbox.webhook.attempts must be a whole number from 1 to 100",
			binary: []string{"EVENTSERVER_OUTBOX_WEBHOOK_URL=https://backend.example.org/facts", "EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS=0"}},
		{name: "fractional queue size",
			sets:   []string{jwtSecretArg, "outbox.webhook.url.value=https://backend.example.org/facts", "outbox.queueSize=2.5"},
			want:   "outbox.queueSize must be a whole number from 1 to 10000000",
			binary: []string{"EVENTSERVER_OUTBOX_WEBHOOK_URL=https://backend.example.org/facts", "EVENTSERVER_OUTBOX_QUEUE_SIZE=2.5"}},
		{name: "stream length beyond the server's bound",
			sets:   []string{jwtSecretArg, "redis.enabled=true", "outbox.stream=s", "outbox.maxLen=2147483648"},
			want:   "outbox.maxLen must be a whole number from 1 to 2147483647",
			binary: []string{"EVENTSERVER_REDIS_URL=redis://r:6379/0", "EVENTSERVER_OUTBOX_STREAM=s", "EVENTSERVER_OUTBOX_MAXLEN=2147483648"}},
		{name: "webhook timeout without a unit",
			sets:   []string{jwtSecretArg, "outbox.webhook.url.value=https://backend.example.org/facts", "outbox.webhook.timeout=30"},
			want:   "outbox.webhook.timeout must be a Go duration",
			binary: []string{"EVENTSERVER_OUTBOX_WEBHOOK_URL=https://backend.example.org/facts", "EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT=30"}},
		{name: "extraEnv setting a vantage6 secret",
			sets: []string{jwtSecretArg, "extraEnv[0].name=EVENTSERVER_V6_PASSWORD", "extraEnv[0].value=pw"},
			want: "extraEnv must not set EVENTSERVER_V6_PASSWORD: the chart sets it from vantage6.api.serviceAccount.password"},
		{name: "extraEnv setting the outbox stream",
			sets: []string{jwtSecretArg, "extraEnv[0].name=EVENTSERVER_OUTBOX_STREAM", "extraEnv[0].value=s"},
			want: "extraEnv must not set EVENTSERVER_OUTBOX_STREAM: the chart sets it from outbox.stream"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, err := template(t, chartDir, nil, c.sets, c.extra...)
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("helm template succeeded (err %v), want a refusal with %q; it rendered:\n%.2000s", err, c.want, out)
			}
			if !strings.Contains(errOut, c.want) {
				t.Fatalf("helm template failed without %q:\n%s", c.want, errOut)
			}
			// A refusal never repeats a secret value.
			for _, s := range secretStrings {
				if strings.Contains(errOut, s) {
					t.Errorf("the refusal repeats the secret %q:\n%s", s, errOut)
				}
			}
			if c.binary != nil {
				env := map[string]string{"EVENTSERVER_JWT_SECRET": "a-jwt-secret"}
				for _, kv := range c.binary {
					k, v, _ := strings.Cut(kv, "=")
					env[k] = v
				}
				cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
				if err == nil {
					err = cfg.Validate()
				}
				if err == nil {
					t.Errorf("the chart refuses this but eventserver accepts %v", c.binary)
				}
			}
		})
	}
}

// --- lint ---

// TestLint runs helm lint --strict with the default values (plus the JWT key
// they need) and with every values file of ci/. helm lint reports a
// template's fail() only as [INFO], so such lines fail the test too.
func TestLint(t *testing.T) {
	helmBin(t)
	cases := map[string][]string{"defaults": {"--set", jwtSecretArg}}
	ciFiles, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	for _, f := range ciFiles {
		cases[filepath.Base(f)] = []string{"--values", f}
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, errOut, err := runHelm(t, append([]string{"lint", chartDir, "--strict", "--kube-version", kubeVersion}, args...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s%s", err, out, errOut)
			}
			for _, line := range strings.Split(out+errOut, "\n") {
				if strings.Contains(line, "[WARNING]") || strings.Contains(line, "[ERROR]") || strings.Contains(line, "Fail:") {
					t.Errorf("helm lint: %s", line)
				}
			}
		})
	}
}

// --- NOTES.txt ---

// TestNotes renders NOTES.txt (helm template renders but does not print it)
// through a copy of the chart that includes it in a YAML document.
func TestNotes(t *testing.T) {
	helmBin(t)
	chart := filepath.Join(t.TempDir(), chartDir)
	if err := os.CopyFS(chart, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	probe := "{{- define \"notesprobe\" -}}\n" + string(notes) + "\n{{- end }}\n"
	if err := os.WriteFile(filepath.Join(chart, "templates", "_notesprobe.tpl"), []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chart, "templates", "notesprobe.yaml"), []byte("notes: {{ include \"notesprobe\" . | toJson }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		files     []string
		sets      []string
		want, not []string
	}{
		{"defaults", nil, []string{jwtSecretArg},
			[]string{"port-forward service/" + release + "-eventserver 7600:7600", "sticky sessions", "publish API (/api/v1/*) is OFF"},
			[]string{"WARNING", "vantage6 API identity", "queue bridge", "Backend outbox"}},
		{"in front of vantage6", []string{"ci/in-front-of-vantage6-values.yaml"}, nil,
			[]string{
				"vantage6 API identity: ON, who a client is comes from https://v6.example.org/api, with the service account \"eventserver-service\".",
				"vantage6 queue bridge: ON, channel \"flask-socketio\" on the cluster's Redis",
				"Backend outbox: ON, stream \"eventserver:outbox\" on the cluster's Redis, webhook with a bearer token.",
			},
			[]string{"WARNING", "without a service account"}},
		{"vantage6 secrets as values", nil, []string{jwtSecretArg, "vantage6.api.url=https://v6.example.org/api", "vantage6.queue.channel=flask-socketio", "vantage6.queue.url.value=" + v6QueueURLValue, "outbox.stream=s", "outbox.redisUrl.value=" + outboxRedisValue},
			[]string{"without a service account", "channel \"flask-socketio\" on vantage6.queue.url", "Backend outbox: ON, stream \"s\" on outbox.redisUrl."},
			[]string{"WARNING", "webhook"}},
		{"queue bridge on the in-chart Redis", nil, []string{jwtSecretArg, "redis.enabled=true", "vantage6.queue.channel=flask-socketio", "outbox.webhook.url.existingSecret=hook"},
			[]string{"WARNING: the in-chart Redis admits only eventserver pods", "Backend outbox: ON, webhook."},
			[]string{"vantage6 API identity"}},
		{"minimal", []string{"ci/minimal-values.yaml"}, nil,
			[]string{"get secret " + release + "-eventserver", "{.data.publish-token}", "base64 -d"}, nil},
		{"cluster", []string{"ci/cluster-external-redis-values.yaml"}, nil,
			[]string{"https://events.example.org/", "get secret eventserver-publish", "{.data.token}", "ingress-nginx"}, []string{"WARNING"}},
		{"several pods without a sticky path", nil, []string{jwtSecretArg, "replicaCount=2", "redis.url=redis://redis:6379/0"},
			[]string{"WARNING: there are several pods"}, nil},
		{"traefik with nginx annotations", nil, []string{jwtSecretArg, "replicaCount=2", "redis.enabled=true", "ingress.enabled=true", "ingress.className=traefik", "ingress.hosts[0]=e.example.org"},
			[]string{"WARNING: ingress.className is \"traefik\""}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			files := make([]string, len(c.files))
			for i, f := range c.files {
				files[i] = filepath.Join(chart, f)
			}
			out, errOut, err := template(t, chart, files, c.sets, "--show-only", "templates/notesprobe.yaml")
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, errOut)
			}
			var doc struct{ Notes string }
			if err := sigsyaml.Unmarshal([]byte(out), &doc); err != nil || doc.Notes == "" {
				t.Fatalf("no notes (%v) in:\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(doc.Notes, w) {
					t.Errorf("NOTES lack %q:\n%s", w, doc.Notes)
				}
			}
			for _, n := range c.not {
				if strings.Contains(doc.Notes, n) {
					t.Errorf("NOTES contain %q:\n%s", n, doc.Notes)
				}
			}
		})
	}
}

// --- values.yaml is documented ---

// TestValuesDocumented: every key of values.yaml, leaf or not, has a
// helm-docs style "# --" comment just above it.
func TestValuesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatal("values.yaml is not a mapping")
	}
	leaves := 0
	var walk func(n *yaml.Node, at string, inheritedComment string)
	walk = func(n *yaml.Node, at string, inherited string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				key := strings.TrimPrefix(at+"."+k.Value, ".")
				comment := k.HeadComment
				if i == 0 && comment == "" {
					// yaml.v3 gives the comment above "- key:" to the item.
					comment = inherited
				}
				if !strings.Contains(comment, "# --") {
					t.Errorf("values.yaml: %s (line %d) has no \"# --\" comment above it", key, k.Line)
				}
				if v.Kind == yaml.ScalarNode || len(v.Content) == 0 {
					leaves++
				}
				walk(v, key, "")
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				walk(item, fmt.Sprintf("%s[%d]", at, i), item.HeadComment)
			}
		}
	}
	walk(doc.Content[0], "", "")
	if leaves < 50 {
		t.Errorf("only %d leaf keys found; is values.yaml complete?", leaves)
	}
}
