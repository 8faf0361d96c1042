package integration

// node-server.js's benchmark flags (bench/compare.sh): the HS256 check per
// connect, rooms from the token, the publish API, one process without Redis,
// the ping interval. Figures are not checked; what arrives is.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/loadgen"
	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/rooms"
)

const (
	benchSecret  = "bench-node-secret"
	benchPublish = "bench-node-publish-token"
)

var benchFlags = []string{"--jwt-secret", benchSecret, "--publish-token", benchPublish, "--quiet", "--ping-interval", "300"}

// startNodeBench runs node-server.js with the benchmark flags; without
// redisURL, alone (--no-redis).
func startNodeBench(t *testing.T, redisURL, prefix string) string {
	if redisURL != "" {
		return startNodeServer(t, redisURL, prefix, benchFlags...).URL
	}
	root := needNodeCluster(t)
	args := append([]string{filepath.Join(root, "integration", "clients", "node-server.js"), "--no-redis", "--port", "0"}, benchFlags...)
	p := startJSONProc(t, "node-server", args...)
	m := p.waitType("listening", 15*time.Second)
	return fmt.Sprintf("http://127.0.0.1:%d", int(m["port"].(float64)))
}

func benchToken(t *testing.T, key string) func(i int, room string) string {
	return func(i int, room string) string {
		var cid int64
		if _, err := fmt.Sscanf(room, "collaboration_%d", &cid); err != nil {
			t.Error(err)
		}
		tok, err := auth.Mint([]byte(key), identity.Claims(&identity.Identity{Kind: rooms.KindUser,
			ID: auth.NumericSubject(int64(i + 1)), Name: "u", OrganizationID: 1, CollaborationIDs: []int64{cid},
			Scope: rooms.ScopeCollaboration}), time.Hour, time.Time{})
		if err != nil {
			t.Error(err)
		}
		return tok
	}
}

// TestNodeBenchFanout: two node-server.js on one Redis, clients in rooms
// from their tokens, events POSTed round-robin: each reaches every member
// of its room, on both processes, once.
func TestNodeBenchFanout(t *testing.T) {
	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	a, b := startNodeBench(t, r.URL(), prefix), startNodeBench(t, r.URL(), prefix)
	res, err := loadgen.Fanout(context.Background(), loadgen.FanoutConfig{
		URLs: []string{a, b}, PublishToken: benchPublish, Clients: 12, Rooms: 3, Token: benchToken(t, benchSecret),
		Rates: []int{50}, Step: 200 * time.Millisecond, Publishers: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Steps[0]
	if s.Expected != int64(s.Events)*4 || s.Delivered != s.Expected || s.PublishErrors != 0 || res.Duplicates != 0 {
		t.Fatalf("step %+v, %d duplicates", s, res.Duplicates)
	}

	_, err = loadgen.Fanout(context.Background(), loadgen.FanoutConfig{
		URLs: []string{a}, PublishToken: "not-the-token", Clients: 1, Rooms: 1, Token: benchToken(t, benchSecret),
		Rates: []int{10}, Step: 100 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong publish token: %v", err)
	}
}

// TestNodeBenchOneProcess: without Redis, idle clients stay through ping
// cycles; a token signed with another key is refused at connect.
func TestNodeBenchOneProcess(t *testing.T) {
	url := startNodeBench(t, "", "")
	tok := benchToken(t, benchSecret)
	idle, err := loadgen.Idle(context.Background(), loadgen.IdleConfig{
		Target:  loadgen.Target{URL: url, Token: func(i int) string { return tok(i, "collaboration_1") }},
		Clients: 10, Wait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if idle.Connected != 10 || idle.Alive != 10 {
		t.Fatalf("idle %+v", idle)
	}
	bad := benchToken(t, "another-key")
	res, err := loadgen.Connects(context.Background(), loadgen.ConnectsConfig{
		Target:  loadgen.Target{URL: url, Token: func(i int) string { return bad(i, "collaboration_1") }},
		Clients: 3, Warmup: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 0 || res.Failed != 3 || !strings.Contains(res.Error, "bad signature") {
		t.Fatalf("connects with a bad token: %+v", res)
	}
}
