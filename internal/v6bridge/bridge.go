// Package v6bridge carries out what the vantage6 REST server emits through
// Flask-SocketIO's message queue, so that the server can stay unmodified with
// eventserver in front of /socket.io/.
//
// vantage6 4.x emits new_task, kill_containers and status_update with
// Flask-SocketIO; with a redis:// message queue, python-socketio's
// RedisManager PUBLISHes each emit on a Redis channel ("flask-socketio") for
// every Socket.IO server to deliver to its own clients. Every eventserver
// instance subscribes to that channel and delivers each message to its own
// sockets only: every instance receives every message, so going through the
// cluster adapter would deliver it once per instance.
//
// vantage6 5.x gives its RabbitMQ (an amqp:// URL) to Flask-SocketIO instead:
// python-socketio's KombuManager then publishes each emit to a fanout
// exchange named after the channel, and every instance reads it from a queue
// of its own bound to it (amqp.go).
//
// Messages are JSON from python-socketio 5.14 on:
//
//	{"method": "emit", "event": "new_task", "data": {"id": 7, "parent_id": 3}, "binary": false,
//	 "namespace": "/tasks", "room": "collaboration_2", "skip_sid": null, "callback": null,
//	 "host_id": "d4d83077a12947328d207f93967f319d"}
//
// emit, close_room and disconnect are carried out; enter_room, leave_room and
// callback name Python-side sockets and are logged and ignored, as is
// anything that cannot be used: pickled messages of older python-socketio
// (never unpickled), bad JSON, unknown methods, other namespaces, rooms that
// are not vantage6 rooms (Python socket ids). Each is counted.
package v6bridge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/internal/validate"
	"github.com/eventserver/eventserver/pkg/promreg"
	"github.com/eventserver/eventserver/pkg/retry"
	"github.com/eventserver/eventserver/pkg/rooms"
	"github.com/eventserver/eventserver/pkg/textclip"
)

// Target is what the bridge acts on: this instance's sockets (the hub).
type Target interface {
	// EmitLocal sends to this instance's authenticated sockets in rooms
	// (all of them when rooms is empty), except those in except.
	EmitLocal(rooms, except []string, event string, args ...any) error
	// LeaveLocal makes this instance's sockets leave room.
	LeaveLocal(room string)
	// DisconnectLocal disconnects socket sid if it is on this instance.
	DisconnectLocal(sid string) bool
}

