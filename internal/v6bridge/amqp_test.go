package v6bridge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// What kombu puts on the wire for KombuManager's payloads (seen with kombu
// 5.2.4 against RabbitMQ 3.10): python-socketio >= 5.14's json.dumps(data) is
// a str, sent as text/plain; a str with serializer="json" would be a JSON
// string; python-socketio < 5.14's pickle.dumps(data) is bytes, sent as
// application/data.
func TestUnwrapAndHandleDelivery(t *testing.T) {
	pickle := []byte("\x80\x04\x95\xbb\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x06method\x94\x8c\x04emit\x94u.")
	for _, tc := range []struct {
		name, contentType string
		body              []byte
		wantPayload       string
		wantPickled       bool
		outcome           string
		emits             int
	}{
		{"json text (python-socketio 5.14+)", "text/plain", []byte(captured), captured, false, OutcomeDelivered, 1},
		{"json bytes, no content type", "", []byte(captured), captured, false, OutcomeDelivered, 1},
		{"json string wrapping the message", "application/json", []byte(`"{\"method\": \"emit\", \"event\": \"new_task\", \"data\": {\"id\": 7}, \"namespace\": \"/tasks\", \"room\": \"collaboration_2\"}"`),
			`{"method": "emit", "event": "new_task", "data": {"id": 7}, "namespace": "/tasks", "room": "collaboration_2"}`, false, OutcomeDelivered, 1},
		{"json string, charset", "application/json; charset=utf-8", []byte(` "{\"method\": \"enter_room\", \"namespace\": \"/tasks\"}" `), `{"method": "enter_room", "namespace": "/tasks"}`, false, OutcomeIgnored, 0},
		{"pickle as application/data", "application/data", pickle, string(pickle), false, OutcomePickled, 0},
		{"pickle by content type", "application/x-python-serialize", []byte("(dp0\n."), "(dp0\n.", true, OutcomePickled, 0},
		{"garbage", "application/data", []byte("\x00\xffnope"), "\x00\xffnope", false, OutcomeNotJSON, 0},
		{"broken json string", "application/json", []byte(`"{\"method\": `), `"{\"method\": `, false, OutcomeNotJSON, 0},
		{"a json string that is not a message", "application/json", []byte(`"hello"`), "hello", false, OutcomeNotJSON, 0},
		{"empty", "", nil, "", false, OutcomeNotJSON, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload, pickled := Unwrap(tc.contentType, tc.body)
			if string(payload) != tc.wantPayload || pickled != tc.wantPickled {
				t.Errorf("Unwrap = %q, %v; want %q, %v", payload, pickled, tc.wantPayload, tc.wantPickled)
			}
			tg := &fakeTarget{}
			b, _, _ := newBridge(t, tg)
			if got := b.HandleDelivery(tc.contentType, tc.body); got != tc.outcome {
				t.Errorf("HandleDelivery = %s, want %s", got, tc.outcome)
			}
			if n := len(tg.take()); n != tc.emits {
				t.Errorf("%d emits, want %d", n, tc.emits)
			}
		})
	}
}

// proxy carries TCP connections to target; down closes the ones it carries
// and refuses new ones until up: a RabbitMQ that drops this instance.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	isDown bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.isDown {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			up, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err != nil {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.wg.Add(2)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.down()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isDown = true
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isDown = false
}

