package interop

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine of a test (a peer's reaper, an upstream's, pier's) outlives
// the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
