package proxy_test

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/testutil"
)

// dialFrom dials route's listener from the local address from.
func dialFrom(t *testing.T, srv *proxy.Server, route, from string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", srv.Addrs(route)[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(wait))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitOpen waits until n sessions of rt are open.
func waitOpen(t *testing.T, rt *route.Route, n int64) {
	t.Helper()
	waitTotals(t, rt, "sessions open", func(s stats.Totals) bool { return s.States[session.Open] == n })
}

func listAll(t *testing.T, srv *proxy.Server, m relay.Match) []relay.SessionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	page, matched, partial := srv.Sessions(ctx, m, 0, 1000)
	if partial || matched != len(page) {
		t.Fatalf("matched %d, %d listed, partial %v", matched, len(page), partial)
	}
	return page
}

// Paging through 300 held sessions 100 at a time gives every session
// once, in ID order, while matched counts them all.
func TestSessionsPagesEveryIDOnce(t *testing.T) {
	hold := testutil.NewUpstream(t, testutil.Hold)
	rt := newRoute(t, "r", hold.Addr())
	srv, _ := startCounted(t, rt)
	clients := make(map[netip.AddrPort]bool)
	for range 300 {
		c := dial(t, srv, "r")
		clients[c.LocalAddr().(*net.TCPAddr).AddrPort()] = true
	}
	waitOpen(t, rt, 300)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var after uint64
	seen := make(map[uint64]bool)
	pages := 0
	for {
		page, matched, partial := srv.Sessions(ctx, relay.Match{}, after, 100)
		if partial || matched != 300 {
			t.Fatalf("page %d: matched %d, partial %v; want 300, false", pages, matched, partial)
		}
		if len(page) == 0 {
			break
		}
		pages++
		if len(page) > 100 {
			t.Fatalf("page %d holds %d sessions, limit 100", pages, len(page))
		}
		for _, s := range page {
			if s.ID <= after || seen[s.ID] {
				t.Fatalf("id %d after %d (seen before: %v)", s.ID, after, seen[s.ID])
			}
			seen[s.ID] = true
			after = s.ID
			if !clients[s.Client] || s.Route != "r" || s.Upstream != hold.Addr() || s.Dialed.String() != hold.Addr() ||
				s.State != session.Open || s.Start.IsZero() || s.Filters != nil {
				t.Fatalf("session %+v", s)
			}
		}
	}
	if len(seen) != 300 || pages != 3 {
		t.Errorf("%d sessions on %d pages, want 300 on 3", len(seen), pages)
	}
}

