package rooms

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestFor(t *testing.T) {
	tests := []struct {
		name   string
		client Client
		want   []string
	}{
		{
			name:   "node",
			client: Client{Kind: KindNode, OrganizationID: 2, CollaborationIDs: []int64{1}},
			want:   []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
		},
		{
			name:   "node with large ids",
			client: Client{Kind: KindNode, OrganizationID: 12345, CollaborationIDs: []int64{987654321}},
			want:   []string{"all_nodes", "collaboration_987654321", "collaboration_987654321_organization_12345"},
		},
		{
			name:   "node scope is ignored",
			client: Client{Kind: KindNode, OrganizationID: 2, CollaborationIDs: []int64{1}, Scope: ScopeOrganization},
			want:   []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
		},
		{
			name:   "node with its collaboration twice",
			client: Client{Kind: KindNode, OrganizationID: 2, CollaborationIDs: []int64{1, 1}},
			want:   []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
		},
		{
			name:   "node without collaboration",
			client: Client{Kind: KindNode, OrganizationID: 2},
			want:   nil,
		},
		{
			name:   "node with empty collaboration list",
			client: Client{Kind: KindNode, OrganizationID: 2, CollaborationIDs: []int64{}},
			want:   nil,
		},
		{
			name:   "user global over several collaborations",
			client: Client{Kind: KindUser, OrganizationID: 2, CollaborationIDs: []int64{3, 1, 2}, Scope: ScopeGlobal},
			want:   []string{"collaboration_1", "collaboration_2", "collaboration_3"},
		},
		{
			name:   "user collaboration scope",
			client: Client{Kind: KindUser, OrganizationID: 2, CollaborationIDs: []int64{4, 1}, Scope: ScopeCollaboration},
			want:   []string{"collaboration_1", "collaboration_4"},
		},
		{
			name:   "user organization scope",
			client: Client{Kind: KindUser, OrganizationID: 2, CollaborationIDs: []int64{4, 1}, Scope: ScopeOrganization},
			want:   []string{"collaboration_1_organization_2", "collaboration_4_organization_2"},
		},
		{
			name:   "user global duplicates removed",
			client: Client{Kind: KindUser, OrganizationID: 2, CollaborationIDs: []int64{2, 1, 2, 1}, Scope: ScopeGlobal},
			want:   []string{"collaboration_1", "collaboration_2"},
		},
		{
			name:   "user organization duplicates removed",
			client: Client{Kind: KindUser, OrganizationID: 7, CollaborationIDs: []int64{5, 5}, Scope: ScopeOrganization},
			want:   []string{"collaboration_5_organization_7"},
		},
		{
			name:   "user rooms sorted as strings",
			client: Client{Kind: KindUser, OrganizationID: 2, CollaborationIDs: []int64{10, 2, 1}, Scope: ScopeCollaboration},
			want:   []string{"collaboration_1", "collaboration_10", "collaboration_2"},
		},
		{
			name:   "user with no scope",
			client: Client{Kind: KindUser, OrganizationID: 2, CollaborationIDs: []int64{1, 2}},
			want:   nil,
		},
		{
			name:   "user with scope but no collaborations",
			client: Client{Kind: KindUser, OrganizationID: 2, Scope: ScopeGlobal},
			want:   nil,
		},
		{
			name:   "user with unknown scope",
			client: Client{Kind: KindUser, OrganizationID: 2, CollaborationIDs: []int64{1}, Scope: Scope("own")},
			want:   nil,
		},
		{
			name:   "unknown kind",
			client: Client{Kind: Kind("container"), OrganizationID: 2, CollaborationIDs: []int64{1}, Scope: ScopeGlobal},
			want:   nil,
		},
		{
			name:   "empty kind",
			client: Client{OrganizationID: 2, CollaborationIDs: []int64{1}, Scope: ScopeGlobal},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.client.CollaborationIDs)
			got := For(tt.client)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("For(%+v) = %q, want %q", tt.client, got, tt.want)
			}
			if tt.want == nil && got != nil {
				t.Fatalf("For(%+v) = %#v, want nil", tt.client, got)
			}
			if !slices.IsSorted(got) {
				t.Errorf("For(%+v) = %q is not sorted", tt.client, got)
			}
			if len(slices.Compact(slices.Clone(got))) != len(got) {
				t.Errorf("For(%+v) = %q has duplicates", tt.client, got)
			}
			if !slices.Equal(in, tt.client.CollaborationIDs) {
				t.Errorf("For modified CollaborationIDs: %v, was %v", tt.client.CollaborationIDs, in)
			}
		})
	}
}

func TestForNeverGivesUsersAllNodes(t *testing.T) {
	scopes := []Scope{ScopeNone, ScopeGlobal, ScopeCollaboration, ScopeOrganization, Scope("GLOBAL"), Scope("x")}
	collabs := [][]int64{nil, {}, {1}, {1, 2, 3}, {3, 3}, {0}, {-1}}
	for _, s := range scopes {
		for _, cids := range collabs {
			for _, oid := range []int64{0, 1, 99} {
				c := Client{Kind: KindUser, OrganizationID: oid, CollaborationIDs: cids, Scope: s}
				if got := For(c); slices.Contains(got, AllNodes) {
					t.Errorf("For(%+v) = %q contains %q", c, got, AllNodes)
				}
			}
		}
	}
}

