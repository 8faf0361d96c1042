// Package identity turns a verified token into the identity of a client: what
// kind of client it is, which organization and collaborations it belongs to,
// and therefore which rooms it reads.
package identity

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/textclip"
)

// Identity is who a connected client is.
type Identity struct {
	// Kind is rooms.KindNode or rooms.KindUser.
	Kind rooms.Kind
	// ID is the token's subject.
	ID auth.Subject
	// Name is the node's name or the user's name.
	Name string
	// OrganizationID is the client's own organization.
	OrganizationID int64
	// CollaborationIDs: for a node, exactly its one collaboration; for a
	// user, the collaborations whose events the user may receive.
	CollaborationIDs []int64
	// Scope is the user's event-receive scope; it is rooms.ScopeNone for
	// nodes.
	Scope rooms.Scope
}

// Rooms returns the rooms the client reads, sorted, or nil.
func (i *Identity) Rooms() []string {
	if i == nil {
		return nil
	}
	return rooms.For(rooms.Client{
		Kind:             i.Kind,
		OrganizationID:   i.OrganizationID,
		CollaborationIDs: i.CollaborationIDs,
		Scope:            i.Scope,
	})
}

// CollaborationID returns a node's one collaboration, and 0 for users.
func (i *Identity) CollaborationID() int64 {
	if i == nil || i.Kind != rooms.KindNode || len(i.CollaborationIDs) == 0 {
		return 0
	}
	return i.CollaborationIDs[0]
}

// Resolver finds out who the holder of a verified token is.
type Resolver interface {
	// Resolve turns a verified token into an identity. Errors wrap auth.ErrInvalid
	// (or auth.ErrExpired) so that callers can map them to protocol events.
	Resolve(ctx context.Context, token string, claims *auth.Claims) (*Identity, error)
}

// ClaimsResolver reads the identity from the token's own claims, for tokens
// minted by `eventserver token` or by an issuer that puts them there.
//
// A node token has client_type "node", sub, name, collaboration_id and
// organization_id. A user token has client_type "user", sub, name (or
// username), organization_id, event_scope (global, collaboration or
// organization, in any case; absent means no rooms) and collaboration_ids (an
// array of integers, required when event_scope is set). Ids are positive
// integers; numeric strings are refused.
type ClaimsResolver struct{}

var _ Resolver = ClaimsResolver{}

// Resolve implements Resolver. It does no I/O and ignores ctx and token.
func (ClaimsResolver) Resolve(_ context.Context, _ string, claims *auth.Claims) (*Identity, error) {
	if claims == nil {
		return nil, invalidf("no claims")
	}
	if err := checkSubject(claims.Subject); err != nil {
		return nil, err
	}
	kind, err := rooms.ParseKind(claims.ClientType)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	if kind == rooms.KindNode {
		return resolveNode(claims.Subject, claims.Raw)
	}
	return resolveUser(claims.Subject, claims.Raw)
}

// Claims returns the claims from which ClaimsResolver reads id: its inverse,
// for the tokens that `eventserver token`, the load generator and the tests
// mint. Ids are JSON numbers; a user's nil CollaborationIDs and ScopeNone
// leave collaboration_ids and event_scope out.
func Claims(id *Identity) map[string]any {
	c := map[string]any{
		rooms.ClientTypeClaim: string(id.Kind),
		"sub":                 subjectClaim(id.ID),
		"name":                id.Name,
		"organization_id":     id.OrganizationID,
	}
	switch id.Kind {
	case rooms.KindNode:
		c["collaboration_id"] = id.CollaborationID()
	case rooms.KindUser:
		if id.CollaborationIDs != nil {
			c["collaboration_ids"] = id.CollaborationIDs
		}
		if id.Scope != rooms.ScopeNone {
			c["event_scope"] = string(id.Scope)
		}
	}
	return c
}

// subjectClaim is sub as a token holds it: a number when it is numeric.
func subjectClaim(sub auth.Subject) any {
	if !sub.Numeric {
		return sub.Value
	}
	if n, ok := sub.Int64(); ok {
		return n
	}
	return json.Number(sub.Value)
}