// Match selects by route, by member and by client prefix; a listed
// session's bytes and state are its live ones.
func TestSessionsMatch(t *testing.T) {
	up1 := testutil.NewUpstream(t, testutil.Hold)
	up2 := testutil.NewUpstream(t, testutil.Hold)
	a := poolRoute(t, "a", pool.Config{}, up1.Addr(), up2.Addr())
	silent := newHeldUpstream(t) // keeps b's session half-closed
	b := newRoute(t, "b", silent.Addr())
	srv, _ := startCounted(t, a, b)
	for range 4 {
		dialFrom(t, srv, "a", "127.0.0.1")
	}
	dialFrom(t, srv, "a", "127.0.0.2").Write([]byte("hello"))
	half := dialFrom(t, srv, "b", "127.0.0.1")
	half.CloseWrite()
	waitOpen(t, a, 5)
	waitTotals(t, b, "b half-closed", func(s stats.Totals) bool { return s.States[session.HalfClosedClient] == 1 })
	waitTotals(t, a, "5 bytes to a's upstream", func(s stats.Totals) bool { return s.ToUpstream == 5 })

	// Round robin starts anywhere: count each member's sessions in the
	// whole list, which the member matches must give exactly.
	onMember := map[string]int{}
	for _, s := range listAll(t, srv, relay.Match{Route: "a"}) {
		onMember[s.Upstream]++
	}
	if onMember[up1.Addr()]+onMember[up2.Addr()] != 5 || onMember[up2.Addr()] < 2 || onMember[up1.Addr()] < 2 {
		t.Fatalf("a's sessions by member: %v", onMember)
	}
	for _, tc := range []struct {
		name string
		m    relay.Match
		want int
		each func(relay.SessionInfo) bool
	}{
		{"all", relay.Match{}, 6, nil},
		{"route a", relay.Match{Route: "a"}, 5, func(s relay.SessionInfo) bool { return s.Route == "a" }},
		{"route b", relay.Match{Route: "b"}, 1, func(s relay.SessionInfo) bool { return s.State == session.HalfClosedClient }},
		{"no route", relay.Match{Route: "c"}, 0, nil},
		{"member up2", relay.Match{Member: up2.Addr()}, onMember[up2.Addr()], func(s relay.SessionInfo) bool { return s.Upstream == up2.Addr() }},
		{"member up1 on a", relay.Match{Route: "a", Member: up1.Addr()}, onMember[up1.Addr()], func(s relay.SessionInfo) bool { return s.Upstream == up1.Addr() }},
		{"client 127.0.0.2/32", relay.Match{Client: netip.MustParsePrefix("127.0.0.2/32")}, 1,
			func(s relay.SessionInfo) bool {
				return s.Client.Addr() == netip.MustParseAddr("127.0.0.2") && s.ToUpstream == 5
			}},
		{"client 127.0.0.0/8", relay.Match{Client: netip.MustParsePrefix("127.0.0.0/8")}, 6, nil},
		{"client ::1/128", relay.Match{Client: netip.MustParsePrefix("::1/128")}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := listAll(t, srv, tc.m)
			if len(page) != tc.want {
				t.Fatalf("%d sessions, want %d: %+v", len(page), tc.want, page)
			}
			for _, s := range page {
				if tc.each != nil && !tc.each(s) {
					t.Errorf("session %+v", s)
				}
			}
		})
	}
	// b's upstream never closes: end its session rather than let
	// Shutdown wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if n, _ := srv.EndSessions(ctx, relay.Match{Route: "b"}, true); n != 1 {
		t.Errorf("ended %d of b's sessions, want 1", n)
	}
}

// Ending a session by id with close: both peers read EOF, and the access
// log says reason=admin.
func TestEndSessionClose(t *testing.T) {
	up := newHeldUpstream(t)
	rt := newRoute(t, "r", up.Addr())
	srv, recs := startCounted(t, rt)
	c := dial(t, srv, "r")
	u := up.next(t)
	page := listAll(t, srv, relay.Match{})
	if len(page) != 1 {
		t.Fatalf("%d sessions listed", len(page))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if found, partial := srv.EndSession(ctx, page[0].ID, false); !found || partial {
		t.Fatalf("found %v, partial %v", found, partial)
	}
	for name, conn := range map[string]*net.TCPConn{"client": c, "upstream": u} {
		if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("%s read %d, %v; want EOF", name, n, err)
		}
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "admin")
	if rec["level"] != nil && rec["level"] != "INFO" {
		t.Errorf("logged at %v", rec["level"])
	}
	if tot := rt.Stats.Totals(); tot.Ended[session.Admin] != 1 || tot.States != [session.NumStates]int64{} {
		t.Errorf("ended admin %d, states %v", tot.Ended[session.Admin], tot.States)
	}
	if found, partial := srv.EndSession(ctx, page[0].ID, false); found || partial {
		t.Errorf("ended twice: found %v, partial %v", found, partial)
	}
}

