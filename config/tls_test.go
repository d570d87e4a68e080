package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The test material: see testdata/tls/README.md.
const (
	tdCert  = "testdata/tls/server.pem"
	tdKey   = "testdata/tls/server.key"
	tdOther = "testdata/tls/other.key"
	tdCA    = "testdata/tls/ca.pem"
	tdNoPEM = "testdata/tls/notpem.txt"
)

// tlsFull sets every TLS field: a route that terminates and
// re-encrypts, with a member of its own upstream_tls and a TLS check.
const tlsFull = `routes:
  - name: r
    listen: [":443"]
    upstreams:
      - {address: "db1.internal:5432"}
      - address: "10.0.0.9:5433"
        upstream_tls: {server_name: db9.internal, insecure_skip_verify: true}
    health_check: {tls: true, send: "PING\r\n", expect: "+PONG"}
    tls:
      certificates:
        - {cert: ` + tdCert + `, key: ` + tdKey + `}
      min_version: 1.2
      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]
      alpn: [h2, http/1.1]
      client_auth: {ca: ` + tdCA + `, required: true}
    upstream_tls:
      server_name: db.internal
      ca: ` + tdCA + `
      cert: ` + tdCert + `
      key: ` + tdKey + `
      alpn: [postgresql]
    handshake_timeout: 3s
`

// Every TLS field parses to what it says, and the defaults fill in.
func TestParseTLS(t *testing.T) {
	cfg, err := Parse("f", []byte(tlsFull))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	want := &TLSServer{
		Certificates: []CertPair{{Cert: tdCert, Key: tdKey, Pos: Pos{Line: 11, Col: 11}}},
		MinVersion:   "1.2",
		CipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
		ALPN:         []string{"h2", "http/1.1"},
		ClientAuth:   &ClientAuth{CA: tdCA, Required: true, Pos: Pos{Line: 15, Col: 20}},
		Pos:          Pos{Line: 10, Col: 7},
	}
	if d := cmp.Diff(want, r.TLS); d != "" {
		t.Errorf("tls (-want +got):\n%s", d)
	}
	wantUp := &UpstreamTLS{ServerName: "db.internal", CA: tdCA, Cert: tdCert, Key: tdKey, ALPN: []string{"postgresql"}, Pos: Pos{Line: 17, Col: 7}}
	if d := cmp.Diff(wantUp, r.UpstreamTLS); d != "" {
		t.Errorf("upstream_tls (-want +got):\n%s", d)
	}
	if u := r.Upstreams[1].UpstreamTLS; u == nil || u.ServerName != "db9.internal" || !u.InsecureSkipVerify || r.Upstreams[0].UpstreamTLS != nil {
		t.Errorf("member upstream_tls: %+v, %+v", r.Upstreams[0].UpstreamTLS, u)
	}
	if !r.HealthCheck.TLS || r.HandshakeTimeout != 3*time.Second {
		t.Errorf("health_check.tls %v, handshake_timeout %v", r.HealthCheck.TLS, r.HandshakeTimeout)
	}
	checkRoundTrip(t, cfg)

	// The defaults: min_version 1.2, handshake_timeout 10s, no client
	// auth; upstream_tls: {} is TLS with every field absent.
	cfg, err = Parse("f", []byte(route(`[":1"]`, `[{address: "h:1"}]`,
		"tls: {certificates: [{cert: "+tdCert+", key: "+tdKey+"}]}", "upstream_tls: {}")))
	if err != nil {
		t.Fatal(err)
	}
	r = cfg.Routes[0]
	if r.TLS.MinVersion != DefaultTLSMinVersion || r.TLS.ClientAuth != nil || r.HandshakeTimeout != DefaultHandshakeTimeout ||
		r.UpstreamTLS == nil || !cmp.Equal(*r.UpstreamTLS, UpstreamTLS{Pos: r.UpstreamTLS.Pos}) {
		t.Errorf("defaults: %+v %+v %v", r.TLS, r.UpstreamTLS, r.HandshakeTimeout)
	}
	checkRoundTrip(t, cfg)
	if TLSVersion("1.3") != 0x0304 || TLSVersion("1.2") != 0x0303 || TLSVersion("") != 0x0303 {
		t.Error("TLSVersion")
	}
	if id, ok := CipherSuiteID("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"); !ok || id != 0xc02b {
		t.Errorf("CipherSuiteID: %#x %v", id, ok)
	}
}