func resolveNode(sub auth.Subject, raw map[string]any) (*Identity, error) {
	name, err := stringClaim(raw, "name")
	if err != nil {
		return nil, err
	}
	cid, err := idClaim(raw, "collaboration_id")
	if err != nil {
		return nil, err
	}
	oid, err := idClaim(raw, "organization_id")
	if err != nil {
		return nil, err
	}
	return &Identity{
		Kind:             rooms.KindNode,
		ID:               sub,
		Name:             name,
		OrganizationID:   oid,
		CollaborationIDs: []int64{cid},
	}, nil
}

func resolveUser(sub auth.Subject, raw map[string]any) (*Identity, error) {
	nameClaim := "name"
	if _, ok := raw["name"]; !ok {
		if _, ok := raw["username"]; ok {
			nameClaim = "username"
		}
	}
	name, err := stringClaim(raw, nameClaim)
	if err != nil {
		return nil, err
	}
	oid, err := idClaim(raw, "organization_id")
	if err != nil {
		return nil, err
	}

	scope := rooms.ScopeNone
	if v, ok := raw["event_scope"]; ok {
		s, isString := v.(string)
		if !isString {
			return nil, invalidf(`claim "event_scope" must be a string`)
		}
		if scope, ok = rooms.ParseScope(s); !ok {
			return nil, invalidf(`claim "event_scope" is %q, want global, collaboration or organization`, textclip.Cut(s, textclip.Name))
		}
	}

	var cids []int64
	if v, ok := raw["collaboration_ids"]; ok {
		if cids, err = idList(v, "collaboration_ids"); err != nil {
			return nil, err
		}
	} else if scope != rooms.ScopeNone {
		return nil, invalidf(`claim "collaboration_ids" is missing`)
	}

	return &Identity{
		Kind:             rooms.KindUser,
		ID:               sub,
		Name:             name,
		OrganizationID:   oid,
		CollaborationIDs: cids,
		Scope:            scope,
	}, nil
}

// checkSubject requires a subject, and a positive one when it is numeric.
func checkSubject(sub auth.Subject) error {
	if sub.Value == "" {
		return invalidf(`claim "sub" is missing`)
	}
	if sub.Numeric {
		if n, ok := sub.Int64(); !ok || n <= 0 {
			return invalidf(`claim "sub" must be a positive integer or a non-empty string`)
		}
	}
	return nil
}

func stringClaim(raw map[string]any, name string) (string, error) {
	v, ok := raw[name]
	if !ok {
		return "", invalidf("claim %q is missing", name)
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", invalidf("claim %q must be a non-empty string", name)
	}
	return s, nil
}

func idClaim(raw map[string]any, name string) (int64, error) {
	v, ok := raw[name]
	if !ok {
		return 0, invalidf("claim %q is missing", name)
	}
	id, ok := positiveInt(v)
	if !ok {
		return 0, invalidf("claim %q must be a positive integer", name)
	}
	return id, nil
}

// idList reads an array of positive integers, dropping duplicates and keeping
// the order of first occurrence. An empty array gives an empty, non-nil slice.
func idList(v any, name string) ([]int64, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, invalidf("claim %q must be an array of positive integers", name)
	}
	out := make([]int64, 0, len(arr))
	seen := make(map[int64]bool, len(arr))
	for _, e := range arr {
		id, ok := positiveInt(e)
		if !ok {
			return nil, invalidf("claim %q must be an array of positive integers", name)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// positiveInt accepts an integer greater than zero that fits an int64, as
// auth.ExactInteger reads it (exactly, never rounded through float64).
// Strings are refused.
func positiveInt(v any) (int64, bool) {
	n, ok := auth.ExactInteger(v)
	if !ok || !n.IsInt64() || n.Sign() <= 0 {
		return 0, false
	}
	return n.Int64(), true
}

// invalidError is a reason to refuse a token. It wraps auth.ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return "identity: " + e.msg }
func (e *invalidError) Unwrap() error { return auth.ErrInvalid }

// invalidf returns an error wrapping auth.ErrInvalid.
func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}
