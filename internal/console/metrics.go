package console

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventserver/eventserver/pkg/promreg"
)

type metrics struct {
	signins *prometheus.CounterVec
	streams prometheus.Gauge
}

// Outcomes of eventserver_console_signins_total.
const (
	outcomeOK         = "ok"
	outcomeWrongToken = "wrong_token"
	outcomeSlowed     = "slowed"
	outcomeBadRequest = "bad_request"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	m := &metrics{
		signins: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_console_signins_total",
			Help: "Sign-ins to the operator console, by outcome: ok, wrong_token (401), slowed (429: too many failures from that address), bad_request (not same-origin, or no token in the form).",
		}, []string{"outcome"}), &err),
		streams: promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventserver_console_streams",
			Help: "Operator console live streams (server-sent events) open now on this instance.",
		}), &err),
	}
	if err != nil {
		return nil, err
	}
	for _, o := range []string{outcomeOK, outcomeWrongToken, outcomeSlowed, outcomeBadRequest} {
		m.signins.WithLabelValues(o)
	}
	return m, nil
}
