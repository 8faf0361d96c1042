package v6apitest

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestV6FakePagination: without per_page the fake answers 10 a page, with the
// total-count header and links, as vantage6 does.
func TestV6FakePagination(t *testing.T) {
	f := New([]byte("secret"))
	defer f.Close()
	for i := int64(1); i <= 23; i++ {
		f.AddCollaboration(Collaboration{ID: i, Name: "c", OrganizationIDs: []int64{1}})
	}
	f.AddUser(User{ID: 5, Username: "u", OrganizationID: 1, RuleIDs: []int64{f.RuleID("collaboration", "GLOBAL", "VIEW")}})
	get := func(query string) (http.Header, []int64, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.URL+"/collaboration"+query, nil)
		req.Header.Set("Authorization", "Bearer "+f.UserToken(5))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Data  []struct{ ID int64 } `json:"data"`
			Links map[string]string    `json:"links"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		var ids []int64
		for _, d := range body.Data {
			ids = append(ids, d.ID)
		}
		return resp.Header, ids, body.Links
	}
	h, ids, links := get("")
	if len(ids) != 10 || ids[0] != 1 || h.Get("total-count") != "23" || links["next"] != "/api/collaboration?page=2" {
		t.Errorf("first page: %v, total-count %q, links %v", ids, h.Get("total-count"), links)
	}
	_, ids, links = get("?page=3")
	if len(ids) != 3 || ids[0] != 21 || links["next"] != "" || links["last"] != "/api/collaboration?page=3" {
		t.Errorf("last page: %v, links %v", ids, links)
	}
	_, ids, _ = get("?per_page=5&page=2")
	if len(ids) != 5 || ids[0] != 6 {
		t.Errorf("per_page=5 page 2: %v", ids)
	}
}
