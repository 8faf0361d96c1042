package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// readyzWatch polls an instance's /readyz every 5 ms and records when it
// went down (any answer but 200, or no answer) and up again.
type readyzWatch struct {
	name string
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	down    time.Time // first moment not ready, zero if never
	up      time.Time // first moment ready again after down
	samples int
}

func watchReadyz(name, base string) *readyzWatch {
	w := &readyzWatch{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: time.Second}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ok := false
			if resp, err := c.Get(base + "/readyz"); err == nil {
				ok = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
			now := time.Now()
			w.mu.Lock()
			w.samples++
			switch {
			case !ok && w.down.IsZero():
				w.down = now
			case ok && !w.down.IsZero() && w.up.IsZero():
				w.up = now
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *readyzWatch) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *readyzWatch) times() (down, up time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.down, w.up
}

// published is one publish of the traffic loop.
type published struct {
	seq    int
	room   string
	via    string
	at     time.Time // when the request was sent
	status int       // 0: no answer
}

// TestSentinelFailover: three replicas of the binary on a Sentinel group
// (redis+sentinel:// with three sentinels), python nodes and Node UIs
// spread over them, a publish every 20 ms through the API of each replica
// in turn; then SIGKILL of the Redis master. It shows that:
//   - every instance's /readyz drops to 503 (subscriptions unconfirmed) and
//     returns to 200 once its subscriptions are confirmed on the promoted
//     replica;
//   - every event published after the last instance is ready again reaches
//     every permitted client on every replica, exactly once; events published
//     between the kill and that moment may be lost (pub/sub is at-most-once:
//     a message published while an instance is not subscribed is not kept),
//     and no client gets an event it may not see or gets one twice;
//   - presence loses no node (GET /api/v1/nodes on every replica lists the
//     three nodes before and after) and sends no notice: no node-offline and
//     no second node-online to anybody, although the failover takes longer
//     than the heartbeat TTL (1.2 s).
//
// Not guaranteed, and not checked: the events published across instances
// in the window, nor writes the old master had not replicated.
// Observed here (five runs): promotion 2.2 to 2.4 s after the kill;
// /readyz 503 from within 35 ms of the kill to 2.5 s after it; in the
// window each client lost 32 to 36 of about 50 events (those published on
// the other instances), 224 to 252 deliveries in all; none outside it.
func TestSentinelFailover(t *testing.T) {
	g := redistest.StartSentinel(t)
	url := g.URL()
	prefix := uniquePrefix(t)
	a := startInstance(t, "a", url, prefix)
	b := startInstance(t, "b", url, prefix)
	c := startInstance(t, "c", url, prefix)
	instances := []*procServer{a, b, c}
	logRedisOnFailure(t, instances)

	// Nodes: 3 and 4 in collaboration 1, 5 in collaboration 2. UIs: ua sees
	// collaboration 1, ub both, uc collaboration 2.
	ws := clientOpts{transports: "websocket"}
	withToken := func(o clientOpts, tok string) clientOpts { o.token = tok; return o }
	n3 := startPyNode(t, a.server, "node3@a", withToken(ws, nodeToken(t, 3, 1, 2, time.Hour)))
	n4 := startPyNode(t, b.server, "node4@b", withToken(ws, nodeToken(t, 4, 1, 3, time.Hour)))
	n5 := startPyNode(t, c.server, "node5@c", withToken(ws, nodeToken(t, 5, 2, 4, time.Hour)))
	ua := startUI(t, a.server, "user5@a", withToken(ws, userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)))
	ub := startUI(t, b.server, "user6@b", withToken(ws, userToken(t, 6, 2, []int64{1, 2}, "collaboration", time.Hour)))
	uc := startUI(t, c.server, "user7@c", withToken(ws, userToken(t, 7, 4, []int64{2}, "collaboration", time.Hour)))
	for _, n := range []*client{n3, n4, n5} {
		n.waitEvent("sync", wait)
	}
	for _, u := range []*client{ua, ub, uc} {
		u.waitType("connect", wait)
	}
	all := []*client{n3, n4, n5, ua, ub, uc}
	rooms := map[*client][]string{
		n3: {"collaboration_1"}, n4: {"collaboration_1"}, n5: {"collaboration_2"},
		ua: {"collaboration_1"}, ub: {"collaboration_1", "collaboration_2"}, uc: {"collaboration_2"},
	}
	permitted := func(cl *client, room string) bool { return slices.Contains(rooms[cl], room) }

	checkNodes := func(when string) { t.Helper(); waitNodesListed(t, instances, "3,4,5", when) }
	checkNodes("before the failover")
	// Every UI has seen the node-online of its collaborations' nodes (a
	// UI may have connected after a node: count what arrived, then check
	// that nothing is added).
	for _, s := range instances {
		barrier(t, s.server, all...)
	}
	onlineBefore := map[*client]int{}
	for _, cl := range all {
		onlineBefore[cl] = len(cl.events("node-online"))
		if n := len(cl.events("node-offline")); n != 0 {
			t.Fatalf("%s: %d node-offline before the failover", cl.name, n)
		}
	}

	// Traffic: a publish every 20 ms, through a, b and c in turn, to
	// collaboration 1 and 2 in turn.
	tr := startTraffic(t, instances, func(seq int) string { return fmt.Sprint("collaboration_", 1+seq%2) })
	tr.flowing(t, "before the failover", all, -1)

	watches := make([]*readyzWatch, len(instances))
	for i, s := range instances {
		watches[i] = watchReadyz(s.name, s.URL)
		defer watches[i].Stop()
	}
	// Let the watchers see "ready" first.
	testwait.For(t, wait, func() error {
		for _, w := range watches {
			w.mu.Lock()
			n, down := w.samples, w.down
			w.mu.Unlock()
			if n < 3 || !down.IsZero() {
				return fmt.Errorf("%s: %d samples, down at %v before the failover", w.name, n, down)
			}
		}
		return nil
	})

	killedAt := time.Now()
	old := g.KillMaster()
	promoted := g.WaitFailover(old, 30*time.Second)
	failover := time.Since(killedAt)
	t.Logf("master %s killed; sentinels promoted %s after %s", old, promoted, failover.Round(time.Millisecond))

	// Every instance drops and comes back.
	var readyAt time.Time
	for _, w := range watches {
		testwait.For(t, 30*time.Second, func() error {
			down, up := w.times()
			if down.IsZero() || up.IsZero() {
				return fmt.Errorf("%s: /readyz down at %v, up at %v", w.name, down, up)
			}
			return nil
		})
		down, up := w.times()
		t.Logf("%s: /readyz not 200 from %s to %s after the kill: down %s",
			w.name, down.Sub(killedAt).Round(time.Millisecond), up.Sub(killedAt).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond))
		if up.After(readyAt) {
			readyAt = up
		}
		w.Stop()
	}
	t.Logf("last instance ready %s after the kill", readyAt.Sub(killedAt).Round(time.Millisecond))
	for _, s := range instances {
		logs := s.logText()
		if !strings.Contains(logs, "redis adapter: subscription connection lost; resubscribing") ||
			strings.Count(logs, "redis adapter: subscriptions confirmed") < 2 {
			t.Errorf("%s: no resubscription in the logs", s.name)
		}
		// go-redis's own lines: the failover is logged, the dial failures
		// it repeats several times a second are not (one line per 10 s),
		// and the sentinel queries it cancels itself are not warnings.
		dials, canceled := 0, 0
		for _, l := range strings.Split(logs, "\n") {
			if !strings.Contains(l, `"logger":"go-redis"`) || !strings.Contains(l, `"level":"warn"`) {
				continue
			}
			if strings.Contains(l, "failed to dial") {
				dials++
			}
			if strings.Contains(l, "context canceled") {
				canceled++
			}
		}
		if dials > 2 || canceled > 0 || !strings.Contains(logs, `sentinel: new master=\"mymaster\" addr=\"`+promoted+`\"`) {
			t.Errorf("%s: go-redis warnings: %d about failed dials (want at most 2), %d about canceled queries (want 0); failover to %s logged: %v",
				s.name, dials, canceled, promoted, strings.Contains(logs, promoted))
		}
	}

	// Delivery resumes: events published from now on reach everybody.
	tr.flowing(t, "after the failover", all, tr.last())
	// Presence: past the TTL (1.2 s) and a few sweeps (1 s) after the
	// failover, every node is still listed by every instance.
	quiet := readyAt.Add(3 * time.Second)
	testwait.For(t, wait, func() error {
		if time.Now().Before(quiet) {
			return fmt.Errorf("waiting past TTL and sweeps")
		}
		return nil
	})
	checkNodes("after the failover")
	tr.stop()
	for _, s := range instances {
		barrier(t, s.server, all...)
	}

	// What each client got.
	done := tr.all()
	lostTotal := 0
	for _, cl := range all {
		got := tr.received(t, cl)
		var lostInWindow []int
		for _, p := range done {
			n := got[p.seq]
			switch {
			case !permitted(cl, p.room):
				if n > 0 {
					t.Errorf("%s got #%d to %s", cl.name, p.seq, p.room)
				}
			case n > 1:
				t.Errorf("%s got #%d %d times", cl.name, p.seq, n)
			case p.status != http.StatusAccepted:
				// Not accepted: the API refused it, nothing is owed.
			case n == 0 && p.at.After(readyAt):
				t.Errorf("%s: #%d (to %s via %s, %s after the kill, after every instance was ready) lost",
					cl.name, p.seq, p.room, p.via, p.at.Sub(killedAt).Round(time.Millisecond))
			case n == 0 && p.at.Before(killedAt):
				t.Errorf("%s: #%d (to %s via %s, before the kill) lost", cl.name, p.seq, p.room, p.via)
			case n == 0:
				lostInWindow = append(lostInWindow, p.seq)
			}
		}
		lostTotal += len(lostInWindow)
		t.Logf("%s: %d events received, %d lost in the failover window %v", cl.name, len(got), len(lostInWindow), lostInWindow)
	}
	accepted, inWindow := 0, 0
	for _, p := range done {
		if p.status == http.StatusAccepted {
			accepted++
		}
		if p.at.After(killedAt) && p.at.Before(readyAt) {
			inWindow++
		}
	}
	t.Logf("%d publishes, %d accepted, %d in the window (kill to last instance ready); %d deliveries lost in all",
		len(done), accepted, inWindow, lostTotal)

	// No presence notice: the nodes never left.
	for _, cl := range all {
		if n := len(cl.events("node-offline")); n != 0 {
			t.Errorf("%s: %d node-offline for nodes that stayed connected", cl.name, n)
		}
		if n := len(cl.events("node-online")); n != onlineBefore[cl] {
			t.Errorf("%s: node-online %d times, %d before the failover", cl.name, n, onlineBefore[cl])
		}
	}
}

