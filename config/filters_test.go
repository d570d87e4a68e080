package config

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

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

// ParseFilters reads a filter list as a route's filters: holds it, in YAML
// or JSON, and refuses what the file refuses, placed inside the body.
func TestParseFilters(t *testing.T) {
	latency := Filter{Name: "latency", Options: map[string]filter.Value{"delay": {Text: "100ms"}, "probability": {Text: "0.5"}}}
	pass := Filter{Name: "pass", Options: map[string]filter.Value{}}
	reset := Filter{Name: "reset", Options: map[string]filter.Value{"after": {Text: "1s"}, "clients": {IsList: true, List: []string{"10.0.0.0/8", "192.0.2.1"}}}}
	for _, c := range []struct {
		name, body string
		want       []Filter
		err        string // the whole first error
	}{
		{"yaml", "- latency: {delay: 100ms, probability: 0.5}\n- pass\n", []Filter{latency, pass}, ""},
		{"json", `[{"latency": {"delay": "100ms", "probability": 0.5}}, "pass"]`, []Filter{latency, pass}, ""},
		{"json with a list option", `[{"reset": {"after": "1s", "clients": ["10.0.0.0/8", "192.0.2.1"]}}]`, []Filter{reset}, ""},
		{"name with null options", "[pass: ~]", []Filter{pass}, ""},
		{"empty list", "[]", nil, ""},
		{"empty body", "", nil, "body:1:1: no filters: the body is empty: write a list, like [{latency: {delay: 100ms}}], or [] for none"},
		{"null", "null\n", nil, "body:1:1: no filters: the body is empty: write a list, like [{latency: {delay: 100ms}}], or [] for none"},
		{"one filter alone", `{"latency": {"delay": "1s"}}`, nil, "body:1:1: filters: want a list, got a mapping"},
		{"unknown filter", `[{"latancy": {"delay": "1s"}}]`, nil, `body:1:3: filter: unknown filter "latancy" (known: `},
		{"bad option value", "- pass\n- latency: {delay: fast}\n", nil, `body:2:20: latency: delay: "fast" is not a duration`},
		{"unknown option", `[{"latency": {"delay": "1s", "dealy": "2s"}}]`, nil, `body:1:39: latency: dealy: unknown option`},
		{"two filters in one item", `[{"latency": {"delay": "1s"}, "pass": null}]`, nil, "body:1:2: filter: want a filter's name with its options, like {dump: {format: hex}}, got a mapping of several keys (one filter per list item)"},
		{"option is a mapping", "- latency: {delay: {a: 1}}\n", nil, "body:1:20: latency: delay: want a value or a list of values, got a mapping"},
		{"yaml syntax", "[{latency: \n", nil, "body:2:1: yaml: "},
		{"two documents", "[]\n---\n[]\n", nil, "body:2:1: a second YAML document: the file must hold exactly one"},
		{"duplicate option", "- latency: {delay: 1s, delay: 2s}\n", nil, "body:1:24: duplicate key \"delay\" (first at line 1)"},
		{"unknown tag", "- !!bianry pass\n", nil, "body:1:3: tag !!bianry is not supported"},
		{"panicking factory", "- test_panics\n", nil, "body:1:3: filter test_panics: panic: no config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseFilters("body", []byte(c.body))
			if c.err != "" {
				var errs Errors
				if !errors.As(err, &errs) || !strings.HasPrefix(errs[0].Error(), c.err) || got != nil {
					t.Errorf("got %v, %v\nwant %s...", got, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got, sameConfig); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// A filter list in a body is worded as in a file: the same list under a
// route's filters: gives the same messages, only the positions differ.
func TestParseFiltersWordedAsTheFile(t *testing.T) {
	for _, list := range []string{
		`[{latancy: {delay: 1s}}]`,
		`[{latency: {delay: fast, jitter: -1s}}, {reset: {after: 1s, clients: [nope]}}]`,
		`[{dump: {format: octal}}, 5, [a]]`,
		`{pass: ~}`,
	} {
		_, bodyErr := ParseFilters("body", []byte(list))
		_, fileErr := Parse("f", []byte(route(`[":1"]`, `[{address: "h:1"}]`, "filters: "+list)))
		var be, fe Errors
		if !errors.As(bodyErr, &be) || !errors.As(fileErr, &fe) || len(be) != len(fe) {
			t.Errorf("%s:\nbody: %v\nfile: %v", list, bodyErr, fileErr)
			continue
		}
		for i := range be {
			if be[i].Msg != fe[i].Msg || be[i].Line != 1 || be[i].Col != fe[i].Col-len("    filters: ") {
				t.Errorf("%s:\nbody: %v\nfile: %v", list, be[i], fe[i])
			}
		}
	}
}

// ParseFilter reads one item of such a list.
func TestParseFilter(t *testing.T) {
	f, err := ParseFilter("body", []byte(`{"latency": {"delay": "1s"}}`))
	if err != nil || f.Name != "latency" || f.Options["delay"].Text != "1s" || f.Pos != (Pos{Line: 1, Col: 2}) {
		t.Errorf("got %+v, %v", f, err)
	}
	if f, err := ParseFilter("body", []byte(`"pass"`)); err != nil || f.Name != "pass" {
		t.Errorf("got %+v, %v", f, err)
	}
	_, err = ParseFilter("body", []byte(`[{"latency": {"delay": "1s"}}]`))
	if err == nil || !strings.HasPrefix(err.Error(), "body:1:1: filter: want a filter's name with its options") {
		t.Errorf("a list: %v", err)
	}
	_, err = ParseFilter("body", nil)
	if err == nil || err.Error() != "body:1:1: no filter: the body is empty: write one, like {latency: {delay: 100ms}}" {
		t.Errorf("empty: %v", err)
	}
}

// FuzzParseFilters: whatever the body, ParseFilters does not panic, and
// returns filters or Errors placed inside the body, in order; filters it
// returns survive a round trip: written as YAML, read back equal, and
// written again to the same bytes.
func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{
		"- latency: {delay: 100ms, probability: 0.5}\n- pass\n",
		`[{"latency": {"delay": "100ms", "jitter": "10ms"}}, "pass"]`,
		`[{"reset": {"after": "1s", "clients": ["10.0.0.0/8", "192.0.2.1"], "direction": "upstream"}}]`,
		"- dump: {format: hex, to: stderr}\n- slow_close: {delay: 1s}\n",
		"- bandwidth: {rate: 1000, burst: 100}\n- timeout: {after: 5s}\n- slicer: {size: 10, variation: 3, delay: 1ms}\n",
		"- limit: {bytes: 10}\n- test_panics\n",
		"[]",
		"",
		"~",
		"[{latancy: {}}]",
		"- &a {latency: {delay: 1s}}\n- *a\n",
		"[{latency: {delay: !!binary AA==}}]",
		"[{\"latency\": {\"delay\": \"fast\"}}, 5, [a], {a: 1, b: 2}]",
		"[{<<: {}}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := ParseFilters("body", data)
		if err != nil {
			checkBodyErrors(t, data, fs, err)
			return
		}
		text, err := marshalFilters(fs)
		if err != nil {
			t.Fatalf("marshalFilters: %v", err)
		}
		again, err := ParseFilters("again", text)
		if err != nil {
			t.Fatalf("written filters do not parse: %v\n%s", err, text)
		}
		if d := cmp.Diff(fs, again, sameConfig, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("round trip changed the filters (-first +second):\n%s\n%s", d, text)
		}
		if text2, err := marshalFilters(again); err != nil || !bytes.Equal(text, text2) {
			t.Fatalf("not stable (%v):\n%s\n---\n%s", err, text, text2)
		}
	})
}

// checkBodyErrors is checkErrors for a body named "body".
func checkBodyErrors(t *testing.T, data []byte, fs []Filter, err error) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 || fs != nil {
		t.Fatalf("error %v is not a non-empty Errors, or filters came with it", err)
	}
	lines := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) +
		bytes.Count(data, []byte("\u0085")) + bytes.Count(data, []byte("\u2028")) + bytes.Count(data, []byte("\u2029"))
	for i, e := range errs {
		if e.File != "body" || e.Line < 1 || e.Col < 1 || e.Line > lines || e.Msg == "" {
			t.Fatalf("error %d is badly placed (body has %d lines): %#v", i, lines, e)
		}
		if i > 0 && (errs[i-1].Line > e.Line || errs[i-1].Line == e.Line && errs[i-1].Col > e.Col) {
			t.Fatalf("errors out of order: %v before %v", errs[i-1], e)
		}
	}
}
