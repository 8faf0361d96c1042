package presence

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // the dial failures of tests that stop Redis
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// newMemory returns a Memory without grace (offline at once, as the tests
// written before the grace expect), shut down when the test ends.
func newMemory(t testing.TB, h Handler) *Memory {
	t.Helper()
	return newMemoryCfg(t, MemoryConfig{Handler: h, Grace: NoGrace})
}

func newMemoryCfg(t testing.TB, cfg MemoryConfig) *Memory {
	t.Helper()
	m, err := NewMemoryWithConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return m
}

// event is a transition as a test saw it: which store reported it, when.
type event struct {
	Transition
	by string
	at time.Time
}

// journal collects the transitions of several stores ("replicas").
type journal struct {
	mu sync.Mutex
	ev []event
}

func (j *journal) handler(by string) Handler {
	return func(tr Transition) {
		j.mu.Lock()
		j.ev = append(j.ev, event{Transition: tr, by: by, at: time.Now()})
		j.mu.Unlock()
	}
}

func (j *journal) all() []event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.ev)
}

func (j *journal) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.ev)
}

// String renders the journal, for failure messages.
func (j *journal) String() string {
	var b strings.Builder
	for _, e := range j.all() {
		fmt.Fprintf(&b, "  %s node %s online=%v seq=%d by %s\n", e.at.Format("15:04:05.000"), e.Node.Key, e.Online, e.Seq, e.by)
	}
	return b.String()
}

// checkSequences checks, for every node, that its transitions ordered by
// Seq alternate, start with online, end in final[key] (true: online), and
// that no Seq is reported twice. Nodes not in final must end offline or
// have no transition.
func checkSequences(t testing.TB, j *journal, final map[string]bool) {
	t.Helper()
	seen := map[int64]bool{}
	per := map[string][]event{}
	for _, e := range j.all() {
		if seen[e.Seq] {
			t.Errorf("seq %d reported twice (node %s)", e.Seq, e.Node.Key)
		}
		seen[e.Seq] = true
		per[e.Node.Key] = append(per[e.Node.Key], e)
	}
	keys := make([]string, 0, len(per))
	for k := range per {
		keys = append(keys, k)
	}
	for k := range final {
		if _, ok := per[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		evs := per[k]
		sort.Slice(evs, func(a, b int) bool { return evs[a].Seq < evs[b].Seq })
		for i, e := range evs {
			if e.Online != (i%2 == 0) {
				t.Errorf("node %s: transition %d (seq %d) online=%v: not alternating from online", k, i, e.Seq, e.Online)
				bad++
				break
			}
		}
		last := len(evs) > 0 && evs[len(evs)-1].Online
		if last != final[k] {
			t.Errorf("node %s: ends online=%v after %d transitions, truly online=%v", k, last, len(evs), final[k])
			bad++
		}
	}
	if bad > 0 {
		t.Logf("journal:\n%s", j)
	}
}

var prefixSeq atomic.Int64

// uniquePrefix is a key prefix no other test uses.
func uniquePrefix(t testing.TB) string {
	return fmt.Sprintf("t%d:%s", prefixSeq.Add(1), strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
}
