package proxy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/tlsconf"
	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
)

// tlsServer is a tlsconf.Server for leaves.
func tlsServer(t *testing.T, leaves ...*tlstest.Leaf) *tlsconf.Server {
	t.Helper()
	var s tlsconf.ServerSettings
	for _, l := range leaves {
		s.Certificates = append(s.Certificates, tlsconf.Pair{Cert: l.CertFile, Key: l.KeyFile})
	}
	srv, err := tlsconf.NewServer(s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// tlsMemberRoute is a route whose pool originates TLS to its members,
// verified against ca for serverName.
func tlsMemberRoute(t *testing.T, name string, ca *tlstest.CA, serverName string, upstream string) *route.Route {
	t.Helper()
	client, err := tlsconf.NewClient(tlsconf.ClientSettings{CA: ca.CertFile, ServerName: serverName}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s, err := pool.ParseAddress(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Config{Route: name, Members: []pool.Spec{s}, UpstreamTLS: client}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	rt := newRoute(t, name, upstream)
	rt.Pool = p
	return rt
}

// tlsEcho is a TLS upstream with leaf that echoes every stream and keeps
// the SHA-256 of each, like hashEcho, ending with close_notify.
func tlsEcho(t *testing.T, h *hashEcho, leaf *tlstest.Leaf) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				sum := sha256.New()
				io.Copy(tc, io.TeeReader(tc, sum))
				h.mu.Lock()
				h.hashes[string(sum.Sum(nil))] = true
				h.mu.Unlock()
				tc.CloseWrite()
			})
		}
	}()
	return ln.Addr().String()
}

// sendHalfClose writes payload on c, finishes sending (close_notify for
// TLS), and reads everything until the upstream finishes: the echo of
// payload, byte-exact.
func sendHalfClose(t *testing.T, c net.Conn, payload []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			switch c := c.(type) {
			case *tls.Conn:
				err = c.CloseWrite()
			case *net.TCPConn:
				err = c.CloseWrite()
			}
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("got %d bytes back, not the %d sent", len(got), len(payload))
	}
}

// Through the proxy, terminated, originated and re-encrypted: 64 MiB
// each way, SHA-256 compared at both ends, with close_notify (or FIN)
// from the client passed on before the upstream's answer ends, which
// still arrives whole. The access log has what each handshake settled.
func TestTLSHalfCloseThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB each way, three times")
	}
	ca := tlstest.NewCA(t)
	front := ca.Leaf(t, tlstest.ECDSA, "app.example.com")
	back := ca.Leaf(t, tlstest.ECDSA, "db.internal")
	payload := make([]byte, 64<<20)
	rand.Read(payload)
	for _, tc := range []struct {
		name                 string
		terminate, originate bool
	}{
		{"terminate", true, false}, {"originate", false, true}, {"reencrypt", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &hashEcho{hashes: make(map[string]bool)}
			var rt *route.Route
			if tc.originate {
				rt = tlsMemberRoute(t, "r", ca, "db.internal", tlsEcho(t, h, back))
			} else {
				rt = newRoute(t, "r", testutil.NewUpstream(t, h.serve).Addr())
			}
			if tc.terminate {
				rt.TLS = tlsServer(t, front)
			}
			srv, recs := start(t, rt)
			var c net.Conn = dial(t, srv, "r")
			if tc.terminate {
				c = tls.Client(c, &tls.Config{RootCAs: ca.Pool, ServerName: "app.example.com"})
			}
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			sendHalfClose(t, c, payload)
			rec := recs.Next(t, wait)
			wantReason(t, rec, "done")
			if rec["bytes_to_upstream"] != int64(len(payload)) || rec["bytes_to_client"] != int64(len(payload)) {
				t.Errorf("bytes %v up, %v down", rec["bytes_to_upstream"], rec["bytes_to_client"])
			}
			if tc.terminate && (rec["tls_version"] != "TLS 1.3" || rec["tls_sni"] != "app.example.com") {
				t.Errorf("client handshake in the log: %v %v", rec["tls_version"], rec["tls_sni"])
			}
			if tc.originate && (rec["upstream_tls_version"] != "TLS 1.3" || rec["upstream_tls_peer"] != "CN=db.internal,O=pier tests") {
				t.Errorf("upstream handshake in the log: %v %v", rec["upstream_tls_version"], rec["upstream_tls_peer"])
			}
			if _, ok := rec["tls_truncated"]; ok {
				t.Errorf("tls_truncated=%v on a clean end", rec["tls_truncated"])
			}
		})
	}
}

