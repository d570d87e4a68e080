package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/testutil"
)

// proxyIn accepts PROXY headers of any version from trusted.
func proxyIn(required bool, trusted ...string) *route.ProxyIn {
	return &route.ProxyIn{Accept: peek.Any, Trusted: admit.NewACL(prefixes(trusted...), nil), Required: required}
}

// headerBytes is a PROXY header of version v (1, 2) from src to dst,
// made by go-proxyproto, not by pier.
func headerBytes(t *testing.T, v byte, src, dst netip.AddrPort) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(v, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// echoAll writes b to c, half-closes, and returns everything read back
// until EOF: through an echo upstream, exactly what the upstream got.
func echoAll(t *testing.T, c *net.TCPConn, b []byte) []byte {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	return got
}

// TestProxyHeaderReplacesClientAddress: a v1 or v2 header from a trusted
// peer is never passed on; the address it carries (IPv4 or IPv6) is the
// client's in the access log, and hash balancing picks by it, while the
// socket's address is the log's peer.
func TestProxyHeaderReplacesClientAddress(t *testing.T) {
	var addrs []string
	for range 4 {
		addrs = append(addrs, testutil.NewUpstream(t, testutil.Echo).Addr())
	}
	rt := poolRoute(t, "pp", pool.Config{Balance: pool.Hash}, addrs...)
	rt.Proxy = proxyIn(true, "127.0.0.0/8")
	srv, recs := start(t, rt)
	dst := srv.Addrs("pp")[0]
	for _, v := range []byte{1, 2} {
		for _, src := range []string{"203.0.113.7:4242", "198.51.100.1:1", "[2001:db8::9]:5353", "[2001:db8:1::1]:80"} {
			src := netip.MustParseAddrPort(src)
			c := dial(t, srv, "pp")
			msg := []byte("after the header")
			if got := echoAll(t, c, append(headerBytes(t, v, src, dst), msg...)); string(got) != string(msg) {
				t.Fatalf("v%d: upstream got %q, want only %q", v, got, msg)
			}
			rec := recs.Next(t, wait)
			wantReason(t, rec, "done")
			if rec["client"] != src.String() || rec["peer"] != c.LocalAddr().String() || rec["proxy"] != fmt.Sprintf("v%d", v) {
				t.Errorf("v%d: client %v peer %v proxy %v; want %v, %v", v, rec["client"], rec["peer"], rec["proxy"], src, c.LocalAddr())
			}
			a := rt.Pool.Pick(src.Addr())
			if want := a.Member().Name; rec["upstream"] != want {
				t.Errorf("v%d from %v: went to %v, hash of the header's address picks %s", v, src, rec["upstream"], want)
			}
			a.Done()
		}
	}
	if h := srv.ListenerStats()[0].ProxyHeaders; h[stats.HeaderV1] != 4 || h[stats.HeaderV2] != 4 {
		t.Errorf("headers counted %v, want 4 v1 and 4 v2", h)
	}
}

// TestProxyHeaderFromUntrustedIsRefused: a header from a peer outside
// the trusted list closes the client (proxy_untrusted), on IPv4 and IPv6
// listeners, and the upstream never hears of it; a client from there
// without a header is served.
func TestProxyHeaderFromUntrustedIsRefused(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		if ln, err := net.Listen("tcp", listen); err != nil {
			t.Logf("skipping %s: %v", listen, err)
			continue
		} else {
			ln.Close()
		}
		up, accepted := countingUpstream(t)
		rt := newRoute(t, "pp", up.Addr())
		rt.Listen = []string{listen}
		rt.Proxy = proxyIn(false, "10.0.0.0/8")
		srv, recs := start(t, rt)
		src := netip.MustParseAddrPort("203.0.113.7:4242")
		for _, v := range []byte{1, 2} {
			c := dial(t, srv, "pp")
			c.Write(append(headerBytes(t, v, src, srv.Addrs("pp")[0]), "data"...))
			refusedNow(t, c)
			rec := recs.Next(t, wait)
			wantReason(t, rec, "proxy_untrusted")
			if rec["client"] != c.LocalAddr().String() {
				t.Errorf("client %v, want the socket's %v", rec["client"], c.LocalAddr())
			}
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("%s: upstream accepted %d for untrusted headers", listen, n)
		}
		if n := srv.ListenerStats()[0].Refused[stats.ListenerProxyUntrusted]; n != 2 {
			t.Errorf("%s: proxy_untrusted counted %d, want 2", listen, n)
		}
		if got := echoAll(t, dial(t, srv, "pp"), []byte("plain")); string(got) != "plain" {
			t.Errorf("%s: an untrusted client without a header got %q", listen, got)
		}
		wantReason(t, recs.Next(t, wait), "done")
	}
}

