package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	_ "github.com/pierproxy/pier/filter/builtin"
)

// A full file parses to exactly the configuration it says, with positions.
func TestParseFull(t *testing.T) {
	doc := `grace_period: 10s
routes:
  - name: smtp
    listen: [":9090", "[::1]:9091"]
    upstreams:
      - address: mail1.internal:25
      - address: 10.0.0.2:25
    connect_timeout: 2s
    idle_timeout: 1h
    half_close_timeout: 30s
    max_connections: 10000
  - name: db.primary-1
    listen:
      - 127.0.0.1:0
      - localhost:5432
    upstreams: [{address: "db:5432"}, {address: "[fd00::1]:5432"}]
    idle_timeout: 0s
    half_close_timeout: 0
`
	cfg, err := Parse("pier.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:        "pier.yaml",
		GracePeriod: 10 * time.Second,
		Routes: []Route{{
			Name:             "smtp",
			Listen:           []string{":9090", "[::1]:9091"},
			Upstreams:        []Upstream{{"mail1.internal:25", Pos{6, 9}}, {"10.0.0.2:25", Pos{7, 9}}},
			ConnectTimeout:   2 * time.Second,
			IdleTimeout:      time.Hour,
			HalfCloseTimeout: 30 * time.Second,
			MaxConnections:   10000,
			Pos:              Pos{3, 5},
		}, {
			Name:             "db.primary-1",
			Listen:           []string{"127.0.0.1:0", "localhost:5432"},
			Upstreams:        []Upstream{{"db:5432", Pos{16, 17}}, {"[fd00::1]:5432", Pos{16, 39}}},
			ConnectTimeout:   DefaultConnectTimeout,
			IdleTimeout:      0,
			HalfCloseTimeout: 0,
			Pos:              Pos{12, 5},
		}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("config differs (-want +got):\n%s", d)
	}
}

// Absent optional fields take their defaults; the caller never sees
// "absent".
func TestDefaultsApplied(t *testing.T) {
	cfg, err := Parse("f", []byte("routes: [{name: r, listen: [':1'], upstreams: [{address: 'h:1'}]}]"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:        "f",
		GracePeriod: DefaultGracePeriod,
		Routes: []Route{{
			Name:             "r",
			Listen:           []string{":1"},
			Upstreams:        []Upstream{{"h:1", Pos{1, 48}}},
			ConnectTimeout:   DefaultConnectTimeout,
			IdleTimeout:      DefaultIdleTimeout,
			HalfCloseTimeout: DefaultHalfCloseTimeout,
			MaxConnections:   0,
			Pos:              Pos{1, 10},
		}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("config differs (-want +got):\n%s", d)
	}
	if DefaultGracePeriod != 30*time.Second || DefaultConnectTimeout != 5*time.Second ||
		DefaultIdleTimeout != time.Hour || DefaultHalfCloseTimeout != time.Minute {
		t.Error("defaults differ from the documented 30s, 5s, 1h, 1m")
	}
}

// Aliases are followed; a route or list reused by alias is the same value.
func TestAliases(t *testing.T) {
	doc := `routes:
  - name: a
    listen: [":1"]
    upstreams: &pool [{address: "h1:1"}, {address: "h2:1"}]
    idle_timeout: &idle 10m
  - name: b
    listen: [":2"]
    upstreams: *pool
    idle_timeout: *idle
`
	cfg, err := Parse("f", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Routes[0], cfg.Routes[1]
	if d := cmp.Diff(a.Upstreams, b.Upstreams); d != "" || b.IdleTimeout != 10*time.Minute {
		t.Errorf("aliased values differ: %s %v", d, b.IdleTimeout)
	}
}

const good = `routes:
  - name: r
    listen: ["127.0.0.1:1"]
    upstreams: [{address: "h:1"}]
`

// route builds a one-route file from its listen and upstream lists and
// extra lines.
func route(listen, upstreams string, extra ...string) string {
	s := "routes:\n  - name: r\n    listen: " + listen + "\n    upstreams: " + upstreams + "\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

// errorCases is every kind of error, each in a file with only that error,
// reported at the line and column of the node at fault. They seed the
// fuzzer too.
var errorCases = []struct {
	name, doc string
	line, col int
	msg       string
}{
	// The YAML layer.
	{"syntax", "routes: [\n", 2, 1, "yaml: did not find expected node content"},
	{"tab indent", "routes:\n\t- name: r\n", 2, 1, "cannot start any token"},
	{"bad utf-8", "routes:\n  - name: \xff\n", 2, 11, "invalid leading UTF-8 octet"},
	{"control character", "routes: \x01\n", 1, 9, "control characters are not allowed"},
	{"unknown anchor", "routes: *nope\n", 1, 9, "unknown anchor 'nope'"},
	{"second document", good + "---\n" + good, 5, 1, "a second YAML document"},
	{"custom tag", route(`[":1"]`, `[{address: "h:1"}]`, "idle_timeout: !env IDLE"), 5, 19, "tag !env is not supported"},
	{"merge key", "routes:\n  - &a {name: a, listen: [':1'], upstreams: [{address: 'h:1'}]}\n  - <<: *a\n    name: b\n", 3, 5, "route: merge keys (<<) are not supported; write the fields out"},

	// No routes.
	{"empty file", "", 1, 1, "no routes: the file is empty"},
	{"only comments", "# nothing here\n\n# yet\n", 1, 1, "no routes: the file is empty"},
	{"null document", "~\n", 1, 1, "no routes: the file is empty"},
	{"only document start", "---\n", 2, 1, "no routes: the file is empty"},
	{"no routes field", "grace_period: 1s\n", 1, 1, `missing required field "routes"`},
	{"empty routes", "routes: []\n", 1, 9, "routes: no routes: need at least one"},

	// Wrong shapes.
	{"file is a list", "- a\n", 1, 1, "config: want a mapping, got a list"},
	{"file is a string", "hello\n", 1, 1, `config: want a mapping, got "hello"`},
	{"routes is a mapping", "routes: {name: r}\n", 1, 9, "routes: want a list, got a mapping"},
	{"routes is null", "routes:\n", 1, 8, "routes: want a list, got nothing"},
	{"route is a string", "routes: [r]\n", 1, 10, `route: want a mapping, got "r"`},
	{"key is a list", "? [a]\n: 1\n" + good, 1, 3, "config: want a field name, got a list"},
	{"listen is a string", route(`":1"`, `[{address: "h:1"}]`), 3, 13, `listen: want a list, got ":1"`},
	{"listen item is a mapping", route(`[{a: 1}]`, `[{address: "h:1"}]`), 3, 14, "listen: want a value, got a mapping"},
	{"listen item is null", route(`[~]`, `[{address: "h:1"}]`), 3, 14, "listen: want a value, got nothing"},
	{"upstreams is a mapping", route(`[":1"]`, `{address: "h:1"}`), 4, 16, "upstreams: want a list, got a mapping"},
	{"upstream is a string", route(`[":1"]`, `["h:1"]`), 4, 17, `upstream: want a mapping like {address: "h:1"}`},
	{"address is a list", route(`[":1"]`, `[{address: [h, 1]}]`), 4, 27, "address: want a value, got a list"},
	{"grace period is a list", "grace_period: [1]\n" + good, 1, 15, "grace_period: want a value, got a list"},
	{"name is null", "routes:\n  - name:\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 10, "name: want a value, got nothing"},

	// Unknown and duplicate keys, at every level.
	{"unknown top field", good + "extra: 1\n", 5, 1, `config: unknown field "extra" (known: grace_period, routes)`},
	{"unknown route field", good + "    colour: red\n", 5, 5, `route: unknown field "colour" (known: name, listen,`},
	{"unknown upstream field", route(`[":1"]`, `[{address: "h:1", weight: 2}]`), 4, 34, `upstream: unknown field "weight" (known: address)`},
	{"duplicate top key", good + "routes: []\n", 5, 1, `duplicate key "routes" (first at line 1)`},
	{"duplicate route key", good + "    name: s\n", 5, 5, `duplicate key "name" (first at line 2)`},
	{"duplicate upstream key", route(`[":1"]`, `[{address: "h:1", address: "h:2"}]`), 4, 34, `duplicate key "address" (first at line 4)`},

	// Missing required fields, at the mapping that lacks them.
	{"missing name", "routes:\n  - listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 5, `route: missing required field "name"`},
	{"missing listen", "routes:\n  - name: r\n    upstreams: [{address: 'h:1'}]\n", 2, 5, `route: missing required field "listen"`},
	{"missing upstreams", "routes:\n  - name: r\n    listen: [':1']\n", 2, 5, `route: missing required field "upstreams"`},
	{"missing address", route(`[":1"]`, `[{}]`), 4, 17, `upstream: missing required field "address"`},
	{"empty listen", route(`[]`, `[{address: "h:1"}]`), 3, 13, "listen: need at least one address"},
	{"empty upstreams", route(`[":1"]`, `[]`), 4, 16, "upstreams: need at least one upstream"},

	// Names.
	{"name with a space", "routes:\n  - name: Bad Name\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 11, `name: "Bad Name" is not a valid route name`},
	{"name starts with a dash", "routes:\n  - name: -r\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 11, "not a valid route name"},
	{"name too long", "routes:\n  - name: " + strings.Repeat("a", 65) + "\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 11, "at most 64 characters"},
	{"duplicate route name", good + "  - name: r\n    listen: [':2']\n    upstreams: [{address: 'h:1'}]\n", 5, 11, `name: route "r" is already defined at line 2`},

	// Durations and numbers.
	{"duration in words", route(`[":1"]`, `[{address: "h:1"}]`, "connect_timeout: 5 seconds"), 5, 22, `connect_timeout: "5 seconds" is not a duration (like 300ms`},
	{"duration not a duration", route(`[":1"]`, `[{address: "h:1"}]`, "idle_timeout: soon"), 5, 19, `idle_timeout: "soon" is not a duration`},
	{"duration without unit", route(`[":1"]`, `[{address: "h:1"}]`, "idle_timeout: 30"), 5, 19, `idle_timeout: "30" has no unit: write it like 30s`},
	{"negative duration", route(`[":1"]`, `[{address: "h:1"}]`, "half_close_timeout: -1s"), 5, 25, `half_close_timeout: "-1s" is negative`},
	{"zero connect timeout", route(`[":1"]`, `[{address: "h:1"}]`, "connect_timeout: 0s"), 5, 22, "connect_timeout: must be more than 0"},
	{"zero grace period", "grace_period: 0s\n" + good, 1, 15, "grace_period: must be more than 0"},
	{"max not a number", route(`[":1"]`, `[{address: "h:1"}]`, "max_connections: lots"), 5, 22, `max_connections: "lots" is not a whole number`},
	{"max negative", route(`[":1"]`, `[{address: "h:1"}]`, "max_connections: -3"), 5, 22, "not a whole number of 0 or more"},
	{"max fraction", route(`[":1"]`, `[{address: "h:1"}]`, "max_connections: 1.5"), 5, 22, "not a whole number"},
	{"max too large", route(`[":1"]`, `[{address: "h:1"}]`, "max_connections: 99999999999999999999"), 5, 22, "is too large"},

	// Listen addresses.
	{"listen without port", route(`["127.0.0.1"]`, `[{address: "h:1"}]`), 3, 14, `listen: "127.0.0.1": missing port: want host:port`},
	{"listen port only", route(`[9090]`, `[{address: "h:1"}]`), 3, 14, `listen: "9090": missing host: for every address on port 9090, write ":9090"`},
	{"listen empty port", route(`["127.0.0.1:"]`, `[{address: "h:1"}]`), 3, 14, `port "" is not a number from 0 to 65535`},
	{"listen port too large", route(`[":70000"]`, `[{address: "h:1"}]`), 3, 14, `port "70000" is not a number from 0 to 65535`},
	{"listen port signed", route(`[":+80"]`, `[{address: "h:1"}]`), 3, 14, `port "+80" is not a number`},
	{"listen port by name", route(`[":http"]`, `[{address: "h:1"}]`), 3, 14, `port "http" is not a number`},
	{"listen host name", route(`["example.com:1"]`, `[{address: "h:1"}]`), 3, 14, "the host must be empty (every address), an IP address or localhost"},
	{"listen IPv6 without brackets", route(`["::1:80"]`, `[{address: "h:1"}]`), 3, 14, "an IPv6 address goes in brackets"},
	{"listen IPv4 in brackets", route(`["[127.0.0.1]:80"]`, `[{address: "h:1"}]`), 3, 14, "brackets are only for IPv6 addresses"},

	// Upstream addresses.
	{"upstream without port", route(`[":1"]`, `[{address: "h"}]`), 4, 27, `address: "h": missing port: want host:port`},
	{"upstream without host", route(`[":1"]`, `[{address: ":25"}]`), 4, 27, `address: ":25": missing host`},
	{"upstream port zero", route(`[":1"]`, `[{address: "h:0"}]`), 4, 27, `port "0" is not a number from 1 to 65535`},
	{"upstream port too large", route(`[":1"]`, `[{address: "h:65536"}]`), 4, 27, "from 1 to 65535"},
	{"upstream host with space", route(`[":1"]`, `[{address: "a b:1"}]`), 4, 27, `"a b" is neither an IP address nor a host name`},
	{"upstream bad IPv4", route(`[":1"]`, `[{address: "10.0.0.256:25"}]`), 4, 27, `"10.0.0.256" is not a valid IP address`},
	{"upstream IPv6 without brackets", route(`[":1"]`, `[{address: "fd00::1:25"}]`), 4, 27, "an IPv6 address goes in brackets"},

	// Listen addresses that would collide at bind time.
	{"same address in two routes", good + "  - name: s\n    listen: ['127.0.0.1:1']\n    upstreams: [{address: 'h:1'}]\n", 6, 14, `listen: "127.0.0.1:1" overlaps "127.0.0.1:1" of route "r" (line 3)`},
	{"wildcard after address", good + "  - name: s\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 6, 14, `listen: ":1" overlaps "127.0.0.1:1" of route "r"`},
	{"address after wildcard", route(`["0.0.0.0:1"]`, `[{address: "h:1"}]`) + "  - name: s\n    listen: ['[::1]:1']\n    upstreams: [{address: 'h:1'}]\n", 6, 14, `listen: "[::1]:1" overlaps "0.0.0.0:1" of route "r"`},
	{"localhost overlaps 127.0.0.1", good + "  - name: s\n    listen: ['localhost:1']\n    upstreams: [{address: 'h:1'}]\n", 6, 14, `listen: "localhost:1" overlaps "127.0.0.1:1"`},
	{"same address twice in a route", route(`[":1", ":1"]`, `[{address: "h:1"}]`), 3, 20, `listen: ":1" is listed twice in this route (first at line 3)`},
	{"overlap within a route", route(`["[::1]:1", "localhost:1"]`, `[{address: "h:1"}]`), 3, 25, `listen: "localhost:1" overlaps "[::1]:1" (line 3) in this route`},
}

// Every kind of error is reported alone, at the line and column of the
// node at fault, with the file's name.
func TestErrorPositions(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("f.yaml", []byte(tc.doc))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("got %v, want Errors", err)
			}
			if cfg != nil {
				t.Error("a config came back with the errors")
			}
			e := errs[0]
			if e.File != "f.yaml" || e.Line != tc.line || e.Col != tc.col || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %v\nwant f.yaml:%d:%d: ...%s...", e, tc.line, tc.col, tc.msg)
			}
			if len(errs) > 1 {
				t.Errorf("%d errors, want only the one:\n%v", len(errs), err)
			}
		})
	}
}

// Every error in a file is reported, in file order, whatever order the
// checks find them in.
func TestAllErrorsReported(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // "line:col: message fragment"
	}{{
		name: "one route, many faults",
		doc: `routes:
  - name: r
    name: s
    listen: [':x']
    upstreams: [{address: 'h'}]
    idle_timeout: never
    bogus: 1
grace_period: 0s
`,
		want: []string{
			`3:5: duplicate key "name"`,
			`4:14: listen: ":x": port "x"`,
			`5:27: address: "h": missing port`,
			`6:19: idle_timeout: "never" is not a duration`,
			`7:5: route: unknown field "bogus"`,
			`8:15: grace_period: must be more than 0`,
		},
	}, {
		name: "faults across routes",
		doc: `routes:
  - name: a
    listen: [":80"]
    upstreams: []
  - name: a
    listen: ["127.0.0.1:80", "[::1]:70000"]
    upstreams: [{address: "db:5432"}]
  - listen: ["localhost:81"]
    upstreams: [{address: "db:5432"}]
`,
		want: []string{
			`4:16: upstreams: need at least one upstream`,
			`5:11: name: route "a" is already defined at line 2`,
			`6:14: listen: "127.0.0.1:80" overlaps ":80" of route "a" (line 3)`,
			`6:30: listen: "[::1]:70000": port "70000" is not a number from 0 to 65535`,
			`8:5: route: missing required field "name"`,
		},
	}, {
		name: "a fault in an aliased node is reported once",
		doc: `routes:
  - name: a
    listen: [":1"]
    upstreams: &u [{address: "nohost"}]
  - name: b
    listen: [":2"]
    upstreams: *u
`,
		want: []string{`4:30: address: "nohost": missing port`},
	}, {
		name: "a duplicate key where the schema does not look",
		doc:  route(`[":1"]`, `[{address: "h:1"}]`, "max_connections: {a: 1, a: 2}"),
		want: []string{`5:22: max_connections: want a value, got a mapping`, `5:29: duplicate key "a" (first at line 5)`},
	}, {
		name: "a collision with a route that has no valid name",
		doc:  "routes:\n  - name: Bad\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n  - name: s\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n",
		want: []string{`2:11: name: "Bad" is not a valid route name`, `6:14: listen: ":1" overlaps ":1" of an earlier route (line 3)`},
	}, {
		name: "a second document and a fault in the first",
		doc:  good + "    extra: 1\n---\nroutes: []\n",
		want: []string{`5:5: route: unknown field "extra"`, `6:1: a second YAML document`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f", []byte(tc.doc))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want Errors", err)
			}
			var got []string
			for i, e := range errs {
				s := fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
				if i < len(tc.want) && strings.HasPrefix(s, tc.want[i]) {
					s = tc.want[i]
				}
				got = append(got, s)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("errors differ (-want +got):\n%s", d)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(errs) {
				t.Errorf("Error() has %d lines for %d errors", n, len(errs))
			}
		})
	}
}

// overlaps is the rule for listen addresses, stated pair by pair: the
// oracle for the parser's per-port bookkeeping.
func overlaps(a, b string) bool {
	la, err1 := parseListen(a)
	lb, err2 := parseListen(b)
	if err1 != nil || err2 != nil || la.port == 0 || la.port != lb.port {
		return false
	}
	if la.ips == nil || lb.ips == nil {
		return true
	}
	for _, x := range la.ips {
		for _, y := range lb.ips {
			if x == y {
				return true
			}
		}
	}
	return false
}

// Two listen addresses collide exactly when the rule says, in either
// order, across routes and within one.
func TestListenCollisions(t *testing.T) {
	addrs := []string{
		":80", "0.0.0.0:80", "[::]:80", "[::ffff:0.0.0.0]:80",
		"127.0.0.1:80", "[::ffff:127.0.0.1]:80", "[::1]:80", "localhost:80",
		"10.0.0.1:80", "[fe80::1%eth0]:80", "127.0.0.1:0080",
		":81", "127.0.0.1:81", ":0", "127.0.0.1:0", "localhost:0",
	}
	mustCollide := map[[2]string]bool{
		{":80", "127.0.0.1:80"}: true, {"localhost:80", "[::1]:80"}: true,
		{"127.0.0.1:80", "[::ffff:127.0.0.1]:80"}: true, {"127.0.0.1:80", "127.0.0.1:0080"}: true,
		{"[::]:80", "10.0.0.1:80"}: true, {":0", ":0"}: false, {"127.0.0.1:80", "[::1]:80"}: false,
		{":80", ":81"}: false,
	}
	for pair, want := range mustCollide {
		if got := overlaps(pair[0], pair[1]); got != want {
			t.Errorf("oracle: overlaps(%q, %q) = %v, want %v", pair[0], pair[1], got, want)
		}
	}
	for _, a := range addrs {
		for _, b := range addrs {
			want := overlaps(a, b)
			two := fmt.Sprintf("routes:\n- {name: a, listen: [%q], upstreams: [{address: 'h:1'}]}\n- {name: b, listen: [%q], upstreams: [{address: 'h:1'}]}\n", a, b)
			one := fmt.Sprintf("routes:\n- {name: a, listen: [%q, %q], upstreams: [{address: 'h:1'}]}\n", a, b)
			for _, doc := range []string{two, one} {
				_, err := Parse("f", []byte(doc))
				if got := err != nil; got != want {
					t.Errorf("%q then %q: collision %v, want %v (%v)", a, b, got, want, err)
				}
			}
		}
	}
}

// A file whose aliases would expand to millions of values is refused
// quickly, not walked.
func TestAliasExpansionBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("x: &u [" + strings.Repeat(`{address: "h:1"}, `, 2000) + "]\nroutes:\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "  - {name: r%d, listen: [':0'], upstreams: *u}\n", i)
	}
	start := time.Now()
	_, err := Parse("f", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too large to check") {
		t.Fatalf("got %.300v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// A file with hundreds of errors reports the first maxErrors and counts
// the rest; one with thousands stops being checked, so a large broken file
// costs no more than a large good one.
func TestErrorsCapped(t *testing.T) {
	for _, tc := range []struct {
		routes int
		last   string
	}{
		// Each route has two bad addresses and, after the first, a
		// repeated name: 2 errors on line 2, then 3 per line, so the 101st
		// is the last on line 35.
		{100, "35:50: too many errors: 199 more not shown"},
		{2000, "35:50: too many errors: the rest of the file was not checked"},
	} {
		doc := "routes:\n" + strings.Repeat("  - {name: r, listen: [x], upstreams: [{address: y}]}\n", tc.routes)
		_, err := Parse("f", []byte(doc))
		var errs Errors
		if !errors.As(err, &errs) {
			t.Fatal(err)
		}
		last := errs[len(errs)-1]
		if got := fmt.Sprintf("%d:%d: %s", last.Line, last.Col, last.Msg); len(errs) != maxErrors+1 || got != tc.last {
			t.Errorf("%d routes: %d errors, last %q, want %d, last %q", tc.routes, len(errs), got, maxErrors+1, tc.last)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse("dir/pier.yaml", []byte(route(`[":x"]`, `[{address: "h:1"}]`, "bogus: 1")))
	want := "dir/pier.yaml:3:14: listen: \":x\": port \"x\" is not a number from 0 to 65535\n" +
		"dir/pier.yaml:5:5: route: unknown field \"bogus\" (known: name, listen, upstreams, connect_timeout, idle_timeout, half_close_timeout, max_connections, filters)"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 {
		t.Errorf("errors.As(*Error) = %v", e)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pier.yaml")
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil || cfg.File != path {
		t.Fatalf("Load: %v %v", cfg, err)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	var errs Errors
	if err == nil || !strings.Contains(err.Error(), missing) || errors.As(err, &errs) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}

	if err := os.WriteFile(path, []byte("routes: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.As(err, &errs) || !strings.HasPrefix(err.Error(), path+":2:1: ") {
		t.Errorf("bad file: %v", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxFileSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), big+": larger than 1 MiB") {
		t.Errorf("big file: %v", err)
	}

	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("directory: %v", err)
	}
}

// Every YAML example in the README is a configuration pier loads.
func TestREADMEExamplesLoad(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(string(readme))
	if len(blocks) == 0 {
		t.Fatal("README has no yaml examples")
	}
	for i, b := range blocks {
		if _, err := Parse(fmt.Sprintf("README.md example %d", i+1), []byte(b)); err != nil {
			t.Errorf("README example %d does not load:\n%v\n%s", i+1, err, b)
		}
	}
}

// The README's field table lists every field of the schema, so a new
// field is documented where users look.
func TestREADMEDocumentsEveryField(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range configFields {
		want = append(want, "| `"+f.key+"` |")
	}
	for _, f := range routeFields {
		want = append(want, "| `routes[]."+f.key+"` |")
	}
	for _, f := range upstreamFields {
		want = append(want, "| `routes[].upstreams[]."+f.key+"` |")
	}
	for _, w := range want {
		if !strings.Contains(string(readme), w) {
			t.Errorf("README's field table has no row %s", w)
		}
	}
}

func yamlBlocks(md string) []string {
	var out []string
	for {
		_, rest, ok := strings.Cut(md, "```yaml\n")
		if !ok {
			return out
		}
		block, after, ok := strings.Cut(rest, "```")
		if !ok {
			return out
		}
		out = append(out, block)
		md = after
	}
}
