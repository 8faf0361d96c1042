package console

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	redisadapter "github.com/eventserver/eventserver/pkg/adapter/redis"
	"github.com/eventserver/eventserver/pkg/presence"
	"github.com/eventserver/eventserver/pkg/socketio"
)

// Snapshot is what the console shows: the whole cluster at one time.
type Snapshot struct {
	At       time.Time `json:"at"`
	Instance string    `json:"instance"`
	Nodes    []Node    `json:"nodes"`
	Timeline Timeline  `json:"timeline"`
	Replicas []Replica `json:"replicas"`
	// Unanswered counts the replicas that the cluster request expected
	// and that did not answer (named in Replicas when seen before).
	Unanswered int    `json:"unanswered"`
	Traffic    Series `json:"traffic"`
	// Errors say what could not be read (the rest is shown).
	Errors []string `json:"errors"`
}

// Node is one node: online (or stale) from presence, offline from the
// transitions of the last hour.
type Node struct {
	Key             string          `json:"key"`
	ID              json.RawMessage `json:"id"`
	Name            string          `json:"name"`
	OrganizationID  int64           `json:"organization_id"`
	CollaborationID int64           `json:"collaboration_id"`
	// Status is online, stale or offline; Since when the node came online
	// or went offline.
	Status        string          `json:"status"`
	Since         time.Time       `json:"since"`
	Instance      string          `json:"instance,omitempty"`
	Connections   int             `json:"connections"`
	LastPing      *time.Time      `json:"last_ping"`
	LastSeen      *time.Time      `json:"last_seen"`
	LastConfig    json.RawMessage `json:"last_config,omitempty"`
	LastConfigAt  *time.Time      `json:"last_config_at"`
	LastMetrics   json.RawMessage `json:"last_metrics,omitempty"`
	LastMetricsAt *time.Time      `json:"last_metrics_at"`
}

// Timeline counts the transitions of the last hour per collaboration, in
// minutes: Buckets[i] is [online, offline] of minute i after From.
type Timeline struct {
	From           time.Time               `json:"from"`
	BucketSeconds  int                     `json:"bucket_seconds"`
	Collaborations []CollaborationTimeline `json:"collaborations"`
	// Recent are the latest transitions, newest first (at most 50).
	Recent []Transition `json:"recent"`
	// Total is the number of transitions of the hour.
	Total int `json:"total"`
}

// CollaborationTimeline is one collaboration's row of the timeline.
type CollaborationTimeline struct {
	CollaborationID int64    `json:"collaboration_id"`
	Online          int      `json:"online"`
	Buckets         [][2]int `json:"buckets"`
}

// Replica is one replica of the cluster, as it answered EventReplica.
type Replica struct {
	Instance    string             `json:"instance"`
	Version     string             `json:"version"`
	Ready       bool               `json:"ready"`
	Redis       string             `json:"redis"`
	Connections map[string]float64 `json:"connections"`
	// Self is the replica that served this snapshot; Missing, a replica
	// that answered in the last hour and not this time.
	Self     bool      `json:"self"`
	Missing  bool      `json:"missing"`
	LastSeen time.Time `json:"last_seen"`
	Traffic  *Series   `json:"traffic,omitempty"`
}

const (
	timelineBuckets = 60
	recentMax       = 50
	seenMax         = 1000
)

// selfAnswer is this replica's answer to EventReplica: its JSON, as a
// string (the adapter carries it as it is).
func (c *Console) selfAnswer() string {
	b, _ := json.Marshal(c.self())
	return string(b)
}

func (c *Console) self() Replica {
	s := c.ring.series(c.cfg.Now())
	return Replica{Instance: c.cfg.Instance, Version: c.cfg.Version, Ready: c.cfg.Ready(), Redis: c.cfg.RedisState(),
		Connections: c.ring.connections(), LastSeen: c.cfg.Now().UTC(), Traffic: &s}
}

// snapshotJSON returns the latest snapshot, built at most every half
// stream interval whatever the number of streams.
func (c *Console) snapshotJSON() []byte {
	c.snapMu.Lock()
	defer c.snapMu.Unlock()
	now := c.cfg.Now()
	if c.snapJSON != nil && now.Sub(c.snapAt) < c.cfg.StreamInterval/2 {
		return c.snapJSON
	}
	// Bounded by the adapter's request timeout first (a partial answer),
	// then by this, and by Shutdown.
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	s := c.build(ctx)
	b, err := json.Marshal(s)
	if err != nil {
		c.log.Error("encoding a console snapshot", zap.Error(err))
		b = []byte(`{"errors":["encoding the snapshot failed"]}`)
	}
	c.snapJSON, c.snapAt = b, c.cfg.Now()
	return b
}

// build reads the cluster: presence, the transitions, every replica.
func (c *Console) build(ctx context.Context) Snapshot {
	now := c.cfg.Now()
	s := Snapshot{At: now.UTC(), Instance: c.cfg.Instance, Nodes: []Node{}, Errors: []string{}}
	online, err := c.cfg.Presence.Online(ctx)
	if err != nil {
		s.Errors = append(s.Errors, "presence: "+err.Error())
	}
	from := now.Add(-transitionWindow).Truncate(time.Minute).Add(time.Minute)
	trs, err := c.cfg.Transitions.Since(ctx, from)
	if err != nil {
		s.Errors = append(s.Errors, "transitions: "+err.Error())
	}
	s.Nodes = nodes(online, trs)
	s.Timeline = timeline(s.Nodes, trs, from)
	s.Replicas, s.Unanswered = c.replicas(ctx, now, &s.Errors)
	var all []Series
	for i := range s.Replicas {
		if t := s.Replicas[i].Traffic; t != nil {
			all = append(all, *t)
		}
		s.Replicas[i].Traffic = nil
	}
	secs := int64(c.cfg.TrafficInterval / time.Second)
	s.Traffic = sumSeries(all, secs, c.cfg.TrafficSlots, now.Unix()/secs*secs)
	return s
}

