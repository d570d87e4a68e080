package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
)

// tlsMember returns a member that reads preface bytes in the clear (a
// PROXY header), then terminates TLS with cert and answers PING with
// +PONG through it. What it read inside TLS is sent on got.
func tlsMember(cert tls.Certificate, preface int, got chan<- []byte) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		if preface > 0 {
			if _, err := io.ReadFull(c, make([]byte, preface)); err != nil {
				return
			}
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(ping))
		if _, err := io.ReadFull(tc, buf); err != nil {
			return
		}
		got <- buf
		tc.Write([]byte("+PONG\r\n"))
		io.Copy(io.Discard, tc)
	}
}

// A TLS check handshakes with the member, verifying its certificate with
// the member's configuration, then sends and reads through TLS; a PROXY
// preface goes first, in the clear.
func TestProbeTLSHandshakesThenSends(t *testing.T) {
	ca := tlstest.NewCA(t)
	leaf := ca.Leaf(t, tlstest.ECDSA, "127.0.0.1")
	got := make(chan []byte, 1)
	local := peek.AppendLocal(nil, peek.V2)
	addr := serve(t, tlsMember(leaf.TLS(t), len(local), got))
	c := pingPong(2 * time.Second)
	var asked netip.AddrPort
	c.TLS = func(a netip.AddrPort) *tls.Config {
		asked = a
		return &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}
	}
	c.Preface = func(netip.AddrPort) []byte { return local }
	if err := c.Probe(context.Background(), addr); err != nil {
		t.Fatalf("TLS check of a good member: %v", err)
	}
	if asked != addr {
		t.Errorf("TLS asked for %v, want %v", asked, addr)
	}
	if b := <-got; !bytes.Equal(b, ping) {
		t.Errorf("member read %q inside TLS, want %q", b, ping)
	}
}

// A member whose certificate the member's configuration does not trust,
// a plain member and a member that never answers the ClientHello each
// fail the check with a "tls handshake:" error that says why.
func TestProbeTLSFailures(t *testing.T) {
	ca, other := tlstest.NewCA(t), tlstest.NewCA(t)
	leaf := ca.Leaf(t, tlstest.ECDSA, "127.0.0.1")
	got := make(chan []byte, 1)
	for _, tc := range []struct {
		name   string
		member func(*net.TCPConn)
		roots  *tls.Config
		want   string
	}{
		{"wrong CA", tlsMember(leaf.TLS(t), 0, got), &tls.Config{RootCAs: other.Pool, ServerName: "127.0.0.1"},
			"tls handshake: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{"wrong name", tlsMember(leaf.TLS(t), 0, got), &tls.Config{RootCAs: ca.Pool, ServerName: "db.example.com"},
			"tls handshake: tls: failed to verify certificate: x509: certificate is not valid for any names, but wanted to match db.example.com"},
		{"plain member", answer(false, 0, 0, "+PONG\r\n"), &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"},
			"tls handshake: tls: first record does not look like a TLS handshake"},
		{"silent member", answer(false, 0, 0), &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"},
			"tls handshake: timeout after 200ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, tc.member)
			c := pingPong(200 * time.Millisecond)
			c.TLS = func(netip.AddrPort) *tls.Config { return tc.roots }
			err := c.Probe(context.Background(), addr)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %s...", err, tc.want)
			}
			if IsLocal(err) {
				t.Errorf("a member's TLS failure counts as pier's own: %v", err)
			}
		})
	}
	select {
	case b := <-got:
		t.Errorf("a member that failed the handshake read %q", b)
	default:
	}
}

// A nil config from TLS is a plain check.
func TestProbeTLSNilConfigIsPlain(t *testing.T) {
	addr := serve(t, answer(true, 0, 0, "+PONG\r\n"))
	c := pingPong(time.Second)
	c.TLS = func(netip.AddrPort) *tls.Config { return nil }
	if err := c.Probe(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
}
