package relay

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/session"
)

// testPKI is a CA and a leaf it signed for "pier.test" and 127.0.0.1.
type testPKI struct {
	pool *x509.CertPool
	leaf tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pier.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"pier.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{pool: pool, leaf: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func (p *testPKI) server() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.leaf}, MinVersion: tls.VersionTLS12}
}

func (p *testPKI) client(name string) *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: name}
}

// tlsRig is a running loop whose listener starts every client's session
// with params (a copy each), to target.
type tlsRig struct {
	l     *Loop
	ln    net.Listener
	ended chan *session.Record
}

func newTLSRig(t *testing.T, target netip.AddrPort, params Params) *tlsRig {
	t.Helper()
	return newHookedTLSRig(t, target, params, nil)
}

// newHookedTLSRig is newTLSRig with a hook on each accepted client socket
// (the loop's end), called before the session begins; nil: none.
func newHookedTLSRig(t *testing.T, target netip.AddrPort, params Params, onAccept func(fd int)) *tlsRig {
	t.Helper()
	l, stop := startLoop(t)
	ln, lfd := listenerFD(t)
	r := &tlsRig{l: l, ln: ln, ended: make(chan *session.Record, 16)}
	if err := <-l.Watch(lfd, func(l *Loop) {
		for {
			fd, client, err := dialAccept(lfd)
			if err != nil {
				return
			}
			if onAccept != nil {
				onAccept(fd)
			}
			p := params
			p.Client, p.Target = fd, target
			p.Record = &session.Record{Client: client, Start: time.Now()}
			p.Done = func(rec *session.Record) { r.ended <- rec }
			l.Begin(&p)
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dropped := make(chan struct{})
		l.Unwatch(lfd, func() { close(dropped) })
		<-dropped
		stop()
	})
	return r
}

func (r *tlsRig) next(t *testing.T) *session.Record {
	t.Helper()
	select {
	case rec := <-r.ended:
		return rec
	case <-time.After(20 * time.Second):
		t.Fatal("no session ended within 20s")
		return nil
	}
}

// halfCloseExchange sends size random bytes from client to upstream and
// size back, each way checked with SHA-256, with half-closes: the client
// finishes sending first (its FIN or close_notify must reach the upstream
// as EOF), and the upstream then still sends all of its bytes, then
// finishes. closeWrite is how each finishes sending.
func halfCloseExchange(t *testing.T, client, upstream net.Conn, size int) {
	t.Helper()
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	errc := make(chan error, 2)
	go func() { // the client sends, then finishes
		if _, err := client.Write(up); err != nil {
			errc <- err
			return
		}
		errc <- closeWrite(client)
	}()
	var got bytes.Buffer
	if _, err := io.Copy(&got, upstream); err != nil { // until the client's end
		t.Fatalf("upstream read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got.Bytes()) != sha256.Sum256(up) {
		t.Fatalf("the upstream got %d bytes, not the client's %d", got.Len(), len(up))
	}
	go func() { // the upstream answers after the client's end
		if _, err := upstream.Write(down); err != nil {
			errc <- err
			return
		}
		errc <- closeWrite(upstream)
	}()
	got.Reset()
	if _, err := io.Copy(&got, client); err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got.Bytes()) != sha256.Sum256(down) {
		t.Fatalf("the client got %d bytes, not the upstream's %d", got.Len(), len(down))
	}
}

func closeWrite(c net.Conn) error {
	switch c := c.(type) {
	case *tls.Conn:
		return c.CloseWrite()
	case *net.TCPConn:
		return c.CloseWrite()
	}
	return errors.New("cannot half-close")
}

// tlsUpstream listens on 127.0.0.1:0, with TLS when cfg is set, and hands
// over its accepted connections.
func tlsUpstream(t *testing.T, cfg *tls.Config) (netip.AddrPort, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			if cfg != nil {
				c = tls.Server(c, cfg)
			}
			conns <- c
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), conns
}

func accepted(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream accepted nothing within 20s")
		return nil
	}
}

