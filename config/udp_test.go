package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pierproxy/pier/filter"
)

// Test filters for the protocol rules: one that works on streams only,
// one on both, and one that means something on datagrams only.
func init() {
	filter.Register(filter.Spec{Name: "test_streams_only", New: func(*filter.Options) (filter.Filter, error) {
		return closerFilter{}, nil
	}})
	filter.Register(filter.Spec{Name: "test_datagrams", New: func(*filter.Options) (filter.Filter, error) {
		return datagramFilter{}, nil
	}})
	filter.Register(filter.Spec{Name: "test_datagram_only", DatagramOnly: true, New: func(*filter.Options) (filter.Filter, error) {
		return datagramFilter{}, nil
	}})
}

type datagramFilter struct{}

func (datagramFilter) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }
func (datagramFilter) Datagrams(*filter.Session) (filter.DatagramStream, filter.DatagramStream) {
	return nil, nil
}

// udpFull is a udp route with every field it takes, beside a tcp route
// on the same address.
const udpFull = `routes:
  - name: dns
    listen: ["127.0.0.1:5353", "[::1]:5353"]
    protocol: udp
    upstreams:
      - {address: "10.0.0.1:53", max_connections: 100}
      - {address: "10.0.0.2:53", backup: true}
    balance: hash
    health_check: {interval: 5s, send: !!binary AAEBAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB, expect_regexp: "(?s)^.."}
    passive_check: {failures: 2}
    when_all_down: try_all
    idle_timeout: 5s
    responses: 1
    max_flows: 1000
    filters: [test_datagrams, test_datagram_only]
    allow: [127.0.0.0/8, "::1"]
    limits: {accept_rate: {rate: 100/s}, per_client: {max_connections: 10, rate: 20/s}}
  - name: dns-tcp
    listen: "127.0.0.1:5353"
    upstreams: [{address: "10.0.0.1:53"}]
  - name: statsd
    listen: ":8125"
    protocol: udp
    upstreams: [{address: "10.0.0.3:8125"}]
`

// A udp route parses to what it says, takes its own defaults (idle
// timeout 30s, max_flows 65536), leaves what it has no use for zero, and
// shares its address with a tcp route; a route without protocol is tcp.
func TestParseUDP(t *testing.T) {
	cfg, err := Parse("f", []byte(udpFull))
	if err != nil {
		t.Fatal(err)
	}
	dns, tcp, statsd := cfg.Routes[0], cfg.Routes[1], cfg.Routes[2]
	if dns.Protocol != UDP || tcp.Protocol != TCP || statsd.Protocol != UDP {
		t.Fatalf("protocols %q %q %q", dns.Protocol, tcp.Protocol, statsd.Protocol)
	}
	if dns.IdleTimeout != 5*time.Second || dns.Responses != 1 || dns.MaxFlows != 1000 || dns.WhenAllDown != "try_all" || dns.Balance != "hash" {
		t.Errorf("dns: idle %v responses %d max_flows %d when_all_down %s balance %s", dns.IdleTimeout, dns.Responses, dns.MaxFlows, dns.WhenAllDown, dns.Balance)
	}
	h := dns.HealthCheck
	if h == nil || len(h.Send) != 33 || h.ExpectRegexp == "" || h.SendProxy != "" || h.TLS || h.Interval != 5*time.Second {
		t.Errorf("dns health_check %+v", h)
	}
	if len(dns.Filters) != 2 || dns.Upstreams[0].MaxConnections != 100 {
		t.Errorf("dns filters %v, upstreams %+v", dns.Filters, dns.Upstreams)
	}
	want := Route{
		Name: "statsd", Listen: []string{":8125"}, Protocol: UDP,
		Upstreams:    []Upstream{{Address: "10.0.0.3:8125", Weight: 1}},
		Balance:      "round_robin",
		PassiveCheck: defaultPassive,
		WhenAllDown:  "fail",
		IdleTimeout:  DefaultUDPIdleTimeout,
		MaxFlows:     DefaultMaxFlows,
	}
	if d := cmp.Diff(want, statsd, cmpopts.IgnoreTypes(Pos{})); d != "" {
		t.Errorf("a udp route's defaults (-want +got):\n%s", d)
	}
	if tcp.IdleTimeout != DefaultIdleTimeout || tcp.MaxFlows != 0 || tcp.Retries != DefaultRetries || tcp.HalfCloseTimeout != DefaultHalfCloseTimeout {
		t.Errorf("the tcp route took udp defaults: %+v", tcp)
	}
	checkRoundTrip(t, cfg)
}

