package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventserver/eventserver/pkg/promreg"
)

// Metrics are the HTTP API's collectors; NewMetrics registers them.
type Metrics struct {
	PublishRequests *prometheus.CounterVec
	PublishDuration prometheus.Histogram
	OriginRefused   *prometheus.CounterVec
}

// NewMetrics registers the HTTP API's collectors on reg (nil: a registry of
// their own), or takes those already there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	m := &Metrics{
		PublishRequests: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_publish_requests_total",
			Help: "Publish API requests by HTTP status.",
		}, []string{"status"}), &err),
		PublishDuration: promreg.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eventserver_publish_request_duration_seconds",
			Help:    "Time to answer a publish API request (every status).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}), &err),
		OriginRefused: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_origin_refused_total",
			Help: "Socket.IO requests refused (403) for an Origin that EVENTSERVER_CORS_ORIGINS does not allow, by transport (polling, preflight, websocket).",
		}, []string{"transport"}), &err),
	}
	if err != nil {
		return nil, err
	}
	for _, tr := range []string{"polling", "preflight", "websocket"} {
		m.OriginRefused.WithLabelValues(tr)
	}
	return m, nil
}
