package httpapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestCORS(t *testing.T) {
	uiOnly := []string{"https://ui.example"}
	tests := []struct {
		name    string
		origins []string
		method  string
		headers map[string]string

		wantCode        int
		wantNext        bool
		wantACAO        string // "" means absent
		wantCredentials bool
		wantAllowHdrs   string // checked when not ""
	}{
		{
			name:    "preflight allowed",
			origins: uiOnly,
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                         "https://ui.example",
				"Access-Control-Request-Method":  "GET",
				"Access-Control-Request-Headers": "authorization,content-type",
			},
			wantCode:        http.StatusNoContent,
			wantACAO:        "https://ui.example",
			wantCredentials: true,
			wantAllowHdrs:   "authorization,content-type",
		},
		{
			name:    "preflight POST allowed",
			origins: []string{"http://localhost:4200", "https://ui.example"},
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                         "https://ui.example",
				"Access-Control-Request-Method":  "POST",
				"Access-Control-Request-Headers": "Authorization",
			},
			wantCode:        http.StatusNoContent,
			wantACAO:        "https://ui.example",
			wantCredentials: true,
			wantAllowHdrs:   "Authorization",
		},
		{
			name:    "preflight disallowed origin",
			origins: uiOnly,
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                         "https://evil.example",
				"Access-Control-Request-Method":  "GET",
				"Access-Control-Request-Headers": "authorization",
			},
			wantCode: http.StatusForbidden,
		},
		{
			name:    "preflight without configured origins",
			origins: nil,
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                        "https://ui.example",
				"Access-Control-Request-Method": "GET",
			},
			wantCode: http.StatusForbidden,
		},
		{
			name:    "preflight origin differing in port",
			origins: uiOnly,
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                        "https://ui.example:8443",
				"Access-Control-Request-Method": "GET",
			},
			wantCode: http.StatusForbidden,
		},
		{
			name:    "preflight origin differing in scheme",
			origins: uiOnly,
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                        "http://ui.example",
				"Access-Control-Request-Method": "GET",
			},
			wantCode: http.StatusForbidden,
		},
		{
			name:            "GET allowed origin",
			origins:         uiOnly,
			method:          http.MethodGet,
			headers:         map[string]string{"Origin": "https://ui.example"},
			wantCode:        http.StatusTeapot,
			wantNext:        true,
			wantACAO:        "https://ui.example",
			wantCredentials: true,
		},
		{
			name:            "POST allowed origin",
			origins:         uiOnly,
			method:          http.MethodPost,
			headers:         map[string]string{"Origin": "https://ui.example"},
			wantCode:        http.StatusTeapot,
			wantNext:        true,
			wantACAO:        "https://ui.example",
			wantCredentials: true,
		},
		{
			name:     "GET disallowed origin refused",
			origins:  uiOnly,
			method:   http.MethodGet,
			headers:  map[string]string{"Origin": "https://evil.example"},
			wantCode: http.StatusForbidden,
		},
		{
			name:     "POST disallowed origin refused",
			origins:  uiOnly,
			method:   http.MethodPost,
			headers:  map[string]string{"Origin": "https://evil.example"},
			wantCode: http.StatusForbidden,
		},
		{
			name:     "GET same-origin served without CORS headers",
			origins:  nil,
			method:   http.MethodGet,
			headers:  map[string]string{"Origin": "http://example.com"},
			wantCode: http.StatusTeapot,
			wantNext: true,
		},
		{
			name:     "no Origin",
			origins:  uiOnly,
			method:   http.MethodGet,
			wantCode: http.StatusTeapot,
			wantNext: true,
		},
		{
			name:     "OPTIONS without Access-Control-Request-Method is not a preflight",
			origins:  uiOnly,
			method:   http.MethodOptions,
			headers:  map[string]string{"Origin": "https://ui.example"},
			wantCode: http.StatusTeapot,
			wantNext: true,
			wantACAO: "https://ui.example", wantCredentials: true,
		},
		{
			name:     "OPTIONS from a disallowed origin refused even if not a preflight",
			origins:  uiOnly,
			method:   http.MethodOptions,
			headers:  map[string]string{"Origin": "https://evil.example"},
			wantCode: http.StatusForbidden,
		},
		{
			name:    "star echoes any origin in a preflight",
			origins: []string{"*"},
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                         "https://anything.example:9000",
				"Access-Control-Request-Method":  "GET",
				"Access-Control-Request-Headers": "authorization",
			},
			wantCode:        http.StatusNoContent,
			wantACAO:        "https://anything.example:9000",
			wantCredentials: true,
			wantAllowHdrs:   "authorization",
		},
		{
			name:            "star echoes any origin on GET",
			origins:         []string{"https://ui.example", "*"},
			method:          http.MethodGet,
			headers:         map[string]string{"Origin": "http://localhost:4200"},
			wantCode:        http.StatusTeapot,
			wantNext:        true,
			wantACAO:        "http://localhost:4200",
			wantCredentials: true,
		},
		{
			name:     "star and no Origin",
			origins:  []string{"*"},
			method:   http.MethodGet,
			wantCode: http.StatusTeapot,
			wantNext: true,
		},
		{
			name:    "trailing slash in Origin tolerated in a preflight",
			origins: uiOnly,
			method:  http.MethodOptions,
			headers: map[string]string{
				"Origin":                        "https://ui.example/",
				"Access-Control-Request-Method": "GET",
			},
			wantCode:        http.StatusNoContent,
			wantACAO:        "https://ui.example/",
			wantCredentials: true,
		},
		{
			name:            "trailing slash in Origin tolerated on GET",
			origins:         uiOnly,
			method:          http.MethodGet,
			headers:         map[string]string{"Origin": "https://ui.example/"},
			wantCode:        http.StatusTeapot,
			wantNext:        true,
			wantACAO:        "https://ui.example/",
			wantCredentials: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nextCalled := false
			next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				nextCalled = true
				w.WriteHeader(http.StatusTeapot)
			})
			req := httptest.NewRequest(tt.method, "/socket.io/?EIO=4&transport=polling", nil)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			CORS(NewOriginPolicy(tt.origins, nil, nil), next).ServeHTTP(rec, req)
			h := rec.Result().Header

			if rec.Code != tt.wantCode {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantCode)
			}
			if nextCalled != tt.wantNext {
				t.Errorf("next called = %v, want %v", nextCalled, tt.wantNext)
			}
			acao, hasACAO := h["Access-Control-Allow-Origin"]
			if tt.wantACAO == "" {
				if hasACAO {
					t.Errorf("Access-Control-Allow-Origin = %q, want none", acao)
				}
				if v := h.Get("Access-Control-Allow-Credentials"); v != "" {
					t.Errorf("Access-Control-Allow-Credentials = %q, want none", v)
				}
			} else {
				if len(acao) != 1 || acao[0] != tt.wantACAO {
					t.Errorf("Access-Control-Allow-Origin = %q, want exactly %q", acao, tt.wantACAO)
				}
			}
			if slices.Contains(acao, "*") {
				t.Error("Access-Control-Allow-Origin is a literal *")
			}
			if tt.wantCredentials {
				if v := h.Get("Access-Control-Allow-Credentials"); v != "true" {
					t.Errorf("Access-Control-Allow-Credentials = %q, want true", v)
				}
			}
			if tt.wantAllowHdrs != "" {
				if v := h.Get("Access-Control-Allow-Headers"); v != tt.wantAllowHdrs {
					t.Errorf("Access-Control-Allow-Headers = %q, want %q", v, tt.wantAllowHdrs)
				}
			}
			if tt.wantCode == http.StatusNoContent {
				if v := h.Get("Access-Control-Allow-Methods"); !strings.Contains(v, tt.headers["Access-Control-Request-Method"]) {
					t.Errorf("Access-Control-Allow-Methods = %q does not allow %s", v, tt.headers["Access-Control-Request-Method"])
				}
			}
			if !varyContains(h, "Origin") {
				t.Errorf("Vary = %q, want it to contain Origin", h.Values("Vary"))
			}
		})
	}
}

// varyContains reports whether the Vary header lists name.
func varyContains(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), name) {
				return true
			}
		}
	}
	return false
}
