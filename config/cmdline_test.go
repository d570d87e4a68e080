package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pierproxy/pier/filter"
)

// The core tags, written out, say no more than the parser infers, and a
// tag the parser inferred (!!timestamp for a plain date) is no tag at all:
// both pass, read as text.
func TestCoreTagsPass(t *testing.T) {
	doc := `grace_period: !!str 5s
routes:
  - name: ! 2024-01-01
    listen: !!seq [!!str ":1"]
    upstreams: [!!map {address: "h:1", weight: !!int 2, backup: !!bool false}]
    idle_timeout: !!str 0
    max_connections: !!int 7
    health_check: {send: !!binary UElORw==, expect: !!str "+OK"}
    filters: [pass: !!null]
`
	cfg, err := Parse("f", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if cfg.GracePeriod != 5*time.Second || r.Name != "2024-01-01" || r.Upstreams[0].Weight != 2 ||
		r.MaxConnections != 7 || r.HealthCheck.Send != "PING" || r.HealthCheck.Expect != "+OK" || len(r.Filters) != 1 {
		t.Errorf("config read wrongly: %+v %+v", cfg, r)
	}
}

// listen takes one address alone as well as a list, to the same effect.
func TestListenAloneIsAListOfOne(t *testing.T) {
	alone, err := Parse("f", []byte(route(`":9090"`, `[{address: "h:1"}]`)))
	if err != nil {
		t.Fatal(err)
	}
	list, err := Parse("f", []byte(route(`[":9090"]`, `[{address: "h:1"}]`)))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(list, alone); d != "" {
		t.Errorf("listen alone differs from a list of one (-list +alone):\n%s", d)
	}
	// It collides like a list item does.
	_, err = Parse("f", []byte(route(`":9090"`, `[{address: "h:1"}]`)+"  - name: s\n    listen: \"127.0.0.1:9090\"\n    upstreams: [{address: 'h:1'}]\n"))
	if err == nil || !strings.Contains(err.Error(), `f:6:13: listen: "127.0.0.1:9090" overlaps ":9090" of route "r" (line 3)`) {
		t.Errorf("collision of single addresses: %v", err)
	}
}

// A configuration from a command line is the one a file with the same
// values gives: same defaults, same parsed values, same filters.
func TestFromCommandLineEqualsTheFile(t *testing.T) {
	got, err := FromCommandLine("forward", []Setting{
		{Key: "listen", Text: "127.0.0.1:9090", Place: "argument 1"},
		{Key: "upstream", Text: "a.internal:80", Place: "argument 2"},
		{Key: "upstream", Text: "[::1]:81", Place: "argument 3"},
		{Key: "idle_timeout", Text: "10m", Place: "flag -idle-timeout"},
		{Key: "grace_period", Text: "1m", Place: "flag -grace"},
		{Key: "retries", Text: "5", Place: "flag -retries"},
		{Key: "retries", Text: "0", Place: "flag -retries"}, // the last counts
		{Key: "filter", Filter: "latency", Text: "100ms", Place: "flag -latency"},
		{Key: "filter", Filter: "reset", Text: "after=1s,clients=10.0.0.0/8,clients=192.0.2.1", Place: "flag -reset"},
		{Key: "filter", Filter: "pass", Text: "", Place: "flag -pass"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse("", []byte(`grace_period: 1m
routes:
  - name: forward
    listen: ["127.0.0.1:9090"]
    upstreams: [{address: "a.internal:80"}, {address: "[::1]:81"}]
    idle_timeout: 10m
    retries: 0
    filters:
      - latency: {delay: 100ms}
      - reset: {after: 1s, clients: [10.0.0.0/8, 192.0.2.1]}
      - pass
`))
	if err != nil {
		t.Fatal(err)
	}
	clearPositions(want)
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(Pos{}, "Place")); d != "" {
		t.Errorf("command line differs from the file (-file +command line):\n%s", d)
	}
	// A filter keeps its flag, for errors found when it is made.
	for i, place := range []string{"flag -latency", "flag -reset", "flag -pass"} {
		if f := got.Routes[0].Filters[i]; f.Pos != (Pos{Place: place}) {
			t.Errorf("filter %s at %+v, want at %s", f.Name, f.Pos, place)
		}
		if e := ErrorAt("", got.Routes[0].Filters[i].Pos, "x: broken").Error(); e != place+": x: broken" {
			t.Errorf("ErrorAt: %q", e)
		}
	}
	if e := ErrorAt("f.yaml", Pos{Line: 3, Col: 7}, "x: broken").Error(); e != "f.yaml:3:7: x: broken" {
		t.Errorf("ErrorAt in a file: %q", e)
	}
}

// The edge's settings are the file's fields: allow and deny add to the
// top level's lists, accept_proxy to the route's trusted list.
func TestFromCommandLineEdge(t *testing.T) {
	got, err := FromCommandLine("forward", []Setting{
		{Key: "listen", Text: "127.0.0.1:9090", Place: "argument 1"},
		{Key: "upstream", Text: "a.internal:80", Place: "argument 2"},
		{Key: "allow", Text: "10.0.0.0/8", Place: "flag -allow"},
		{Key: "deny", Text: "2001:db8::/32", Place: "flag -deny"},
		{Key: "allow", Text: "::1", Place: "flag -allow"},
		{Key: "send_proxy", Text: "v2", Place: "flag -send-proxy"},
		{Key: "accept_proxy", Text: "127.0.0.1", Place: "flag -accept-proxy"},
		{Key: "accept_proxy", Text: "10.1.0.0/16", Place: "flag -accept-proxy"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse("", []byte(`allow: [10.0.0.0/8, "::1"]
deny: ["2001:db8::/32"]
routes:
  - name: forward
    listen: ["127.0.0.1:9090"]
    upstreams: [{address: "a.internal:80"}]
    send_proxy: v2
    proxy_protocol: {trusted: [127.0.0.1, 10.1.0.0/16]}
`))
	if err != nil {
		t.Fatal(err)
	}
	clearPositions(want)
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(Pos{}, "Place"), cmpopts.EquateComparable(netip.Prefix{})); d != "" {
		t.Errorf("command line differs from the file (-file +command line):\n%s", d)
	}
	for _, c := range []struct {
		s    Setting
		want string
	}{
		{Setting{Key: "allow", Text: "10.1.2.3/8", Place: "flag -allow"}, `flag -allow: "10.1.2.3/8" has host bits set: did you mean 10.0.0.0/8`},
		{Setting{Key: "accept_proxy", Text: "nope", Place: "flag -accept-proxy"}, `flag -accept-proxy: "nope" is not an IP address or a CIDR prefix`},
		{Setting{Key: "send_proxy", Text: "v3", Place: "flag -send-proxy"}, `flag -send-proxy: "v3" is not one of v1, v2`},
	} {
		_, err := FromCommandLine("forward", []Setting{
			{Key: "listen", Text: "127.0.0.1:9090", Place: "argument 1"},
			{Key: "upstream", Text: "a.internal:80", Place: "argument 2"},
			c.s,
		})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.s, err, c.want)
		}
	}
}

// Every value a file refuses, a command line is refused with the file's
// words, placed at the flag or argument that gave it.
func TestFromCommandLineErrors(t *testing.T) {
	base := []Setting{
		{Key: "listen", Text: "127.0.0.1:0", Place: "argument 1"},
		{Key: "upstream", Text: "h:1", Place: "argument 2"},
	}
	long := strings.Repeat("a", 100<<10)
	for _, tc := range []struct {
		name string
		set  []Setting // replaces base where Key matches, else added
		want []string  // every error, in order
	}{
		{"duration without unit", []Setting{{Key: "idle_timeout", Text: "10", Place: "flag -idle-timeout"}},
			[]string{`flag -idle-timeout: "10" has no unit: write it like 10s or 10ms`}},
		{"listen port only", []Setting{{Key: "listen", Text: "9090", Place: "argument 1"}},
			[]string{`argument 1: "9090": missing host: for every address on port 9090, write ":9090"`}},
		{"negative max connections", []Setting{{Key: "max_connections", Text: "-5", Place: "flag -max-connections"}},
			[]string{`flag -max-connections: "-5" is not a whole number of 0 or more`}},
		{"retries too many", []Setting{{Key: "retries", Text: "1000", Place: "flag -retries"}},
			[]string{`flag -retries: "1000" is not a whole number from 0 to 100`}},
		{"zero connect timeout", []Setting{{Key: "connect_timeout", Text: "0s", Place: "flag -connect-timeout"}},
			[]string{`flag -connect-timeout: must be more than 0`}},
		{"zero grace", []Setting{{Key: "grace_period", Text: "0", Place: "flag -grace"}},
			[]string{`flag -grace: must be more than 0`}},
		{"bad host", []Setting{{Key: "upstream", Text: "bad_host!:80", Place: "argument 2"}},
			[]string{`argument 2: "bad_host!:80": "bad_host!" is neither an IP address nor a host name`}},
		{"huge host", []Setting{{Key: "upstream", Text: long + ":80", Place: "argument 2"}},
			[]string{`argument 2: "` + long[:64] + `"...: "` + long[:64] + `"... is neither an IP address nor a host name`}},
		{"upstream port too large", []Setting{{Key: "upstream", Text: "127.0.0.1:99999", Place: "argument 2"}},
			[]string{`argument 2: "127.0.0.1:99999": port "99999" is not a number from 1 to 65535`}},
		{"upstream without host", []Setting{{Key: "upstream", Text: ":80", Place: "argument 2"}},
			[]string{`argument 2: ":80": missing host: an upstream needs a name or an IP address`}},
		{"balance", []Setting{{Key: "balance", Text: "rr", Place: "flag -balance"}},
			[]string{`flag -balance: "rr" is not one of round_robin, least_conn, random, hash`}},
		{"filter option", []Setting{{Key: "filter", Filter: "latency", Text: "soon", Place: "flag -latency"}},
			[]string{`flag -latency: delay: "soon" is not a duration (say 100ms, 2s, 1m)`}},
		{"filter unknown option", []Setting{{Key: "filter", Filter: "latency", Text: "delay=1s,bogus=1", Place: "flag -latency"}},
			[]string{`flag -latency: bogus: unknown option`}},
		{"filter list item without =", []Setting{{Key: "filter", Filter: "rewrite", Text: "match=a,b,replace=c", Place: "flag -rewrite"}},
			[]string{`flag -rewrite: "b": want option=value`}},
		{"filter without main option", []Setting{{Key: "filter", Filter: "rewrite", Text: "old", Place: "flag -rewrite"}},
			[]string{`flag -rewrite: want option=value,... (the filter has no main option to take a value alone)`}},
		{"filter option twice", []Setting{{Key: "filter", Filter: "latency", Text: "delay=1s,delay=2s", Place: "flag -latency"}},
			[]string{`flag -latency: delay: want a single value, not a list`}},
		{"errors in command-line order", []Setting{
			{Key: "retries", Text: "-1", Place: "flag -retries"},
			{Key: "idle_timeout", Text: "soon", Place: "flag -idle-timeout"},
		}, []string{
			`flag -retries: "-1" is not a whole number from 0 to 100`,
			`flag -idle-timeout: "soon" is not a duration (like 300ms, 5s, 1m30s, 2h)`,
		}},
		{"unknown field", []Setting{{Key: "colour", Text: "red", Place: "flag -colour"}},
			[]string{`flag -colour: route: unknown field "colour"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings := append([]Setting(nil), base...)
			for _, s := range tc.set {
				if s.Key == "listen" || s.Key == "upstream" {
					for i := range settings {
						if settings[i].Key == s.Key {
							settings[i] = s
						}
					}
					continue
				}
				settings = append(settings, s)
			}
			cfg, err := FromCommandLine("forward", settings)
			var errs Errors
			if !errors.As(err, &errs) || cfg != nil {
				t.Fatalf("got %v, %v; want Errors", cfg, err)
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, e := range errs {
				if e.File != "" || e.Line != 0 || e.Col != 0 || e.Place == "" {
					t.Errorf("error %d not placed on the command line: %#v", i, e)
				}
				if !strings.HasPrefix(e.Error(), tc.want[i]) {
					t.Errorf("error %d:\ngot  %s\nwant %s", i, e, tc.want[i])
				}
			}
		})
	}
}

// Whatever the values, FromCommandLine returns a valid configuration or
// errors each placed at a setting given, never a panic.
func FuzzFromCommandLine(f *testing.F) {
	f.Add("127.0.0.1:0", "h:1", "idle_timeout", "10", "latency", "delay=1s,jitter=2s")
	f.Add("9090", "bad_host!:80", "retries", "1000", "rewrite", "match=a,b")
	f.Add(":1", "[::1]:1", "grace_period", "0", "reset", "100")
	f.Add("", "", "", "", "dump", "=,=")
	f.Add(":1", "h:1", "max_connections", "-5", "pass", "")
	f.Add(":1", "h:1", "accept_proxy", "10.0.0.0/8", "pass", "")
	f.Add(":1", "h:1", "allow", "::ffff:1.2.3.4", "pass", "")
	f.Add(":1", "h:1", "send_proxy", "v1", "pass", "")
	f.Add(":1", "h:1", "limits", "{}", "pass", "")
	f.Add(":1", "h:1", "protocol", "udp", "dump", "")
	f.Add(":1", "h:1", "max_flows", "7", "pass", "")
	f.Fuzz(func(t *testing.T, listen, upstream, key, value, filterName, filterValue string) {
		if _, ok := filter.Lookup(filterName); !ok || filterName == "pcap" {
			filterName = "dump" // a pcap file would be checked against the disk
		}
		settings := []Setting{
			{Key: "listen", Text: listen, Place: "argument 1"},
			{Key: "upstream", Text: upstream, Place: "argument 2"},
			{Key: key, Text: value, Place: "flag -x"},
			{Key: "filter", Filter: filterName, Text: filterValue, Place: "flag -f"},
		}
		cfg, err := FromCommandLine("forward", settings)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 || cfg != nil {
				t.Fatalf("error %v is not Errors alone", err)
			}
			for _, e := range errs {
				if e.Place == "" || e.Msg == "" {
					t.Fatalf("error without a place or message: %#v", e)
				}
			}
			return
		}
		cfg.File = "f"
		for i := range cfg.Routes {
			cfg.Routes[i].Pos = Pos{1, 1, ""}
			for j := range cfg.Routes[i].Upstreams {
				cfg.Routes[i].Upstreams[j].Pos = Pos{1, 1, ""}
			}
		}
		checkValid(t, cfg)
	})
}
