package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/testutil"
)

// clientsAnswer is GET /api/v1/clients' answer, as a client reads it.
type clientsAnswer struct {
	Scope   string `json:"scope"`
	Tracked int    `json:"tracked"`
	Limits  *struct {
		MaxConnections int `json:"max_connections"`
		Tracked        int `json:"tracked"`
	} `json:"limits"`
	Clients []struct {
		Prefix string  `json:"prefix"`
		Live   int     `json:"live"`
		Tokens float64 `json:"tokens"`
	} `json:"clients"`
}

// waitClients polls the route's per-client table until its one client
// has live sessions.
func waitClients(t *testing.T, p *adminPier, route string, live int) clientsAnswer {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var a clientsAnswer
		p.want(200, "GET", "/api/v1/clients?route="+route, "", &a)
		if len(a.Clients) == 1 && a.Clients[0].Live == live {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("clients of %s: %+v, want one with %d live", route, a, live)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A reload that changes a route's per-client max_connections keeps the
// client's live count: with 2 sessions live under a cap of 2, a reload to
// 3 admits exactly one more, not three. The table, its counts and the
// route's view show it through the admin API, and the sessions live
// across the reload keep relaying.
func TestReloadKeepsPerClientCounts(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	doc := func(max int) string {
		return routeDoc(`listen: "127.0.0.1:0"`, oneRoute("db", up.Addr(),
			fmt.Sprintf("    limits: {per_client: {max_connections: %d, rate: 1/h, burst: 1000}}\n", max)))
	}
	p := startAdmin(t, doc(2), Options{})
	addr := p.d.Addrs("db")[0].String()
	a, b := dialEcho(t, addr), dialEcho(t, addr)
	refusedClient(t, addr, "")
	got := waitClients(t, p, "db", 2)
	if got.Scope != "db" || got.Tracked != 1 || got.Clients[0].Prefix != "127.0.0.1/32" || got.Limits == nil || got.Limits.MaxConnections != 2 {
		t.Fatalf("clients %+v", got)
	}
	// The tokens the two admitted took are gone from the bucket (one an
	// hour comes back); the refused one took none.
	if tk := got.Clients[0].Tokens; tk < 997.9 || tk > 998.1 {
		t.Fatalf("tokens %v after 2 admitted of a burst of 1000", tk)
	}

	if err := p.d.Reload(parse(t, doc(3))); err != nil {
		t.Fatal(err)
	}
	if p.d.Addrs("db")[0].String() != addr {
		t.Fatal("the reload moved the listener")
	}
	dialEcho(t, addr)
	refusedClient(t, addr, "")
	roundTrip(t, a) // the sessions live before the reload still relay
	roundTrip(t, b)
	waitClients(t, p, "db", 3)
	waitMetric(t, p, `pier_route_clients_refused_total{route="db",why="client_limit"}`, 2)
	waitMetric(t, p, `pier_route_clients_tracked{route="db"}`, 1)

	var r admin.Route
	p.want(200, "GET", "/api/v1/routes/db", "", &r)
	if r.Limits == nil || r.Limits.PerClient == nil || r.Limits.PerClient.MaxConnections != 3 || r.Limits.PerClient.Tracked != 1 ||
		r.Limits.PerClient.Rate == nil || r.Limits.PerClient.Rate.Burst != 1000 || r.SendProxy != "none" {
		t.Fatalf("route view %+v", r)
	}

	// A reload that regroups clients starts the table over, and says so.
	if err := p.d.Reload(parse(t, strings.Replace(doc(3), "burst: 1000}", "burst: 1000, ipv4_prefix: 24}", 1))); err != nil {
		t.Fatal(err)
	}
	if p.logs.Count("per-client table started over") != 1 {
		t.Fatal("no log line for the table started over")
	}
}

// Without per_client limits a scope answers an empty table; an unknown
// route is a 404.
func TestClientsWithoutTable(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`, oneRoute("db", up.Addr(), "")), Options{})
	var a clientsAnswer
	p.want(200, "GET", "/api/v1/clients", "", &a)
	if a.Scope != "global" || a.Limits != nil || len(a.Clients) != 0 {
		t.Fatalf("global clients %+v", a)
	}
	p.want(404, "GET", "/api/v1/clients?route=nope", "", nil)
}

// refusedClient connects, writes first (which may fail: pier may have
// closed already) and expects pier to close without a byte.
func refusedClient(t *testing.T, addr string, first string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if first != "" {
		c.Write([]byte(first))
	}
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("read %d bytes from a client pier should have refused", n)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("pier kept a client it should have refused")
	}
}

// Every refusal of the edge is counted exactly once, in the series its
// reason names: the route's (route known) or the listener's (before a
// route). Each case refuses n clients and scrapes exactly n, and no
// other refusal of either family.
func TestRefusalsCountedExactly(t *testing.T) {
	const n = 5
	up := testutil.NewUpstream(t, testutil.Echo)
	hold := testutil.NewUpstream(t, testutil.Hold)
	route := func(extra string) string { return oneRoute("r", up.Addr(), extra) }
	for _, tc := range []struct {
		name   string
		top    string // top-level YAML
		routes []string
		first  string // what each refused client writes
		hold   int    // sessions opened (and held) before the refusals
		series string // "route" or "listener" and its why
	}{
		{name: "route denied", routes: []string{route("    deny: [127.0.0.0/8]\n")}, series: "route denied"},
		{name: "top-level denied", top: "allow: [10.0.0.0/8]\n", routes: []string{route("")}, series: "listener denied"},
		{name: "route client_limit", routes: []string{oneRoute("r", hold.Addr(), "    limits: {per_client: {max_connections: 1}}\n")},
			hold: 1, series: "route client_limit"},
		{name: "route rate_limit", routes: []string{oneRoute("r", hold.Addr(), "    limits: {accept_rate: {rate: 1/h, burst: 1}}\n")},
			hold: 1, series: "route rate_limit"},
		{name: "route client rate", routes: []string{oneRoute("r", hold.Addr(), "    limits: {per_client: {rate: 1/h, burst: 1}}\n")},
			hold: 1, series: "route rate_limit"},
		{name: "top-level rate_limit", top: "limits: {accept_rate: {rate: 1/h, burst: 1}}\n",
			routes: []string{oneRoute("r", hold.Addr(), "")}, hold: 1, series: "listener rate_limit"},
		{name: "top-level client_limit", top: "limits: {per_client: {max_connections: 1}}\n",
			routes: []string{oneRoute("r", hold.Addr(), "")}, hold: 1, series: "listener client_limit"},
		{name: "no_route", routes: []string{
			route("    match: {sni: [a.example.com]}\n"),
			oneRoute("s", up.Addr(), "    match: {sni: [b.example.com]}\n"),
		}, first: "GET / HTTP/1.0\r\n\r\n", series: "listener no_route"},
		{name: "proxy_untrusted", routes: []string{route("    proxy_protocol: {trusted: [10.0.0.0/8]}\n")},
			first: "PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n", series: "listener proxy_untrusted"},
		{name: "proxy_error", routes: []string{route("    proxy_protocol: {trusted: [127.0.0.1/32], required: true}\n")},
			first: "GET / HTTP/1.0\r\n\r\n", series: "listener proxy_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startAdmin(t, tc.top+routeDoc(`listen: "127.0.0.1:0"`, tc.routes...), Options{})
			addr := p.d.Addrs("r")[0].String()
			for range tc.hold {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
			}
			if tc.hold > 0 {
				waitMetric(t, p, `pier_route_sessions_live{route="r"}`, float64(tc.hold))
			}
			for range n {
				refusedClient(t, addr, tc.first)
			}
			family, why, _ := strings.Cut(tc.series, " ")
			want := fmt.Sprintf(`pier_route_clients_refused_total{route="r",why=%q}`, why)
			if family == "listener" {
				want = fmt.Sprintf(`pier_listener_clients_refused_total{listener=%q,why=%q}`, addr, why)
			}
			waitMetric(t, p, want, n)
			for series, v := range p.scrape() {
				refusal := strings.HasPrefix(series, "pier_route_clients_refused_total{") ||
					strings.HasPrefix(series, "pier_listener_clients_refused_total{")
				if refusal && series != want && v != 0 {
					t.Errorf("%s = %v, want 0 (only %s counts)", series, v, want)
				}
			}
		})
	}
}

// helloThrough sends a TLS ClientHello for serverName through addr (the
// handshake cannot finish: the upstream echoes) and waits for the echo of
// its first bytes, so the session has been routed.
func helloThrough(t *testing.T, addr, serverName string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	go tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	// The echoed hello is a record of type 22 (handshake).
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 22 {
		t.Fatalf("through %s: %v %v", serverName, b, err)
	}
}

// Sessions on a shared address are counted by the configured key that
// chose their route, in /metrics and in the route's view; the label is
// the key written, never the server name sent. A reload that keeps a
// route's keys keeps its counts.
func TestMatchesCountedByKey(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	doc := routeDoc(`listen: "127.0.0.1:0"`,
		oneRoute("a", up.Addr(), "    match: {sni: [\"*.example.com\"]}\n"),
		oneRoute("b", up.Addr(), "    match: {default: true}\n"))
	p := startAdmin(t, doc, Options{})
	addr := p.d.Addrs("a")[0].String()
	if other := p.d.Addrs("b")[0].String(); other != addr {
		t.Fatalf("routes a and b listen on %s and %s, want one shared listener", addr, other)
	}
	helloThrough(t, addr, "db.example.com")
	helloThrough(t, addr, "web.example.com")
	dialEcho(t, addr) // not TLS: the default
	waitMetric(t, p, `pier_route_sessions_matched_total{match="sni:*.example.com",route="a"}`, 2)
	waitMetric(t, p, `pier_route_sessions_matched_total{match="default",route="b"}`, 1)
	waitMetric(t, p, fmt.Sprintf(`pier_listener_peeks_total{listener=%q,result="tls"}`, addr), 2)
	for series := range p.scrape() {
		if strings.Contains(series, "db.example.com") {
			t.Errorf("a series names the server name a client sent: %s", series)
		}
	}
	if err := p.d.Reload(parse(t, doc)); err != nil {
		t.Fatal(err)
	}
	var r admin.Route
	p.want(200, "GET", "/api/v1/routes/a", "", &r)
	if r.Match == nil || r.Match.Matched["sni:*.example.com"] != 2 || len(r.Match.SNI) != 1 || r.PeekTimeoutSeconds != 5 {
		t.Fatalf("route a's view after a reload: %+v", r.Match)
	}
}

// A session's edge facts reach its admin view: the socket's address as
// peer, the header, the hello, the key, and the TLVs only when some came.
func TestSessionEdgeView(t *testing.T) {
	var v admin.Session
	sessionEdge(&v, nil)
	if v.Peer != "" || v.TLVs != nil {
		t.Fatalf("plain session: %+v", v)
	}
	sessionEdge(&v, &session.Edge{Peer: netip.MustParseAddrPort("[::1]:4000"), Proxy: "v2", SNI: "db.example.com",
		ALPN: []string{"h2"}, Matched: "sni:db.example.com", UniqueID: "abc"})
	if v.Peer != "[::1]:4000" || v.Proxy != "v2" || v.SNI != "db.example.com" || v.ALPN[0] != "h2" ||
		v.Match != "sni:db.example.com" || v.TLVs == nil || v.TLVs.UniqueID != "abc" {
		t.Fatalf("edge session: %+v %+v", v, v.TLVs)
	}
	var w admin.Session
	sessionEdge(&w, &session.Edge{SNI: "a.example.com"})
	if w.TLVs != nil || w.Peer != "" {
		t.Fatalf("no header: %+v", w)
	}
}

// The top level's per-client table carries over a reload too: a client
// at its cap before the reload is still at it after.
func TestReloadKeepsGlobalClientCounts(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	doc := func(grace string) string {
		return "grace_period: " + grace + "\nlimits: {per_client: {max_connections: 1}}\n" +
			routeDoc(`listen: "127.0.0.1:0"`, oneRoute("db", up.Addr(), ""))
	}
	p := startAdmin(t, doc("1s"), Options{})
	addr := p.d.Addrs("db")[0].String()
	held := dialEcho(t, addr)
	refusedClient(t, addr, "")
	if err := p.d.Reload(parse(t, doc("2s"))); err != nil {
		t.Fatal(err)
	}
	refusedClient(t, addr, "")
	roundTrip(t, held)
	var a clientsAnswer
	p.want(200, "GET", "/api/v1/clients", "", &a)
	if a.Scope != "global" || len(a.Clients) != 1 || a.Clients[0].Live != 1 {
		t.Fatalf("global clients %+v", a)
	}
	waitMetric(t, p, fmt.Sprintf(`pier_listener_clients_refused_total{listener=%q,why="client_limit"}`, addr), 2)
	waitMetric(t, p, "pier_clients_tracked", 1)
}
