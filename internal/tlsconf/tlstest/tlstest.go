// Package tlstest makes certificates for tests: an in-test certificate
// authority issuing leaf certificates (ECDSA P-256 or RSA 2048) whose PEM
// files are written to the test's temporary directory, ready for
// tlsconf.ServerSettings, tlsconf.ClientSettings, nginx or openssl.
//
//	ca := tlstest.NewCA(t)
//	leaf := ca.Leaf(t, tlstest.ECDSA, "example.com", "127.0.0.1")
//	srv, _ := tlsconf.NewServer(tlsconf.ServerSettings{
//		Certificates: []tlsconf.Pair{{Cert: leaf.CertFile, Key: leaf.KeyFile}},
//	}, log)
//	cli := &tls.Config{RootCAs: ca.Pool, ServerName: "example.com"}
//
// Every leaf is good for both server and client authentication, so the same
// helper serves mTLS tests.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyType is the key algorithm of a leaf certificate.
type KeyType int

const (
	ECDSA KeyType = iota // ECDSA on P-256
	RSA                  // RSA 2048
)

func (k KeyType) String() string {
	if k == RSA {
		return "RSA"
	}
	return "ECDSA"
}

// A CA is a self-signed certificate authority (ECDSA P-256) living for one test.
type CA struct {
	Cert     *x509.Certificate
	CertFile string         // PEM of Cert: a root bundle for ClientCA, CA, nginx or curl --cacert
	Pool     *x509.CertPool // holds only Cert
	key      crypto.Signer
}

// NewCA makes a certificate authority and writes its certificate to
// CertFile in a fresh temporary directory of t.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "tlstest CA", Organization: []string{"pier tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, Pool: x509.NewCertPool(), key: key}
	ca.Pool.AddCert(cert)
	ca.CertFile = filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

// A Leaf is a certificate issued by a CA, with its PEM files.
type Leaf struct {
	Cert     *x509.Certificate
	CertFile string // PEM certificate
	KeyFile  string // PEM PKCS #8 private key
	CertPEM  []byte
	KeyPEM   []byte
}

// Leaf issues a certificate valid from an hour ago for a day, for the given
// names: each that parses as an IP address becomes an IP SAN, the others DNS
// SANs (wildcards such as "*.example.com" allowed). No names makes a client
// certificate with only a subject. The files are written to a fresh
// temporary directory of t.
func (ca *CA) Leaf(t testing.TB, kt KeyType, names ...string) *Leaf {
	t.Helper()
	return ca.LeafValid(t, kt, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), names...)
}

// LeafValid is Leaf with a validity period of its own: a NotAfter in the past
// makes an expired certificate.
func (ca *CA) LeafValid(t testing.TB, kt KeyType, notBefore, notAfter time.Time, names ...string) *Leaf {
	t.Helper()
	var key crypto.Signer
	var err error
	if kt == RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	cn := "tlstest client"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"pier tests"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if kt == RSA {
		// RSA key exchange (TLS 1.2 TLS_RSA_* suites) encrypts to the key.
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	dir := t.TempDir()
	l.CertFile = filepath.Join(dir, "cert.pem")
	l.KeyFile = filepath.Join(dir, "key.pem")
	writeFile(t, l.CertFile, l.CertPEM)
	writeFile(t, l.KeyFile, l.KeyPEM)
	return l
}

// TLS returns the leaf as a tls.Certificate, for a plain tls.Config.
func (l *Leaf) TLS(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// WriteTo replaces certFile and keyFile with the leaf's PEM, each by a
// rename, the way a certificate renewal job does.
func (l *Leaf) WriteTo(t testing.TB, certFile, keyFile string) {
	t.Helper()
	writeFile(t, certFile, l.CertPEM)
	writeFile(t, keyFile, l.KeyPEM)
}

// writeFile writes data to a temporary file beside path and renames it over
// path, so a reader never sees half a file.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
