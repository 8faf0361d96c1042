package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/redistest"
)

// scriptEnv runs the scripts alone against a real Redis.
type scriptEnv struct {
	t   *testing.T
	ctx context.Context
	srv *redistest.Server
	c   *redis.Client
	r   runner
}

func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:         addr,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   -1,
	})
}

func newScriptEnv(t *testing.T) *scriptEnv {
	srv := redistest.Start(t)
	c := newClient(srv.Addr())
	t.Cleanup(func() { _ = c.Close() })
	return &scriptEnv{t: t, ctx: context.Background(), srv: srv, c: c,
		r: runner{client: c, ks: newKeyspace(uniquePrefix(t)), window: time.Minute}}
}

func (e *scriptEnv) key(i int) string { return e.r.ks.keys[i] }

func (e *scriptEnv) redisNow() int64 {
	e.t.Helper()
	tm, err := e.c.Time(e.ctx).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return tm.UnixMilli()
}

// seq is the Seq of the n-th transition of the current epoch.
func (e *scriptEnv) seq(n int64) int64 {
	e.t.Helper()
	created, err := strconv.ParseInt(e.hash(e.key(4))["created"], 10, 64)
	if err != nil {
		e.t.Fatal(err)
	}
	return SeqBase(time.UnixMilli(created)) + n
}

func (e *scriptEnv) register(known, mode string, cs ...regConn) (string, []Transition) {
	e.t.Helper()
	eid, trs, err := e.r.register(e.ctx, known, mode, time.Minute, cs)
	if err != nil {
		e.t.Fatal(err)
	}
	return eid, trs
}

func (e *scriptEnv) disconnect(known string, grace time.Duration, cs ...discConn) string {
	e.t.Helper()
	eid, err := e.r.disconnect(e.ctx, known, grace, cs)
	if err != nil {
		e.t.Fatal(err)
	}
	return eid
}

