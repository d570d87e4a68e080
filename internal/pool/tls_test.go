package pool

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/discover"
	"github.com/pierproxy/pier/internal/health"
	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/testutil/dnstest"
	"github.com/pierproxy/pier/internal/tlsconf"
	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
)

func newClient(t *testing.T, s tlsconf.ClientSettings) *tlsconf.Client {
	t.Helper()
	_, log := testutil.NewLogs()
	c, err := tlsconf.NewClient(s, log)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Each member gets the TLS configuration of its own spec's client, or
// else the route's, for its configured host:port; an attempt reports
// the member it is on, a retry the next one's.
func TestMemberTLSFromSpecOrRoute(t *testing.T) {
	ca := tlstest.NewCA(t)
	route := newClient(t, tlsconf.ClientSettings{CA: ca.CertFile})
	own := newClient(t, tlsconf.ClientSettings{CA: ca.CertFile, ServerName: "own.example"})
	ms := specs("10.0.0.1:443", "10.0.0.2:443", "10.0.0.3:443")
	ms[1].TLS = own
	p := newPool(t, Config{Route: "r", Members: ms, UpstreamTLS: route, Retries: 2, Balance: RoundRobin}, nil)
	want := map[string]*tls.Config{
		"10.0.0.1:443": route.Config("10.0.0.1:443"),
		"10.0.0.2:443": own.Config("10.0.0.2:443"),
		"10.0.0.3:443": route.Config("10.0.0.3:443"),
	}
	for _, m := range p.Members() {
		if m.TLS == nil || m.TLS != want[m.Addr.String()] {
			t.Errorf("%s: TLS %p, want %p", m.Addr, m.TLS, want[m.Addr.String()])
		}
	}
	if got := want["10.0.0.2:443"].ServerName; got != "own.example" {
		t.Errorf("member's own server name %q", got)
	}
	a := p.Pick(netip.Addr{})
	if a == nil {
		t.Fatal("no member")
	}
	defer a.Done()
	if a.UpstreamTLS() != a.Member().TLS {
		t.Error("the attempt's TLS is not its member's")
	}
	addr, _, ok := a.Retry(errRefused)
	if !ok || a.UpstreamTLS() != want[addr.String()] {
		t.Errorf("after a retry to %v the attempt's TLS is not that member's", addr)
	}

	// No client anywhere: plain members, and a nil from the attempt.
	q := newPool(t, Config{Route: "plain", Members: specs("10.0.0.1:1")}, nil)
	b := q.Pick(netip.Addr{})
	if b == nil || b.UpstreamTLS() != nil || q.Members()[0].TLS != nil {
		t.Error("a pool without upstream TLS gave members a TLS config")
	}
	b.Done()
	none := &Attempt{}
	if none.UpstreamTLS() != nil {
		t.Error("an attempt on no member has TLS")
	}
}

// A name's addresses share one configuration (one session cache), named
// by the host; an SRV member's are named by each target and port, which
// its certificate is for.
func TestMemberTLSNamesHostAndSRVTarget(t *testing.T) {
	dns := dnstest.New(t)
	dns.SetA("a.test", 60, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"))
	dns.SetA("b.test", 60, netip.MustParseAddr("127.0.0.3"))
	dns.SetSRV("_db._tcp.test", 60, dnstest.SRV{Priority: 1, Weight: 1, Port: 2001, Target: "b.test"})
	ca := tlstest.NewCA(t)
	c := newClient(t, tlsconf.ClientSettings{CA: ca.CertFile})
	p := newPool(t, Config{
		Route: "db", Members: []Spec{{Host: "a.test", Port: 1001}, {SRV: "_db._tcp.test"}}, UpstreamTLS: c,
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: time.Hour, ResolveTimeout: time.Second,
	}, nil)
	got := map[string]*tls.Config{}
	for _, m := range p.Members() {
		got[m.Addr.String()] = m.TLS
	}
	if len(got) != 3 || got["127.0.0.1:1001"] != c.Config("a.test:1001") || got["127.0.0.2:1001"] != c.Config("a.test:1001") ||
		got["127.0.0.3:2001"] != c.Config("b.test:2001") {
		t.Fatalf("members' TLS: %v", got)
	}
	if sn := got["127.0.0.3:2001"].ServerName; sn != "b.test" {
		t.Errorf("SRV member verifies %q, want its target b.test", sn)
	}
}

// With CheckTLS the active check handshakes with each member's own
// configuration: a member whose certificate it trusts comes up, one it
// does not stays down, and the log says why.
func TestCheckTLSUsesMemberConfig(t *testing.T) {
	ca, other := tlstest.NewCA(t), tlstest.NewCA(t)
	leaf := ca.Leaf(t, tlstest.ECDSA, "127.0.0.1")
	member := func(c *net.TCPConn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{leaf.TLS(t)}})
		c.SetDeadline(time.Now().Add(wait))
		buf := make([]byte, 6)
		if _, err := io.ReadFull(tc, buf); err != nil {
			return
		}
		tc.Write([]byte("+PONG\r\n"))
		io.Copy(io.Discard, tc)
	}
	good := testutil.NewUpstream(t, member).Addr()
	bad := testutil.NewUpstream(t, member).Addr()
	ms := specs(good, bad)
	ms[1].TLS = newClient(t, tlsconf.ClientSettings{CA: other.CertFile})
	l, log := testutil.NewLogs()
	p := newPool(t, Config{
		Route: "tls", Members: ms, Log: log, UpstreamTLS: newClient(t, tlsconf.ClientSettings{CA: ca.CertFile}),
		Check:         &health.Check{Timeout: time.Second, Send: []byte("PING\r\n"), Expect: []byte("+PONG")},
		CheckTLS:      true,
		CheckInterval: 20 * time.Millisecond, Rise: 1, Fall: 1,
	}, nil)
	l.WaitFor(t, wait, "upstream member down", bad, "tls handshake", "certificate signed by unknown authority")
	deadline := time.Now().Add(wait)
	for {
		st := p.Status()
		var goodUp, badDown bool
		for _, m := range st {
			switch m.Addr.String() {
			case good:
				goodUp = !m.Down && m.ChecksPassed > 0 && m.LastCheckError == ""
			case bad:
				badDown = m.Down
			}
		}
		if goodUp && badDown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %+v", st)
		}
		time.Sleep(10 * time.Millisecond) // polling the checker's verdicts, with a deadline
	}
	// A reload that turns CheckTLS off is another check: verdicts start
	// over.
	if sameCheck(&p.cfg, &Config{Check: p.cfg.Check, CheckInterval: p.cfg.CheckInterval, Rise: 1, Fall: 1}) {
		t.Error("a check with TLS and one without are the same")
	}
}
