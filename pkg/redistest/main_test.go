package redistest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that redistest, testcontainers-go included, leaves no
// goroutine behind: packages that use it verify that too.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
