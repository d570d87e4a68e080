package udp_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/udp"
)

// Every datagram arrives whole and alone, both ways: sizes from empty to
// the largest IPv4 payload (65507), over IPv4, IPv6 and a dual-stack
// listener reached over IPv4 (the client's address IPv4-mapped there).
func TestDatagramBoundariesKeptExactly(t *testing.T) {
	sizes := []int{0, 1, 2, 63, 512, 1200, 1472, 1473, 4096, 8972, 9000, 16384, 32768, 65000, 65507}
	for _, tc := range []struct{ name, memberNet, member, listen, dial string }{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "udp6", "[::1]:0", "[::1]:0", "::1"},
		{"dual-stack", "udp4", "127.0.0.1:0", ":0", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMember(t, tc.memberNet, tc.member, echo)
			recs := newRecords()
			s := server(t, recs, udpRoute(t, "r", tc.listen, pool.RoundRobin, m.addr))
			to := netip.AddrPortFrom(netip.MustParseAddr(tc.dial), addr(t, s, "r").Port())
			c := client(t, "", to)
			for _, n := range sizes {
				d := bytes.Repeat([]byte{byte(n)}, n)
				for i := range d {
					d[i] = byte(i * 7)
				}
				got := exchange(t, c, d)
				if !bytes.Equal(got, d) {
					t.Fatalf("a %d-byte datagram came back as %d bytes (or changed)", n, len(got))
				}
			}
			eventually(t, "every datagram counted each way", func() bool {
				st := s.Stats()
				return st.DatagramsToUpstream == uint64(len(sizes)) && st.DatagramsToClient == uint64(len(sizes))
			})
			if st := s.Stats(); st.Dropped != (udp.Dropped{}) {
				t.Errorf("dropped %+v", st.Dropped)
			}
			if s.Live() != 1 {
				t.Errorf("Live = %d, want 1 flow", s.Live())
			}
		})
	}
}

// 1000 clients at once: each gets its own replies, none another's.
func TestRepliesReachTheirClients(t *testing.T) {
	const clients = 1000
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	s := server(t, recs, udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr))
	to := addr(t, s, "r")
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		conns[i] = client(t, "", to)
	}
	for round := range 3 {
		for i, c := range conns {
			if _, err := fmt.Fprintf(c, "client %d round %d", i, round); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i, c := range conns {
			wg.Go(func() {
				buf := make([]byte, 100)
				c.SetReadDeadline(time.Now().Add(wait))
				n, err := c.Read(buf)
				if err != nil {
					errs <- fmt.Errorf("client %d: %v", i, err)
					return
				}
				if want := fmt.Sprintf("client %d round %d", i, round); string(buf[:n]) != want {
					errs <- fmt.Errorf("client %d got %q, want %q", i, buf[:n], want)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	if s.Live() != clients {
		t.Errorf("Live = %d, want %d", s.Live(), clients)
	}
}

// A flow with no datagram either way for idle_timeout ends, reason
// idle_timeout; one that keeps talking does not.
func TestFlowsExpireAtIdleTimeout(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	rt.IdleTimeout = 200 * time.Millisecond
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "r"))
	start := time.Now()
	exchange(t, c, []byte("q"))
	rec := recs.next(t)
	if rec.Reason != session.IdleTimeout {
		t.Fatalf("reason %v, want idle_timeout", rec.Reason)
	}
	if el := time.Since(start); el < rt.IdleTimeout {
		t.Errorf("ended after %v, before its idle timeout %v", el, rt.IdleTimeout)
	}
	if rec.UDP == nil || rec.UDP.ToUpstream != 1 || rec.UDP.ToClient != 1 || rec.ToUpstream != 1 || rec.ToClient != 1 {
		t.Errorf("record counts %+v %+v, want one datagram of 1 byte each way", rec, rec.UDP)
	}
	if rec.Upstream != m.addr.String() || rec.Client != c.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("record upstream %s client %s", rec.Upstream, rec.Client)
	}
	if s.Live() != 0 {
		t.Errorf("Live = %d after the flow ended", s.Live())
	}
	// A new datagram opens a new flow.
	exchange(t, c, []byte("again"))
	if s.Live() != 1 {
		t.Errorf("Live = %d, want a new flow", s.Live())
	}
}

// responses: 1 ends a flow as soon as its one reply is delivered (a DNS
// exchange); a second reply from the member never reaches the client.
func TestResponsesOneEndsTheFlowAfterOneReply(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", func(d []byte) [][]byte {
		return [][]byte{append([]byte("answer "), d...), []byte("late second answer")}
	})
	recs := newRecords()
	rt := udpRoute(t, "dns", "127.0.0.1:0", pool.RoundRobin, m.addr)
	rt.Responses = 1
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "dns"))
	for i := range 3 {
		q := fmt.Sprintf("query %d", i)
		if got := string(exchange(t, c, []byte(q))); got != "answer "+q {
			t.Fatalf("got %q", got)
		}
		rec := recs.next(t)
		if rec.Reason != session.Responses || rec.UDP.ToClient != 1 || rec.UDP.ToUpstream != 1 {
			t.Fatalf("record %v %+v, want responses after one reply", rec.Reason, rec.UDP)
		}
	}
	if !silent(c, 100*time.Millisecond) {
		t.Error("a reply past responses: 1 reached the client")
	}
	if st := s.Stats(); st.Flows != 3 || s.Live() != 0 {
		t.Errorf("flows %d live %d, want 3 ended, none live", st.Flows, s.Live())
	}
}

