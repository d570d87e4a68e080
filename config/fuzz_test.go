package config

import (
	"bytes"
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"testing"

	"github.com/pierproxy/pier/filter"
)

// FuzzParse: whatever the bytes, Parse does not panic, and returns either
// a configuration that is valid by every rule, or Errors in file order
// whose every entry has a line and column inside the file. An empty file
// is no exception: it is "no routes" at 1:1. A valid configuration
// survives a round trip: Marshal, Parse, Marshal gives the same bytes and
// the same Config.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		good,
		"grace_period: 1s\n" + good,
		"routes:\n  - name: r\n    listen: [':1', '[::1]:2', 'localhost:3']\n    upstreams: [{address: 'h:1'}, {address: '10.0.0.1:2'}]\n    max_connections: 5\n    idle_timeout: 0\n",
		"routes:\n  - &r {name: r, listen: [':1'], upstreams: [{address: 'h:1'}]}\n  - *r\n",
		"routes:\n  - {name: a, listen: &l [':0'], upstreams: &u [{address: 'h:1'}]}\n  - {name: b, listen: *l, upstreams: *u}\n",
		"a: &a [*a]\n",
		"routes: {<<: {}}\n",
		"%YAML 1.1\n---\nroutes: []\n",
		"routes: !!str [a]\n",
		"resolver: {servers: ['10.0.0.2', '[fd00::1]:5353'], interval: 10s, timeout: 1s}\n" +
			"routes:\n  - name: r\n    listen: [':1']\n    balance: least_conn\n" +
			"    upstreams: [{address: 'h:1', weight: 3, max_connections: 9}, {srv: _x._tcp.y, backup: true, drain: true}]\n" +
			"    health_check: {interval: 3s, timeout: 1s, rise: 1, fall: 2, port: 8080, send: \"PING\\r\\n\", expect_regexp: '^\\+PONG'}\n" +
			"    passive_check: {failures: 0, backoff: 1s, max_backoff: 2s}\n" +
			"    retries: 0\n    connect_budget: 9s\n    when_all_down: try_all\n",
		"routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{srv: _a._udp.b., weight: 1000}, {address: '[::1]:1', backup: false}]\n" +
			"    health_check: {send: !!binary AAEC/w==, expect: !!binary /w==}\n    passive_check: {}\n    balance: hash\n",
		good + "admin: {listen: \"127.0.0.1:9901\"}\n",
		good + "admin: {listen: \":9901\", token_file: testdata/admin-token}\n",
		good + "admin: {listen: \"0.0.0.0:9901\"}\n",
		good + "admin: {listen: \"127.0.0.1:1\", token_file: testdata/admin-token-empty}\n",
		"toxiproxy: {}\n",
		"routes: []\ntoxiproxy: {listen: \"[::1]:8474\"}\nadmin: {listen: \"localhost:8474\"}\n",
		"toxiproxy: {listen: \":8474\", allow_remote: true}\n" + good,
		full,
		edgeFull,
		tlsFull,
		udpFull,
		udpRoute("health_check: {send: \"\\x00\", expect: \"\\x01\"}\n    responses: 3\n    max_flows: 1\n    idle_timeout: 1ms"),
		route(`[":1"]`, `[{srv: _a._tcp.b, upstream_tls: {server_name: "::1"}}]`, "upstream_tls: {}", "health_check: {tls: true}", "handshake_timeout: 5m"),
		route(`[":1"]`, `[{address: "h:1"}]`, "tls: {certificates: [{cert: "+tdCert+", key: "+tdKey+"}, {cert: "+tdCert+", key: "+tdKey+"}], min_version: '1.3', alpn: h2}"),
		shared2("127.0.0.1:0", `match: {sni: [a.example.com, "*.b.example.com"], alpn: h2}`, "match: {default: true, source: [\"::1\"]}"),
		"allow: 10.0.0.0/8\ndeny: [\"2001:db8::/32\", 192.0.2.1]\nlimits: {accept_rate: {rate: 10/h}, per_client: {rate: 0.5/s, ipv6_prefix: 48}}\n" + good,
	} {
		f.Add([]byte(s))
	}
	for _, tc := range errorCases {
		f.Add([]byte(tc.doc))
	}
	for _, tc := range edgeErrorCases {
		f.Add([]byte(tc.doc))
	}
	for _, tc := range tlsErrorCases {
		f.Add([]byte(tc.doc))
	}
	for _, tc := range udpErrorCases {
		f.Add([]byte(tc.doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f", data)
		if err != nil {
			checkErrors(t, data, cfg, err)
			return
		}
		checkValid(t, cfg)
		checkRoundTrip(t, cfg)
	})
}

