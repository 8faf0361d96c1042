package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/backoff"
)

// runWebhook delivers facts from the webhook's queue, one at a time, until
// the queue is closed and empty. Several run side by side.
func (o *Outbox) runWebhook(q *queue) {
	defer o.wg.Done()
	for it := range q.ch {
		o.deliver(q, it)
	}
}

// deliver POSTs one fact until an attempt succeeds, the webhook rejects it,
// the attempts run out or the shutdown deadline passes.
func (o *Outbox) deliver(q *queue, it item) {
	for attempt := 1; ; attempt++ {
		if o.ctx.Err() != nil {
			o.lose(q, 1)
			return
		}
		status, retryAfter, err := o.post(it)
		if err == nil && status >= 200 && status < 300 {
			o.m.webhook.WithLabelValues(outcomeDelivered).Inc()
			q.length.Dec()
			return
		}
		if err == nil && status >= 400 && status < 500 && status != http.StatusRequestTimeout &&
			status != http.StatusTooEarly && status != http.StatusTooManyRequests {
			o.m.webhook.WithLabelValues(outcomeRejected).Inc()
			q.failed.Inc()
			q.length.Dec()
			o.log.Error("outbox: the webhook rejected a fact: not retried", zap.String("webhook", RedactURL(o.cfg.WebhookURL)),
				zap.Int("status", status), zap.String("fact_id", it.id), zap.String("type", it.typ))
			return
		}
		reason := fmt.Sprintf("HTTP %d", status)
		if err != nil {
			if o.ctx.Err() != nil {
				o.lose(q, 1)
				return
			}
			reason = sanitize(err)
		}
		if attempt >= o.cfg.WebhookAttempts {
			o.m.webhook.WithLabelValues(outcomeGaveUp).Inc()
			q.failed.Inc()
			q.length.Dec()
			o.log.Error("outbox: giving up on a fact: the webhook failed every attempt",
				zap.String("webhook", RedactURL(o.cfg.WebhookURL)), zap.Int("attempts", attempt),
				zap.String("last_error", reason), zap.String("fact_id", it.id), zap.String("type", it.typ))
			return
		}
		o.m.webhook.WithLabelValues(outcomeRetried).Inc()
		pause := backoff.Pause(attempt-1, o.cfg.WebhookBackoff, o.cfg.WebhookMaxBackoff)
		if retryAfter > pause {
			pause = min(retryAfter, o.cfg.WebhookMaxBackoff)
		}
		o.log.Debug("outbox: webhook attempt failed: retrying", zap.Int("attempt", attempt),
			zap.String("error", reason), zap.Duration("pause", pause), zap.String("fact_id", it.id))
		if !o.sleep(pause) {
			o.lose(q, 1)
			return
		}
	}
}

// post makes one attempt. It returns the status and the Retry-After pause
// the webhook asked for (in seconds; zero when none).
func (o *Outbox) post(it item) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.cfg.WebhookURL, bytes.NewReader(it.body))
	if err != nil {
		return 0, 0, errors.New("cannot build the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "eventserver-outbox")
	req.Header.Set("Idempotency-Key", it.id)
	if o.cfg.WebhookToken != "" {
		req.Header.Set("Authorization", "Bearer "+o.cfg.WebhookToken)
	}
	resp, err := o.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	var retryAfter time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	return resp.StatusCode, retryAfter, nil
}