// One listener, two routes by SNI: app.example.com terminated by pier
// (pier's certificate, plaintext to its upstream), db.example.com passed
// through to a member that holds its own certificate. Each client sees
// the certificate of the side it should, and its bytes arrive.
func TestTLSTerminateAndPassThroughShareListener(t *testing.T) {
	ca := tlstest.NewCA(t)
	pierLeaf := ca.Leaf(t, tlstest.ECDSA, "app.example.com")
	memberLeaf := ca.Leaf(t, tlstest.RSA, "db.example.com")
	plain := &hashEcho{hashes: make(map[string]bool)}
	secret := &hashEcho{hashes: make(map[string]bool)}
	app := newRoute(t, "app", testutil.NewUpstream(t, plain.serve).Addr())
	app.Match = &route.Match{SNI: []string{"app.example.com"}}
	app.TLS = tlsServer(t, pierLeaf)
	db := newRoute(t, "db", tlsEcho(t, secret, memberLeaf))
	db.Match = &route.Match{SNI: []string{"db.example.com"}}
	srv, recs := start(t, app, db)
	for _, name := range []string{"app.example.com", "db.example.com"} {
		c := tls.Client(dial(t, srv, "app"), &tls.Config{RootCAs: ca.Pool, ServerName: name})
		if err := c.Handshake(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != name {
			t.Fatalf("%s: served the certificate of %s", name, got)
		}
		sendHalfClose(t, c, []byte("hello "+name))
		// Passed through, close_notify is only bytes to pier: the
		// session ends at the client's FIN.
		c.Close()
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		wantTLS := name == "app.example.com"
		if _, ok := rec["tls_version"]; ok != wantTLS || rec["sni"] != name {
			t.Errorf("%s: tls_version %v, sni %v", name, rec["tls_version"], rec["sni"])
		}
	}
	plain.mu.Lock()
	secret.mu.Lock()
	defer plain.mu.Unlock()
	defer secret.mu.Unlock()
	if len(plain.hashes) != 1 || len(secret.hashes) != 1 {
		t.Errorf("upstreams got %d plaintext and %d TLS streams, want 1 each", len(plain.hashes), len(secret.hashes))
	}
}

// Filters on a terminated route see the plaintext: a filter that records
// the upstream direction sees the client's request as written, not TLS
// records.
func TestTLSFiltersSeePlaintext(t *testing.T) {
	ca := tlstest.NewCA(t)
	up := testutil.NewUpstream(t, testutil.Echo)
	var mu sync.Mutex
	var seen bytes.Buffer
	rt := filtered(t, "f", up.Addr(), funcFilter{up: func() filter.Stream {
		return streamFunc(func(b *filter.Batch) error {
			mu.Lock()
			seen.Write(b.In)
			mu.Unlock()
			b.Pass(len(b.In))
			return nil
		})
	}})
	rt.TLS = tlsServer(t, ca.Leaf(t, tlstest.ECDSA, "app.example.com"))
	srv, recs := start(t, rt)
	c := tls.Client(dial(t, srv, "f"), &tls.Config{RootCAs: ca.Pool, ServerName: "app.example.com"})
	const req = "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
	sendHalfClose(t, c, []byte(req))
	wantReason(t, recs.Next(t, wait), "done")
	mu.Lock()
	defer mu.Unlock()
	if seen.String() != req {
		t.Fatalf("the filter saw %q", seen.String())
	}
}