func (e *scriptEnv) sweep(known string) sweepResult {
	e.t.Helper()
	res, err := e.r.sweep(e.ctx, known, 1000, time.Hour, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *scriptEnv) scores(key string) map[string]float64 {
	e.t.Helper()
	zs, err := e.c.ZRangeWithScores(e.ctx, key, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, z := range zs {
		out[z.Member.(string)] = z.Score
	}
	return out
}

func (e *scriptEnv) members(key string) []string {
	e.t.Helper()
	m, err := e.c.SMembers(e.ctx, key).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func (e *scriptEnv) hash(key string) map[string]string {
	e.t.Helper()
	h, err := e.c.HGetAll(e.ctx, key).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *scriptEnv) info(node string) map[string]string {
	return e.hash(e.r.ks.nodePrefix + "info:" + node)
}
func (e *scriptEnv) nodeConns(node string) map[string]string {
	return e.hash(e.r.ks.nodePrefix + "conns:" + node)
}
func (e *scriptEnv) online() []string            { return e.members(e.key(1)) }
func (e *scriptEnv) pending() map[string]float64 { return e.scores(e.key(2)) }
func (e *scriptEnv) uncertain() []string         { return e.members(e.key(3)) }

// expire makes an entry expired (its score in the past).
func (e *scriptEnv) expire(node, conn string) {
	e.t.Helper()
	must(e.t, e.c.ZAdd(e.ctx, e.key(0), redis.Z{Score: 1, Member: memberOf(node, conn)}).Err())
}

// due makes a pending deadline passed.
func (e *scriptEnv) due(node string) {
	e.t.Helper()
	must(e.t, e.c.ZAdd(e.ctx, e.key(2), redis.Z{Score: 1, Member: node}).Err())
}

// endWindow ends the restore window of the epoch.
func (e *scriptEnv) endWindow() {
	e.t.Helper()
	must(e.t, e.c.HSet(e.ctx, e.key(4), "window_end", 1).Err())
}

func rc(key, id, instance string) regConn {
	c := conn(key, id)
	c.Instance = instance
	return regConn{Conn: c}
}

func dc(key, id, epoch string) discConn {
	return discConn{Conn: conn(key, id), epoch: epoch}
}

func kinds(trs []Transition) string {
	s := ""
	for _, tr := range trs {
		s += map[bool]string{true: "+", false: "-"}[tr.Online] + tr.Node.Key + " "
	}
	return s
}

func TestScriptRegisterConnect(t *testing.T) {
	e := newScriptEnv(t)
	before := e.redisNow()
	eid, trs := e.register("", modeConnect, rc("3", "a", "i1"))
	if eid == "" {
		t.Fatal("no epoch")
	}
	if len(trs) != 1 || !trs[0].Online || !sameNode(trs[0].Node, node("3")) || trs[0].Seq != e.seq(1) {
		t.Fatalf("first connect: %+v, want one online of node 3 with seq 1", trs)
	}
	sc := e.scores(e.key(0))
	if exp := sc[memberOf("3", "a")]; exp < float64(before+59_000) || exp > float64(e.redisNow()+60_000) {
		t.Errorf("expiry %v, want Redis now + 60s (%d)", exp, before+60_000)
	}
	if ep := e.hash(e.key(4)); ep["id"] != eid || ep["window_end"] != "0" {
		t.Errorf("epoch %v: a caller that knew no epoch opens no restore window", ep)
	}
	if got := e.online(); !slices.Equal(got, []string{"3"}) {
		t.Errorf("online = %v", got)
	}
	inf := e.info("3")
	want := map[string]string{"id": "3", "name": "node-3", "org": "30", "collab": "300", "instance": "i1",
		"since": micros(time.Unix(1700000000, 0)), "last_connect": micros(time.Unix(1700000000, 0))}
	if fmt.Sprint(inf) != fmt.Sprint(want) {
		t.Errorf("info = %v\nwant   %v", inf, want)
	}

	// A second connection (another replica): no transition; the node's
	// instance is the latest connection's; since is kept.
	second := rc("3", "b", "i2")
	second.Since = time.Unix(1700000500, 0)
	if _, trs := e.register(eid, modeConnect, second); len(trs) != 0 {
		t.Errorf("second connection reported %+v", trs)
	}
	inf = e.info("3")
	if inf["instance"] != "i2" || inf["since"] != micros(time.Unix(1700000000, 0)) || inf["last_connect"] != micros(second.Since) {
		t.Errorf("info after a second connection = %v", inf)
	}
	if got := e.nodeConns("3"); fmt.Sprint(got) != "map[a:i1 b:i2]" {
		t.Errorf("node conns = %v", got)
	}
	// The same connection again: nothing.
	if _, trs := e.register(eid, modeConnect, rc("3", "a", "i1")); len(trs) != 0 {
		t.Errorf("duplicate connect reported %+v", trs)
	}
	// The same conn id for another node is another connection.
	if _, trs := e.register(eid, modeConnect, rc("4", "a", "i1")); kinds(trs) != "+4 " || trs[0].Seq != e.seq(2) {
		t.Errorf("node 4 with conn id a: %+v", trs)
	}
	if n := len(e.scores(e.key(0))); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
}

// TestScriptSeqAcrossEpochs: Seq keeps increasing when Redis loses its
// state and the counter restarts.
func TestScriptSeqAcrossEpochs(t *testing.T) {
	e := newScriptEnv(t)
	eid, trs := e.register("", modeConnect, rc("1", "a", "i1"), rc("2", "a", "i1"))
	last := trs[1].Seq
	for range 2 {
		time.Sleep(2 * time.Millisecond) // the next epoch is created in a later millisecond
		must(t, e.c.FlushAll(e.ctx).Err())
		e.register(eid, modeRestore, rc("1", "a", "i1"))
		e.endWindow()
		eid, trs = e.register(eid, modeConnect, rc("3", "a", "i1"))
		if len(trs) != 1 || trs[0].Seq <= last {
			t.Fatalf("after a flush: %+v, want a seq above %d", trs, last)
		}
		last = trs[0].Seq
	}
}

func TestScriptRegisterBatch(t *testing.T) {
	e := newScriptEnv(t)
	_, trs := e.register("", modeConnect, rc("1", "a", "i1"), rc("2", "b", "i1"), rc("1", "c", "i1"), rc("12:3", "x", "i1"))
	if kinds(trs) != "+1 +2 +12:3 " {
		t.Fatalf("batch: %s", kinds(trs))
	}
	for i, tr := range trs {
		if tr.Seq != e.seq(int64(i+1)) {
			t.Errorf("transition %d has seq %d", i, tr.Seq)
		}
	}
}

func TestScriptRegisterCancelsPending(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("3", "a", "i1"))
	e.disconnect(eid, time.Minute, dc("3", "a", eid))
	if _, ok := e.pending()["3"]; !ok {
		t.Fatal("not pending after its last connection went")
	}
	if _, trs := e.register(eid, modeConnect, rc("3", "b", "i2")); len(trs) != 0 {
		t.Errorf("a reconnect within the grace reported %+v", trs)
	}
	if p := e.pending(); len(p) != 0 {
		t.Errorf("pending = %v after a reconnect", p)
	}
	if inf := e.info("3"); inf["instance"] != "i2" {
		t.Errorf("instance %q, want i2", inf["instance"])
	}
}

// TestScriptRegisterWindow: after Redis lost its state (a caller knew an
// older epoch), a connect of a node that is not online does not announce
// it at once; a restore claims it; the sweeper announces the others when
// the window ends.
func TestScriptRegisterWindow(t *testing.T) {
	e := newScriptEnv(t)
	before := e.redisNow()
	eid, trs := e.register("old-epoch", modeConnect, rc("1", "a", "i1"), rc("2", "b", "i1"))
	if len(trs) != 0 {
		t.Fatalf("connects in the restore window reported %+v", trs)
	}
	ep := e.hash(e.key(4))
	if we, _ := strconv.ParseInt(ep["window_end"], 10, 64); ep["id"] != eid || we < before+60_000 || we > e.redisNow()+60_000 {
		t.Fatalf("epoch %v, want a window of 1 minute", ep)
	}
	if got := e.uncertain(); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("uncertain = %v", got)
	}
	// Node 1 was online before: a replica restores its connection.
	if _, trs := e.register("old-epoch", modeRestore, rc("1", "z", "i2")); len(trs) != 0 {
		t.Fatalf("restore reported %+v", trs)
	}
	if got := e.uncertain(); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("uncertain after the restore = %v", got)
	}
	if res := e.sweep(eid); len(res.trs) != 0 {
		t.Fatalf("sweep within the window reported %+v", res.trs)
	}
	e.endWindow()
	res := e.sweep(eid)
	if kinds(res.trs) != "+2 " || !sameNode(res.trs[0].Node, node("2")) {
		t.Fatalf("sweep after the window: %+v, want node 2 announced", res.trs)
	}
	if res := e.sweep(eid); len(res.trs) != 0 {
		t.Fatalf("second sweep reported %+v", res.trs)
	}
	// A known epoch that exists does not reopen a window.
	if _, trs := e.register(eid, modeConnect, rc("3", "c", "i1")); kinds(trs) != "+3 " {
		t.Fatalf("connect after the window: %s", kinds(trs))
	}
}

