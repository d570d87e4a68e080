package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/tlsconf"
	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
)

// served is the leaf certificate srv presents to a client that asks for
// serverName, by a handshake over a pipe.
func served(t *testing.T, srv *tlsconf.Server, roots *x509.CertPool, serverName string) *x509.Certificate {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	deadline := time.Now().Add(wait)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() { done <- tls.Server(s, srv.Config()).Handshake() }()
	tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: serverName})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake with the route's server: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server side of the handshake: %v", err)
	}
	return tc.ConnectionState().PeerCertificates[0]
}

// handshake runs a handshake of client with srv over a pipe.
func handshake(srv *tlsconf.Server, client *tls.Config) error {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	deadline := time.Now().Add(wait)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		err := tls.Server(s, srv.Config()).Handshake()
		s.Close()
		done <- err
	}()
	err := tls.Client(c, client).Handshake()
	c.Close()
	if serr := <-done; err == nil {
		err = serr
	}
	return err
}

// tlsDoc is a route that terminates with cert and key, and originates
// with ca (a member of its own with insecure_skip_verify), checking its
// members over TLS.
func tlsDoc(cert, key, ca string) string {
	return fmt.Sprintf(`routes:
  - name: r
    listen: ["127.0.0.1:0"]
    upstreams:
      - address: "db.test:5432"
      - address: "127.0.0.1:5433"
        upstream_tls: {insecure_skip_verify: true}
    tls:
      certificates: [{cert: %q, key: %q}]
      min_version: "1.3"
      alpn: [h2]
    upstream_tls: {ca: %q, server_name: db.internal}
    handshake_timeout: 3s
    health_check: {tls: true, interval: 1h}
`, cert, key, ca)
}

// compile turns the TLS settings into the route's server, its handshake
// bound, and the pool's clients: the route's for a member without its
// own, the member's own otherwise, and the TLS health check.
func TestCompileTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	leaf := ca.Leaf(t, tlstest.ECDSA, "example.test")
	cfg := parse(t, tlsDoc(leaf.CertFile, leaf.KeyFile, ca.CertFile))
	_, log := testutil.NewLogs()
	tbl, next, _, _, err := compile(cfg, nil, nil, func(string) map[string]pool.Steering { return nil }, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stopPools(next)
	rt := tbl.Route("r")
	if rt.TLS == nil || rt.HandshakeTimeout != 3*time.Second {
		t.Fatalf("route: TLS %v, handshake timeout %v", rt.TLS, rt.HandshakeTimeout)
	}
	if got := served(t, rt.TLS, ca.Pool, "example.test"); !got.Equal(leaf.Cert) {
		t.Errorf("the route serves %v, want its configured certificate", got.Subject)
	}
	if err := handshake(rt.TLS, &tls.Config{RootCAs: ca.Pool, ServerName: "example.test", MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("a TLS 1.2 client was let in by a route with min_version 1.3")
	}
	if n := len(next["r"].tls); n != 3 {
		t.Errorf("%d TLS refreshers for the watcher, want 3 (server, route client, member client)", n)
	}
	for _, m := range rt.Pool.Members() {
		if m.TLS == nil {
			t.Fatalf("member %s has no TLS config", m.Addr)
		}
		switch m.Name {
		case "127.0.0.1:5433":
			if m.TLS.VerifyConnection != nil || m.TLS.ServerName != "127.0.0.1" {
				t.Errorf("member with its own upstream_tls: %+v", m.TLS)
			}
		default:
			if m.TLS.ServerName != "db.internal" || m.TLS.VerifyConnection == nil {
				t.Errorf("member with the route's upstream_tls: server name %q", m.TLS.ServerName)
			}
		}
	}
	pc, clients, err := poolConfig(cfg, &cfg.Routes[0], nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if !pc.CheckTLS || pc.UpstreamTLS == nil || pc.Members[0].TLS != nil || pc.Members[1].TLS == nil || len(clients) != 2 {
		t.Errorf("pool config: CheckTLS %v, route %v, members %v %v, clients %d", pc.CheckTLS, pc.UpstreamTLS, pc.Members[0].TLS, pc.Members[1].TLS, len(clients))
	}
}

// While pier runs, a certificate replaced on disk is served to new
// clients without a reload (the Watcher started with the daemon follows
// the table in force); a reload makes a new server from the files; Stop
// stops the Watcher (goleak, in TestMain).
func TestTLSFilesFollowedWhileRunning(t *testing.T) {
	ca := tlstest.NewCA(t)
	first := ca.Leaf(t, tlstest.ECDSA, "example.test")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first.WriteTo(t, cert, key)
	_, log := testutil.NewLogs()
	cfg := parse(t, tlsDoc(cert, key, ca.CertFile))
	d, err := Start(cfg, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	server := func() *tlsconf.Server {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, r := range d.routes["r"].tls {
			if s, ok := r.(*tlsconf.Server); ok {
				return s
			}
		}
		t.Fatal("the route has no TLS server")
		return nil
	}
	before := server()
	if got := served(t, before, ca.Pool, "example.test"); !got.Equal(first.Cert) {
		t.Fatal("not the first certificate")
	}
	second := ca.Leaf(t, tlstest.ECDSA, "example.test")
	second.WriteTo(t, cert, key)
	deadline := time.Now().Add(wait)
	for !served(t, before, ca.Pool, "example.test").Equal(second.Cert) {
		if time.Now().After(deadline) {
			t.Fatal("the replaced certificate was not served without a reload")
		}
		time.Sleep(20 * time.Millisecond) // polling the Watcher's work, with a deadline
	}
	if err := d.Reload(parse(t, tlsDoc(cert, key, ca.CertFile))); err != nil {
		t.Fatal(err)
	}
	after := server()
	if after == before {
		t.Error("a reload kept the old TLS server: files are read again on reload")
	}
	if got := served(t, after, ca.Pool, "example.test"); !got.Equal(second.Cert) {
		t.Error("the reloaded server does not serve the file's certificate")
	}
}

// A TLS file that the check read but that is gone when the daemon starts
// (or reloads) fails it, naming the route, the setting and the file; the
// running configuration stays.
func TestTLSFileGoneFailsNamingRouteAndFile(t *testing.T) {
	ca := tlstest.NewCA(t)
	leaf := ca.Leaf(t, tlstest.ECDSA, "example.test")
	dir := t.TempDir()
	cert, key, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	leaf.WriteTo(t, cert, key)
	data, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, tlsDoc(cert, key, caFile))
	os.Remove(key)
	_, log := testutil.NewLogs()
	if d, err := Start(cfg, Options{Log: log}); err == nil {
		d.Stop(context.Background())
		t.Fatal("started with the key file gone")
	} else if !strings.Contains(err.Error(), "test.yaml:9:7: route r: tls: ") || !strings.Contains(err.Error(), key) {
		t.Errorf("error %q does not place the route's tls and name the file", err)
	}
	leaf.WriteTo(t, cert, key)
	d, err := Start(parse(t, tlsDoc(cert, key, caFile)), Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	next := parse(t, tlsDoc(cert, key, caFile))
	os.Remove(caFile)
	err = d.Reload(next)
	if err == nil || !strings.Contains(err.Error(), "route r: upstream_tls: ") || !strings.Contains(err.Error(), caFile) {
		t.Errorf("reload with the CA gone: %v", err)
	}
	if d.Config().File != "test.yaml" || d.Config() == next {
		t.Error("the failed reload changed the configuration in force")
	}
}
