package discover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/pierproxy/pier/internal/testutil/dnstest"
)

// testCtx bounds one lookup of a test: long enough for loopback, short
// enough that a hang fails the test rather than the run.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// ep is an endpoint as a lookup of host returns it.
func ep(addr string, port uint16, target string) Endpoint {
	return Endpoint{Addr: netip.AddrPortFrom(ip(addr), port), Target: target}
}

func srvEp(addr string, port uint16, prio, weight int, target string) Endpoint {
	return Endpoint{Addr: netip.AddrPortFrom(ip(addr), port), Priority: prio, Weight: weight, Target: target}
}

func checkEndpoints(t *testing.T, got, want []Endpoint) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("endpoints:\n got %v\nwant %v", got, want)
	}
}

func TestServersHostReturnsEveryAddressSortedWithSmallestTTL(t *testing.T) {
	s := dnstest.New(t)
	r := Servers([]string{s.Addr()})
	tests := []struct {
		name    string
		setup   func(name string)
		want    []Endpoint
		wantTTL time.Duration
	}{
		{
			name: "A only",
			setup: func(n string) {
				s.SetA(n, 60, ip("192.0.2.2"), ip("192.0.2.1"))
			},
			want:    []Endpoint{ep("192.0.2.1", 25, "a-only.example"), ep("192.0.2.2", 25, "a-only.example")},
			wantTTL: 60 * time.Second,
		},
		{
			name:    "AAAA only",
			setup:   func(n string) { s.SetA(n, 20, ip("2001:db8::1")) },
			want:    []Endpoint{ep("2001:db8::1", 25, "aaaa-only.example")},
			wantTTL: 20 * time.Second,
		},
		{
			name: "A and AAAA",
			setup: func(n string) {
				s.SetA(n, 30, ip("2001:db8::9"), ip("192.0.2.9"))
			},
			want:    []Endpoint{ep("192.0.2.9", 25, "both.example"), ep("2001:db8::9", 25, "both.example")},
			wantTTL: 30 * time.Second,
		},
		{
			name:    "TTL 0 reads as unknown",
			setup:   func(n string) { s.SetA(n, 0, ip("192.0.2.10")) },
			want:    []Endpoint{ep("192.0.2.10", 25, "ttl0.example")},
			wantTTL: 0,
		},
	}
	hosts := []string{"a-only.example", "aaaa-only.example", "both.example", "ttl0.example"}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup(hosts[i])
			got, ttl, err := r.Host(testCtx(t), hosts[i], 25)
			if err != nil {
				t.Fatal(err)
			}
			checkEndpoints(t, got, tt.want)
			if ttl != tt.wantTTL {
				t.Errorf("TTL %v, want %v", ttl, tt.wantTTL)
			}
			if n := s.Queries(hosts[i]); n != 2 {
				t.Errorf("%d queries, want 2 (A and AAAA)", n)
			}
		})
	}
}

// Names are case-insensitive (RFC 4343) and the final dot is optional.
func TestServersHostNamesAreCaseInsensitive(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("DB.Example.", 60, ip("192.0.2.1"))
	got, _, err := Servers([]string{s.Addr()}).Host(testCtx(t), "db.EXAMPLE", 5432)
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, got, []Endpoint{ep("192.0.2.1", 5432, "db.EXAMPLE")})
}

func TestHostIPLiteralNeedsNoQuery(t *testing.T) {
	s := dnstest.New(t)
	for _, r := range []Resolver{Servers([]string{s.Addr()}), systemOn(s)} {
		for _, lit := range []string{"192.0.2.7", "2001:db8::7", "::ffff:192.0.2.8"} {
			got, ttl, err := r.Host(testCtx(t), lit, 80)
			if err != nil {
				t.Fatalf("%s: %v", lit, err)
			}
			want := netip.AddrPortFrom(ip(lit).Unmap(), 80)
			if len(got) != 1 || got[0].Addr != want || ttl != 0 {
				t.Errorf("%s: got %v TTL %v, want %v TTL 0", lit, got, ttl, want)
			}
			if n := s.Queries(lit); n != 0 {
				t.Errorf("%s: %d queries, want none", lit, n)
			}
		}
	}
}