// Config configures a Bridge.
type Config struct {
	// Client is the Redis of the message queue; or
	Client redis.UniversalClient
	// AMQPURL is the RabbitMQ of the message queue (amqp:// or amqps://,
	// vantage6 5's rabbitmq uri). Exactly one of Client and AMQPURL.
	AMQPURL string
	// Channel is the channel Flask-SocketIO publishes on ("flask-socketio"
	// for vantage6): the Redis channel, or RabbitMQ's fanout exchange.
	// Required.
	Channel string
	// Namespace is the only namespace served ("/tasks").
	Namespace string
	// Target receives what the messages ask for. Required.
	Target Target
	// Logger; nil: no logs.
	Logger *zap.Logger
	// Registerer for the metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Outcomes of a message, the "outcome" label of
// eventserver_v6_queue_messages_total.
const (
	OutcomeDelivered      = "delivered"       // emit, close_room or disconnect carried out
	OutcomeIgnored        = "ignored"         // a method that names Python-side sockets (enter_room, leave_room, callback)
	OutcomeNoLocalSocket  = "no_local_socket" // disconnect of a socket that is not on this instance
	OutcomePickled        = "pickled"         // a pickle of python-socketio < 5.14
	OutcomeNotJSON        = "not_json"
	OutcomeBadMessage     = "bad_message"     // JSON of the wrong shape
	OutcomeUnknownMethod  = "unknown_method"  //
	OutcomeOtherNamespace = "other_namespace" // not /tasks
	OutcomeUnknownRoom    = "unknown_room"    // no vantage6 room (e.g. a Python socket id)
	OutcomeFailed         = "failed"          // the emit itself failed
)

// Bridge subscribes to the message queue and carries out its messages.
type Bridge struct {
	cfg Config
	log *zap.Logger

	messages   *prometheus.CounterVec
	subscribed prometheus.Gauge
	ready      atomic.Bool
	everReady  atomic.Bool

	cancel context.CancelFunc
	ps     *redis.PubSub // nil over RabbitMQ
	// amqpQueue is this instance's queue over RabbitMQ, kept across
	// reconnects.
	amqpQueue string
	done      chan struct{}
	once      sync.Once

	// warned rate-limits the warning of each outcome to one a minute.
	warnMu sync.Mutex
	warned map[string]time.Time
}

// New checks cfg and registers the metrics; Start subscribes.
func New(cfg Config) (*Bridge, error) {
	switch {
	case (cfg.Client == nil) == (cfg.AMQPURL == ""):
		return nil, errors.New("v6bridge: one of Client (Redis) and AMQPURL (RabbitMQ) is required")
	case cfg.AMQPURL != "" && !validate.IsAMQPURL(cfg.AMQPURL):
		return nil, errors.New("v6bridge: AMQPURL: want amqp:// or amqps://")
	case cfg.Channel == "":
		return nil, errors.New("v6bridge: Channel is required")
	case cfg.Target == nil:
		return nil, errors.New("v6bridge: Target is required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "/tasks"
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	b := &Bridge{
		cfg: cfg,
		log: log.With(zap.String("channel", cfg.Channel)),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventserver_v6_queue_messages_total",
			Help: "Messages of the Flask-SocketIO message queue, by method and outcome.",
		}, []string{"method", "outcome"}),
		subscribed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventserver_v6_queue_subscribed",
			Help: "1 while this instance is subscribed to the Flask-SocketIO message queue, 0 otherwise.",
		}),
		done:   make(chan struct{}),
		warned: map[string]time.Time{},
	}
	if cfg.Registerer != nil {
		var err error
		b.messages = promreg.Register(cfg.Registerer, b.messages, &err)
		b.subscribed = promreg.Register(cfg.Registerer, b.subscribed, &err)
		if err != nil {
			return nil, fmt.Errorf("v6bridge: %w", err)
		}
	}
	return b, nil
}

// Start subscribes to the channel and handles its messages in a goroutine
// that Shutdown stops. go-redis re-subscribes after a lost connection; over
// RabbitMQ the bridge reconnects and declares again, with backoff.
func (b *Bridge) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if b.cfg.AMQPURL != "" {
		b.amqpQueue = b.cfg.Channel + ".eventserver." + randomHex(8)
		go b.runAMQP(ctx)
		return
	}
	b.ps = b.cfg.Client.Subscribe(ctx, b.cfg.Channel)
	go b.run(ctx, b.ps)
}

// Ready reports whether the subscription is confirmed and live.
func (b *Bridge) Ready() bool { return b.ready.Load() }

// Shutdown stops the subscription and waits for the handler (bounded by
// ctx). It is idempotent, and may be called without Start.
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.once.Do(func() {
		if b.cancel == nil {
			close(b.done)
			return
		}
		b.cancel()
		// A Receive blocked on the connection returns when it is closed
		// (the RabbitMQ connection is closed when ctx ends).
		if b.ps != nil {
			_ = b.ps.Close()
		}
	})
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setReady records whether the bridge is subscribed (Ready, the gauge) and
// logs the changes: a warning when the subscription is lost (err), an info
// line when it is made or made again.
func (b *Bridge) setReady(up bool, err error) {
	if up {
		b.subscribed.Set(1)
		if !b.ready.Swap(true) {
			if b.everReady.Swap(true) {
				b.log.Info("Flask-SocketIO queue: subscribed again")
			} else {
				b.log.Info("Flask-SocketIO queue: subscribed")
			}
		}
		return
	}
	b.subscribed.Set(0)
	if b.ready.Swap(false) && err != nil {
		b.log.Warn("Flask-SocketIO queue: subscription lost; reconnecting", zap.Error(err))
	}
}

