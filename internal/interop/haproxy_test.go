package interop

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pierproxy/pier/internal/testutil"
)

// haproxyGlobal is the head of every HAProxy configuration here: logs to
// stderr (the test reads them), TCP mode, bounded timeouts.
const haproxyGlobal = `global
	log stderr format raw local0
defaults
	mode tcp
	log global
	timeout connect 5s
	timeout client 10s
	timeout server 10s
`

// startHAProxy checks and starts HAProxy on cfg (after haproxyGlobal)
// and waits for its frontend on port.
func startHAProxy(t *testing.T, cfg string, port int) *peer {
	t.Helper()
	bin := binary(t, "haproxy", "PIER_REQUIRE_HAPROXY")
	path := writeFile(t, t.TempDir(), "haproxy.cfg", haproxyGlobal+cfg)
	checkConfig(t, bin, "-c", "-q", "-f", path)
	h := start(t, "haproxy", bin, "-db", "-f", path) // -db: foreground, no daemon
	h.waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	return h
}

// HAProxy terminates TLS and sends pier a v2 header with the authority
// (the SNI it saw), a unique ID and the SSL TLV: pier logs the client's
// own address (not HAProxy's, which is the peer) and the TLVs. HAProxy's
// health checks arrive with a LOCAL command, which pier serves with the
// real endpoints, so HAProxy never sees pier down.
func TestHAProxySendProxyV2InFrontOfPier(t *testing.T) {
	binary(t, "haproxy", "PIER_REQUIRE_HAPROXY")
	echo := testutil.NewUpstream(t, testutil.Echo)
	p, logs := startPier(t, fmt.Sprintf(`
routes:
  - name: behind
    listen: ["127.0.0.1:0"]
    proxy_protocol: {accept: v2, trusted: ["127.0.0.1/32"], required: true}
    upstreams: [{address: %q}]
`, echo.Addr()))
	front := freePort(t)
	cert := selfSigned(t, t.TempDir(), "db.example.com")
	h := startHAProxy(t, fmt.Sprintf(`
	option log-health-checks
frontend fe
	bind 127.0.0.1:%d ssl crt %s
	unique-id-format hap-%%[uuid]
	default_backend be
backend be
	server pier %s send-proxy-v2 proxy-v2-options authority,unique-id,ssl check inter 100ms
`, front, cert, pierAddr(t, p, "behind")), front)

	raw := dialFrom(t, fmt.Sprintf("127.0.0.1:%d", front))
	c := tls.Client(raw, &tls.Config{ServerName: "db.example.com", InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	roundTrip(t, c, "ping through haproxy and pier")
	c.Close()

	line := logs.WaitFor(t, waitBound, "session", "route=behind", "client="+raw.LocalAddr().String())
	for _, want := range []string{"proxy=v2", "peer=127.0.0.1:", "tlv_authority=db.example.com", "tlv_unique_id=hap-", "tlv_ssl_version=TLSv1.3", "reason=done"} {
		if !strings.Contains(line, want) {
			t.Errorf("pier's line lacks %q:\n%s", want, line)
		}
	}
	// Health checks: a LOCAL header each, served as the socket's own
	// client (HAProxy's address), several of them, and HAProxy keeps
	// pier up.
	local := logs.WaitFor(t, waitBound, "session", "route=behind", "proxy=local")
	if !strings.Contains(local, "client=127.0.0.1:") || strings.Contains(local, "client="+clientIP) {
		t.Errorf("a health check is not served with its real endpoints:\n%s", local)
	}
	waitFor(t, func() string {
		if logs.Count("session", "proxy=local") >= 3 {
			return "three checks"
		}
		return ""
	}, "three checks")
	t.Logf("pier: %s\npier: %s\nhaproxy:\n%s", line, local, h.out)
	if out := h.out.String(); strings.Contains(out, "DOWN") {
		t.Errorf("HAProxy saw pier down:\n%s", out)
	}
}

// A header from a socket outside pier's trusted list is refused
// (proxy_untrusted) and never reaches the upstream, even from a real
// balancer.
func TestHAProxyHeaderFromUntrustedAddress(t *testing.T) {
	binary(t, "haproxy", "PIER_REQUIRE_HAPROXY")
	var accepted atomic.Int64
	up := testutil.NewUpstream(t, func(c *net.TCPConn) { accepted.Add(1); testutil.Echo(c) })
	p, logs := startPier(t, fmt.Sprintf(`
routes:
  - name: behind
    listen: ["127.0.0.1:0"]
    proxy_protocol: {accept: any, trusted: ["10.0.0.0/8"]}
    upstreams: [{address: %q}]
`, up.Addr()))
	front := freePort(t)
	startHAProxy(t, fmt.Sprintf(`
frontend fe
	bind 127.0.0.1:%d
	default_backend be
backend be
	server pier %s send-proxy-v2
`, front, pierAddr(t, p, "behind")), front)

	c := dialFrom(t, fmt.Sprintf("127.0.0.1:%d", front))
	if _, err := c.Write([]byte("never passed on")); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil && !testutil.IsReset(err) {
		t.Fatalf("the client read %d bytes, %v; want a close", n, err)
	}
	line := logs.WaitFor(t, waitBound, "session", "route=", "reason=proxy_untrusted")
	if strings.Contains(line, "client="+clientIP) {
		t.Errorf("an untrusted header's address was believed:\n%s", line)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the upstream accepted %d connections", n)
	}
}

// pier sends HAProxy (accept-proxy) a v2 header: HAProxy's own sample
// fetches read the client's address, the server name pier peeked from
// the ClientHello (authority) and pier's session id (unique ID). The TLS
// handshake completes end to end through both.
func TestPierSendProxyV2ToHAProxy(t *testing.T) {
	binary(t, "haproxy", "PIER_REQUIRE_HAPROXY")
	certPath := selfSigned(t, t.TempDir(), "db.example.com")
	cert, err := tls.LoadX509KeyPair(certPath, certPath)
	if err != nil {
		t.Fatal(err)
	}
	tlsEcho := testutil.NewUpstream(t, func(c *net.TCPConn) {
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		io.Copy(s, s)
	})
	front := freePort(t)
	h := startHAProxy(t, fmt.Sprintf(`
frontend fe
	bind 127.0.0.1:%d accept-proxy
	log-format "pp authority=%%[fc_pp_authority] uid=%%[fc_pp_unique_id] client=%%ci:%%cp"
	default_backend be
backend be
	server tls %s
`, front, tlsEcho.Addr()), front)
	p, logs := startPier(t, fmt.Sprintf(`
routes:
  - name: out
    listen: ["127.0.0.1:0"]
    match: {sni: ["db.example.com"]}
    send_proxy: v2
    upstreams: [{address: "127.0.0.1:%d"}]
`, front))

	raw := dialFrom(t, pierAddr(t, p, "out"))
	c := tls.Client(raw, &tls.Config{ServerName: "db.example.com", InsecureSkipVerify: true})
	roundTrip(t, c, "ping through pier and haproxy")
	c.Close()

	line := logs.WaitFor(t, waitBound, "session", "route=out", "client="+raw.LocalAddr().String())
	id := regexp.MustCompile(` id=(\d+) `).FindStringSubmatch(line)
	if id == nil {
		t.Fatalf("no id in pier's line:\n%s", line)
	}
	hl := h.waitOutput(t, "pp authority=db.example.com uid="+id[1]+" client="+raw.LocalAddr().String())
	t.Logf("pier: %s\nhaproxy: %s", line, hl)
}

// HAProxy passes TLS through (no termination) with a v2 header in front:
// pier reads the header, then the ClientHello behind it, and routes by
// the server name; the handshake completes with the chosen upstream.
func TestHAProxyPassthroughToSNIRoutes(t *testing.T) {
	binary(t, "haproxy", "PIER_REQUIRE_HAPROXY")
	certPath := selfSigned(t, t.TempDir(), "db.example.com")
	cert, err := tls.LoadX509KeyPair(certPath, certPath)
	if err != nil {
		t.Fatal(err)
	}
	tlsEcho := testutil.NewUpstream(t, func(c *net.TCPConn) {
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		io.Copy(s, s)
	})
	elsewhere := testutil.NewUpstream(t, testutil.Echo)
	p, logs := startPier(t, fmt.Sprintf(`
routes:
  - name: db
    listen: ["127.0.0.1:0"]
    match: {sni: ["db.example.com"]}
    proxy_protocol: {accept: v2, trusted: ["127.0.0.1/32"], required: true}
    upstreams: [{address: %q}]
  - name: rest
    listen: ["127.0.0.1:0"]
    match: {default: true}
    proxy_protocol: {accept: v2, trusted: ["127.0.0.1/32"], required: true}
    upstreams: [{address: %q}]
`, tlsEcho.Addr(), elsewhere.Addr()))
	front := freePort(t)
	startHAProxy(t, fmt.Sprintf(`
frontend fe
	bind 127.0.0.1:%d
	default_backend be
backend be
	server pier %s send-proxy-v2
`, front, pierAddr(t, p, "db")), front)

	raw := dialFrom(t, fmt.Sprintf("127.0.0.1:%d", front))
	c := tls.Client(raw, &tls.Config{ServerName: "db.example.com", InsecureSkipVerify: true})
	roundTrip(t, c, "ping by name")
	c.Close()
	line := logs.WaitFor(t, waitBound, "session", "route=db", "client="+raw.LocalAddr().String())
	for _, want := range []string{"proxy=v2", "sni=db.example.com", "match=sni:db.example.com", "reason=done"} {
		if !strings.Contains(line, want) {
			t.Errorf("pier's line lacks %q:\n%s", want, line)
		}
	}
	// (The readiness probe, from 127.0.0.1, may have gone to the
	// default route: it sent no hello.)
	if n := logs.Count("session", "route=rest", "client="+clientIP); n != 0 {
		t.Errorf("the default route served the client %d times", n)
	}
}
