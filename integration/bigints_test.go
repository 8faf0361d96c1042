package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
)

// exactJSON compares JSON values with their numbers as written (jsonEq
// goes through float64, which is what this test must not); the order of
// an object's keys does not matter.
func exactJSON(t testing.TB, got json.RawMessage, want string) {
	t.Helper()
	norm := func(b []byte) string {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("bad JSON %s: %v", b, err)
		}
		out, _ := json.Marshal(v) // json.Number is written as it was read
		return string(out)
	}
	if g, w := norm(got), norm([]byte(want)); g != w {
		t.Fatalf("got %s, want %s", g, w)
	}
}

// TestBigInts: integer ids above 2^53 and at the int64 and uint64 edges
// reach clients exactly (the probe saw 9007199254740993 arrive as
// 9007199254740992: another run's id), from the publish API and from a
// node, on one instance and across a cluster (the Redis adapter's
// msgpack). The receivers are python-socketio nodes, which keep big ints
// as vantage6 does.
func TestBigInts(t *testing.T) {
	for _, size := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d instances", size), func(t *testing.T) {
			r := redistest.Start(t)
			prefix := uniquePrefix(t)
			var inst []*procServer
			for i := range size {
				inst = append(inst, startInstance(t, fmt.Sprintf("i%d", i), r.URL(), prefix))
			}
			last := inst[size-1]
			sender := startPyNode(t, inst[0].server, "sender", clientOpts{token: nodeToken(t, 3, 1, 2, time.Hour)})
			sender.waitEvent("sync", wait)
			receiver := startPyNode(t, last.server, "receiver", clientOpts{token: nodeToken(t, 4, 1, 3, time.Hour)})
			receiver.waitEvent("sync", wait)
			// sync comes before the node is in its rooms (as in vantage6):
			// its own two join texts say it is in them.
			receiver.wait(wait, "its own join texts", func(msg) bool { return len(receiver.events("message")) >= 2 })

			const data = `{"id":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"u":18446744073709551615,"list":[9007199254740995]}`
			inst[0].mustPublish(`{"event":"new_task","room":"collaboration_1","data":` + data + `}`)
			exactJSON(t, receiver.waitEvent("new_task", wait).Args[0], data)

			sender.emit("algorithm_status_change", 0, map[string]any{"node_id": 3, "status": "active",
				"run_id": int64(9007199254740993), "task_id": int64(9223372036854775807), "collaboration_id": 1,
				"organization_id": 2, "parent_id": nil})
			got := receiver.waitEvent("algorithm_status_change", wait).Args[0]
			for _, want := range []string{`"run_id":9007199254740993`, `"task_id":9223372036854775807`} {
				if !strings.Contains(strings.ReplaceAll(string(got), " ", ""), want) {
					t.Fatalf("algorithm_status_change %s lacks %s", got, want)
				}
			}
		})
	}
}