// TestAMQPBridge runs the bridge on the real RabbitMQ through a proxy that
// then drops it: readiness falls and returns, the bridge declares again and
// consumes the same queue, so what was published while it was away is
// delivered after all, as is what is published after.
func TestAMQPBridge(t *testing.T) {
	raw := testenv.RabbitMQ(t)
	u, _ := url.Parse(raw)
	exchange := "flask-socketio-test-" + randomHex(4)

	pub, err := amqp.Dial(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pch, err := pub.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// Kombu's declaration, first: the bridge's must match it.
	if err := pch.ExchangeDeclare(exchange, "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pch.ExchangeDelete(exchange, false, false) }()
	publish := func(body string) {
		t.Helper()
		if err := pch.PublishWithContext(context.Background(), exchange, "", false, false, amqp.Publishing{ContentType: "text/plain", ContentEncoding: "utf-8", Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	emitOf := func(id int) string {
		return fmt.Sprintf(`{"method": "emit", "event": "new_task", "data": {"id": %d}, "namespace": "/tasks", "room": "collaboration_2", "host_id": "h"}`, id)
	}

	px := startProxy(t, u.Host)
	via := *u
	via.Host = px.ln.Addr().String()
	target := &fakeTarget{}
	core, logs := observer.New(zap.DebugLevel)
	b, err := New(Config{AMQPURL: via.String(), Channel: exchange, Target: target, Logger: zap.New(core), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	closed := false
	closeBridge := func() {
		if closed {
			return
		}
		closed = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	defer func() {
		closeBridge()
		_, _ = pch.QueueDelete(b.amqpQueue, false, false, false)
	}()
	testwait.Until(t, 10*time.Second, "subscribed", b.Ready)
	if v := testutil.ToFloat64(b.subscribed); v != 1 {
		t.Errorf("eventserver_v6_queue_subscribed = %v while subscribed", v)
	}

	var got []string
	waitEmits := func(want ...string) {
		t.Helper()
		testwait.Until(t, 10*time.Second, "the emits", func() bool {
			for _, c := range target.take() {
				got = append(got, c.Args)
			}
			return len(got) >= len(want)
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("emits %v, want %v", got, want)
		}
		got = nil
	}
	publish(emitOf(1))
	publish(`"` + strings.ReplaceAll(emitOf(2), `"`, `\"`) + `"`)
	waitEmits(`[{"id":1}]`, `[{"id":2}]`)

	px.down()
	testwait.Until(t, 10*time.Second, "readiness lost", func() bool { return !b.Ready() })
	if v := testutil.ToFloat64(b.subscribed); v != 0 {
		t.Errorf("eventserver_v6_queue_subscribed = %v while disconnected", v)
	}
	publish(emitOf(3)) // kept in the bridge's queue while it is away
	testwait.Holds(t, 500*time.Millisecond, "still down", func() bool { return !b.Ready() })
	px.up()
	testwait.Until(t, 15*time.Second, "subscribed again", b.Ready)
	publish(emitOf(4))
	waitEmits(`[{"id":3}]`, `[{"id":4}]`)

	if logs.FilterMessageSnippet("subscription lost").FilterLevelExact(zap.WarnLevel).Len() != 1 {
		t.Errorf("want one warning of the loss: %v", logs.All())
	}
	if logs.FilterMessage("Flask-SocketIO queue: subscribed again").FilterLevelExact(zap.InfoLevel).Len() != 1 {
		t.Errorf("want one info line of the recovery: %v", logs.All())
	}
	// Close takes the queue away at once (not in x-expires' 5 minutes).
	closeBridge()
	testwait.Until(t, 5*time.Second, "the queue deleted", func() bool {
		ch, err := pub.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		_, err = ch.QueueDeclarePassive(b.amqpQueue, false, false, false, false, nil)
		return err != nil && strings.Contains(err.Error(), "NOT_FOUND")
	})

	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if strings.Contains(fmt.Sprint(v), "guest@") || strings.Contains(e.Message, "guest@") {
				t.Errorf("a log line holds the URL's credentials: %s %s=%v", e.Message, k, v)
			}
		}
	}
}

// TestAMQPBridgeMismatchedExchange: an exchange declared otherwise than
// Kombu declares it (durable here) refuses the bridge's declaration
// (PRECONDITION_FAILED): the bridge says so, stays not ready, retries, and
// subscribes once the exchange is what Kombu makes.
func TestAMQPBridgeMismatchedExchange(t *testing.T) {
	raw := testenv.RabbitMQ(t)
	exchange := "flask-socketio-test-" + randomHex(4)
	conn, err := amqp.Dial(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ch.ExchangeDelete(exchange, false, false) }()

	core, logs := observer.New(zap.DebugLevel)
	b, err := New(Config{AMQPURL: raw, Channel: exchange, Target: &fakeTarget{}, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	testwait.Until(t, 10*time.Second, "the refusal logged", func() bool {
		return logs.FilterMessageSnippet("cannot subscribe on RabbitMQ").FilterLevelExact(zap.WarnLevel).Len() == 1
	})
	if e := logs.FilterMessageSnippet("cannot subscribe").All()[0]; !strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "PRECONDITION_FAILED") {
		t.Errorf("the warning does not say why: %v", e.ContextMap())
	}
	testwait.Holds(t, 300*time.Millisecond, "not ready", func() bool { return !b.Ready() })
	if err := ch.ExchangeDelete(exchange, false, false); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 15*time.Second, "subscribed", b.Ready)
}
