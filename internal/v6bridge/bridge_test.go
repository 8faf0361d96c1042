package v6bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// call is one thing the bridge asked of the target.
type call struct {
	Op     string
	Rooms  []string
	Except []string
	Event  string
	Args   string // JSON of the arguments ([]byte as base64)
}

type fakeTarget struct {
	mu    sync.Mutex
	calls []call
	local map[string]bool
}

func (f *fakeTarget) EmitLocal(rooms, except []string, event string, args ...any) error {
	b, err := json.Marshal(args)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{Op: "emit", Rooms: rooms, Except: except, Event: event, Args: string(b)})
	return nil
}

func (f *fakeTarget) LeaveLocal(room string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{Op: "leave", Rooms: []string{room}})
}

func (f *fakeTarget) DisconnectLocal(sid string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.local[sid] {
		return false
	}
	f.calls = append(f.calls, call{Op: "disconnect", Rooms: []string{sid}})
	return true
}

func (f *fakeTarget) take() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// captured is the message of the protocol spec, as python-socketio 5.15.0
// (vantage6 4.14) publishes it, byte for byte.
const captured = `{"method": "emit", "event": "new_task", "data": {"id": 7, "parent_id": 3}, "binary": false, "namespace": "/tasks", "room": "collaboration_2", "skip_sid": null, "callback": null, "host_id": "d4d83077a12947328d207f93967f319d"}`

func newBridge(t testing.TB, target Target) (*Bridge, *observer.ObservedLogs, *prometheus.Registry) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	b, err := New(Config{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Channel: "flask-socketio", Target: target, Logger: zap.New(core), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.cfg.Client.Close() })
	return b, logs, reg
}

