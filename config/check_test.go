package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pierproxy/pier/filter"
)

// A configuration that Load returned checks as it is: Check changes
// nothing in it, every field set and every position kept.
func TestCheckKeepsALoadedConfig(t *testing.T) {
	doc := `grace_period: 10s
resolver: {servers: ["127.0.0.1:5353"], interval: 10s, timeout: 2s}
routes:
  - name: smtp
    listen: [":9090", "[::1]:9091"]
    upstreams:
      - address: mail1.internal:25
        weight: 3
        max_connections: 10
      - {address: 10.0.0.2:25, backup: true, drain: true}
      - srv: _smtp._tcp.example.com
    balance: least_conn
    health_check: {interval: 3s, timeout: 1s, rise: 1, fall: 2, port: 26, send: "HELO\r\n", expect: "250"}
    passive_check: {failures: 0, backoff: 1s, max_backoff: 5s}
    retries: 0
    connect_timeout: 2s
    connect_budget: 3s
    when_all_down: try_all
    idle_timeout: 0s
    half_close_timeout: 0
    max_connections: 10000
    filters:
      - latency: {delay: 100ms}
      - reset: {after: 1s, clients: [10.0.0.0/8, 192.0.2.1]}
      - pass
admin: {listen: "[::1]:9901", token_file: testdata/admin-token}
toxiproxy: {listen: ":8474", allow_remote: true}
`
	cfg, err := Parse("pier.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Parse("pier.yaml", []byte(doc))
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("Check changed a loaded config (-loaded +checked):\n%s", d)
	}
}

// A Config built in code needs only names, listen addresses and upstreams:
// where a file refuses zero, zero takes the file's default; where zero
// means something, it is kept.
func TestCheckFillsDefaults(t *testing.T) {
	cfg := &Config{Routes: []Route{{
		Name:      "db",
		Listen:    []string{"127.0.0.1:0"},
		Upstreams: []Upstream{{Address: "127.0.0.1:5432"}},
		Filters:   []Filter{{Name: "pass"}},
	}}}
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	want := &Config{
		GracePeriod: DefaultGracePeriod,
		Resolver:    defaultResolver,
		Routes: []Route{{
			Name:             "db",
			Listen:           []string{"127.0.0.1:0"},
			Upstreams:        []Upstream{{Address: "127.0.0.1:5432", Weight: 1}},
			Protocol:         TCP,
			Balance:          "round_robin",
			PassiveCheck:     PassiveCheck{Failures: 0, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff},
			ConnectTimeout:   DefaultConnectTimeout,
			ConnectBudget:    DefaultConnectTimeout,
			WhenAllDown:      "fail",
			Filters:          []Filter{{Name: "pass"}},
			PeekTimeout:      DefaultPeekTimeout,
			HandshakeTimeout: DefaultHandshakeTimeout,
		}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}

// What a file refuses, Check refuses, in the file's words, naming the
// field at fault.
func TestCheckRefusesWhatAFileRefuses(t *testing.T) {
	route := func(change func(*Route)) *Config {
		r := Route{Name: "db", Listen: []string{"127.0.0.1:0"}, Upstreams: []Upstream{{Address: "127.0.0.1:5432"}}}
		change(&r)
		return &Config{Routes: []Route{r}}
	}
	for _, c := range []struct {
		name string
		cfg  *Config
		want string
	}{
		{"nil", nil, "the config: nil"},
		{"no routes", &Config{}, "the config: routes: "},
		{"bad name", route(func(r *Route) { r.Name = "Bad Name" }), `route "Bad Name": name: `},
		{"listen without host", route(func(r *Route) { r.Listen = []string{"9090"} }), `route "db": listen: "9090": missing host`},
		{"bad host", route(func(r *Route) { r.Upstreams[0].Address = "bad_host!:80" }), `route "db": upstreams[0]: address: `},
		{"port out of range", route(func(r *Route) { r.Upstreams[0].Address = "127.0.0.1:99999" }), `route "db": upstreams[0]: address: `},
		{"retries", route(func(r *Route) { r.Retries = 1000 }), `route "db": retries: `},
		{"negative max", route(func(r *Route) { r.MaxConnections = -5 }), `route "db": max_connections: `},
		{"negative timeout", route(func(r *Route) { r.IdleTimeout = -time.Second }), `route "db": idle_timeout: `},
		{"unknown filter", route(func(r *Route) { r.Filters = []Filter{{Name: "nope"}} }), `route "db": filters[0]: filter: unknown filter "nope"`},
		{"bad filter option", route(func(r *Route) {
			r.Filters = []Filter{{Name: "latency", Options: map[string]filter.Value{"delay": {Text: "fast"}}}}
		}), `route "db": filters[0]: latency: delay: "fast" is not a duration`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(c.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

// A Config built in code has no file lines: an error about an earlier
// route names it by its place, never by an invented line number.
func TestCheckNamesEarlierRoutesByPlace(t *testing.T) {
	r := func(name, listen string) Route {
		return Route{Name: name, Listen: []string{listen}, Upstreams: []Upstream{{Address: "127.0.0.1:5432"}}}
	}
	for _, c := range []struct {
		name   string
		routes []Route
		want   string
	}{
		{"same name", []Route{r("db", "127.0.0.1:1"), r("db", "127.0.0.1:2")},
			`routes[1]: name: route "db" is already defined as routes[0]`},
		{"listens overlap", []Route{r("db", ":1"), r("web", "127.0.0.1:1")},
			`route "web": listen: "127.0.0.1:1" overlaps ":1" of route "db"; write the same address in both routes, each with a match, to share it`},
		{"listed twice", []Route{{Name: "db", Listen: []string{":1", ":1"}, Upstreams: []Upstream{{Address: "127.0.0.1:5432"}}}},
			`route "db": listen: ":1" is listed twice in this route`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(&Config{Routes: c.routes})
			if err == nil || err.Error() != c.want {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

// From a command line too: two listens that overlap say so without a line.
func TestFromCommandLineOverlapWithoutLines(t *testing.T) {
	_, err := FromCommandLine("forward", []Setting{
		{Key: "listen", Text: ":9090", Place: "argument 1"},
		{Key: "listen", Text: "127.0.0.1:9090", Place: "flag -listen"},
		{Key: "upstream", Text: "127.0.0.1:80", Place: "argument 2"},
	})
	if want := `flag -listen: "127.0.0.1:9090" overlaps ":9090" in this route`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}
