package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// mapResolver resolves a token by its subject, from a map.
type mapResolver map[string]*identity.Identity

func (r mapResolver) Resolve(_ context.Context, _ string, c *auth.Claims) (*identity.Identity, error) {
	if id, ok := r[c.Subject.Value]; ok {
		cp := *id
		return &cp, nil
	}
	return nil, auth.ErrInvalid
}

func user(id, name string, org int64, scope rooms.Scope, collabs ...int64) *identity.Identity {
	return &identity.Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: id, Numeric: true}, Name: name,
		OrganizationID: org, CollaborationIDs: collabs, Scope: scope}
}

func node(id, name string, org, collab int64) *identity.Identity {
	return &identity.Identity{Kind: rooms.KindNode, ID: auth.Subject{Value: id, Numeric: true}, Name: name,
		OrganizationID: org, CollaborationIDs: []int64{collab}}
}

// roomsServer is a hub whose clients are resolved by r.
func roomsServer(t *testing.T, r identity.Resolver) (*Hub, string) {
	t.Helper()
	h, _, base := hubServer(t, Config{Resolver: r})
	return h, base
}

// TestRoomRules: the rooms a node and a user of each scope join, and the
// message texts each room gets when it joins and when it leaves. Observers
// sit in the rooms: a collaboration-scope user in collaboration_1 and
// collaboration_3, organization-scope users in collaboration_1_organization_2,
// collaboration_3_organization_2 and collaboration_1_organization_4, and a
// node of collaboration 9 in all_nodes (never announced).
func TestRoomRules(t *testing.T) {
	noLeaks(t)
	ids := mapResolver{
		"obs_c1":    user("101", "obs-c1", 8, rooms.ScopeCollaboration, 1),
		"obs_c3":    user("103", "obs-c3", 8, rooms.ScopeCollaboration, 3),
		"obs_c1o2":  user("112", "obs-c1o2", 2, rooms.ScopeOrganization, 1),
		"obs_c3o2":  user("132", "obs-c3o2", 2, rooms.ScopeOrganization, 3),
		"obs_c1o4":  user("114", "obs-c1o4", 4, rooms.ScopeOrganization, 1),
		"obs_nodes": node("199", "obs-n9", 9, 9),

		"node":          node("5", "n5", 2, 1),
		"global":        user("7", "alice", 2, rooms.ScopeGlobal, 1, 3),
		"collaboration": user("8", "bob", 2, rooms.ScopeCollaboration, 1, 3),
		"organization":  user("9", "carol", 2, rooms.ScopeOrganization, 1, 3),
		"no_scope":      user("10", "dave", 2, rooms.ScopeNone, 1, 3),
	}
	h, base := roomsServer(t, ids)
	observers := map[string]*pollClient{}
	for _, sub := range []string{"obs_c1", "obs_c3", "obs_c1o2", "obs_c3o2", "obs_c1o4", "obs_nodes"} {
		observers[sub] = connectAs(t, base, sub)
	}
	observerRooms := []string{"collaboration_1", "collaboration_3", "collaboration_1_organization_2",
		"collaboration_3_organization_2", "collaboration_1_organization_4", rooms.AllNodes}
	for _, r := range observerRooms {
		inRoom(t, h, r, 1)
	}
	// Each user observer's own join text is announced just after it joins
	// (so it may follow inRoom): taken before the first marker.
	for _, sub := range []string{"obs_c1", "obs_c3", "obs_c1o2", "obs_c3o2", "obs_c1o4"} {
		text := "User <" + ids[sub].Name + "> joined room"
		o := observers[sub]
		if !slices.ContainsFunc(o.events, func(e string) bool { return strings.Contains(e, text) }) {
			o.waitFor(func(p string) bool { return strings.Contains(p, text) }, sub+"'s own join text")
		}
	}

	// markAll emits a marker to every observer's rooms and waits until each
	// has it: what was emitted before it has been received.
	markers := 0
	markAll := func() {
		t.Helper()
		markers++
		text := fmt.Sprintf("marker-%d", markers)
		if err := h.Emit(observerRooms, nil, "message", text); err != nil {
			t.Fatal(err)
		}
		for _, o := range observers {
			o.waitFor(func(p string) bool { return strings.Contains(p, `"`+text+`"`) }, text)
		}
	}
	// messages returns the message texts each observer received since seen.
	snapshot := func() map[string]int {
		seen := map[string]int{}
		for sub, o := range observers {
			seen[sub] = len(o.events)
		}
		return seen
	}
	messages := func(seen map[string]int) map[string][]string {
		got := map[string][]string{}
		for sub, o := range observers {
			for _, e := range o.events[seen[sub]:] {
				rest, ok := strings.CutPrefix(e, "message ")
				var text string
				if ok && json.Unmarshal([]byte(rest), &text) == nil && !strings.HasPrefix(text, "marker-") {
					got[sub] = append(got[sub], text)
				}
			}
		}
		return got
	}
	markAll()

	tests := []struct {
		sub   string
		rooms []string
		// join and leave are the message texts each observer gets.
		join, leave map[string][]string
	}{
		{sub: "node", rooms: []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
			join: map[string][]string{
				"obs_c1":   {"Node <n5> joined room <collaboration_1>"},
				"obs_c1o2": {"Node <n5> joined room <collaboration_1_organization_2>"},
			},
			leave: map[string][]string{
				"obs_c1":   {"n5 left room collaboration_1"},
				"obs_c1o2": {"n5 left room collaboration_1_organization_2"},
			}},
		{sub: "global", rooms: []string{"collaboration_1", "collaboration_3"},
			join: map[string][]string{
				"obs_c1": {"User <alice> joined room <collaboration_1>"},
				"obs_c3": {"User <alice> joined room <collaboration_3>"},
			},
			leave: map[string][]string{
				"obs_c1": {"alice left room collaboration_1"},
				"obs_c3": {"alice left room collaboration_3"},
			}},
		{sub: "collaboration", rooms: []string{"collaboration_1", "collaboration_3"},
			join: map[string][]string{
				"obs_c1": {"User <bob> joined room <collaboration_1>"},
				"obs_c3": {"User <bob> joined room <collaboration_3>"},
			},
			leave: map[string][]string{
				"obs_c1": {"bob left room collaboration_1"},
				"obs_c3": {"bob left room collaboration_3"},
			}},
		{sub: "organization", rooms: []string{"collaboration_1_organization_2", "collaboration_3_organization_2"},
			join: map[string][]string{
				"obs_c1o2": {"User <carol> joined room <collaboration_1_organization_2>"},
				"obs_c3o2": {"User <carol> joined room <collaboration_3_organization_2>"},
			},
			leave: map[string][]string{
				"obs_c1o2": {"carol left room collaboration_1_organization_2"},
				"obs_c3o2": {"carol left room collaboration_3_organization_2"},
			}},
		{sub: "no_scope", rooms: nil, join: map[string][]string{}, leave: map[string][]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.sub, func(t *testing.T) {
			seen := snapshot()
			c := connectAs(t, base, tc.sub)
			name := ids[tc.sub].Name
			var got []string
			testwait.For(t, 5*time.Second, func() error {
				list, err := h.FetchSockets(context.Background(), nil)
				if err != nil {
					return err
				}
				for _, s := range list {
					if d, ok := s.Data.(map[string]any); ok && d["name"] == name {
						got = slices.DeleteFunc(s.Rooms, func(r string) bool { return r == s.ID })
						if len(got) == 0 {
							got = nil
						}
						if !slices.Equal(got, tc.rooms) {
							return fmt.Errorf("rooms %q, want %q", got, tc.rooms)
						}
						return nil
					}
				}
				return fmt.Errorf("%s: no socket", name)
			})
			for sub, want := range tc.join {
				until(observers[sub], func() bool { return len(messages(seen)[sub]) >= len(want) }, sub+" join texts")
			}
			markAll()
			if got := messages(seen); !equalTexts(got, tc.join) {
				t.Errorf("join texts:\n got %q\nwant %q", got, tc.join)
			}

			seen = snapshot()
			post(t, c.u, "41/tasks,")
			testwait.For(t, 5*time.Second, func() error {
				list, err := h.FetchSockets(context.Background(), nil)
				if err != nil {
					return err
				}
				for _, s := range list {
					if d, ok := s.Data.(map[string]any); ok && d["name"] == name {
						return fmt.Errorf("%s still connected", name)
					}
				}
				return nil
			})
			for sub, want := range tc.leave {
				until(observers[sub], func() bool { return len(messages(seen)[sub]) >= len(want) }, sub+" leave texts")
			}
			markAll()
			if got := messages(seen); !equalTexts(got, tc.leave) {
				t.Errorf("leave texts:\n got %q\nwant %q", got, tc.leave)
			}
		})
	}
}

// until polls c until cond holds (at once if it already does).
func until(c *pollClient, cond func() bool, what string) {
	c.t.Helper()
	if !cond() {
		c.waitFor(func(string) bool { return cond() }, what)
	}
}

func equalTexts(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
