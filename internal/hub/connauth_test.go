package hub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// globalResolver resolves every token to a user who may use /admin, and
// counts its calls.
type globalResolver struct{ calls atomic.Int32 }

func (r *globalResolver) Resolve(context.Context, string, *auth.Claims) (*identity.Identity, error) {
	r.calls.Add(1)
	return &identity.Identity{Kind: rooms.KindUser, ID: auth.Subject{Value: "7"}, Name: "u7",
		OrganizationID: 2, CollaborationIDs: []int64{1}, Scope: rooms.ScopeGlobal}, nil
}

// headerSession opens a polling session whose handshake carries tok as its
// Authorization header; it returns the session's URL.
func headerSession(t *testing.T, base, tok string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var open struct {
		SID string `json:"sid"`
	}
	if len(b) < 2 || b[0] != '0' || json.Unmarshal(b[1:], &open) != nil || open.SID == "" {
		t.Fatalf("handshake: %q", b)
	}
	return base + "&sid=" + open.SID
}

// connectNsp sends a CONNECT to nsp with no payload and returns the new
// socket's id from the ack, and the packets that came after the ack.
func connectNsp(t *testing.T, u, nsp string) (string, []string) {
	t.Helper()
	post(t, u, "40"+nsp+",")
	packets := strings.Split(poll(t, u), "\x1e")
	prefix := "40" + nsp + `,{"sid":"`
	for i, p := range packets {
		if strings.HasPrefix(p, prefix) {
			return strings.SplitN(p[len(prefix):], `"`, 2)[0], packets[i+1:]
		}
	}
	t.Fatalf("after CONNECT %s: %q", nsp, packets)
	return "", nil
}

// TestHeaderTokenKeptAsIdentity: once the Authorization token of a
// connection is verified, the token is dropped (headers and CONNECT
// payload) and only the identity kept; a later namespace CONNECT on the
// same connection gets that identity without a new check, and is told
// expired_token once the token's exp (and leeway) is past, as a new check
// of the token would.
func TestHeaderTokenKeptAsIdentity(t *testing.T) {
	noLeaks(t)
	res := &globalResolver{}
	h, _, base := offloadServer(t, res)
	var skew atomic.Int64
	h.cfg.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }

	u := headerSession(t, base, userTok(t))
	sid, _ := connectNsp(t, u, protocol.Namespace)
	testwait.Until(t, 5*time.Second, "the /tasks session", func() bool { return h.session(sid) != nil })
	sess := h.session(sid)
	if sess.id == nil || sess.id.Name != "u7" {
		t.Fatalf("/tasks identity %+v", sess.id)
	}
	if hdr := sess.sock.Conn().Header(); len(hdr) != 0 {
		t.Errorf("headers kept after authentication: %v", hdr)
	}
	if a := sess.sock.Handshake().Auth; len(a) != 0 {
		t.Errorf("CONNECT payload kept after authentication: %v", a)
	}

	admin, _ := connectNsp(t, u, protocol.AdminNamespace)
	testwait.Until(t, 5*time.Second, "the /admin session", func() bool { return h.session(admin) != nil })
	if a := h.session(admin); a.id == nil || a.id.Name != "u7" {
		t.Fatalf("/admin identity %+v, want the connection's", a.id)
	}
	if n := res.calls.Load(); n != 1 {
		t.Errorf("identity resolved %d times, want once per connection", n)
	}

	// Past the token's exp (1 h) and the leeway: the identity no longer holds.
	post(t, u, "41"+protocol.AdminNamespace+",")
	testwait.Until(t, 5*time.Second, "the /admin socket to leave", func() bool { return h.session(admin) == nil })
	skew.Store(int64(time.Hour + auth.DefaultLeeway + time.Minute))
	again, more := connectNsp(t, u, protocol.AdminNamespace)
	if len(more) == 0 {
		more = []string{poll(t, u)}
	}
	if want := `42` + protocol.AdminNamespace + `,["` + protocol.EventExpiredToken + `"]`; more[0] != want {
		t.Fatalf("after a CONNECT past exp: %q, want %q", more, want)
	}
	if a := h.session(again); a == nil || a.id != nil {
		t.Fatalf("/admin session past exp: %+v, want unauthenticated", a)
	}
}

var _ socketio.Middleware = (*Hub)(nil).authenticate
