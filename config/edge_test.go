package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// prefixes compares netip.Prefix values as values.
var prefixes = cmpopts.EquateComparable(netip.Prefix{})

// edgeFull sets every field of the edge: shared addresses with matches,
// PROXY in and out, address lists and limits at both levels.
const edgeFull = `allow: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]
deny: 10.6.6.0/24
limits:
  accept_rate: {rate: 5000/s, burst: 10000}
  per_client: {max_connections: 200, rate: 50/s, burst: 100, ipv4_prefix: 24, ipv6_prefix: 56, max_tracked: 1000}
routes:
  - name: db
    listen: ":443"
    upstreams: [{address: "10.2.0.1:5432", send_proxy: v1}, {address: "10.2.0.2:5432", send_proxy: none}]
    health_check: {send_proxy: v2}
    max_connections: 100
    match: {sni: ["DB.example.com.", "*.db.example.com"], alpn: postgresql, source: ["10.0.0.0/8", "2001:db8:1::/48"]}
    peek_timeout: 2s
    proxy_protocol: {accept: v2, trusted: ["10.1.0.0/16", "::1"], required: true, timeout: 1s}
    send_proxy: v2
    allow: ["10.0.0.0/8"]
    deny: ["10.9.0.0/16"]
    limits: {accept_rate: {rate: 1200/m}, per_client: {rate: 10/h, max_tracked: 101}}
  - name: web
    listen: ":443"
    upstreams: [{address: "10.3.0.1:443"}]
    match: {default: true}
    peek_timeout: 2s
    proxy_protocol: {accept: v2, trusted: ["::1", "10.1.0.0/16"], required: true, timeout: 1s}
`

// Every edge field parses to what it says; absent ones take their
// defaults (accept any, header timeout 3s, burst one second's worth,
// prefixes /32 and /64, 65536 tracked).
func TestParseEdge(t *testing.T) {
	cfg, err := Parse("f", []byte(edgeFull))
	if err != nil {
		t.Fatal(err)
	}
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	ignore := cmp.Options{cmp.Comparer(func(a, b Pos) bool { return true }), prefixes}
	if d := cmp.Diff(pfx("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"), cfg.Allow, prefixes); d != "" {
		t.Errorf("allow: %s", d)
	}
	if d := cmp.Diff(pfx("10.6.6.0/24"), cfg.Deny, prefixes); d != "" {
		t.Errorf("deny, one alone: %s", d)
	}
	wantTop := &Limits{
		AcceptRate: &Rate{PerSecond: 5000, Burst: 10000},
		PerClient:  &PerClient{MaxConnections: 200, Rate: &Rate{PerSecond: 50, Burst: 100}, IPv4Prefix: 24, IPv6Prefix: 56, MaxTracked: 1000, Pos: Pos{5, 15, ""}},
		Pos:        Pos{4, 3, ""},
	}
	if d := cmp.Diff(wantTop, cfg.Limits, prefixes); d != "" {
		t.Errorf("top limits (-want +got):\n%s", d)
	}
	db, web := cfg.Routes[0], cfg.Routes[1]
	wantMatch := &Match{SNI: []string{"db.example.com", "*.db.example.com"}, ALPN: []string{"postgresql"}, Source: pfx("10.0.0.0/8", "2001:db8:1::/48"), Pos: Pos{12, 12, ""}}
	if d := cmp.Diff(wantMatch, db.Match, prefixes); d != "" {
		t.Errorf("match (-want +got):\n%s", d)
	}
	wantPP := &ProxyProtocol{Accept: "v2", Trusted: pfx("10.1.0.0/16", "::1/128"), Required: true, Timeout: time.Second}
	if d := cmp.Diff(wantPP, db.ProxyProtocol, ignore); d != "" {
		t.Errorf("proxy_protocol (-want +got):\n%s", d)
	}
	wantRouteLimits := &Limits{
		AcceptRate: &Rate{PerSecond: 20, Burst: 20},
		PerClient:  &PerClient{Rate: &Rate{PerSecond: 10.0 / 3600, Burst: 1}, IPv4Prefix: DefaultIPv4Prefix, IPv6Prefix: DefaultIPv6Prefix, MaxTracked: 101},
	}
	if d := cmp.Diff(wantRouteLimits, db.Limits, ignore); d != "" {
		t.Errorf("route limits (-want +got):\n%s", d)
	}
	if db.PeekTimeout != 2*time.Second || db.SendProxy != "v2" || db.HealthCheck.SendProxy != "v2" ||
		db.Upstreams[0].SendProxy != "v1" || db.Upstreams[1].SendProxy != "none" ||
		!cmp.Equal(db.Allow, pfx("10.0.0.0/8"), prefixes) || !cmp.Equal(db.Deny, pfx("10.9.0.0/16"), prefixes) {
		t.Errorf("route db: %+v", db)
	}
	if web.Match == nil || !web.Match.Default || web.SendProxy != "" || web.Upstreams[0].SendProxy != "" || web.Limits != nil {
		t.Errorf("route web: %+v", web)
	}

	// Defaults.
	cfg, err = Parse("f", []byte(route(`[":1"]`, `[{address: "h:1"}]`,
		"proxy_protocol: {trusted: 127.0.0.1}", "health_check: {}", "limits: {accept_rate: {rate: 0.5/s}, per_client: {max_connections: 3}}")))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if pp := r.ProxyProtocol; pp.Accept != "any" || pp.Timeout != DefaultProxyTimeout || pp.Required || !cmp.Equal(pp.Trusted, pfx("127.0.0.1/32"), prefixes) {
		t.Errorf("proxy_protocol defaults: %+v", pp)
	}
	if r.PeekTimeout != DefaultPeekTimeout || r.HealthCheck.SendProxy != "auto" || r.Match != nil || r.SendProxy != "" {
		t.Errorf("route defaults: %+v", r)
	}
	if l := r.Limits; *l.AcceptRate != (Rate{PerSecond: 0.5, Burst: 1}) ||
		l.PerClient.Rate != nil || l.PerClient.IPv4Prefix != 32 || l.PerClient.IPv6Prefix != 64 || l.PerClient.MaxTracked != 65536 {
		t.Errorf("limits defaults: %+v %+v", l.AcceptRate, l.PerClient)
	}
	if DefaultPeekTimeout != 5*time.Second || DefaultProxyTimeout != 3*time.Second || MaxEdgeTimeout != time.Minute ||
		DefaultIPv4Prefix != 32 || DefaultIPv6Prefix != 64 || DefaultMaxTracked != 65536 || MaxMaxTracked != 10_000_000 {
		t.Error("edge defaults differ from the documented 5s, 3s, 1m, 32, 64, 65536, 10000000")
	}
}

