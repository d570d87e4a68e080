package command

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pierproxy/pier/config"
)

// The test certificate and key of package config.
const (
	fwdCert = "../config/testdata/tls/server.pem"
	fwdKey  = "../config/testdata/tls/server.key"
	fwdCA   = "../config/testdata/tls/ca.pem"
)

// forwardConfig is the configuration 'pier forward args' would serve.
func forwardConfig(t *testing.T, args ...string) (*config.Config, error) {
	t.Helper()
	f := newForwardFlags()
	if _, err := f.fs.parse(args, nil); err != nil {
		return nil, err
	}
	return config.FromCommandLine("forward", f.settings.list)
}

// The TLS flags build the route a file with the same fields would:
// -tls-cert and -tls-key one certificate, -upstream-* the upstream_tls
// mapping (any of them turns it on), -handshake-timeout the bound.
func TestForwardTLSFlags(t *testing.T) {
	ignore := cmpopts.IgnoreTypes(config.Pos{})
	for _, tc := range []struct {
		name  string
		args  []string
		tls   *config.TLSServer
		up    *config.UpstreamTLS
		bound time.Duration
	}{
		{"none", nil, nil, nil, config.DefaultHandshakeTimeout},
		{"terminate", []string{"-tls-cert", fwdCert, "-tls-key", fwdKey},
			&config.TLSServer{Certificates: []config.CertPair{{Cert: fwdCert, Key: fwdKey}}, MinVersion: "1.2"}, nil, config.DefaultHandshakeTimeout},
		{"originate", []string{"-upstream-tls"}, nil, &config.UpstreamTLS{}, config.DefaultHandshakeTimeout},
		{"originate off", []string{"-upstream-tls=false"}, nil, nil, config.DefaultHandshakeTimeout},
		{"ca implies tls", []string{"-upstream-ca", fwdCA, "-upstream-server-name", "db.internal"}, nil,
			&config.UpstreamTLS{CA: fwdCA, ServerName: "db.internal"}, config.DefaultHandshakeTimeout},
		{"insecure", []string{"-upstream-insecure", "-handshake-timeout", "3s"}, nil,
			&config.UpstreamTLS{InsecureSkipVerify: true}, 3 * time.Second},
		{"re-encrypt", []string{"-tls-key", fwdKey, "-upstream-tls", "-tls-cert", fwdCert},
			&config.TLSServer{Certificates: []config.CertPair{{Cert: fwdCert, Key: fwdKey}}, MinVersion: "1.2"}, &config.UpstreamTLS{}, config.DefaultHandshakeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := forwardConfig(t, append([]string{"127.0.0.1:0", "db.internal:5432"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Routes[0]
			if d := cmp.Diff(tc.tls, r.TLS, ignore); d != "" {
				t.Errorf("tls (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.up, r.UpstreamTLS, ignore, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("upstream_tls (-want +got):\n%s", d)
			}
			if r.HandshakeTimeout != tc.bound {
				t.Errorf("handshake_timeout %v, want %v", r.HandshakeTimeout, tc.bound)
			}
		})
	}
}

// A TLS flag's bad value is refused at the flag, in the file's words.
func TestForwardTLSFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"-tls-cert", fwdCert}, "flag -tls-cert: a certificate needs its key as well"},
		{"key without cert", []string{"-tls-key", fwdKey}, "flag -tls-key: a certificate needs its cert as well"},
		{"cert file missing", []string{"-tls-cert", "nope.pem", "-tls-key", fwdKey}, `flag -tls-cert: "nope.pem": no such file or directory`},
		{"key of another cert", []string{"-tls-cert", fwdCert, "-tls-key", "../config/testdata/tls/other.key"},
			"flag -tls-cert: \"" + fwdCert + "\" with key \"../config/testdata/tls/other.key\": private key does not match public key"},
		{"ca not PEM", []string{"-upstream-ca", "../config/testdata/tls/notpem.txt"}, "flag -upstream-ca: \"../config/testdata/tls/notpem.txt\": holds no PEM certificate"},
		{"insecure with ca", []string{"-upstream-ca", fwdCA, "-upstream-insecure"}, "flag -upstream-insecure: upstream_tls: give ca or insecure_skip_verify, not both"},
		{"server name wildcard", []string{"-upstream-server-name", "*.x.example"}, "flag -upstream-server-name: \"*.x.example\" is a wildcard"},
		{"handshake timeout too long", []string{"-handshake-timeout", "1h"}, `flag -handshake-timeout: "1h" is more than 5m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := forwardConfig(t, append([]string{"127.0.0.1:0", "h:1"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	if _, err := forwardConfig(t, "127.0.0.1:0", "h:1", "-upstream-tls=maybe"); err == nil || !strings.Contains(err.Error(), "upstream-tls") {
		t.Errorf("-upstream-tls=maybe: %v", err)
	}
}
