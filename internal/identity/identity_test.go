package identity

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/pkg/rooms"
)

// claimsFrom builds verified claims the way auth.Verify does: from JSON, with
// numbers as json.Number.
func claimsFrom(t *testing.T, js string) *auth.Claims {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	c := &auth.Claims{Raw: raw, ExpiresAt: time.Unix(1795649087, 0)}
	if v, ok := raw["sub"]; ok {
		if sub, err := auth.SubjectFromClaim(v); err == nil {
			c.Subject = sub
		}
	}
	if s, ok := raw["client_type"].(string); ok {
		c.ClientType = s
	}
	return c
}

func TestClaimsResolver(t *testing.T) {
	const node = `"client_type":"node","sub":3,"name":"org2-node","organization_id":2`
	const user = `"client_type":"user","sub":7,"name":"alice","organization_id":2`

	tests := []struct {
		name      string
		claims    string
		want      *Identity
		wantRooms []string
		wantErr   string // substring of the error; "" means success
	}{
		{
			name:   "node",
			claims: `{` + node + `,"collaboration_id":1}`,
			want: &Identity{Kind: rooms.KindNode, ID: auth.Subject{Value: "3", Numeric: true}, Name: "org2-node",
				OrganizationID: 2, CollaborationIDs: []int64{1}},
			wantRooms: []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
		},
		{
			name:   "node with string sub",
			claims: `{"client_type":"node","sub":"node-uuid","name":"n","organization_id":5,"collaboration_id":9}`,
			want: &Identity{Kind: rooms.KindNode, ID: auth.Subject{Value: "node-uuid"}, Name: "n",
				OrganizationID: 5, CollaborationIDs: []int64{9}},
			wantRooms: []string{"all_nodes", "collaboration_9", "collaboration_9_organization_5"},
		},
		{
			name:   "user global",
			claims: `{` + user + `,"collaboration_ids":[3,1,2],"event_scope":"GLOBAL"}`,
			want: &Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7", Numeric: true}, Name: "alice",
				OrganizationID: 2, CollaborationIDs: []int64{3, 1, 2}, Scope: rooms.ScopeGlobal},
			wantRooms: []string{"collaboration_1", "collaboration_2", "collaboration_3"},
		},
		{
			name:      "user collaboration",
			claims:    `{` + user + `,"collaboration_ids":[1,2],"event_scope":"collaboration"}`,
			wantRooms: []string{"collaboration_1", "collaboration_2"},
		},
		{
			name:      "user organization",
			claims:    `{` + user + `,"collaboration_ids":[1,2],"event_scope":"Organization"}`,
			wantRooms: []string{"collaboration_1_organization_2", "collaboration_2_organization_2"},
		},
		{
			name:   "user without event_scope",
			claims: `{` + user + `,"collaboration_ids":[1,2]}`,
			want: &Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7", Numeric: true}, Name: "alice",
				OrganizationID: 2, CollaborationIDs: []int64{1, 2}, Scope: rooms.ScopeNone},
			wantRooms: nil,
		},
		{
			name:      "user without event_scope or collaboration_ids",
			claims:    `{` + user + `}`,
			wantRooms: nil,
		},
		{
			name:      "user with empty event_scope",
			claims:    `{` + user + `,"collaboration_ids":[1],"event_scope":""}`,
			wantRooms: nil,
		},
		{
			name:      "user with no collaborations",
			claims:    `{` + user + `,"collaboration_ids":[],"event_scope":"global"}`,
			wantRooms: nil,
		},
		{
			name:   "user duplicate collaboration_ids",
			claims: `{` + user + `,"collaboration_ids":[2,1,2,1],"event_scope":"collaboration"}`,
			want: &Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7", Numeric: true}, Name: "alice",
				OrganizationID: 2, CollaborationIDs: []int64{2, 1}, Scope: rooms.ScopeCollaboration},
			wantRooms: []string{"collaboration_1", "collaboration_2"},
		},
		{
			name:   "user with username",
			claims: `{"client_type":"user","sub":7,"username":"bob","organization_id":2,"collaboration_ids":[1],"event_scope":"collaboration"}`,
			want: &Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7", Numeric: true}, Name: "bob",
				OrganizationID: 2, CollaborationIDs: []int64{1}, Scope: rooms.ScopeCollaboration},
			wantRooms: []string{"collaboration_1"},
		},
		{
			name:      "user name wins over username",
			claims:    `{` + user + `,"username":"bob"}`,
			wantRooms: nil,
			want: &Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7", Numeric: true}, Name: "alice",
				OrganizationID: 2},
		},

		// Missing claims.
		{name: "node missing name", claims: `{"client_type":"node","sub":3,"organization_id":2,"collaboration_id":1}`, wantErr: `claim "name" is missing`},
		{name: "node empty name", claims: `{"client_type":"node","sub":3,"name":"","organization_id":2,"collaboration_id":1}`, wantErr: `claim "name" must be a non-empty string`},
		{name: "node name not a string", claims: `{"client_type":"node","sub":3,"name":5,"organization_id":2,"collaboration_id":1}`, wantErr: `claim "name" must be a non-empty string`},
		{name: "node missing collaboration_id", claims: `{` + node + `}`, wantErr: `claim "collaboration_id" is missing`},
		{name: "node missing organization_id", claims: `{"client_type":"node","sub":3,"name":"n","collaboration_id":1}`, wantErr: `claim "organization_id" is missing`},
		{name: "node missing sub", claims: `{"client_type":"node","name":"n","organization_id":2,"collaboration_id":1}`, wantErr: `claim "sub" is missing`},
		{name: "user missing name", claims: `{"client_type":"user","sub":7,"organization_id":2}`, wantErr: `claim "name" is missing`},
		{name: "user missing organization_id", claims: `{"client_type":"user","sub":7,"name":"a"}`, wantErr: `claim "organization_id" is missing`},
		{name: "user scope without collaboration_ids", claims: `{` + user + `,"event_scope":"global"}`, wantErr: `claim "collaboration_ids" is missing`},

		// Wrong types and values.
		{name: "string collaboration_id", claims: `{` + node + `,"collaboration_id":"1"}`, wantErr: `identity: claim "collaboration_id" must be a positive integer`},
		{name: "string organization_id", claims: `{"client_type":"node","sub":3,"name":"n","organization_id":"2","collaboration_id":1}`, wantErr: `claim "organization_id" must be a positive integer`},
		{name: "zero collaboration_id", claims: `{` + node + `,"collaboration_id":0}`, wantErr: `claim "collaboration_id" must be a positive integer`},
		{name: "negative collaboration_id", claims: `{` + node + `,"collaboration_id":-1}`, wantErr: `claim "collaboration_id" must be a positive integer`},
		{name: "fractional collaboration_id", claims: `{` + node + `,"collaboration_id":1.5}`, wantErr: `claim "collaboration_id" must be a positive integer`},
		{name: "null collaboration_id", claims: `{` + node + `,"collaboration_id":null}`, wantErr: `claim "collaboration_id" must be a positive integer`},
		{name: "zero organization_id", claims: `{"client_type":"user","sub":7,"name":"a","organization_id":0}`, wantErr: `claim "organization_id" must be a positive integer`},
		{name: "negative organization_id", claims: `{"client_type":"user","sub":7,"name":"a","organization_id":-2}`, wantErr: `claim "organization_id" must be a positive integer`},
		{name: "zero sub", claims: `{"client_type":"node","sub":0,"name":"n","organization_id":2,"collaboration_id":1}`, wantErr: `claim "sub" must be a positive integer`},
		{name: "negative sub", claims: `{"client_type":"user","sub":-7,"name":"a","organization_id":2}`, wantErr: `claim "sub" must be a positive integer`},
		{name: "collaboration_ids not an array", claims: `{` + user + `,"collaboration_ids":1,"event_scope":"global"}`, wantErr: `claim "collaboration_ids" must be an array of positive integers`},
		{name: "collaboration_ids object", claims: `{` + user + `,"collaboration_ids":{"1":true},"event_scope":"global"}`, wantErr: `claim "collaboration_ids" must be an array`},
		{name: "collaboration_ids with a string", claims: `{` + user + `,"collaboration_ids":[1,"2"],"event_scope":"global"}`, wantErr: `claim "collaboration_ids" must be an array of positive integers`},
		{name: "collaboration_ids with a float", claims: `{` + user + `,"collaboration_ids":[1,2.5],"event_scope":"global"}`, wantErr: `claim "collaboration_ids" must be an array of positive integers`},
		{name: "collaboration_ids with zero", claims: `{` + user + `,"collaboration_ids":[0]}`, wantErr: `claim "collaboration_ids" must be an array of positive integers`},
		{name: "unknown event_scope", claims: `{` + user + `,"collaboration_ids":[1],"event_scope":"own"}`, wantErr: `claim "event_scope" is "own"`},
		{name: "event_scope not a string", claims: `{` + user + `,"collaboration_ids":[1],"event_scope":1}`, wantErr: `claim "event_scope" must be a string`},

		// Client types.
		{name: "unknown client_type", claims: `{"client_type":"admin","sub":1,"name":"a","organization_id":1,"collaboration_id":1}`, wantErr: `client_type "admin" is not accepted`},
		{name: "container", claims: `{"client_type":"container","sub":"x","name":"a","organization_id":1,"collaboration_id":1}`, wantErr: `client_type "container" is not accepted`},
		{name: "no client_type", claims: `{"sub":1,"name":"a","organization_id":1,"collaboration_id":1}`, wantErr: `claim "client_type" is missing`},
	}

	var r Resolver = ClaimsResolver{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), "token", claimsFrom(t, tt.claims))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Resolve succeeded with %+v, want error containing %q", got, tt.wantErr)
				}
				if got != nil {
					t.Errorf("Resolve returned an identity with an error")
				}
				if !errors.Is(err, auth.ErrInvalid) {
					t.Errorf("error %v does not wrap auth.ErrInvalid", err)
				}
				if !strings.HasPrefix(err.Error(), "identity: ") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q, want prefix identity: and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if tt.want != nil {
				if got.Kind != tt.want.Kind || got.ID != tt.want.ID || got.Name != tt.want.Name ||
					got.OrganizationID != tt.want.OrganizationID || got.Scope != tt.want.Scope ||
					!slices.Equal(got.CollaborationIDs, tt.want.CollaborationIDs) {
					t.Errorf("Resolve = %+v, want %+v", got, tt.want)
				}
			}
			if rs := got.Rooms(); !slices.Equal(rs, tt.wantRooms) {
				t.Errorf("Rooms() = %q, want %q", rs, tt.wantRooms)
			}
		})
	}
}

