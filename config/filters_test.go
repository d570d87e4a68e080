package config

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pierproxy/pier/filter"
)

// Test filters registered once for the package: a factory that panics,
// and one whose check-only Filter holds something to close.
var checkedCloses atomic.Int32

func init() {
	filter.Register(filter.Spec{Name: "test_panics", New: func(*filter.Options) (filter.Filter, error) {
		panic("no config")
	}})
	filter.Register(filter.Spec{Name: "test_closer", New: func(*filter.Options) (filter.Filter, error) {
		return closerFilter{}, nil
	}})
	filter.Register(filter.Spec{Name: "test_close_panics", New: func(*filter.Options) (filter.Filter, error) {
		return closePanicsFilter{}, nil
	}})
}

type closerFilter struct{}

func (closerFilter) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }
func (closerFilter) Close() error                                           { checkedCloses.Add(1); return nil }

type closePanicsFilter struct{}

func (closePanicsFilter) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }
func (closePanicsFilter) Close() error                                           { panic("closed twice") }

// A panic in a filter's factory is a config error at that filter, in one
// line, not the end of pier: a daemon reloading a config with such a
// filter logs the error and keeps its running config.
func TestParseRecoversAPanicInAFactory(t *testing.T) {
	doc := route(`[":1"]`, `[{address: "h:1"}]`, "filters: [pass, test_panics]")
	_, err := Parse("f", []byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	if got, want := err.Error(), "f:5:21: filter test_panics: panic: no config"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
}

// Check and the command line place the panic at the filter too.
func TestFactoryPanicPlaced(t *testing.T) {
	cfg := &Config{Routes: []Route{{
		Name: "db", Listen: []string{"127.0.0.1:0"}, Upstreams: []Upstream{{Address: "127.0.0.1:5432"}},
		Filters: []Filter{{Name: "test_panics"}},
	}}}
	if err := Check(cfg); err == nil || err.Error() != `route "db": filters[0]: filter test_panics: panic: no config` {
		t.Errorf("Check: %v", err)
	}
	_, err := FromCommandLine("forward", []Setting{
		{Key: "listen", Text: "127.0.0.1:0", Place: "argument 1"},
		{Key: "upstream", Text: "127.0.0.1:80", Place: "argument 2"},
		{Key: "filter", Filter: "test_panics", Place: "flag -test_panics"},
	})
	if err == nil || err.Error() != "flag -test_panics: filter test_panics: panic: no config" {
		t.Errorf("FromCommandLine: %v", err)
	}
}

// The Filter a factory makes only to check its options is closed, once,
// if it is an io.Closer: loading a config leaks nothing it opened.
func TestCheckOnlyFilterClosed(t *testing.T) {
	before := checkedCloses.Load()
	if _, err := Parse("f", []byte(route(`[":1"]`, `[{address: "h:1"}]`, "filters: [test_closer]"))); err != nil {
		t.Fatal(err)
	}
	if n := checkedCloses.Load() - before; n != 1 {
		t.Errorf("Close called %d times, want 1", n)
	}
}

// A panic in that Close is the filter's fault, reported like one in its
// factory.
func TestCheckOnlyFilterClosePanicRecovered(t *testing.T) {
	_, err := Parse("f", []byte(route(`[":1"]`, `[{address: "h:1"}]`, "filters: [test_close_panics]")))
	if err == nil || !strings.HasSuffix(err.Error(), "filter test_close_panics: panic: closed twice") {
		t.Errorf("error %v", err)
	}
}
