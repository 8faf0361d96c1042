package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/config"
	"github.com/eventserver/eventserver/internal/v6api/v6apitest"
)

// TestV6APIEndToEnd: the server configured with EVENTSERVER_V6_API_URL
// resolves real vantage6-shaped tokens (numeric sub, client_type, no name or
// collaboration claims) through a fake vantage6 API: a python-socketio node
// lands in its three rooms, a UI user with the collaboration-scope event rule
// receives what is published to their organization's collaborations and
// nothing else, and once the API is down a new client gets invalid_token.
func TestV6APIEndToEnd(t *testing.T) {
	api := v6apitest.New([]byte(testSecret))
	t.Cleanup(api.Close)
	// Collaborations 1..12: organization 2 in the odd ones, organization 3
	// in the even ones and in 1.
	for i := int64(1); i <= 12; i++ {
		orgs := []int64{2}
		if i%2 == 0 {
			orgs = []int64{3}
		} else if i == 1 {
			orgs = []int64{2, 3}
		}
		api.AddCollaboration(v6apitest.Collaboration{ID: i, Name: fmt.Sprintf("COL-%d", i), OrganizationIDs: orgs})
	}
	api.AddNode(v6apitest.Node{ID: 7, Name: "org2-colA-node", OrganizationID: 2, CollaborationID: 1})
	api.AddNode(v6apitest.Node{ID: 8, Name: "org3-colB-node", OrganizationID: 3, CollaborationID: 2})
	colView := api.RuleID("collaboration", "ORGANIZATION", "VIEW")
	api.AddUser(v6apitest.User{ID: 20, Username: "alice", OrganizationID: 2,
		RuleIDs: []int64{api.RuleID("event", "COLLABORATION", "RECEIVE"), colView}})
	api.AddUser(v6apitest.User{ID: 21, Username: "bob", OrganizationID: 3,
		RuleIDs: []int64{api.RuleID("event", "ORGANIZATION", "RECEIVE"), colView}})

	s := startServer(t, func(c *config.Config) {
		c.V6APIURL = api.URL
		c.V6Timeout = 2 * time.Second
	})

	aliceTok, nodeTok := api.UserToken(20), api.NodeToken(7)
	alice := startUI(t, s, "ui-alice", clientOpts{token: aliceTok, transports: "websocket"})
	alice.waitType("connect", wait)
	jsonEq(t, alice.waitEvent("message", wait).Args[0], `"User <alice> joined room <collaboration_1>"`)
	node := startPyNode(t, s, "node-7", clientOpts{token: nodeTok})
	node.waitType("connect", wait)
	if ev := node.waitEvent("sync", wait); len(ev.Args) != 0 {
		t.Fatalf("sync has %d arguments", len(ev.Args))
	}
	jsonEq(t, alice.waitEvent("node-online", wait).Args[0], `{"id":7,"name":"org2-colA-node","org_id":2}`)

	// Who is in which room, as the sockets API says.
	roomsOf := func(clientType, id string) []string {
		t.Helper()
		code, body := s.do("GET", "/api/v1/sockets", testPublishToken, "")
		var resp struct {
			Sockets []struct {
				Rooms []string          `json:"rooms"`
				Data  map[string]string `json:"data"`
			} `json:"sockets"`
		}
		if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil {
			t.Fatalf("sockets: %d %s", code, body)
		}
		for _, sk := range resp.Sockets {
			if sk.Data["client_type"] == clientType && sk.Data["client_id"] == id {
				return slices.DeleteFunc(sk.Rooms, func(r string) bool {
					return !strings.HasPrefix(r, "collaboration_") && r != "all_nodes"
				})
			}
		}
		t.Fatalf("no %s %s in %s", clientType, id, body)
		return nil
	}
	if got, want := roomsOf("node", "7"), []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"}; !sameSet(got, want) {
		t.Errorf("node rooms = %v, want %v", got, want)
	}
	aliceRooms := []string{"collaboration_1", "collaboration_11", "collaboration_3", "collaboration_5", "collaboration_7", "collaboration_9"}
	if got := roomsOf("user", "20"); !sameSet(got, aliceRooms) {
		t.Errorf("alice's rooms = %v, want %v", got, aliceRooms)
	}

	// Published to her collaborations: received; to another: not.
	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":12,"parent_id":null}}`)
	s.mustPublish(`{"event":"new_task","room":"collaboration_2","data":{"id":13,"parent_id":null}}`)
	s.mustPublish(`{"event":"status_update","room":"collaboration_9","data":{"run_id":40}}`)
	barrier(t, s, alice, node)
	if got := alice.events("new_task"); len(got) != 1 {
		t.Errorf("alice got new_task %d times, want once (collaboration 1 only)", len(got))
	} else {
		jsonEq(t, got[0].Args[0], `{"id":12,"parent_id":null}`)
	}
	jsonEq(t, alice.waitEvent("status_update", wait).Args[0], `{"run_id":40}`)
	if got := node.events("new_task"); len(got) != 1 {
		t.Errorf("node got new_task %d times, want once", len(got))
	}
	if n := len(node.events("status_update")); n != 0 {
		t.Errorf("node of collaboration 1 got the status_update of collaboration 9")
	}

	// One lookup each, with the clients' own tokens.
	for route, want := range map[string]int{v6apitest.RouteNode: 1, v6apitest.RouteValidate: 1,
		v6apitest.RouteUser: 1, v6apitest.RouteRules: 1, v6apitest.RouteCollaborations: 1, v6apitest.RouteLogin: 0} {
		if got := api.Calls(route); got != want {
			t.Errorf("%s called %d times, want %d", route, got, want)
		}
	}
	if got := s.metric(`eventserver_v6_api_requests_total{call="node",outcome="ok"}`); got != 1 {
		t.Errorf("eventserver_v6_api_requests_total{node,ok} = %v", got)
	}

	// The API goes down: new clients get invalid_token, with a log line that
	// names the call; the connected ones keep their rooms.
	api.Close()
	down := startPyNode(t, s, "node-8-api-down", clientOpts{token: api.NodeToken(8)})
	if ev := down.waitEvent("invalid_token", wait); len(ev.Args) != 0 {
		t.Errorf("invalid_token has %d arguments", len(ev.Args))
	}
	bob := startUI(t, s, "ui-bob-api-down", clientOpts{token: api.UserToken(21), transports: "websocket"})
	bob.waitEvent("invalid_token", wait)
	down.waitType("disconnect", wait)
	bob.waitType("disconnect", wait)
	if names := down.eventNames(); !slices.Equal(names, []string{"invalid_token"}) {
		t.Errorf("node 8 got %v, want only invalid_token", names)
	}
	logs := s.logText()
	for _, want := range []string{`"path":"/node/{id}"`, `"path":"/token/user/validate"`, `"outcome":"unreachable"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line with %s:\n%s", want, logs)
		}
	}
	if got := s.metric(`eventserver_auth_failures_total{reason="invalid"}`); got != 2 {
		t.Errorf("invalid auth failures %v, want 2", got)
	}
	s.mustPublish(`{"event":"new_task","room":"collaboration_1","data":{"id":14,"parent_id":null}}`)
	node.wait(wait, "new_task 14", func(m msg) bool {
		return m.Event == "new_task" && len(m.Args) == 1 && strings.Contains(string(m.Args[0]), `"id":14`)
	})
	for _, tok := range []string{nodeTok, aliceTok} {
		for _, part := range strings.Split(tok, ".") {
			if strings.Contains(logs, part) {
				t.Errorf("the logs contain part of a token: %q", part)
			}
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