// TestProxyHeaderRequired: a trusted peer without a header is refused
// when the header is required (proxy_error), and nothing is dialed.
func TestProxyHeaderRequired(t *testing.T) {
	up, accepted := countingUpstream(t)
	rt := newRoute(t, "req", up.Addr())
	rt.Proxy = proxyIn(true, "127.0.0.0/8", "::1/128")
	srv, recs := start(t, rt)
	c := dial(t, srv, "req")
	c.Write([]byte("no header here\r\n"))
	refusedNow(t, c)
	wantReason(t, recs.Next(t, wait), "proxy_error")
	if accepted.Load() != 0 {
		t.Error("upstream dialed for a client without its required header")
	}
	if n := srv.ListenerStats()[0].Refused[stats.ListenerProxyError]; n != 1 {
		t.Errorf("proxy_error counted %d, want 1", n)
	}
}

// TestLocalCommandUsesRealEndpoints: a v2 LOCAL or a v1 UNKNOWN header
// (a balancer's health check) is served with the connection's own
// addresses (spec §2.1, §2.2), logged proxy=local, and not passed on.
func TestLocalCommandUsesRealEndpoints(t *testing.T) {
	rt := newRoute(t, "local", testutil.NewUpstream(t, testutil.Echo).Addr())
	rt.Proxy = proxyIn(true, "127.0.0.0/8")
	srv, recs := start(t, rt)
	v2, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range [][]byte{v2, []byte("PROXY UNKNOWN\r\n")} {
		c := dial(t, srv, "local")
		if got := echoAll(t, c, append(h, "ping"...)); string(got) != "ping" {
			t.Fatalf("upstream got %q, want ping", got)
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if rec["proxy"] != "local" || rec["client"] != c.LocalAddr().String() {
			t.Errorf("proxy %v client %v; want local, %v", rec["proxy"], rec["client"], c.LocalAddr())
		}
		if rec["level"] != "INFO" {
			t.Errorf("a LOCAL session that carried bytes logged at %v, want INFO", rec["level"])
		}
	}
	// A balancer's layer-4 check: the header and nothing else (HAProxy's
	// then resets; a FIN here, so that the header is surely read first).
	// Its record is at debug, not a line every few seconds at info.
	c := dial(t, srv, "local")
	if _, err := c.Write(v2); err != nil {
		t.Fatal(err)
	}
	c.Close()
	rec := recs.Next(t, wait)
	if rec["proxy"] != "local" || rec["level"] != "DEBUG" {
		t.Errorf("a LOCAL health check logged at %v (proxy %v, reason %v), want DEBUG", rec["level"], rec["proxy"], rec["reason"])
	}
}

// clientHello returns the first TLS record crypto/tls writes for a
// handshake with serverName and alpn: the ClientHello, as a client sends it.
func clientHello(t *testing.T, serverName string, alpn ...string) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, &tls.Config{ServerName: serverName, NextProtos: alpn, InsecureSkipVerify: true}).Handshake()
	}()
	head := make([]byte, 5)
	if _, err := io.ReadFull(b, head); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	a.Close()
	<-done
	return append(head, body...)
}

// sniRoute is a route on the shared 127.0.0.1:0 taking m.
func sniRoute(t *testing.T, name string, m *route.Match) (*route.Route, *testutil.Upstream) {
	up := testutil.NewUpstream(t, testutil.Echo)
	rt := newRoute(t, name, up.Addr())
	rt.Match = m
	return rt, up
}

