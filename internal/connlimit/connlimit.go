// Package connlimit bounds the Engine.IO sessions of one instance, in total
// and per client address, and tells a client's address behind trusted
// proxies (HAProxy, an ingress) from X-Forwarded-For.
package connlimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/eventserver/eventserver/pkg/engineio"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Refusal reasons, the label of eventserver_connections_refused_total.
const (
	ReasonTotal = "total"  // EVENTSERVER_MAX_CONNECTIONS reached
	ReasonPerIP = "per_ip" // EVENTSERVER_MAX_CONNECTIONS_PER_IP reached
)

// Config of a Limiter.
type Config struct {
	// Max bounds the sessions of the instance; 0: no bound.
	Max int
	// PerIP bounds the sessions of one client address; 0: no bound.
	PerIP int
	// TrustedProxies: a peer in one of these networks is a proxy, and the
	// client's address is read from X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// Refused counts refusals by reason; optional.
	Refused *prometheus.CounterVec
	Logger  *zap.Logger
	// LogEvery bounds the refusal log lines: at most one per LogEvery, which
	// says how many were refused since the last. Default 10s.
	LogEvery time.Duration
}

// Limiter admits or refuses new sessions: its Admit is engineio.Config.Admit.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	total   int
	byIP    map[netip.Addr]int
	lastLog time.Time
	quiet   map[string]int // refusals by reason not logged yet
}

// New makes a Limiter.
func New(cfg Config) *Limiter {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 10 * time.Second
	}
	if cfg.Refused != nil {
		cfg.Refused.WithLabelValues(ReasonTotal)
		cfg.Refused.WithLabelValues(ReasonPerIP)
	}
	return &Limiter{cfg: cfg, byIP: make(map[netip.Addr]int), quiet: make(map[string]int)}
}

// Admit takes a place for a new session of r's client, or refuses: 503 when
// the instance is full (another replica may have room), 429 when the
// client's address has its share.
func (l *Limiter) Admit(r *http.Request) (func(), error) {
	ip := ClientIP(r, l.cfg.TrustedProxies)
	l.mu.Lock()
	var reason string
	switch {
	case l.cfg.Max > 0 && l.total >= l.cfg.Max:
		reason = ReasonTotal
	case l.cfg.PerIP > 0 && ip.IsValid() && l.byIP[ip] >= l.cfg.PerIP:
		reason = ReasonPerIP
	}
	if reason != "" {
		l.refusedLocked(reason, ip)
		l.mu.Unlock()
		if reason == ReasonTotal {
			return nil, &engineio.RefusedError{Status: http.StatusServiceUnavailable, Message: "Server full: too many connections"}
		}
		return nil, &engineio.RefusedError{Status: http.StatusTooManyRequests, Message: "Too many connections from this address"}
	}
	l.total++
	if ip.IsValid() {
		l.byIP[ip]++
	}
	l.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { l.release(ip) }) }, nil
}

func (l *Limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if !ip.IsValid() {
		return
	}
	if n := l.byIP[ip] - 1; n > 0 {
		l.byIP[ip] = n
	} else {
		delete(l.byIP, ip)
	}
}

// Len is the number of sessions admitted and not yet released.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// refusedLocked counts a refusal and logs at most one line per LogEvery.
func (l *Limiter) refusedLocked(reason string, ip netip.Addr) {
	if l.cfg.Refused != nil {
		l.cfg.Refused.WithLabelValues(reason).Inc()
	}
	l.quiet[reason]++
	now := time.Now()
	if now.Sub(l.lastLog) < l.cfg.LogEvery {
		return
	}
	l.lastLog = now
	l.cfg.Logger.Warn("connections refused: limit reached",
		zap.Int("total_refused", l.quiet[ReasonTotal]), zap.Int("per_ip_refused", l.quiet[ReasonPerIP]),
		zap.String("last_client", ip.String()), zap.String("last_reason", reason),
		zap.Int("sessions", l.total), zap.Int("max", l.cfg.Max), zap.Int("max_per_ip", l.cfg.PerIP),
		zap.Duration("lines_at_most_every", l.cfg.LogEvery))
	clear(l.quiet)
}

// ClientIP is the address of r's client: the peer, or, when the peer is a
// trusted proxy, the rightmost address of X-Forwarded-For that is not a
// trusted proxy (each proxy appends the address it got the request from,
// so only what trusted proxies appended can be believed). The zero Addr
// when the peer cannot be parsed.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseAddr(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a := parseAddr(strings.TrimSpace(parts[j]))
			if !a.IsValid() {
				return peer // garbage from the proxy: believe only the peer
			}
			if !isTrusted(a, trusted) {
				return a
			}
			peer = a
		}
	}
	return peer
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseAddr reads "ip", "ip:port" or "[ipv6]:port", IPv4-mapped IPv6 as IPv4.
func parseAddr(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}