func TestScriptRegisterRestore(t *testing.T) {
	e := newScriptEnv(t)
	ping := time.Unix(1700000200, 0)
	cfgAt := time.Unix(1700000100, 0)
	c := rc("3", "a", "i1")
	c.ping, c.config, c.configAt = ping, json.RawMessage(`{"v":1}`), cfgAt
	c.metrics, c.metricAt = json.RawMessage(`{"m":1}`), cfgAt
	eid, trs := e.register("old", modeRestore, c)
	if len(trs) != 0 {
		t.Fatalf("restore reported %+v", trs)
	}
	if got := e.online(); !slices.Equal(got, []string{"3"}) {
		t.Fatalf("online = %v", got)
	}
	inf := e.info("3")
	if inf["ping"] != micros(ping) || inf["config"] != `{"v":1}` || inf["config_at"] != micros(cfgAt) || inf["metrics"] != `{"m":1}` {
		t.Errorf("info after restore = %v", inf)
	}
	// A second replica restores another connection of the node with older
	// data and an earlier connect: since is the earliest, the rest the newest.
	c2 := rc("3", "b", "i2")
	c2.Since = time.Unix(1699999000, 0)
	c2.ping, c2.config, c2.configAt = time.Unix(1700000000, 0), json.RawMessage(`{"v":0}`), time.Unix(1700000000, 0)
	c2.metrics, c2.metricAt = json.RawMessage(`{"m":2}`), time.Unix(1700000300, 0)
	e.register(eid, modeRestore, c2)
	inf = e.info("3")
	if inf["since"] != micros(c2.Since) || inf["ping"] != micros(ping) || inf["config"] != `{"v":1}` || inf["metrics"] != `{"m":2}` {
		t.Errorf("info after a second restore = %v", inf)
	}
	if len(e.uncertain()) != 0 || len(e.pending()) != 0 {
		t.Errorf("uncertain %v, pending %v", e.uncertain(), e.pending())
	}
}