func TestHandle(t *testing.T) {
	target := &fakeTarget{local: map[string]bool{"ourSocket1": true}}
	b, logs, _ := newBridge(t, target)

	emit := func(rooms, except []string, event, args string) []call {
		return []call{{Op: "emit", Rooms: rooms, Except: except, Event: event, Args: args}}
	}
	cases := []struct {
		name    string
		payload string
		outcome string
		want    []call
	}{
		{"captured 5.15.0 message", captured, OutcomeDelivered, emit([]string{"collaboration_2"}, nil, "new_task", `[{"id":7,"parent_id":3}]`)},
		{"5.15.1+ argument list", `{"method":"emit","event":"new_task","data":[{"id":7,"parent_id":null}],"binary":false,"namespace":"/tasks","room":"collaboration_2","skip_sid":null,"callback":null,"host_id":"h"}`,
			OutcomeDelivered, emit([]string{"collaboration_2"}, nil, "new_task", `[{"id":7,"parent_id":null}]`)},
		{"several arguments (a tuple)", `{"method":"emit","event":"x","data":[1,"two",{"3":3}],"namespace":"/tasks","room":"collaboration_1"}`,
			OutcomeDelivered, emit([]string{"collaboration_1"}, nil, "x", `[1,"two",{"3":3}]`)},
		{"null data: no argument", `{"method":"emit","event":"kill_containers","data":null,"namespace":"/tasks","room":"collaboration_1_organization_4"}`,
			OutcomeDelivered, emit([]string{"collaboration_1_organization_4"}, nil, "kill_containers", `null`)},
		{"no room: the namespace", `{"method":"emit","event":"status_update","data":{"a":1},"namespace":"/tasks","room":null}`,
			OutcomeDelivered, emit(nil, nil, "status_update", `[{"a":1}]`)},
		{"rooms list and skip_sid", `{"method":"emit","event":"e","data":{"a":1},"namespace":"/tasks","room":["collaboration_1","all_nodes"],"skip_sid":["ourSocket1","pySid"]}`,
			OutcomeDelivered, emit([]string{"collaboration_1", "all_nodes"}, []string{"ourSocket1", "pySid"}, "e", `[{"a":1}]`)},
		{"skip_sid string", `{"method":"emit","event":"e","data":1,"namespace":"/tasks","room":"collaboration_1","skip_sid":"ourSocket1"}`,
			OutcomeDelivered, emit([]string{"collaboration_1"}, []string{"ourSocket1"}, "e", `[1]`)},
		{"a Python sid among rooms is left out", `{"method":"emit","event":"e","data":1,"namespace":"/tasks","room":["collaboration_1","Fz1dKqjW2s-AAAB"]}`,
			OutcomeDelivered, emit([]string{"collaboration_1"}, nil, "e", `[1]`)},
		{"binary 5.15.0", `{"method":"emit","event":"blob","data":[{"name":"x","bytes":{"_placeholder":true,"num":0}},"AAEC/w=="],"binary":true,"namespace":"/tasks","room":"collaboration_1"}`,
			OutcomeDelivered, emit([]string{"collaboration_1"}, nil, "blob", `[{"bytes":"AAEC/w==","name":"x"}]`)},
		{"binary 5.15.1+", `{"method":"emit","event":"blob","data":[[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}],"AQ==","Ag=="],"binary":true,"namespace":"/tasks","room":"collaboration_1"}`,
			OutcomeDelivered, emit([]string{"collaboration_1"}, nil, "blob", `["AQ==","Ag=="]`)},
		{"callback: delivered without", `{"method":"emit","event":"e","data":1,"namespace":"/tasks","room":"collaboration_1","callback":["collaboration_1","/tasks",4]}`,
			OutcomeDelivered, emit([]string{"collaboration_1"}, nil, "e", `[1]`)},
		{"close_room", `{"method":"close_room","room":"collaboration_3","namespace":"/tasks","host_id":"h"}`,
			OutcomeDelivered, []call{{Op: "leave", Rooms: []string{"collaboration_3"}}}},
		{"disconnect of our socket", `{"method":"disconnect","sid":"ourSocket1","namespace":"/tasks","host_id":"h"}`,
			OutcomeDelivered, []call{{Op: "disconnect", Rooms: []string{"ourSocket1"}}}},
		{"disconnect of a socket elsewhere", `{"method":"disconnect","sid":"pySid","namespace":"/tasks"}`, OutcomeNoLocalSocket, nil},
		{"enter_room", `{"method":"enter_room","sid":"pySid","room":"collaboration_1","namespace":"/tasks"}`, OutcomeIgnored, nil},
		{"leave_room", `{"method":"leave_room","sid":"pySid","room":"collaboration_1","namespace":"/tasks"}`, OutcomeIgnored, nil},
		{"callback", `{"method":"callback","host_id":"h","sid":"s","namespace":"/tasks","id":1,"args":[]}`, OutcomeIgnored, nil},
		{"room is a Python sid", `{"method":"emit","event":"e","data":1,"namespace":"/tasks","room":"Fz1dKqjW2s-AAAB"}`, OutcomeUnknownRoom, nil},
		{"close_room of a Python sid", `{"method":"close_room","room":"Fz1dKqjW2s-AAAB","namespace":"/tasks"}`, OutcomeUnknownRoom, nil},
		{"other namespace", `{"method":"emit","event":"e","data":1,"namespace":"/","room":"collaboration_1"}`, OutcomeOtherNamespace, nil},
		{"no namespace is /", `{"method":"emit","event":"e","data":1,"room":"collaboration_1"}`, OutcomeOtherNamespace, nil},
		{"pickled", "\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x06method\x94\x8c\x04emit\x94u.", OutcomePickled, nil},
		{"not JSON", `{"method": "emit", "event"`, OutcomeNotJSON, nil},
		{"not JSON at all", "hello", OutcomeNotJSON, nil},
		{"JSON but not an object", `[1,2]`, OutcomeBadMessage, nil},
		{"method of the wrong type", `{"method":7}`, OutcomeBadMessage, nil},
		{"no method", `{"event":"e"}`, OutcomeBadMessage, nil},
		{"unknown method", `{"method":"explode","namespace":"/tasks"}`, OutcomeUnknownMethod, nil},
		{"emit without event", `{"method":"emit","data":1,"namespace":"/tasks","room":"collaboration_1"}`, OutcomeBadMessage, nil},
		{"reserved event", `{"method":"emit","event":"disconnect","namespace":"/tasks","room":"collaboration_1"}`, OutcomeBadMessage, nil},
		{"room of the wrong type", `{"method":"emit","event":"e","namespace":"/tasks","room":5}`, OutcomeBadMessage, nil},
		{"skip_sid of the wrong type", `{"method":"emit","event":"e","namespace":"/tasks","room":"collaboration_1","skip_sid":{}}`, OutcomeBadMessage, nil},
		{"binary with bad base64", `{"method":"emit","event":"e","data":[{"_placeholder":true,"num":0},"***"],"binary":true,"namespace":"/tasks","room":"collaboration_1"}`, OutcomeBadMessage, nil},
		{"binary placeholder out of range", `{"method":"emit","event":"e","data":[{"_placeholder":true,"num":3},"AQ=="],"binary":true,"namespace":"/tasks","room":"collaboration_1"}`, OutcomeBadMessage, nil},
		{"binary without data", `{"method":"emit","event":"e","data":null,"binary":true,"namespace":"/tasks","room":"collaboration_1"}`, OutcomeBadMessage, nil},
		{"disconnect without sid", `{"method":"disconnect","namespace":"/tasks"}`, OutcomeBadMessage, nil},
		{"close_room without room", `{"method":"close_room","namespace":"/tasks"}`, OutcomeBadMessage, nil},
		{"room with a leading zero is no vantage6 room", `{"method":"emit","event":"e","namespace":"/tasks","room":"collaboration_01"}`, OutcomeUnknownRoom, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := b.Handle([]byte(tc.payload))
			calls := target.take()
			if got != tc.outcome {
				t.Fatalf("outcome %q, want %q", got, tc.outcome)
			}
			if fmt.Sprintf("%+v", calls) != fmt.Sprintf("%+v", tc.want) {
				t.Fatalf("calls\n%+v\nwant\n%+v", calls, tc.want)
			}
		})
	}
	// Nothing unusable goes unlogged, and the payload never reaches a log
	// whole (only its start).
	if logs.FilterMessageSnippet("pickled message").Len() == 0 || logs.FilterMessageSnippet("not JSON").Len() == 0 {
		t.Error("unusable messages were not logged")
	}
}