// shared2 is a file of two routes, a and b, on one address, each with
// its extra lines (at a route field's indent).
func shared2(addr, a, b string) string {
	r := func(name, extra string) string {
		s := "  - name: " + name + "\n    listen: [\"" + addr + "\"]\n    upstreams: [{address: \"h:1\"}]\n"
		for _, l := range strings.Split(extra, "\n") {
			if l != "" {
				s += "    " + l + "\n"
			}
		}
		return s
	}
	return "routes:\n" + r("a", a) + r("b", b)
}

// edgeErrorCases is every kind of edge error, each alone in its file, at
// the line and column of the node at fault. Route a's extra lines start
// at line 5, b's listen is on line 6 plus a's extra lines.
var edgeErrorCases = []struct {
	name, doc string
	line, col int
	msg       string
}{
	// Address lists: CIDRs and bare IPs, canonical only.
	{"allow not a prefix", route(`[":1"]`, `[{address: "h:1"}]`, "allow: [nope]"), 5, 13, `allow: "nope" is not an IP address or a CIDR prefix (like 10.0.0.0/8, 2001:db8::/32)`},
	{"deny bad bits", route(`[":1"]`, `[{address: "h:1"}]`, "deny: [10.0.0.0/33]"), 5, 12, `deny: "10.0.0.0/33" is not a CIDR prefix`},
	{"host bits", route(`[":1"]`, `[{address: "h:1"}]`, "deny: [10.1.2.3/8]"), 5, 12, `deny: "10.1.2.3/8" has host bits set: did you mean 10.0.0.0/8`},
	{"IPv6 host bits", route(`[":1"]`, `[{address: "h:1"}]`, `allow: ["2001:db8::1/32"]`), 5, 13, `allow: "2001:db8::1/32" has host bits set: did you mean 2001:db8::/32`},
	{"IPv4-mapped prefix", route(`[":1"]`, `[{address: "h:1"}]`, `allow: ["::ffff:10.0.0.0/104"]`), 5, 13, `allow: "::ffff:10.0.0.0/104" is an IPv4-mapped IPv6 address: write it as IPv4, 10.0.0.0/8`},
	{"IPv4-mapped address", route(`[":1"]`, `[{address: "h:1"}]`, `allow: ["::ffff:192.0.2.1"]`), 5, 13, `write it as IPv4, 192.0.2.1/32`},
	{"zone", route(`[":1"]`, `[{address: "h:1"}]`, `allow: ["fe80::1%eth0"]`), 5, 13, `allow: "fe80::1%eth0" has a zone`},
	{"prefix twice", route(`[":1"]`, `[{address: "h:1"}]`, "allow: [10.0.0.1, 10.0.0.1/32]"), 5, 23, `allow: "10.0.0.1/32" is listed twice (first at line 5)`},
	{"allow is a mapping", route(`[":1"]`, `[{address: "h:1"}]`, "allow: {a: 1}"), 5, 12, "allow: want a list, got a mapping"},
	{"top-level deny", "deny: [x]\n" + good, 1, 8, `deny: "x" is not an IP address or a CIDR prefix`},
	{"unknown top field lists the edge", "allowed: []\n" + good, 1, 1, "(known: grace_period, routes, resolver, admin, toxiproxy, allow, deny, limits)"},

	// match.
	{"empty match", route(`[":1"]`, `[{address: "h:1"}]`, "match: {}"), 5, 12, "match: matches nothing: give sni, alpn or source, or default: true"},
	{"match of empty lists", route(`[":1"]`, `[{address: "h:1"}]`, "match: {sni: [], default: false}"), 5, 12, "match: matches nothing"},
	{"match is a list", route(`[":1"]`, `[{address: "h:1"}]`, "match: [a]"), 5, 12, "match: want a mapping, got a list"},
	{"unknown match field", route(`[":1"]`, `[{address: "h:1"}]`, "match: {host: a}"), 5, 13, `match: unknown field "host" (known: sni, alpn, source, default)`},
	{"default yes", route(`[":1"]`, `[{address: "h:1"}]`, "match: {default: yes}"), 5, 22, `default: "yes" is not true or false`},
	{"sni bare star", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["*"]}`), 5, 19, `sni: "*" would match every name: use default: true for the route that takes the rest`},
	{"sni star inside", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["a.*.example.com"]}`), 5, 19, `sni: "a.*.example.com" has a * that is not the whole first label: a wildcard is written like *.example.com`},
	{"sni star in a label", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["*db.example.com"]}`), 5, 19, `has a * that is not the whole first label`},
	{"sni two stars", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["*.*.example.com"]}`), 5, 19, `has a * that is not the whole first label`},
	{"sni star last", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["example.*"]}`), 5, 19, `has a * that is not the whole first label`},
	{"sni U-label", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["bücher.de"]}`), 5, 19, `sni: "bücher.de" is not ASCII: write the name's A-label form (xn--...), as clients send it`},
	{"sni underscore", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["a_b.example.com"]}`), 5, 19, `sni: "a_b.example.com" is not a host name: labels of letters, digits and '-'`},
	{"sni leading hyphen", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["-a.example.com"]}`), 5, 19, `is not a host name`},
	{"sni empty label", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["a..example.com"]}`), 5, 19, `is not a host name`},
	{"sni label too long", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["`+strings.Repeat("a", 64)+`.com"]}`), 5, 19, `is not a host name`},
	{"sni too long", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["`+strings.Repeat("a.", 127)+`com"]}`), 5, 19, `is not a host name`},
	{"sni IP", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: ["10.0.0.1"]}`), 5, 19, `sni: "10.0.0.1" is an IP address: clients send no server name for an address`},
	{"sni empty", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: [""]}`), 5, 19, `sni: "" is empty`},
	{"sni twice, case and dot aside", route(`[":1"]`, `[{address: "h:1"}]`, `match: {sni: [DB.example.com, "db.example.com."]}`), 5, 35, `sni: "db.example.com." is listed twice (first at line 5)`},
	{"alpn empty", route(`[":1"]`, `[{address: "h:1"}]`, `match: {alpn: [""]}`), 5, 20, `alpn: "" is 0 bytes: a protocol name is 1 to 255`},
	{"alpn too long", route(`[":1"]`, `[{address: "h:1"}]`, `match: {alpn: [`+strings.Repeat("p", 256)+`]}`), 5, 20, `is 256 bytes: a protocol name is 1 to 255`},
	{"alpn twice", route(`[":1"]`, `[{address: "h:1"}]`, `match: {alpn: [h2, h2]}`), 5, 24, `alpn: "h2" is listed twice (first at line 5)`},
	{"source host bits", route(`[":1"]`, `[{address: "h:1"}]`, `match: {source: ["2001:db8::1/64"]}`), 5, 22, `source: "2001:db8::1/64" has host bits set: did you mean 2001:db8::/64`},

	// peek_timeout and proxy_protocol.
	{"peek_timeout zero", route(`[":1"]`, `[{address: "h:1"}]`, "peek_timeout: 0s"), 5, 19, "peek_timeout: must be more than 0"},
	{"peek_timeout too long", route(`[":1"]`, `[{address: "h:1"}]`, "peek_timeout: 61s"), 5, 19, `peek_timeout: "61s" is more than 1m, the longest a client's first bytes are waited for`},
	{"peek_timeout no unit", route(`[":1"]`, `[{address: "h:1"}]`, "peek_timeout: 5"), 5, 19, `peek_timeout: "5" has no unit`},
	{"proxy without trusted", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: {accept: v2}"), 5, 21, `proxy_protocol: missing required field "trusted"`},
	{"proxy trusted empty", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: {trusted: []}"), 5, 31, "trusted: need at least one prefix: a header is believed only from these addresses"},
	{"proxy trusted bad", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: {trusted: [10.0.0.1/8]}"), 5, 32, `trusted: "10.0.0.1/8" has host bits set: did you mean 10.0.0.0/8`},
	{"proxy accept v3", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: {accept: v3, trusted: [::1]}"), 5, 30, `accept: "v3" is not one of v1, v2, any`},
	{"proxy required maybe", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: {trusted: [::1], required: maybe}"), 5, 48, `required: "maybe" is not true or false`},
	{"proxy timeout too long", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: {trusted: [::1], timeout: 2m}"), 5, 47, `timeout: "2m" is more than 1m`},
	{"proxy is a string", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: v2"), 5, 21, `proxy_protocol: want a mapping, got "v2"`},
	{"unknown proxy field", route(`[":1"]`, `[{address: "h:1"}]`, "proxy_protocol: {trusted: [::1], from: x}"), 5, 38, `proxy_protocol: unknown field "from" (known: accept, trusted, required, timeout)`},

	// send_proxy.
	{"route send_proxy v3", route(`[":1"]`, `[{address: "h:1"}]`, "send_proxy: v3"), 5, 17, `send_proxy: "v3" is not one of v1, v2`},
	{"route send_proxy none", route(`[":1"]`, `[{address: "h:1"}]`, "send_proxy: none"), 5, 17, `send_proxy: "none" is not one of v1, v2`},
	{"member send_proxy", route(`[":1"]`, `[{address: "h:1", send_proxy: V2}]`), 4, 46, `send_proxy: "V2" is not one of v1, v2, none`},
	{"check send_proxy", route(`[":1"]`, `[{address: "h:1"}]`, "health_check: {send_proxy: always}"), 5, 32, `send_proxy: "always" is not one of auto, none, v1, v2`},

	// limits and rates.
	{"empty limits", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {}"), 5, 13, "limits: limits nothing: give accept_rate or per_client"},
	{"unknown limits field", "limits: {rate: 1/s}\n" + good, 1, 10, `limits: unknown field "rate" (known: accept_rate, per_client)`},
	{"accept_rate without rate", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {burst: 5}}"), 5, 27, `accept_rate: missing required field "rate"`},
	{"rate without unit", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: 20}}"), 5, 34, `rate: "20" has no unit: write it like 20/s, 20/m or 20/h`},
	{"rate in words", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: fast}}"), 5, 34, `rate: "fast" is not a rate (like 20/s, 1200/m, 10/h)`},
	{"rate per sec", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: 20/sec}}"), 5, 34, `rate: "20/sec" is not a rate`},
	{"rate negative", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: -5/s}}"), 5, 34, `rate: "-5/s" is not a rate`},
	{"rate exponent", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: 1e3/s}}"), 5, 34, `rate: "1e3/s" is not a rate`},
	{"rate zero", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: 0/m}}"), 5, 34, `rate: "0/m" must be more than 0`},
	{"rate too fast", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: 2000000000/s}}"), 5, 34, `rate: "2000000000/s" is more than 1000000000/s`},
	{"burst zero", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {accept_rate: {rate: 1/s, burst: 0}}"), 5, 46, `burst: "0" is not a whole number from 1 to 1000000000`},
	{"empty per_client", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {per_client: {}}"), 5, 26, "per_client: limits nothing: give max_connections (more than 0), rate, or both"},
	{"per_client max 0", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {per_client: {max_connections: 0}}"), 5, 44, "per_client: limits nothing"},
	{"per_client burst alone", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {per_client: {max_connections: 1, burst: 5}}"), 5, 54, "per_client: burst needs a rate beside it (like rate: 20/s, burst: 40)"},
	{"per_client bad rate", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {per_client: {rate: 5}}"), 5, 33, `rate: "5" has no unit`},
	{"ipv4_prefix 33", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {per_client: {max_connections: 1, ipv4_prefix: 33}}"), 5, 60, `ipv4_prefix: "33" is not a whole number from 1 to 32`},
	{"ipv6_prefix 0", route(`[":1"]`, `[{address: "h:1"}]`, "limits: {per_client: {max_connections: 1, ipv6_prefix: 0}}"), 5, 60, `ipv6_prefix: "0" is not a whole number from 1 to 128`},
	{"max_tracked too many", "limits: {per_client: {max_connections: 1, max_tracked: 10000001}}\n" + good, 1, 56, `max_tracked: "10000001" is not a whole number from 1 to 10000000`},
	{"max_tracked under the route's max", route(`[":1"]`, `[{address: "h:1"}]`, "max_connections: 100", "limits: {per_client: {max_connections: 5, max_tracked: 100}}"),
		6, 60, "max_tracked: 100 is not more than the route's max_connections, 100: clients with live sessions are never dropped"},
	{"default max_tracked under the route's max", route(`[":1"]`, `[{address: "h:1"}]`, "max_connections: 70000", "limits: {per_client: {rate: 1/s}}"),
		6, 26, "max_tracked: 65536 is not more than the route's max_connections, 70000"},

	// Routes sharing an address.
	{"shared without a match", shared2(":443", "match: {sni: [a.example.com]}", ""), 7, 14,
		`listen: ":443" overlaps ":443" of route "a" (line 3); write the same address in both routes, each with a match, to share it`},
	{"shared, written differently", strings.Replace(shared2(":443", "match: {sni: [a.example.com]}", "match: {sni: [b.example.com]}"), `["`+":443"+`"]`+"\n    upstreams: [{address: \"h:1\"}]\n    match: {sni: [b", `["0.0.0.0:443"]`+"\n    upstreams: [{address: \"h:1\"}]\n    match: {sni: [b", 1), 7, 14,
		`listen: "0.0.0.0:443" overlaps ":443" of route "a" (line 3); write the same address in both routes`},
	{"two defaults", shared2(":443", "match: {default: true}", "match: {default: true}"), 9, 22, `default: route "a" is already the default for listen ":443" (line 5)`},
	{"two defaults on port 0", shared2("127.0.0.1:0", "match: {default: true}", "match: {sni: [x.example.com], default: true}"), 9, 44, `default: route "a" is already the default for listen "127.0.0.1:0" (line 5)`},
	{"same sni", shared2(":443", "match: {sni: [a.example.com, b.example.com]}", "match: {sni: [B.example.com]}"), 9, 12,
		`match: sni "b.example.com" alpn ANY source ANY is also route "a"'s (line 5) on listen ":443": the client could go to either`},
	{"same wildcard, alpn and source", shared2(":443", `match: {sni: ["*.example.com"], alpn: [h2], source: ["::1", 10.0.0.0/8]}`, `match: {sni: ["*.example.com"], alpn: [http/1.1, h2], source: 10.0.0.0/8}`), 9, 12,
		`match: sni "*.example.com" alpn "h2" source "10.0.0.0/8" is also route "a"'s (line 5)`},
	{"same source, a default too", shared2(":443", "match: {source: [\"2001:db8::/32\"], default: true}", "match: {source: [\"2001:db8::/32\"]}"), 9, 12,
		`match: sni ANY alpn ANY source "2001:db8::/32" is also route "a"'s (line 5)`},
	{"proxy_protocol on one only", shared2(":443", "match: {sni: [a.example.com]}\nproxy_protocol: {trusted: [::1]}", "match: {sni: [b.example.com]}"), 8, 14,
		`listen: proxy_protocol differs from route "a"'s (line 6), which shares listen ":443": the header is read before the route is known, so routes on one address must agree`},
	{"proxy_protocol differs", shared2(":443", "match: {sni: [a.example.com]}\nproxy_protocol: {trusted: [::1]}", "match: {sni: [b.example.com]}\nproxy_protocol: {trusted: [::1], required: true}"), 11, 21,
		`proxy_protocol: proxy_protocol differs from route "a"'s (line 6)`},
	{"peek_timeout differs", shared2(":443", "match: {sni: [a.example.com]}", "match: {sni: [b.example.com]}\npeek_timeout: 1s"), 10, 19,
		`peek_timeout: peek_timeout 1s differs from route "a"'s 5s (line 3), which shares listen ":443": the ClientHello is waited for before the route is known, so routes on one address must agree`},
	{"peek_timeout default differs", shared2(":443", "match: {sni: [a.example.com]}\npeek_timeout: 1s", "match: {sni: [b.example.com]}"), 8, 14,
		`listen: peek_timeout 5s differs from route "a"'s 1s (line 6)`},
}

// Every edge error is reported alone, at its node, in its words.
func TestEdgeErrorPositions(t *testing.T) {
	for _, tc := range edgeErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("f.yaml", []byte(tc.doc))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("got %v, want Errors\n%s", err, tc.doc)
			}
			if cfg != nil {
				t.Error("a config came back with the errors")
			}
			e := errs[0]
			if e.File != "f.yaml" || e.Line != tc.line || e.Col != tc.col || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %v\nwant f.yaml:%d:%d: ...%s...\n%s", e, tc.line, tc.col, tc.msg, tc.doc)
			}
			if len(errs) > 1 {
				t.Errorf("%d errors, want only the one:\n%v", len(errs), err)
			}
		})
	}
}

// Routes with a match share an address written alike, port 0 included
// (one listener for all of them), with at most one default and no two
// routes a client fits equally; specific beats open, exact SNI beats a
// wildcard, so those are not ties.
func TestSharedAddressAccepted(t *testing.T) {
	for _, c := range []struct{ name, doc string }{
		{"exact, wildcard and default", shared2(":443", `match: {sni: [db.example.com, "*.example.com"]}`, "match: {default: true}")},
		{"exact beside wildcard", shared2(":443", `match: {sni: [a.example.com]}`, `match: {sni: ["*.example.com"]}`)},
		{"sni beside none", shared2(":443", `match: {sni: [a.example.com]}`, `match: {alpn: [h2]}`)},
		{"same sni, other alpn", shared2(":443", `match: {sni: [a.example.com], alpn: [h2]}`, `match: {sni: [a.example.com], alpn: [http/1.1]}`)},
		{"same sni, alpn beside none", shared2(":443", `match: {sni: [a.example.com], alpn: [h2]}`, `match: {sni: [a.example.com]}`)},
		{"nested sources", shared2(":443", `match: {source: [10.0.0.0/8]}`, `match: {source: [10.1.0.0/16]}`)},
		{"IPv6 sources", shared2("[::1]:0", `match: {source: ["2001:db8::/32"]}`, `match: {source: ["2001:db8::/48"], default: true}`)},
		{"port 0", shared2("127.0.0.1:0", `match: {sni: [a.example.com]}`, "match: {default: true}")},
		{"agreeing PROXY settings", shared2(":443", "match: {sni: [a.example.com]}\nproxy_protocol: {trusted: [::1, 10.0.0.0/8]}\npeek_timeout: 5s",
			"match: {default: true}\nproxy_protocol: {accept: any, trusted: [10.0.0.0/8, \"::1\"], timeout: 3s}")},
		{"a match alone on its address", route(`[":443"]`, `[{address: "h:1"}]`, "match: {sni: [a.example.com]}")},
		{"a plain route on its own port 0", shared2("127.0.0.1:0", "match: {default: true}", "match: {sni: [b.example.com]}") +
			"  - {name: c, listen: ['127.0.0.1:0'], upstreams: [{address: 'h:1'}]}\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("f", []byte(c.doc))
			if err != nil {
				t.Fatalf("%v\n%s", err, c.doc)
			}
			checkValid(t, cfg)
			checkRoundTrip(t, cfg)
		})
	}
}

