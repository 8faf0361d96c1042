package hub

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/socketio"
)

// TestKeepOnExpiry: only users under the keep policy keep their socket when
// their token expires; nodes never do (the real node logs in again).
func TestKeepOnExpiry(t *testing.T) {
	tests := []struct {
		kind   rooms.Kind
		policy UserExpiry
		want   bool
	}{
		{rooms.KindUser, UserExpiryKeep, true},
		{rooms.KindUser, UserExpiryDisconnect, false},
		{rooms.KindNode, UserExpiryKeep, false},
		{rooms.KindNode, UserExpiryDisconnect, false},
	}
	for _, tt := range tests {
		if got := keepOnExpiry(tt.kind, tt.policy); got != tt.want {
			t.Errorf("keepOnExpiry(%s, %s) = %v, want %v", tt.kind, tt.policy, got, tt.want)
		}
	}
}

// TestMayAdmin: /admin is for users with the global event scope only.
func TestMayAdmin(t *testing.T) {
	tests := []struct {
		name string
		id   *identity.Identity
		want bool
	}{
		{"no identity", nil, false},
		{"global user", &identity.Identity{Kind: rooms.KindUser, Scope: rooms.ScopeGlobal}, true},
		{"collaboration user", &identity.Identity{Kind: rooms.KindUser, Scope: rooms.ScopeCollaboration}, false},
		{"organization user", &identity.Identity{Kind: rooms.KindUser, Scope: rooms.ScopeOrganization}, false},
		{"user without event rule", &identity.Identity{Kind: rooms.KindUser, Scope: rooms.ScopeNone}, false},
		{"node", &identity.Identity{Kind: rooms.KindNode}, false},
		{"node with a global scope", &identity.Identity{Kind: rooms.KindNode, Scope: rooms.ScopeGlobal}, false},
	}
	for _, tt := range tests {
		if got := mayAdmin(tt.id); got != tt.want {
			t.Errorf("%s: mayAdmin = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestNewUserTokenExpiry: the policy defaults to keep and an unknown one is
// refused with a message that names it.
func TestNewUserTokenExpiry(t *testing.T) {
	verifier, err := auth.NewVerifier(auth.Config{HMACSecret: []byte("hub-test-secret")})
	if err != nil {
		t.Fatal(err)
	}
	newHub := func(p UserExpiry) (*Hub, error) {
		srv, err := socketio.NewServer(socketio.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
		return New(Config{Server: srv, Verifier: verifier, Resolver: identity.ClaimsResolver{},
			Logger: zap.NewNop(), UserTokenExpiry: p})
	}
	h, err := newHub("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Presence().Shutdown(context.Background()) })
	if h.cfg.UserTokenExpiry != UserExpiryKeep {
		t.Errorf("default policy %q, want keep", h.cfg.UserTokenExpiry)
	}
	if _, err := newHub("refresh"); err == nil || !strings.Contains(err.Error(), `"refresh"`) {
		t.Errorf("unknown policy: err = %v", err)
	}
}