func TestMetricsCountEveryMessage(t *testing.T) {
	b, _, reg := newBridge(t, &fakeTarget{})
	for i := 0; i < 3; i++ {
		b.Handle([]byte(captured))
	}
	b.Handle([]byte("\x80\x05junk"))
	b.Handle([]byte("{"))
	b.Handle([]byte(`{"method":"enter_room","namespace":"/tasks","sid":"s","room":"r"}`))
	want := `
# HELP eventserver_v6_queue_messages_total Messages of the Flask-SocketIO message queue, by method and outcome.
# TYPE eventserver_v6_queue_messages_total counter
eventserver_v6_queue_messages_total{method="-",outcome="not_json"} 1
eventserver_v6_queue_messages_total{method="-",outcome="pickled"} 1
eventserver_v6_queue_messages_total{method="emit",outcome="delivered"} 3
eventserver_v6_queue_messages_total{method="enter_room",outcome="ignored"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "eventserver_v6_queue_messages_total"); err != nil {
		t.Fatal(err)
	}
}

// panicTarget panics on every call: the bridge survives it.
type panicTarget struct{}

func (panicTarget) EmitLocal([]string, []string, string, ...any) error { panic("boom") }
func (panicTarget) LeaveLocal(string)                                  { panic("boom") }
func (panicTarget) DisconnectLocal(string) bool                        { panic("boom") }

func TestHandlerPanicIsContained(t *testing.T) {
	b, logs, _ := newBridge(t, panicTarget{})
	if got := b.Handle([]byte(captured)); got != OutcomeFailed {
		t.Fatalf("outcome %q", got)
	}
	if logs.FilterMessageSnippet("panic").Len() != 1 {
		t.Error("panic not logged")
	}
}

// TestSubscription: against a real Redis, messages published on the channel
// are carried out in order, the bridge is ready once subscribed, survives a
// Redis restart (resubscribes) and Close stops its goroutine.
func TestSubscription(t *testing.T) {
	r := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer client.Close()
	target := &fakeTarget{}
	b, err := New(Config{Client: client, Channel: "flask-socketio", Target: target})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "subscribed", b.Ready)

	pub := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer pub.Close()
	ctx := context.Background()
	publishUntil := func(payload string, n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d calls", n), func() bool {
			target.mu.Lock()
			have := len(target.calls)
			target.mu.Unlock()
			if have >= n {
				return true
			}
			_ = pub.Publish(ctx, "flask-socketio", payload).Err()
			return false
		})
	}
	for i := 1; i <= 3; i++ {
		if err := pub.Publish(ctx, "flask-socketio", fmt.Sprintf(`{"method":"emit","event":"n%d","data":%d,"namespace":"/tasks","room":"collaboration_1"}`, i, i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three emits", func() bool {
		target.mu.Lock()
		defer target.mu.Unlock()
		return len(target.calls) == 3
	})
	for i, c := range target.take() {
		if c.Event != fmt.Sprintf("n%d", i+1) {
			t.Errorf("call %d: %+v (out of order)", i, c)
		}
	}

	r.Restart()
	// Publishes made before the subscription is back are lost, as with any
	// Redis pub/sub (and as with python-socketio itself): publish until one
	// arrives.
	publishUntil(captured, 1)
	waitFor(t, "ready again", b.Ready)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testwait.Until(t, 15*time.Second, what, ok)
}

func TestNewChecksConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, cfg := range []Config{
		{Channel: "c", Target: &fakeTarget{}},
		{Client: c, Target: &fakeTarget{}},
		{Client: c, Channel: "c"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	// Close without Start returns at once.
	b, err := New(Config{Client: c, Channel: "c", Target: &fakeTarget{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