// nodes lists the online nodes, then those that went offline within the
// hour and are not online now, each with its latest transition.
func nodes(online []presence.State, trs []Transition) []Node {
	out := make([]Node, 0, len(online))
	isOnline := map[string]bool{}
	for _, st := range online {
		isOnline[st.Key] = true
		status := "online"
		if st.Stale {
			status = "stale"
		}
		seen := st.LastSeen
		n := Node{Key: st.Key, ID: st.ID, Name: st.Name, OrganizationID: st.OrganizationID, CollaborationID: st.CollaborationID,
			Status: status, Since: st.ConnectedSince.UTC(), Instance: st.Instance, Connections: st.Connections,
			LastPing: st.LastPing, LastSeen: &seen, LastConfig: st.LastConfig, LastConfigAt: st.LastConfigAt,
			LastMetrics: st.LastMetrics, LastMetricsAt: st.LastMetricsAt}
		out = append(out, n)
	}
	last := map[string]Transition{}
	for _, tr := range trs {
		if p, ok := last[tr.Key]; !ok || tr.Seq >= p.Seq || tr.At.After(p.At) {
			last[tr.Key] = tr
		}
	}
	for _, key := range sortedKeys(last) {
		tr := last[key]
		if tr.Online || isOnline[key] {
			continue
		}
		out = append(out, Node{Key: tr.Key, ID: tr.ID, Name: tr.Name, OrganizationID: tr.OrganizationID,
			CollaborationID: tr.CollaborationID, Status: "offline", Since: tr.At})
	}
	slices.SortStableFunc(out, func(a, b Node) int {
		if a.CollaborationID != b.CollaborationID {
			return cmpInt(a.CollaborationID, b.CollaborationID)
		}
		if a.OrganizationID != b.OrganizationID {
			return cmpInt(a.OrganizationID, b.OrganizationID)
		}
		if len(a.Key) != len(b.Key) {
			return len(a.Key) - len(b.Key)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// timeline counts the transitions per collaboration and minute.
func timeline(ns []Node, trs []Transition, from time.Time) Timeline {
	tl := Timeline{From: from.UTC(), BucketSeconds: 60, Collaborations: []CollaborationTimeline{}, Recent: []Transition{}, Total: len(trs)}
	rows := map[int64]*CollaborationTimeline{}
	row := func(id int64) *CollaborationTimeline {
		if r := rows[id]; r != nil {
			return r
		}
		r := &CollaborationTimeline{CollaborationID: id, Buckets: make([][2]int, timelineBuckets)}
		rows[id] = r
		return r
	}
	for _, n := range ns {
		r := row(n.CollaborationID)
		if n.Status != "offline" {
			r.Online++
		}
	}
	for _, tr := range trs {
		i := int(tr.At.Sub(from) / time.Minute)
		if i < 0 || i >= timelineBuckets {
			continue
		}
		if tr.Online {
			row(tr.CollaborationID).Buckets[i][0]++
		} else {
			row(tr.CollaborationID).Buckets[i][1]++
		}
	}
	for _, r := range rows {
		tl.Collaborations = append(tl.Collaborations, *r)
	}
	slices.SortFunc(tl.Collaborations, func(a, b CollaborationTimeline) int { return cmpInt(a.CollaborationID, b.CollaborationID) })
	for i := len(trs) - 1; i >= 0 && len(tl.Recent) < recentMax; i-- {
		tl.Recent = append(tl.Recent, trs[i])
	}
	return tl
}

// replicas asks every replica for its state and traffic; this one first,
// then the others by name, then those seen within the hour that did not
// answer (missing).
func (c *Console) replicas(ctx context.Context, now time.Time, errs *[]string) ([]Replica, int) {
	self := c.self()
	self.Self = true
	answers, err := c.cfg.Cluster.ServerSideEmitWithAck(ctx, EventReplica)
	unanswered := 0
	if err != nil && !errors.Is(err, socketio.ErrNoCluster) {
		*errs = append(*errs, "replicas: "+err.Error())
		if te, ok := errors.AsType[*redisadapter.TimeoutError](err); ok {
			unanswered = max(te.Expected-te.Answered, 0)
		}
	}
	others := make([]Replica, 0, len(answers))
	for _, a := range answers {
		var r Replica
		var b []byte
		if s, ok := a.(string); ok {
			b = []byte(s)
		} else {
			b, _ = json.Marshal(a)
		}
		if json.Unmarshal(b, &r) != nil || r.Instance == "" || r.Instance == self.Instance {
			continue
		}
		r.Self, r.Missing = false, false
		r.LastSeen = now.UTC()
		others = append(others, r)
	}
	slices.SortFunc(others, func(a, b Replica) int { return strings.Compare(a.Instance, b.Instance) })
	out := append([]Replica{self}, others...)

	// c.seen is guarded by snapMu, held by snapshotJSON.
	answered := map[string]bool{}
	for _, r := range out {
		answered[r.Instance] = true
		c.seen[r.Instance] = now
	}
	for _, name := range sortedKeys(c.seen) {
		at := c.seen[name]
		switch {
		case now.Sub(at) > time.Hour:
			delete(c.seen, name)
		case !answered[name]:
			out = append(out, Replica{Instance: name, Missing: true, LastSeen: at.UTC(), Connections: map[string]float64{}})
		}
	}
	for len(c.seen) > seenMax {
		var oldest string
		for k, at := range c.seen {
			if oldest == "" || at.Before(c.seen[oldest]) {
				oldest = k
			}
		}
		delete(c.seen, oldest)
	}
	return out, unanswered
}
