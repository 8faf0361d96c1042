package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/internal/v6api/v6apitest"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// TestVantage6FiveEndToEnd: eventserver in front of vantage6 5.x, on three
// replicas of one Redis. Tokens are Keycloak's (RS256 with a kid from the
// JWK Set, a UUID-like sub, iss and aud checked), identities come from the
// 5.x API (/node/me, /user/me), tasks from GET /task/<id> with the Keycloak
// service account, and the vantage6 server's emits arrive over RabbitMQ
// from the real KombuManager. Python nodes and socket.io-client users see
// every 5.x event both ways: node-online, new_task_update before the
// algorithm_status_change that carries the API's job_id, algorithm_log,
// delete_dataframe from the queue, dataframe_deleted as a fact for the
// backend, /admin node-status-changed exactly once per transition, and
// nothing of another collaboration.
func TestVantage6FiveEndToEnd(t *testing.T) {
	amqpURL := testenv.RabbitMQ(t)
	needKombu(t)
	api := v6apitest.NewV5Keycloak()
	t.Cleanup(api.Close)
	api.AddCollaboration(v6apitest.Collaboration{ID: 1, Name: "COL-1", OrganizationIDs: []int64{2, 3}})
	api.AddCollaboration(v6apitest.Collaboration{ID: 2, Name: "COL-2", OrganizationIDs: []int64{4}})
	api.AddNode(v6apitest.Node{KeycloakID: "1f0e3c52-node-7", ID: 7, Name: "org2-node", OrganizationID: 2, CollaborationID: 1})
	api.AddNode(v6apitest.Node{KeycloakID: "1f0e3c52-node-8", ID: 8, Name: "org3-node", OrganizationID: 3, CollaborationID: 1})
	api.AddNode(v6apitest.Node{KeycloakID: "1f0e3c52-node-9", ID: 9, Name: "org4-node", OrganizationID: 4, CollaborationID: 2})
	colView := api.RuleID("collaboration", "ORGANIZATION", "VIEW")
	api.AddUser(v6apitest.User{KeycloakID: "7c1d-alice", ID: 20, Username: "alice", OrganizationID: 2,
		RuleIDs: []int64{api.RuleID("event", "COLLABORATION", "RECEIVE"), colView}})
	api.AddUser(v6apitest.User{KeycloakID: "7c1d-root", ID: 21, Username: "root", OrganizationID: 2,
		RuleIDs: []int64{api.RuleID("event", "GLOBAL", "RECEIVE"), api.RuleID("collaboration", "GLOBAL", "VIEW")}})
	api.AddUser(v6apitest.User{KeycloakID: "7c1d-eventserver", ClientID: "eventserver", ClientSecret: "es-client-secret",
		ID: 22, Username: "service-account-eventserver", OrganizationID: 2,
		RuleIDs: []int64{api.RuleID("collaboration", "GLOBAL", "VIEW"), api.RuleID("task", "GLOBAL", "VIEW")}})
	api.AddTask(v6apitest.Task{ID: 100, JobID: 1000, CollaborationID: 1, InitOrgID: 2})
	api.AddTask(v6apitest.Task{ID: 101, JobID: 1001, ParentID: 100, CollaborationID: 1, InitOrgID: 2, DependsOn: []int64{100}})
	api.AddTask(v6apitest.Task{ID: 200, JobID: 2000, CollaborationID: 2, InitOrgID: 4})

	channel := "flask-socketio-test-" + randomName(4)
	t.Cleanup(func() { deleteExchange(t, amqpURL, channel) })
	pub := startKombu(t, "publish", "json", amqpURL, channel)

	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	stream := prefix + ":outbox"
	env := []string{
		"EVENTSERVER_JWT_JWKS_URL=" + api.JWKSURL,
		"EVENTSERVER_JWT_ISSUER=" + api.Issuer,
		"EVENTSERVER_JWT_AUDIENCE=" + v6apitest.Audience,
		"EVENTSERVER_V6_API_URL=" + api.URL,
		"EVENTSERVER_V6_VERSION=5",
		"EVENTSERVER_V6_TOKEN_URL=" + api.TokenURL,
		"EVENTSERVER_V6_USERNAME=eventserver",
		"EVENTSERVER_V6_PASSWORD=es-client-secret",
		"EVENTSERVER_V6_QUEUE_CHANNEL=" + channel,
		"EVENTSERVER_V6_QUEUE_URL=" + amqpURL,
		"EVENTSERVER_OUTBOX_STREAM=" + stream,
	}
	var replicas []*procServer
	for _, name := range []string{"a", "b", "c"} {
		replicas = append(replicas, startInstance(t, name, r.URL(), prefix, env...))
	}
	waitQueueSubscribed(t, 1, wait, replicas...)
	a, b, c := replicas[0], replicas[1], replicas[2]

	tok := func(keycloakID, clientType string) string {
		return api.KeycloakToken(keycloakID, clientType, time.Hour)
	}
	admin := startUI(t, b.server, "root@b/admin", clientOpts{token: tok("7c1d-root", "user"), namespace: "/admin", reconnect: true})
	admin.waitType("connect", wait)
	alice := startUI(t, c.server, "alice@c", clientOpts{token: tok("7c1d-alice", "user"), reconnect: true})
	alice.waitType("connect", wait)
	node7 := startPyNode(t, a.server, "node7@a", clientOpts{token: tok("1f0e3c52-node-7", "node"), v6Handlers: true})
	node7.waitEvent("sync", wait)
	node8 := startPyNode(t, b.server, "node8@b", clientOpts{token: tok("1f0e3c52-node-8", "node"), v6Handlers: true})
	node8.waitEvent("sync", wait)
	node9 := startPyNode(t, c.server, "node9@c", clientOpts{token: tok("1f0e3c52-node-9", "node"), v6Handlers: true})
	node9.waitEvent("sync", wait)

	// Rooms and presence: alice (organization 2, collaboration scope) sees
	// the nodes of collaboration 1, with the API's numeric ids.
	jsonEq(t, alice.wait(wait, "node-online 7", func(m msg) bool {
		return m.Event == "node-online" && strings.Contains(string(m.Args[0]), `"id":7`)
	}).Args[0], `{"id":7,"name":"org2-node","org_id":2}`)
	alice.wait(wait, "node-online 8", func(m msg) bool {
		return m.Event == "node-online" && strings.Contains(string(m.Args[0]), `"id":8`)
	})
	admin.wait(wait, "three node-status-changed", func(msg) bool { return len(admin.events("node-status-changed")) >= 3 })

	// A completed run whose task 101 waits on: new_task_update first, then
	// the status change with the job of task 100, on every replica.
	node7.emit("algorithm_status_change", 0, map[string]any{"run_id": 1, "task_id": 100, "status": "completed",
		"collaboration_id": 1, "node_id": 7, "organization_id": 2, "parent_id": nil})
	wantStatus := `{"status":"completed","run_id":1,"task_id":100,"job_id":1000,"collaboration_id":1,"node_id":7,"organization_id":2,"parent_id":null}`
	for _, cl := range []*client{alice, node8, node7} {
		jsonEq(t, cl.waitEvent("algorithm_status_change", wait).Args[0], wantStatus)
		updates := cl.events("new_task_update")
		if len(updates) != 1 {
			t.Fatalf("%s: %d new_task_update, want 1: %s", cl.name, len(updates), cl.describe())
		}
		jsonEq(t, updates[0].Args[0], `{"id":101,"parent_id":100}`)
		names := cl.eventNames()
		if i, j := indexOf(names, "new_task_update"), indexOf(names, "algorithm_status_change"); i > j {
			t.Errorf("%s: new_task_update after the status change: %v", cl.name, names)
		}
	}

	// A log line, relayed to the collaboration.
	node8.emit("algorithm_log", 0, map[string]any{"collaboration_id": 1, "run_id": 2, "task_id": 100, "log": "epoch 1"})
	jsonEq(t, alice.waitEvent("algorithm_log", wait).Args[0], `{"run_id":2,"task_id":100,"log":"epoch 1"}`)

	// A status change for another collaboration's task is refused.
	node7.emit("algorithm_status_change", 0, map[string]any{"run_id": 3, "task_id": 200, "status": "active"})
	testwait.For(t, wait, func() error {
		if v := a.metric(`eventserver_v6_task_lookups_total{outcome="not_own"}`); v != 1 {
			return fmt.Errorf("not_own lookups on a: %v", v)
		}
		return nil
	})

	// The vantage6 server's emits over RabbitMQ: delete_dataframe to
	// collaboration 1's nodes, new_task_update of a new task to everyone
	// in collaboration 1.
	pub.emit("delete_dataframe", map[string]any{"df_name": "cohort", "session_id": 4}, "collaboration_1")
	pub.emit("new_task_update", map[string]any{"id": 102, "parent_id": nil}, "collaboration_1")
	pub.waitSent(2)
	for _, n := range []*client{node7, node8} {
		jsonEq(t, n.waitEvent("delete_dataframe", wait).Args[0], `{"df_name":"cohort","session_id":4}`)
	}
	alice.wait(wait, "new_task_update 102", func(m msg) bool {
		return m.Event == "new_task_update" && strings.Contains(string(m.Args[0]), `"id":102`)
	})

	// The node deleted it: a fact for the backend, not relayed.
	node7.emit("dataframe_deleted", 0, map[string]any{"df_name": "cohort", "session_id": 4, "node_id": 7})
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opts)
	t.Cleanup(func() { _ = rc.Close() })
	testwait.For(t, wait, func() error {
		entries, err := rc.XRange(context.Background(), stream, "-", "+").Result()
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Values["type"] != "dataframe_deleted" {
				continue
			}
			var f struct {
				NodeID json.RawMessage `json:"node_id"`
				Data   json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal([]byte(fmt.Sprint(e.Values["fact"])), &f); err != nil {
				return err
			}
			if string(f.Data) != `{"df_name":"cohort","session_id":4,"node_id":7}` || string(f.NodeID) != "7" {
				return fmt.Errorf("dataframe_deleted fact %s", e.Values["fact"])
			}
			return nil
		}
		return fmt.Errorf("no dataframe_deleted fact among %d", len(entries))
	})

	// A node of collaboration 2 leaves: one more notice on /admin.
	node9.disconnect()
	admin.wait(wait, "fourth node-status-changed", func(msg) bool { return len(admin.events("node-status-changed")) >= 4 })

	barrier(t, a.server, alice, node7, node8)
	if n := len(admin.events("node-status-changed")); n != 4 {
		t.Errorf("node-status-changed %d times for 4 transitions", n)
	}
	for _, ev := range []string{"algorithm_status_change", "algorithm_log", "delete_dataframe", "new_task_update"} {
		for _, m := range node9.events(ev) {
			t.Errorf("node of collaboration 2 got %s %s", ev, m.Args)
		}
	}
	for _, m := range alice.events("node-online") {
		if strings.Contains(string(m.Args[0]), `"id":9`) {
			t.Errorf("alice saw the node of collaboration 2 online")
		}
	}
	if n := len(alice.events("algorithm_status_change")); n != 1 {
		t.Errorf("alice got %d status changes, want 1 (another collaboration's was refused)", n)
	}
	for _, cl := range []*client{alice, node7, node8} {
		if n := len(cl.events("delete_dataframe")) + len(cl.events("algorithm_log")); cl != alice && n != 2 {
			t.Errorf("%s: delete_dataframe and algorithm_log %d times, want once each", cl.name, n)
		}
	}
	if v := a.metric(`eventserver_jwks_refresh_total{outcome="ok"}`); v < 1 {
		t.Errorf("replica a fetched the JWK Set %v times", v)
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return len(list)
}