func TestScriptDisconnect(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("3", "a", "i1"), rc("3", "b", "i2"))
	// One of two: nothing pending; the instance moves to the one left.
	if e.disconnect(eid, time.Minute, dc("3", "b", eid)) != eid {
		t.Fatal("epoch changed")
	}
	if len(e.pending()) != 0 || e.info("3")["instance"] != "i1" {
		t.Fatalf("pending %v, info %v", e.pending(), e.info("3"))
	}
	// Unknown connections, of this epoch or never registered: nothing.
	e.disconnect(eid, time.Minute, dc("3", "zzz", eid), dc("9", "a", ""), dc("3", "b", eid))
	if len(e.pending()) != 0 || !slices.Equal(e.online(), []string{"3"}) {
		t.Fatalf("an unknown disconnect changed something: pending %v online %v", e.pending(), e.online())
	}
	// The last: pending at now + grace, still online.
	before := e.redisNow()
	e.disconnect(eid, 5*time.Second, dc("3", "a", eid))
	d := e.pending()["3"]
	if d < float64(before+5000) || d > float64(e.redisNow()+5000) {
		t.Errorf("deadline %v, want Redis now + 5s (%d)", d, before+5000)
	}
	if !slices.Equal(e.online(), []string{"3"}) || len(e.scores(e.key(0))) != 0 || len(e.nodeConns("3")) != 0 {
		t.Errorf("online %v, entries %v, node conns %v", e.online(), e.scores(e.key(0)), e.nodeConns("3"))
	}
	// No grace: the deadline is now.
	e.register(eid, modeConnect, rc("4", "a", "i1"))
	before = e.redisNow()
	e.disconnect(eid, 0, dc("4", "a", eid))
	if d := e.pending()["4"]; d < float64(before) || d > float64(e.redisNow()) {
		t.Errorf("deadline without grace %v, want now %d", d, before)
	}
}

// TestScriptDisconnectLostState: a connection registered in an older epoch
// that Redis no longer has was lost with Redis's state; its node was
// announced, so it becomes online and pending, its offline deadline no
// earlier than the end of the restore window.
func TestScriptDisconnectLostState(t *testing.T) {
	e := newScriptEnv(t)
	// Redis lost everything; a replica that knew "old" connects node 1 (in
	// the window: uncertain) and then node 1's old connection closes.
	eid, _ := e.register("old", modeConnect, rc("1", "new", "i2"))
	e.disconnect("old", 10, dc("1", "lost", "old"), dc("2", "lost", "old"))
	if got := e.uncertain(); len(got) != 0 {
		t.Errorf("uncertain = %v: a lost connection shows the node was online before", got)
	}
	if got := e.online(); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("online = %v", got)
	}
	p := e.pending()
	if _, ok := p["1"]; ok {
		t.Errorf("node 1 has a live connection but is pending: %v", p)
	}
	wend, _ := strconv.ParseFloat(e.hash(e.key(4))["window_end"], 64)
	if p["2"] != wend {
		t.Errorf("node 2 pending until %v, want the window end %v", p["2"], wend)
	}
	if inf := e.info("2"); inf["name"] != "node-2" || inf["org"] != "20" {
		t.Errorf("node 2 info %v", inf)
	}
	e.endWindow()
	e.due("2")
	res := e.sweep(eid)
	if kinds(res.trs) != "-2 " {
		t.Fatalf("sweep: %s, want node 2 offline and nothing for node 1", kinds(res.trs))
	}
}