// Ending with reset resets both peers.
func TestEndSessionReset(t *testing.T) {
	up := newHeldUpstream(t)
	rt := newRoute(t, "r", up.Addr())
	srv, recs := startCounted(t, rt)
	c := dial(t, srv, "r")
	u := up.next(t)
	page := listAll(t, srv, relay.Match{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if found, _ := srv.EndSession(ctx, page[0].ID, true); !found {
		t.Fatal("not found")
	}
	for name, conn := range map[string]*net.TCPConn{"client": c, "upstream": u} {
		if _, err := conn.Read(make([]byte, 1)); !testutil.IsReset(err) {
			t.Errorf("%s read %v; want a reset", name, err)
		}
	}
	wantReason(t, recs.Next(t, wait), "admin")
}

// An id no loop holds is not found, and no session is touched.
func TestEndSessionUnknownID(t *testing.T) {
	hold := testutil.NewUpstream(t, testutil.Hold)
	rt := newRoute(t, "r", hold.Addr())
	srv, _ := startCounted(t, rt)
	dial(t, srv, "r")
	waitOpen(t, rt, 1)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	page := listAll(t, srv, relay.Match{})
	if found, partial := srv.EndSession(ctx, page[0].ID+1000, false); found || partial {
		t.Errorf("found %v, partial %v; want false, false", found, partial)
	}
	if n := len(listAll(t, srv, relay.Match{})); n != 1 {
		t.Errorf("%d sessions left, want 1", n)
	}
}

// EndSessions ends the matches and only them.
func TestEndSessionsByRoute(t *testing.T) {
	hold := testutil.NewUpstream(t, testutil.Hold)
	a, b := newRoute(t, "a", hold.Addr()), newRoute(t, "b", hold.Addr())
	srv, recs := startCounted(t, a, b)
	for range 5 {
		dial(t, srv, "a")
	}
	dial(t, srv, "b")
	waitOpen(t, a, 5)
	waitOpen(t, b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if n, partial := srv.EndSessions(ctx, relay.Match{Route: "a"}, false); n != 5 || partial {
		t.Fatalf("ended %d, partial %v; want 5, false", n, partial)
	}
	for range 5 {
		wantReason(t, recs.Next(t, wait), "admin")
	}
	if page := listAll(t, srv, relay.Match{}); len(page) != 1 || page[0].Route != "b" {
		t.Errorf("left %+v, want b's session", page)
	}
}

// Sessions with known bytes, spread over three loops, come back heaviest
// first (bytes each way summed), and paging by offset walks that order;
// by age they come newest first, paged before the last ID.
func TestSessionsByBytesAndByAge(t *testing.T) {
	echo := testutil.NewUpstream(t, testutil.Echo)
	rt := newRoute(t, "r", echo.Addr())
	srv, err := proxy.New(proxy.Options{Log: slog.New(slog.DiscardHandler), Loops: 3})
	if err != nil {
		t.Fatal(err)
	}
	rt.Stats = stats.NewRoute(rt.Name, srv.Loops())
	if err := srv.Apply(table(t, rt)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
	})
	// Session k (opened k-th) echoes sizes[k] bytes: each way that many.
	sizes := []int{700, 100, 1300, 0, 900, 1200, 300, 1100, 500, 200, 1000, 400}
	byClient := make(map[netip.AddrPort]int)
	for _, n := range sizes {
		c := dial(t, srv, "r")
		msg := make([]byte, n)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatal(err)
		}
		byClient[c.LocalAddr().(*net.TCPAddr).AddrPort()] = n
	}
	waitOpen(t, rt, int64(len(sizes)))
	t.Logf("sessions per loop: %v", proxy.LoopSessions(srv))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	var got []int
	for offset := 0; ; offset += 5 {
		page, matched, partial := srv.ListSessions(ctx, relay.Match{}, relay.Paging{Order: relay.ByBytes, Offset: offset, Limit: 5})
		if partial || matched != len(sizes) {
			t.Fatalf("offset %d: matched %d, partial %v", offset, matched, partial)
		}
		if len(page) == 0 {
			break
		}
		for _, s := range page {
			n := byClient[s.Client]
			if s.ToUpstream != int64(n) || s.ToClient != int64(n) {
				t.Errorf("session from %v: %d↑ %d↓ bytes, want %d each way", s.Client, s.ToUpstream, s.ToClient, n)
			}
			got = append(got, n)
		}
	}
	want := slices.Sorted(slices.Values(sizes))
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("by bytes, pages of 5: %v, want %v", got, want)
	}

	var ids []uint64
	var before uint64
	for {
		page, _, _ := srv.ListSessions(ctx, relay.Match{}, relay.Paging{Order: relay.ByAge, Cursor: before, Limit: 5})
		if len(page) == 0 {
			break
		}
		for _, s := range page {
			ids = append(ids, s.ID)
		}
		before = page[len(page)-1].ID
	}
	if len(ids) != len(sizes) || !slices.IsSortedFunc(ids, func(a, b uint64) int { return cmp.Compare(b, a) }) {
		t.Errorf("by age, pages of 5: %v, want every session once, newest first", ids)
	}
}