// TestSNIRoutesShareOneListener: three routes on one 127.0.0.1:0 (exact
// name, wildcard, default) take clients by the ClientHello's server name;
// a client that is not TLS goes to the default. Through an echo upstream,
// every byte the client sent comes back once, the ClientHello first: the
// peeked bytes reached the upstream exactly once.
func TestSNIRoutesShareOneListener(t *testing.T) {
	db, dbUp := sniRoute(t, "db", &route.Match{SNI: []string{"db.example.com"}})
	web, webUp := sniRoute(t, "web", &route.Match{SNI: []string{"*.example.com"}})
	def, defUp := sniRoute(t, "def", &route.Match{Default: true})
	srv, recs := start(t, db, web, def)
	if a, b := srv.Addrs("db"), srv.Addrs("def"); len(a) != 1 || len(b) != 1 || a[0] != b[0] {
		t.Fatalf("routes listen on %v and %v, want one shared address", a, b)
	}
	for _, tc := range []struct {
		first            []byte
		route, up, match string
		sni              any
	}{
		{clientHello(t, "db.example.com", "h2"), "db", dbUp.Addr(), "sni:db.example.com", "db.example.com"},
		{clientHello(t, "www.example.com"), "web", webUp.Addr(), "sni:*.example.com", "www.example.com"},
		{clientHello(t, "a.b.example.com"), "web", webUp.Addr(), "sni:*.example.com", "a.b.example.com"},
		{clientHello(t, "example.com"), "def", defUp.Addr(), "default", "example.com"},
		{[]byte("GET / HTTP/1.0\r\n\r\n"), "def", defUp.Addr(), "default", nil},
	} {
		sent := append(tc.first, "and then more"...)
		if got := echoAll(t, dial(t, srv, "db"), sent); string(got) != string(sent) {
			t.Fatalf("%s: echo of %d bytes came back as %d bytes", tc.route, len(sent), len(got))
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if rec["route"] != tc.route || rec["upstream"] != tc.up || rec["match"] != tc.match || rec["sni"] != tc.sni {
			t.Errorf("route %v upstream %v match %v sni %v; want %s %s %s %v",
				rec["route"], rec["upstream"], rec["match"], rec["sni"], tc.route, tc.up, tc.match, tc.sni)
		}
		if n, _ := rec["bytes_to_upstream"].(int64); n != int64(len(sent)) {
			t.Errorf("%s: bytes_to_upstream %v, want %d", tc.route, rec["bytes_to_upstream"], len(sent))
		}
	}
	p := srv.ListenerStats()[0].Peeks
	if p[stats.PeekTLS] != 4 || p[stats.PeekNotTLS] != 1 {
		t.Errorf("peeks counted %v, want 4 tls, 1 not_tls", p)
	}
}

// TestNoDefaultIsNoRoute: on a shared address without a default route, a
// client no route matches (another name, or not TLS) is closed
// (no_route) and nothing is dialed.
func TestNoDefaultIsNoRoute(t *testing.T) {
	up, accepted := countingUpstream(t)
	rt := newRoute(t, "db", up.Addr())
	rt.Match = &route.Match{SNI: []string{"db.example.com"}}
	srv, recs := start(t, rt)
	for _, first := range [][]byte{clientHello(t, "other.example.org"), []byte("SSH-2.0-x\r\n")} {
		c := dial(t, srv, "db")
		c.Write(first)
		refusedNow(t, c)
		wantReason(t, recs.Next(t, wait), "no_route")
	}
	if accepted.Load() != 0 {
		t.Error("upstream dialed for a client no route took")
	}
	if n := srv.ListenerStats()[0].Refused[stats.ListenerNoRoute]; n != 2 {
		t.Errorf("no_route counted %d, want 2", n)
	}
}

// proxyReader is an upstream that reads a PROXY header (go-proxyproto's
// reader, not pier's) before the client has sent a byte, says hello
// first (a server-speaks-first protocol), then echoes.
func proxyReader(headers chan<- *proxyproto.Header) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			headers <- nil
			return
		}
		headers <- h
		c.Write([]byte("220 hello\r\n"))
		io.Copy(c, br)
		c.CloseWrite()
	}
}

// TestSendProxyBeforeAnyClientByte: with send_proxy v1 or v2 the upstream
// reads a header first, with the client's address and the address it
// dialed, before the client sent anything; the header is not counted as
// the client's bytes.
func TestSendProxyBeforeAnyClientByte(t *testing.T) {
	for _, v := range []uint8{peek.V1, peek.V2} {
		headers := make(chan *proxyproto.Header, 1)
		// The route's version is its pool's default for every member
		// (pool.Config.SendProxy), as app compiles it.
		rt := poolRoute(t, "out", pool.Config{SendProxy: v}, testutil.NewUpstream(t, proxyReader(headers)).Addr())
		rt.SendProxy = v
		srv, recs := start(t, rt)
		c := dial(t, srv, "out")
		var h *proxyproto.Header
		select {
		case h = <-headers:
		case <-time.After(wait):
			t.Fatal("no header before the client's first byte")
		}
		if h == nil || h.Version != v || h.SourceAddr.String() != c.LocalAddr().String() || h.DestinationAddr.String() != c.RemoteAddr().String() {
			t.Fatalf("v%d: header %+v, want %v -> %v", v, h, c.LocalAddr(), c.RemoteAddr())
		}
		line := make([]byte, len("220 hello\r\n"))
		if _, err := io.ReadFull(c, line); err != nil {
			t.Fatal(err)
		}
		if got := echoAll(t, c, []byte("x")); string(got) != "x" {
			t.Errorf("echo %q", got)
		}
		rec := recs.Next(t, wait)
		if rec["bytes_to_upstream"] != int64(1) {
			t.Errorf("v%d: bytes_to_upstream %v, want 1 (the header is not the client's)", v, rec["bytes_to_upstream"])
		}
	}
}