// run handles the channel's messages until ctx ends. After a failed
// Receive it pauses 200ms: go-redis reconnects and re-subscribes on the
// next one.
func (b *Bridge) run(ctx context.Context, ps *redis.PubSub) {
	defer close(b.done)
	defer b.setReady(false, nil)
	_ = retry.Loop{Pause: retry.Fixed(200 * time.Millisecond)}.Run(ctx, func(ctx context.Context, _ int) error {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.setReady(false, err)
			}
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.setReady(true, nil)
			}
		case *redis.Message:
			b.Handle([]byte(m.Payload))
		}
		return nil
	})
}

// message is a python-socketio pub/sub message.
type message struct {
	Method    string          `json:"method"`
	Event     *string         `json:"event"`
	Data      json.RawMessage `json:"data"`
	Binary    bool            `json:"binary"`
	Namespace *string         `json:"namespace"`
	Room      json.RawMessage `json:"room"`
	SkipSid   json.RawMessage `json:"skip_sid"`
	Callback  json.RawMessage `json:"callback"`
	Sid       json.RawMessage `json:"sid"`
	HostID    string          `json:"host_id"`
}

// Handle carries out one message and returns its outcome. It never panics on
// bad input.
func (b *Bridge) Handle(payload []byte) string { return b.handle(payload, false) }

// handle is Handle; pickled says the transport already knows the payload is
// a pickle.
func (b *Bridge) handle(payload []byte, pickled bool) (outcome string) {
	method := "-"
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("Flask-SocketIO queue: handler panic", zap.Any("panic", r))
			outcome = OutcomeFailed
		}
		b.messages.WithLabelValues(method, outcome).Inc()
	}()

	trimmed := bytes.TrimSpace(payload)
	if pickled || len(trimmed) > 0 && trimmed[0] == 0x80 {
		// pickle protocol 2+ starts with PROTO (0x80): python-socketio < 5.14.
		b.warn(OutcomePickled, "Flask-SocketIO queue: a pickled message (python-socketio older than 5.14) was ignored; upgrade the vantage6 server's python-socketio",
			zap.Int("bytes", len(payload)))
		return OutcomePickled
	}
	var m message
	if err := json.Unmarshal(trimmed, &m); err != nil {
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) || !json.Valid(trimmed) {
			b.warn(OutcomeNotJSON, "Flask-SocketIO queue: a message that is not JSON was ignored",
				zap.Int("bytes", len(payload)), zap.String("start", textclip.Cut(string(trimmed), textclip.Line)))
			return OutcomeNotJSON
		}
		b.warn(OutcomeBadMessage, "Flask-SocketIO queue: a JSON message of the wrong shape was ignored",
			zap.Error(err), zap.String("start", textclip.Cut(string(trimmed), textclip.Line)))
		return OutcomeBadMessage
	}
	switch m.Method {
	case "emit", "close_room", "disconnect", "enter_room", "leave_room", "callback":
		method = m.Method
	case "":
		b.warn(OutcomeBadMessage, "Flask-SocketIO queue: a message without method was ignored", zap.String("start", textclip.Cut(string(trimmed), textclip.Line)))
		return OutcomeBadMessage
	default:
		b.warn(OutcomeUnknownMethod, "Flask-SocketIO queue: a message with an unknown method was ignored", zap.String("method", textclip.Cut(m.Method, 64)))
		return OutcomeUnknownMethod
	}
	if method == "callback" || method == "enter_room" || method == "leave_room" {
		b.log.Debug("Flask-SocketIO queue: ignored (it names Python-side sockets)", zap.String("method", method))
		return OutcomeIgnored
	}

	ns := "/"
	if m.Namespace != nil && *m.Namespace != "" {
		ns = *m.Namespace
	}
	if ns != b.cfg.Namespace {
		b.log.Debug("Flask-SocketIO queue: other namespace", zap.String("method", method), zap.String("namespace", textclip.Cut(ns, 64)))
		return OutcomeOtherNamespace
	}

	switch method {
	case "emit":
		return b.emit(&m, trimmed)
	case "close_room":
		names, ok := stringOrList(m.Room)
		if !ok || len(names) != 1 {
			b.warn(OutcomeBadMessage, "Flask-SocketIO queue: close_room without one room was ignored", zap.String("start", textclip.Cut(string(trimmed), textclip.Line)))
			return OutcomeBadMessage
		}
		if !rooms.Valid(names[0]) {
			b.warn(OutcomeUnknownRoom, "Flask-SocketIO queue: close_room of a room that is not a vantage6 room was ignored", zap.String("room", textclip.Cut(names[0], 64)))
			return OutcomeUnknownRoom
		}
		b.cfg.Target.LeaveLocal(names[0])
		b.log.Info("Flask-SocketIO queue: room closed", zap.String("room", names[0]))
		return OutcomeDelivered
	default: // disconnect
		sids, ok := stringOrList(m.Sid)
		if !ok || len(sids) != 1 || sids[0] == "" {
			b.warn(OutcomeBadMessage, "Flask-SocketIO queue: disconnect without a sid was ignored", zap.String("start", textclip.Cut(string(trimmed), textclip.Line)))
			return OutcomeBadMessage
		}
		if !b.cfg.Target.DisconnectLocal(sids[0]) {
			b.log.Debug("Flask-SocketIO queue: disconnect of a socket that is not here", zap.String("sid", textclip.Cut(sids[0], 64)))
			return OutcomeNoLocalSocket
		}
		b.log.Info("Flask-SocketIO queue: socket disconnected", zap.String("sid", sids[0]))
		return OutcomeDelivered
	}
}