func TestScriptRefresh(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("1", "a", "i1"), rc("2", "b", "i1"))
	must(t, e.c.ZAdd(e.ctx, e.key(0), redis.Z{Score: 5, Member: memberOf("1", "a")}).Err())
	before := e.redisNow()
	got, missing, err := e.r.refresh(e.ctx, eid, 30*time.Second, []string{memberOf("1", "a"), memberOf("2", "b"), memberOf("3", "c")})
	if err != nil {
		t.Fatal(err)
	}
	if got != eid || !slices.Equal(missing, []string{memberOf("3", "c")}) {
		t.Fatalf("refresh = %q %q, want %q and only 3/c missing", got, missing, eid)
	}
	sc := e.scores(e.key(0))
	for m, s := range sc {
		if s < float64(before+30_000) || s > float64(e.redisNow()+30_000) {
			t.Errorf("%s expires at %v, want Redis now + 30s", m, s)
		}
	}
	if len(sc) != 2 {
		t.Errorf("refresh created entries: %v", sc)
	}
	// The same refresh twice within a millisecond still finds them.
	for range 3 {
		if _, missing, _ := e.r.refresh(e.ctx, eid, 30*time.Second, []string{memberOf("1", "a")}); len(missing) != 0 {
			t.Fatalf("missing %v on a quick second refresh", missing)
		}
	}
	// After a flush: everything is missing, in a new epoch with a window.
	must(t, e.c.FlushAll(e.ctx).Err())
	got, missing, err = e.r.refresh(e.ctx, eid, time.Second, []string{memberOf("1", "a"), memberOf("2", "b")})
	if err != nil {
		t.Fatal(err)
	}
	if got == eid || len(missing) != 2 {
		t.Fatalf("after a flush: epoch %q (old %q), missing %q", got, eid, missing)
	}
	if we := e.hash(e.key(4))["window_end"]; we == "0" {
		t.Errorf("no restore window after a flush")
	}
}

func TestScriptSweep(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("1", "a", "i1"), rc("2", "b", "i1"), rc("2", "c", "i2"), rc("12:3", "x4", "i1"))
	if res := e.sweep(eid); len(res.trs) != 0 || res.expired != 0 || res.online != 3 {
		t.Fatalf("nothing due: %+v", res)
	}
	// Node 1's only connection expired: offline at once, with its data.
	// One of node 2's two expired: nothing. The odd key parses.
	e.expire("1", "a")
	e.expire("2", "b")
	e.expire("12:3", "x4")
	res := e.sweep(eid)
	if kinds(res.trs) != "-1 -12:3 " && kinds(res.trs) != "-12:3 -1 " {
		t.Fatalf("sweep: %s", kinds(res.trs))
	}
	if res.expired != 3 || res.online != 1 {
		t.Errorf("expired %d online %d, want 3 and 1", res.expired, res.online)
	}
	for _, tr := range res.trs {
		if tr.Node.Key == "1" && !sameNode(tr.Node, node("1")) {
			t.Errorf("offline carries %+v", tr.Node)
		}
	}
	if len(e.info("1")) != 0 || len(e.nodeConns("1")) != 0 {
		t.Errorf("node 1 left keys: %v %v", e.info("1"), e.nodeConns("1"))
	}
	if e.info("2")["instance"] != "i2" {
		t.Errorf("node 2 instance %q, want i2 (its live connection)", e.info("2")["instance"])
	}
	// Pending: due goes offline, not yet due stays.
	e.register(eid, modeConnect, rc("5", "a", "i1"))
	e.disconnect(eid, time.Hour, dc("2", "c", eid), dc("5", "a", eid))
	e.due("5")
	if res := e.sweep(eid); kinds(res.trs) != "-5 " {
		t.Fatalf("pending sweep: %s", kinds(res.trs))
	}
	if _, ok := e.pending()["2"]; !ok {
		t.Error("node 2 left pending before its deadline")
	}
	// Due but a connection came back without cancelling (not possible
	// through the scripts; defensive): just dropped from pending.
	must(t, e.c.HSet(e.ctx, e.r.ks.nodePrefix+"conns:2", "z", "i9").Err())
	e.due("2")
	if res := e.sweep(eid); len(res.trs) != 0 || len(e.pending()) != 0 {
		t.Fatalf("due with a connection: %+v, pending %v", res.trs, e.pending())
	}
}

// TestScriptSweepUncertainOffline: a node never announced (uncertain)
// that goes away is not reported offline either.
func TestScriptSweepUncertainOffline(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("old", modeConnect, rc("1", "a", "i1"))
	e.expire("1", "a")
	if res := e.sweep(eid); len(res.trs) != 0 || len(e.online()) != 0 || len(e.uncertain()) != 0 {
		t.Fatalf("sweep: %+v online %v uncertain %v", res.trs, e.online(), e.uncertain())
	}
}

