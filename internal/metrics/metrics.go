// Package metrics defines eventserver's Prometheus metrics on a registry of
// its own, so that tests can build several servers in one process.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the collectors of one server.
type Metrics struct {
	Registry *prometheus.Registry

	Connections     *prometheus.GaugeVec   // client_type, transport
	EventsIn        *prometheus.CounterVec // event
	EventsOut       *prometheus.CounterVec // event
	EventsRefused   *prometheus.CounterVec // event, reason
	AuthFailures    *prometheus.CounterVec // reason
	PublishRequests *prometheus.CounterVec // status
	OriginRefused   *prometheus.CounterVec // transport

	// Engine.IO sessions (pkg/engineio's hooks).
	EngineOpened   *prometheus.CounterVec // transport
	EngineClosed   *prometheus.CounterVec // reason
	EngineUpgrades prometheus.Counter
	SlowConsumers  prometheus.Counter
	// Connections refused by internal/connlimit, by reason (total, per_ip).
	ConnectionsRefused *prometheus.CounterVec
	// Sockets disconnected for sending over their event rate too long.
	EventFloodDisconnects prometheus.Counter
	// Log lines about one socket's events not written: over its budget.
	ClientLogSuppressed prometheus.Counter
	// vantage6 5.x task lookups for algorithm_status_change, by outcome
	// (ok, error, not_own).
	TaskLookups *prometheus.CounterVec
}

// LogLinesSampledOut counts the log lines zap's sampler dropped (a line
// repeated more than 100 times in a second, with the same level and
// message, is written one time in 100 beyond that). One per process: the
// logger is built before the registry; New registers it on each registry.
var LogLinesSampledOut = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "eventserver_log_lines_sampled_out_total",
	Help: "Log lines not written by the sampler: beyond 100 a second of the same level and message, one in 100 is written.",
})

// New registers every collector, plus the Go and process collectors, on a new registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eventserver_connections",
			Help: "Open /tasks connections by client type (node, user, unauthenticated) and transport.",
		}, []string{"client_type", "transport"}),
		EventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_events_received_total",
			Help: "Events received from clients, by event name (unknown names are counted as \"other\").",
		}, []string{"event"}),
		EventsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_events_sent_total",
			Help: "Events emitted by the server (one per emit, whatever the number of receivers), by event name.",
		}, []string{"event"}),
		EventsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_events_refused_total",
			Help: "Client events not acted on, by event and reason (malformed, not_own, not_node, unauthenticated, overloaded, rate).",
		}, []string{"event", "reason"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_auth_failures_total",
			Help: "Failed authentications, by reason (missing, expired, invalid, refresh_*).",
		}, []string{"reason"}),
		PublishRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_publish_requests_total",
			Help: "Publish API requests by HTTP status.",
		}, []string{"status"}),
		OriginRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_origin_refused_total",
			Help: "Socket.IO requests refused (403) for an Origin that EVENTSERVER_CORS_ORIGINS does not allow, by transport (polling, preflight, websocket).",
		}, []string{"transport"}),
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
		EventFloodDisconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventserver_event_flood_disconnects_total",
			Help: "Sockets disconnected for sending events over EVENTSERVER_EVENT_RATE for EVENTSERVER_EVENT_FLOOD_DISCONNECT without a pause.",
		}),
	}
	m.ClientLogSuppressed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eventserver_client_log_lines_suppressed_total",
		Help: "Log lines about a socket's events not written because that socket went over its log budget (20 at once, then 2 a second).",
	})
	m.TaskLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eventserver_v6_task_lookups_total",
		Help: "vantage6 5.x: tasks looked up for a node's algorithm_status_change (job_id, dependent tasks), by outcome: ok, error (relayed without job_id, no new_task_update), not_own (the task is another collaboration's: refused).",
	}, []string{"outcome"})
	for _, o := range []string{"ok", "error", "not_own"} {
		m.TaskLookups.WithLabelValues(o)
	}
	// Idle series read 0 rather than "no data".
	for _, ct := range []string{"node", "user", "unauthenticated"} {
		for _, tr := range []string{"polling", "websocket"} {
			m.Connections.WithLabelValues(ct, tr)
		}
	}
	for _, tr := range []string{"polling", "websocket"} {
		m.EngineOpened.WithLabelValues(tr)
	}
	for _, tr := range []string{"polling", "preflight", "websocket"} {
		m.OriginRefused.WithLabelValues(tr)
	}
	r.MustRegister(m.Connections, m.EventsIn, m.EventsOut, m.EventsRefused, m.AuthFailures,
		m.PublishRequests, m.OriginRefused, m.EngineOpened, m.EngineClosed, m.EngineUpgrades, m.SlowConsumers, m.ConnectionsRefused, m.EventFloodDisconnects, m.ClientLogSuppressed, m.TaskLookups, LogLinesSampledOut,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
