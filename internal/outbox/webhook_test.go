package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventserver/eventserver/internal/protocol"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

const testToken = "webhook-token-5b1d-do-not-log"

// hook is a test webhook that answers each request with the next status of
// its script (the last one repeats) and records what it got.
type hook struct {
	srv *httptest.Server

	mu       sync.Mutex
	statuses []int
	reqs     []hookReq
}

type hookReq struct {
	Body                              string
	Auth, ContentType, IdempotencyKey string
}

func newHook(t *testing.T, statuses ...int) *hook {
	t.Helper()
	h := &hook{statuses: statuses}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.reqs = append(h.reqs, hookReq{Body: string(b), Auth: r.Header.Get("Authorization"),
			ContentType: r.Header.Get("Content-Type"), IdempotencyKey: r.Header.Get("Idempotency-Key")})
		st := h.statuses[min(len(h.reqs), len(h.statuses))-1]
		h.mu.Unlock()
		if r.Method != http.MethodPost {
			st = http.StatusMethodNotAllowed
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) requests() []hookReq {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookReq(nil), h.reqs...)
}

func fastWebhook(url string) Config {
	return Config{WebhookURL: url, WebhookToken: testToken, WebhookBackoff: 10 * time.Millisecond,
		WebhookMaxBackoff: 50 * time.Millisecond, WebhookTimeout: 2 * time.Second}
}

// TestWebhookRetriesThenDelivers: a webhook that fails twice, then
// succeeds, gets the same fact three times and it counts as delivered once,
// with two retries; the token is sent and never logged.
func TestWebhookRetriesThenDelivers(t *testing.T) {
	h := newHook(t, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusNoContent)
	o, logs := start(t, fastWebhook(h.srv.URL+"/facts"))
	o.Add(nodeFact(protocol.FactAlgorithmLog, 7))
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.webhook.WithLabelValues(outcomeDelivered)); v != 1 {
			return fmt.Errorf("delivered %v", v)
		}
		return nil
	})
	reqs := h.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(reqs[0].Body), &f); err != nil || f["type"] != protocol.FactAlgorithmLog {
		t.Fatalf("body %s: %v", reqs[0].Body, err)
	}
	for i, r := range reqs {
		if r.Body != reqs[0].Body || r.IdempotencyKey != f["id"] || r.Auth != "Bearer "+testToken || r.ContentType != "application/json" {
			t.Errorf("request %d: %+v, want the same fact, Idempotency-Key %v, the bearer token and JSON", i, r, f["id"])
		}
	}
	if v := value(o.m.webhook.WithLabelValues(outcomeRetried)); v != 2 {
		t.Errorf("retried %v, want 2", v)
	}
	if v := value(o.m.webhook.WithLabelValues(outcomeGaveUp)) + value(o.m.failed.WithLabelValues(sinkWebhook)); v != 0 {
		t.Errorf("gave up or failed %v, want 0", v)
	}
	if strings.Contains(logText(logs), testToken) {
		t.Errorf("the token is logged:\n%s", logText(logs))
	}
}

