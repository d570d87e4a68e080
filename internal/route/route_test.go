package route

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/tlsconf"
)

// TestNewTableGroupsRoutes pins how routes share listen addresses: a route
// without a Match owns its address (a second route there is refused, as
// always), routes that all have a Match form one group with one listener,
// and on port 0 sharing routes are one key while others get their own.
func TestNewTableGroupsRoutes(t *testing.T) {
	a := &Route{Name: "a", Listen: []string{"127.0.0.1:9000", "127.0.0.1:0"}}
	b := &Route{Name: "b", Listen: []string{"127.0.0.1:9000"}}
	if _, err := NewTable([]*Route{a, b}, Global{}); err == nil {
		t.Error("two routes without match on one address: no error")
	}
	sni := &Route{Name: "sni", Listen: []string{"127.0.0.1:0"}, Match: &Match{SNI: []string{"db.example.com"}}}
	def := &Route{Name: "def", Listen: []string{"127.0.0.1:0"}, Match: &Match{Default: true}}
	if _, err := NewTable([]*Route{sni, &Route{Name: "plain", Listen: []string{"127.0.0.1:9001"}},
		&Route{Name: "x", Listen: []string{"127.0.0.1:9001"}, Match: &Match{Default: true}}}, Global{}); err == nil {
		t.Error("a matched route on a plain route's address: no error")
	}
	tb, err := NewTable([]*Route{a, sni, def}, Global{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tb.Listens()); n != 3 {
		t.Errorf("%d listens, want 3 (a's two, one shared)", n)
	}
	g := tb.Group(Key("sni", true, "127.0.0.1:0"))
	if g == nil || len(g.Routes) != 2 || !g.NeedsHello || g.Key != "*|127.0.0.1:0" {
		t.Fatalf("shared group %+v", g)
	}
	if rt, i := g.Choose(netip.MustParseAddr("127.0.0.1"), nil); rt != def || rt.KeyName(i) != "default" {
		t.Errorf("no hello chose %v key %d, want the default", rt, i)
	}
	ga := tb.Group(Key("a", false, "127.0.0.1:9000"))
	if rt, i := ga.Choose(netip.MustParseAddr("127.0.0.1"), nil); rt != a || i != -1 || rt.KeyName(i) != "" {
		t.Errorf("plain group chose %v key %d", rt, i)
	}
	if tb.Lookup("127.0.0.1:9000") != a || tb.Lookup(Key("a", false, "127.0.0.1:0")) != a {
		t.Error("Lookup of a's keys is not a")
	}
}

// TestKeyNames pins the names of match keys, in Choose's index order.
func TestKeyNames(t *testing.T) {
	m := &Match{SNI: []string{"*.example.com"}, ALPN: []string{"h2"},
		Source: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Default: true}
	want := []string{"sni:*.example.com", "alpn:h2", "source:10.0.0.0/8", "default"}
	got := m.KeyNames()
	if len(got) != len(want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("key %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// chooseGroup is the group of the routes given, all on one shared address.
func chooseGroup(t testing.TB, routes ...*Route) *Group {
	t.Helper()
	for _, r := range routes {
		r.Listen = []string{"127.0.0.1:0"}
	}
	tb, err := NewTable(routes, Global{})
	if err != nil {
		t.Fatal(err)
	}
	return tb.Group(Key("", true, "127.0.0.1:0"))
}

func pfx(list ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range list {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// TestChoose pins the precedence of plan §6, one criterion at a time:
// exact SNI beats the longest wildcard, which beats a shorter one and no
// SNI criterion; ALPN goes by the client's order; the longest source
// prefix wins (IPv4, IPv4-mapped and IPv6 clients); ties go to the first
// route; the default takes what nothing else matches. Each case names
// the route and the key that must choose it.
func TestChoose(t *testing.T) {
	routes := []*Route{
		{Name: "exact", Match: &Match{SNI: []string{"db.example.com"}}},
		{Name: "wild", Match: &Match{SNI: []string{"other.test", "*.example.com"}}},
		{Name: "wild-deep", Match: &Match{SNI: []string{"*.eu.example.com"}}},
		{Name: "exact-h2", Match: &Match{SNI: []string{"db.example.com"}, ALPN: []string{"h2"}}},
		{Name: "h2", Match: &Match{ALPN: []string{"h2"}}},
		{Name: "pg", Match: &Match{ALPN: []string{"acme-tls/1", "postgresql"}}},
		{Name: "net10", Match: &Match{Source: pfx("10.0.0.0/8")}},
		{Name: "net10-16", Match: &Match{Source: pfx("192.0.2.0/24", "10.1.0.0/16")}},
		{Name: "v6", Match: &Match{Source: pfx("2001:db8::/32")}},
		{Name: "v6-64", Match: &Match{Source: pfx("2001:db8:1:2::/64")}},
		{Name: "mapped-form", Match: &Match{Source: pfx("::ffff:198.51.100.0/120")}},
		{Name: "tie-a", Match: &Match{Source: pfx("203.0.113.0/24")}},
		{Name: "tie-b", Match: &Match{Source: pfx("203.0.113.0/24")}},
		{Name: "sni-src", Match: &Match{SNI: []string{"*.corp.test"}, Source: pfx("10.0.0.0/8")}},
		{Name: "fallback", Match: &Match{Default: true}},
	}
	g := chooseGroup(t, routes...)
	hello := func(sni string, alpn ...string) *peek.Hello { return &peek.Hello{ServerName: sni, ALPN: alpn} }
	for _, c := range []struct {
		name   string
		client string
		h      *peek.Hello
		route  string
		key    string
	}{
		{"exact beats wildcard", "127.0.0.1", hello("db.example.com"), "exact", "sni:db.example.com"},
		{"exact+alpn beats exact", "127.0.0.1", hello("db.example.com", "h2"), "exact-h2", "sni:db.example.com"},
		{"exact whose alpn fails: the other exact", "127.0.0.1", hello("db.example.com", "http/1.1"), "exact", "sni:db.example.com"},
		{"wildcard", "127.0.0.1", hello("www.example.com"), "wild", "sni:*.example.com"},
		{"wildcard many labels", "127.0.0.1", hello("a.b.c.example.com"), "wild", "sni:*.example.com"},
		{"longest wildcard", "127.0.0.1", hello("db.eu.example.com"), "wild-deep", "sni:*.eu.example.com"},
		{"wildcard never the bare name", "127.0.0.1", hello("example.com"), "fallback", "default"},
		{"wildcard never a longer label", "127.0.0.1", hello("dbexample.com"), "fallback", "default"},
		{"sni beats alpn", "127.0.0.1", hello("www.example.com", "h2"), "wild", "sni:*.example.com"},
		{"alpn alone", "127.0.0.1", hello("", "h2"), "h2", "alpn:h2"},
		{"alpn client's first", "127.0.0.1", hello("x.test", "postgresql", "h2"), "pg", "alpn:postgresql"},
		{"alpn client's first, other order", "127.0.0.1", hello("x.test", "h2", "postgresql"), "h2", "alpn:h2"},
		{"alpn beats source", "10.1.2.3", hello("x.test", "h2"), "h2", "alpn:h2"},
		{"source", "10.9.9.9", nil, "net10", "source:10.0.0.0/8"},
		{"longest source", "10.1.9.9", nil, "net10-16", "source:10.1.0.0/16"},
		{"longest source, mapped client", "::ffff:10.1.9.9", hello("x.test"), "net10-16", "source:10.1.0.0/16"},
		{"source v6", "2001:db8:ffff::1", nil, "v6", "source:2001:db8::/32"},
		{"longest source v6", "2001:db8:1:2:3:4:5:6", nil, "v6-64", "source:2001:db8:1:2::/64"},
		{"v6 with a zone", "2001:db8:1:2::1%eth0", nil, "v6-64", "source:2001:db8:1:2::/64"},
		{"v4 client, prefix in the mapped form", "198.51.100.9", nil, "mapped-form", "source:::ffff:198.51.100.0/120"},
		{"tie: the first route", "203.0.113.5", nil, "tie-a", "source:203.0.113.0/24"},
		{"sni and source both", "10.0.0.1", hello("a.corp.test"), "sni-src", "sni:*.corp.test"},
		{"sni matches, source fails", "192.168.0.1", hello("a.corp.test"), "fallback", "default"},
		{"no hello", "127.0.0.1", nil, "fallback", "default"},
		{"hello without sni or alpn", "127.0.0.1", hello(""), "fallback", "default"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt, i := g.Choose(netip.MustParseAddr(c.client), c.h)
			if rt == nil {
				t.Fatalf("no route, want %s", c.route)
			}
			if rt.Name != c.route || rt.KeyName(i) != c.key {
				t.Errorf("chose %s by %q, want %s by %q", rt.Name, rt.KeyName(i), c.route, c.key)
			}
		})
	}
}

// TestChooseNoDefault pins no_route: without a default route, a client
// nothing matches gets nil, and a route alone on its address with a Match
// takes only what matches.
func TestChooseNoDefault(t *testing.T) {
	g := chooseGroup(t, &Route{Name: "a", Match: &Match{SNI: []string{"a.test"}}},
		&Route{Name: "v6", Match: &Match{Source: pfx("::1/128")}})
	if rt, i := g.Choose(netip.MustParseAddr("127.0.0.1"), &peek.Hello{ServerName: "b.test"}); rt != nil || i != -1 {
		t.Errorf("chose %v %d, want no route", rt, i)
	}
	if rt, _ := g.Choose(netip.MustParseAddr("::1"), nil); rt == nil || rt.Name != "v6" {
		t.Errorf("::1 chose %v", rt)
	}
	alone := chooseGroup(t, &Route{Name: "only", Match: &Match{ALPN: []string{"h2"}}})
	if rt, _ := alone.Choose(netip.MustParseAddr("127.0.0.1"), nil); rt != nil {
		t.Error("a lone matched route took a client that did not match")
	}
}

// TestNewTableRefusesTwoDefaults is NewTable's defence of check's rule.
func TestNewTableRefusesTwoDefaults(t *testing.T) {
	_, err := NewTable([]*Route{
		{Name: "a", Listen: []string{":443"}, Match: &Match{Default: true}},
		{Name: "b", Listen: []string{":443"}, Match: &Match{Default: true, SNI: []string{"b.test"}}},
	}, Global{})
	if err == nil {
		t.Error("two default routes on one address: no error")
	}
}

// TestChooseAllocatesNothing pins that Choose allocates nothing.
func TestChooseAllocatesNothing(t *testing.T) {
	g := benchGroup(t)
	h := &peek.Hello{ServerName: "svc19.example.com", ALPN: []string{"h2", "http/1.1"}}
	a := netip.MustParseAddr("10.3.4.5")
	if n := testing.AllocsPerRun(100, func() { g.Choose(a, h) }); n != 0 {
		t.Errorf("Choose allocates %v times", n)
	}
}

// benchGroup is 32 routes: 20 exact names, 5 wildcards, 3 ALPN, 3 source
// and a default.
func benchGroup(t testing.TB) *Group {
	var routes []*Route
	for i := range 20 {
		routes = append(routes, &Route{Name: fmt.Sprintf("svc%d", i), Match: &Match{SNI: []string{fmt.Sprintf("svc%d.example.com", i)}}})
	}
	for i := range 5 {
		routes = append(routes, &Route{Name: fmt.Sprintf("wild%d", i), Match: &Match{SNI: []string{fmt.Sprintf("*.zone%d.example.com", i)}}})
	}
	for _, p := range []string{"h2", "postgresql", "imap"} {
		routes = append(routes, &Route{Name: "alpn-" + p, Match: &Match{ALPN: []string{p}}})
	}
	for _, p := range []string{"10.0.0.0/8", "10.3.0.0/16", "2001:db8::/32"} {
		routes = append(routes, &Route{Name: "src-" + p, Match: &Match{Source: pfx(p)}})
	}
	routes = append(routes, &Route{Name: "default", Match: &Match{Default: true}})
	return chooseGroup(t, routes...)
}

// BenchmarkChoose is one choice among 32 routes: an exact name (the
// last), a wildcard, a source-only client.
func BenchmarkChoose(b *testing.B) {
	g := benchGroup(b)
	a := netip.MustParseAddr("10.3.4.5")
	for _, c := range []struct {
		name string
		h    *peek.Hello
	}{
		{"exact", &peek.Hello{ServerName: "svc19.example.com", ALPN: []string{"h2", "http/1.1"}}},
		{"wildcard", &peek.Hello{ServerName: "a.zone4.example.com"}},
		{"source", nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rt, _ := g.Choose(a, c.h); rt == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}

// Routes of one group may differ in TLS: SNI chooses the route before
// anything is decrypted, and the chosen route's own TLS (or none) is what
// the session gets: one name terminated, another passed through.
func TestGroupRoutesMayDifferInTLS(t *testing.T) {
	srv := new(tlsconf.Server) // only its identity matters here
	term := &Route{Name: "term", Listen: []string{":443"}, Match: &Match{SNI: []string{"app.test"}}, TLS: srv, HandshakeTimeout: time.Second}
	pass := &Route{Name: "pass", Listen: []string{":443"}, Match: &Match{SNI: []string{"db.test"}}}
	g := chooseGroup(t, term, pass)
	client := netip.MustParseAddr("127.0.0.1")
	if rt, _ := g.Choose(client, &peek.Hello{ServerName: "app.test"}); rt != term || rt.TLS != srv || rt.HandshakeTimeout != time.Second {
		t.Errorf("app.test went to %v", rt)
	}
	if rt, _ := g.Choose(client, &peek.Hello{ServerName: "db.test"}); rt != pass || rt.TLS != nil {
		t.Errorf("db.test went to %v", rt)
	}
}

// TestNewTableKeepsProtocolsApart pins that a tcp and a udp route on one
// address are two listeners with two keys (the tcp key unchanged, so a
// reload from before UDP keeps its listeners), that two udp routes on one
// address are refused like two plain tcp routes, and that a udp route
// with a Match or an unknown protocol is refused.
func TestNewTableKeepsProtocolsApart(t *testing.T) {
	tcp := &Route{Name: "dns-tcp", Listen: []string{"127.0.0.1:5353", "127.0.0.1:0"}}
	udp := &Route{Name: "dns-udp", Protocol: UDP, Listen: []string{"127.0.0.1:5353", "127.0.0.1:0"}}
	tb, err := NewTable([]*Route{tcp, udp}, Global{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Listen{
		{Key: "127.0.0.1:5353", Addr: "127.0.0.1:5353", Protocol: TCP},
		{Key: "dns-tcp|127.0.0.1:0", Addr: "127.0.0.1:0", Protocol: TCP},
		{Key: "udp:127.0.0.1:5353", Addr: "127.0.0.1:5353", Protocol: UDP},
		{Key: "udp:dns-udp|127.0.0.1:0", Addr: "127.0.0.1:0", Protocol: UDP},
	}
	if got := tb.Listens(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listens\n got %v\nwant %v", got, want)
	}
	if tb.Lookup("127.0.0.1:5353") != tcp || tb.Lookup(ProtocolKey(UDP, "dns-udp", false, "127.0.0.1:5353")) != udp {
		t.Error("Lookup does not tell the protocols apart")
	}
	if g := tb.Group("udp:127.0.0.1:5353"); g == nil || g.Protocol != UDP || !g.Routes[0].IsUDP() {
		t.Errorf("udp group %+v", g)
	}
	if g := tb.Group("127.0.0.1:5353"); g == nil || g.Protocol != TCP || g.Routes[0].IsUDP() {
		t.Errorf("tcp group %+v", g)
	}
	if ProtocolKey("", "r", false, ":53") != Key("r", false, ":53") || ProtocolKey(TCP, "r", true, ":0") != "*|:0" {
		t.Error("a tcp key is not Key's")
	}

	for name, routes := range map[string][]*Route{
		"two udp routes": {
			{Name: "a", Protocol: UDP, Listen: []string{"127.0.0.1:5353"}},
			{Name: "b", Protocol: UDP, Listen: []string{"127.0.0.1:5353"}},
		},
		"udp with match": {{Name: "a", Protocol: UDP, Listen: []string{":53"}, Match: &Match{Default: true}}},
		"sctp":           {{Name: "a", Protocol: "sctp", Listen: []string{":53"}}},
	} {
		if _, err := NewTable(routes, Global{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
