package pool

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/pierproxy/pier/internal/discover"
	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/testutil/dnstest"
)

func addrs(ms []*Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Addr.String())
	}
	slices.Sort(out)
	return out
}

// A DNS name expands to every address it has; the pool follows its
// answers as they change, keeps the last good set through failures, and
// picks up a name that did not resolve at first.
func TestDiscoverHost(t *testing.T) {
	dns := dnstest.New(t)
	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1"))
	logs, log := testutil.NewLogs()
	p := newPool(t, Config{
		Route: "db", Log: log,
		Members:  []Spec{{Host: "db.test", Port: 5432}, {Host: "late.test", Port: 80}},
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: 30 * time.Millisecond, ResolveTimeout: time.Second,
	}, nil)
	// Looked up before New returned: no wait for the first set.
	if got, want := addrs(p.Members()), []string{"127.0.0.1:5432", "127.0.0.2:5432", "[::1]:5432"}; !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	logs.WaitFor(t, wait, "upstream lookup failed", "late.test:80")

	// The answer changes: new sessions go to the new address.
	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.3"))
	logs.WaitFor(t, wait, "upstream members changed", "member=db.test:5432", "addresses=1")
	if got := addrs(p.Members()); !slices.Equal(got, []string{"127.0.0.3:5432"}) {
		t.Fatalf("members %v after the change, want 127.0.0.3:5432", got)
	}
	for range 10 {
		a := p.Pick(netip.Addr{})
		if a.Member().Addr.String() != "127.0.0.3:5432" {
			t.Fatalf("picked %v after the change", a.Member().Addr)
		}
		a.Done()
	}

	// Lookups fail: the last good set stays.
	dns.Fail("db.test", dnsmessage.RCodeServerFailure)
	logs.WaitFor(t, wait, "lookup failed, keeping the last good set", "db.test")
	if got := addrs(p.Members()); !slices.Equal(got, []string{"127.0.0.3:5432"}) {
		t.Fatalf("after failed lookups, members %v, want the last good set", got)
	}
	dns.Fail("db.test", dnsmessage.RCodeSuccess)

	// A name that did not resolve joins when it does.
	dns.SetA("late.test", 60, netip.MustParseAddr("127.0.0.9"))
	logs.WaitFor(t, wait, "upstream members changed", "member=late.test:80", "addresses=1")
	if got := addrs(p.Members()); !slices.Equal(got, []string{"127.0.0.3:5432", "127.0.0.9:80"}) {
		t.Fatalf("members %v, want the name that resolved late too", got)
	}
}

// An SRV name expands to its targets with their ports and weights; the
// lowest priority is used while any of its members can take a session.
func TestDiscoverSRV(t *testing.T) {
	dns := dnstest.New(t)
	dns.SetA("a.test", 60, netip.MustParseAddr("127.0.0.1"))
	dns.SetA("b.test", 60, netip.MustParseAddr("127.0.0.2"))
	dns.SetA("c.test", 60, netip.MustParseAddr("127.0.0.3"))
	dns.SetSRV("_db._tcp.test", 60,
		dnstest.SRV{Priority: 10, Weight: 1, Port: 1001, Target: "a.test"},
		dnstest.SRV{Priority: 10, Weight: 3, Port: 1002, Target: "b.test"},
		dnstest.SRV{Priority: 20, Weight: 5, Port: 1003, Target: "c.test"},
	)
	p := newPool(t, Config{
		Route:    "db",
		Members:  []Spec{{SRV: "_db._tcp.test"}},
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: time.Hour, ResolveTimeout: time.Second,
	}, nil)
	if got, want := addrs(p.Members()), []string{"127.0.0.1:1001", "127.0.0.2:1002", "127.0.0.3:1003"}; !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	count := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			a := p.Pick(netip.Addr{})
			if a == nil {
				t.Fatal("no member")
			}
			got[a.Member().Addr.String()]++
			a.Done()
		}
		return got
	}
	// Weights 1 and 3 at priority 10; priority 20 unused.
	got := count(400)
	if got["127.0.0.1:1001"] != 100 || got["127.0.0.2:1002"] != 300 || got["127.0.0.3:1003"] != 0 {
		t.Errorf("picks %v, want 100 and 300 by weight, none at the higher priority", got)
	}
	for _, m := range p.Members() {
		if m.Tier == 0 { // priority 10, the lowest: rank 0
			m.v.down.Store(true)
		}
	}
	if got := count(10); got["127.0.0.3:1003"] != 10 {
		t.Errorf("picks %v with priority 10 down, want all on priority 20", got)
	}
	// A weight in the configuration overrides the records'.
	q := newPool(t, Config{
		Members:  []Spec{{SRV: "_db._tcp.test", Weight: 2}},
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: time.Hour, ResolveTimeout: time.Second,
	}, nil)
	for _, m := range q.Members() {
		if m.Weight != 2 {
			t.Errorf("%s: weight %d, want the configured 2", m.Addr, m.Weight)
		}
	}
}

// An SRV name's priorities rank among its own records: its lowest is a
// primary like any address member, whatever its number; and a reload
// during a DNS outage keeps the addresses names had.
func TestDiscoverSRVWithAddressesAndReload(t *testing.T) {
	dns := dnstest.New(t)
	dns.SetA("a.test", 60, netip.MustParseAddr("127.0.0.1"))
	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.5"))
	dns.SetSRV("_db._tcp.test", 60, dnstest.SRV{Priority: 10, Weight: 1, Port: 1001, Target: "a.test"})
	cfg := Config{
		Route:    "db",
		Members:  []Spec{{Host: "127.0.0.9", Port: 9}, {SRV: "_db._tcp.test"}, {Host: "db.test", Port: 5432}},
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: time.Hour, ResolveTimeout: time.Second,
	}
	p := newPool(t, cfg, nil)
	got := map[string]int{}
	for range 300 {
		a := p.Pick(netip.Addr{})
		got[a.Member().Addr.String()]++
		a.Done()
	}
	if got["127.0.0.9:9"] != 100 || got["127.0.0.1:1001"] != 100 || got["127.0.0.5:5432"] != 100 {
		t.Errorf("picks %v, want 100 each: an SRV record at priority 10 is a primary", got)
	}
	// DNS goes away; a reload keeps what the names had.
	dns.Fail("_db._tcp.test", dnsmessage.RCodeServerFailure)
	dns.Drop("db.test", true)
	q := newPool(t, cfg, p)
	if got, want := addrs(q.Members()), []string{"127.0.0.1:1001", "127.0.0.5:5432", "127.0.0.9:9"}; !slices.Equal(got, want) {
		t.Errorf("members after a reload during a DNS outage: %v, want %v", got, want)
	}
}
