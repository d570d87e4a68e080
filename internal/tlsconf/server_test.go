package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
)

func newServer(t *testing.T, s ServerSettings) *Server {
	t.Helper()
	srv, err := NewServer(s, discard())
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func pairOf(l *tlstest.Leaf) Pair { return Pair{Cert: l.CertFile, Key: l.KeyFile} }

// peer returns the serial number of the certificate the client was given.
func peer(t *testing.T, sh shake) string {
	t.Helper()
	mustOK(t, sh)
	return sh.client.PeerCertificates[0].SerialNumber.String()
}

func TestServerChoosesCertificateBySNI(t *testing.T) {
	ca := tlstest.NewCA(t)
	def := ca.Leaf(t, tlstest.ECDSA, "default.test")
	exact := ca.Leaf(t, tlstest.ECDSA, "www.example.com")
	wild := ca.Leaf(t, tlstest.ECDSA, "*.example.com")
	srv := newServer(t, ServerSettings{Certificates: []Pair{pairOf(def), pairOf(wild), pairOf(exact)}})
	for _, c := range []struct {
		sni  string
		want *tlstest.Leaf
	}{
		{"www.example.com", exact},
		{"WWW.Example.COM", exact}, // DNS names compare case-insensitively (RFC 4343)
		{"a.example.com", wild},
		{"a.b.example.com", def}, // a wildcard covers one label only (RFC 6125 6.4.3)
		{"example.com", def},
		{"other.test", def},
		{"", def}, // no SNI
	} {
		t.Run(c.sni, func(t *testing.T) {
			sh := handshake(t, srv.Config(), &tls.Config{ServerName: c.sni, InsecureSkipVerify: true})
			if got := peer(t, sh); got != c.want.Cert.SerialNumber.String() {
				t.Errorf("SNI %q got the certificate for %v, want %v", c.sni,
					sh.client.PeerCertificates[0].DNSNames, c.want.Cert.DNSNames)
			}
			if c.want == def {
				return
			}
			// The chosen certificate verifies for the name, through the CA.
			mustOK(t, handshake(t, srv.Config(), &tls.Config{ServerName: c.sni, RootCAs: ca.Pool}))
		})
	}
}

func TestServerChoosesECDSAOrRSAByWhatTheClientSupports(t *testing.T) {
	ca := tlstest.NewCA(t)
	rsaLeaf := ca.Leaf(t, tlstest.RSA, "example.com")
	ecLeaf := ca.Leaf(t, tlstest.ECDSA, "example.com")
	// RSA listed first: ECDSA is still preferred when the client takes both.
	srv := newServer(t, ServerSettings{Certificates: []Pair{pairOf(rsaLeaf), pairOf(ecLeaf)}})
	onlyRSA := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	onlyECDSA := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	for _, sni := range []string{"example.com", ""} { // "": the default and its twin
		for _, c := range []struct {
			name   string
			max    uint16
			suites []uint16
			want   x509.PublicKeyAlgorithm
		}{
			{"tls13 any", tls.VersionTLS13, nil, x509.ECDSA},
			{"tls12 any", tls.VersionTLS12, nil, x509.ECDSA},
			{"tls12 rsa suites only", tls.VersionTLS12, onlyRSA, x509.RSA},
			{"tls12 ecdsa suites only", tls.VersionTLS12, onlyECDSA, x509.ECDSA},
		} {
			t.Run(c.name+" sni="+sni, func(t *testing.T) {
				sh := handshake(t, srv.Config(), &tls.Config{
					ServerName: sni, InsecureSkipVerify: true, MaxVersion: c.max, CipherSuites: c.suites,
				})
				mustOK(t, sh)
				if got := sh.client.PeerCertificates[0].PublicKeyAlgorithm; got != c.want {
					t.Errorf("got a %v certificate, want %v", got, c.want)
				}
			})
		}
	}
}

func TestServerRefreshServesReplacedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	old := ca.Leaf(t, tlstest.ECDSA, "www.example.com")
	srv := newServer(t, ServerSettings{Certificates: []Pair{pairOf(old)}})
	client := &tls.Config{ServerName: "www.example.com", RootCAs: ca.Pool}
	if got := peer(t, handshake(t, srv.Config(), client)); got != old.Cert.SerialNumber.String() {
		t.Fatal("not the configured certificate")
	}
	if changed, err := srv.Refresh(); changed || err != nil {
		t.Fatalf("Refresh of unchanged files = %v, %v; want false, nil", changed, err)
	}

	renewed := ca.Leaf(t, tlstest.RSA, "www.example.com")
	renewed.WriteTo(t, old.CertFile, old.KeyFile)
	// Until Refresh, handshakes keep the old one: nothing reads files on a handshake.
	if got := peer(t, handshake(t, srv.Config(), client)); got != old.Cert.SerialNumber.String() {
		t.Fatal("the certificate changed before Refresh")
	}
	if changed, err := srv.Refresh(); !changed || err != nil {
		t.Fatalf("Refresh after the renewal = %v, %v; want true, nil", changed, err)
	}
	if got := peer(t, handshake(t, srv.Config(), client)); got != renewed.Cert.SerialNumber.String() {
		t.Fatal("a new handshake after Refresh did not get the renewed certificate")
	}
}

