package integration

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testenv"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// kombuScript is the vantage6 server's side of the Flask-SocketIO queue over
// RabbitMQ: Debian's python-socketio KombuManager (5.7.2) on Debian's kombu.
//
//	publish json   emits each stdin line ([event, data, room]) as
//	               python-socketio >= 5.14 (vantage6 5) does: the module's
//	               pickle is swapped for a shim, so _publish sends
//	               json.dumps(data) through the same kombu Producer
//	publish pickle the same, unpatched: pickle.dumps(data), as older
//	               python-socketio does
//	listen         a Flask-SocketIO server's own reader (its queue on the
//	               same exchange): prints each message it gets
//
// It prints "ready" once its connection is up, then "sent" after each emit
// ("failed" when kombu gave up on it).
const kombuScript = `
import json, sys
import socketio
from socketio import kombu_manager

class JSONPickle:
    dumps = staticmethod(json.dumps)

role, mode, url, channel = sys.argv[1:5]
if mode == "json":
    kombu_manager.pickle = JSONPickle
if role == "listen":
    mgr = socketio.KombuManager(url, channel=channel)
    print("ready", flush=True)
    for payload in mgr._listen():
        print(json.dumps(payload if isinstance(payload, str) else repr(payload)), flush=True)
    sys.exit(0)
mgr = socketio.KombuManager(url, channel=channel, write_only=True)
print("ready", flush=True)
for line in sys.stdin:
    event, data, room = json.loads(line)
    try:
        mgr.emit(event, data, namespace="/tasks", room=room)
    except Exception as e:
        # kombu's ensure retries what it deems recoverable (a refused or
        # reset connection) and raises the rest (a vhost that is gone):
        # the emit is lost, as it would be for the vantage6 server.
        print("failed", type(e).__name__, e, file=sys.stderr, flush=True)
        print("failed", flush=True)
        continue
    print("sent", flush=True)
`

// kombuProc is one run of kombuScript.
type kombuProc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	mu    sync.Mutex
	sent  int
	fail  int
	out   []string
}

func needKombu(t *testing.T) {
	t.Helper()
	ok := exec.Command(python, "-c", "import socketio, kombu").Run() == nil
	need(t, ok, "python3-socketio with python3-kombu under "+python)
}

func startKombu(t *testing.T, role, mode, amqpURL, channel string) *kombuProc {
	t.Helper()
	needKombu(t)
	k := &kombuProc{t: t, name: role + "/" + mode, lines: make(chan string, 1)}
	k.cmd = exec.Command(python, "-c", kombuScript, role, mode, amqpURL, channel)
	var stderr testenv.Buffer
	k.cmd.Stderr = &stderr
	var err error
	if k.in, err = k.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := k.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k.mu.Lock()
			switch line := sc.Text(); line {
			case "ready":
				close(k.lines)
			case "sent":
				k.sent++
			case "failed":
				k.fail++
			default:
				k.out = append(k.out, line)
			}
			k.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = k.in.Close()
		if role == "listen" {
			_ = k.cmd.Process.Kill()
		}
		waitOrKill(k.cmd)
		<-readDone
		if t.Failed() {
			t.Logf("kombu %s stderr:\n%s", k.name, tail(stderr.String(), 40))
		}
	})
	select {
	case <-k.lines:
	case <-time.After(wait):
		t.Fatalf("kombu %s: not ready:\n%s", k.name, stderr.String())
	}
	return k
}

// emit asks the publisher for an emit; sentCount tells when it is sent.
func (k *kombuProc) emit(event string, data any, room any) {
	k.t.Helper()
	line, err := json.Marshal([]any{event, data, room})
	if err != nil {
		k.t.Fatal(err)
	}
	if _, err := k.in.Write(append(line, '\n')); err != nil {
		k.t.Fatalf("kombu %s: %v", k.name, err)
	}
}

func (k *kombuProc) sentCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sent
}

// doneCount is the number of emits sent or given up on.
func (k *kombuProc) doneCount() (sent, failed int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sent, k.fail
}

