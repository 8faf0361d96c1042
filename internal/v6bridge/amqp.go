package v6bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/eventserver/eventserver/pkg/retry"
)

// The message queue over RabbitMQ.
//
// vantage6 5.x hands its rabbitmq.uri to Flask-SocketIO, so python-socketio's
// KombuManager carries every emit: it publishes each message to a fanout
// exchange named after the channel ("flask-socketio"), and each Socket.IO
// server reads it from its own queue bound to that exchange. The bridge
// declares exactly what Kombu declares, so that the two coexist (a
// redeclaration that differs is a PRECONDITION_FAILED channel error):
//
//	exchange "flask-socketio": fanout, durable=false, auto_delete=false,
//	    internal=false, no arguments (kombu.Exchange's defaults with
//	    KombuManager's type and durable)
//	queue "<channel>.eventserver.<random>": durable=false, exclusive=false,
//	    auto_delete=false, {"x-expires": 300000} (KombuManager's queue; a
//	    SimpleQueue is neither exclusive nor auto-delete), bound with "".
//
// The queue name is kept across reconnects, as Kombu keeps its own: after a
// dropped connection the queue still holds what was published meanwhile;
// after a broker restart it is declared anew. Each message is acknowledged
// once handled, with at most amqpPrefetch unacknowledged.
//
// Bodies (kombu's Producer.publish of KombuManager's payload):
//
//	python-socketio >= 5.14 publishes json.dumps(data), a str: kombu 5.x sends
//	    it as is, content_type text/plain, content_encoding utf-8; were the
//	    producer given serializer="json", it would be a JSON string
//	    (application/json) whose content is the message: it is unwrapped.
//	python-socketio < 5.14 publishes pickle.dumps(data), bytes:
//	    application/data, binary; counted as "pickled", never unpickled (so is
//	    anything sent as application/x-python-serialize).

const (
	amqpBackoffMin = 100 * time.Millisecond
	amqpBackoffMax = 10 * time.Second
	// amqpTimeout bounds the TCP dial, the TLS and AMQP handshakes and each
	// declaration.
	amqpTimeout  = 5 * time.Second
	amqpPrefetch = 256
	// amqpQueueExpires is KombuManager's x-expires: an unused queue (its
	// consumer gone for good) is deleted after 5 minutes.
	amqpQueueExpires = int32(300000)
)

// Unwrap turns the body of a message of the RabbitMQ queue into what Handle
// takes: a JSON string (a str serialized by kombu as JSON) is unwrapped to
// its content; anything else is passed on as it is. pickled is true when the
// content type says the body is a pickle.
func Unwrap(contentType string, body []byte) (payload []byte, pickled bool) {
	ct, _, _ := strings.Cut(contentType, ";")
	if strings.EqualFold(strings.TrimSpace(ct), "application/x-python-serialize") {
		return body, true
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '"' {
		var s string
		if err := json.Unmarshal(trimmed, &s); err == nil {
			return []byte(s), false
		}
	}
	return body, false
}

// HandleDelivery carries out one message of the RabbitMQ queue (see Unwrap)
// and returns its outcome, counted as Handle counts it.
func (b *Bridge) HandleDelivery(contentType string, body []byte) string {
	payload, pickled := Unwrap(contentType, body)
	return b.handle(payload, pickled)
}

// runAMQP consumes the queue until ctx ends, reconnecting with backoff
// whenever the connection or the channel is lost.
func (b *Bridge) runAMQP(ctx context.Context) {
	defer close(b.done)
	defer b.setReady(false, nil)
	queue := b.amqpQueue
	_ = retry.Loop{Pause: retry.Backoff(amqpBackoffMin, amqpBackoffMax)}.Run(ctx, func(ctx context.Context, failures int) error {
		wasReady, err := b.consumeAMQP(ctx, queue)
		if ctx.Err() != nil {
			return err
		}
		b.setReady(false, err)
		if !wasReady {
			// Still down: the warning was given when it went down (or on
			// the first attempt).
			if failures == 0 {
				b.log.Warn("Flask-SocketIO queue: cannot subscribe on RabbitMQ; retrying", zap.Error(err))
			} else {
				b.log.Debug("Flask-SocketIO queue: still cannot subscribe on RabbitMQ", zap.Int("attempt", failures+1), zap.Error(err))
			}
		}
		if err == nil {
			// Not expected before ctx ends; paused like a failure.
			err = errConsumerEnded
		}
		if wasReady {
			// The pause is the first one again.
			return retry.Reset(err)
		}
		return err
	})
}

// errConsumerEnded stands for a consumer that ended without an error while
// the bridge runs.
var errConsumerEnded = errors.New("the consumer ended")

// consumeAMQP connects, declares, and handles deliveries until the
// connection or the channel closes (an error) or ctx ends (nil). wasReady
// tells whether it got as far as consuming.
func (b *Bridge) consumeAMQP(ctx context.Context, queue string) (wasReady bool, err error) {
	conn, err := amqp.DialConfig(b.cfg.AMQPURL, amqp.Config{
		Heartbeat: 10 * time.Second,
		Locale:    "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: amqpTimeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshakes get a deadline; amqp091 clears it once open.
			if err := c.SetDeadline(time.Now().Add(amqpTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
		Properties: amqp.Table{"connection_name": "eventserver v6bridge " + b.cfg.Channel},
	})
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	// Whatever happens next, the connection (and its channel) is closed on
	// return; until consuming starts, ctx's end closes it too, which ends
	// whatever call waits on it.
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.ExchangeDeclare(b.cfg.Channel, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
		return false, fmt.Errorf("declare exchange %q: %w", b.cfg.Channel, err)
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, amqp.Table{"x-expires": amqpQueueExpires}); err != nil {
		return false, fmt.Errorf("declare queue %q: %w", queue, err)
	}
	if err := ch.QueueBind(queue, "", b.cfg.Channel, false, nil); err != nil {
		return false, fmt.Errorf("bind queue %q: %w", queue, err)
	}
	if err := ch.Qos(amqpPrefetch, 0, false); err != nil {
		return false, fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %q: %w", queue, err)
	}
	if !stop() {
		return false, nil // ctx ended: the connection is closed
	}
	b.setReady(true, nil)

	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				// The channel or the connection closed: its reason follows.
				return true, closeReason(ctx, connClosed, chClosed)
			}
			b.HandleDelivery(d.ContentType, d.Body)
			if err := d.Ack(false); err != nil {
				return true, fmt.Errorf("ack: %w", err)
			}
		case e := <-connClosed:
			return true, closedErr("connection", e)
		case e := <-chClosed:
			return true, closedErr("channel", e)
		case <-ctx.Done():
			// Shutting down: the queue goes now rather than in x-expires'
			// 5 minutes, filling meanwhile (not waiting for the answer;
			// Kombu's own queues only expire).
			_, _ = ch.QueueDelete(queue, false, false, true)
			return true, nil
		}
	}
}

// closeReason waits briefly for the reason the deliveries stopped.
func closeReason(ctx context.Context, conn, ch <-chan *amqp.Error) error {
	select {
	case e := <-conn:
		return closedErr("connection", e)
	case e := <-ch:
		return closedErr("channel", e)
	case <-ctx.Done():
		return nil
	case <-time.After(time.Second):
		return errors.New("deliveries stopped")
	}
}

func closedErr(what string, e *amqp.Error) error {
	if e == nil {
		return fmt.Errorf("%s closed", what)
	}
	return fmt.Errorf("%s closed: %w", what, e)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