// TestWebhookGivesUp: a webhook that always fails gets exactly
// WebhookAttempts requests per fact, then the fact is given up with one
// clear log line, which names neither the token nor the URL's query.
func TestWebhookGivesUp(t *testing.T) {
	h := newHook(t, http.StatusInternalServerError)
	cfg := fastWebhook(h.srv.URL + "/facts?secret=query-secret-9f")
	cfg.WebhookAttempts = 3
	o, logs := start(t, cfg)
	o.Add(nodeFact(protocol.FactPing, 1))
	o.Add(nodeFact(protocol.FactPing, 2))
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.webhook.WithLabelValues(outcomeGaveUp)); v != 2 {
			return fmt.Errorf("gave up %v, want 2", v)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	perFact := map[string]int{}
	for _, r := range h.requests() {
		perFact[r.IdempotencyKey]++
	}
	if len(perFact) != 2 {
		t.Errorf("requests for %d facts, want 2: %v", len(perFact), perFact)
	}
	for id, n := range perFact {
		if n != 3 {
			t.Errorf("fact %s: %d attempts, want 3", id, n)
		}
	}
	if v := value(o.m.webhook.WithLabelValues(outcomeRetried)); v != 4 {
		t.Errorf("retried %v, want 4 (2 per fact)", v)
	}
	if v := value(o.m.failed.WithLabelValues(sinkWebhook)); v != 2 {
		t.Errorf("failed %v, want 2", v)
	}
	giveUps := logsWith(logs, "giving up on a fact")
	if len(giveUps) != 2 {
		t.Fatalf("%d give-up lines, want 2:\n%s", len(giveUps), logText(logs))
	}
	fields := giveUps[0].ContextMap()
	if fields["attempts"] != int64(3) || fields["last_error"] != "HTTP 500" || fields["webhook"] != h.srv.URL+"/facts" {
		t.Errorf("give-up line fields %v", fields)
	}
	if text := logText(logs); strings.Contains(text, testToken) || strings.Contains(text, "query-secret-9f") {
		t.Errorf("a secret is logged:\n%s", text)
	}
}

// TestWebhookRejected: a 4xx answer (other than 408, 425, 429) is final.
func TestWebhookRejected(t *testing.T) {
	h := newHook(t, http.StatusUnprocessableEntity)
	o, _ := start(t, fastWebhook(h.srv.URL))
	o.Add(nodeFact(protocol.FactPing, 1))
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.webhook.WithLabelValues(outcomeRejected)); v != 1 {
			return fmt.Errorf("rejected %v", v)
		}
		return nil
	})
	if n := len(h.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if v := value(o.m.failed.WithLabelValues(sinkWebhook)); v != 1 {
		t.Errorf("failed %v, want 1", v)
	}
}

// TestWebhookDown: a webhook that does not answer at all (connection
// refused) is retried and given up like one that fails; the error in the
// log does not quote the URL.
func TestWebhookDown(t *testing.T) {
	h := newHook(t, http.StatusOK)
	url := h.srv.URL + "/x?k=query-secret-2c"
	h.srv.Close()
	cfg := fastWebhook(url)
	cfg.WebhookAttempts = 2
	o, logs := start(t, cfg)
	o.Add(nodeFact(protocol.FactPing, 1))
	testwait.For(t, 5*time.Second, func() error {
		if v := value(o.m.webhook.WithLabelValues(outcomeGaveUp)); v != 1 {
			return fmt.Errorf("gave up %v", v)
		}
		return nil
	})
	if text := logText(logs); strings.Contains(text, "query-secret-2c") || !strings.Contains(text, "connection refused") {
		t.Errorf("log lines:\n%s", text)
	}
}

// TestStreamAndWebhook: with both sinks, each gets the same fact (the
// same bytes); a slow webhook does not hold the stream back.
func TestStreamAndWebhook(t *testing.T) {
	_, rdb := startRedis(t)
	release := make(chan struct{})
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		<-release
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	defer close(release) // before srv.Close: unblock the handlers
	cfg := fastWebhook(srv.URL)
	cfg.Stream, cfg.Client = testStream, rdb
	o, _ := start(t, cfg)
	for i := range 10 {
		o.Add(nodeFact(protocol.FactNodeMetricsUpdate, i))
	}
	var got []entry
	testwait.For(t, 5*time.Second, func() error {
		if got = readStream(t, rdb); len(got) != 10 {
			return fmt.Errorf("%d entries while the webhook hangs, want 10", len(got))
		}
		return nil
	})
	release <- struct{}{} // one webhook request answers
	testwait.For(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(bodies) != 1 {
			return fmt.Errorf("%d bodies", len(bodies))
		}
		return nil
	})
	mu.Lock()
	body := bodies[0]
	mu.Unlock()
	found := false
	for _, e := range got {
		found = found || e.Raw == body
	}
	if !found {
		t.Errorf("the webhook got %s, which is not in the stream", body)
	}
	// The cleanup's Shutdown waits for the webhook; the deferred close
	// releases it first.
}