func TestServerRefreshKeepsOldCertificateWhenNewFileIsBad(t *testing.T) {
	ca := tlstest.NewCA(t)
	good := ca.Leaf(t, tlstest.ECDSA, "www.example.com")
	other := ca.Leaf(t, tlstest.ECDSA, "www.example.com")
	expired := ca.LeafValid(t, tlstest.ECDSA, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "www.example.com")
	srv := newServer(t, ServerSettings{Certificates: []Pair{pairOf(good)}})
	client := &tls.Config{ServerName: "www.example.com", RootCAs: ca.Pool}

	var prev error
	for _, c := range []struct {
		name      string
		cert, key []byte
		wantInErr []string
	}{
		{"garbage certificate", []byte("not a certificate\n"), good.KeyPEM, []string{good.CertFile, "PEM"}},
		{"key of another certificate", good.CertPEM, other.KeyPEM, []string{good.CertFile, good.KeyFile, "does not match"}},
		{"garbage key", good.CertPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), []string{good.KeyFile}},
		{"expired certificate", expired.CertPEM, expired.KeyPEM, []string{good.CertFile, "valid only"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			writeRenamed(t, good.CertFile, c.cert)
			writeRenamed(t, good.KeyFile, c.key)
			changed, err := srv.Refresh()
			if changed || err == nil {
				t.Fatalf("Refresh = %v, %v; want false and an error", changed, err)
			}
			for _, part := range c.wantInErr {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not say %q", err, part)
				}
			}
			if err == prev {
				t.Error("a new failure returned the previous error value")
			}
			prev = err
			// Unchanged bad files: the same error value, so a Watcher logs it once.
			if _, again := srv.Refresh(); again != err {
				t.Errorf("second Refresh = %v; want the same error value", again)
			}
			if got := peer(t, handshake(t, srv.Config(), client)); got != good.Cert.SerialNumber.String() {
				t.Error("a bad new file replaced the good certificate")
			}
		})
	}
	fixed := ca.Leaf(t, tlstest.ECDSA, "www.example.com")
	fixed.WriteTo(t, good.CertFile, good.KeyFile)
	if changed, err := srv.Refresh(); !changed || err != nil {
		t.Fatalf("Refresh after a fix = %v, %v; want true, nil", changed, err)
	}
	if got := peer(t, handshake(t, srv.Config(), client)); got != fixed.Cert.SerialNumber.String() {
		t.Error("the fixed certificate is not served")
	}
}