// A CNAME chain in the answer is followed to its end, and the TTL is the
// smallest along it: the alias may change sooner than the address.
func TestServersHostFollowsCNAMEChain(t *testing.T) {
	s := dnstest.New(t)
	s.SetCNAME("www.example", 300, "lb.example")
	s.SetCNAME("lb.example", 45, "lb.region.example")
	s.SetA("lb.region.example", 120, ip("192.0.2.20"))
	got, ttl, err := Servers([]string{s.Addr()}).Host(testCtx(t), "www.example", 443)
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, got, []Endpoint{ep("192.0.2.20", 443, "www.example")})
	if ttl != 45*time.Second {
		t.Errorf("TTL %v, want 45s (the CNAME's)", ttl)
	}
}

func TestServersHostCNAMELoopIsBadReply(t *testing.T) {
	s := dnstest.New(t)
	s.SetCNAME("a.example", 60, "b.example")
	s.SetCNAME("b.example", 60, "a.example")
	_, _, err := Servers([]string{s.Addr()}).Host(testCtx(t), "a.example", 80)
	if !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), "CNAME chain") {
		t.Fatalf("err = %v, want ErrBadReply for the CNAME chain", err)
	}
}

// SRV expands every target to its addresses with the record's port,
// weight and priority. The Additional section saves a lookup when present;
// a target missing from it is looked up; a target that does not exist,
// and the "." target, are left out.
func TestServersSRVExpandsTargets(t *testing.T) {
	s := dnstest.New(t)
	s.SetSRV("_smtp._tcp.example", 300,
		dnstest.SRV{Priority: 10, Weight: 60, Port: 2525, Target: "mx1.example"},
		dnstest.SRV{Priority: 10, Weight: 40, Port: 2526, Target: "mx1.example"},
		dnstest.SRV{Priority: 20, Weight: 0, Port: 25, Target: "backup.example"},
		dnstest.SRV{Priority: 30, Weight: 5, Port: 25, Target: "gone.example"},
		dnstest.SRV{Priority: 40, Weight: 5, Port: 25, Target: "."},
	)
	s.SetA("mx1.example", 200, ip("192.0.2.1"), ip("2001:db8::1"))
	// Behind a CNAME, so dnstest leaves it out of the Additional section.
	s.SetCNAME("backup.example", 100, "backup.region.example")
	s.SetA("backup.region.example", 90, ip("192.0.2.3"))

	got, ttl, err := Servers([]string{s.Addr()}).SRV(testCtx(t), "_smtp._tcp.example")
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, got, []Endpoint{
		srvEp("192.0.2.1", 2525, 10, 60, "mx1.example"),
		srvEp("192.0.2.1", 2526, 10, 40, "mx1.example"),
		srvEp("2001:db8::1", 2525, 10, 60, "mx1.example"),
		srvEp("2001:db8::1", 2526, 10, 40, "mx1.example"),
		srvEp("192.0.2.3", 25, 20, 0, "backup.example"),
	})
	if ttl != 90*time.Second {
		t.Errorf("TTL %v, want 90s (backup's address)", ttl)
	}
	if n := s.Queries("mx1.example"); n != 0 {
		t.Errorf("mx1.example queried %d times, want 0: its addresses came in the Additional section", n)
	}
	if n := s.Queries("backup.example"); n != 2 {
		t.Errorf("backup.example queried %d times, want 2 (A and AAAA)", n)
	}
}

