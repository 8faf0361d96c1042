package presence

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventserver/eventserver/pkg/promreg"
)

const metricPrefix = "eventserver_presence_"

// metrics are a store's collectors. They always exist, so the code never
// checks; they are registered only when a Registerer is given.
type metrics struct {
	online         prometheus.Gauge
	transitions    *prometheus.CounterVec
	sweeps         prometheus.Counter
	expirations    prometheus.Counter
	refreshErrors  prometheus.Counter
	sweepErrors    prometheus.Counter
	refreshSeconds prometheus.Histogram
	reregistered   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, redis bool) (*metrics, error) {
	m := &metrics{
		online: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricPrefix + "online_nodes",
			Help: "Nodes announced online and not yet offline (those in their grace included). With Redis: of the whole cluster, as this replica's last sweep saw it (every replica reports it: aggregate with max, not sum).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "transitions_total",
			Help: "Node transitions this instance decided and reported, by kind (online, offline). Each is decided by exactly one replica: sum over replicas.",
		}, []string{"kind"}),
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "sweeps_total",
			Help: "Sweeps of expired connections and due offline decisions this replica ran.",
		}),
		expirations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "expirations_total",
			Help: "Connections whose heartbeat entry expired (their replica died or lost Redis), removed by this replica's sweeper.",
		}),
		refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "refresh_errors_total",
			Help: "Heartbeat refreshes (with re-registration and retried removals) that failed.",
		}),
		sweepErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricPrefix + "sweep_errors_total",
			Help: "Sweeps that failed.",
		}),
		refreshSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricPrefix + "refresh_duration_seconds",
			Help:    "Time to refresh the heartbeat entries of this replica's connections.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		reregistered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "reregistered_total",
			Help: "Live connections this replica registered again because Redis had lost them, by mode: restore (Redis lost its state: no transition) or connect (swept as expired: a normal connect).",
		}, []string{"mode"}),
	}
	m.transitions.WithLabelValues("online")
	m.transitions.WithLabelValues("offline")
	m.reregistered.WithLabelValues(modeRestore)
	m.reregistered.WithLabelValues(modeConnect)
	if reg == nil {
		return m, nil
	}
	var err error
	m.online = promreg.Register(reg, m.online, &err)
	m.transitions = promreg.Register(reg, m.transitions, &err)
	if redis {
		m.sweeps = promreg.Register(reg, m.sweeps, &err)
		m.expirations = promreg.Register(reg, m.expirations, &err)
		m.refreshErrors = promreg.Register(reg, m.refreshErrors, &err)
		m.sweepErrors = promreg.Register(reg, m.sweepErrors, &err)
		m.refreshSeconds = promreg.Register(reg, m.refreshSeconds, &err)
		m.reregistered = promreg.Register(reg, m.reregistered, &err)
	}
	return m, err
}

func (m *metrics) counted(trs []Transition) {
	for _, tr := range trs {
		if tr.Online {
			m.transitions.WithLabelValues("online").Inc()
		} else {
			m.transitions.WithLabelValues("offline").Inc()
		}
	}
}