func (b *Bridge) emit(m *message, raw []byte) string {
	if m.Event == nil || *m.Event == "" {
		b.warn(OutcomeBadMessage, "Flask-SocketIO queue: emit without event was ignored", zap.String("start", textclip.Cut(string(raw), textclip.Line)))
		return OutcomeBadMessage
	}
	event := *m.Event
	if protocol.Reserved[event] {
		b.warn(OutcomeBadMessage, "Flask-SocketIO queue: emit of a reserved event name was ignored", zap.String("event", textclip.Cut(event, 64)))
		return OutcomeBadMessage
	}
	names, ok := stringOrList(m.Room)
	if !ok {
		b.warn(OutcomeBadMessage, "Flask-SocketIO queue: emit with a room that is not a string or a list of strings was ignored", zap.String("event", event))
		return OutcomeBadMessage
	}
	var known []string
	for _, r := range names {
		if rooms.Valid(r) {
			known = append(known, r)
		}
	}
	if len(names) > 0 && len(known) == 0 {
		b.warn(OutcomeUnknownRoom, "Flask-SocketIO queue: emit to a room that is not a vantage6 room (a Python socket id?) was ignored",
			zap.String("event", event), zap.Strings("rooms", textclip.CutAll(names, 64)))
		return OutcomeUnknownRoom
	}
	if len(known) < len(names) {
		b.log.Warn("Flask-SocketIO queue: rooms that are not vantage6 rooms were left out",
			zap.String("event", event), zap.Strings("rooms", textclip.CutAll(names, 64)))
	}
	skip, ok := stringOrList(m.SkipSid)
	if !ok {
		b.warn(OutcomeBadMessage, "Flask-SocketIO queue: emit with a bad skip_sid was ignored", zap.String("event", event))
		return OutcomeBadMessage
	}
	args, err := arguments(m.Data, m.Binary)
	if err != nil {
		b.warn(OutcomeBadMessage, "Flask-SocketIO queue: emit with unusable data was ignored", zap.String("event", event), zap.Error(err))
		return OutcomeBadMessage
	}
	if len(m.Callback) > 0 && string(m.Callback) != "null" {
		b.log.Debug("Flask-SocketIO queue: emit asks for a callback; delivered without one", zap.String("event", event))
	}
	if err := b.cfg.Target.EmitLocal(known, skip, event, args...); err != nil {
		b.log.Error("Flask-SocketIO queue: emit failed", zap.String("event", event), zap.Error(err))
		return OutcomeFailed
	}
	b.log.Debug("Flask-SocketIO queue: emitted", zap.String("event", event), zap.Strings("rooms", known))
	return OutcomeDelivered
}

