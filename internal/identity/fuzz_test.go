package identity

import (
	"context"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
)

// exactValue is the exact value of a JSON number, or nil when it is not an
// integer (1.5) or not a number.
func exactValue(v any) *big.Int {
	n, ok := v.(json.Number)
	if !ok {
		return nil
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok || !r.IsInt() {
		return nil
	}
	return r.Num()
}

// FuzzResolveClaims resolves arbitrary claims as auth.Verify would hand them
// over (numbers as json.Number). It must never panic, and an identity it
// returns must carry exactly the ids the token holds: an id that float64
// rounds (9007199254740993.0 → 9007199254740992) is another node's or
// collaboration's, so it must be refused rather than changed.
func FuzzResolveClaims(f *testing.F) {
	for _, s := range []string{
		`{"client_type":"node","sub":3,"name":"n","collaboration_id":1,"organization_id":2}`,
		`{"client_type":"node","sub":3,"name":"n","collaboration_id":9007199254740993.0,"organization_id":2}`,
		`{"client_type":"node","sub":3,"name":"n","collaboration_id":1e3,"organization_id":9223372036854775807}`,
		`{"client_type":"user","sub":"6f9619ff-8b86-d011-b42d-00c04fc964ff","username":"u","organization_id":2,"event_scope":"Global","collaboration_ids":[1,2,2,9007199254740993]}`,
		`{"client_type":"user","sub":7,"name":"u","organization_id":2,"event_scope":"organization","collaboration_ids":[]}`,
		`{"client_type":"user","sub":9007199254740993.0,"name":"u","organization_id":1}`,
		`{"client_type":"robot","sub":-1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		dec := json.NewDecoder(strings.NewReader(js))
		dec.UseNumber()
		var raw map[string]any
		if dec.Decode(&raw) != nil || raw == nil {
			return
		}
		c := &auth.Claims{Raw: raw, ExpiresAt: time.Unix(1795649087, 0)}
		if v, ok := raw["sub"]; ok {
			sub, err := auth.SubjectFromClaim(v)
			if err == nil {
				if want := exactValue(v); want != nil && sub.Value != want.String() {
					t.Fatalf("sub %v became %q", v, sub.Value)
				}
			}
			c.Subject = sub
		}
		c.ClientType, _ = raw["client_type"].(string)
		id, err := ClaimsResolver{}.Resolve(context.Background(), "", c)
		if err != nil {
			return
		}
		check := func(name string, got int64) {
			want := exactValue(raw[name])
			if want == nil || want.Cmp(big.NewInt(got)) != 0 {
				t.Fatalf("claim %s %v resolved as %d", name, raw[name], got)
			}
		}
		check("organization_id", id.OrganizationID)
		if cid, ok := raw["collaboration_id"]; ok && id.Kind == "node" {
			if want := exactValue(cid); want == nil || want.Cmp(big.NewInt(id.CollaborationIDs[0])) != 0 {
				t.Fatalf("collaboration_id %v resolved as %d", cid, id.CollaborationIDs[0])
			}
		}
		if list, ok := raw["collaboration_ids"].([]any); ok && id.Kind == "user" {
			seen := map[string]bool{}
			var want []string
			for _, e := range list {
				v := exactValue(e)
				if v == nil {
					t.Fatalf("collaboration_ids %v accepted with %v", list, e)
				}
				if !seen[v.String()] {
					seen[v.String()] = true
					want = append(want, v.String())
				}
			}
			if len(want) != len(id.CollaborationIDs) {
				t.Fatalf("collaboration_ids %v resolved as %v", list, id.CollaborationIDs)
			}
			for i, w := range want {
				if big.NewInt(id.CollaborationIDs[i]).String() != w {
					t.Fatalf("collaboration_ids %v resolved as %v", list, id.CollaborationIDs)
				}
			}
		}
	})
}
