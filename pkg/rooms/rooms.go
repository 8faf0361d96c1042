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

// Announced reports whether joining or leaving room is announced to the room
// with a "message" event. all_nodes never is.
func Announced(room string) bool { return room != AllNodes }