// udpErrorCases are the protocol rules, each in a file with only that
// error, at its node. They seed FuzzParse.
var udpErrorCases = []struct {
	name, doc string
	line, col int
	msg       string
}{
	{"retries", udpRoute("retries: 1"), 6, 5, "retries: not on a udp route: a flow's member is chosen once, at its first datagram"},
	{"connect_timeout", udpRoute("connect_timeout: 1s"), 6, 5, "connect_timeout: not on a udp route: connecting a datagram socket sends nothing, so there is no dial to time out"},
	{"connect_budget", udpRoute("connect_budget: 1s"), 6, 5, "connect_budget: not on a udp route: connecting a datagram socket sends nothing"},
	{"half_close_timeout", udpRoute("half_close_timeout: 1s"), 6, 5, "half_close_timeout: not on a udp route: a flow has no half-close: it ends after idle_timeout, or after responses"},
	{"max_connections", udpRoute("max_connections: 5"), 6, 5, "max_connections: not on a udp route: use max_flows to cap the route's flows"},
	{"match", udpRoute("match: {default: true}"), 6, 5, "match: not on a udp route: a datagram shows no ClientHello to choose a route by, so udp routes cannot share an address"},
	{"peek_timeout", udpRoute("peek_timeout: 1s"), 6, 5, "peek_timeout: not on a udp route: a datagram shows no ClientHello to wait for"},
	{"proxy_protocol", udpRoute("proxy_protocol: {trusted: [\"::1\"]}"), 6, 5, "proxy_protocol: not on a udp route: a PROXY header is read from the start of a TCP stream"},
	{"send_proxy", udpRoute("send_proxy: v2"), 6, 5, "send_proxy: not on a udp route: a PROXY header is written at the start of a TCP stream"},
	{"tls", udpRoute("tls: {certificates: [{cert: " + tdCert + ", key: " + tdKey + "}]}"), 6, 5, "tls: not on a udp route: pier terminates TLS over TCP only (no DTLS)"},
	{"upstream_tls", udpRoute("upstream_tls: {}"), 6, 5, "upstream_tls: not on a udp route: pier originates TLS over TCP only (no DTLS)"},
	{"handshake_timeout", udpRoute("handshake_timeout: 1s"), 6, 5, "handshake_timeout: not on a udp route: it bounds TLS handshakes, and a udp route has none"},
	{"member send_proxy", route(`[":53"]`, `[{address: "h:53", send_proxy: v1}]`, "protocol: udp"), 4, 35, "send_proxy: not on a udp route's upstream: a PROXY header is written at the start of a TCP stream"},
	{"member upstream_tls", route(`[":53"]`, `[{address: "h:53"}, {address: "h:54", upstream_tls: {}}]`, "protocol: udp"), 4, 54, "upstream_tls: not on a udp route's upstream: pier originates TLS over TCP only (no DTLS)"},
	{"check without expect", udpRoute("health_check: {send: x}"), 6, 19, "health_check: " + udpCheckNeeds},
	{"check without send", udpRoute("health_check: {expect: x}"), 6, 19, "health_check: " + udpCheckNeeds},
	{"check with nothing", udpRoute("health_check: {}"), 6, 19, "health_check: " + udpCheckNeeds},
	{"check tls", udpRoute("health_check: {send: x, expect: y, tls: true}"), 6, 40, "tls: not in a udp route's health_check: a udp check sends one datagram and reads one"},
	{"check send_proxy", udpRoute("health_check: {send: x, expect_regexp: y, send_proxy: none}"), 6, 47, "send_proxy: not in a udp route's health_check"},
	{"idle_timeout never", udpRoute("idle_timeout: 0s"), 6, 19, "idle_timeout: 0 (never) is refused on a udp route: a flow ends only when idle (or after responses), and flows that never end would fill max_flows"},
	{"max_flows zero", udpRoute("max_flows: 0"), 6, 16, `max_flows: "0" is not a whole number from 1 to 1048576`},
	{"max_flows too many", udpRoute("max_flows: 1048577"), 6, 16, `max_flows: "1048577" is not a whole number from 1 to 1048576`},
	{"responses negative", udpRoute("responses: -1"), 6, 16, `responses: "-1" is not a whole number of 0 or more`},
	{"tracked fewer than flows", udpRoute("max_flows: 100000\n    limits: {per_client: {max_connections: 2}}"), 6, 16,
		"max_tracked: 65536 is less than the route's max_flows, 100000: clients with live flows are never dropped from the table"},
	{"filter on streams only", udpRoute("filters: [test_datagrams, test_streams_only]"), 6, 31, `filter "test_streams_only" does not work on datagrams (udp routes)`},
	{"protocol unknown", route(`[":53"]`, `[{address: "h:53"}]`, "protocol: sctp"), 5, 15, `protocol: "sctp" is not one of tcp, udp`},
	{"responses on tcp", route(`[":53"]`, `[{address: "h:53"}]`, "responses: 1"), 5, 5, "responses: only on a udp route (protocol: udp)"},
	{"max_flows on tcp", route(`[":53"]`, `[{address: "h:53"}]`, "protocol: tcp", "max_flows: 10"), 6, 5, "max_flows: only on a udp route (protocol: udp)"},
	{"datagram-only filter on tcp", route(`[":53"]`, `[{address: "h:53"}]`, "filters: [test_datagram_only]"), 5, 15, `filter "test_datagram_only" works only on udp routes`},
	{"two udp routes on one address", `routes:
  - {name: a, listen: ":53", protocol: udp, upstreams: [{address: "h:53"}]}
  - {name: b, listen: "127.0.0.1:53", protocol: udp, upstreams: [{address: "h:53"}]}
`, 3, 23, `listen: "127.0.0.1:53" overlaps ":53" of route "a" (line 2); udp routes cannot share an address`},
}

