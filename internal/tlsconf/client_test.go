package tlsconf

import (
	"crypto/tls"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
)

func newClient(t *testing.T, s ClientSettings) *Client {
	t.Helper()
	c, err := NewClient(s, discard())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// upstream is a plain crypto/tls server config, as an upstream would have.
func upstream(t *testing.T, leaf *tlstest.Leaf) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS(t)}}
}

func TestClientConfigIsOnePerMember(t *testing.T) {
	c := newClient(t, ClientSettings{})
	a, b := c.Config("db1.internal:5432"), c.Config("db2.internal:5432")
	if c.Config("db1.internal:5432") != a {
		t.Error("the same member got a new config")
	}
	if a == b || a.ClientSessionCache == b.ClientSessionCache {
		t.Error("two members share a config or a session cache")
	}
	for member, want := range map[string]string{
		"db1.internal:5432": "db1.internal",
		"127.0.0.1:443":     "127.0.0.1",
		"[::1]:443":         "::1",
		"[fe80::1%eth0]:1":  "fe80::1",
		"noport.test":       "noport.test",
	} {
		if got := c.Config(member).ServerName; got != want {
			t.Errorf("member %q: ServerName %q, want %q", member, got, want)
		}
	}
	named := newClient(t, ClientSettings{ServerName: "api.example.com"})
	if got := named.Config("10.0.0.1:443").ServerName; got != "api.example.com" {
		t.Errorf("settings' server name not used: %q", got)
	}
}

func TestClientVerifiesUpstreamCertificate(t *testing.T) {
	ca, otherCA := tlstest.NewCA(t), tlstest.NewCA(t)
	good := ca.Leaf(t, tlstest.ECDSA, "localhost", "127.0.0.1")
	dnsOnly := ca.Leaf(t, tlstest.ECDSA, "localhost")
	foreign := otherCA.Leaf(t, tlstest.ECDSA, "localhost", "127.0.0.1")
	expired := ca.LeafValid(t, tlstest.RSA, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), "localhost")
	c := newClient(t, ClientSettings{CA: ca.CertFile})
	for _, tc := range []struct {
		name    string
		member  string
		leaf    *tlstest.Leaf
		wantErr string // "" for success
	}{
		{"dns name", "localhost:443", good, ""},
		{"ip member against the ip san", "127.0.0.1:443", good, ""},
		{"ip member without an ip san", "127.0.0.1:443", dnsOnly, "127.0.0.1"},
		{"wrong name", "db.example.com:443", good, "db.example.com"},
		{"unknown authority", "localhost:443", foreign, "unknown authority"},
		{"expired", "localhost:443", expired, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sh := handshake(t, upstream(t, tc.leaf), c.Config(tc.member))
			if tc.wantErr == "" {
				mustOK(t, sh)
				return
			}
			if sh.clientErr == nil || !strings.Contains(sh.clientErr.Error(), tc.wantErr) {
				t.Errorf("client error %v; want one saying %q", sh.clientErr, tc.wantErr)
			}
		})
	}
}

func TestClientResumesPerMember(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := upstream(t, ca.Leaf(t, tlstest.ECDSA, "localhost", "127.0.0.1"))
	c := newClient(t, ClientSettings{CA: ca.CertFile})
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			srv := srv.Clone()
			srv.MaxVersion = version
			first := handshake(t, srv, c.Config("localhost:"+tls.VersionName(version)))
			mustOK(t, first)
			if first.client.DidResume {
				t.Fatal("the first handshake resumed")
			}
			second := handshake(t, srv, c.Config("localhost:"+tls.VersionName(version)))
			mustOK(t, second)
			if !second.client.DidResume {
				t.Error("the second handshake to the member did not resume")
			}
			// Another member has a session cache of its own.
			other := handshake(t, srv, c.Config("127.0.0.1:"+tls.VersionName(version)))
			mustOK(t, other)
			if other.client.DidResume {
				t.Error("another member resumed the first member's session")
			}
		})
	}
}

func TestClientTakesUpNewCAForExistingConfigs(t *testing.T) {
	oldCA, newCA := tlstest.NewCA(t), tlstest.NewCA(t)
	caFile := t.TempDir() + "/upstream-ca.pem"
	writeRenamed(t, caFile, pemOf(t, oldCA.CertFile))
	c := newClient(t, ClientSettings{CA: caFile})
	cfg := c.Config("localhost:443")
	srv := upstream(t, newCA.Leaf(t, tlstest.ECDSA, "localhost"))
	if sh := handshake(t, srv, cfg); sh.clientErr == nil {
		t.Fatal("a certificate of a CA not yet trusted was accepted")
	}

	writeRenamed(t, caFile, []byte("garbage"))
	if changed, err := c.Refresh(); changed || err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("Refresh with a bad CA file = %v, %v; want false and an error naming it", changed, err)
	}
	writeRenamed(t, caFile, pemOf(t, newCA.CertFile))
	if changed, err := c.Refresh(); !changed || err != nil {
		t.Fatalf("Refresh = %v, %v; want true, nil", changed, err)
	}
	if c.Config("localhost:443") != cfg {
		t.Fatal("the member's config changed pointer")
	}
	mustOK(t, handshake(t, srv, cfg))
}