// Port 0 with a match is one listener for every route that writes it
// alike: proved by the rules of a shared address applying to them, and
// not to a route without a match on the same text.
func TestSharedPortZeroIsOneListener(t *testing.T) {
	doc := shared2("127.0.0.1:0", "match: {default: true}", "match: {default: true}")
	if _, err := Parse("f", []byte(doc)); err == nil || !strings.Contains(err.Error(), `already the default for listen "127.0.0.1:0"`) {
		t.Errorf("two defaults on one 127.0.0.1:0: %v", err)
	}
	doc = shared2("127.0.0.1:0", "match: {default: true}", "")
	if _, err := Parse("f", []byte(doc)); err != nil {
		t.Errorf("a plain route's 127.0.0.1:0 is a listener of its own: %v", err)
	}
	doc = shared2("127.0.0.1:0", "match: {default: true}", "match: {default: true}")
	doc = strings.Replace(doc, `"127.0.0.1:0"]`+"\n    upstreams: [{address: \"h:1\"}]\n    match: {default: true}\n  - name: b", `"localhost:0"]`+"\n    upstreams: [{address: \"h:1\"}]\n    match: {default: true}\n  - name: b", 1)
	if _, err := Parse("f", []byte(doc)); err != nil {
		t.Errorf("localhost:0 and 127.0.0.1:0 are different listeners: %v", err)
	}
}