// max_flows: the next client's datagram opens no flow, and is counted
// (reason limit); once a flow ends, a place is free again.
func TestMaxFlowsRefusesTheNextClient(t *testing.T) {
	// The member answers "q" three times, "a" and "b" once each: with
	// responses: 2 a and b's flows stay (each owed one more reply).
	m := newMember(t, "udp4", "127.0.0.1:0", func(d []byte) [][]byte {
		if string(d) == "q" {
			return [][]byte{d, d, d}
		}
		return [][]byte{d}
	})
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	rt.MaxFlows = 2
	rt.Responses = 2
	s := server(t, recs, rt)
	to := addr(t, s, "r")
	a, b, c := client(t, "", to), client(t, "", to), client(t, "", to)
	exchange(t, a, []byte("a"))
	exchange(t, b, []byte("b"))
	if _, err := c.Write([]byte("c")); err != nil {
		t.Fatal(err)
	}
	rec := recs.next(t)
	if rec.Reason != session.Limit || rec.Route != "r" {
		t.Fatalf("record %v on %q, want limit on r", rec.Reason, rec.Route)
	}
	if st := s.Stats(); st.Refused != 1 {
		t.Errorf("Refused = %d, want 1", st.Refused)
	}
	if tot := rt.Stats.Totals(); tot.Refused[0] != 1 { // stats.RefusedLimit
		t.Errorf("route refusals %v, want 1 limit", tot.Refused)
	}
	// a's flow ends once its replies are all in (responses: 2 for each
	// of its two queries, four in all): c gets a place.
	exchange(t, a, []byte("q"))
	if rec := recs.next(t); rec.Reason != session.Responses || rec.UDP.ToUpstream != 2 || rec.UDP.ToClient != 4 {
		t.Fatalf("reason %v after %d queries, %d replies", rec.Reason, rec.UDP.ToUpstream, rec.UDP.ToClient)
	}
	if got := string(exchange(t, c, []byte("c again"))); got != "c again" {
		t.Fatalf("got %q", got)
	}
}

// An allow/deny list refuses a client's flows (reason denied), as TCP's.
func TestDeniedClientOpensNoFlow(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	rt.ACL = admit.NewACL(nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")})
	s := server(t, recs, rt)
	to := addr(t, s, "r")
	denied := client(t, "127.0.0.2:0", to)
	if _, err := denied.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if rec := recs.next(t); rec.Reason != session.Denied {
		t.Fatalf("reason %v, want denied", rec.Reason)
	}
	if got := string(exchange(t, client(t, "127.0.0.3:0", to), []byte("ok"))); got != "ok" {
		t.Fatalf("got %q", got)
	}
	if s.Live() != 1 {
		t.Errorf("Live = %d", s.Live())
	}
}

// A member whose port is closed answers with ICMP port unreachable: the
// flow ends (upstream_unreachable) and the pool's passive check counts a
// failed dial against the member.
func TestUnreachableMemberEndsTheFlow(t *testing.T) {
	gone := newMember(t, "udp4", "127.0.0.1:0", echo)
	gone.close()
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, gone.addr)
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "r"))
	if _, err := c.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	rec := recs.next(t)
	if rec.Reason != session.Unreachable || rec.Err == nil {
		t.Fatalf("reason %v (%v), want upstream_unreachable", rec.Reason, rec.Err)
	}
	if st := rt.Pool.Status(); st[0].ConnectFailures != 1 {
		t.Errorf("member's connect failures %d, want 1", st[0].ConnectFailures)
	}
	if s.Live() != 0 {
		t.Errorf("Live = %d", s.Live())
	}
}

// hash balancing keeps a client (its address) on its member across flows,
// and spreads different clients over the members.
func TestHashKeepsAClientOnItsMember(t *testing.T) {
	var addrs []netip.AddrPort
	for i := range 3 {
		addrs = append(addrs, newMember(t, "udp4", "127.0.0.1:0", tagged(fmt.Sprintf("m%d:", i))).addr)
	}
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.Hash, addrs...)
	rt.Responses = 1 // every exchange is a flow of its own
	s := server(t, recs, rt)
	to := addr(t, s, "r")
	used := map[string]bool{}
	for i := 2; i < 14; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		first := ""
		for j := range 3 {
			c := client(t, ip+":0", to) // a new port: a new flow
			got := string(exchange(t, c, []byte("x")))
			member := got[:3]
			if j == 0 {
				first = member
			} else if member != first {
				t.Fatalf("client %s went to %s, then %s", ip, first, member)
			}
			recs.next(t)
		}
		used[first] = true
	}
	if len(used) < 2 {
		t.Errorf("12 client addresses all went to %v", used)
	}
}

