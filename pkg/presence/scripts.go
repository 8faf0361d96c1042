package presence

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts: lua/lib.lua is prepended to each.
//
//go:embed lua/*.lua
var luaFS embed.FS

var (
	scriptRegister   = newScript("register.lua")
	scriptDisconnect = newScript("disconnect.lua")
	scriptRefresh    = newScript("refresh.lua")
	scriptSweep      = newScript("sweep.lua")
	scriptUpdate     = newScript("update.lua")
	scriptOnline     = newScript("online.lua")
)

func newScript(name string) *redis.Script {
	lib, err := luaFS.ReadFile("lua/lib.lua")
	if err != nil {
		panic(err)
	}
	src, err := luaFS.ReadFile("lua/" + name)
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(lib) + "\n" + string(src))
}

// Registration modes of register.lua.
const (
	modeConnect = "connect"
	modeRestore = "restore"
)

// keyspace names the keys of one presence domain (one prefix). They share
// the hash tag {prefix}, so Redis Cluster keeps them in one slot.
type keyspace struct {
	keys       []string // KEYS[1..6] of every script (see lua/lib.lua)
	nodePrefix string   // ARGV[1]
}

func newKeyspace(prefix string) keyspace {
	tag := "{" + prefix + "}:"
	return keyspace{
		keys:       []string{tag + "heartbeats", tag + "online", tag + "pending", tag + "uncertain", tag + "epoch", tag + "seq"},
		nodePrefix: tag,
	}
}

// memberOf is a connection's member in the heartbeats ZSET.
func memberOf(nodeKey, connID string) string {
	return strconv.Itoa(len(nodeKey)) + ":" + nodeKey + connID
}

// runner runs the scripts of one keyspace; it keeps no state.
type runner struct {
	client redis.UniversalClient
	ks     keyspace
	window time.Duration // restore window (ARGV[4])
}

func (r *runner) run(ctx context.Context, s *redis.Script, known string, extra ...any) (any, error) {
	args := make([]any, 0, 4+len(extra))
	args = append(args, r.ks.nodePrefix, known, newEpochID(), r.window.Milliseconds())
	args = append(args, extra...)
	return s.Run(ctx, r.client, r.ks.keys, args...).Result()
}

func newEpochID() string {
	return strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
}

// regConn is a connection to register, with what its replica knows of the
// node (for a restore).
type regConn struct {
	Conn
	ping               time.Time
	config, metrics    json.RawMessage
	configAt, metricAt time.Time
}

func (r *runner) register(ctx context.Context, known, mode string, ttl time.Duration, cs []regConn) (string, []Transition, error) {
	extra := make([]any, 0, 2+13*len(cs))
	extra = append(extra, mode, ttl.Milliseconds())
	for _, c := range cs {
		extra = append(extra, c.Node.Key, c.ID, c.Instance, micros(c.Since), string(c.Node.ID), c.Node.Name,
			c.Node.OrganizationID, c.Node.CollaborationID,
			optMicros(c.ping), string(c.config), optMicros(c.configAt), string(c.metrics), optMicros(c.metricAt))
	}
	res, err := r.run(ctx, scriptRegister, known, extra...)
	if err != nil {
		return "", nil, err
	}
	reply, err := array(res, 2)
	if err != nil {
		return "", nil, err
	}
	trs, err := transitions(reply[1])
	return str(reply[0]), trs, err
}

// discConn is a connection to remove, with the epoch it was registered in.
type discConn struct {
	Conn
	epoch string
}

func (r *runner) disconnect(ctx context.Context, known string, grace time.Duration, cs []discConn) (string, error) {
	extra := make([]any, 0, 1+8*len(cs))
	extra = append(extra, max(grace, 0).Milliseconds())
	for _, c := range cs {
		extra = append(extra, c.Node.Key, c.ID, c.epoch, string(c.Node.ID), c.Node.Name,
			c.Node.OrganizationID, c.Node.CollaborationID, micros(c.Since))
	}
	res, err := r.run(ctx, scriptDisconnect, known, extra...)
	if err != nil {
		return "", err
	}
	reply, err := array(res, 1)
	if err != nil {
		return "", err
	}
	return str(reply[0]), nil
}

// refresh extends the entries of members and returns those missing.
func (r *runner) refresh(ctx context.Context, known string, ttl time.Duration, members []string) (string, []string, error) {
	extra := make([]any, 0, 1+len(members))
	extra = append(extra, ttl.Milliseconds())
	for _, m := range members {
		extra = append(extra, m)
	}
	res, err := r.run(ctx, scriptRefresh, known, extra...)
	if err != nil {
		return "", nil, err
	}
	reply, err := array(res, 2)
	if err != nil {
		return "", nil, err
	}
	list, err := array(reply[1], 0)
	if err != nil {
		return "", nil, err
	}
	missing := make([]string, len(list))
	for i, m := range list {
		missing[i] = str(m)
	}
	return str(reply[0]), missing, nil
}

type sweepResult struct {
	epoch   string
	expired int
	more    bool
	online  int
	holding bool
	trs     []Transition
}