// Routes sharing an address may differ in TLS: the route is chosen by
// SNI before it terminates, so one name is terminated and another
// passed through.
func TestSharedAddressMayDifferInTLS(t *testing.T) {
	doc := shared2("127.0.0.1:0", "match: {sni: a.example.com}\ntls: {certificates: [{cert: "+tdCert+", key: "+tdKey+"}]}",
		"match: {sni: b.example.com}")
	cfg, err := Parse("f", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Routes[0].TLS == nil || cfg.Routes[1].TLS != nil {
		t.Errorf("tls: %+v, %+v", cfg.Routes[0].TLS, cfg.Routes[1].TLS)
	}
}

func tlsRoute(extra ...string) string {
	return route(`[":1"]`, `[{address: "h:1"}]`, extra...)
}

const pairFlow = "{cert: " + tdCert + ", key: " + tdKey + "}"

// tlsErrorCases: each TLS error alone, at its node, in its words. They
// seed the fuzzer too.
var tlsErrorCases = []struct {
	name, doc string
	line, col int
	msg       string
}{
	{"no certificates", tlsRoute("tls: {certificates: []}"), 5, 25, "certificates: need at least one {cert: FILE, key: FILE}"},
	{"certificates missing", tlsRoute("tls: {min_version: 1.3}"), 5, 10, `tls: missing required field "certificates"`},
	{"cert without key", tlsRoute("tls: {certificates: [{cert: " + tdCert + "}]}"), 5, 26, `certificate: missing required field "key"`},
	{"key without cert", tlsRoute("tls: {certificates: [{key: " + tdKey + "}]}"), 5, 26, `certificate: missing required field "cert"`},
	{"cert file missing", tlsRoute("tls: {certificates: [{cert: nope.pem, key: " + tdKey + "}]}"), 5, 33, `cert: "nope.pem": no such file or directory`},
	{"key file missing", tlsRoute("tls: {certificates: [{cert: " + tdCert + ", key: nope.key}]}"), 5, 63, `key: "nope.key": no such file or directory`},
	{"key of another cert", tlsRoute("tls: {certificates: [{cert: " + tdCert + ", key: " + tdOther + "}]}"), 5, 33,
		`cert: "testdata/tls/server.pem" with key "testdata/tls/other.key": private key does not match public key`},
	{"cert not PEM", tlsRoute("tls: {certificates: [{cert: " + tdNoPEM + ", key: " + tdKey + "}]}"), 5, 33, `cert: "testdata/tls/notpem.txt" with key`},
	{"cert a directory", tlsRoute("tls: {certificates: [{cert: testdata, key: " + tdKey + "}]}"), 5, 33, `cert: "testdata": not a regular file`},
	{"min_version", tlsRoute("tls: {certificates: [" + pairFlow + "], min_version: 1.1}"), 5, 103, `min_version: "1.1" is not one of 1.2, 1.3`},
	{"insecure suite", tlsRoute("tls: {certificates: [" + pairFlow + "], cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]}"), 5, 106,
		`cipher_suites: "TLS_RSA_WITH_RC4_128_SHA" is insecure (Go's tls.InsecureCipherSuites lists it): pier does not offer it`},
	{"TLS 1.3 suite", tlsRoute("tls: {certificates: [" + pairFlow + "], cipher_suites: [TLS_AES_128_GCM_SHA256]}"), 5, 106,
		`cipher_suites: "TLS_AES_128_GCM_SHA256" is a TLS 1.3 suite`},
	{"unknown suite", tlsRoute("tls: {certificates: [" + pairFlow + "], cipher_suites: [AES]}"), 5, 106, `cipher_suites: "AES" is not a cipher suite Go offers`},
	{"suites with 1.3", tlsRoute("tls: {certificates: [" + pairFlow + "], min_version: 1.3, cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]}"), 5, 123,
		"tls: cipher_suites: with min_version 1.3 they would never be used"},
	{"client_auth without ca", tlsRoute("tls: {certificates: [" + pairFlow + "], client_auth: {required: true}}"), 5, 103, `client_auth: missing required field "ca"`},
	{"client_auth ca not PEM", tlsRoute("tls: {certificates: [" + pairFlow + "], client_auth: {ca: " + tdNoPEM + "}}"), 5, 108,
		`ca: "testdata/tls/notpem.txt": holds no PEM certificate`},
	{"upstream cert without key", tlsRoute("upstream_tls: {cert: " + tdCert + "}"), 5, 26, "upstream_tls: cert needs its key beside it"},
	{"upstream key without cert", tlsRoute("upstream_tls: {key: " + tdKey + "}"), 5, 25, "upstream_tls: key needs its certificate beside it"},
	{"upstream pair mismatch", tlsRoute("upstream_tls: {cert: " + tdCert + ", key: " + tdOther + "}"), 5, 26, "private key does not match public key"},
	{"upstream ca missing", tlsRoute("upstream_tls: {ca: nope.pem}"), 5, 24, `ca: "nope.pem": no such file or directory`},
	{"insecure with ca", tlsRoute("upstream_tls: {ca: " + tdCA + ", insecure_skip_verify: true}"), 5, 67, "give ca or insecure_skip_verify, not both"},
	{"server_name wildcard", tlsRoute("upstream_tls: {server_name: '*.example.com'}"), 5, 33, "is a wildcard"},
	{"server_name bad", tlsRoute("upstream_tls: {server_name: 'a b'}"), 5, 33, "is not a host name"},
	{"member upstream_tls unknown field", route(`[":1"]`, `[{address: "h:1", upstream_tls: {verify: no}}]`), 4, 49, `upstream_tls: unknown field "verify"`},
	{"handshake_timeout zero", tlsRoute("handshake_timeout: 0s"), 5, 24, "handshake_timeout: must be more than 0"},
	{"handshake_timeout long", tlsRoute("handshake_timeout: 6m"), 5, 24, `handshake_timeout: "6m" is more than 5m`},
	{"tls check without upstream_tls", tlsRoute("health_check: {tls: true}"), 5, 25,
		`tls: a TLS health check needs upstream_tls, on the route or on every upstream: upstreams[0] ("h:1") has none`},
	{"tls check with a member without", route(`[":1"]`, `[{address: "h:1", upstream_tls: {}}, {address: "h:2"}]`, "health_check: {tls: true}"), 5, 25,
		`upstreams[1] ("h:2") has none`},
}

func TestTLSErrorPositions(t *testing.T) {
	for _, tc := range tlsErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("f.yaml", []byte(tc.doc))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("got %v, want Errors\n%s", err, tc.doc)
			}
			if cfg != nil {
				t.Error("a config came back with the errors")
			}
			e := errs[0]
			if e.File != "f.yaml" || e.Line != tc.line || e.Col != tc.col || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %v\nwant f.yaml:%d:%d: ...%s...\n%s", e, tc.line, tc.col, tc.msg, tc.doc)
			}
			if len(errs) > 1 {
				t.Errorf("%d errors, want only the one:\n%v", len(errs), err)
			}
		})
	}
}