// TestScriptSweepHold: when nobody swept for longer than the gap (Redis
// was out of reach), expiries and deadlines wait for the hold.
func TestScriptSweepHold(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("1", "a", "i1"), rc("2", "b", "i1"))
	e.disconnect(eid, time.Hour, dc("2", "b", eid))
	sweep := func(gap, hold time.Duration) sweepResult {
		res, err := e.r.sweep(e.ctx, eid, 1000, gap, hold)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	sweep(time.Hour, time.Hour) // last_sweep is now
	must(t, e.c.HSet(e.ctx, e.key(4), "last_sweep", e.redisNow()-10_000).Err())
	e.expire("1", "a")
	e.due("2")
	res := sweep(5*time.Second, time.Hour)
	if !res.holding || len(res.trs) != 0 || res.expired != 0 {
		t.Fatalf("after a 10s gap: %+v, want a hold", res)
	}
	if res := sweep(5*time.Second, time.Hour); !res.holding || len(res.trs) != 0 {
		t.Fatalf("within the hold: %+v", res)
	}
	must(t, e.c.HSet(e.ctx, e.key(4), "hold_until", 1).Err())
	res = sweep(5*time.Second, time.Hour)
	if res.holding || kinds(res.trs) != "-1 -2 " {
		t.Fatalf("after the hold: %+v", res)
	}
}