// arguments turns a message's data into the event's arguments.
//
// python-socketio 5.14 to 5.15.0 publish the emitted value itself (a tuple
// becomes a JSON array); 5.15.1 and later always publish the list of
// arguments. So: null is no argument, an array is the arguments, anything
// else is the one argument. (A single list argument from 5.14-5.15.0 would
// be spread; vantage6 never emits one.) With binary, data is
// [value with {"_placeholder":true,"num":N}, "<base64 of attachment N>", ...].
func arguments(data json.RawMessage, binary bool) ([]any, error) {
	if len(data) == 0 || string(data) == "null" {
		if binary {
			return nil, errors.New("binary without data")
		}
		return nil, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if binary {
		parts, ok := v.([]any)
		if !ok || len(parts) == 0 {
			return nil, errors.New("binary data is not [value, attachments...]")
		}
		attachments := make([][]byte, 0, len(parts)-1)
		for i, p := range parts[1:] {
			s, ok := p.(string)
			if !ok {
				return nil, fmt.Errorf("attachment %d is not base64 text", i)
			}
			a, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("attachment %d: %w", i, err)
			}
			attachments = append(attachments, a)
		}
		var err error
		if v, err = reconstruct(parts[0], attachments); err != nil {
			return nil, err
		}
	}
	if list, ok := v.([]any); ok {
		return list, nil
	}
	return []any{v}, nil
}

// reconstruct puts the attachments back where their placeholders are.
func reconstruct(v any, attachments [][]byte) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if ph, ok := x["_placeholder"].(bool); ok && ph && len(x) == 2 {
			n, ok := x["num"].(json.Number)
			if !ok {
				return nil, errors.New("placeholder without num")
			}
			i, err := n.Int64()
			if err != nil || i < 0 || i >= int64(len(attachments)) {
				return nil, fmt.Errorf("placeholder %s has no attachment", n)
			}
			return attachments[i], nil
		}
		for k, e := range x {
			r, err := reconstruct(e, attachments)
			if err != nil {
				return nil, err
			}
			x[k] = r
		}
	case []any:
		for i, e := range x {
			r, err := reconstruct(e, attachments)
			if err != nil {
				return nil, err
			}
			x[i] = r
		}
	}
	return v, nil
}

// stringOrList reads null, "x" or ["x", "y"].
func stringOrList(raw json.RawMessage) ([]string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []string{s}, true
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, true
	}
	return nil, false
}

// warn logs at warn level, at most once a minute for each outcome; the
// counter has every one.
func (b *Bridge) warn(outcome, msg string, fields ...zap.Field) {
	b.warnMu.Lock()
	last, seen := b.warned[outcome]
	now := time.Now()
	if seen && now.Sub(last) < time.Minute {
		b.warnMu.Unlock()
		b.log.Debug(msg, fields...)
		return
	}
	b.warned[outcome] = now
	b.warnMu.Unlock()
	b.log.Warn(msg+" (further ones this minute are logged at debug level; see eventserver_v6_queue_messages_total)", fields...)
}
