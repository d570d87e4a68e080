package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	_ "github.com/pierproxy/pier/filter/builtin"
	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
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
		Resolver:    defaultResolver,
		Routes: []Route{{
			Name:   "smtp",
			Listen: []string{":9090", "[::1]:9091"},
			Upstreams: []Upstream{
				{Address: "mail1.internal:25", Weight: 1, Pos: Pos{6, 9, ""}},
				{Address: "10.0.0.2:25", Weight: 1, Pos: Pos{7, 9, ""}},
			},
			Protocol:         TCP,
			Balance:          "round_robin",
			PassiveCheck:     defaultPassive,
			Retries:          DefaultRetries,
			ConnectTimeout:   2 * time.Second,
			ConnectBudget:    6 * time.Second,
			WhenAllDown:      "fail",
			IdleTimeout:      time.Hour,
			HalfCloseTimeout: 30 * time.Second,
			MaxConnections:   10000,
			PeekTimeout:      DefaultPeekTimeout,
			HandshakeTimeout: DefaultHandshakeTimeout,
			Pos:              Pos{3, 5, ""},
		}, {
			Name:   "db.primary-1",
			Listen: []string{"127.0.0.1:0", "localhost:5432"},
			Upstreams: []Upstream{
				{Address: "db:5432", Weight: 1, Pos: Pos{16, 17, ""}},
				{Address: "[fd00::1]:5432", Weight: 1, Pos: Pos{16, 39, ""}},
			},
			Protocol:         TCP,
			Balance:          "round_robin",
			PassiveCheck:     defaultPassive,
			Retries:          DefaultRetries,
			ConnectTimeout:   DefaultConnectTimeout,
			ConnectBudget:    15 * time.Second,
			WhenAllDown:      "fail",
			IdleTimeout:      0,
			HalfCloseTimeout: 0,
			PeekTimeout:      DefaultPeekTimeout,
			HandshakeTimeout: DefaultHandshakeTimeout,
			Pos:              Pos{12, 5, ""},
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
		Resolver:    Resolver{Interval: DefaultResolveInterval, Timeout: DefaultResolveTimeout},
		Routes: []Route{{
			Name:        "r",
			Listen:      []string{":1"},
			Upstreams:   []Upstream{{Address: "h:1", Weight: 1, Pos: Pos{1, 48, ""}}},
			Protocol:    TCP,
			Balance:     "round_robin",
			HealthCheck: nil,
			PassiveCheck: PassiveCheck{
				Failures:   DefaultPassiveFailures,
				Backoff:    DefaultBackoff,
				MaxBackoff: DefaultMaxBackoff,
			},
			Retries:          DefaultRetries,
			ConnectTimeout:   DefaultConnectTimeout,
			ConnectBudget:    DefaultConnectTimeout * (DefaultRetries + 1),
			WhenAllDown:      "fail",
			IdleTimeout:      DefaultIdleTimeout,
			HalfCloseTimeout: DefaultHalfCloseTimeout,
			MaxConnections:   0,
			PeekTimeout:      DefaultPeekTimeout,
			HandshakeTimeout: DefaultHandshakeTimeout,
			Pos:              Pos{1, 10, ""},
		}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("config differs (-want +got):\n%s", d)
	}
	if DefaultGracePeriod != 30*time.Second || DefaultConnectTimeout != 5*time.Second ||
		DefaultIdleTimeout != time.Hour || DefaultHalfCloseTimeout != time.Minute {
		t.Error("defaults differ from the documented 30s, 5s, 1h, 1m")
	}
	if DefaultRetries != 2 || DefaultResolveInterval != 30*time.Second || DefaultResolveTimeout != 5*time.Second ||
		DefaultCheckInterval != 2*time.Second || DefaultCheckTimeout != time.Second || DefaultRise != 2 || DefaultFall != 3 ||
		DefaultPassiveFailures != 3 || DefaultBackoff != 2*time.Second || DefaultMaxBackoff != time.Minute {
		t.Error("pool defaults differ from the documented 2, 30s, 5s, 2s, 1s, 2, 3, 3, 2s, 1m")
	}
}

var (
	defaultResolver = Resolver{Interval: DefaultResolveInterval, Timeout: DefaultResolveTimeout}
	defaultPassive  = PassiveCheck{Failures: DefaultPassiveFailures, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff}
)

// Every field of a pool parses to what it says; absent ones in a given
// mapping take their defaults, and an absent connect_budget covers every
// dial the route's retries allow.
func TestParsePool(t *testing.T) {
	doc := `resolver:
  servers: ["10.0.0.2", "10.0.0.3:5353", "fd00::53", "[fd00::54]", "[fd00::55]:53"]
  interval: 10s
  timeout: 2s
routes:
  - name: api
    listen: [":1"]
    upstreams:
      - {address: "10.0.0.1:80", weight: 5, max_connections: 100}
      - {srv: _http._tcp.api.internal}
      - {srv: _http._tcp.api2.internal., weight: 1000, drain: true}
      - {address: "spare:80", backup: true, drain: false}
    balance: hash
    health_check:
      interval: 5s
      timeout: 5s
      rise: 1
      fall: 100
      port: 8080
      send: "PING\r\n"
      expect: "+PONG"
    passive_check: {failures: 0, backoff: 1s, max_backoff: 1s}
    retries: 0
    connect_timeout: 1s
    connect_budget: 500ms
    when_all_down: try_all
  - name: bin
    listen: [":2"]
    upstreams: [{address: "h:1"}]
    health_check: {expect_regexp: '^HTTP/1\.[01] 200', send: !!binary AAEC/w==, port: 0}
    passive_check: {backoff: 5s}
    retries: 4
    connect_timeout: 3s
  - name: defaults
    listen: [":3"]
    upstreams: [{address: "h:1"}]
    health_check: {}
    passive_check: {}
`
	cfg, err := Parse("f", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:        "f",
		GracePeriod: DefaultGracePeriod,
		Resolver: Resolver{
			Servers:  []string{"10.0.0.2:53", "10.0.0.3:5353", "[fd00::53]:53", "[fd00::54]:53", "[fd00::55]:53"},
			Interval: 10 * time.Second,
			Timeout:  2 * time.Second,
		},
		Routes: []Route{{
			Name:   "api",
			Listen: []string{":1"},
			Upstreams: []Upstream{
				{Address: "10.0.0.1:80", Weight: 5, MaxConnections: 100, Pos: Pos{9, 9, ""}},
				{SRV: "_http._tcp.api.internal", Weight: 0, Pos: Pos{10, 9, ""}},
				{SRV: "_http._tcp.api2.internal.", Weight: 1000, Drain: true, Pos: Pos{11, 9, ""}},
				{Address: "spare:80", Weight: 1, Backup: true, Pos: Pos{12, 9, ""}},
			},
			Protocol: TCP,
			Balance:  "hash",
			HealthCheck: &HealthCheck{
				Interval:  5 * time.Second,
				Timeout:   5 * time.Second,
				Rise:      1,
				Fall:      100,
				Port:      8080,
				Send:      "PING\r\n",
				Expect:    "+PONG",
				SendProxy: "auto",
				Pos:       Pos{15, 7, ""},
			},
			PassiveCheck:     PassiveCheck{Failures: 0, Backoff: time.Second, MaxBackoff: time.Second},
			Retries:          0,
			ConnectTimeout:   time.Second,
			ConnectBudget:    500 * time.Millisecond,
			WhenAllDown:      "try_all",
			IdleTimeout:      DefaultIdleTimeout,
			HalfCloseTimeout: DefaultHalfCloseTimeout,
			PeekTimeout:      DefaultPeekTimeout,
			HandshakeTimeout: DefaultHandshakeTimeout,
			Pos:              Pos{6, 5, ""},
		}, {
			Name:      "bin",
			Listen:    []string{":2"},
			Upstreams: []Upstream{{Address: "h:1", Weight: 1, Pos: Pos{29, 17, ""}}},
			Protocol:  TCP,
			Balance:   "round_robin",
			HealthCheck: &HealthCheck{
				Interval:     DefaultCheckInterval,
				Timeout:      DefaultCheckTimeout,
				Rise:         DefaultRise,
				Fall:         DefaultFall,
				Send:         "\x00\x01\x02\xff",
				ExpectRegexp: `^HTTP/1\.[01] 200`,
				SendProxy:    "auto",
				Pos:          Pos{30, 19, ""},
			},
			PassiveCheck:     PassiveCheck{Failures: DefaultPassiveFailures, Backoff: 5 * time.Second, MaxBackoff: DefaultMaxBackoff},
			Retries:          4,
			ConnectTimeout:   3 * time.Second,
			ConnectBudget:    15 * time.Second,
			WhenAllDown:      "fail",
			IdleTimeout:      DefaultIdleTimeout,
			HalfCloseTimeout: DefaultHalfCloseTimeout,
			PeekTimeout:      DefaultPeekTimeout,
			HandshakeTimeout: DefaultHandshakeTimeout,
			Pos:              Pos{27, 5, ""},
		}, {
			Name:      "defaults",
			Listen:    []string{":3"},
			Upstreams: []Upstream{{Address: "h:1", Weight: 1, Pos: Pos{36, 17, ""}}},
			Protocol:  TCP,
			Balance:   "round_robin",
			HealthCheck: &HealthCheck{
				Interval:  DefaultCheckInterval,
				Timeout:   DefaultCheckTimeout,
				Rise:      DefaultRise,
				Fall:      DefaultFall,
				SendProxy: "auto",
				Pos:       Pos{37, 19, ""},
			},
			PassiveCheck:     defaultPassive,
			Retries:          DefaultRetries,
			ConnectTimeout:   DefaultConnectTimeout,
			ConnectBudget:    15 * time.Second,
			WhenAllDown:      "fail",
			IdleTimeout:      DefaultIdleTimeout,
			HalfCloseTimeout: DefaultHalfCloseTimeout,
			PeekTimeout:      DefaultPeekTimeout,
			HandshakeTimeout: DefaultHandshakeTimeout,
			Pos:              Pos{34, 5, ""},
		}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("config differs (-want +got):\n%s", d)
	}
}

// Every member may be drained at once: that is how an operator empties a
// pool. Only "every member a backup" is refused, as no member would ever
// be primary.
func TestEveryMemberDrained(t *testing.T) {
	_, err := Parse("f", []byte(route(`[":1"]`, `[{address: "h:1", drain: true}, {srv: _a._tcp.b, drain: true, backup: true}]`)))
	if err != nil {
		t.Fatal(err)
	}
}

// A connect_budget worked out from a connect_timeout of years does not
// wrap around.
func TestConnectBudgetSaturates(t *testing.T) {
	cfg, err := Parse("f", []byte(route(`[":1"]`, `[{address: "h:1"}]`, "connect_timeout: 2000000h", "retries: 100")))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Routes[0].ConnectBudget; got != math.MaxInt64 {
		t.Errorf("connect_budget %v, want the largest duration", got)
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
	{"misspelt binary tag", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {send: !!bianry UElORw==}"), 5, 26, "tag !!bianry is not supported: a value may be tagged only !!str, !!int, !!bool, !!float, !!null, !!binary, !!map, !!seq"},
	{"python object tag", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: !!python/object:os.system {}"), 5, 19, "tag !!python/object:os.system is not supported"},
	{"python tag on a scalar", route(`[":1"]`, `[{address: !!python/str "h:1"}]`), 4, 27, "tag !!python/str is not supported"},
	{"timestamp tag written out", route(`[":1"]`, `[{address: "h:1"}]`, "idle_timeout: !!timestamp 2001-12-14"), 5, 19, "tag !!timestamp is not supported"},
	{"verbatim custom tag", route(`[":1"]`, `[{address: "h:1"}]`, "balance: !<tag:example.com,2000:x> hash"), 5, 14, "tag tag:example.com,2000:x is not supported"},
	{"tag on a list", route(`!!set [":1"]`, `[{address: "h:1"}]`), 3, 13, "tag !!set is not supported"},
	{"binary where text is wanted", route(`[":1"]`, `[{address: !!binary aDox}]`), 4, 27, "address: !!binary is only for bytes (health_check send and expect)"},
	{"binary filter option", route(`[":1"]`, `[{address: "h:1"}]`, "filters: [dump: {format: !!binary aGV4}]"), 5, 30, "dump: format: !!binary is only for bytes"},
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
	{"listen is a mapping", route(`{a: 1}`, `[{address: "h:1"}]`), 3, 13, "listen: want a list, got a mapping"},
	{"listen alone without host", route(`9090`, `[{address: "h:1"}]`), 3, 13, `listen: "9090": missing host: for every address on port 9090, write ":9090"`},
	{"listen item is a mapping", route(`[{a: 1}]`, `[{address: "h:1"}]`), 3, 14, "listen: want a value, got a mapping"},
	{"listen item is null", route(`[~]`, `[{address: "h:1"}]`), 3, 14, "listen: want a value, got nothing"},
	{"upstreams is a mapping", route(`[":1"]`, `{address: "h:1"}`), 4, 16, "upstreams: want a list, got a mapping"},
	{"upstream is a string", route(`[":1"]`, `["h:1"]`), 4, 17, `upstream: want a mapping like {address: "h:1"}`},
	{"address is a list", route(`[":1"]`, `[{address: [h, 1]}]`), 4, 27, "address: want a value, got a list"},
	{"grace period is a list", "grace_period: [1]\n" + good, 1, 15, "grace_period: want a value, got a list"},
	{"name is null", "routes:\n  - name:\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 10, "name: want a value, got nothing"},

	// Unknown and duplicate keys, at every level.
	{"unknown top field", good + "extra: 1\n", 5, 1, `config: unknown field "extra" (known: grace_period, routes, resolver, admin, toxiproxy, allow, deny, limits)`},
	{"unknown route field", good + "    colour: red\n", 5, 5, `route: unknown field "colour" (known: name, listen,`},
	{"unknown upstream field", route(`[":1"]`, `[{address: "h:1", colour: red}]`), 4, 34, `upstream: unknown field "colour" (known: address, srv, weight, backup, max_connections, drain, send_proxy, upstream_tls)`},
	{"unknown resolver field", "resolver: {port: 53}\n" + good, 1, 12, `resolver: unknown field "port" (known: servers, interval, timeout)`},
	{"unknown health check field", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {path: /}"), 5, 20, `health_check: unknown field "path" (known: interval, timeout, rise, fall, port, send, expect, expect_regexp, send_proxy, tls)`},
	{"unknown passive check field", route(`[":1"]`, `[{address: "h:1"}]`, "passive_check: {limit: 1}"), 5, 21, `passive_check: unknown field "limit" (known: failures, backoff, max_backoff)`},
	{"duplicate top key", good + "routes: []\n", 5, 1, `duplicate key "routes" (first at line 1)`},
	{"duplicate route key", good + "    name: s\n", 5, 5, `duplicate key "name" (first at line 2)`},
	{"duplicate upstream key", route(`[":1"]`, `[{address: "h:1", address: "h:2"}]`), 4, 34, `duplicate key "address" (first at line 4)`},

	// Missing required fields, at the mapping that lacks them.
	{"missing name", "routes:\n  - listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 5, `route: missing required field "name"`},
	{"missing listen", "routes:\n  - name: r\n    upstreams: [{address: 'h:1'}]\n", 2, 5, `route: missing required field "listen"`},
	{"missing upstreams", "routes:\n  - name: r\n    listen: [':1']\n", 2, 5, `route: missing required field "upstreams"`},
	{"missing address", route(`[":1"]`, `[{}]`), 4, 17, "upstream: needs address or srv"},
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

	// The resolver.
	{"resolver is a list", "resolver: [1]\n" + good, 1, 11, "resolver: want a mapping, got a list"},
	{"resolver is null", "resolver:\n" + good, 1, 10, "resolver: want a mapping, got nothing"},
	{"servers is a string", "resolver: {servers: 10.0.0.2}\n" + good, 1, 21, `servers: want a list, got "10.0.0.2"`},
	{"server is a name", "resolver: {servers: [dns.internal]}\n" + good, 1, 22, `servers: "dns.internal": "dns.internal" is not an IP address: a DNS server is given by its address`},
	{"server is a name with a port", "resolver: {servers: ['dns:53']}\n" + good, 1, 22, `servers: "dns:53": "dns" is not an IP address`},
	{"server port zero", "resolver: {servers: ['10.0.0.2:0']}\n" + good, 1, 22, `servers: "10.0.0.2:0": port "0" is not a number from 1 to 65535`},
	{"server IPv4 in brackets", "resolver: {servers: ['[10.0.0.2]']}\n" + good, 1, 22, "brackets are only for IPv6 addresses"},
	{"server is null", "resolver: {servers: [~]}\n" + good, 1, 22, "servers: want a value, got nothing"},
	{"resolve interval zero", "resolver: {interval: 0s}\n" + good, 1, 22, "interval: must be more than 0"},
	{"resolve timeout without unit", "resolver: {timeout: 5}\n" + good, 1, 21, `timeout: "5" has no unit`},

	// Route pool settings.
	{"unknown balance", route(`[":1"]`, `[{address: "h:1"}]`, "balance: rr"), 5, 14, `balance: "rr" is not one of round_robin, least_conn, random, hash`},
	{"unknown when_all_down", route(`[":1"]`, `[{address: "h:1"}]`, "when_all_down: wait"), 5, 20, `when_all_down: "wait" is not one of fail, try_all`},
	{"balance is a list", route(`[":1"]`, `[{address: "h:1"}]`, "balance: [hash]"), 5, 14, "balance: want a value, got a list"},
	{"retries negative", route(`[":1"]`, `[{address: "h:1"}]`, "retries: -1"), 5, 14, `retries: "-1" is not a whole number from 0 to 100`},
	{"retries too many", route(`[":1"]`, `[{address: "h:1"}]`, "retries: 101"), 5, 14, `retries: "101" is not a whole number from 0 to 100`},
	{"retries huge", route(`[":1"]`, `[{address: "h:1"}]`, "retries: 99999999999999999999"), 5, 14, "is not a whole number from 0 to 100"},
	{"zero connect budget", route(`[":1"]`, `[{address: "h:1"}]`, "connect_budget: 0s"), 5, 21, "connect_budget: must be more than 0"},

	// Upstream members.
	{"address and srv", route(`[":1"]`, `[{address: "h:1", srv: _a._tcp.b}]`), 4, 17, "upstream: give address or srv, not both"},
	{"neither address nor srv", route(`[":1"]`, `[{weight: 2}]`), 4, 17, "upstream: needs address or srv"},
	{"neither, in block style", route(`[":1"]`, "\n      - backup: false\n        drain: true"), 5, 9, "upstream: needs address or srv"},
	{"srv without underscores", route(`[":1"]`, `[{srv: "_a.b.c"}]`), 4, 23, `srv: "_a.b.c": not an SRV name: want _service._proto.name`},
	{"srv without a name", route(`[":1"]`, `[{srv: _a._tcp}]`), 4, 23, `srv: "_a._tcp": not an SRV name`},
	{"srv bare underscore", route(`[":1"]`, `[{srv: _._tcp.b}]`), 4, 23, `srv: "_._tcp.b": not an SRV name`},
	{"srv with a space", route(`[":1"]`, `[{srv: "_a._tcp.b c"}]`), 4, 23, "not an SRV name"},
	{"srv with a port", route(`[":1"]`, `[{srv: "_a._tcp.b:53"}]`), 4, 23, "an SRV name has no port: its records give the ports"},
	{"srv is a list", route(`[":1"]`, `[{srv: [a]}]`), 4, 23, "srv: want a value, got a list"},
	{"weight zero", route(`[":1"]`, `[{address: "h:1", weight: 0}]`), 4, 42, `weight: "0" is not a whole number from 1 to 1000`},
	{"weight too large", route(`[":1"]`, `[{srv: _a._tcp.b, weight: 1001}]`), 4, 42, `weight: "1001" is not a whole number from 1 to 1000`},
	{"weight fraction", route(`[":1"]`, `[{address: "h:1", weight: 1.5}]`), 4, 42, "is not a whole number from 1 to 1000"},
	{"backup yes", route(`[":1"]`, `[{address: "h:1", backup: yes}]`), 4, 42, `backup: "yes" is not true or false`},
	{"backup True", route(`[":1"]`, `[{address: "h:1", backup: True}]`), 4, 42, `backup: "True" is not true or false`},
	{"drain 1", route(`[":1"]`, `[{address: "h:1", drain: 1}]`), 4, 41, `drain: "1" is not true or false`},
	{"member max negative", route(`[":1"]`, `[{address: "h:1", max_connections: -1}]`), 4, 51, `max_connections: "-1" is not a whole number of 0 or more`},
	{"every upstream a backup", route(`[":1"]`, `[{address: "h:1", backup: true}, {srv: _a._tcp.b, backup: true}]`), 4, 16, "upstreams: every upstream is a backup: at least one must not be"},
	{"the only upstream a backup", route(`[":1"]`, "\n      - address: h:1\n        backup: true"), 5, 7, "upstreams: every upstream is a backup"},

	// Active health checks.
	{"health check is a duration", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: 5s"), 5, 19, `health_check: want a mapping, got "5s"`},
	{"health check is null", route(`[":1"]`, `[{address: "h:1"}]`, "health_check:"), 5, 18, "health_check: want a mapping, got nothing"},
	{"check interval zero", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {interval: 0s}"), 5, 30, "interval: must be more than 0"},
	{"check timeout over interval", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {interval: 1s, timeout: 2s}"), 5, 43, "health_check: timeout 2s is longer than interval 1s: a check must end before the next one starts"},
	{"default timeout over interval", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {interval: 500ms}"), 5, 30, "health_check: timeout 1s is longer than interval 500ms"},
	{"rise zero", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {rise: 0}"), 5, 26, `rise: "0" is not a whole number from 1 to 100`},
	{"fall too large", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {fall: 101}"), 5, 26, `fall: "101" is not a whole number from 1 to 100`},
	{"check port too large", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {port: 70000}"), 5, 26, `port: "70000" is not a number from 0 to 65535 (0: the member's own port)`},
	{"check port negative", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {port: -1}"), 5, 26, `port: "-1" is not a number from 0 to 65535`},
	{"send is a list", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {send: [a]}"), 5, 26, "send: want a value, got a list"},
	{"send not base64", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {send: !!binary '***'}"), 5, 26, "send: !!binary value is not base64"},
	{"expect too long", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {expect: "+strings.Repeat("a", 4097)+"}"), 5, 28, "expect: 4097 bytes, more than the 4096 a check reads"},
	{"expect and expect_regexp", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {expect: a, expect_regexp: b}"), 5, 46, "health_check: give expect or expect_regexp, not both"},
	{"bad expect_regexp", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {expect_regexp: '(a'}"), 5, 35, `expect_regexp: "(a" is not a Go regexp: missing closing ): "(a"`},

	// Passive checks.
	{"failures negative", route(`[":1"]`, `[{address: "h:1"}]`, "passive_check: {failures: -1}"), 5, 31, `failures: "-1" is not a whole number of 0 or more`},
	{"backoff zero", route(`[":1"]`, `[{address: "h:1"}]`, "passive_check: {backoff: 0s}"), 5, 30, "backoff: must be more than 0"},
	{"max_backoff under backoff", route(`[":1"]`, `[{address: "h:1"}]`, "passive_check: {backoff: 5s, max_backoff: 1s}"), 5, 47, "passive_check: max_backoff 1s is shorter than backoff 5s"},
	{"backoff over default max", route(`[":1"]`, `[{address: "h:1"}]`, "passive_check: {backoff: 2m}"), 5, 30, "passive_check: max_backoff 1m0s is shorter than backoff 2m0s"},
	{"passive check is a list", route(`[":1"]`, `[{address: "h:1"}]`, "passive_check: [3]"), 5, 20, "passive_check: want a mapping, got a list"},
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
		name: "an all-backup pool shared by alias is a fault of each route",
		doc: `routes:
  - name: a
    listen: [":1"]
    upstreams: &u [{address: "h:1", backup: true}]
  - name: b
    listen: [":2"]
    upstreams: *u
`,
		want: []string{
			`4:16: upstreams: every upstream is a backup`,
			`7:16: upstreams: every upstream is a backup`,
		},
	}, {
		name: "a member that does not parse is not judged a backup",
		doc:  route(`[":1"]`, `[{address: "h:1", backup: true}, {address: "h", backup: false}]`),
		want: []string{`4:59: address: "h": missing port`},
	}, {
		name: "pool faults across fields",
		doc: route(`[":1"]`, `[{address: "h:1", srv: "_x._tcp.y", weight: 0}]`,
			"health_check: {interval: 1s, timeout: 2s, expect: a, expect_regexp: b}",
			"passive_check: {backoff: 5s, max_backoff: 1s}",
			"balance: fair"),
		want: []string{
			`4:17: upstream: give address or srv, not both`,
			`4:60: weight: "0" is not a whole number from 1 to 1000`,
			`5:43: health_check: timeout 2s is longer than interval 1s`,
			`5:73: health_check: give expect or expect_regexp, not both`,
			`6:47: passive_check: max_backoff 1s is shorter than backoff 5s`,
			`7:14: balance: "fair" is not one of`,
		},
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
	// A walk of every alias would take minutes; the bound leaves room for
	// the race detector on a machine busy with other tests.
	if d := time.Since(start); d > 5*time.Second*slowdown {
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
		"dir/pier.yaml:5:5: route: unknown field \"bogus\" (known: name, listen, protocol, upstreams, balance, health_check, passive_check, retries, connect_timeout, connect_budget, when_all_down, idle_timeout, half_close_timeout, max_connections, responses, max_flows, filters, match, peek_timeout, proxy_protocol, send_proxy, allow, deny, limits, tls, upstream_tls, handshake_timeout)"
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
	// The TLS examples name their files: made here, in the directory
	// the examples are parsed from.
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	ca.Leaf(t, tlstest.ECDSA, "example.com").WriteTo(t, filepath.Join(dir, "example.com.crt"), filepath.Join(dir, "example.com.key"))
	ca.Leaf(t, tlstest.ECDSA).WriteTo(t, filepath.Join(dir, "pier.crt"), filepath.Join(dir, "pier.key"))
	pemCA, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "internal-ca.pem"), pemCA, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
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
	for _, f := range resolverFields {
		want = append(want, "| `resolver."+f.key+"` |")
	}
	for _, f := range healthCheckFields {
		want = append(want, "| `routes[].health_check."+f.key+"` |")
	}
	for _, f := range passiveCheckFields {
		want = append(want, "| `routes[].passive_check."+f.key+"` |")
	}
	for _, f := range adminFields {
		want = append(want, "| `admin."+f.key+"` |")
	}
	for _, f := range toxiproxyFields {
		want = append(want, "| `toxiproxy."+f.key+"` |")
	}
	for _, f := range matchFields {
		want = append(want, "| `routes[].match."+f.key+"` |")
	}
	for _, f := range proxyProtocolFields {
		want = append(want, "| `routes[].proxy_protocol."+f.key+"` |")
	}
	for _, scope := range []string{"", "routes[]."} {
		for _, f := range limitsFields {
			want = append(want, "| `"+scope+"limits."+f.key+"` |")
		}
	}
	for _, f := range rateFields {
		want = append(want, "| `limits.accept_rate."+f.key+"` |")
	}
	for _, f := range perClientFields {
		want = append(want, "| `limits.per_client."+f.key+"` |")
	}
	for _, f := range tlsServerFields {
		want = append(want, "| `routes[].tls."+f.key+"` |")
	}
	for _, f := range certPairFields {
		want = append(want, "| `routes[].tls.certificates[]."+f.key+"` |")
	}
	for _, f := range clientAuthFields {
		want = append(want, "| `routes[].tls.client_auth."+f.key+"` |")
	}
	for _, f := range upstreamTLSFields {
		want = append(want, "| `routes[].upstream_tls."+f.key+"` |")
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
