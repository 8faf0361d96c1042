package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/rooms"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestMainExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{
			name:       "no secret",
			args:       []string{"--listen", "127.0.0.1:0"},
			wantCode:   2,
			wantStderr: []string{"EVENTSERVER_JWT_SECRET", "EVENTSERVER_JWT_PUBLIC_KEY_FILE"},
		},
		{
			name:       "serve without secret",
			args:       []string{"serve", "--listen", "127.0.0.1:0"},
			wantCode:   2,
			wantStderr: []string{"EVENTSERVER_JWT_SECRET"},
		},
		{
			name:       "invalid env",
			env:        map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_PING_INTERVAL": "abc"},
			wantCode:   2,
			wantStderr: []string{"EVENTSERVER_PING_INTERVAL"},
		},
		{
			name:       "invalid log format",
			env:        map[string]string{"EVENTSERVER_JWT_SECRET": "s", "EVENTSERVER_LOG_FORMAT": "xml"},
			wantCode:   2,
			wantStderr: []string{"EVENTSERVER_LOG_FORMAT"},
		},
		{
			name:       "invalid flag",
			args:       []string{"--max-payload", "12"},
			env:        map[string]string{"EVENTSERVER_JWT_SECRET": "s"},
			wantCode:   2,
			wantStderr: []string{"--max-payload"},
		},
		{
			name:     "unknown flag",
			args:     []string{"--bogus"},
			wantCode: 2,
		},
		{
			name:       "unexpected argument",
			args:       []string{"launch"},
			wantCode:   2,
			wantStderr: []string{"launch"},
		},
		{
			name:       "version",
			args:       []string{"version"},
			wantCode:   0,
			wantStdout: []string{"eventserver", Version},
		},
		{
			name:       "help",
			args:       []string{"--help"},
			wantCode:   0,
			wantStdout: []string{"EVENTSERVER_JWT_SECRET", "EVENTSERVER_LISTEN", "token"},
		},
		{
			name:       "serve help",
			args:       []string{"serve", "--help"},
			wantCode:   0,
			wantStdout: []string{"EVENTSERVER_LISTEN"},
		},
		{
			name:       "token help",
			args:       []string{"token", "--help"},
			wantCode:   0,
			wantStderr: []string{"eventserver token node"},
		},
		{
			name:       "token without kind",
			args:       []string{"token"},
			wantCode:   2,
			wantStderr: []string{"Usage"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tt.args, env(tt.env), &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("Main(%q) = %d, want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.wantCode, &stdout, &stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout does not contain %q:\n%s", w, &stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not contain %q:\n%s", w, &stderr)
				}
			}
		})
	}
}

const secret = "a-secret-of-vantage6"

// resolve verifies tok with secret and resolves it with the claims resolver.
func resolve(t *testing.T, secret, tok string) (*auth.Claims, *identity.Identity) {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	id, err := identity.ClaimsResolver{}.Resolve(context.Background(), tok, claims)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return claims, id
}