// TestScriptSweepLimit: a sweep removes at most limit entries and says
// there is more.
func TestScriptSweepLimit(t *testing.T) {
	e := newScriptEnv(t)
	var cs []regConn
	for i := range 25 {
		cs = append(cs, rc(strconv.Itoa(i), "a", "i1"))
	}
	eid, _ := e.register("", modeConnect, cs...)
	for i := range 25 {
		e.expire(strconv.Itoa(i), "a")
	}
	total := 0
	for round := 0; ; round++ {
		res, err := e.r.sweep(e.ctx, eid, 10, time.Hour, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		total += len(res.trs)
		if !res.more {
			break
		}
		if round > 5 {
			t.Fatal("sweep never finishes")
		}
	}
	if total != 25 {
		t.Errorf("%d offline transitions, want 25", total)
	}
}

// TestScriptSweepConcurrent: sweepers racing over the same expired entries
// report each offline exactly once between them.
func TestScriptSweepConcurrent(t *testing.T) {
	e := newScriptEnv(t)
	const n = 300
	var cs []regConn
	for i := range n {
		cs = append(cs, rc(strconv.Itoa(i), "a", "i1"))
	}
	eid, _ := e.register("", modeConnect, cs...)
	pipe := e.c.Pipeline()
	for i := range n {
		pipe.ZAdd(e.ctx, e.key(0), redis.Z{Score: 1, Member: memberOf(strconv.Itoa(i), "a")})
	}
	if _, err := pipe.Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			c := newClient(e.srv.Addr())
			defer c.Close()
			r := runner{client: c, ks: e.r.ks, window: time.Minute}
			for range 10 {
				res, err := r.sweep(e.ctx, eid, 7, time.Hour, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, tr := range res.trs {
					got[tr.Node.Key]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for len(got) < n {
		res := e.sweep(eid)
		if len(res.trs) == 0 {
			break
		}
		for _, tr := range res.trs {
			got[tr.Node.Key]++
		}
	}
	if len(got) != n {
		t.Errorf("%d nodes reported offline, want %d", len(got), n)
	}
	for k, c := range got {
		if c != 1 {
			t.Errorf("node %s reported %d times", k, c)
		}
	}
}

func TestScriptUpdateAndOnline(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("3", "a", "i1"), rc("3", "b", "i2"))
	ok, err := e.r.update(e.ctx, "3", "ping", micros(time.Unix(1700000300, 0)), "config", `{"c":1}`, "config_at", micros(time.Unix(1700000301, 0)))
	if err != nil || !ok {
		t.Fatalf("update = %v, %v", ok, err)
	}
	if ok, _ := e.r.update(e.ctx, "4", "ping", "1"); ok || len(e.info("4")) != 0 {
		t.Errorf("an update of a node that is not online set it")
	}
	e.disconnect(eid, time.Hour, dc("3", "b", eid))
	states, err := e.r.online(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 {
		t.Fatalf("online = %+v", states)
	}
	s := states[0]
	if !sameNode(s.Node, node("3")) || s.Connections != 1 || s.Instance != "i1" ||
		!s.ConnectedSince.Equal(time.Unix(1700000000, 0)) || s.LastPing == nil || !s.LastPing.Equal(time.Unix(1700000300, 0)) ||
		string(s.LastConfig) != `{"c":1}` || !s.LastConfigAt.Equal(time.Unix(1700000301, 0)) || s.LastMetrics != nil {
		t.Errorf("state = %+v", s)
	}
	// In its grace: still in the online set, not listed.
	e.disconnect(eid, time.Hour, dc("3", "a", eid))
	if states, _ := e.r.online(e.ctx); len(states) != 0 || len(e.online()) != 1 {
		t.Errorf("in the grace: listed %+v, online set %v", states, e.online())
	}
	// After the node went: an update does not bring its info back.
	e.due("3")
	e.sweep(eid)
	if ok, _ := e.r.update(e.ctx, "3", "ping", "1"); ok || len(e.info("3")) != 0 {
		t.Errorf("update after offline set %v", e.info("3"))
	}
}

// TestScriptKeysShareSlot: every key the scripts touch hashes on the
// same tag (Redis Cluster's rule: the text between the first '{' and the
// next '}'), so Cluster keeps them in one slot.
func TestScriptKeysShareSlot(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("3", "a", "i1"), rc("x{y}", "a", "i1"))
	e.disconnect(eid, time.Hour, dc("3", "a", eid))
	e.r.update(e.ctx, "x{y}", "ping", "1")
	e.r.sweep(e.ctx, eid, 10, time.Hour, time.Hour)
	keys, err := e.c.Keys(e.ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	prefix := e.r.ks.nodePrefix[1 : len(e.r.ks.nodePrefix)-2]
	for _, k := range keys {
		open := strings.IndexByte(k, '{')
		end := strings.IndexByte(k[open+1:], '}')
		if open < 0 || end <= 0 || k[open+1:open+1+end] != prefix {
			t.Errorf("key %q does not hash on {%s}", k, prefix)
		}
	}
	if len(keys) < 8 {
		t.Errorf("keys %q", keys)
	}
}

func TestSeqBase(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Increasing with the creation time, with room for 4096 transitions per
	// millisecond in between.
	a, b := SeqBase(at("2026-11-25T20:00:00Z")), SeqBase(at("2026-11-25T20:00:00.001Z"))
	if b-a != 4096 {
		t.Errorf("one millisecond apart: %d apart, want 4096", b-a)
	}
	// No overflow in 2040 (the old encoding overflowed int64 in 2039), and
	// exact as a JSON double (below 2^53) until 2093.
	for _, s := range []string{"2039-12-31T00:00:00Z", "2040-06-01T00:00:00Z", "2092-12-31T23:59:59Z"} {
		if v := SeqBase(at(s)); v <= a || v >= 1<<53 {
			t.Errorf("SeqBase(%s) = %d, want between %d and 2^53", s, v, a)
		}
	}
	if v := SeqBase(at("2020-01-01T00:00:00Z")); v != 0 {
		t.Errorf("before the origin: %d, want 0", v)
	}
	// parseSeq reads the scripts' "<created ms>:<counter>".
	created := at("2026-11-25T20:00:00Z")
	if got := parseSeq(strconv.FormatInt(created.UnixMilli(), 10) + ":7"); got != SeqBase(created)+7 {
		t.Errorf("parseSeq: %d", got)
	}
}

// TestScriptSweepServerChanged: the first sweep on another server than the
// last sweep's (a Sentinel or Cluster failover: the replicas refreshed on
// the old master until they learned of the new one, so entries may have
// expired on the new one while their replicas lived) holds expiries and
// deadlines, even without a gap.
func TestScriptSweepServerChanged(t *testing.T) {
	e := newScriptEnv(t)
	eid, _ := e.register("", modeConnect, rc("1", "a", "i1"))
	if res := e.sweep(eid); res.holding {
		t.Fatalf("first sweep: %+v", res)
	}
	if res := e.sweep(eid); res.holding {
		t.Fatalf("second sweep on the same server: %+v", res)
	}
	// The epoch hash as the old master last replicated it.
	must(t, e.c.HSet(e.ctx, e.key(4), "server", "0123456789abcdef0123456789abcdef01234567").Err())
	e.expire("1", "a")
	res, err := e.r.sweep(e.ctx, eid, 1000, time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !res.holding || len(res.trs) != 0 || res.expired != 0 {
		t.Fatalf("first sweep on another server: %+v, want a hold", res)
	}
}