// TestSendProxyCarriesSNIAndSessionID: a v2 header to the upstream of a
// route chosen by SNI carries the server name as PP2_TYPE_AUTHORITY and
// the session id as PP2_TYPE_UNIQUE_ID; the ClientHello follows it.
func TestSendProxyCarriesSNIAndSessionID(t *testing.T) {
	headers := make(chan *proxyproto.Header, 1)
	rt := poolRoute(t, "db", pool.Config{SendProxy: peek.V2}, testutil.NewUpstream(t, proxyReader(headers)).Addr())
	rt.Match = &route.Match{SNI: []string{"db.example.com"}}
	rt.SendProxy = peek.V2
	srv, recs := start(t, rt)
	c := dial(t, srv, "db")
	hello := clientHello(t, "db.example.com")
	c.Write(hello)
	var h *proxyproto.Header
	select {
	case h = <-headers:
	case <-time.After(wait):
		t.Fatal("no header")
	}
	if h == nil {
		t.Fatal("upstream read no valid header")
	}
	line := make([]byte, len("220 hello\r\n"))
	io.ReadFull(c, line)
	if got := echoAll(t, c, nil); string(got) != string(hello) {
		t.Errorf("after the header the upstream got %d bytes, want the %d of the ClientHello", len(got), len(hello))
	}
	rec := recs.Next(t, wait)
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[proxyproto.PP2Type]string{}
	for _, tlv := range tlvs {
		got[tlv.Type] = string(tlv.Value)
	}
	if got[proxyproto.PP2_TYPE_AUTHORITY] != "db.example.com" {
		t.Errorf("authority %q, want db.example.com", got[proxyproto.PP2_TYPE_AUTHORITY])
	}
	if id := strconv.FormatUint(rec["id"].(uint64), 10); got[proxyproto.PP2_TYPE_UNIQUE_ID] != id {
		t.Errorf("unique id %q, want the session's %s", got[proxyproto.PP2_TYPE_UNIQUE_ID], id)
	}
}

var _ = proxy.Stats{}

// TestProxyHeaderTimeoutBounded: a trusted peer that starts a header and
// goes silent is closed (proxy_error) once proxy_protocol.timeout has
// passed, not later, and nothing is dialed.
func TestProxyHeaderTimeoutBounded(t *testing.T) {
	up, accepted := countingUpstream(t)
	rt := newRoute(t, "slow", up.Addr())
	rt.Proxy = proxyIn(false, "127.0.0.0/8")
	rt.Proxy.Timeout = 200 * time.Millisecond
	srv, recs := start(t, rt)
	c := dial(t, srv, "slow")
	began := time.Now()
	c.Write([]byte("PROX"))
	refusedNow(t, c)
	if took := time.Since(began); took < 150*time.Millisecond || took > 5*time.Second {
		t.Errorf("closed after %v, want about the 200ms timeout", took)
	}
	wantReason(t, recs.Next(t, wait), "proxy_error")
	if accepted.Load() != 0 {
		t.Error("upstream dialed for an incomplete header")
	}
}

// TestACLUsesProxiedAddress: behind a trusted balancer, the top level's
// and the route's allow/deny lists judge the header's address, not the
// balancer's.
func TestACLUsesProxiedAddress(t *testing.T) {
	rt := newRoute(t, "acl", testutil.NewUpstream(t, testutil.Echo).Addr())
	rt.Proxy = proxyIn(true, "127.0.0.0/8")
	rt.ACL = admit.NewACL(nil, prefixes("198.51.100.0/24"))
	srv, recs := startGlobal(t, route.Global{ACL: admit.NewACL(prefixes("203.0.113.0/24", "198.51.100.0/24"), nil)}, rt)
	dst := srv.Addrs("acl")[0]
	for _, tc := range []struct{ src, reason string }{
		{"203.0.113.7:1000", "done"},    // allowed at the top level, not denied by the route
		{"198.51.100.1:1000", "denied"}, // denied by the route
		{"192.0.2.1:1000", "denied"},    // not in the top level's allow list
	} {
		c := dial(t, srv, "acl")
		c.Write(append(headerBytes(t, 2, netip.MustParseAddrPort(tc.src), dst), "hi"...))
		c.CloseWrite()
		io.ReadAll(c)
		rec := recs.Next(t, wait)
		wantReason(t, rec, tc.reason)
		if rec["client"] != tc.src {
			t.Errorf("client %v, want the header's %s", rec["client"], tc.src)
		}
	}
}