func TestParseScope(t *testing.T) {
	tests := []struct {
		in     string
		want   Scope
		wantOK bool
	}{
		{"", ScopeNone, true},
		{"global", ScopeGlobal, true},
		{"GLOBAL", ScopeGlobal, true},
		{"Global", ScopeGlobal, true},
		{"collaboration", ScopeCollaboration, true},
		{"COLLABORATION", ScopeCollaboration, true},
		{"Collaboration", ScopeCollaboration, true},
		{"organization", ScopeOrganization, true},
		{"ORGANIZATION", ScopeOrganization, true},
		{"Organization", ScopeOrganization, true},
		// The doc comment promises "any case".
		{"gLoBaL", ScopeGlobal, true},
		{"collaboratioN", ScopeCollaboration, true},
		{"ORGANISATION", ScopeNone, false},
		{"own", ScopeNone, false},
		{"OWN", ScopeNone, false},
		{"none", ScopeNone, false},
		{"organisation", ScopeNone, false},
		{" global", ScopeNone, false},
		{"global ", ScopeNone, false},
		{"all", ScopeNone, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseScope(tt.in)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseScope(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAnnounced(t *testing.T) {
	tests := []struct {
		room string
		want bool
	}{
		{AllNodes, false},
		{"all_nodes", false},
		{"collaboration_1", true},
		{"collaboration_1_organization_2", true},
		{Collaboration(7), true},
		{CollaborationOrganization(7, 8), true},
		{"", true},
		{"ALL_NODES", true},
	}
	for _, tt := range tests {
		t.Run(tt.room, func(t *testing.T) {
			if got := Announced(tt.room); got != tt.want {
				t.Errorf("Announced(%q) = %v, want %v", tt.room, got, tt.want)
			}
		})
	}
}

func TestRoomNames(t *testing.T) {
	if got := Collaboration(1); got != "collaboration_1" {
		t.Errorf("Collaboration(1) = %q", got)
	}
	if got := CollaborationOrganization(1, 2); got != "collaboration_1_organization_2" {
		t.Errorf("CollaborationOrganization(1, 2) = %q", got)
	}
}

// formerRoom is the grammar v6bridge had as a regular expression, before
// Valid: Valid must accept exactly what it matched.
var formerRoom = regexp.MustCompile(`^(all_nodes|collaboration_[1-9][0-9]{0,18}(_organization_[1-9][0-9]{0,18})?)$`)

var roomSeeds = []string{
	"all_nodes", "collaboration_1", "collaboration_1_organization_2", "collaboration_9223372036854775807",
	"collaboration_9999999999999999999", "collaboration_10000000000000000000", "collaboration_0", "collaboration_01",
	"collaboration_", "collaboration_1_organization_", "collaboration_1_organization_0", "collaboration_1_organization_2_organization_3",
	"collaboration_-1", "collaboration_+1", "collaboration_1 ", " all_nodes", "all_nodes\n", "ALL_NODES", "Collaboration_1",
	"collaboration_1_organization_2\n", "collaboration_1_org_2", "collaboration_1_organization_", "", "sid-abc", "collaboration_١",
}

func TestValid(t *testing.T) {
	for _, room := range append(roomSeeds, Collaboration(7), CollaborationOrganization(7, 8), AllNodes) {
		if got, want := Valid(room), formerRoom.MatchString(room); got != want {
			t.Errorf("Valid(%q) = %v, want %v", room, got, want)
		}
	}
	for _, room := range []string{AllNodes, "collaboration_1", "collaboration_12_organization_34"} {
		if !Valid(room) {
			t.Errorf("Valid(%q) = false", room)
		}
	}
	if Valid("collaboration_0") || Valid("room") {
		t.Error("Valid accepts collaboration_0 or room")
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range roomSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, room string) {
		if got, want := Valid(room), formerRoom.MatchString(room); got != want {
			t.Errorf("Valid(%q) = %v, the grammar says %v", room, got, want)
		}
	})
}

func TestParseKind(t *testing.T) {
	for _, k := range []Kind{KindNode, KindUser} {
		if got, err := ParseKind(string(k)); got != k || err != nil {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
	}
	long := strings.Repeat("x", 41)
	for in, want := range map[string]string{
		"":          `claim "client_type" is missing, want "node" or "user"`,
		"container": `client_type "container" is not accepted, want "node" or "user"`,
		"Node":      `client_type "Node" is not accepted, want "node" or "user"`,
		long:        `client_type "` + long[:40] + `..." is not accepted, want "node" or "user"`,
	} {
		got, err := ParseKind(in)
		var ke *KindError
		if got != "" || !errors.As(err, &ke) || err.Error() != want {
			t.Errorf("ParseKind(%q) = %q, %v; want the error %s", in, got, err, want)
		}
	}
	five := &KindError{Claim: "vantage6_client_type", Value: ""}
	if got := five.Error(); got != `vantage6_client_type "" is not accepted, want "node" or "user"` {
		t.Errorf("an empty value that is there: %s", got)
	}
}
