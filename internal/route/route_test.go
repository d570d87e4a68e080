package route

import (
	"net/netip"
	"testing"
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