// switchoverBound is how long after the sentinels agree on the new master
// an instance may still lose events after a switchover: its canary (one a
// second, missing after 2 s) finds its subscription on the old master, and
// it subscribes again on the new one (0.5 s). Without the canary the old
// master keeps the subscriptions, deaf, until Sentinel turns it into a
// replica and drops its clients: 10 s here, with /readyz 200 throughout.
// The worst run seen here lost events until 4.3 s; 8 s leaves room for a
// loaded CI machine and still fails without the canary.
const switchoverBound = 8 * time.Second

// TestSentinelSwitchover: a planned failover (SENTINEL FAILOVER, as before
// maintenance of the master), python node and Node UIs on two replicas,
// traffic through both. The old master stays up. Events are lost only for
// a bounded time after the sentinels agree on the new master
// (switchoverBound), during which /readyz drops and returns; every event
// published after that reaches every client; presence sends no notice
// (the first sweep on the new master holds expiries: the instances
// refreshed on the old master until they learned of the new one).
// Observed here (nine runs): the sentinels agree 1.1 to 1.25 s after
// SENTINEL FAILOVER; /readyz drops 2.2 to 3.9 s after that and returns
// 0.5 s later; events were lost up to 4.3 s after the sentinels agreed.
func TestSentinelSwitchover(t *testing.T) {
	g := redistest.StartSentinel(t)
	prefix := uniquePrefix(t)
	a := startInstance(t, "a", g.URL(), prefix)
	b := startInstance(t, "b", g.URL(), prefix)
	instances := []*procServer{a, b}
	logRedisOnFailure(t, instances)
	ws := clientOpts{transports: "websocket"}
	ws.token = nodeToken(t, 3, 1, 2, time.Hour)
	n3 := startPyNode(t, a.server, "node3@a", ws)
	ws.token = userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)
	ua := startUI(t, a.server, "user5@a", ws)
	ws.token = userToken(t, 6, 2, []int64{1}, "collaboration", time.Hour)
	ub := startUI(t, b.server, "user6@b", ws)
	n3.waitEvent("sync", wait)
	ua.waitType("connect", wait)
	ub.waitType("connect", wait)
	all := []*client{n3, ua, ub}
	for _, s := range instances {
		barrier(t, s.server, all...)
	}
	onlineBefore := map[*client]int{}
	for _, cl := range all {
		onlineBefore[cl] = len(cl.events("node-online"))
	}

	tr := startTraffic(t, instances, func(int) string { return "collaboration_1" })
	watches := make([]*readyzWatch, len(instances))
	for i, s := range instances {
		watches[i] = watchReadyz(s.name, s.URL)
		defer watches[i].Stop()
	}
	tr.flowing(t, "before the switch", all, -1)

	switchAt := time.Now()
	old := g.Switchover()
	promoted := g.WaitFailover(old, 30*time.Second)
	agreedAt := time.Now()
	t.Logf("switchover %s -> %s: sentinels agree after %s", old, promoted, agreedAt.Sub(switchAt).Round(time.Millisecond))

	// Run on past the bound, until every client got events published
	// after it.
	testwait.For(t, 20*time.Second, func() error {
		if time.Until(agreedAt.Add(switchoverBound)) > 0 {
			return fmt.Errorf("running on")
		}
		return nil
	})
	tr.flowing(t, "after the switch", all, tr.last())
	tr.stop()
	for _, s := range instances {
		barrier(t, s.server, all...)
	}
	for _, w := range watches {
		w.Stop()
		down, up := w.times()
		t.Logf("%s: /readyz down %s, up %s after the sentinels agreed", w.name, sinceOr(down, agreedAt), sinceOr(up, agreedAt))
		if !down.IsZero() && up.IsZero() {
			t.Errorf("%s: not ready again after the switch", w.name)
		}
	}
	pubs := tr.all()
	for _, cl := range all {
		got := tr.received(t, cl)
		var lost, owed []int
		for _, p := range pubs {
			if p.status != http.StatusAccepted || got[p.seq] > 0 {
				continue
			}
			lost = append(lost, p.seq)
			if p.at.Before(switchAt) || p.at.After(agreedAt.Add(switchoverBound)) {
				owed = append(owed, p.seq)
			}
		}
		window := ""
		if len(lost) > 0 {
			window = fmt.Sprintf(", published from %s to %s after the sentinels agreed",
				pubs[lost[0]].at.Sub(agreedAt).Round(time.Millisecond), pubs[lost[len(lost)-1]].at.Sub(agreedAt).Round(time.Millisecond))
		}
		t.Logf("%s: %d received, %d lost%s", cl.name, len(got), len(lost), window)
		if len(owed) > 0 {
			t.Errorf("%s: %d events lost outside the switchover window: %v", cl.name, len(owed), owed)
		}
		if n := len(cl.events("node-offline")); n != 0 {
			t.Errorf("%s: %d node-offline", cl.name, n)
		}
		if n := len(cl.events("node-online")); n != onlineBefore[cl] {
			t.Errorf("%s: node-online %d times, %d before the switch", cl.name, n, onlineBefore[cl])
		}
	}
}