func checkErrors(t *testing.T, data []byte, cfg *Config, err error) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error %v is not a non-empty Errors", err)
	}
	if cfg != nil {
		t.Fatal("a config came back with errors")
	}
	if len(errs) > maxErrors+1 {
		t.Fatalf("%d errors, more than the cap", len(errs))
	}
	// A line past the file's end would point nowhere. YAML breaks lines
	// at \n, \r, \r\n, NEL, LS and PS; counting each counts at most one
	// too many.
	lines := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) +
		bytes.Count(data, []byte("\u0085")) + bytes.Count(data, []byte("\u2028")) + bytes.Count(data, []byte("\u2029"))
	for i, e := range errs {
		if e.File != "f" || e.Line < 1 || e.Col < 1 || e.Line > lines || e.Msg == "" {
			t.Fatalf("error %d is badly placed (file has %d lines): %#v", i, lines, e)
		}
		if i > 0 {
			p := errs[i-1]
			if p.Line > e.Line || p.Line == e.Line && p.Col > e.Col {
				t.Fatalf("errors out of order: %v before %v", p, e)
			}
			if *p == *e {
				t.Fatalf("error reported twice: %v", e)
			}
		}
	}
}

// checkValid checks a parsed config against every rule, stated afresh.
func checkValid(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.File != "f" || len(cfg.Routes) == 0 && cfg.Toxiproxy == nil || cfg.GracePeriod <= 0 {
		t.Fatalf("bad config accepted: %+v", cfg)
	}
	checkServers(t, cfg, true)
	var names, listens, tcpListens []string
	type owner struct {
		route int
		match bool
		udp   bool
	}
	var owners []owner // of each of listens
	for ri, r := range cfg.Routes {
		if !validName(r.Name) || slices.Contains(names, r.Name) {
			t.Fatalf("bad or duplicate name accepted: %q", r.Name)
		}
		names = append(names, r.Name)
		udp := r.Protocol == UDP
		if r.Protocol != TCP && !udp {
			t.Fatalf("route without a protocol accepted: %+v", r)
		}
		if udp {
			checkValidUDP(t, r)
		} else if r.ConnectTimeout <= 0 || r.ConnectBudget <= 0 || r.MaxFlows != 0 || r.Responses != 0 || r.HandshakeTimeout <= 0 {
			t.Fatalf("invalid tcp route accepted: %+v", r)
		}
		if len(r.Listen) == 0 || len(r.Upstreams) == 0 ||
			r.IdleTimeout < 0 || r.HalfCloseTimeout < 0 || r.MaxConnections < 0 || r.Pos.Line < 1 || r.Pos.Col < 1 {
			t.Fatalf("invalid route accepted: %+v", r)
		}
		for _, l := range r.Listen {
			if _, err := parseListen(l); err != nil {
				t.Fatalf("bad listen address accepted: %q: %v", l, err)
			}
			for i, prev := range listens {
				// Routes with a match share an address written alike.
				shared := prev == l && owners[i].route != ri && owners[i].match && r.Match != nil
				if overlaps(prev, l) && !shared && owners[i].udp == udp {
					t.Fatalf("colliding listen addresses accepted: %q and %q", prev, l)
				}
			}
			listens = append(listens, l)
			owners = append(owners, owner{ri, r.Match != nil, udp})
			if !udp {
				tcpListens = append(tcpListens, l)
			}
		}
		if r.HandshakeTimeout < 0 || r.HandshakeTimeout > MaxHandshakeTimeout ||
			r.TLS != nil && (len(r.TLS.Certificates) == 0 || !slices.Contains(tlsVersions, r.TLS.MinVersion) ||
				r.TLS.MinVersion == "1.3" && len(r.TLS.CipherSuites) > 0) {
			t.Fatalf("invalid TLS settings accepted: %+v %+v", r.TLS, r.HandshakeTimeout)
		}
		if h := r.HealthCheck; h != nil && h.TLS && r.UpstreamTLS == nil &&
			slices.ContainsFunc(r.Upstreams, func(u Upstream) bool { return u.UpstreamTLS == nil }) {
			t.Fatalf("TLS health check without upstream_tls accepted: %+v", r)
		}
		if !slices.Contains(balances, r.Balance) || !slices.Contains(whenAllDown, r.WhenAllDown) ||
			r.Retries < 0 || r.Retries > maxRetries {
			t.Fatalf("invalid pool settings accepted: %+v", r)
		}
		if pc := r.PassiveCheck; pc.Failures < 0 || pc.Backoff <= 0 || pc.MaxBackoff < pc.Backoff {
			t.Fatalf("invalid passive check accepted: %+v", pc)
		}
		if h := r.HealthCheck; h != nil {
			_, reErr := regexp.Compile(h.ExpectRegexp)
			if h.Interval <= 0 || h.Timeout <= 0 || h.Timeout > h.Interval || h.Rise < 1 || h.Rise > maxRiseFall ||
				h.Fall < 1 || h.Fall > maxRiseFall || len(h.Expect) > maxCheckRead || reErr != nil ||
				h.Expect != "" && h.ExpectRegexp != "" || h.Pos.Line < 1 || h.Pos.Col < 1 {
				t.Fatalf("invalid health check accepted: %+v", h)
			}
		}
		primary := false
		for _, u := range r.Upstreams {
			var err error
			switch {
			case (u.Address == "") == (u.SRV == ""):
				err = errors.New("not exactly one of address and srv")
			case u.Address != "":
				err = checkUpstream(u.Address)
				if u.Weight < 1 {
					err = errors.New("address member without a weight")
				}
			default:
				err = checkSRV(u.SRV)
			}
			if err != nil || u.Weight < 0 || u.Weight > maxWeight || u.MaxConnections < 0 || u.Pos.Line < 1 || u.Pos.Col < 1 {
				t.Fatalf("bad upstream accepted: %+v: %v", u, err)
			}
			primary = primary || !u.Backup
		}
		if !primary {
			t.Fatalf("route with only backups accepted: %+v", r)
		}
	}
	checkEdge(t, cfg)
	var servers []string
	if cfg.Admin != nil {
		servers = append(servers, cfg.Admin.Listen)
	}
	if cfg.Toxiproxy != nil {
		servers = append(servers, cfg.Toxiproxy.Listen)
	}
	for i, s := range servers {
		for _, l := range append(tcpListens, servers[:i]...) {
			if overlaps(l, s) {
				t.Fatalf("colliding server address accepted: %q and %q", l, s)
			}
		}
	}
	if cfg.Resolver.Interval <= 0 || cfg.Resolver.Timeout <= 0 {
		t.Fatalf("invalid resolver accepted: %+v", cfg.Resolver)
	}
	for _, s := range cfg.Resolver.Servers {
		if ap, err := netip.ParseAddrPort(s); err != nil || ap.Port() == 0 || ap.String() != s {
			t.Fatalf("bad DNS server accepted: %q: %v", s, err)
		}
	}
}