func TestServersSRVWithoutUsableTargetIsNotFound(t *testing.T) {
	s := dnstest.New(t)
	s.SetSRV("_x._tcp.example", 60, dnstest.SRV{Port: 1, Target: "gone.example"}, dnstest.SRV{Port: 1, Target: "."})
	_, _, err := Servers([]string{s.Addr()}).SRV(testCtx(t), "_x._tcp.example")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestServersNotFoundSaysWhy(t *testing.T) {
	s := dnstest.New(t)
	s.SetSRV("_only-srv._tcp.example", 60, dnstest.SRV{Port: 1, Target: "x.example"})
	s.SetA("only-a.example", 60, ip("192.0.2.1"))
	r := Servers([]string{s.Addr()})
	tests := []struct {
		name   string
		lookup func(context.Context) error
		want   string
	}{
		{"unknown host", func(ctx context.Context) error {
			_, _, err := r.Host(ctx, "nope.example", 80)
			return err
		}, "nope.example: NXDOMAIN"},
		{"host without addresses", func(ctx context.Context) error {
			_, _, err := r.Host(ctx, "_only-srv._tcp.example", 80)
			return err
		}, "no A or AAAA records"},
		{"unknown SRV name", func(ctx context.Context) error {
			_, _, err := r.SRV(ctx, "_nope._tcp.example")
			return err
		}, "NXDOMAIN"},
		{"name without SRV records", func(ctx context.Context) error {
			_, _, err := r.SRV(ctx, "only-a.example")
			return err
		}, "no SRV records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.lookup(testCtx(t))
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrNotFound saying %q", err, tt.want)
			}
		})
	}
}

func TestServersServerFailureIsAnError(t *testing.T) {
	for _, rcode := range []dnsmessage.RCode{dnsmessage.RCodeServerFailure, dnsmessage.RCodeRefused} {
		t.Run(rcodeName(rcode), func(t *testing.T) {
			s := dnstest.New(t)
			s.SetA("db.example", 60, ip("192.0.2.1"))
			s.Fail("db.example", rcode)
			_, _, err := Servers([]string{s.Addr()}).Host(testCtx(t), "db.example", 80)
			if !errors.Is(err, ErrServerFailure) || !strings.Contains(err.Error(), rcodeName(rcode)) {
				t.Fatalf("err = %v, want ErrServerFailure saying %s", err, rcodeName(rcode))
			}
		})
	}
}

// A silent server holds a lookup no longer than its context allows.
func TestServersSilentServerIsBoundedByContext(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 60, ip("192.0.2.1"))
	s.Drop("db.example", true)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := Servers([]string{s.Addr()}).Host(ctx, "db.example", 80)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("lookup took %v with a 200ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

// A reply with the TC bit set is asked again over TCP (RFC 7766), whether
// the server truncates on purpose or the answer exceeds 4096 bytes.
func TestServersTruncatedReplyIsAskedOverTCP(t *testing.T) {
	t.Run("forced", func(t *testing.T) {
		s := dnstest.New(t)
		s.SetA("db.example", 60, ip("192.0.2.1"))
		s.ForceTruncate(true)
		got, _, err := Servers([]string{s.Addr()}).Host(testCtx(t), "db.example", 80)
		if err != nil {
			t.Fatal(err)
		}
		checkEndpoints(t, got, []Endpoint{ep("192.0.2.1", 80, "db.example")})
		if n := s.Queries("db.example"); n != 4 {
			t.Errorf("%d queries, want 4 (A and AAAA, UDP then TCP)", n)
		}
	})
	t.Run("too large", func(t *testing.T) {
		s := dnstest.New(t)
		// 300 A records take about 4.8 KB: more than the 4096 offered.
		var addrs []netip.Addr
		var want []Endpoint
		for i := range 300 {
			a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			addrs = append(addrs, a)
			want = append(want, Endpoint{Addr: netip.AddrPortFrom(a, 80), Target: "big.example"})
		}
		s.SetA("big.example", 60, addrs...)
		got, _, err := Servers([]string{s.Addr()}).Host(testCtx(t), "big.example", 80)
		if err != nil {
			t.Fatal(err)
		}
		checkEndpoints(t, got, want)
	})
}

// Replies with another id or another question are ignored (RFC 5452): the
// client keeps waiting for its own.
func TestServersIgnoresRepliesThatDoNotMatch(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 60, ip("192.0.2.1"), ip("2001:db8::1"))
	s.Spoof("db.example", true)
	got, _, err := Servers([]string{s.Addr()}).Host(testCtx(t), "db.example", 80)
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, got, []Endpoint{ep("192.0.2.1", 80, "db.example"), ep("2001:db8::1", 80, "db.example")})
}