// sweep runs sweep.lua: gap and hold are its ARGV[6] and ARGV[7].
func (r *runner) sweep(ctx context.Context, known string, limit int, gap, hold time.Duration) (sweepResult, error) {
	var out sweepResult
	res, err := r.run(ctx, scriptSweep, known, limit, gap.Milliseconds(), hold.Milliseconds())
	if err != nil {
		return out, err
	}
	reply, err := array(res, 3)
	if err != nil {
		return out, err
	}
	counts, err := array(reply[1], 4)
	if err != nil {
		return out, err
	}
	out.epoch = str(reply[0])
	out.expired, out.more, out.online, out.holding = int(num(counts[0])), num(counts[1]) == 1, int(num(counts[2])), num(counts[3]) == 1
	out.trs, err = transitions(reply[2])
	return out, err
}

// update sets fields of an online node's info; false: not online.
func (r *runner) update(ctx context.Context, nodeKey string, fv ...any) (bool, error) {
	res, err := r.run(ctx, scriptUpdate, "", append([]any{nodeKey}, fv...)...)
	if err != nil {
		return false, err
	}
	return num(res) == 1, nil
}

// rawState is an online node as Redis has it.
type rawState struct {
	State
	lastConnect, lastHeartbeat time.Time
}

func (r *runner) online(ctx context.Context) ([]rawState, error) {
	res, err := r.run(ctx, scriptOnline, "")
	if err != nil {
		return nil, err
	}
	list, err := array(res, 0)
	if err != nil {
		return nil, err
	}
	out := make([]rawState, 0, len(list))
	for _, item := range list {
		e, err := array(item, 3)
		if err != nil {
			return nil, err
		}
		flat, err := array(e[2], 0)
		if err != nil {
			return nil, err
		}
		f := make(map[string]string, len(flat)/2)
		for i := 0; i+1 < len(flat); i += 2 {
			f[str(flat[i])] = str(flat[i+1])
		}
		s := rawState{State: State{
			Node:        nodeOf(str(e[0]), f["id"], f["name"], f["org"], f["collab"]),
			Instance:    f["instance"],
			Connections: int(num(e[1])),
		}}
		s.ConnectedSince, _ = parseMicros(f["since"])
		s.lastConnect, _ = parseMicros(f["last_connect"])
		s.lastHeartbeat, _ = parseMicros(f["seen"])
		if t, ok := parseMicros(f["ping"]); ok {
			s.LastPing = &t
		}
		if v := f["config"]; v != "" {
			s.LastConfig = json.RawMessage(v)
			if t, ok := parseMicros(f["config_at"]); ok {
				s.LastConfigAt = &t
			}
		}
		if v := f["metrics"]; v != "" {
			s.LastMetrics = json.RawMessage(v)
			if t, ok := parseMicros(f["metrics_at"]); ok {
				s.LastMetricsAt = &t
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func nodeOf(key, id, name, org, collab string) Node {
	n := Node{Key: key, Name: name}
	if id != "" {
		n.ID = json.RawMessage(id)
	}
	n.OrganizationID, _ = strconv.ParseInt(org, 10, 64)
	n.CollaborationID, _ = strconv.ParseInt(collab, 10, 64)
	return n
}

// transitions decodes the flat list of record (lua/lib.lua).
func transitions(v any) ([]Transition, error) {
	flat, err := array(v, 0)
	if err != nil {
		return nil, err
	}
	if len(flat)%7 != 0 {
		return nil, fmt.Errorf("presence: malformed transitions reply of %d values", len(flat))
	}
	var out []Transition
	for i := 0; i < len(flat); i += 7 {
		seq := parseSeq(str(flat[i+6]))
		out = append(out, Transition{
			Online: str(flat[i]) == "online",
			Node:   nodeOf(str(flat[i+1]), str(flat[i+2]), str(flat[i+3]), str(flat[i+4]), str(flat[i+5])),
			Seq:    seq,
		})
	}
	return out, nil
}

// parseSeq turns "<epoch created (ms)>:<counter>" into SeqBase(created) +
// counter.
func parseSeq(s string) int64 {
	created, counter, ok := strings.Cut(s, ":")
	if !ok {
		n, _ := strconv.ParseInt(s, 10, 64)
		return n
	}
	c, _ := strconv.ParseInt(created, 10, 64)
	n, _ := strconv.ParseInt(counter, 10, 64)
	return SeqBase(time.UnixMilli(c)) + n
}

// seqEpoch is the origin of SeqBase: 2024-01-01T00:00:00Z in milliseconds.
const seqEpoch = 1704067200000

// seqShift leaves room for 4096 transitions per millisecond of a state's
// life, and keeps every Seq below 2^53 (exact in a JSON double) until 2093.
const seqShift = 12

// SeqBase is where the transition numbers of a presence state created at
// created start: the milliseconds since 2024 shifted 12 bits. A state's
// transitions number SeqBase + 1, + 2, ...; a later state starts above an
// earlier one unless that one decided more than 4096 transitions per
// millisecond of its life. The result stays below 2^53 until 2093, so a
// JavaScript consumer reads it exactly.
func SeqBase(created time.Time) int64 {
	ms := created.UnixMilli() - seqEpoch
	if ms < 0 {
		ms = 0
	}
	return ms << seqShift
}

// array checks that v is an array of at least n values.
func array(v any, n int) ([]any, error) {
	a, ok := v.([]any)
	if !ok || len(a) < n {
		return nil, fmt.Errorf("presence: unexpected script reply %T of %v", v, v)
	}
	return a, nil
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func num(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// Times in Redis are microseconds since the epoch of the replicas' clocks.
func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

func optMicros(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return micros(t)
}

func parseMicros(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(n).UTC(), true
}