// udpRoute is a udp route on :53 with extra fields from line 6.
func udpRoute(extra string) string {
	return route(`[":53"]`, `[{address: "h:53"}]`, "protocol: udp", extra)
}

// Every protocol rule is reported alone, at its node, in its words.
func TestUDPErrorPositions(t *testing.T) {
	for _, tc := range udpErrorCases {
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

// A tcp route and a udp route may take one address (port 0 included);
// the servers' addresses collide only with tcp routes'.
func TestUDPSharesAddressWithTCP(t *testing.T) {
	for _, doc := range []string{
		"routes:\n  - {name: a, listen: \":53\", upstreams: [{address: \"h:53\"}]}\n  - {name: b, listen: \":53\", protocol: udp, upstreams: [{address: \"h:53\"}]}\n",
		"routes:\n  - {name: a, listen: \"127.0.0.1:0\", protocol: udp, upstreams: [{address: \"h:53\"}]}\n  - {name: b, listen: \"127.0.0.1:0\", protocol: udp, upstreams: [{address: \"h:53\"}]}\n",
		"admin: {listen: \"127.0.0.1:9901\"}\nroutes:\n  - {name: a, listen: \":9901\", protocol: udp, upstreams: [{address: \"h:53\"}]}\n",
	} {
		if _, err := Parse("f", []byte(doc)); err != nil {
			t.Errorf("%v\n%s", err, doc)
		}
	}
}

// Check takes a udp Route built in code with only what it needs: zero
// idle timeout and max_flows stand for "not written" (a file refuses
// zero there), the tcp fields are left zero; a tcp field set is refused
// in the file's words.
func TestCheckUDP(t *testing.T) {
	cfg := &Config{Routes: []Route{{Name: "dns", Protocol: UDP, Listen: []string{"127.0.0.1:0"}, Upstreams: []Upstream{{Address: "127.0.0.1:53"}}, Responses: 1}}}
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if r.IdleTimeout != DefaultUDPIdleTimeout || r.MaxFlows != DefaultMaxFlows || r.Responses != 1 || r.Retries != 0 || r.ConnectTimeout != 0 || r.HalfCloseTimeout != 0 {
		t.Errorf("checked udp route %+v", r)
	}
	if err := Check(cfg); err != nil {
		t.Errorf("a checked udp config does not check again: %v", err)
	}
	for name, c := range map[string]struct {
		change func(*Route)
		want   string
	}{
		"retries":          {func(r *Route) { r.Retries = 2 }, `route "dns": retries: not on a udp route`},
		"max_connections":  {func(r *Route) { r.MaxConnections = 2 }, `route "dns": max_connections: not on a udp route: use max_flows`},
		"half close":       {func(r *Route) { r.HalfCloseTimeout = time.Second }, `route "dns": half_close_timeout: not on a udp route`},
		"max_flows on tcp": {func(r *Route) { r.Protocol = "" }, `route "dns": responses: only on a udp route (protocol: udp)`},
		"check":            {func(r *Route) { r.HealthCheck = &HealthCheck{Send: "x"} }, `route "dns": health_check: ` + udpCheckNeeds},
	} {
		r := Route{Name: "dns", Protocol: UDP, Listen: []string{"127.0.0.1:0"}, Upstreams: []Upstream{{Address: "127.0.0.1:53"}}, Responses: 1}
		c.change(&r)
		err := Check(&Config{Routes: []Route{r}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// 'pier forward -udp' is the file's protocol: udp, and a tcp-only flag
// with it is refused at the flag.
func TestFromCommandLineUDP(t *testing.T) {
	got, err := FromCommandLine("forward", []Setting{
		{Key: "protocol", Text: "udp", Place: "flag -udp"},
		{Key: "listen", Text: "127.0.0.1:5353", Place: "argument 1"},
		{Key: "upstream", Text: "10.0.0.1:53", Place: "argument 2"},
		{Key: "responses", Text: "1", Place: "flag -responses"},
		{Key: "max_flows", Text: "500", Place: "flag -max-flows"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse("", []byte(`routes:
  - name: forward
    protocol: udp
    listen: ["127.0.0.1:5353"]
    upstreams: [{address: "10.0.0.1:53"}]
    responses: 1
    max_flows: 500
`))
	if err != nil {
		t.Fatal(err)
	}
	clearPositions(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("command line differs from the file (-file +command line):\n%s", d)
	}
	_, err = FromCommandLine("forward", []Setting{
		{Key: "listen", Text: "127.0.0.1:5353", Place: "argument 1"},
		{Key: "upstream", Text: "10.0.0.1:53", Place: "argument 2"},
		{Key: "max_connections", Text: "5", Place: "flag -max-connections"},
		{Key: "protocol", Text: "udp", Place: "flag -udp"},
		{Key: "retries", Text: "1", Place: "flag -retries"},
	})
	wantErr := "flag -max-connections: not on a udp route: use max_flows to cap the route's flows\n" +
		"flag -retries: not on a udp route: a flow's member is chosen once"
	if err == nil || !strings.HasPrefix(err.Error(), wantErr) {
		t.Errorf("got %v\nwant %s...", err, wantErr)
	}
}