// checkValidUDP checks a udp route against its rules, stated afresh:
// nothing it refuses is set, its flows end, its checks get a reply.
func checkValidUDP(t *testing.T, r Route) {
	t.Helper()
	if r.Retries != 0 || r.ConnectTimeout != 0 || r.ConnectBudget != 0 || r.HalfCloseTimeout != 0 || r.MaxConnections != 0 ||
		r.Match != nil || r.PeekTimeout != 0 || r.ProxyProtocol != nil || r.SendProxy != "" || r.TLS != nil ||
		r.UpstreamTLS != nil || r.HandshakeTimeout != 0 || r.IdleTimeout <= 0 || r.MaxFlows < 1 || r.MaxFlows > MaxMaxFlows || r.Responses < 0 {
		t.Fatalf("invalid udp route accepted: %+v", r)
	}
	for _, u := range r.Upstreams {
		if u.SendProxy != "" || u.UpstreamTLS != nil {
			t.Fatalf("udp member with tcp settings accepted: %+v", u)
		}
	}
	if h := r.HealthCheck; h != nil && (h.Send == "" || h.Expect == "" && h.ExpectRegexp == "" || h.TLS || h.SendProxy != "") {
		t.Fatalf("invalid udp health check accepted: %+v", h)
	}
	if l := r.Limits; l != nil && l.PerClient != nil && l.PerClient.MaxTracked < r.MaxFlows {
		t.Fatalf("per-client table smaller than max_flows accepted: %+v", l.PerClient)
	}
	for _, f := range r.Filters {
		spec, _ := filter.Lookup(f.Name)
		checked, err := spec.Build(f.NewOptions().CheckOnly())
		if _, ok := checked.(filter.DatagramFilter); err != nil || !ok {
			t.Fatalf("filter %s accepted on a udp route: %v", f.Name, err)
		}
		_ = closeChecked(f.Name, checked)
	}
}
