package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventserver/eventserver/pkg/presence"
	"go.uber.org/zap"
)

// FuzzEmitBody posts arbitrary bodies to POST /api/v1/emit: the answer is
// 202 or a 4xx with a JSON error (never a 5xx, never a panic), and what a
// 202 hands to the emitter is the body's own JSON, byte for byte (numbers
// such as 9007199254740993 are never rounded through float64).
func FuzzEmitBody(f *testing.F) {
	for _, s := range []string{
		`{"event":"new_task","room":"collaboration_1","data":{"id":9007199254740993}}`,
		`{"event":"kill_containers","rooms":["collaboration_1","collaboration_2"],"args":[{"ids":[-9223372036854775808,18446744073709551615]},null]}`,
		`{"event":"sync","data":null}`,
		`{"event":"x","rooms":[]}`, `{"event":"connect"}`, `{"event":"x","data":1,"args":[]}`,
		`{"event":"x"} {}`, `{"event":"x","nope":1}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	em := &fakeEmitter{}
	mux := http.NewServeMux()
	New(Config{Token: token, MaxBody: 4096, Emitter: em, Presence: presence.NewMemory(nil), Metrics: testMetrics(), Logger: zap.NewNop()}).Register(mux)
	f.Fuzz(func(t *testing.T, body []byte) {
		em.mu.Lock()
		em.calls = nil
		em.mu.Unlock()
		req := httptest.NewRequest(http.MethodPost, "/api/v1/emit", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusAccepted:
		case rec.Code >= 400 && rec.Code < 500:
			var e apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d with body %q", rec.Code, rec.Body)
			}
			return
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		calls := em.Calls()
		if len(calls) != 1 {
			t.Fatalf("202 but %d emits", len(calls))
		}
		for _, a := range calls[0].args {
			raw, ok := a.(json.RawMessage)
			if !ok || !json.Valid(raw) || !bytes.Contains(body, bytes.TrimSpace(raw)) {
				t.Fatalf("argument %#v is not the body's own JSON", a)
			}
		}
	})
}
