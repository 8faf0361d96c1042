package hub

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventserver/eventserver/pkg/promreg"
)

// metrics are the hub's collectors, registered on Config.Registerer (as
// every component registers its own).
type metrics struct {
	Connections           *prometheus.GaugeVec
	EventsIn              *prometheus.CounterVec
	EventsOut             *prometheus.CounterVec
	EventsRefused         *prometheus.CounterVec
	AuthFailures          *prometheus.CounterVec
	EventFloodDisconnects prometheus.Counter
	ClientLogSuppressed   prometheus.Counter
	TaskLookups           *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	m := &metrics{
		Connections: promreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eventserver_connections",
			Help: "Open /tasks connections by client type (node, user, unauthenticated) and transport.",
		}, []string{"client_type", "transport"}), &err),
		EventsIn: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_events_received_total",
			Help: "Events received from clients, by event name (unknown names are counted as \"other\").",
		}, []string{"event"}), &err),
		EventsOut: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_events_sent_total",
			Help: "Events emitted by the server (one per emit, whatever the number of receivers), by event name.",
		}, []string{"event"}), &err),
		EventsRefused: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_events_refused_total",
			Help: "Client events not acted on, by event and reason (malformed, not_own, not_node, unauthenticated, overloaded, rate).",
		}, []string{"event", "reason"}), &err),
		AuthFailures: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_auth_failures_total",
			Help: "Failed authentications, by reason (missing, expired, invalid, refresh_*).",
		}, []string{"reason"}), &err),
		EventFloodDisconnects: promreg.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventserver_event_flood_disconnects_total",
			Help: "Sockets disconnected for sending events over EVENTSERVER_EVENT_RATE for EVENTSERVER_EVENT_FLOOD_DISCONNECT without a pause.",
		}), &err),
		ClientLogSuppressed: promreg.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventserver_client_log_lines_suppressed_total",
			Help: "Log lines about a socket's events not written because that socket went over its log budget (20 at once, then 2 a second).",
		}), &err),
		TaskLookups: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_v6_task_lookups_total",
			Help: "vantage6 5.x: tasks looked up for a node's algorithm_status_change (job_id, dependent tasks), by outcome: ok, error (relayed without job_id, no new_task_update), not_own (the task is another collaboration's: refused).",
		}, []string{"outcome"}), &err),
	}
	if err != nil {
		return nil, err
	}
	// Idle series read 0 rather than "no data".
	for _, ct := range []string{"node", "user", "unauthenticated"} {
		for _, tr := range []string{"polling", "websocket"} {
			m.Connections.WithLabelValues(ct, tr)
		}
	}
	for _, o := range []string{"ok", "error", "not_own"} {
		m.TaskLookups.WithLabelValues(o)
	}
	return m, nil
}