// A re-apply with the same listen address keeps the socket and its live
// flows, on their member; new flows take the new table's route.
func TestApplyKeepsFlows(t *testing.T) {
	a := newMember(t, "udp4", "127.0.0.1:0", tagged("a:"))
	b := newMember(t, "udp4", "127.0.0.1:0", tagged("b:"))
	recs := newRecords()
	s := server(t, recs, udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, a.addr))
	to := addr(t, s, "r")
	old := client(t, "", to)
	if got := string(exchange(t, old, []byte("1"))); got != "a:1" {
		t.Fatalf("got %q", got)
	}
	apply(t, s, udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, b.addr))
	if got := addr(t, s, "r"); got != to {
		t.Fatalf("address moved from %s to %s", to, got)
	}
	if got := string(exchange(t, old, []byte("2"))); got != "a:2" {
		t.Errorf("the live flow got %q after the re-apply, want its member a", got)
	}
	if got := string(exchange(t, client(t, "", to), []byte("3"))); got != "b:3" {
		t.Errorf("a new flow got %q, want the new route's member b", got)
	}
	if !recs.none() || s.Live() != 2 {
		t.Errorf("a flow ended in the re-apply (live %d)", s.Live())
	}
	// A table without the route closes its address: its flows end.
	apply(t, s, udpRoute(t, "other", "127.0.0.1:0", pool.RoundRobin, b.addr))
	for range 2 {
		if rec := recs.next(t); rec.Reason != session.Shutdown {
			t.Errorf("reason %v, want shutdown", rec.Reason)
		}
	}
	if len(s.Addrs("r")) != 0 || len(s.Addrs("other")) != 1 {
		t.Errorf("addrs r %v other %v", s.Addrs("r"), s.Addrs("other"))
	}
}

// Apply is all-or-nothing: an address it cannot open leaves the table in
// force and every address it opened in this call closed.
func TestApplyFailureChangesNothing(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	s := server(t, recs, udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr))
	to := addr(t, s, "r")
	taken := m.addr.String() // a port held by a socket without SO_REUSEPORT
	tab, err := route.NewTable([]*route.Route{
		udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr),
		udpRoute(t, "new", "127.0.0.1:0", pool.RoundRobin, m.addr),
		udpRoute(t, "bad", taken, pool.RoundRobin, m.addr),
	}, route.Global{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(tab); err == nil {
		t.Fatal("Apply took a table with an address in use")
	}
	if len(s.Addrs("new")) != 0 {
		t.Error("the failed Apply left an address open")
	}
	if got := string(exchange(t, client(t, "", to), []byte("still"))); got != "still" {
		t.Fatalf("got %q", got)
	}
}

// Shutdown ends every flow (reason shutdown) and stops every goroutine
// (TestMain's goleak checks the last).
func TestShutdownEndsFlows(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	s, err := udp.New(udp.Options{Sockets: 2, Finish: recs.finish, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr))
	to := addr(t, s, "r")
	for range 5 {
		exchange(t, client(t, "", to), []byte("x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if rec := recs.next(t); rec.Reason != session.Shutdown {
			t.Errorf("reason %v", rec.Reason)
		}
	}
	if s.Live() != 0 || s.Stats().Flows != 5 {
		t.Errorf("live %d flows %d", s.Live(), s.Stats().Flows)
	}
	if err := s.Apply(mustTable(t)); err == nil {
		t.Error("Apply after Shutdown worked")
	}
}

func mustTable(t *testing.T) *route.Table {
	tab, err := route.NewTable(nil, route.Global{})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// A datagram larger than the member's path allows (an IPv6 client's
// 65527 bytes to an IPv4 member, whose limit is 65507) is dropped and
// counted as too big, never cut to fit; the flow goes on.
func TestTooBigDatagramCountedNotTruncated(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "[::1]:0", pool.RoundRobin, m.addr)
	rt.IdleTimeout = 300 * time.Millisecond
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "r"))
	if _, err := c.Write(make([]byte, 65527)); err != nil {
		t.Fatal(err)
	}
	if got := exchange(t, c, []byte("small")); string(got) != "small" {
		t.Fatalf("got %d bytes, want the small datagram alone", len(got))
	}
	if st := s.Stats(); st.Dropped.TooBig != 1 || st.DatagramsToUpstream != 1 {
		t.Errorf("stats %+v, want one too big, one forwarded", st)
	}
	rec := recs.next(t)
	if rec.UDP.Dropped != 1 || rec.UDP.ToUpstream != 1 || rec.ToUpstream != 5 {
		t.Errorf("record %+v bytes %d", rec.UDP, rec.ToUpstream)
	}
}