func TestTokenMints(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		secret    string // the key the token must verify with
		wantKind  rooms.Kind
		wantSub   string
		wantName  string
		wantOrg   int64
		wantScope rooms.Scope
		wantRooms []string
		minTTL    time.Duration
		maxTTL    time.Duration
	}{
		{
			name:      "node",
			args:      []string{"node", "--id", "3", "--collaboration", "1", "--organization", "2"},
			env:       map[string]string{"EVENTSERVER_JWT_SECRET": secret},
			secret:    secret,
			wantKind:  rooms.KindNode,
			wantSub:   "3",
			wantName:  "node-3",
			wantOrg:   2,
			wantRooms: []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
		},
		{
			name:      "node with name and ttl",
			args:      []string{"node", "--id", "3", "--name", "org2-node", "--collaboration", "4", "--organization", "2", "--ttl", "1h"},
			env:       map[string]string{"EVENTSERVER_JWT_SECRET": secret},
			secret:    secret,
			wantKind:  rooms.KindNode,
			wantSub:   "3",
			wantName:  "org2-node",
			wantOrg:   2,
			wantRooms: []string{"all_nodes", "collaboration_4", "collaboration_4_organization_2"},
			minTTL:    time.Hour - time.Minute,
			maxTTL:    time.Hour + time.Minute,
		},
		{
			name:      "user organization scope",
			args:      []string{"user", "--id", "5", "--name", "alice", "--organization", "2", "--collaborations", "1,4", "--scope", "organization"},
			env:       map[string]string{"EVENTSERVER_JWT_SECRET": secret},
			secret:    secret,
			wantKind:  rooms.KindUser,
			wantSub:   "5",
			wantName:  "alice",
			wantOrg:   2,
			wantScope: rooms.ScopeOrganization,
			wantRooms: []string{"collaboration_1_organization_2", "collaboration_4_organization_2"},
		},
		{
			name:      "user collaboration scope",
			args:      []string{"user", "--id", "5", "--organization", "2", "--collaborations", "4, 1", "--scope", "collaboration"},
			env:       map[string]string{"EVENTSERVER_JWT_SECRET": secret},
			secret:    secret,
			wantKind:  rooms.KindUser,
			wantSub:   "5",
			wantName:  "user-5",
			wantOrg:   2,
			wantScope: rooms.ScopeCollaboration,
			wantRooms: []string{"collaboration_1", "collaboration_4"},
		},
		{
			name:      "user global scope in capitals",
			args:      []string{"user", "--id", "5", "--organization", "2", "--collaborations", "1,2,3", "--scope", "GLOBAL"},
			env:       map[string]string{"EVENTSERVER_JWT_SECRET": secret},
			secret:    secret,
			wantKind:  rooms.KindUser,
			wantSub:   "5",
			wantName:  "user-5",
			wantOrg:   2,
			wantScope: rooms.ScopeGlobal,
			wantRooms: []string{"collaboration_1", "collaboration_2", "collaboration_3"},
		},
		{
			name:      "user without scope",
			args:      []string{"user", "--id", "5", "--organization", "2", "--collaborations", "1"},
			env:       map[string]string{"EVENTSERVER_JWT_SECRET": secret},
			secret:    secret,
			wantKind:  rooms.KindUser,
			wantSub:   "5",
			wantName:  "user-5",
			wantOrg:   2,
			wantRooms: nil,
		},
		{
			name:      "jwt-secret flag",
			args:      []string{"node", "--jwt-secret", "from-the-flag", "--id", "3", "--collaboration", "1", "--organization", "2"},
			secret:    "from-the-flag",
			wantKind:  rooms.KindNode,
			wantSub:   "3",
			wantName:  "node-3",
			wantOrg:   2,
			wantRooms: []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
		},
		{
			name:      "jwt-secret flag beats env",
			args:      []string{"node", "--jwt-secret", "from-the-flag", "--id", "3", "--collaboration", "1", "--organization", "2"},
			env:       map[string]string{"EVENTSERVER_JWT_SECRET": secret},
			secret:    "from-the-flag",
			wantKind:  rooms.KindNode,
			wantSub:   "3",
			wantName:  "node-3",
			wantOrg:   2,
			wantRooms: []string{"all_nodes", "collaboration_1", "collaboration_1_organization_2"},
		},
	}
	for _, tt := range tests {
		for _, viaMain := range []bool{false, true} {
			name := tt.name
			if viaMain {
				name += " via Main"
			}
			t.Run(name, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				var code int
				if viaMain {
					code = Main(append([]string{"token"}, tt.args...), env(tt.env), &stdout, &stderr)
				} else {
					code = Token(tt.args, env(tt.env), &stdout, &stderr)
				}
				if code != 0 {
					t.Fatalf("exit %d, stderr: %s", code, &stderr)
				}
				tok := strings.TrimSpace(stdout.String())
				if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
					t.Fatalf("stdout is not one JWT: %q", stdout.String())
				}
				claims, id := resolve(t, tt.secret, tok)
				if !claims.Subject.Numeric {
					t.Errorf("subject %q is not numeric", claims.Subject.Value)
				}
				if n, ok := claims.Raw["sub"].(interface{ String() string }); !ok || n.String() != tt.wantSub {
					t.Errorf("raw sub = %#v, want the JSON number %s", claims.Raw["sub"], tt.wantSub)
				}
				if id.ID.Value != tt.wantSub || !id.ID.Numeric {
					t.Errorf("identity ID = %+v, want numeric %s", id.ID, tt.wantSub)
				}
				if b, err := id.ID.MarshalJSON(); err != nil || string(b) != tt.wantSub {
					t.Errorf("identity ID marshals to %s, %v; want %s", b, err, tt.wantSub)
				}
				if id.Kind != tt.wantKind || id.Name != tt.wantName || id.OrganizationID != tt.wantOrg || id.Scope != tt.wantScope {
					t.Errorf("identity = %+v, want kind %s, name %s, org %d, scope %q", id, tt.wantKind, tt.wantName, tt.wantOrg, tt.wantScope)
				}
				if got := id.Rooms(); !slices.Equal(got, tt.wantRooms) {
					t.Errorf("rooms = %q, want %q", got, tt.wantRooms)
				}
				if claims.ClientType != string(tt.wantKind) {
					t.Errorf("client_type = %q, want %q", claims.ClientType, tt.wantKind)
				}
				if typ := claims.Raw["type"]; typ != "access" {
					t.Errorf("type = %v, want access", typ)
				}
				ttl := time.Until(claims.ExpiresAt)
				minTTL, maxTTL := tt.minTTL, tt.maxTTL
				if minTTL == 0 {
					minTTL, maxTTL = 6*time.Hour-time.Minute, 6*time.Hour+time.Minute
				}
				if ttl < minTTL || ttl > maxTTL {
					t.Errorf("token expires in %s, want between %s and %s", ttl, minTTL, maxTTL)
				}
			})
		}
	}
}

