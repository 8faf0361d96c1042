// Package rooms decides which Socket.IO rooms a vantage6 client may read.
//
// It is pure: no I/O, no clock, no globals that change. The table it
// implements is the one of vantage6 4.14 (see docs/protocol in the README):
//
//	node                                   all_nodes, collaboration_<cid>, collaboration_<cid>_organization_<oid>
//	user, event RECEIVE at global scope    collaboration_<id> for every collaboration
//	user, event RECEIVE collaboration      collaboration_<id> for each collaboration of the user's organization
//	user, event RECEIVE organization       collaboration_<id>_organization_<user org> for each of those
//	anyone else                            none
package rooms

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// AllNodes is the room every node joins. Nothing but node-online and
// node-offline is sent to it, and never a join/leave message: it mixes nodes
// of different collaborations.
const AllNodes = "all_nodes"

// Kind is the type of client.
type Kind string

const (
	KindNode Kind = "node"
	KindUser Kind = "user"
)

// ClientTypeClaim is the claim of a vantage6 4.x token that says its Kind.
const ClientTypeClaim = "client_type"

// ParseKind reads the kind a token's client_type claim says: "node" or
// "user". Any other value, "" (the claim is missing) included, is a
// *KindError.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindNode, KindUser:
		return k, nil
	}
	return "", &KindError{Claim: ClientTypeClaim, Value: s, Missing: s == ""}
}

// KindError says that the claim naming a client's kind is missing or names
// neither a node nor a user.
type KindError struct {
	// Claim is the claim's name: ClientTypeClaim, or vantage6 5.x's own.
	Claim string
	// Value is what the claim says; its error shows at most 40 bytes of it.
	Value string
	// Missing: the token has no such claim.
	Missing bool
}

func (e *KindError) Error() string {
	if e.Missing {
		return fmt.Sprintf(`claim %q is missing, want "node" or "user"`, e.Claim)
	}
	const limit = 40
	v := e.Value
	if len(v) > limit {
		v = v[:limit] + "..."
	}
	return fmt.Sprintf(`%s %q is not accepted, want "node" or "user"`, e.Claim, v)
}

// Scope is the widest scope at which a user may receive events (the vantage6
// rule "event", operation RECEIVE). The zero value means no rule: no rooms.
type Scope string

const (
	ScopeNone          Scope = ""
	ScopeGlobal        Scope = "global"
	ScopeCollaboration Scope = "collaboration"
	ScopeOrganization  Scope = "organization"
)

// ParseScope accepts the scope names in any case (vantage6 writes them in
// capitals). It reports false for an unknown name.
func ParseScope(s string) (Scope, bool) {
	switch sc := Scope(strings.ToLower(s)); sc {
	case ScopeNone, ScopeGlobal, ScopeCollaboration, ScopeOrganization:
		return sc, true
	}
	return ScopeNone, false
}

// Client is what the table needs to know about a client.
type Client struct {
	Kind Kind
	// OrganizationID is the client's own organization.
	OrganizationID int64
	// CollaborationIDs: for a node, exactly its one collaboration; for a user,
	// the collaborations of the user's organization, or every collaboration
	// when Scope is ScopeGlobal.
	CollaborationIDs []int64
	// Scope applies to users only.
	Scope Scope
}

// Collaboration is the room of every client of collaboration cid.
func Collaboration(cid int64) string {
	return "collaboration_" + strconv.FormatInt(cid, 10)
}

// CollaborationOrganization is the room of the clients of organization oid
// within collaboration cid.
func CollaborationOrganization(cid, oid int64) string {
	return "collaboration_" + strconv.FormatInt(cid, 10) + "_organization_" + strconv.FormatInt(oid, 10)
}

// For returns the rooms of c, sorted and without duplicates, or nil.
func For(c Client) []string {
	var out []string
	switch c.Kind {
	case KindNode:
		if len(c.CollaborationIDs) == 0 {
			return nil
		}
		out = append(out, AllNodes)
		for _, cid := range c.CollaborationIDs {
			out = append(out, Collaboration(cid), CollaborationOrganization(cid, c.OrganizationID))
		}
	case KindUser:
		switch c.Scope {
		case ScopeGlobal, ScopeCollaboration:
			for _, cid := range c.CollaborationIDs {
				out = append(out, Collaboration(cid))
			}
		case ScopeOrganization:
			for _, cid := range c.CollaborationIDs {
				out = append(out, CollaborationOrganization(cid, c.OrganizationID))
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Valid reports whether room is a room of the table: all_nodes,
// collaboration_<id> or collaboration_<id>_organization_<id>, each id a
// decimal of 1 to 19 digits without a leading zero.
func Valid(room string) bool {
	if room == AllNodes {
		return true
	}
	rest, ok := strings.CutPrefix(room, "collaboration_")
	if !ok {
		return false
	}
	cid, oid, withOrg := strings.Cut(rest, "_organization_")
	return validID(cid) && (!withOrg || validID(oid))
}

// validID accepts what [1-9][0-9]{0,18} matches.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 19 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Announced reports whether joining or leaving room is announced to the room
// with a "message" event. all_nodes never is.
func Announced(room string) bool { return room != AllNodes }
