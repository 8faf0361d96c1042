package redis

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventserver/eventserver/pkg/promreg"
)

const metricPrefix = "eventserver_redis_adapter_"

// kindBroadcast is the type label of broadcast messages; requests and
// responses are labelled by their request type.
const kindBroadcast = "broadcast"

// Reasons a message is dropped (label reason of dropped_total).
const (
	dropInboundFull  = "inbound_queue_full"
	dropOutboundFull = "outbound_queue_full"
	dropStale        = "publish_timeout"
	dropMalformed    = "malformed"
	dropEncode       = "unencodable"
)

// Redis operations (label op of redis_errors_total).
const (
	opPublish   = "publish"
	opSubscribe = "subscribe"
	opReceive   = "receive"
	opPing      = "ping"
	opNumSub    = "numsub"
	opCanary    = "canary" // the subscription did not receive the Broker's own canary
)

// metrics are the adapter's collectors. They always exist, so the code
// never checks; they are registered only when a Registerer is given.
type metrics struct {
	published      *prometheus.CounterVec
	received       *prometheus.CounterVec
	dropped        *prometheus.CounterVec
	requestSeconds *prometheus.HistogramVec
	redisErrors    *prometheus.CounterVec
	serverCount    *prometheus.GaugeVec
	subscribed     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "messages_published_total",
			Help: "Messages handed to Redis, by type (broadcast, a request type, or <request type>_response).",
		}, []string{"type"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "messages_received_total",
			Help: "Messages received from Redis and handled, by type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "messages_dropped_total",
			Help: "Messages dropped, by reason (inbound_queue_full, outbound_queue_full, publish_timeout, malformed, unencodable).",
		}, []string{"reason"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricPrefix + "request_duration_seconds",
			Help:    "Time until a request to the other servers completed or timed out, by request type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"type"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "redis_errors_total",
			Help: "Failed Redis operations, by operation (publish, subscribe, receive, ping, numsub, canary: the subscription connection did not receive what the instance published).",
		}, []string{"op"}),
		serverCount: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricPrefix + "server_count",
			Help: "Servers subscribed to the namespace's request channel at the last PUBSUB NUMSUB.",
		}, []string{"namespace"}),
		subscribed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricPrefix + "subscribed",
			Help: "1 while every subscription is confirmed on a healthy Redis connection, else 0.",
		}),
	}
	// Known label values read 0 from the start (rate() and alerts work
	// before the first drop or error).
	m.published.WithLabelValues(kindBroadcast)
	m.received.WithLabelValues(kindBroadcast)
	for _, r := range []string{dropInboundFull, dropOutboundFull, dropStale, dropMalformed, dropEncode} {
		m.dropped.WithLabelValues(r)
	}
	for _, op := range []string{opPublish, opSubscribe, opReceive, opPing, opNumSub, opCanary} {
		m.redisErrors.WithLabelValues(op)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.published = promreg.Register(reg, m.published, &err)
	m.received = promreg.Register(reg, m.received, &err)
	m.dropped = promreg.Register(reg, m.dropped, &err)
	m.requestSeconds = promreg.Register(reg, m.requestSeconds, &err)
	m.redisErrors = promreg.Register(reg, m.redisErrors, &err)
	m.serverCount = promreg.Register(reg, m.serverCount, &err)
	m.subscribed = promreg.Register(reg, m.subscribed, &err)
	return m, err
}
