package outbox

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/retry"
)

// streamState is what the stream writer remembers between round trips.
type streamState struct {
	failures  int       // consecutive failed round trips
	downSince time.Time // first failure of the current outage
	logged    time.Time // last "still failing" line
}

// runStream drains the stream's queue in pipelined batches until the queue
// is closed and empty.
func (o *Outbox) runStream(q *queue) {
	defer o.wg.Done()
	batch := make([]item, 0, o.cfg.BatchSize)
	for {
		it, ok := <-q.ch
		if !ok {
			return
		}
		batch = append(batch[:0], it)
		open := true
	fill:
		for len(batch) < o.cfg.BatchSize {
			select {
			case it, ok := <-q.ch:
				if !ok {
					open = false
					break fill
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		o.writeStream(q, batch)
		if !open {
			return
		}
	}
}

// writeStream appends a batch, retrying what failed with backoff until it
// is written or the shutdown deadline passes.
func (o *Outbox) writeStream(q *queue, batch []item) {
	pending := batch
	err := retry.Loop{Pause: retry.Backoff(o.cfg.RetryMin, o.cfg.RetryMax)}.Run(o.ctx, func(context.Context, int) error {
		rest, err := o.xadd(pending)
		if n := len(pending) - len(rest); n > 0 {
			o.m.appended.Add(float64(n))
			o.m.batchSize.Observe(float64(n))
			q.length.Sub(float64(n))
		}
		if err == nil {
			o.streamUp()
			return retry.ErrStop
		}
		pending = rest
		o.streamDown(err, len(q.ch)+len(pending))
		return err
	})
	if err != nil {
		o.lose(q, len(pending))
	}
}

// xadd appends the items in one pipelined round trip. It returns the items
// that failed (all of them when the connection failed), to be retried:
// an XADD whose answer was lost may have been applied, and its retry then
// appends the fact a second time, with the same fact id.
func (o *Outbox) xadd(items []item) ([]item, error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.cfg.Timeout)
	defer cancel()
	pipe := o.cfg.Client.Pipeline()
	cmds := make([]*redis.StringCmd, len(items))
	for i, it := range items {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: o.cfg.Stream,
			MaxLen: o.cfg.MaxLen,
			Approx: true,
			Values: []any{"id", it.id, "type", it.typ, "fact", it.body},
		})
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil, nil
	}
	var rest []item
	for i, c := range cmds {
		if c.Err() != nil {
			rest = append(rest, items[i])
		}
	}
	if len(rest) == 0 {
		return nil, nil
	}
	return rest, err
}

// streamDown logs a failed round trip: the first of an outage at once, the
// next ones at most every logEvery.
func (o *Outbox) streamDown(err error, queued int) {
	o.m.redisErrors.Inc()
	s := &o.stream
	now := time.Now()
	s.failures++
	if s.failures == 1 {
		s.downSince, s.logged = now, now
		o.log.Warn("outbox: cannot append to the stream: keeping the facts queued and retrying",
			zap.String("stream", o.cfg.Stream), zap.Int("queued", queued), zap.Error(err))
		return
	}
	if now.Sub(s.logged) >= logEvery {
		s.logged = now
		o.log.Warn("outbox: the stream is still failing", zap.String("stream", o.cfg.Stream),
			zap.Int("queued", queued), zap.Int("failures", s.failures),
			zap.Duration("for", now.Sub(s.downSince)), zap.Error(err))
	}
}

// streamUp logs the end of an outage.
func (o *Outbox) streamUp() {
	s := &o.stream
	if s.failures == 0 {
		return
	}
	o.log.Info("outbox: appending to the stream again", zap.String("stream", o.cfg.Stream),
		zap.Int("failures", s.failures), zap.Duration("after", time.Since(s.downSince)))
	s.failures = 0
}
