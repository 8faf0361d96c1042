package backoff

import (
	"testing"
	"time"
)

func TestPause(t *testing.T) {
	base, maxD := 100*time.Millisecond, time.Second
	for attempt, nominal := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		nominal *= time.Millisecond
		for range 100 {
			if d := Pause(attempt, base, maxD); d < nominal/2 || d > nominal {
				t.Fatalf("Pause(%d) = %s, want within [%s, %s]", attempt, d, nominal/2, nominal)
			}
		}
	}
	if d := Pause(1000, base, maxD); d > maxD {
		t.Errorf("Pause(1000) = %s", d)
	}
}
