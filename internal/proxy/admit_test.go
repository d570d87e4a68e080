package proxy_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/testutil"
)

// countingUpstream is an echo upstream that counts the connections it
// accepted: a refused client must cost it none.
func countingUpstream(t *testing.T) (*testutil.Upstream, *atomic.Int64) {
	var n atomic.Int64
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		n.Add(1)
		testutil.Echo(c)
	})
	return up, &n
}

// startGlobal runs a server for routes under the top level's g.
func startGlobal(t *testing.T, g route.Global, routes ...*route.Route) (*proxy.Server, *testutil.Records) {
	t.Helper()
	recs, log := testutil.NewRecords()
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := route.NewTable(routes, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(tb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, recs
}

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// echoOnce sends msg through c and reads it back: the session is served.
func echoOnce(t *testing.T, c *net.TCPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo read %q, %v; want %q", got, err, msg)
	}
}

// refusedNow reads from c and wants EOF or a reset, with nothing before it.
func refusedNow(t *testing.T, c *net.TCPConn) {
	t.Helper()
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || (err != io.EOF && !testutil.IsReset(err)) {
		t.Fatalf("refused client read %d bytes, %v; want EOF", n, err)
	}
}

// Deny wins over allow, within a route and from the top level over a
// route's allow; a denied client is closed with reason=denied and counted
// where it was denied, and the upstream never sees it.
func TestDenyWinsOverAllow(t *testing.T) {
	for _, tc := range []struct {
		name       string
		global     route.Global
		acl        *admit.ACL
		onListener bool
	}{
		{name: "route", acl: admit.NewACL(prefixes("127.0.0.0/8"), prefixes("127.0.0.1/32"))},
		{name: "top level over route", global: route.Global{ACL: admit.NewACL(nil, prefixes("127.0.0.1/32"))},
			acl: admit.NewACL(prefixes("127.0.0.1/32"), nil), onListener: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, accepted := countingUpstream(t)
			rt := newRoute(t, "acl", up.Addr())
			rt.ACL = tc.acl
			rt.Stats = stats.NewRoute("acl", runtime.GOMAXPROCS(0))
			srv, recs := startGlobal(t, tc.global, rt)
			refusedNow(t, dial(t, srv, "acl"))
			rec := recs.Next(t, wait)
			wantReason(t, rec, "denied")
			if rec["route"] != "acl" || rec["upstream"] != "" {
				t.Errorf("record route %v upstream %v", rec["route"], rec["upstream"])
			}
			ls := srv.ListenerStats()[0]
			byRoute := rt.Stats.Totals().Refused[stats.RefusedDenied]
			if tc.onListener && (ls.Refused[stats.ListenerDenied] != 1 || byRoute != 0) ||
				!tc.onListener && (ls.Refused[stats.ListenerDenied] != 0 || byRoute != 1) {
				t.Errorf("denied counted %d on the listener, %d on the route", ls.Refused[stats.ListenerDenied], byRoute)
			}
			if srv.Stats().Refused != 1 {
				t.Errorf("Stats.Refused = %d, want 1", srv.Stats().Refused)
			}
			if n := accepted.Load(); n != 0 {
				t.Errorf("upstream accepted %d connections for a denied client", n)
			}
		})
	}
}

// TestACLIPv6Listener: an IPv6 client on [::1] is matched by IPv6
// prefixes: allowed by ::1/128, denied when the deny list holds it.
func TestACLIPv6Listener(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		ln.Close()
	}
	for _, deny := range []bool{false, true} {
		up, accepted := countingUpstream(t)
		rt := newRoute(t, "v6", up.Addr())
		rt.Listen = []string{"[::1]:0"}
		rt.ACL = admit.NewACL(prefixes("::1/128"), nil)
		if deny {
			rt.ACL = admit.NewACL(prefixes("::/0"), prefixes("::1/128"))
		}
		srv, recs := startGlobal(t, route.Global{ACL: admit.NewACL(prefixes("10.0.0.0/8", "::1/128"), nil)}, rt)
		c := dial(t, srv, "v6")
		if deny {
			refusedNow(t, c)
			wantReason(t, recs.Next(t, wait), "denied")
			if accepted.Load() != 0 {
				t.Error("upstream saw a denied IPv6 client")
			}
			continue
		}
		echoOnce(t, c, "v6 ok")
		c.CloseWrite()
		io.Copy(io.Discard, c)
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if !strings.HasPrefix(rec["client"].(string), "[::1]:") {
			t.Errorf("client %v, want [::1]:port", rec["client"])
		}
	}
}

