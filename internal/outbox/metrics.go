package outbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventserver/eventserver/pkg/promreg"
)

const metricPrefix = "eventserver_outbox_"

// Sink names, the "sink" label of the metrics.
const (
	sinkStream  = "stream"
	sinkWebhook = "webhook"
)

// Webhook outcomes, the "outcome" label of webhook_deliveries_total.
const (
	outcomeDelivered = "delivered" // a 2xx answer: the fact is delivered
	outcomeRetried   = "retried"   // an attempt failed and will be retried
	outcomeGaveUp    = "gave_up"   // the last attempt failed
	outcomeRejected  = "rejected"  // a 4xx answer other than 408, 425, 429: not retried
)

// metrics are the outbox's collectors; they always exist and are
// registered only when a Registerer is given.
type metrics struct {
	appended    prometheus.Counter
	redisErrors prometheus.Counter
	batchSize   prometheus.Histogram
	failed      *prometheus.CounterVec // sink
	dropped     *prometheus.CounterVec // sink
	queue       *prometheus.GaugeVec   // sink
	webhook     *prometheus.CounterVec // outcome
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "appended_total",
			Help: "Facts appended to the outbox stream (XADD answered).",
		}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "redis_errors_total",
			Help: "Round trips of XADDs to the outbox stream that failed (and are retried).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricPrefix + "batch_size",
			Help:    "Facts written to the outbox stream per pipelined round trip.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "failed_total",
			Help: "Facts a sink gave up on, by sink: the webhook's attempts ran out or it refused the fact; still queued when the shutdown deadline passed.",
		}, []string{"sink"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "dropped_total",
			Help: "Facts not queued because the sink's queue was full (or the outbox shut down), by sink.",
		}, []string{"sink"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricPrefix + "queue_length",
			Help: "Facts a sink holds in memory, not yet written, by sink.",
		}, []string{"sink"}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "webhook_deliveries_total",
			Help: "Webhook attempts by outcome: delivered, retried (failed, tried again), gave_up (last attempt failed), rejected (4xx, not retried).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{outcomeDelivered, outcomeRetried, outcomeGaveUp, outcomeRejected} {
		m.webhook.WithLabelValues(o)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.appended = promreg.Register(reg, m.appended, &err)
	m.redisErrors = promreg.Register(reg, m.redisErrors, &err)
	m.batchSize = promreg.Register(reg, m.batchSize, &err)
	m.failed = promreg.Register(reg, m.failed, &err)
	m.dropped = promreg.Register(reg, m.dropped, &err)
	m.queue = promreg.Register(reg, m.queue, &err)
	m.webhook = promreg.Register(reg, m.webhook, &err)
	return m, err
}

// sinkSeries makes a sink's series exist (reading 0), so that dashboards see
// them before the first drop or failure.
func (m *metrics) sinkSeries(sink string) {
	m.failed.WithLabelValues(sink)
	m.dropped.WithLabelValues(sink)
	m.queue.WithLabelValues(sink)
}