// A TLS health check is fine with upstream_tls on every member and none
// on the route.
func TestTLSCheckWithEveryMember(t *testing.T) {
	_, err := Parse("f", []byte(route(`[":1"]`, `[{address: "h:1", upstream_tls: {}}, {srv: _a._tcp.b, upstream_tls: {server_name: b}}]`, "health_check: {tls: true}")))
	if err != nil {
		t.Fatal(err)
	}
}

// Check, for a Config built in code, reads TLS as a file does: zero
// handshake_timeout and min_version take their defaults, a bad file is
// refused naming the field, and positions stay as given.
func TestCheckTLS(t *testing.T) {
	cfg := &Config{Routes: []Route{{
		Name: "r", Listen: []string{":1"}, Upstreams: []Upstream{{Address: "h:1"}},
		TLS:         &TLSServer{Certificates: []CertPair{{Cert: tdCert, Key: tdKey, Pos: Pos{Line: 7, Col: 3}}}, Pos: Pos{Line: 6, Col: 3}},
		UpstreamTLS: &UpstreamTLS{CA: tdCA},
	}}}
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if r.TLS.MinVersion != "1.2" || r.HandshakeTimeout != DefaultHandshakeTimeout || r.TLS.Certificates[0].Pos.Line != 7 || r.TLS.Pos.Line != 6 {
		t.Errorf("after Check: %+v %v", r.TLS, r.HandshakeTimeout)
	}
	cfg.Routes[0].TLS.Certificates[0].Key = tdOther
	err := Check(cfg)
	if err == nil || !strings.Contains(err.Error(), `route "r": tls: certificates[0]: cert: "testdata/tls/server.pem" with key "testdata/tls/other.key": private key does not match public key`) {
		t.Errorf("mismatched pair: %v", err)
	}
}