// traffic publishes "traffic" with a sequence number every 20 ms, through
// each instance in turn, to the room roomOf(seq).
type traffic struct {
	stopOnce func()
	mu       sync.Mutex
	pubs     []published // by seq
}

func startTraffic(t *testing.T, instances []*procServer, roomOf func(seq int) string) *traffic {
	tr := &traffic{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		hc := &http.Client{Timeout: 3 * time.Second}
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			via := instances[seq%len(instances)]
			p := published{seq: seq, room: roomOf(seq), via: via.name, at: time.Now()}
			body := fmt.Sprintf(`{"event":"traffic","room":%q,"data":%d}`, p.room, seq)
			req, _ := http.NewRequest("POST", via.URL+"/api/v1/emit", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testPublishToken)
			req.Header.Set("Content-Type", "application/json")
			if resp, err := hc.Do(req); err == nil {
				p.status = resp.StatusCode
				resp.Body.Close()
			}
			tr.mu.Lock()
			tr.pubs = append(tr.pubs, p)
			tr.mu.Unlock()
		}
	}()
	tr.stopOnce = sync.OnceFunc(func() { close(stop); <-done })
	t.Cleanup(tr.stopOnce)
	return tr
}

func (tr *traffic) stop() { tr.stopOnce() }

// last is the sequence number of the last publish made.
func (tr *traffic) last() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.pubs) - 1
}

