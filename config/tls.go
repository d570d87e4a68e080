package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"
)

// The parsers of TLS: a route's tls (terminate), upstream_tls on a route
// or a member (originate), handshake_timeout, and the files they name.
// Files are read now, so that 'pier check' fails on a certificate that
// pier would fail to load; the application layer reads them again when
// it starts and on every reload.

var tlsVersions = []string{"1.2", "1.3"}

// maxPEMFile bounds a certificate, key or CA file: a CA bundle of every
// public root is about 200 KiB, and a larger file is not PEM (a wrong
// path: a log, an image, /dev/zero).
const maxPEMFile = 1 << 20

// tlsServer parses a route's tls mapping.
func (p *parser) tlsServer(key string, n *yaml.Node) *TLSServer {
	t := &TLSServer{Pos: pos(n)}
	vals := decodeMap(p, n, key, tlsServerFields, t)
	if vals == nil {
		return nil
	}
	if t.MinVersion == "1.3" && len(t.CipherSuites) > 0 {
		p.errf(p.resolve(vals["cipher_suites"]), "%s: cipher_suites: with min_version 1.3 they would never be used: they are TLS 1.2's, and TLS 1.3's are not configurable; drop them, or use min_version 1.2", key)
	}
	return t
}

// certificates parses tls.certificates: at least one cert and key pair,
// each pair loaded to check that the key is the certificate's.
func (p *parser) certificates(key string, n *yaml.Node) []CertPair {
	var out []CertPair
	for _, item := range p.list(key, n, "need at least one {cert: FILE, key: FILE}") {
		if p.stop {
			break
		}
		c := CertPair{Pos: pos(item)}
		vals := decodeMap(p, item, "certificate", certPairFields, &c)
		if vals == nil {
			continue
		}
		if c.Cert != "" && c.Key != "" {
			p.loadPair("cert", vals["cert"], vals["key"], c.Cert, c.Key)
		}
		out = append(out, c)
	}
	return out
}

// loadPair checks that the files cert and key, written at certNode and
// keyNode, hold a certificate and its private key. A file that cannot be
// read is reported at its own node; a pair that does not fit, at the
// certificate's.
func (p *parser) loadPair(certKey string, certNode, keyNode *yaml.Node, cert, key string) {
	certPEM, cerr := readPEMFile(cert)
	if cerr != nil {
		p.errf(p.resolve(certNode), "%s: %s: %v", certKey, quote(cert), cerr)
	}
	keyPEM, kerr := readPEMFile(key)
	if kerr != nil {
		p.errf(p.resolve(keyNode), "key: %s: %v", quote(key), kerr)
	}
	if cerr != nil || kerr != nil {
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		p.errf(p.resolve(certNode), "%s: %s with key %s: %s", certKey, quote(cert), quote(key), strings.TrimPrefix(err.Error(), "tls: "))
	}
}

// readPEMFile reads a PEM file of at most maxPEMFile bytes. Its error
// does not repeat the path, which the message that quotes it says.
func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, bareFileError(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, bareFileError(err)
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("larger than %d MiB: not a PEM file", maxPEMFile>>20)
	}
	return data, nil
}

// bareFileError is err without the operation and path a *fs.PathError
// adds: "no such file or directory", "permission denied".
func bareFileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// path parses a file name; the file is checked by whoever knows what it
// must hold.
func (p *parser) path(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if s.Value == "" {
		p.errf(s, "%s: empty: want a file name", key)
		return ""
	}
	return s.Value
}