func TestTokenWrongSecretRefused(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Token([]string{"node", "--id", "3", "--collaboration", "1", "--organization", "2"},
		env(map[string]string{"EVENTSERVER_JWT_SECRET": secret}), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, &stderr)
	}
	v, err := auth.NewVerifier(auth.Config{HMACSecret: []byte("another secret")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(strings.TrimSpace(stdout.String())); err == nil {
		t.Error("a token minted with one secret verified with another")
	}
}

func TestTokenStringID(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Token([]string{"node", "--id", "node-uuid", "--collaboration", "1", "--organization", "2"},
		env(map[string]string{"EVENTSERVER_JWT_SECRET": secret}), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, &stderr)
	}
	_, id := resolve(t, secret, strings.TrimSpace(stdout.String()))
	if id.ID.Numeric || id.ID.Value != "node-uuid" {
		t.Errorf("identity ID = %+v, want the string node-uuid", id.ID)
	}
}

func TestTokenErrors(t *testing.T) {
	withSecret := map[string]string{"EVENTSERVER_JWT_SECRET": secret}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantStderr string
	}{
		{"no kind", nil, withSecret, "Usage"},
		{"unknown kind", []string{"container", "--id", "1"}, withSecret, "Usage"},
		{"missing id", []string{"node", "--collaboration", "1", "--organization", "2"}, withSecret, "--id"},
		{"missing id user", []string{"user", "--organization", "2", "--collaborations", "1", "--scope", "global"}, withSecret, "--id"},
		{"missing secret", []string{"node", "--id", "3", "--collaboration", "1", "--organization", "2"}, nil, "EVENTSERVER_JWT_SECRET"},
		{"empty secret flag", []string{"node", "--jwt-secret", "", "--id", "3", "--collaboration", "1", "--organization", "2"}, nil, "EVENTSERVER_JWT_SECRET"},
		{"bad scope", []string{"user", "--id", "5", "--organization", "2", "--collaborations", "1", "--scope", "own"}, withSecret, "--scope"},
		{"bad collaborations", []string{"user", "--id", "5", "--organization", "2", "--collaborations", "1,x", "--scope", "global"}, withSecret, "--collaborations"},
		{"zero collaboration in list", []string{"user", "--id", "5", "--organization", "2", "--collaborations", "0"}, withSecret, "--collaborations"},
		{"negative collaboration in list", []string{"user", "--id", "5", "--organization", "2", "--collaborations", "-1"}, withSecret, "--collaborations"},
		{"node missing collaboration", []string{"node", "--id", "3", "--organization", "2"}, withSecret, "--collaboration"},
		{"missing organization", []string{"node", "--id", "3", "--collaboration", "1"}, withSecret, "--organization"},
		{"negative organization", []string{"user", "--id", "3", "--organization", "-2"}, withSecret, "--organization"},
		{"non-numeric organization", []string{"node", "--id", "3", "--collaboration", "1", "--organization", "two"}, withSecret, "organization"},
		{"zero ttl", []string{"node", "--id", "3", "--collaboration", "1", "--organization", "2", "--ttl", "0s"}, withSecret, "--ttl"},
		{"unknown flag", []string{"node", "--id", "3", "--collaboration", "1", "--organization", "2", "--bogus"}, withSecret, "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Token(tt.args, env(tt.env), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("Token(%q) = %d, want 2; stdout %q, stderr %q", tt.args, code, &stdout, &stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", &stdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", &stderr, tt.wantStderr)
			}
			// Main gives the same exit code.
			stdout.Reset()
			stderr.Reset()
			if code := Main(append([]string{"token"}, tt.args...), env(tt.env), &stdout, &stderr); code != 2 {
				t.Errorf("Main(token %q) = %d, want 2", tt.args, code)
			}
		})
	}
}

func TestTokenHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"node", "--help"}, {"user", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Token(args, env(nil), &stdout, &stderr); code != 0 {
				t.Fatalf("Token(%q) = %d, want 0", args, code)
			}
			if !strings.Contains(stderr.String(), "eventserver token") {
				t.Errorf("usage not written: %q", &stderr)
			}
		})
	}
}