func TestClaimsResolverNilClaims(t *testing.T) {
	_, err := ClaimsResolver{}.Resolve(context.Background(), "", nil)
	if !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("Resolve(nil) = %v, want auth.ErrInvalid", err)
	}
}

func TestClaimsResolverGoNumbers(t *testing.T) {
	// Claims built by hand, with Go numbers rather than json.Number.
	c := &auth.Claims{
		Subject:    auth.Subject{Value: "4", Numeric: true},
		ClientType: "node",
		Raw:        map[string]any{"name": "n", "organization_id": int64(2), "collaboration_id": float64(6)},
	}
	id, err := ClaimsResolver{}.Resolve(context.Background(), "", c)
	if err != nil {
		t.Fatal(err)
	}
	if id.OrganizationID != 2 || id.CollaborationID() != 6 {
		t.Errorf("got %+v", id)
	}
}

func TestCollaborationID(t *testing.T) {
	tests := []struct {
		id   *Identity
		want int64
	}{
		{&Identity{Kind: rooms.KindNode, CollaborationIDs: []int64{4}}, 4},
		{&Identity{Kind: rooms.KindNode}, 0},
		{&Identity{Kind: rooms.KindUser, CollaborationIDs: []int64{4, 5}}, 0},
		{nil, 0},
	}
	for _, tt := range tests {
		if got := tt.id.CollaborationID(); got != tt.want {
			t.Errorf("%+v.CollaborationID() = %d, want %d", tt.id, got, tt.want)
		}
	}
	var nilID *Identity
	if nilID.Rooms() != nil {
		t.Error("nil identity has rooms")
	}
}

// TestMintVerifyResolve runs a minted token through the whole chain.
func TestMintVerifyResolve(t *testing.T) {
	id, err := mintResolve(t, map[string]any{
		"client_type": "user", "sub": 7, "name": "alice", "organization_id": 2,
		"collaboration_ids": []int64{1, 2}, "event_scope": "ORGANIZATION",
	}, time.Unix(1795627487, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"collaboration_1_organization_2", "collaboration_2_organization_2"}
	if got := id.Rooms(); !slices.Equal(got, want) {
		t.Errorf("Rooms() = %q, want %q", got, want)
	}
	if id.CollaborationID() != 0 {
		t.Errorf("user CollaborationID() = %d", id.CollaborationID())
	}
}