// caFile parses a CA bundle's file name: it must hold at least one PEM
// certificate now.
func (p *parser) caFile(key string, n *yaml.Node) string {
	name := p.path(key, n)
	if name == "" {
		return ""
	}
	data, err := readPEMFile(name)
	if err == nil && !x509.NewCertPool().AppendCertsFromPEM(data) {
		err = errors.New("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	if err != nil {
		p.errf(p.resolve(n), "%s: %s: %v", key, quote(name), err)
		return ""
	}
	return name
}

// cipherSuites parses tls.cipher_suites: TLS 1.2 suites by their IANA
// names, as Go's tls.CipherSuites lists them.
func (p *parser) cipherSuites(key string, n *yaml.Node) []string {
	return uniqueList(p, key, n, "", func(s string) (string, string) {
		if msg := cipherSuiteProblem(s); msg != "" {
			return "", quote(s) + " " + msg
		}
		return s, ""
	})
}

// cipherSuiteProblem says what is wrong with the cipher suite name s, or
// "" if Go offers it for TLS 1.2.
func cipherSuiteProblem(s string) string {
	for _, c := range tls.CipherSuites() {
		if c.Name == s {
			if !slices.Contains(c.SupportedVersions, tls.VersionTLS12) {
				return "is a TLS 1.3 suite: Go always offers all of TLS 1.3's, and cipher_suites lists TLS 1.2's only"
			}
			return ""
		}
	}
	for _, c := range tls.InsecureCipherSuites() {
		if c.Name == s {
			return "is insecure (Go's tls.InsecureCipherSuites lists it): pier does not offer it"
		}
	}
	return "is not a cipher suite Go offers: use an IANA name, like TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
}

// CipherSuiteID is the ID of the TLS 1.2 cipher suite a checked
// configuration names.
func CipherSuiteID(name string) (uint16, bool) {
	for _, c := range tls.CipherSuites() {
		if c.Name == name {
			return c.ID, true
		}
	}
	return 0, false
}

// TLSVersion is the crypto/tls version of a checked min_version: "1.3"
// is tls.VersionTLS13, anything else (1.2, or "" for a TLSServer built in
// code) tls.VersionTLS12.
func TLSVersion(v string) uint16 {
	if v == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// clientAuth parses tls.client_auth.
func (p *parser) clientAuth(key string, n *yaml.Node) *ClientAuth {
	c := &ClientAuth{Pos: pos(n)}
	if decodeMap(p, n, key, clientAuthFields, c) == nil {
		return nil
	}
	return c
}

// upstreamTLS parses upstream_tls, a route's or a member's. Every field
// may be absent: {} verifies against the system's roots.
func (p *parser) upstreamTLS(key string, n *yaml.Node) *UpstreamTLS {
	u := &UpstreamTLS{Pos: pos(n)}
	vals := decodeMap(p, n, key, upstreamTLSFields, u)
	if vals == nil {
		return nil
	}
	switch {
	case vals["cert"] != nil && vals["key"] == nil:
		p.errf(p.resolve(vals["cert"]), "%s: cert needs its key beside it (key: FILE)", key)
	case vals["key"] != nil && vals["cert"] == nil:
		p.errf(p.resolve(vals["key"]), "%s: key needs its certificate beside it (cert: FILE)", key)
	case u.Cert != "" && u.Key != "":
		p.loadPair("cert", vals["cert"], vals["key"], u.Cert, u.Key)
	}
	if u.InsecureSkipVerify && vals["ca"] != nil {
		p.errf(p.resolve(vals["insecure_skip_verify"]), "%s: give ca or insecure_skip_verify, not both: without verification the ca is never used", key)
	}
	return u
}

// upstreamServerName parses upstream_tls.server_name: a host name, or an
// IP address (verified against the certificate's IP addresses).
func (p *parser) upstreamServerName(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if ip, err := netip.ParseAddr(s.Value); err == nil && ip.Zone() == "" {
		return s.Value
	}
	name, err := serverName(s.Value)
	switch {
	case err != nil:
		p.errf(s, "%s: %s %v", key, quote(s.Value), err)
	case strings.HasPrefix(name, "*."):
		p.errf(s, "%s: %s is a wildcard: name the server the certificate must be valid for", key, quote(s.Value))
	case name != s.Value:
		p.errf(s, "%s: %s: write it as %s", key, quote(s.Value), quote(name))
	default:
		return name
	}
	return ""
}

// handshakeTimeout parses handshake_timeout: more than 0, at most
// MaxHandshakeTimeout. A handshake takes round trips and milliseconds of
// CPU; a longer bound only holds a stalled client's socket and goroutine.
func (p *parser) handshakeTimeout(key string, n *yaml.Node) time.Duration {
	d := p.duration(key, n)
	if d > MaxHandshakeTimeout {
		p.errf(p.resolve(n), "%s: %s is more than %s", key, quote(p.resolve(n).Value), formatDuration(MaxHandshakeTimeout))
		return 0
	}
	return d
}

// checkTLSCheck checks that a route whose health check handshakes has an
// upstream_tls for every member to handshake with: its own, or each
// member's.
func (p *parser) checkTLSCheck(r *Route, vals map[string]*yaml.Node) {
	if r.HealthCheck == nil || !r.HealthCheck.TLS || r.UpstreamTLS != nil {
		return
	}
	at := follow(valueOf(vals["health_check"], "tls"))
	if at == nil {
		return
	}
	for i, u := range r.Upstreams {
		if u.UpstreamTLS == nil {
			name := u.Address
			if name == "" {
				name = u.SRV
			}
			p.errf(at, "tls: a TLS health check needs upstream_tls, on the route or on every upstream: upstreams[%d] (%s) has none", i, quote(name))
			return
		}
	}
}