func writeRenamed(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestNewServerRefusesBadSettingsNamingTheFile(t *testing.T) {
	ca := tlstest.NewCA(t)
	good := ca.Leaf(t, tlstest.ECDSA, "a.test")
	other := ca.Leaf(t, tlstest.ECDSA, "a.test")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name     string
		s        ServerSettings
		settings bool     // ErrSettings
		want     []string // in the message
	}{
		{"no certificate", ServerSettings{}, true, nil},
		{"no key", ServerSettings{Certificates: []Pair{{Cert: good.CertFile}}}, true, nil},
		{"required without a ca", ServerSettings{Certificates: []Pair{pairOf(good)}, ClientAuthRequired: true}, true, nil},
		{"missing certificate", ServerSettings{Certificates: []Pair{{Cert: missing, Key: good.KeyFile}}}, false, []string{missing, "no such file"}},
		{"missing key", ServerSettings{Certificates: []Pair{{Cert: good.CertFile, Key: missing}}}, false, []string{missing}},
		{"garbage certificate", ServerSettings{Certificates: []Pair{{Cert: garbage, Key: good.KeyFile}}}, false, []string{garbage}},
		{"mismatched key", ServerSettings{Certificates: []Pair{{Cert: good.CertFile, Key: other.KeyFile}}}, false, []string{good.CertFile, other.KeyFile, "does not match"}},
		{"garbage ca", ServerSettings{Certificates: []Pair{pairOf(good)}, ClientCA: garbage}, false, []string{garbage, "no PEM certificate"}},
		{"missing ca", ServerSettings{Certificates: []Pair{pairOf(good)}, ClientCA: missing}, false, []string{missing}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewServer(c.s, discard())
			if err == nil {
				t.Fatal("NewServer accepted it")
			}
			if errors.Is(err, ErrSettings) != c.settings {
				t.Errorf("errors.Is(%v, ErrSettings) = %v", err, !c.settings)
			}
			for _, part := range c.want {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not say %q", err, part)
				}
			}
		})
	}
}

func TestServerSettingsReachTheConfig(t *testing.T) {
	ca := tlstest.NewCA(t)
	leaf := ca.Leaf(t, tlstest.ECDSA, "a.test")
	srv := newServer(t, ServerSettings{
		Certificates: []Pair{pairOf(leaf)},
		MinVersion:   tls.VersionTLS13,
		ALPN:         []string{"h2", "http/1.1"},
	})
	if srv.Config() != srv.Config() {
		t.Fatal("Config is not a stable pointer")
	}
	sh := handshake(t, srv.Config(), &tls.Config{ServerName: "a.test", RootCAs: ca.Pool, NextProtos: []string{"http/1.1"}})
	mustOK(t, sh)
	if sh.client.NegotiatedProtocol != "http/1.1" || sh.client.Version != tls.VersionTLS13 {
		t.Errorf("ALPN %q, version %#x; want http/1.1, TLS 1.3", sh.client.NegotiatedProtocol, sh.client.Version)
	}
	mustFail(t, handshake(t, srv.Config(), &tls.Config{ServerName: "a.test", RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12}))

	// Default: TLS 1.2 at least.
	srv12 := newServer(t, ServerSettings{Certificates: []Pair{pairOf(leaf)}})
	mustFail(t, handshake(t, srv12.Config(), &tls.Config{ServerName: "a.test", RootCAs: ca.Pool, MaxVersion: tls.VersionTLS11}))
	mustOK(t, handshake(t, srv12.Config(), &tls.Config{ServerName: "a.test", RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12}))
}

// TestServerTicketKeysRotateKeepingThree pins the rotation: a ticket issued
// under a key resumes while that key is among the last three (two rotations
// later) and no longer after the third.
func TestServerTicketKeysRotateKeepingThree(t *testing.T) {
	ca := tlstest.NewCA(t)
	leaf := ca.Leaf(t, tlstest.ECDSA, "a.test")
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for rotations, wantResume := range []bool{true, true, true, false} {
			t.Run(tls.VersionName(version)+"/"+string(rune('0'+rotations)), func(t *testing.T) {
				srv := newServer(t, ServerSettings{Certificates: []Pair{pairOf(leaf)}})
				clock := time.Now()
				srv.now = func() time.Time { return clock }
				client := &tls.Config{ServerName: "a.test", RootCAs: ca.Pool, MaxVersion: version,
					ClientSessionCache: tls.NewLRUClientSessionCache(1)}
				if sh := handshake(t, srv.Config(), client); sh.client.DidResume {
					t.Fatal("the first handshake resumed")
				} else {
					mustOK(t, sh)
				}
				for range rotations {
					clock = clock.Add(ticketKeyPeriod)
					if changed, err := srv.Refresh(); changed || err != nil {
						t.Fatalf("Refresh = %v, %v", changed, err)
					}
				}
				// Less than a period: no rotation.
				clock = clock.Add(ticketKeyPeriod - time.Second)
				srv.Refresh()
				sh := handshake(t, srv.Config(), client)
				mustOK(t, sh)
				if sh.client.DidResume != wantResume {
					t.Errorf("after %d rotations DidResume = %v, want %v", rotations, sh.client.DidResume, wantResume)
				}
			})
		}
	}
}
