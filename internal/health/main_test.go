package health

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine outlives the tests: a Checker's probers end with Stop, and a
// probe closes its connection before it returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