// TestDeniedCostsAcceptAndClose floods a top-level deny: every client is
// closed and counted, the upstream accepts none, and the access log
// writes at most the burst of lines (plus what the rate refills), the
// next one saying how many it follows.
func TestDeniedCostsAcceptAndClose(t *testing.T) {
	up, accepted := countingUpstream(t)
	rt := newRoute(t, "flood", up.Addr())
	logs, log := testutil.NewLogs()
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	tb, err := route.NewTable([]*route.Route{rt}, route.Global{ACL: admit.NewACL(nil, prefixes("127.0.0.0/8"))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(tb); err != nil {
		t.Fatal(err)
	}
	const clients = 200
	start := time.Now()
	for range clients {
		c := dial(t, srv, "flood")
		refusedNow(t, c)
		c.Close()
	}
	elapsed := time.Since(start)
	deadline := time.Now().Add(wait)
	for srv.ListenerStats()[0].Refused[stats.ListenerDenied] < clients && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling a counter, bounded
	}
	if n := srv.ListenerStats()[0].Refused[stats.ListenerDenied]; n != clients {
		t.Fatalf("%d denied counted, want %d", n, clients)
	}
	// A refusal is counted before its line is written (or skipped): wait,
	// bounded, until every refusal is one or the other.
	lines := logs.Count("session", "reason=denied")
	for uint64(lines)+srv.Stats().RefusalLogsSuppressed < clients && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling counters, bounded
		lines = logs.Count("session", "reason=denied")
	}
	if most := 100 + 1 + int(elapsed/(100*time.Millisecond)); lines > most || lines < 100 {
		t.Errorf("%d denied lines for %d clients in %v, want 100..%d", lines, clients, elapsed, most)
	}
	if st := srv.Stats(); st.RefusalLogsSuppressed != uint64(clients-lines) || st.Refused != clients {
		t.Errorf("Stats %+v: want %d refused, %d lines suppressed", st, clients, clients-lines)
	}
	// Once the rate refills, a line says how many were skipped.
	for logs.Find("reason=denied", "suppressed=") == "" && time.Now().Before(deadline) {
		refusedNow(t, dial(t, srv, "flood"))
		time.Sleep(20 * time.Millisecond) // pacing the flood below the log's rate, not a wait for pier
	}
	if logs.Find("reason=denied", "suppressed=") == "" {
		t.Error("no line says suppressed=N")
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("upstream accepted %d connections", n)
	}
}

// TestPerClientMaxConnections: the fourth live session of one client is
// refused (client_limit, limit=client_connections), and a close frees a
// place.
func TestPerClientMaxConnections(t *testing.T) {
	for _, global := range []bool{false, true} {
		up, _ := countingUpstream(t)
		rt := newRoute(t, "pc", up.Addr())
		clients := admit.NewClients(admit.ClientLimits{MaxConns: 3, MaxTracked: 100})
		var g route.Global
		limit := "client_connections"
		if global {
			g.Clients = clients
			limit = "global_client_connections"
		} else {
			rt.Clients = clients
		}
		srv, recs := startGlobal(t, g, rt)
		var live []*net.TCPConn
		for range 3 {
			c := dial(t, srv, "pc")
			echoOnce(t, c, "x")
			live = append(live, c)
		}
		c := dial(t, srv, "pc")
		refusedNow(t, c)
		rec := recs.Next(t, wait)
		wantReason(t, rec, "client_limit")
		if rec["limit"] != limit {
			t.Errorf("limit=%v, want %s", rec["limit"], limit)
		}
		live[0].Close()
		wantReason(t, recs.Next(t, wait), "done")
		echoOnce(t, dial(t, srv, "pc"), "freed")
	}
}

// TestPerClientRateBurst: a client may open burst sessions at once, and
// the next is refused (rate_limit, limit=client_rate).
func TestPerClientRateBurst(t *testing.T) {
	up, _ := countingUpstream(t)
	rt := newRoute(t, "rate", up.Addr())
	rt.Clients = admit.NewClients(admit.ClientLimits{PerSecond: 0.001, Burst: 2, MaxTracked: 100})
	srv, recs := startGlobal(t, route.Global{}, rt)
	for range 2 {
		echoOnce(t, dial(t, srv, "rate"), "ok")
	}
	refusedNow(t, dial(t, srv, "rate"))
	rec := recs.Next(t, wait)
	wantReason(t, rec, "rate_limit")
	if rec["limit"] != "client_rate" {
		t.Errorf("limit=%v, want client_rate", rec["limit"])
	}
}

// TestAcceptRates: a route's and the top level's accept rates refuse
// what exceeds their burst, each named in the record's limit.
func TestAcceptRates(t *testing.T) {
	for _, global := range []bool{false, true} {
		up, accepted := countingUpstream(t)
		rt := newRoute(t, "ar", up.Addr())
		var g route.Global
		want := "route_rate"
		if global {
			g.Rate, want = admit.NewRate(0.001, 1), "global_rate"
		} else {
			rt.Rate = admit.NewRate(0.001, 1)
		}
		srv, recs := startGlobal(t, g, rt)
		echoOnce(t, dial(t, srv, "ar"), "first")
		refusedNow(t, dial(t, srv, "ar"))
		rec := recs.Next(t, wait)
		wantReason(t, rec, "rate_limit")
		if rec["limit"] != want {
			t.Errorf("limit=%v, want %s", rec["limit"], want)
		}
		if accepted.Load() != 1 {
			t.Errorf("upstream accepted %d, want 1", accepted.Load())
		}
	}
}