// Terminated, originated, and both: 4 MiB each way, byte-exact, with the
// client's end (close_notify or FIN) reaching the upstream before the
// upstream's answer, which still arrives whole; the record says what
// each handshake settled, and ends done with nothing truncated.
func TestTLSHalfCloseEveryWay(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name                string
		terminate, original bool
	}{
		{"terminate", true, false},
		{"originate", false, true},
		{"reencrypt", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var upCfg *tls.Config
			p := Params{IdleTimeout: time.Minute, HandshakeTimeout: 10 * time.Second}
			if tc.terminate {
				p.TLSServer = pki.server()
			}
			if tc.original {
				upCfg = pki.server()
				p.TLSClient = pki.client("pier.test")
			}
			target, conns := tlsUpstream(t, upCfg)
			rig := newTLSRig(t, target, p)
			var client net.Conn
			var err error
			if tc.terminate {
				client, err = tls.Dial("tcp", rig.ln.Addr().String(), pki.client("pier.test"))
			} else {
				client, err = net.Dial("tcp", rig.ln.Addr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			client.SetDeadline(time.Now().Add(30 * time.Second))
			up := accepted(t, conns)
			halfCloseExchange(t, client, up, 4<<20)
			rec := rig.next(t)
			if rec.Reason != session.Done || rec.ToUpstream != 4<<20 || rec.ToClient != 4<<20 {
				t.Fatalf("ended %v (%v), %d up, %d down", rec.Reason, rec.Err, rec.ToUpstream, rec.ToClient)
			}
			if rec.TLS == nil || (rec.TLS.Client != nil) != tc.terminate || (rec.TLS.Upstream != nil) != tc.original || rec.TLS.Truncated != "" {
				t.Fatalf("record TLS %+v", rec.TLS)
			}
			if h := rec.TLS.Client; h != nil && (h.Version != "TLS 1.3" || h.ServerName != "pier.test") {
				t.Errorf("client handshake %+v", h)
			}
			if h := rec.TLS.Upstream; h != nil && (h.Version != "TLS 1.3" || h.PeerSubject != "CN=pier.test") {
				t.Errorf("upstream handshake %+v", h)
			}
		})
	}
}

