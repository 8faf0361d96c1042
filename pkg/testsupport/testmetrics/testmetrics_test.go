package testmetrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"a", "b"})
	reg.MustRegister(c)
	c.WithLabelValues("x", "y").Add(2)
	c.WithLabelValues("x", "z").Add(5)
	if v := Value(t, reg, "c_total", "a", "x", "b", "z"); v != 5 {
		t.Fatalf("got %v, want 5", v)
	}
	if v := Value(t, reg, "c_total", "b", "w"); v != -1 {
		t.Fatalf("got %v for a missing series, want -1", v)
	}
	if v := Value(t, reg, "nothing"); v != -1 {
		t.Fatalf("got %v for a missing metric, want -1", v)
	}
}
