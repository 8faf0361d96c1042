package identity

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/pkg/rooms"
)

// TestClaimsRoundTrip: a token minted from Claims(x) and verified resolves
// to x again, for nodes and for users of each scope.
func TestClaimsRoundTrip(t *testing.T) {
	user := func(sub auth.Subject, scope rooms.Scope, cids []int64) *Identity {
		return &Identity{Kind: rooms.KindUser, ID: sub, Name: "alice", OrganizationID: 2, CollaborationIDs: cids, Scope: scope}
	}
	for name, want := range map[string]*Identity{
		"node": {Kind: rooms.KindNode, ID: auth.NumericSubject(3), Name: "org2-node3", OrganizationID: 2,
			CollaborationIDs: []int64{1}},
		"node string sub": {Kind: rooms.KindNode, ID: auth.Subject{Value: "3f2c9a4e-kc"}, Name: "kc-node",
			OrganizationID: 9223372036854775807, CollaborationIDs: []int64{9007199254740993}},
		"user no rule":              user(auth.NumericSubject(7), rooms.ScopeNone, nil),
		"user no rule, empty list":  user(auth.NumericSubject(7), rooms.ScopeNone, []int64{}),
		"user global":               user(auth.NumericSubject(7), rooms.ScopeGlobal, []int64{1, 2, 9007199254740993}),
		"user collaboration":        user(auth.NumericSubject(9223372036854775807), rooms.ScopeCollaboration, []int64{4, 1}),
		"user organization":         user(auth.Subject{Value: "6f9619ff-8b86"}, rooms.ScopeOrganization, []int64{2}),
		"user collaboration, empty": user(auth.NumericSubject(5), rooms.ScopeCollaboration, []int64{}),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := mintResolve(t, Claims(want), time.Now())
			if err != nil {
				t.Fatalf("Resolve(Claims(x)): %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Resolve(Claims(x)) = %+v, want %+v", got, want)
			}
		})
	}
}

// mintResolve mints a token with claims as if at now, verifies it and
// resolves it with ClaimsResolver, as the server does.
func mintResolve(t *testing.T, claims map[string]any, now time.Time) (*Identity, error) {
	t.Helper()
	secret := []byte("vantage6-secret")
	token, err := auth.Mint(secret, claims, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{HMACSecret: secret, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	verified, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	return ClaimsResolver{}.Resolve(context.Background(), token, verified)
}

// TestClaimsShape: the claims are the ones the README documents, with
// numbers as numbers.
func TestClaimsShape(t *testing.T) {
	got := Claims(&Identity{Kind: rooms.KindNode, ID: auth.NumericSubject(3), Name: "n", OrganizationID: 2, CollaborationIDs: []int64{1}})
	want := map[string]any{"client_type": "node", "sub": int64(3), "name": "n", "organization_id": int64(2), "collaboration_id": int64(1)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("node claims %#v, want %#v", got, want)
	}
	got = Claims(&Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "u"}, Name: "u", OrganizationID: 1, CollaborationIDs: []int64{5}, Scope: rooms.ScopeCollaboration})
	want = map[string]any{"client_type": "user", "sub": "u", "name": "u", "organization_id": int64(1), "collaboration_ids": []int64{5}, "event_scope": "collaboration"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("user claims %#v, want %#v", got, want)
	}
}
