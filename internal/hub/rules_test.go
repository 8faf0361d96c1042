package hub

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// refusedReasons are the reasons eventserver_events_refused_total counts.
var refusedReasons = []string{"malformed", "not_own", "not_node", "unauthenticated", "overloaded", "rate"}

// ruleCase is one event a client sends and what the hub must make of it.
type ruleCase struct {
	name  string
	from  string // "node" (node 5, organization 2, collaboration 1), "user", "anon" (a token that fails)
	event string
	args  string // the JSON arguments after the event name, "" for none
	// relayed is what a user in collaboration_1 receives ("name json-args").
	relayed []string
	// refused is the reason counted in eventserver_events_refused_total
	// for the event; "" for none.
	refused string
	// fact is the type and data of the fact recorded; "" for none.
	fact, factData string
}

// ruleCases are the node events × valid, malformed, not own, sent by a
// user, sent by an unauthenticated socket.
var ruleCases = []ruleCase{
	{name: "ping/valid", from: "node", event: "ping", fact: protocol.FactPing},
	{name: "ping/with an argument", from: "node", event: "ping", args: `"x"`, fact: protocol.FactPing},
	{name: "ping/not_node", from: "user", event: "ping", refused: "not_node"},
	{name: "ping/unauthenticated", from: "anon", event: "ping", refused: "unauthenticated"},

	{name: "node_info_update/valid", from: "node", event: "node_info_update", args: `{"version":"4.14","n":1}`,
		fact: protocol.FactNodeInfoUpdate, factData: `{"n":1,"version":"4.14"}`},
	{name: "node_info_update/no argument", from: "node", event: "node_info_update", refused: "malformed"},
	{name: "node_info_update/two arguments", from: "node", event: "node_info_update", args: `{},{}`, refused: "malformed"},
	{name: "node_info_update/not an object", from: "node", event: "node_info_update", args: `"x"`, refused: "malformed"},
	{name: "node_info_update/an array", from: "node", event: "node_info_update", args: `[1]`, refused: "malformed"},
	{name: "node_info_update/null", from: "node", event: "node_info_update", args: `null`, refused: "malformed"},
	{name: "node_info_update/not_node", from: "user", event: "node_info_update", args: `{}`, refused: "not_node"},
	{name: "node_info_update/unauthenticated", from: "anon", event: "node_info_update", args: `{}`, refused: "unauthenticated"},

	{name: "node_metrics_update/valid", from: "node", event: "node_metrics_update", args: `{"cpu":0.5}`,
		fact: protocol.FactNodeMetricsUpdate, factData: `{"cpu":0.5}`},
	{name: "node_metrics_update/no argument", from: "node", event: "node_metrics_update", refused: "malformed"},
	{name: "node_metrics_update/two arguments", from: "node", event: "node_metrics_update", args: `{},1`, refused: "malformed"},
	{name: "node_metrics_update/not an object", from: "node", event: "node_metrics_update", args: `3`, refused: "malformed"},
	{name: "node_metrics_update/not_node", from: "user", event: "node_metrics_update", args: `{}`, refused: "not_node"},
	{name: "node_metrics_update/unauthenticated", from: "anon", event: "node_metrics_update", args: `{}`, refused: "unauthenticated"},

	{name: "algorithm_status_change/valid", from: "node", event: "algorithm_status_change",
		args:    `{"run_id":1,"task_id":10,"status":"active","node_id":5,"collaboration_id":1,"organization_id":2,"parent_id":null}`,
		relayed: []string{`algorithm_status_change {"status":"active","run_id":1,"task_id":10,"job_id":null,"collaboration_id":1,"node_id":5,"organization_id":2,"parent_id":null}`},
		fact:    protocol.FactAlgorithmStatusChange, factData: `{"status":"active","run_id":1,"task_id":10,"job_id":null,"collaboration_id":1,"node_id":5,"organization_id":2,"parent_id":null}`},
	{name: "algorithm_status_change/valid without ids: the node's own", from: "node", event: "algorithm_status_change",
		args:    `{"run_id":2,"task_id":11,"status":"completed","job_id":7,"parent_id":10}`,
		relayed: []string{`algorithm_status_change {"status":"completed","run_id":2,"task_id":11,"job_id":7,"collaboration_id":1,"node_id":5,"organization_id":2,"parent_id":10}`},
		fact:    protocol.FactAlgorithmStatusChange, factData: `{"status":"completed","run_id":2,"task_id":11,"job_id":7,"collaboration_id":1,"node_id":5,"organization_id":2,"parent_id":10}`},
	{name: "algorithm_status_change/no argument", from: "node", event: "algorithm_status_change", refused: "malformed"},
	{name: "algorithm_status_change/two arguments", from: "node", event: "algorithm_status_change",
		args: `{"run_id":1,"task_id":10,"status":"active"},{}`, refused: "malformed"},
	{name: "algorithm_status_change/not an object", from: "node", event: "algorithm_status_change", args: `"active"`, refused: "malformed"},
	{name: "algorithm_status_change/missing status", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10}`, refused: "malformed"},
	{name: "algorithm_status_change/empty status", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":""}`, refused: "malformed"},
	{name: "algorithm_status_change/status a number", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":3}`, refused: "malformed"},
	{name: "algorithm_status_change/missing run_id", from: "node", event: "algorithm_status_change", args: `{"task_id":10,"status":"active"}`, refused: "malformed"},
	{name: "algorithm_status_change/run_id a string", from: "node", event: "algorithm_status_change", args: `{"run_id":"1","task_id":10,"status":"active"}`, refused: "malformed"},
	{name: "algorithm_status_change/missing task_id", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"status":"active"}`, refused: "malformed"},
	{name: "algorithm_status_change/parent_id a string", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":"active","parent_id":"x"}`, refused: "malformed"},
	{name: "algorithm_status_change/another collaboration_id", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":"active","collaboration_id":2}`, refused: "not_own"},
	{name: "algorithm_status_change/another node_id", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":"active","node_id":6}`, refused: "not_own"},
	{name: "algorithm_status_change/another organization_id", from: "node", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":"active","organization_id":3}`, refused: "not_own"},
	{name: "algorithm_status_change/not_node", from: "user", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":"active"}`, refused: "not_node"},
	{name: "algorithm_status_change/unauthenticated", from: "anon", event: "algorithm_status_change", args: `{"run_id":1,"task_id":10,"status":"active"}`, refused: "unauthenticated"},

	{name: "algorithm_log/valid", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":"line","node_id":5,"collaboration_id":1}`,
		relayed: []string{`algorithm_log {"run_id":1,"task_id":10,"log":"line"}`},
		fact:    protocol.FactAlgorithmLog, factData: `{"run_id":1,"task_id":10,"log":"line"}`},
	// organization_id is not a field of algorithm_log: not checked.
	{name: "algorithm_log/valid, organization_id ignored", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":"","organization_id":3}`,
		relayed: []string{`algorithm_log {"run_id":1,"task_id":10,"log":""}`},
		fact:    protocol.FactAlgorithmLog, factData: `{"run_id":1,"task_id":10,"log":""}`},
	{name: "algorithm_log/no argument", from: "node", event: "algorithm_log", refused: "malformed"},
	{name: "algorithm_log/two arguments", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":"x"},2`, refused: "malformed"},
	{name: "algorithm_log/not an object", from: "node", event: "algorithm_log", args: `"line"`, refused: "malformed"},
	{name: "algorithm_log/missing log", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":10}`, refused: "malformed"},
	{name: "algorithm_log/log a number", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":5}`, refused: "malformed"},
	{name: "algorithm_log/missing run_id", from: "node", event: "algorithm_log", args: `{"task_id":10,"log":"x"}`, refused: "malformed"},
	{name: "algorithm_log/task_id a string", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":"10","log":"x"}`, refused: "malformed"},
	{name: "algorithm_log/another collaboration_id", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":"x","collaboration_id":2}`, refused: "not_own"},
	{name: "algorithm_log/another node_id", from: "node", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":"x","node_id":6}`, refused: "not_own"},
	{name: "algorithm_log/not_node", from: "user", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":"x"}`, refused: "not_node"},
	{name: "algorithm_log/unauthenticated", from: "anon", event: "algorithm_log", args: `{"run_id":1,"task_id":10,"log":"x"}`, refused: "unauthenticated"},

	{name: "dataframe_deleted/valid", from: "node", event: "dataframe_deleted", args: `{"df_name":"cohort","session_id":4,"node_id":5}`,
		fact: protocol.FactDataframeDeleted, factData: `{"df_name":"cohort","session_id":4,"node_id":5}`},
	{name: "dataframe_deleted/valid without node_id", from: "node", event: "dataframe_deleted", args: `{"df_name":"d","session_id":1,"collaboration_id":9}`,
		fact: protocol.FactDataframeDeleted, factData: `{"df_name":"d","session_id":1,"node_id":5}`},
	{name: "dataframe_deleted/no argument", from: "node", event: "dataframe_deleted", refused: "malformed"},
	{name: "dataframe_deleted/not an object", from: "node", event: "dataframe_deleted", args: `"cohort"`, refused: "malformed"},
	{name: "dataframe_deleted/empty df_name", from: "node", event: "dataframe_deleted", args: `{"df_name":"","session_id":1}`, refused: "malformed"},
	{name: "dataframe_deleted/missing session_id", from: "node", event: "dataframe_deleted", args: `{"df_name":"x"}`, refused: "malformed"},
	{name: "dataframe_deleted/session_id a string", from: "node", event: "dataframe_deleted", args: `{"df_name":"x","session_id":"1"}`, refused: "malformed"},
	{name: "dataframe_deleted/another node_id", from: "node", event: "dataframe_deleted", args: `{"df_name":"x","session_id":1,"node_id":6}`, refused: "not_own"},
	{name: "dataframe_deleted/not_node", from: "user", event: "dataframe_deleted", args: `{"df_name":"x","session_id":1}`, refused: "not_node"},
	{name: "dataframe_deleted/unauthenticated", from: "anon", event: "dataframe_deleted", args: `{"df_name":"x","session_id":1}`, refused: "unauthenticated"},

	// message and error are logged, never relayed, from nodes and users.
	{name: "message/node", from: "node", event: "message", args: `"hello"`},
	{name: "message/node, not a string", from: "node", event: "message", args: `{"a":1}`},
	{name: "message/user", from: "user", event: "message", args: `"hello"`},
	{name: "message/unauthenticated", from: "anon", event: "message", args: `"hello"`, refused: "unauthenticated"},
	{name: "error/node", from: "node", event: "error", args: `"boom"`},
	{name: "error/user", from: "user", event: "error", args: `"boom"`},
	{name: "error/unauthenticated", from: "anon", event: "error", args: `"boom"`, refused: "unauthenticated"},

	// An unknown event from a node is ignored; from a user it is refused.
	{name: "unknown/node", from: "node", event: "no_such_event", args: `{"a":1}`},
	{name: "unknown/user", from: "user", event: "no_such_event", args: `{"a":1}`, refused: "not_node"},
	{name: "unknown/unauthenticated", from: "anon", event: "no_such_event", refused: "unauthenticated"},
}

// TestEventRules sends each case's event over a polling client and checks
// what a user in the node's collaboration receives, the refusal counted and
// the fact recorded. After each case the node sends a marker algorithm_log:
// once the user has it, the case's event was handled (a node's events are
// handled in order; a user's or an unauthenticated socket's refusal is
// counted before the marker is sent).
func TestEventRules(t *testing.T) {
	noLeaks(t)
	sink := &factSink{}
	_, m, base := tasksServer(t, nil, sink)
	user := connectAs(t, base, "user")
	node := connectAs(t, base, "node")
	// The node's join message and node-online (in either order) and its
	// node_online fact come first.
	for _, want := range []string{`message "Node <n5> joined room <collaboration_1>"`, `node-online {"id":5,"name":"n5","org_id":2}`} {
		if !slices.Contains(user.events, want) {
			user.waitFor(func(string) bool { return slices.Contains(user.events, want) }, want)
		}
	}
	testwait.Until(t, 5*time.Second, "node_online fact", func() bool { return len(sink.ofType(protocol.FactNodeOnline)) == 1 })

	refusedValue := func(event, reason string) float64 {
		return testutil.ToFloat64(m.EventsRefused.WithLabelValues(event, reason))
	}

	for i, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			label := tc.event // the event label of the metric: unknown events are "other"
			if tc.event == "no_such_event" {
				label = "other"
			}
			before := map[string]float64{}
			for _, r := range refusedReasons {
				before[r] = refusedValue(label, r)
			}
			sink.mu.Lock()
			factsBefore := len(sink.facts)
			sink.mu.Unlock()
			eventsBefore := len(user.events)

			packet := `42/tasks,["` + tc.event + `"`
			if tc.args != "" {
				packet += "," + tc.args
			}
			packet += "]"
			marker := fmt.Sprintf(`42/tasks,["algorithm_log",{"run_id":999,"task_id":999,"log":"marker-%d"}]`, i)
			switch tc.from {
			case "node":
				post(t, node.u, packet+"\x1e"+marker)
			case "user":
				post(t, user.u, packet)
			case "anon":
				anon := connectAs(t, base, "nobody")
				post(t, anon.u, packet)
			}
			if tc.from != "node" && tc.refused != "" {
				testwait.Until(t, 5*time.Second, "refusal counted", func() bool {
					return refusedValue(label, tc.refused) > before[tc.refused]
				})
			}
			if tc.from != "node" {
				post(t, node.u, marker)
			}
			user.waitFor(func(p string) bool { return strings.Contains(p, fmt.Sprintf(`"marker-%d"`, i)) }, "marker")

			var relayed []string
			for _, e := range user.events[eventsBefore:] {
				if !strings.Contains(e, `"marker-`) {
					relayed = append(relayed, e)
				}
			}
			if !slices.Equal(relayed, tc.relayed) {
				t.Errorf("relayed to the collaboration:\n got %q\nwant %q", relayed, tc.relayed)
			}

			for _, r := range refusedReasons {
				want := 0.0
				if r == tc.refused {
					want = 1
				}
				if got := refusedValue(label, r) - before[r]; got != want {
					t.Errorf("refused{event=%q,reason=%q} went up by %v, want %v", label, r, got, want)
				}
			}

			sink.mu.Lock()
			var facts []protocol.Fact
			for _, f := range sink.facts[factsBefore:] {
				if !strings.Contains(string(f.Data), `"marker-`) {
					facts = append(facts, f)
				}
			}
			sink.mu.Unlock()
			switch {
			case tc.fact == "" && len(facts) > 0:
				t.Errorf("facts %v, want none", factTypes(facts))
			case tc.fact != "" && (len(facts) != 1 || facts[0].Type != tc.fact):
				t.Errorf("facts %v, want one %s", factTypes(facts), tc.fact)
			case tc.fact != "":
				if f := facts[0]; string(f.NodeID) != "5" || f.CollaborationID != 1 || f.OrganizationID != 2 || f.NodeName != "n5" {
					t.Errorf("fact of node %s (%s) collaboration %d organization %d, want node 5 (n5) of 1 and 2",
						f.NodeID, f.NodeName, f.CollaborationID, f.OrganizationID)
				}
				if tc.factData != "" && string(facts[0].Data) != tc.factData {
					t.Errorf("fact data:\n got %s\nwant %s", facts[0].Data, tc.factData)
				}
			}
		})
	}
}

func factTypes(facts []protocol.Fact) []string {
	var out []string
	for _, f := range facts {
		out = append(out, f.Type+" "+string(f.Data))
	}
	return out
}