func (tr *traffic) all() []published {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]published(nil), tr.pubs...)
}

// received counts the traffic cl got, by sequence number.
func (tr *traffic) received(t *testing.T, cl *client) map[int]int {
	t.Helper()
	got := map[int]int{}
	for _, m := range cl.events("traffic") {
		n, err := strconv.Atoi(string(m.Args[0]))
		if err != nil {
			t.Fatalf("%s: traffic %s", cl.name, m.Args[0])
		}
		got[n]++
	}
	return got
}

// flowing waits until every client got at least 5 events published after
// seq.
func (tr *traffic) flowing(t *testing.T, when string, clients []*client, after int) {
	t.Helper()
	for _, cl := range clients {
		testwait.For(t, wait, func() error {
			n := 0
			for s := range tr.received(t, cl) {
				if s > after {
					n++
				}
			}
			if n < 5 {
				return fmt.Errorf("%s: %s: %d events published after #%d", when, cl.name, n, after)
			}
			return nil
		})
	}
}

// logRedisOnFailure logs, when t fails, what the instances logged above
// debug level about Redis, the adapter and presence, and their presence
// notices (the last 60 lines of each, which startInstance logs, are mostly
// debug lines of the traffic).
func logRedisOnFailure(t *testing.T, instances []*procServer) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, s := range instances {
			for _, l := range strings.Split(s.logText(), "\n") {
				if (!strings.Contains(l, `"level":"debug"`) || strings.Contains(l, "node-o")) &&
					(strings.Contains(l, "redis") || strings.Contains(l, "presence") || strings.Contains(l, "node-o")) {
					t.Log(s.name, l)
				}
			}
		}
	})
}

func sinceOr(t, from time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(from).Round(time.Millisecond).String()
}

// waitNodesListed waits until GET /api/v1/nodes of every instance lists
// exactly the node ids want (sorted, comma-separated).
func waitNodesListed(t *testing.T, instances []*procServer, want, when string) {
	t.Helper()
	for _, s := range instances {
		testwait.For(t, wait, func() error {
			var ids []string
			for _, n := range nodesOf(t, s.server) {
				ids = append(ids, fmt.Sprint(n["id"]))
			}
			slices.Sort(ids)
			if strings.Join(ids, ",") != want {
				return fmt.Errorf("%s, nodes API of %s: %v, want %s", when, s.name, ids, want)
			}
			return nil
		})
	}
}
