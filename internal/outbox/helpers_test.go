package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/redistest"
)

// TestMain fails the package when a test leaves a goroutine behind (the
// writers, the webhook workers, their HTTP connections).
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{}) // go-redis's own lines about refused dials, while Redis is down on purpose
	goleak.VerifyTestMain(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

const testStream = "test:outbox"

// startRedis starts a real Redis and a client with short timeouts and no
// retries of its own, so that the outbox's retries are the only ones.
func startRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	r := redistest.Start(t)
	c := redis.NewClient(&redis.Options{
		Addr:         r.Addr(),
		DialTimeout:  300 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		MaxRetries:   -1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return r, c
}

// start builds an outbox with a test logger and registry; the test's
// cleanup shuts it down.
func start(t *testing.T, cfg Config) (*Outbox, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	if cfg.Instance == "" {
		cfg.Instance = "test-instance"
	}
	cfg.Logger = zap.New(core)
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = o.Shutdown(ctx)
	})
	return o, logs
}

// nodeFact is a fact of node 3 (collaboration 1, organization 2) whose data
// carries n.
func nodeFact(typ string, n int) protocol.Fact {
	return protocol.Fact{
		Type:            typ,
		NodeID:          json.RawMessage("3"),
		NodeName:        "org2-node3",
		CollaborationID: 1,
		OrganizationID:  2,
		Data:            json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
	}
}

// entry is one stream entry.
type entry struct {
	StreamID string
	ID, Type string
	Fact     map[string]any
	Raw      string
}

// readStream returns the whole stream, oldest first.
func readStream(t *testing.T, c *redis.Client) []entry {
	t.Helper()
	msgs, err := c.XRange(context.Background(), testStream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE: %v", err)
	}
	out := make([]entry, 0, len(msgs))
	for _, m := range msgs {
		e := entry{StreamID: m.ID}
		e.ID, _ = m.Values["id"].(string)
		e.Type, _ = m.Values["type"].(string)
		e.Raw, _ = m.Values["fact"].(string)
		if len(m.Values) != 3 {
			t.Errorf("entry %s has fields %v, want id, type and fact", m.ID, m.Values)
		}
		if err := json.Unmarshal([]byte(e.Raw), &e.Fact); err != nil {
			t.Fatalf("entry %s: fact is not JSON: %v: %s", m.ID, err, e.Raw)
		}
		out = append(out, e)
	}
	return out
}

// dataN returns the "n" of an entry's data.
func dataN(e entry) int {
	d, _ := e.Fact["data"].(map[string]any)
	n, _ := d["n"].(float64)
	return int(n)
}

func value(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// histogram returns the sample count and sum of a histogram, and how many
// samples are at most le.
func histogram(t *testing.T, h prometheus.Histogram, le float64) (count uint64, sum float64, atMost uint64) {
	t.Helper()
	var m dto.Metric
	if err := h.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	for _, b := range m.GetHistogram().GetBucket() {
		if b.GetUpperBound() == le {
			atMost = b.GetCumulativeCount()
		}
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), atMost
}

// logsWith returns the entries whose message contains s.
func logsWith(logs *observer.ObservedLogs, s string) []observer.LoggedEntry {
	return logs.Filter(func(e observer.LoggedEntry) bool { return strings.Contains(e.Message, s) }).All()
}

// logText renders every log entry with its fields.
func logText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, e := range logs.All() {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err == nil {
			b.Write(buf.Bytes())
			buf.Free()
		}
	}
	return b.String()
}
