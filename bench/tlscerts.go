package bench

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSName is the server name the TLS loads ask for; every benchmark
// certificate holds it (and 127.0.0.1) in its SANs.
const TLSName = "bench.pier.test"

// CertFiles are the files WriteCerts writes into a run's directory: a
// test CA, and an ECDSA P-256 and an RSA 2048 server certificate it
// signed, each as a certificate file, a key file and both in one file
// (HAProxy's crt).
type CertFiles struct {
	CA                            string
	ECDSACert, ECDSAKey, ECDSAPEM string
	RSACert, RSAKey, RSAPEM       string
}

// WriteCerts generates the benchmark's certificates with crypto/x509 and
// writes them, PEM, into dir: fresh keys on every run, valid for a day.
func WriteCerts(dir string) (CertFiles, error) {
	f := CertFiles{
		CA:        filepath.Join(dir, "ca.pem"),
		ECDSACert: filepath.Join(dir, "ecdsa.crt"), ECDSAKey: filepath.Join(dir, "ecdsa.key"), ECDSAPEM: filepath.Join(dir, "ecdsa.pem"),
		RSACert: filepath.Join(dir, "rsa.crt"), RSAKey: filepath.Join(dir, "rsa.key"), RSAPEM: filepath.Join(dir, "rsa.pem"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pier bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return f, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.CA, pemBlock("CERTIFICATE", caDER), 0o644); err != nil {
		return f, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return f, err
	}
	for i, leaf := range []struct {
		signer                  crypto.Signer
		certFile, keyFile, both string
	}{
		{ecKey, f.ECDSACert, f.ECDSAKey, f.ECDSAPEM},
		{rsaKey, f.RSACert, f.RSAKey, f.RSAPEM},
	} {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(2 + i)),
			Subject:      pkix.Name{CommonName: TLSName},
			DNSNames:     []string{TLSName},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, leaf.signer.Public(), caKey)
		if err != nil {
			return f, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.signer)
		if err != nil {
			return f, err
		}
		certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER)
		for _, w := range []struct {
			path string
			data []byte
		}{{leaf.certFile, certPEM}, {leaf.keyFile, keyPEM}, {leaf.both, append(append([]byte(nil), certPEM...), keyPEM...)}} {
			if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// ClientTLS returns the client configuration of the TLS loads: TLS 1.3
// only, X25519 only (Go would otherwise offer, and a Go server pick, the
// costlier X25519MLKEM768 that OpenSSL 3.0 lacks: every column does the
// same key exchange), asking for TLSName, and accepting exactly the
// server certificates in the PEM files given. The chain is not verified
// against the CA: checking the leaf's bytes proves the client reached a
// benchmark server as surely, without spending the client's share of two
// shared cores on an extra signature check per handshake. The server's
// CertificateVerify signature is still checked, as in every handshake.
// Session resumption is off (no ClientSessionCache): loads that resume
// clone it and set one.
func ClientTLS(certFiles ...string) (*tls.Config, error) {
	var leaves [][]byte
	for _, name := range certFiles {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				leaves = append(leaves, b.Bytes)
				break // the first certificate of a file is its leaf
			}
		}
	}
	if len(leaves) == 0 {
		return nil, errors.New("bench: no certificate in the files given")
	}
	return &tls.Config{
		ServerName:         TLSName,
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("bench: the server sent no certificate")
			}
			for _, l := range leaves {
				if bytes.Equal(cs.PeerCertificates[0].Raw, l) {
					return nil
				}
			}
			return fmt.Errorf("bench: the server's certificate (%s) is not a benchmark certificate", cs.PeerCertificates[0].Subject)
		},
	}, nil
}

// describeTLS says what a connection negotiated: version, cipher suite,
// key exchange group.
func describeTLS(cs tls.ConnectionState) string {
	s := tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	if cs.CurveID != 0 {
		s += " " + cs.CurveID.String()
	}
	if len(cs.PeerCertificates) > 0 {
		s += " " + cs.PeerCertificates[0].PublicKeyAlgorithm.String()
	}
	return s
}
