package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	var err error
	a := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}), &err)
	b := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}), &err)
	if err != nil || a != b {
		t.Fatalf("second registration: err %v, same collector %v", err, a == b)
	}
	Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other help"}), &err)
	if err == nil {
		t.Fatal("a conflicting collector registered without error")
	}
}