func pemOf(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientInsecureSkipVerifyWarnsAndConnects(t *testing.T) {
	logs, log := testutil.NewLogs()
	c, err := NewClient(ClientSettings{InsecureSkipVerify: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	if logs.Find("NOT verified", "insecure_skip_verify") == "" {
		t.Error("no loud warning")
	}
	foreign := tlstest.NewCA(t).Leaf(t, tlstest.ECDSA, "elsewhere.test")
	mustOK(t, handshake(t, upstream(t, foreign), c.Config("127.0.0.1:443")))
}

func TestNewClientRefusesHalfAPair(t *testing.T) {
	leaf := tlstest.NewCA(t).Leaf(t, tlstest.ECDSA)
	if _, err := NewClient(ClientSettings{Cert: leaf.CertFile}, discard()); !errors.Is(err, ErrSettings) {
		t.Errorf("cert without key: %v", err)
	}
	if _, err := NewClient(ClientSettings{CA: leaf.KeyFile}, discard()); err == nil || !strings.Contains(err.Error(), leaf.KeyFile) {
		t.Errorf("a key as CA bundle: %v", err)
	}
}

// TestMutualTLS pins client authentication on both ends: a Server with a
// client CA and a Client with a certificate.
func TestMutualTLS(t *testing.T) {
	ca, otherCA := tlstest.NewCA(t), tlstest.NewCA(t)
	serverLeaf := ca.Leaf(t, tlstest.ECDSA, "localhost")
	member := ca.Leaf(t, tlstest.ECDSA)
	stranger := otherCA.Leaf(t, tlstest.RSA)
	with := func(l *tlstest.Leaf) *Client {
		return newClient(t, ClientSettings{CA: ca.CertFile, Cert: l.CertFile, Key: l.KeyFile})
	}
	without := newClient(t, ClientSettings{CA: ca.CertFile})

	for _, required := range []bool{true, false} {
		srv := newServer(t, ServerSettings{
			Certificates: []Pair{pairOf(serverLeaf)}, ClientCA: ca.CertFile, ClientAuthRequired: required,
		})
		for _, c := range []struct {
			name   string
			client *Client
			ok     bool
		}{
			{"certificate from the CA", with(member), true},
			{"no certificate", without, !required},
			{"certificate from another CA", with(stranger), false},
		} {
			t.Run(c.name+map[bool]string{true: " required", false: " optional"}[required], func(t *testing.T) {
				for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
					cfg := c.client.Config("localhost:443").Clone()
					cfg.MaxVersion = version
					cfg.ClientSessionCache = nil // each handshake is a full one
					sh := handshake(t, srv.Config(), cfg)
					if !c.ok {
						if sh.serverErr == nil {
							t.Errorf("%s: the server accepted it", tls.VersionName(version))
						}
						continue
					}
					mustOK(t, sh)
					peers := sh.server.PeerCertificates
					if c.client != without && (len(peers) == 0 || !peers[0].Equal(member.Cert)) {
						t.Errorf("%s: the server did not see the client certificate", tls.VersionName(version))
					}
					if c.client != without && len(sh.server.VerifiedChains) == 0 {
						t.Errorf("%s: the client certificate was not verified", tls.VersionName(version))
					}
				}
			})
		}
	}
}

// TestRefreshTakesUpNewClientCertificatesAndCAs: a server's client CA and a
// client's certificate are files that change too.
func TestRefreshTakesUpNewClientCertificatesAndCAs(t *testing.T) {
	ca, newCA := tlstest.NewCA(t), tlstest.NewCA(t)
	serverLeaf := ca.Leaf(t, tlstest.ECDSA, "localhost")
	clientLeaf := newCA.Leaf(t, tlstest.ECDSA)
	clientCAFile := t.TempDir() + "/clients.pem"
	writeRenamed(t, clientCAFile, pemOf(t, ca.CertFile))
	srv := newServer(t, ServerSettings{
		Certificates: []Pair{pairOf(serverLeaf)}, ClientCA: clientCAFile, ClientAuthRequired: true,
	})
	cli := newClient(t, ClientSettings{CA: ca.CertFile, Cert: clientLeaf.CertFile, Key: clientLeaf.KeyFile})
	fresh := func() *tls.Config {
		cfg := cli.Config("localhost:443").Clone()
		cfg.ClientSessionCache = nil
		return cfg
	}
	if sh := handshake(t, srv.Config(), fresh()); sh.serverErr == nil {
		t.Fatal("a client certificate from an untrusted CA was accepted")
	}

	// The server now trusts the new CA.
	writeRenamed(t, clientCAFile, pemOf(t, newCA.CertFile))
	if changed, err := srv.Refresh(); !changed || err != nil {
		t.Fatalf("server Refresh = %v, %v", changed, err)
	}
	mustOK(t, handshake(t, srv.Config(), fresh()))

	// The client's certificate is renewed by the old CA, which the server no
	// longer trusts.
	ca.Leaf(t, tlstest.ECDSA).WriteTo(t, clientLeaf.CertFile, clientLeaf.KeyFile)
	if changed, err := cli.Refresh(); !changed || err != nil {
		t.Fatalf("client Refresh = %v, %v", changed, err)
	}
	if sh := handshake(t, srv.Config(), fresh()); sh.serverErr == nil {
		t.Fatal("the client still sent its old certificate")
	}
}
