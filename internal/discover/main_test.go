package discover

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives its tests: a
// watcher's, a lookup's or a test server's.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
