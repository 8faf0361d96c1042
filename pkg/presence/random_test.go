package presence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// TestRedisRandomized: many nodes connect, disconnect and move (with a gap
// shorter than the grace, or overlapping) across several replicas, while
// replicas are killed without a word and replaced. Afterwards, for every
// node, the transitions (in Seq order) alternate online/offline, start with
// online and end in the node's true final state (online iff it has a
// connection on a live replica); nothing is reported twice; and every
// replica lists exactly the nodes that are online.
func TestRedisRandomized(t *testing.T) {
	const (
		nodes    = 40
		workers  = 8
		replicas = 4
		run      = 3 * time.Second
		kills    = 4
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx := context.Background()
	c := newCluster(t, replicas, nil)

	var repMu sync.RWMutex // ops hold it shared; a kill holds it alone
	alive := make([]*replica, replicas)
	for i := range alive {
		alive[i] = c.rep(i)
	}
	dead := map[*replica]bool{}
	pick := func(r *rand.Rand, not *replica) *replica {
		for {
			if p := alive[r.IntN(len(alive))]; p != not || len(alive) == 1 {
				return p
			}
		}
	}

	type live struct {
		on *replica
		id string
	}
	var (
		wg     sync.WaitGroup
		stop   = make(chan struct{})
		ops    atomic.Int64
		killed atomic.Int64
		finMu  sync.Mutex
		final  = map[string]bool{}
	)
	// The killer: a replica dies now and then, and a new one starts.
	wg.Go(func() {
		r := rand.New(rand.NewPCG(seed, 99))
		for range kills {
			select {
			case <-stop:
				return
			case <-time.After(run/(kills+1) + time.Duration(r.IntN(100))*time.Millisecond):
			}
			repMu.Lock()
			i := r.IntN(len(alive))
			victim := alive[i]
			victim.kill()
			dead[victim] = true
			alive[i] = c.add()
			repMu.Unlock()
			killed.Add(1)
		}
	})
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			conns := map[string][]live{}
			var mine []string
			for n := w; n < nodes; n += workers {
				mine = append(mine, strconv.Itoa(n+1))
			}
			seq := 0
			newID := func(key string) string { seq++; return fmt.Sprintf("n%s-c%d", key, seq) }
			// prune forgets the connections that died with their replica.
			prune := func(key string) {
				var kept []live
				for _, l := range conns[key] {
					if !dead[l.on] {
						kept = append(kept, l)
					}
				}
				conns[key] = kept
			}
			for {
				select {
				case <-stop:
					repMu.RLock()
					finMu.Lock()
					for _, key := range mine {
						prune(key)
						final[key] = len(conns[key]) > 0
					}
					finMu.Unlock()
					repMu.RUnlock()
					return
				default:
				}
				key := mine[r.IntN(len(mine))]
				ops.Add(1)
				repMu.RLock()
				prune(key)
				ls := conns[key]
				switch k := r.IntN(20); {
				case len(ls) == 0 && k < 8: // offline nodes stay so for a while
				case k < 4 || len(ls) == 0: // connect
					on := pick(r, nil)
					id := newID(key)
					must(t, on.Connect(ctx, connOn(key, id, on.name)))
					conns[key] = append(ls, live{on, id})
				case k < 11: // disconnect
					i := r.IntN(len(ls))
					must(t, ls[i].on.Disconnect(ctx, key, ls[i].id))
					conns[key] = append(ls[:i], ls[i+1:]...)
				case k < 16: // move with a gap shorter than the grace
					i := r.IntN(len(ls))
					must(t, ls[i].on.Disconnect(ctx, key, ls[i].id))
					conns[key] = append(ls[:i], ls[i+1:]...)
					repMu.RUnlock()
					time.Sleep(time.Duration(r.IntN(int(tGrace / 3))))
					repMu.RLock()
					prune(key)
					on := pick(r, nil)
					id := newID(key)
					must(t, on.Connect(ctx, connOn(key, id, on.name)))
					conns[key] = append(conns[key], live{on, id})
				default: // overlapping move to another replica
					i := r.IntN(len(ls))
					on := pick(r, ls[i].on)
					id := newID(key)
					must(t, on.Connect(ctx, connOn(key, id, on.name)))
					must(t, ls[i].on.Disconnect(ctx, key, ls[i].id))
					ls[i] = live{on, id}
				}
				repMu.RUnlock()
				if r.IntN(3) == 0 {
					time.Sleep(time.Duration(r.IntN(int(2 * tGrace)))) // sometimes past the grace
				}
			}
		})
	}
	time.Sleep(run) // the length of the run, not a synchronisation
	close(stop)
	wg.Wait()

	// Settle: the last transition of every node is its final state, and
	// every live replica lists exactly the online nodes, none pending.
	lastOf := func() map[string]event {
		out := map[string]event{}
		for _, e := range c.j.all() {
			if p, ok := out[e.Node.Key]; !ok || e.Seq > p.Seq {
				out[e.Node.Key] = e
			}
		}
		return out
	}
	settled := func() bool {
		last := lastOf()
		for key, on := range final {
			if e, ok := last[key]; on != (ok && e.Online) {
				return false
			}
		}
		for _, r := range alive {
			l, err := r.Online(ctx)
			if err != nil || len(l) != countTrue(final) {
				return false
			}
			for _, s := range l {
				if !final[s.Key] || s.Connections == 0 {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(15 * time.Second)
	for !settled() {
		if time.Now().After(deadline) {
			t.Logf("final %v\njournal:\n%s", final, &c.j)
			for _, r := range alive {
				l, _ := r.Online(ctx)
				t.Logf("%s lists %d nodes", r.name, len(l))
			}
			checkSequences(t, &c.j, final)
			t.Fatal("never settled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	n := c.j.len()
	testwait.Holds(t, 3*tTTL, "no transition after settling", func() bool { return c.j.len() == n })
	checkSequences(t, &c.j, final)
	on := countTrue(final)
	t.Logf("%d ops, %d replicas killed, %d transitions; %d of %d nodes online at the end", ops.Load(), killed.Load(), n, on, nodes)
	if killed.Load() == 0 || n < nodes {
		t.Errorf("the run exercised too little: %d kills, %d transitions", killed.Load(), n)
	}
}