// Three routes on one address: each fault is told once, at the later
// route, naming the one it clashes with; a route on two shared addresses
// with the same fault is told once.
func TestSharedFaultsToldOnce(t *testing.T) {
	doc := `routes:
  - {name: a, listen: [":443", ":8443"], upstreams: [{address: "h:1"}], match: {default: true}}
  - {name: b, listen: [":443", ":8443"], upstreams: [{address: "h:1"}], match: {default: true}}
  - {name: c, listen: [":443"], upstreams: [{address: "h:1"}], match: {sni: [x.example.com], default: true}}
  - {name: d, listen: [":443"], upstreams: [{address: "h:1"}], match: {sni: [X.example.com]}}
`
	_, err := Parse("f", []byte(doc))
	want := `f:3:90: default: route "a" is already the default for listen ":443" (line 2)
f:4:103: default: route "a" is already the default for listen ":443" (line 2)
f:5:71: match: sni "x.example.com" alpn ANY source ANY is also route "c"'s (line 4) on listen ":443": the client could go to either`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

// A Config built in code is checked by the same rules, each error named
// by its field, earlier routes by name rather than by a line.
func TestCheckEdge(t *testing.T) {
	r := func(name string, m *Match) Route {
		return Route{Name: name, Listen: []string{":443"}, Upstreams: []Upstream{{Address: "127.0.0.1:5432"}}, Match: m}
	}
	for _, c := range []struct {
		name string
		cfg  *Config
		want string
	}{
		{"two defaults", &Config{Routes: []Route{r("a", &Match{Default: true}), r("b", &Match{Default: true})}},
			`route "b": match: default: route "a" is already the default for listen ":443"`},
		{"tie", &Config{Routes: []Route{r("a", &Match{SNI: []string{"a.example.com"}}), r("b", &Match{SNI: []string{"a.example.com"}})}},
			`route "b": match: sni "a.example.com" alpn ANY source ANY is also route "a"'s on listen ":443": the client could go to either`},
		{"empty match", &Config{Routes: []Route{r("a", &Match{})}}, `route "a": match: matches nothing`},
		{"host bits", &Config{Allow: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.1.2.3"), 8)}, Routes: []Route{r("a", nil)}},
			`the config: allow: "10.1.2.3/8" has host bits set: did you mean 10.0.0.0/8`},
		{"invalid prefix", &Config{Routes: []Route{func() Route { x := r("a", nil); x.Deny = []netip.Prefix{{}}; return x }()}},
			`route "a": deny: "invalid Prefix" is not an IP address or a CIDR prefix`},
		{"rate NaN", &Config{Limits: &Limits{AcceptRate: &Rate{PerSecond: math.NaN()}}, Routes: []Route{r("a", nil)}},
			`limits: accept_rate: rate: "NaN/s" is not a rate`},
		{"rate zero", &Config{Routes: []Route{func() Route { x := r("a", nil); x.Limits = &Limits{AcceptRate: &Rate{}}; return x }()}},
			`route "a": limits: accept_rate: rate: "0/s" must be more than 0`},
		{"per_client nothing", &Config{Limits: &Limits{PerClient: &PerClient{}}, Routes: []Route{r("a", nil)}},
			`limits: per_client: limits nothing`},
		{"no trusted", &Config{Routes: []Route{func() Route { x := r("a", nil); x.ProxyProtocol = &ProxyProtocol{}; return x }()}},
			`route "a": proxy_protocol: trusted: need at least one prefix`},
		{"peek too long", &Config{Routes: []Route{func() Route { x := r("a", nil); x.PeekTimeout = time.Hour; return x }()}},
			`route "a": peek_timeout: "1h" is more than 1m`},
		{"member send_proxy", &Config{Routes: []Route{func() Route { x := r("a", nil); x.Upstreams[0].SendProxy = "v3"; return x }()}},
			`route "a": upstreams[0]: send_proxy: "v3" is not one of v1, v2, none`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}

	// Defaults filled, positions kept.
	cfg := &Config{
		Limits: &Limits{PerClient: &PerClient{MaxConnections: 3, Pos: Pos{Line: 9}}, Pos: Pos{Line: 8}},
		Routes: []Route{{Name: "a", Listen: []string{":443"}, Upstreams: []Upstream{{Address: "127.0.0.1:1"}},
			Match:         &Match{SNI: []string{"A.example.com."}, Pos: Pos{Line: 7}},
			ProxyProtocol: &ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("::1/128")}, Pos: Pos{Line: 6}},
			Limits:        &Limits{AcceptRate: &Rate{PerSecond: 2.5}},
		}},
	}
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	rt := cfg.Routes[0]
	if rt.PeekTimeout != DefaultPeekTimeout || rt.ProxyProtocol.Accept != "any" || rt.ProxyProtocol.Timeout != DefaultProxyTimeout ||
		rt.Match.SNI[0] != "a.example.com" || rt.Limits.AcceptRate.Burst != 3 || cfg.Limits.PerClient.MaxTracked != DefaultMaxTracked {
		t.Errorf("defaults: %+v %+v %+v", rt, rt.ProxyProtocol, rt.Limits.AcceptRate)
	}
	if rt.Match.Pos.Line != 7 || rt.ProxyProtocol.Pos.Line != 6 || cfg.Limits.Pos.Line != 8 || cfg.Limits.PerClient.Pos.Line != 9 {
		t.Errorf("positions not kept: %+v %+v %+v", rt.Match.Pos, rt.ProxyProtocol.Pos, cfg.Limits)
	}
}

// A rate reads in any unit and writes back to the same number per second.
func TestRateText(t *testing.T) {
	for _, c := range []struct {
		in   string
		per  float64
		text string
	}{
		{"20/s", 20, "20/s"},
		{"1200/m", 20, "20/s"},
		{"30/m", 0.5, "30/m"},
		{"10/h", 10.0 / 3600, "10/h"},
		{"1/m", 1.0 / 60, "1/m"},
		{"0.5/s", 0.5, "30/m"},
		{"1000000000/s", 1e9, "1000000000/s"},
	} {
		cfg, err := Parse("f", []byte("limits: {accept_rate: {rate: "+c.in+"}}\n"+good))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		r := cfg.Limits.AcceptRate
		if r.PerSecond != c.per || r.Burst != max(1, int(math.Ceil(c.per))) {
			t.Errorf("%s: got %+v, want %v/s", c.in, r, c.per)
		}
		if got := formatRate(r.PerSecond); got != c.text {
			t.Errorf("%s: written %q, want %q", c.in, got, c.text)
		}
	}
}

// FuzzRate: any text is a rate in (0, 1e9] per second that writes back
// to text reading the same number, or an error naming the key.
func FuzzRate(f *testing.F) {
	for _, s := range []string{"20/s", "1200/m", "10/h", "0.5/s", "0/s", "20", "1e3/s", "99999999999999999999999/s", "0.0000000000000000001/h", "/s", "1./s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := &parser{file: "f", left: aliasAllowance}
		v := p.rate("rate", str(s, 1))
		if len(p.errs) > 0 {
			if v != 0 || !strings.HasPrefix(p.errs[0].Msg, "rate: ") {
				t.Fatalf("%q: %v with errors %v", s, v, p.errs)
			}
			return
		}
		if !(v > 0 && v <= maxRate) {
			t.Fatalf("%q accepted as %v/s", s, v)
		}
		q := &parser{file: "f", left: aliasAllowance}
		if again := q.rate("rate", str(formatRate(v), 1)); again != v || len(q.errs) > 0 {
			t.Fatalf("%q: %v/s written %q reads %v (%v)", s, v, formatRate(v), again, q.errs)
		}
	})
}