// Servers are tried in order: one that refuses the connection or fails
// passes the query on; one that answers ends it.
func TestServersTriesTheNextServer(t *testing.T) {
	closed := closedUDPPort(t)
	failing := dnstest.New(t)
	failing.Fail("db.example", dnsmessage.RCodeServerFailure)
	good := dnstest.New(t)
	good.SetA("db.example", 60, ip("192.0.2.1"))
	unused := dnstest.New(t)

	got, _, err := Servers([]string{closed, failing.Addr(), good.Addr(), unused.Addr()}).Host(testCtx(t), "db.example", 80)
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, got, []Endpoint{ep("192.0.2.1", 80, "db.example")})
	if f, g, u := failing.Queries("db.example"), good.Queries("db.example"), unused.Queries("db.example"); f != 2 || g != 2 || u != 0 {
		t.Errorf("queries: failing %d, good %d, unused %d; want 2, 2, 0", f, g, u)
	}

	// NXDOMAIN is an answer: the next server is not asked.
	_, _, err = Servers([]string{good.Addr(), unused.Addr()}).Host(testCtx(t), "nope.example", 80)
	if !errors.Is(err, ErrNotFound) || unused.Queries("nope.example") != 0 {
		t.Errorf("err = %v, %d queries to the second server; want ErrNotFound and none", err, unused.Queries("nope.example"))
	}

	// When all fail, the error says how the last one did.
	_, _, err = Servers([]string{closed, failing.Addr()}).Host(testCtx(t), "db.example", 80)
	if !errors.Is(err, ErrServerFailure) {
		t.Errorf("err = %v, want ErrServerFailure", err)
	}
}

func TestServersWithoutServersIsAnError(t *testing.T) {
	if _, _, err := Servers(nil).Host(testCtx(t), "db.example", 80); err == nil {
		t.Fatal("lookup without servers succeeded")
	}
}

// closedUDPPort returns a loopback address where nothing listens, so a
// query there is refused at once (ICMP port unreachable).
func closedUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// When both families fail, the error is not-found only if both are; else
// it is the failure that may pass, so a watcher retries soon.
func TestHostErrorPrefersTheFailureThatMayPass(t *testing.T) {
	nx := &notFoundError{name: "h.", nxdomain: true}
	nodata := &notFoundError{name: "h.", types: "A"}
	servfail := fmt.Errorf("%w: SERVFAIL", ErrServerFailure)
	timeout := fmt.Errorf("lookup: %w", context.DeadlineExceeded)
	tests := []struct {
		name       string
		err4, err6 error
		want       error
		notFound   bool
	}{
		{"both no records", nodata, nodata, nil, true},
		{"NXDOMAIN", nx, nx, nil, true},
		{"A not found, AAAA fails", nodata, servfail, servfail, false},
		{"A fails, AAAA not found", timeout, nodata, timeout, false},
		{"both fail", timeout, servfail, timeout, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := hostError("h", tt.err4, tt.err6)
			if got := errors.Is(err, ErrNotFound); got != tt.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v", err, got)
			}
			if tt.want != nil && err != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if err := hostError("h", nx, nodata); !strings.Contains(err.Error(), "NXDOMAIN") {
		t.Errorf("err = %v, want it to say NXDOMAIN", err)
	}
}

func TestLookupDispatchesOnSource(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 60, ip("192.0.2.1"))
	s.SetSRV("_db._tcp.example", 60, dnstest.SRV{Port: 5432, Target: "db.example"})
	r := Servers([]string{s.Addr()})
	host, _, err := Lookup(testCtx(t), r, Source{Host: "db.example", Port: 6432})
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, host, []Endpoint{ep("192.0.2.1", 6432, "db.example")})
	srv, _, err := Lookup(testCtx(t), r, Source{SRV: "_db._tcp.example"})
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, srv, []Endpoint{ep("192.0.2.1", 5432, "db.example")})
	if _, _, err := Lookup(testCtx(t), r, Source{}); err == nil {
		t.Error("empty source looked up")
	}
}