func (k *kombuProc) waitSent(n int) {
	k.t.Helper()
	testwait.For(k.t, wait, func() error {
		if got := k.sentCount(); got < n {
			return fmt.Errorf("kombu %s: %d emits sent, want %d", k.name, got, n)
		}
		return nil
	})
}

func (k *kombuProc) output() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.out...)
}

func randomName(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitQueueSubscribed waits until every replica says it is subscribed
// (want 1) or not (want 0).
func waitQueueSubscribed(t *testing.T, want float64, timeout time.Duration, replicas ...*procServer) {
	t.Helper()
	for _, p := range replicas {
		testwait.For(t, timeout, func() error {
			if v := p.metric("eventserver_v6_queue_subscribed"); v != want {
				return fmt.Errorf("%s: eventserver_v6_queue_subscribed = %v, want %v", p.name, v, want)
			}
			return nil
		})
	}
}

// TestFlaskSocketIOBridgeRabbitMQ: three replicas read vantage6 5's
// Flask-SocketIO queue on RabbitMQ, next to a Flask-SocketIO server's own
// reader; what the real KombuManager publishes (JSON, as python-socketio
// 5.14+ does) reaches each permitted client of the cluster exactly once,
// whichever replica holds it, and a pickle (older python-socketio) is
// counted on every replica and delivers nothing.
func TestFlaskSocketIOBridgeRabbitMQ(t *testing.T) {
	amqpURL := testenv.RabbitMQ(t)
	needKombu(t)
	channel := "flask-socketio-test-" + randomName(4)
	// The test's exchange goes at the end; the queues expire (x-expires).
	t.Cleanup(func() { deleteExchange(t, amqpURL, channel) })

	// The vantage6 server's side first: its publisher and its reader
	// declare the exchange, and the replicas' declarations must match.
	pub := startKombu(t, "publish", "json", amqpURL, channel)
	flask := startKombu(t, "listen", "json", amqpURL, channel)

	r := redistest.Start(t)
	replicas := startBridgeReplicas(t, r, "EVENTSERVER_V6_QUEUE_CHANNEL="+channel, "EVENTSERVER_V6_QUEUE_URL="+amqpURL)
	in2, others := startBridgeClients(t, replicas)

	// A pickle first (the unpatched KombuManager), then what vantage6 5
	// publishes, then a barrier to the whole namespace.
	pickler := startKombu(t, "publish", "pickle", amqpURL, channel)
	pickler.emit("new_task", map[string]any{"id": 666, "parent_id": nil}, "collaboration_2")
	pickler.waitSent(1)
	for _, p := range replicas {
		testwait.For(t, wait, func() error {
			if v := p.metric(`eventserver_v6_queue_messages_total{method="-",outcome="pickled"}`); v != 1 {
				return fmt.Errorf("%s: pickled = %v, want 1", p.name, v)
			}
			return nil
		})
	}
	pub.emit("new_task", map[string]any{"id": 7, "parent_id": 3}, "collaboration_2")
	pub.emit("kill_containers", map[string]any{"collaboration_id": 2}, "collaboration_2")
	pub.emit("status_update", map[string]any{"run_id": 1}, []string{"collaboration_2"})
	pub.emit("queue-barrier", nil, nil)
	pub.waitSent(4)

	for _, cl := range append(append([]*client{}, in2...), others...) {
		cl.waitEvent("queue-barrier", wait)
	}
	for _, cl := range in2 {
		for _, ev := range []struct{ name, arg string }{
			{"new_task", `{"id":7,"parent_id":3}`},
			{"kill_containers", `{"collaboration_id":2}`},
			{"status_update", `{"run_id":1}`},
		} {
			got := cl.events(ev.name)
			if len(got) != 1 {
				t.Errorf("%s: %s %d times, want once: %v", cl.name, ev.name, len(got), got)
				continue
			}
			jsonEq(t, got[0].Args[0], ev.arg)
		}
	}
	for _, cl := range others {
		for _, ev := range []string{"new_task", "kill_containers", "status_update"} {
			if n := len(cl.events(ev)); n != 0 {
				t.Errorf("%s (collaboration 1) got collaboration 2's %s: %v", cl.name, ev, cl.eventNames())
			}
		}
	}
	for _, p := range replicas {
		for series, want := range map[string]float64{
			`eventserver_v6_queue_messages_total{method="emit",outcome="delivered"}`: 4,
			`eventserver_v6_queue_messages_total{method="-",outcome="pickled"}`:      1,
			`eventserver_v6_queue_messages_total{method="-",outcome="not_json"}`:     0,
		} {
			if got := p.metric(series); got != want {
				t.Errorf("%s: %s = %v, want %v", p.name, series, got, want)
			}
		}
		if logs := p.logText(); !strings.Contains(logs, "pickled message") {
			t.Errorf("%s: the pickle was not logged", p.name)
		}
		if strings.Contains(p.logText(), "guest:guest@") {
			t.Errorf("%s: a log line holds the queue URL's password", p.name)
		}
	}
	// The vantage6 server's own reader got the same messages: the
	// declarations coexist.
	testwait.For(t, wait, func() error {
		if out := strings.Join(flask.output(), "\n"); !strings.Contains(out, "queue-barrier") || !strings.Contains(out, `\"id\": 7`) {
			return fmt.Errorf("the Flask-SocketIO reader got %q", out)
		}
		return nil
	})
}

// deleteExchange removes a test's exchange.
func deleteExchange(t *testing.T, amqpURL, name string) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Logf("deleting exchange %s: %v", name, err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		err = ch.ExchangeDelete(name, false, false)
	}
	if err != nil {
		t.Logf("deleting exchange %s: %v", name, err)
	}
}

