package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/eventserver/eventserver/internal/connlimit"
)

// LogLinesSampledOut counts the log lines zap's sampler dropped (a line
// repeated more than 100 times in a second, with the same level and
// message, is written one time in 100 beyond that). One per process: the
// logger is built before the registry; New registers it on each registry.
var LogLinesSampledOut = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "eventserver_log_lines_sampled_out_total",
	Help: "Log lines not written by the sampler: beyond 100 a second of the same level and message, one in 100 is written.",
})

// metrics are the process's registry (every component registers its own
// collectors there) and the collectors of the connection layer, which the
// app wires into pkg/engineio's hooks and internal/connlimit.
type metrics struct {
	Registry           *prometheus.Registry
	EngineOpened       *prometheus.CounterVec
	EngineClosed       *prometheus.CounterVec
	EngineUpgrades     prometheus.Counter
	SlowConsumers      prometheus.Counter
	ConnectionsRefused *prometheus.CounterVec
}

// newMetrics makes the registry, with the Go and process collectors, the
// log sampler's counter and the connection layer's collectors.
func newMetrics() *metrics {
	r := prometheus.NewRegistry()
	m := &metrics{
		Registry: r,
		EngineOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_engineio_sessions_opened_total",
			Help: "Engine.IO sessions opened, by initial transport (polling, websocket).",
		}, []string{"transport"}),
		EngineClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_engineio_sessions_closed_total",
			Help: "Engine.IO sessions closed, by reason (transport close, ping timeout, connect timeout, slow consumer, ...).",
		}, []string{"reason"}),
		EngineUpgrades: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventserver_engineio_upgrades_total",
			Help: "Engine.IO sessions upgraded from polling to websocket.",
		}),
		SlowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventserver_slow_consumers_total",
			Help: "Connections closed because their write queue went over its bound (a client that does not read).",
		}),
		ConnectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_connections_refused_total",
			Help: "Engine.IO handshakes refused by a connection limit, by reason: total (EVENTSERVER_MAX_CONNECTIONS, 503), per_ip (EVENTSERVER_MAX_CONNECTIONS_PER_IP, 429).",
		}, []string{"reason"}),
	}
	for _, tr := range []string{"polling", "websocket"} {
		m.EngineOpened.WithLabelValues(tr)
	}
	for _, reason := range []string{connlimit.ReasonTotal, connlimit.ReasonPerIP} {
		m.ConnectionsRefused.WithLabelValues(reason)
	}
	r.MustRegister(m.EngineOpened, m.EngineClosed, m.EngineUpgrades, m.SlowConsumers, m.ConnectionsRefused, LogLinesSampledOut,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
