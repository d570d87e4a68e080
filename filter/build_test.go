package filter_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pierproxy/pier/filter"
)

// A panic in a factory comes back from Build as a *PanicError naming the
// filter, with the value and the stack, in one line; pier lives on.
func TestBuildRecoversAPanicInTheFactory(t *testing.T) {
	spec := filter.Spec{Name: "boom", New: func(*filter.Options) (filter.Filter, error) { panic("no config") }}
	f, err := spec.Build(filter.NewOptions("boom", nil, 0, 0))
	var pe *filter.PanicError
	if f != nil || !errors.As(err, &pe) {
		t.Fatalf("Build = %v, %v; want a *PanicError", f, err)
	}
	if got, want := err.Error(), "filter boom: panic: no config"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if pe.Value != "no config" || !strings.Contains(string(pe.Stack), "build_test.go") {
		t.Errorf("value %v, stack without the factory:\n%s", pe.Value, pe.Stack)
	}
}
