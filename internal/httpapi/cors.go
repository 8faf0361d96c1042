package httpapi

import (
	"net/http"
	"slices"
	"strings"
)

// CORS wraps the Socket.IO handler with the policy a browser UI on another
// origin needs: it sends Authorization as an extra header on polling requests
// and uses withCredentials, so the preflight must echo the requested headers
// and every response must echo the (allowed) Origin and allow credentials.
// An origin that is not allowed gets no CORS headers (and a 403 preflight).
// "*" in origins allows any origin, still echoed, never a literal "*".
//
// WebSocket upgrades are not checked against the list: clients authenticate
// with a bearer token, not a cookie, so a foreign page cannot ride on a
// user's session; and non-browser clients (python-socketio) send an Origin of
// their own.
func CORS(origins []string, next http.Handler) http.Handler {
	any := slices.Contains(origins, "*")
	allowed := func(o string) bool {
		return o != "" && (any || slices.Contains(origins, strings.TrimSuffix(o, "/")))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		w.Header().Add("Vary", "Origin")
		if !allowed(origin) {
			if preflight {
				http.Error(w, "origin not allowed (EVENTSERVER_CORS_ORIGINS)", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if preflight {
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