// checkEdge checks a parsed config's edge fields against every rule,
// stated afresh: the fuzzer's oracle.
func checkEdge(t *testing.T, cfg *Config) {
	t.Helper()
	checkPrefixes := func(what string, ps []netip.Prefix) {
		seen := make(map[netip.Prefix]bool)
		for _, p := range ps {
			if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" || seen[p] {
				t.Fatalf("%s: bad prefix accepted: %v in %v", what, p, ps)
			}
			seen[p] = true
		}
	}
	checkLimits := func(l *Limits, routeMax int) {
		if l == nil {
			return
		}
		if l.AcceptRate == nil && l.PerClient == nil {
			t.Fatalf("empty limits accepted")
		}
		okRate := func(r *Rate) bool {
			return r == nil || r.PerSecond > 0 && r.PerSecond <= maxRate && r.Burst >= 1 && r.Burst <= maxBurst
		}
		if r := l.AcceptRate; r == nil && l.PerClient == nil || r != nil && !okRate(r) {
			t.Fatalf("bad accept_rate accepted: %+v", r)
		}
		if c := l.PerClient; c != nil && (!okRate(c.Rate) || c.MaxConnections < 0 || c.MaxConnections == 0 && c.Rate == nil ||
			c.IPv4Prefix < 1 || c.IPv4Prefix > 32 || c.IPv6Prefix < 1 || c.IPv6Prefix > 128 || c.MaxTracked < 1 || c.MaxTracked > MaxMaxTracked ||
			routeMax > 0 && c.MaxTracked <= routeMax) {
			t.Fatalf("bad per_client accepted: %+v", c)
		}
	}
	checkPrefixes("allow", cfg.Allow)
	checkPrefixes("deny", cfg.Deny)
	checkLimits(cfg.Limits, 0)
	groups := make(map[string][]*Route)
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		checkPrefixes("route allow", r.Allow)
		checkPrefixes("route deny", r.Deny)
		checkLimits(r.Limits, r.MaxConnections)
		if r.PeekTimeout <= 0 && r.Protocol != UDP || r.PeekTimeout > MaxEdgeTimeout || !slices.Contains(append(routeSendProxy, ""), r.SendProxy) {
			t.Fatalf("bad peek_timeout or send_proxy accepted: %+v", r)
		}
		for _, u := range r.Upstreams {
			if !slices.Contains(append(upstreamSendProxy, ""), u.SendProxy) {
				t.Fatalf("bad member send_proxy accepted: %q", u.SendProxy)
			}
		}
		if h := r.HealthCheck; h != nil && !slices.Contains(checkSendProxy, h.SendProxy) && (r.Protocol != UDP || h.SendProxy != "") {
			t.Fatalf("bad check send_proxy accepted: %q", h.SendProxy)
		}
		if pp := r.ProxyProtocol; pp != nil {
			checkPrefixes("trusted", pp.Trusted)
			if !slices.Contains(proxyAccepts, pp.Accept) || len(pp.Trusted) == 0 || pp.Timeout <= 0 || pp.Timeout > MaxEdgeTimeout {
				t.Fatalf("bad proxy_protocol accepted: %+v", pp)
			}
		}
		m := r.Match
		if m == nil {
			continue
		}
		checkPrefixes("source", m.Source)
		if !m.criteria() && !m.Default {
			t.Fatalf("empty match accepted: %+v", m)
		}
		for i, name := range m.SNI {
			norm, err := serverName(name)
			if err != nil || norm != name || slices.Contains(m.SNI[:i], name) || strings.Count(name, "*") > 1 ||
				strings.Contains(name, "*") && !strings.HasPrefix(name, "*.") {
				t.Fatalf("bad sni accepted: %q (%v)", name, err)
			}
		}
		for i, p := range m.ALPN {
			if p == "" || len(p) > maxALPN || slices.Contains(m.ALPN[:i], p) {
				t.Fatalf("bad alpn accepted: %q", p)
			}
		}
		for _, l := range r.Listen {
			if !slices.Contains(groups[l], r) {
				groups[l] = append(groups[l], r)
			}
		}
	}
	for addr, g := range groups {
		defaults := 0
		for i, r := range g {
			if r.Match.Default {
				defaults++
			}
			if !sameProxy(g[0].ProxyProtocol, r.ProxyProtocol) || g[0].PeekTimeout != r.PeekTimeout {
				t.Fatalf("%s: routes %q and %q disagree on PROXY or peek settings", addr, g[0].Name, r.Name)
			}
			for _, o := range g[:i] {
				for k := range matchKeys(o.Match) {
					if matchKeys(r.Match)[k] {
						t.Fatalf("%s: routes %q and %q tie on %v", addr, o.Name, r.Name, k)
					}
				}
			}
		}
		if defaults > 1 {
			t.Fatalf("%s: %d defaults accepted", addr, defaults)
		}
	}
}