// A client that connects and says nothing ends at the handshake timeout
// (tls_handshake_failed, "timed out"), and costs the upstream nothing;
// one that sends garbage instead of a ClientHello ends at once.
func TestTLSHandshakeFailuresAreBounded(t *testing.T) {
	pki := newTestPKI(t)
	target, conns := tlsUpstream(t, nil)
	const timeout = 300 * time.Millisecond
	rig := newTLSRig(t, target, Params{TLSServer: pki.server(), HandshakeTimeout: timeout})

	silent, err := net.Dial("tcp", rig.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	began := time.Now()
	rec := rig.next(t)
	if took := time.Since(began); took < timeout*3/4 || took > 10*time.Second {
		t.Errorf("a silent client ended after %v, want about %v", took, timeout)
	}
	if rec.Reason != session.TLSHandshakeFailed || rec.Err == nil || !strings.Contains(rec.Err.Error(), "client: relay: tls: handshake timed out") {
		t.Fatalf("silent client: %v (%v)", rec.Reason, rec.Err)
	}

	garbage, err := net.Dial("tcp", rig.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	garbage.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	began = time.Now()
	rec = rig.next(t)
	if rec.Reason != session.TLSHandshakeFailed || rec.Err == nil || !strings.Contains(rec.Err.Error(), "client: ") || time.Since(began) > timeout {
		t.Fatalf("garbage: %v (%v) after %v", rec.Reason, rec.Err, time.Since(began))
	}
	select {
	case c := <-conns:
		t.Fatalf("the upstream was dialed (%v) for a client that never finished a handshake", c.RemoteAddr())
	default:
	}
	if n := rig.l.Live(); n != 0 {
		t.Errorf("%d sessions live", n)
	}
}

// An upstream whose certificate does not name what pier asks for fails
// the session's upstream handshake, and says why.
func TestTLSUpstreamWrongName(t *testing.T) {
	pki := newTestPKI(t)
	target, conns := tlsUpstream(t, pki.server())
	rig := newTLSRig(t, target, Params{TLSClient: pki.client("other.test")})
	c, err := net.Dial("tcp", rig.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	up := accepted(t, conns)
	go up.(*tls.Conn).Handshake() // fails: the client gives up
	rec := rig.next(t)
	if rec.Reason != session.TLSHandshakeFailed || rec.Err == nil ||
		!strings.Contains(rec.Err.Error(), "upstream: ") || !strings.Contains(rec.Err.Error(), "other.test") {
		t.Fatalf("ended %v (%v)", rec.Reason, rec.Err)
	}
}

// A client whose stream ends with a bare FIN, no close_notify, is a
// truncation: logged as such, and the FIN still passed on.
func TestTLSTruncationIsRecorded(t *testing.T) {
	pki := newTestPKI(t)
	target, conns := tlsUpstream(t, nil)
	rig := newTLSRig(t, target, Params{TLSServer: pki.server(), IdleTimeout: time.Minute})
	raw, err := net.Dial("tcp", rig.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tc := tls.Client(raw, pki.client("pier.test"))
	if _, err := tc.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	up := accepted(t, conns)
	if got := readN(t, up, len("last words")); got != "last words" {
		t.Fatalf("upstream got %q", got)
	}
	raw.(*net.TCPConn).CloseWrite() // FIN, no close_notify
	if n, err := up.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the client's FIN the upstream read %d, %v; want EOF", n, err)
	}
	up.(*net.TCPConn).CloseWrite()
	rec := rig.next(t)
	if rec.TLS == nil || rec.TLS.Truncated != "client" {
		t.Fatalf("record TLS %+v, reason %v", rec.TLS, rec.Reason)
	}
}

// A member whose TLS handshake fails (it answers in plaintext), or never
// ends (it says nothing: the handshake times out), is a failed try like a
// refused dial: the session moves on to the next member, whose handshake
// succeeds, and only that one is told Connected. The first handshake's
// goroutine, still running after the timeout, cannot touch the second.
func TestTLSUpstreamHandshakeFailureRetries(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
	}{
		{"plaintext", func(c net.Conn) { c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n")) }},
		{"silent", func(net.Conn) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, badConns := tlsUpstream(t, nil)
			good, goodConns := tlsUpstream(t, pki.server())
			go func() {
				if c, ok := <-badConns; ok {
					tc.serve(c)
				}
			}()
			ups := &fakeUpstreams{next: good}
			rig := newTLSRig(t, bad, Params{TLSClient: pki.client("pier.test"), HandshakeTimeout: 300 * time.Millisecond,
				IdleTimeout: time.Minute, Upstreams: ups})
			c, err := net.Dial("tcp", rig.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			up := accepted(t, goodConns)
			halfCloseExchange(t, c, up, 64<<10)
			rec := rig.next(t)
			if rec.Reason != session.Done || rec.Tries != 2 || rec.TLS == nil || rec.TLS.Upstream == nil {
				t.Fatalf("ended %v (%v) after %d tries, TLS %+v", rec.Reason, rec.Err, rec.Tries, rec.TLS)
			}
			if !ups.retried || !ups.connected {
				t.Errorf("retried %v, connected %v", ups.retried, ups.connected)
			}
		})
	}
}

// A TLS 1.3 member that requires a client certificate pier does not send
// refuses it only after pier's handshake has ended, with an alert as its
// first record: still a failed handshake with the upstream, not a reset.
func TestTLSUpstreamRefusesAfterHandshake(t *testing.T) {
	pki := newTestPKI(t)
	srv := pki.server()
	srv.ClientAuth = tls.RequireAndVerifyClientCert
	srv.ClientCAs = pki.pool
	target, conns := tlsUpstream(t, srv)
	rig := newTLSRig(t, target, Params{TLSClient: pki.client("pier.test"), IdleTimeout: time.Minute})
	c, err := net.Dial("tcp", rig.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	up := accepted(t, conns)
	go func() {
		up.(*tls.Conn).Handshake() // refuses: no certificate
		up.Close()
	}()
	rec := rig.next(t)
	if rec.Reason != session.TLSHandshakeFailed || rec.Err == nil || !strings.HasPrefix(rec.Err.Error(), "upstream: ") ||
		!strings.Contains(rec.Err.Error(), "certificate required") {
		t.Fatalf("ended %v (%v)", rec.Reason, rec.Err)
	}
}