// rabbitmqctl runs rabbitmqctl on the tests' broker.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestFlaskSocketIOBridgeRabbitMQOutage: RabbitMQ goes away in the middle of
// a stream of emits and comes back empty, as after a restart. The test's
// broker is shared (by other tests, other checkouts), so the outage is
// scoped to a virtual host of the test's own: deleting it closes every
// connection in it (connection.close 320 CONNECTION_FORCED, what a broker
// that stops sends), drops its exchanges and queues (non-durable ones are
// gone after a restart too) and refuses new connections until it is added
// again. Readiness drops on every replica and returns, the replicas declare
// again, and what is published after the recovery reaches every client
// exactly once; what is published during the outage may be lost, never
// duplicated.
func TestFlaskSocketIOBridgeRabbitMQOutage(t *testing.T) {
	base := testenv.RabbitMQ(t)
	needKombu(t)
	_, err := exec.LookPath("rabbitmqctl")
	ok := err == nil && exec.Command("rabbitmqctl", "-q", "status").Run() == nil
	need(t, ok, "rabbitmqctl that can manage the tests' RabbitMQ (run as root, next to the broker)")

	vhost := "eventserver-test-" + randomName(4)
	user := "guest"
	if u, err := url.Parse(base); err == nil && u.User != nil {
		user = u.User.Username()
	}
	addVhost := func() {
		rabbitmqctl(t, "add_vhost", vhost)
		rabbitmqctl(t, "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
	}
	addVhost()
	t.Cleanup(func() { _ = exec.Command("rabbitmqctl", "-q", "delete_vhost", vhost).Run() })
	u, _ := url.Parse(base)
	u.Path = "/" + vhost
	amqpURL := u.String()
	const channel = "flask-socketio" // a vhost of its own: the real name

	r := redistest.Start(t)
	replicas := startBridgeReplicas(t, r, "EVENTSERVER_V6_QUEUE_CHANNEL="+channel, "EVENTSERVER_V6_QUEUE_URL="+amqpURL)
	var nodes []*client
	for i, p := range replicas {
		n := startPyNode(t, p.server, "node2@"+p.name, clientOpts{token: nodeToken(t, int64(10+i), 2, int64(21+i), time.Hour)})
		n.waitEvent("sync", wait)
		nodes = append(nodes, n)
	}
	pub := startKombu(t, "publish", "json", amqpURL, channel)

	// The stream: new_task with ids 1, 2, ... every 20 ms, on and on.
	var (
		streamMu sync.Mutex
		nextID   = 1
	)
	emitNext := func() int {
		streamMu.Lock()
		defer streamMu.Unlock()
		id := nextID
		nextID++
		pub.emit("new_task", map[string]any{"id": id}, "collaboration_2")
		return id
	}
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				emitNext()
			}
		}
	}()
	stopStream := sync.OnceFunc(func() { close(stop); <-streamDone })
	t.Cleanup(stopStream)

	ids := func(cl *client) map[int]int {
		seen := map[int]int{}
		for _, m := range cl.events("new_task") {
			var v struct{ ID int }
			if len(m.Args) == 1 && json.Unmarshal(m.Args[0], &v) == nil {
				seen[v.ID]++
			}
		}
		return seen
	}
	// Some of the stream arrives before the outage.
	for _, n := range nodes {
		testwait.For(t, wait, func() error {
			if got := len(ids(n)); got < 10 {
				return fmt.Errorf("%s: %d emits of the stream so far", n.name, got)
			}
			return nil
		})
	}

	// The outage: the vhost goes (connections closed, exchange and queues
	// dropped), readiness drops everywhere and stays down while it is gone.
	down := time.Now()
	rabbitmqctl(t, "delete_vhost", vhost)
	waitQueueSubscribed(t, 0, wait, replicas...)
	// (The outage lasts as long as the rabbitmqctl calls that end it.)
	addVhost()
	waitQueueSubscribed(t, 1, 20*time.Second, replicas...)
	recovered := time.Since(down)

	// After the recovery: once the publisher is through its own retries
	// (kombu's ensure), a marked id; everything from it on must arrive
	// exactly once.
	testwait.For(t, 30*time.Second, func() error {
		sent, failed := pub.doneCount()
		streamMu.Lock()
		issued := nextID - 1
		streamMu.Unlock()
		if sent+failed < issued-5 {
			return fmt.Errorf("the publisher is still retrying: %d sent and %d failed of %d", sent, failed, issued)
		}
		return nil
	})
	after := emitNext()
	for _, n := range nodes {
		testwait.For(t, wait, func() error {
			if ids(n)[after+20] == 0 {
				return fmt.Errorf("%s: id %d not yet", n.name, after+20)
			}
			return nil
		})
	}
	stopStream()
	streamMu.Lock()
	last := nextID - 1
	streamMu.Unlock()
	testwait.For(t, wait, func() error {
		if sent, failed := pub.doneCount(); sent+failed < last {
			return fmt.Errorf("the publisher: %d sent and %d failed of %d", sent, failed, last)
		}
		return nil
	})
	sent, failed := pub.doneCount()
	for _, n := range nodes {
		testwait.For(t, wait, func() error {
			if ids(n)[last] == 0 {
				return fmt.Errorf("%s: the last id %d not yet", n.name, last)
			}
			return nil
		})
	}

	for _, n := range nodes {
		seen := ids(n)
		lost := 0
		for id := 1; id <= last; id++ {
			switch k := seen[id]; {
			case k > 1:
				t.Errorf("%s: id %d delivered %d times", n.name, id, k)
			case k == 0 && id >= after:
				t.Errorf("%s: id %d, published after the recovery, never arrived", n.name, id)
			case k == 0:
				lost++
			}
		}
		t.Logf("%s: %d emits (%d sent, %d failed in the publisher), %d lost during the outage", n.name, last, sent, failed, lost)
	}
	for _, p := range replicas {
		logs := p.logText()
		if strings.Count(logs, "subscription lost") != 1 || strings.Count(logs, "subscribed again") != 1 {
			t.Errorf("%s: want one warning of the loss and one line of the recovery", p.name)
		}
		if strings.Contains(logs, "guest:guest@") {
			t.Errorf("%s: a log line holds the queue URL's password", p.name)
		}
	}
	t.Logf("outage to every replica subscribed again: %s", recovered.Round(time.Millisecond))
}