// matchKeys is every (sni, alpn, source) a route's match names, "" for a
// criterion left open; a match that is only the default names none.
func matchKeys(m *Match) map[[3]string]bool {
	out := make(map[[3]string]bool)
	if len(m.SNI)+len(m.ALPN)+len(m.Source) == 0 {
		return out
	}
	orAny := func(ss []string) []string {
		if len(ss) == 0 {
			return []string{""}
		}
		return ss
	}
	var sources []string
	for _, p := range m.Source {
		sources = append(sources, p.String())
	}
	for _, s := range orAny(m.SNI) {
		for _, a := range orAny(m.ALPN) {
			for _, src := range orAny(sources) {
				out[[3]string{s, a, src}] = true
			}
		}
	}
	return out
}

// The combinations a shared address's matches name are bounded: lists
// that multiply past maxMatchKeys are refused at the route's match, not
// walked.
func TestMatchCombinationsBounded(t *testing.T) {
	var sni, alpn []string
	for i := range 1100 {
		sni = append(sni, fmt.Sprintf("h%d.example.com", i))
	}
	for i := range 1000 {
		alpn = append(alpn, fmt.Sprintf("p%d", i))
	}
	doc := shared2(":443", "match: {default: true}", "match: {sni: ["+strings.Join(sni, ", ")+"], alpn: ["+strings.Join(alpn, ", ")+"]}")
	start := time.Now()
	_, err := Parse("f", []byte(doc))
	if want := "f:9:12: match: sni, alpn and source make more combinations than pier checks (1048576 in all shared addresses): split the route"; err == nil || err.Error() != want {
		t.Errorf("got %.300v\nwant %s", err, want)
	}
	if d := time.Since(start); d > 5*time.Second*slowdown {
		t.Errorf("took %v", d)
	}
	// Under the bound, every combination is looked at.
	doc = shared2(":443", "match: {sni: [h299.example.com], alpn: [p299]}", "match: {sni: ["+strings.Join(sni[:300], ", ")+"], alpn: ["+strings.Join(alpn[:300], ", ")+"]}")
	if _, err := Parse("f", []byte(doc)); err == nil || !strings.Contains(err.Error(), `match: sni "h299.example.com" alpn "p299" source ANY is also route "a"'s`) {
		t.Errorf("the last of 90000 combinations: %.300v", err)
	}
}
