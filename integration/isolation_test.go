package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/gorilla/websocket"

	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// isoClient is one client of TestRandomIsolation and what it received.
type isoClient struct {
	name  string
	rooms map[string]bool // what the protocol says it reads (the oracle)
	ws    *websocket.Conn

	mu     sync.Mutex
	got    map[int]int // seq → times received
	fences int
}

// oracleRooms is the rule of the vantage6 protocol, written here on its own
// (not pkg/rooms, which the server uses): a node reads all_nodes, its
// collaboration and its organization within it; a user with the global or
// collaboration scope reads its collaborations, with the organization
// scope its organization within each; a user without a scope reads none.
func oracleRooms(node bool, org int64, collabs []int64, scope string) map[string]bool {
	r := map[string]bool{}
	for _, c := range collabs {
		switch {
		case node:
			r["all_nodes"] = true
			r[fmt.Sprintf("collaboration_%d", c)] = true
			r[fmt.Sprintf("collaboration_%d_organization_%d", c, org)] = true
		case scope == "global" || scope == "collaboration":
			r[fmt.Sprintf("collaboration_%d", c)] = true
		case scope == "organization":
			r[fmt.Sprintf("collaboration_%d_organization_%d", c, org)] = true
		}
	}
	return r
}

// TestRandomIsolation: random nodes and users (collaborations,
// organizations, scopes) on a 3-replica cluster, random events published
// to random rooms (some with an except room) through random replicas;
// every client must get exactly the events of its rooms, once, and nothing
// else. EVENTSERVER_ISOLATION_SEED replays a run; the seed is logged.
func TestRandomIsolation(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EVENTSERVER_ISOLATION_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("EVENTSERVER_ISOLATION_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (EVENTSERVER_ISOLATION_SEED=%d replays this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	r := redistest.Start(t)
	prefix := uniquePrefix(t)
	var inst []*procServer
	for i := range 3 {
		inst = append(inst, startInstance(t, fmt.Sprintf("r%d", i), r.URL(), prefix))
	}
	pick := func(n int) int64 { return int64(rng.IntN(n)) + 1 }

	var clients []*isoClient
	allRooms := map[string]bool{"collaboration_99": true, "collaboration_1_organization_99": true} // nobody's
	for i := range 30 {
		org := pick(4)
		var c *isoClient
		var token string
		if rng.IntN(2) == 0 {
			cid := pick(3)
			token = nodeToken(t, int64(100+i), cid, org, time.Hour)
			c = &isoClient{name: fmt.Sprintf("node%d(c%d,o%d)", i, cid, org), rooms: oracleRooms(true, org, []int64{cid}, "")}
		} else {
			collabs := []int64{} // not nil: a token with collaboration_ids null is invalid
			for cid := int64(1); cid <= 3; cid++ {
				if rng.IntN(2) == 0 {
					collabs = append(collabs, cid)
				}
			}
			scope := []string{"global", "collaboration", "organization", ""}[rng.IntN(4)]
			token = userToken(t, int64(100+i), org, collabs, scope, time.Hour)
			c = &isoClient{name: fmt.Sprintf("user%d(o%d,%v,%q)", i, org, collabs, scope), rooms: oracleRooms(false, org, collabs, scope)}
		}
		c.got = map[int]int{}
		c.ws = wsSocket(t, inst[rng.IntN(3)].URL, token)
		for room := range c.rooms {
			allRooms[room] = true
		}
		clients = append(clients, c)
		go func() {
			for {
				_, m, err := c.ws.ReadMessage()
				if err != nil {
					return
				}
				s := string(m)
				switch {
				case strings.HasPrefix(s, `42/tasks,["iso",`):
					var seq int
					fmt.Sscanf(strings.TrimPrefix(s, `42/tasks,["iso",`), "%d", &seq)
					c.mu.Lock()
					c.got[seq]++
					c.mu.Unlock()
				case strings.HasPrefix(s, `42/tasks,["fence"`):
					c.mu.Lock()
					c.fences++
					c.mu.Unlock()
				}
			}
		}()
	}
	// Every client is in its rooms on every replica before the first
	// event: a node-online or join notice reaching it tells that the
	// hub is done with it; a fence (to everyone) that every client sees
	// is simpler and sufficient.
	fence := func(want int) {
		for _, in := range inst {
			in.mustPublish(`{"event":"fence"}`)
		}
		testwait.For(t, 20*time.Second, func() error {
			for _, c := range clients {
				c.mu.Lock()
				n := c.fences
				c.mu.Unlock()
				if n < want {
					return fmt.Errorf("%s has %d of %d fences", c.name, n, want)
				}
			}
			return nil
		})
	}
	fence(3)

	rooms := make([]string, 0, len(allRooms))
	for room := range allRooms {
		rooms = append(rooms, room)
	}
	slices.Sort(rooms) // the seed alone decides the run
	type sent struct{ room, except string }
	var events []sent
	for seq := range 80 {
		e := sent{room: rooms[rng.IntN(len(rooms))]}
		body := fmt.Sprintf(`{"event":"iso","room":%q,"data":%d`, e.room, seq)
		if rng.IntN(4) == 0 {
			e.except = rooms[rng.IntN(len(rooms))]
			body += fmt.Sprintf(`,"except":[%q]`, e.except)
		}
		inst[rng.IntN(3)].mustPublish(body + "}")
		events = append(events, e)
	}
	fence(6) // after it, every replica has delivered everything published before

	for _, c := range clients {
		c.mu.Lock()
		for seq, e := range events {
			want := 0
			if c.rooms[e.room] && !c.rooms[e.except] {
				want = 1
			}
			if got := c.got[seq]; got != want {
				t.Errorf("%s (rooms %v) got event %d to %s except %q %d times, want %d (seed %d)",
					c.name, keys(c.rooms), seq, e.room, e.except, got, want, seed)
			}
		}
		c.mu.Unlock()
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
