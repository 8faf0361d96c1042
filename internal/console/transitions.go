package console

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/presence"
)

// Defaults of the transition log: what the timeline shows.
const (
	transitionWindow = time.Hour
	transitionMax    = 10000
)

// Transition is one online/offline transition as the console keeps it.
type Transition struct {
	At              time.Time       `json:"at"`
	Online          bool            `json:"online"`
	Seq             int64           `json:"seq"`
	Key             string          `json:"key"`
	ID              json.RawMessage `json:"id"`
	Name            string          `json:"name"`
	OrganizationID  int64           `json:"organization_id"`
	CollaborationID int64           `json:"collaboration_id"`
}

// TransitionLog keeps the transitions of the last hour (at most 10,000) so
// that the console of every replica shows all of them. Record is called by
// the presence handler, which gets each transition once for the cluster.
type TransitionLog interface {
	Record(tr presence.Transition)
	// Since returns the transitions at or after t, oldest first.
	Since(ctx context.Context, t time.Time) ([]Transition, error)
}

func fromPresence(tr presence.Transition, at time.Time) Transition {
	return Transition{At: at.UTC(), Online: tr.Online, Seq: tr.Seq, Key: tr.Node.Key, ID: tr.Node.ID, Name: tr.Node.Name,
		OrganizationID: tr.Node.OrganizationID, CollaborationID: tr.Node.CollaborationID}
}

// MemoryLog is the transition log of a single instance (embedded mode).
type MemoryLog struct {
	now func() time.Time
	max int

	mu  sync.Mutex
	log []Transition
}

// NewMemoryLog returns an empty in-memory log; now nil: time.Now.
func NewMemoryLog(now func() time.Time) *MemoryLog {
	if now == nil {
		now = time.Now
	}
	return &MemoryLog{now: now, max: transitionMax}
}

// Record implements TransitionLog.
func (m *MemoryLog) Record(tr presence.Transition) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log = append(m.log, fromPresence(tr, now))
	cut := 0
	for cut < len(m.log) && (len(m.log)-cut > m.max || now.Sub(m.log[cut].At) > transitionWindow) {
		cut++
	}
	if cut > 0 {
		m.log = slices.Delete(m.log, 0, cut)
	}
}

// Since implements TransitionLog.
func (m *MemoryLog) Since(_ context.Context, t time.Time) ([]Transition, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, _ := slices.BinarySearchFunc(m.log, t, func(e Transition, t time.Time) int { return e.At.Compare(t) })
	return slices.Clone(m.log[i:]), nil
}

// RedisLog is the transition log of a cluster: one sorted set (score: the
// time in ms; member: the transition's JSON, unique by its Seq), trimmed to
// the last hour and to 10,000 members at every write, expiring an hour
// after the last one.
type RedisLog struct {
	client goredis.UniversalClient
	key    string
	log    *zap.Logger
	now    func() time.Time
	max    int64
}

// NewRedisLog returns the log under key (the cluster's prefix +
// ":console:transitions").
func NewRedisLog(client goredis.UniversalClient, key string, log *zap.Logger) *RedisLog {
	return &RedisLog{client: client, key: key, log: log, now: time.Now, max: transitionMax}
}

// Record implements TransitionLog. It writes within a second; a failure is
// logged (the timeline misses that transition), never returned to presence.
func (l *RedisLog) Record(tr presence.Transition) {
	now := l.now()
	b, err := json.Marshal(fromPresence(tr, now))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = l.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZAdd(ctx, l.key, goredis.Z{Score: float64(now.UnixMilli()), Member: string(b)})
		p.ZRemRangeByScore(ctx, l.key, "-inf", "("+strconv.FormatInt(now.Add(-transitionWindow).UnixMilli(), 10))
		p.ZRemRangeByRank(ctx, l.key, 0, -l.max-1)
		p.PExpire(ctx, l.key, transitionWindow)
		return nil
	})
	if err != nil {
		l.log.Warn("console: recording a node transition", zap.String("node_id", tr.Node.Key), zap.Error(err))
	}
}

// Since implements TransitionLog.
func (l *RedisLog) Since(ctx context.Context, t time.Time) ([]Transition, error) {
	members, err := l.client.ZRangeByScore(ctx, l.key, &goredis.ZRangeBy{Min: strconv.FormatInt(t.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("console: reading transitions: %w", err)
	}
	out := make([]Transition, 0, len(members))
	for _, m := range members {
		var tr Transition
		if json.Unmarshal([]byte(m), &tr) == nil {
			out = append(out, tr)
		}
	}
	return out, nil
}

var (
	_ TransitionLog = (*MemoryLog)(nil)
	_ TransitionLog = (*RedisLog)(nil)
)
