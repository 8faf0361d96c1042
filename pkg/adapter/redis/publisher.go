package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// publisher is the publishing side of either broker: a bounded queue that
// callers never wait on, and one goroutine (run) that publishes what is
// queued, in order, in pipelines of up to maxBatch (one command at a time
// on a Cluster), dropping what waited longer than PublishTimeout. The
// classic broker publishes with PUBLISH, the sharded one with SPUBLISH.
type publisher struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics
	limit   *limiter
	ctx     context.Context // done: nothing more is queued; run flushes and returns
	queue   chan outbound

	// command names the command in log lines; do queues or sends one.
	command string
	do      func(ctx context.Context, c goredis.Cmdable, channel string, payload []byte) *goredis.IntCmd
	// failed, when set, runs after a publish failed.
	failed func()
}

func newPublisher(ctx context.Context, cfg Config, m *metrics, lim *limiter, command string,
	do func(context.Context, goredis.Cmdable, string, []byte) *goredis.IntCmd) *publisher {
	return &publisher{cfg: cfg, log: cfg.Logger, metrics: m, limit: lim, ctx: ctx,
		queue: make(chan outbound, cfg.QueueSize), command: command, do: do}
}

// put queues a message without blocking: a full queue drops it (counted,
// logged at most once per interval), a closed broker silently.
func (p *publisher) put(channel string, payload []byte, kind string) {
	if p.ctx.Err() != nil {
		return
	}
	select {
	case p.queue <- outbound{channel: channel, payload: payload, kind: kind, at: time.Now()}:
	default:
		p.metrics.dropped.WithLabelValues(dropOutboundFull).Inc()
		if p.limit.allow(dropOutboundFull) {
			p.log.Warn("redis adapter: publish queue full; dropping messages", zap.Int("queue_size", p.cfg.QueueSize))
		}
	}
}

// run publishes until ctx is done, then makes one last attempt at what is
// queued.
func (p *publisher) run() {
	batch := make([]outbound, 0, maxBatch)
	for {
		select {
		case <-p.ctx.Done():
			for {
				batch = p.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				p.send(batch)
			}
		case m := <-p.queue:
			batch = append(batch[:0], m)
		}
		p.send(p.fill(batch))
	}
}

// fill adds queued messages to batch without waiting.
func (p *publisher) fill(batch []outbound) []outbound {
	for len(batch) < maxBatch {
		select {
		case m := <-p.queue:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// send publishes a batch. Messages that waited longer than PublishTimeout
// are dropped instead.
func (p *publisher) send(batch []outbound) {
	now := time.Now()
	live := batch[:0]
	for _, m := range batch {
		if now.Sub(m.at) > p.cfg.PublishTimeout {
			p.metrics.dropped.WithLabelValues(dropStale).Inc()
			if p.limit.allow(dropStale) {
				p.log.Warn("redis adapter: message not published within the publish timeout; dropped",
					zap.Duration("publish_timeout", p.cfg.PublishTimeout), zap.String("type", m.kind))
			}
			continue
		}
		live = append(live, m)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.PublishTimeout)
	defer cancel()
	_, cluster := p.cfg.Client.(*goredis.ClusterClient)
	if len(live) == 1 || cluster {
		// A Cluster pipeline may spread commands over nodes; one at a time
		// keeps the order (the client routes each by its channel's slot).
		for _, m := range live {
			p.published(m, p.do(ctx, p.cfg.Client, m.channel, m.payload).Err())
		}
		return
	}
	pipe := p.cfg.Client.Pipeline()
	cmds := make([]*goredis.IntCmd, len(live))
	for i, m := range live {
		cmds[i] = p.do(ctx, pipe, m.channel, m.payload)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, m := range live {
		p.published(m, cmds[i].Err())
	}
}

// published counts what became of a message; a failure, a lost message,
// is logged at most once per interval.
func (p *publisher) published(m outbound, err error) {
	if err == nil {
		p.metrics.published.WithLabelValues(m.kind).Inc()
		return
	}
	p.metrics.redisErrors.WithLabelValues(opPublish).Inc()
	if p.limit.allow(opPublish) {
		p.log.Warn("redis adapter: "+p.command+" failed; message lost", zap.String("type", m.kind), zap.Error(err))
	}
	if p.failed != nil {
		p.failed()
	}
}
