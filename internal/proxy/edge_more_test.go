package proxy_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/testutil"
)

// TestALPNClientOrder: routes on one 127.0.0.1:0 matched by ALPN take a
// crypto/tls client by the protocols it offers; when it offers two that
// routes name, its first choice wins; a client offering none of them
// (or nothing) goes to the default. Every byte it sent reaches the
// chosen upstream once.
func TestALPNClientOrder(t *testing.T) {
	h2, h2Up := sniRoute(t, "h2", &route.Match{ALPN: []string{"h2"}})
	pg, pgUp := sniRoute(t, "pg", &route.Match{ALPN: []string{"postgresql"}})
	def, defUp := sniRoute(t, "def", &route.Match{Default: true})
	srv, recs := start(t, h2, pg, def)
	for _, tc := range []struct {
		alpn             []string
		route, up, match string
	}{
		{[]string{"h2"}, "h2", h2Up.Addr(), "alpn:h2"},
		{[]string{"postgresql", "h2"}, "pg", pgUp.Addr(), "alpn:postgresql"},
		{[]string{"http/1.1", "h2", "postgresql"}, "h2", h2Up.Addr(), "alpn:h2"},
		{[]string{"http/1.1"}, "def", defUp.Addr(), "default"},
		{nil, "def", defUp.Addr(), "default"},
	} {
		sent := append(clientHello(t, "svc.example.com", tc.alpn...), "after the hello"...)
		if got := echoAll(t, dial(t, srv, "def"), sent); !bytes.Equal(got, sent) {
			t.Fatalf("%v: echo of %d bytes came back as %d", tc.alpn, len(sent), len(got))
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		var alpn any
		if len(tc.alpn) > 0 {
			alpn = strings.Join(tc.alpn, ",")
		}
		if rec["route"] != tc.route || rec["upstream"] != tc.up || rec["match"] != tc.match || rec["alpn"] != alpn {
			t.Errorf("offering %v: route %v upstream %v match %v alpn %v; want %s %s %s %v",
				tc.alpn, rec["route"], rec["upstream"], rec["match"], rec["alpn"], tc.route, tc.up, tc.match, alpn)
		}
	}
	if p := srv.ListenerStats()[0].Peeks; p[stats.PeekTLS] != 5 {
		t.Errorf("peeks counted %v, want 5 tls", p)
	}
}

// TestSourceMatchIPv6: routes on one listener matched by source take a
// client by the address its trusted balancer's PROXY header carries
// (IPv6 or a foreign IPv4: the test dials from 127.0.0.1), the longest
// prefix first; an address in none goes to the default.
func TestSourceMatchIPv6(t *testing.T) {
	in := proxyIn(true, "127.0.0.0/8")
	v6, v6Up := sniRoute(t, "v6", &route.Match{Source: prefixes("2001:db8::/32")})
	v6n, v6nUp := sniRoute(t, "v6narrow", &route.Match{Source: prefixes("2001:db8:1::/48")})
	v4, v4Up := sniRoute(t, "v4", &route.Match{Source: prefixes("203.0.113.0/24")})
	def, defUp := sniRoute(t, "def", &route.Match{Default: true})
	for _, rt := range []*route.Route{v6, v6n, v4, def} {
		rt.Proxy = in // one address: one PROXY setting
	}
	srv, recs := start(t, v6, v6n, v4, def)
	dst := srv.Addrs("def")[0]
	for _, tc := range []struct {
		src              string
		route, up, match string
	}{
		{"[2001:db8::9]:4000", "v6", v6Up.Addr(), "source:2001:db8::/32"},
		{"[2001:db8:1::5]:4001", "v6narrow", v6nUp.Addr(), "source:2001:db8:1::/48"},
		{"203.0.113.9:4002", "v4", v4Up.Addr(), "source:203.0.113.0/24"},
		{"198.51.100.1:4003", "def", defUp.Addr(), "default"},
		{"[2001:db9::1]:4004", "def", defUp.Addr(), "default"},
	} {
		src := netip.MustParseAddrPort(tc.src)
		// A v4 source needs a v4 destination in one header.
		d := dst
		if src.Addr().Is6() {
			d = netip.MustParseAddrPort("[2001:db8:ffff::1]:443")
		}
		msg := []byte("by source")
		if got := echoAll(t, dial(t, srv, "def"), append(headerBytes(t, 2, src, d), msg...)); !bytes.Equal(got, msg) {
			t.Fatalf("%s: upstream got %q, want %q", tc.src, got, msg)
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if rec["route"] != tc.route || rec["upstream"] != tc.up || rec["match"] != tc.match || rec["client"] != tc.src {
			t.Errorf("from %s: route %v upstream %v match %v client %v; want %s %s %s",
				tc.src, rec["route"], rec["upstream"], rec["match"], rec["client"], tc.route, tc.up, tc.match)
		}
	}
}

// TestSilentClientToDefaultAfterPeekTimeout: on an SNI address with a
// default route, a client that sends nothing is taken to the default
// once peek_timeout has passed (not before, not never), and what it
// sends later still reaches the upstream.
func TestSilentClientToDefaultAfterPeekTimeout(t *testing.T) {
	const peekTimeout = 300 * time.Millisecond
	db, _ := sniRoute(t, "db", &route.Match{SNI: []string{"db.example.com"}})
	accepted := make(chan time.Time, 1)
	defUp := testutil.NewUpstream(t, func(c *net.TCPConn) {
		accepted <- time.Now()
		testutil.Echo(c)
	})
	def := newRoute(t, "def", defUp.Addr())
	def.Match = &route.Match{Default: true}
	db.PeekTimeout, def.PeekTimeout = peekTimeout, peekTimeout
	srv, recs := start(t, db, def)
	began := time.Now()
	c := dial(t, srv, "def")
	select {
	case at := <-accepted:
		if took := at.Sub(began); took < peekTimeout*3/4 || took > wait/2 {
			t.Errorf("the default upstream was dialed after %v, want about the %v peek_timeout", took, peekTimeout)
		}
	case <-time.After(wait):
		t.Fatal("a silent client never reached the default upstream")
	}
	echoOnce(t, c, "late bytes")
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after the echo: %q, %v", rest, err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["route"] != "def" || rec["match"] != "default" || rec["bytes_to_upstream"] != int64(len("late bytes")) {
		t.Errorf("route %v match %v bytes_to_upstream %v; want def, default, %d", rec["route"], rec["match"], rec["bytes_to_upstream"], len("late bytes"))
	}
	if p := srv.ListenerStats()[0].Peeks; p[stats.PeekTimeout] != 1 {
		t.Errorf("peeks counted %v, want 1 timeout", p)
	}
}

// TestAcceptV1RefusesV2: a route that accepts only v1 headers refuses a
// trusted peer's well-formed v2 header (proxy_error, the version named in
// the error) without dialing, and serves a v1 one.
func TestAcceptV1RefusesV2(t *testing.T) {
	up, accepted := countingUpstream(t)
	rt := newRoute(t, "v1only", up.Addr())
	rt.Proxy = proxyIn(false, "127.0.0.0/8")
	rt.Proxy.Accept = peek.V1
	srv, recs := start(t, rt)
	src := netip.MustParseAddrPort("203.0.113.7:4242")
	dst := srv.Addrs("v1only")[0]
	c := dial(t, srv, "v1only")
	c.Write(append(headerBytes(t, 2, src, dst), "data"...))
	refusedNow(t, c)
	rec := recs.Next(t, wait)
	wantReason(t, rec, "proxy_error")
	if e, _ := rec["error"].(string); !strings.Contains(e, "version not accepted") {
		t.Errorf("error %q, want it to say the version is not accepted", e)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("upstream accepted %d for a v2 header on a v1 route", n)
	}
	if n := srv.ListenerStats()[0].Refused[stats.ListenerProxyError]; n != 1 {
		t.Errorf("proxy_error counted %d, want 1", n)
	}
	if got := echoAll(t, dial(t, srv, "v1only"), append(headerBytes(t, 1, src, dst), "v1 data"...)); string(got) != "v1 data" {
		t.Fatalf("a v1 header's client got %q", got)
	}
	rec = recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["client"] != src.String() || rec["proxy"] != "v1" {
		t.Errorf("client %v proxy %v; want %v v1", rec["client"], rec["proxy"], src)
	}
}

// TestProxyInToProxyOut: behind a trusted balancer's v2 header with TLVs,
// a route sending v2 headers tells its upstream of the original client
// and the address it dialed (the balancer's), the balancer's authority
// and ALPN, and pier's own session id as the unique id (the balancer's
// is logged as tlv_unique_id). Then the client's bytes follow, the
// incoming header not among them.
func TestProxyInToProxyOut(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"203.0.113.7:4242", "198.51.100.20:443"},
		{"[2001:db8::7]:4242", "[2001:db8::443]:443"},
	} {
		headers := make(chan *proxyproto.Header, 1)
		rt := poolRoute(t, "chain", pool.Config{SendProxy: peek.V2}, testutil.NewUpstream(t, proxyReader(headers)).Addr())
		rt.SendProxy = peek.V2
		rt.Proxy = proxyIn(true, "127.0.0.0/8")
		srv, recs := start(t, rt)
		src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
		in := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
		if err := in.SetTLVs([]proxyproto.TLV{
			{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("api.example.com")},
			{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte("h2")},
			{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte("lb-req-42")},
		}); err != nil {
			t.Fatal(err)
		}
		hb, err := in.Format()
		if err != nil {
			t.Fatal(err)
		}
		c := dial(t, srv, "chain")
		if _, err := c.Write(hb); err != nil {
			t.Fatal(err)
		}
		var h *proxyproto.Header
		select {
		case h = <-headers:
		case <-time.After(wait):
			t.Fatal("the upstream got no header")
		}
		if h == nil {
			t.Fatal("the upstream read no valid header")
		}
		line := make([]byte, len("220 hello\r\n"))
		if _, err := io.ReadFull(c, line); err != nil {
			t.Fatal(err)
		}
		if got := echoAll(t, c, []byte("payload")); string(got) != "payload" {
			t.Errorf("%s: after its header the upstream got %q, want payload", tc.src, got)
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if h.Version != 2 || h.SourceAddr.String() != tc.src || h.DestinationAddr.String() != tc.dst {
			t.Errorf("upstream's header v%d %v -> %v; want v2 %s -> %s", h.Version, h.SourceAddr, h.DestinationAddr, tc.src, tc.dst)
		}
		tlvs, err := h.TLVs()
		if err != nil {
			t.Fatal(err)
		}
		got := map[proxyproto.PP2Type]string{}
		for _, tlv := range tlvs {
			got[tlv.Type] = string(tlv.Value)
		}
		id := strconv.FormatUint(rec["id"].(uint64), 10)
		if got[proxyproto.PP2_TYPE_AUTHORITY] != "api.example.com" || got[proxyproto.PP2_TYPE_ALPN] != "h2" || got[proxyproto.PP2_TYPE_UNIQUE_ID] != id {
			t.Errorf("upstream's TLVs authority %q alpn %q unique id %q; want api.example.com, h2, %s",
				got[proxyproto.PP2_TYPE_AUTHORITY], got[proxyproto.PP2_TYPE_ALPN], got[proxyproto.PP2_TYPE_UNIQUE_ID], id)
		}
		if rec["client"] != tc.src || rec["tlv_authority"] != "api.example.com" || rec["tlv_unique_id"] != "lb-req-42" || rec["tlv_alpn"] != "h2" {
			t.Errorf("log client %v tlv_authority %v tlv_unique_id %v tlv_alpn %v", rec["client"], rec["tlv_authority"], rec["tlv_unique_id"], rec["tlv_alpn"])
		}
		if rec["bytes_to_upstream"] != int64(len("payload")) {
			t.Errorf("bytes_to_upstream %v, want %d: neither header is the client's", rec["bytes_to_upstream"], len("payload"))
		}
	}
}

