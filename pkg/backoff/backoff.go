// Package backoff computes the pause before a retry: exponential with
// jitter, shared by the retry loops (pkg/retry), the outbox and the
// vantage6 queue bridge.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Pause is the pause before retry number attempt (0 for the first): base
// doubled attempt times, at most maxD, with equal jitter (half of it fixed,
// half random), so that instances do not retry in step.
func Pause(attempt int, base, maxD time.Duration) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	half := d / 2
	return half + rand.N(d-half+1)
}