// hexOffsetLine is a `hexdump -C` line: an offset, then bytes.
var hexOffsetLine = regexp.MustCompile(`^([0-9a-f]{8})  (.*)$`)

// dumpedBytes reassembles the bytes of a hex dump of one direction of one
// session, failing if a block does not start where the last one ended:
// each byte shown once, in order.
func dumpedBytes(t *testing.T, dump string) []byte {
	t.Helper()
	var got []byte
	for _, line := range strings.Split(dump, "\n") {
		m := hexOffsetLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		off, _ := strconv.ParseUint(m[1], 16, 64)
		hexPart, _, _ := strings.Cut(m[2], "|")
		fields := strings.Fields(hexPart)
		if len(fields) == 0 {
			continue // a closing offset line
		}
		if int(off) != len(got) {
			t.Fatalf("dump line at offset %d after %d bytes:\n%s", off, len(got), dump)
		}
		for _, f := range fields {
			b, err := hex.DecodeString(f)
			if err != nil || len(b) != 1 {
				t.Fatalf("dump line %q: %q is not a byte", line, f)
			}
			got = append(got, b[0])
		}
	}
	return got
}

// TestPeekedBytesReachFilters: on an SNI address, the bytes read to choose
// a route (the ClientHello) go through the chosen route's filters, once,
// first: a dump of what went upstream is exactly what the client sent.
func TestPeekedBytesReachFilters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.hex")
	dumpf := builtin(t, "dump", opts{"format": "hex", "to": path, "direction": "upstream"})
	db := filtered(t, "db", testutil.NewUpstream(t, testutil.Echo).Addr(), dumpf)
	db.Match = &route.Match{SNI: []string{"db.example.com"}}
	def, _ := sniRoute(t, "def", &route.Match{Default: true})
	srv, recs := start(t, db, def)
	hello := clientHello(t, "db.example.com")
	sent := append(append([]byte{}, hello...), "after the hello"...)
	if got := echoAll(t, dial(t, srv, "db"), sent); !bytes.Equal(got, sent) {
		t.Fatalf("echo of %d bytes came back as %d", len(sent), len(got))
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["route"] != "db" {
		t.Fatalf("route %v, want db", rec["route"])
	}
	if err := dumpf.(io.Closer).Close(); err != nil { // writes what is queued
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dump := string(b)
	if got := dumpedBytes(t, dump); !bytes.Equal(got, sent) {
		t.Errorf("the dump shows %d bytes (starts with the hello: %v), want the %d sent, the %d of the hello first",
			len(got), bytes.HasPrefix(got, hello), len(sent), len(hello))
	}
	eof := regexp.MustCompile(`(?m)^session ` + strconv.FormatUint(rec["id"].(uint64), 10) + ` client→upstream \S+ EOF after ` + strconv.Itoa(len(sent)) + ` bytes$`)
	if !eof.MatchString(dump) {
		t.Errorf("dump lacks the end after %d bytes", len(sent))
	}
	if t.Failed() {
		t.Logf("dump:\n%s", dump)
	}
}

// TestProxyHeaderOneByteAtATime: a trusted peer's header (v1, v2; IPv4,
// IPv6) arriving one byte per TCP segment is waited for and taken whole:
// the client is the header's address, and only what follows it reaches
// the upstream.
func TestProxyHeaderOneByteAtATime(t *testing.T) {
	rt := newRoute(t, "drip", testutil.NewUpstream(t, testutil.Echo).Addr())
	rt.Proxy = proxyIn(true, "127.0.0.0/8")
	rt.Proxy.Timeout = wait / 2
	srv, recs := start(t, rt)
	dst4 := srv.Addrs("drip")[0]
	dst6 := netip.MustParseAddrPort("[2001:db8::1]:443")
	for _, tc := range []struct {
		v   byte
		src string
	}{{1, "203.0.113.7:4242"}, {2, "203.0.113.8:4243"}, {1, "[2001:db8::9]:5353"}, {2, "[2001:db8::a]:5354"}} {
		src := netip.MustParseAddrPort(tc.src)
		dst := dst4
		if src.Addr().Is6() {
			dst = dst6
		}
		hb := headerBytes(t, tc.v, src, dst)
		c := dial(t, srv, "drip")
		if err := c.SetNoDelay(true); err != nil {
			t.Fatal(err)
		}
		// Pace the bytes so that each is its own segment; the loop is
		// bounded by a deadline well inside the header timeout.
		deadline := time.Now().Add(wait / 4)
		for i := range hb {
			if time.Now().After(deadline) {
				t.Fatalf("v%d: %d of %d header bytes written by the deadline", tc.v, i, len(hb))
			}
			if _, err := c.Write(hb[i : i+1]); err != nil {
				t.Fatalf("v%d: writing byte %d of %d: %v (pier gave up on a partial header)", tc.v, i, len(hb), err)
			}
			time.Sleep(time.Millisecond)
		}
		if got := echoAll(t, c, []byte("after")); string(got) != "after" {
			t.Fatalf("v%d %s: upstream got %q, want after", tc.v, tc.src, got)
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if rec["client"] != tc.src || rec["proxy"] != "v"+strconv.Itoa(int(tc.v)) {
			t.Errorf("client %v proxy %v; want %s v%d", rec["client"], rec["proxy"], tc.src, tc.v)
		}
	}
}

// TestOversizedHelloBounded: a ClientHello whose handshake would not fit
// in 16 KiB is given up on (not waited for until peek_timeout): whether
// the client sends it all (20 KiB: the peek stops at 16 KiB) or only its
// first bytes (the announced length says it cannot fit), with no default
// route it is refused (no_route) at once, the peek counted too_large, and
// the upstream sees nothing.
func TestOversizedHelloBounded(t *testing.T) {
	// One full TLS record (2^14 bytes) of a ClientHello announcing 20000
	// handshake bytes, and the rest of them in a second record: 20 KiB.
	hsLen := 20000
	body := make([]byte, 4+hsLen)
	body[0], body[1], body[2], body[3] = 1, byte(hsLen>>16), byte(hsLen>>8), byte(hsLen)
	var whole []byte
	for rest := body; len(rest) > 0; {
		n := min(len(rest), 1<<14)
		whole = append(whole, 0x16, 3, 1, byte(n>>8), byte(n))
		whole = append(whole, rest[:n]...)
		rest = rest[n:]
	}
	for _, tc := range []struct {
		name string
		sent []byte
	}{{"whole", whole}, {"first bytes", whole[:100]}} {
		t.Run(tc.name, func(t *testing.T) {
			up, accepted := countingUpstream(t)
			db := newRoute(t, "db", up.Addr())
			db.Match = &route.Match{SNI: []string{"db.example.com"}}
			db.PeekTimeout = time.Minute // a refusal by timeout would come too late
			srv, recs := start(t, db)
			c := dial(t, srv, "db") // reads fail after wait: well before the minute
			began := time.Now()
			c.Write(tc.sent) // may fail with a reset: pier closes without reading it all
			refusedNow(t, c)
			if took := time.Since(began); took > wait/2 {
				t.Errorf("refused after %v, want at once", took)
			}
			rec := recs.Next(t, wait)
			wantReason(t, rec, "no_route")
			if rec["upstream"] != "" || rec["sni"] != nil {
				t.Errorf("upstream %v sni %v for an oversized hello", rec["upstream"], rec["sni"])
			}
			ls := srv.ListenerStats()[0]
			if ls.Peeks[stats.PeekTooLarge] != 1 || ls.Refused[stats.ListenerNoRoute] != 1 {
				t.Errorf("peeks %v, refused %v; want 1 too_large, 1 no_route", ls.Peeks, ls.Refused)
			}
			if n := accepted.Load(); n != 0 {
				t.Errorf("upstream accepted %d for an oversized hello", n)
			}
		})
	}
}

// TestEndedWhilePeekingIsASession: a client that resets its connection
// while its listener waits for its ClientHello ended a session (admitted
// at accept, with no route yet): counted once in Stats.Sessions, never as
// refused, and logged with reason client_reset. Without the count it was
// in neither total.
func TestEndedWhilePeekingIsASession(t *testing.T) {
	db, _ := sniRoute(t, "db", &route.Match{SNI: []string{"db.example.com"}})
	def, _ := sniRoute(t, "def", &route.Match{Default: true})
	srv, recs := start(t, db, def)
	c := dial(t, srv, "def")
	if _, err := c.Write([]byte{0x16, 0x03, 0x01}); err != nil { // a hello's first bytes, then nothing
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close() // RST
	rec := recs.Next(t, wait)
	wantReason(t, rec, "client_reset")
	if st := srv.Stats(); st.Sessions != 1 || st.Refused != 0 {
		t.Errorf("Stats: %d sessions, %d refused; want 1 and 0", st.Sessions, st.Refused)
	}
}
