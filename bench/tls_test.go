package bench

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// tlsFixture is a run's certificates and a Go TLS echo for each kind.
type tlsFixture struct {
	files       CertFiles
	client      *tls.Config // accepts both benchmark certificates
	ecdsa, rsa  string      // TLS echo addresses
	ecdsaServer *tls.Config
}

func newTLSFixture(t *testing.T) *tlsFixture {
	t.Helper()
	files, err := WriteCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	client, err := ClientTLS(files.ECDSACert, files.RSACert)
	if err != nil {
		t.Fatal(err)
	}
	f := &tlsFixture{files: files, client: client}
	for _, kind := range []struct {
		cert, key string
		addr      *string
	}{{files.ECDSACert, files.ECDSAKey, &f.ecdsa}, {files.RSACert, files.RSAKey, &f.rsa}} {
		cert, err := tls.LoadX509KeyPair(kind.cert, kind.key)
		if err != nil {
			t.Fatal(err)
		}
		*kind.addr = start(t, func(ctx context.Context, ln net.Listener) error { return TLSEcho(ctx, ln, cert) })
	}
	return f
}

// Every TLS load runs against a Go TLS echo and measures something: bulk
// bytes checked, handshakes of each certificate kind (the negotiated line
// names the key), resumed handshakes that did resume, request/response
// over one session, and idle sessions' descriptors.
func TestTLSLoadsAgainstTLSEcho(t *testing.T) {
	f := newTLSFixture(t)
	tg := func(addr string) []Target {
		return []Target{{Column: "direct-tls", Addr: addr, TLS: f.client, PID: os.Getpid()}}
	}

	b := Bulk(t.Context(), BulkConfig{Streams: 2, Bytes: 1 << 20, Rounds: 2, Timeout: 10 * time.Second}, tg(f.ecdsa))
	if b[0].Error != "" || b[0].MBps <= 0 {
		t.Errorf("bulk: error %q, %.0f MB/s", b[0].Error, b[0].MBps)
	}
	for _, k := range []struct {
		addr, test, key string
		resume          bool
	}{
		{f.ecdsa, "hs-ecdsa", "ECDSA", false},
		{f.rsa, "hs-rsa", "RSA", false},
		{f.ecdsa, "hs-resume", "ECDSA", true},
	} {
		h := Handshakes(t.Context(), HandshakeConfig{Test: k.test, Workers: 2, Duration: 200 * time.Millisecond, Rounds: 2, Resume: k.resume}, tg(k.addr))[0]
		if h.Error != "" || h.Ops == 0 || h.PerSec <= 0 || h.Errors != 0 {
			t.Errorf("%s: error %q (first %q), %d ops, %d failed", k.test, h.Error, h.FirstError, h.Ops, h.Errors)
		}
		if h.Test != k.test || !strings.HasPrefix(h.TLS, "TLS 1.3 ") || !strings.HasSuffix(h.TLS, " X25519 "+k.key) {
			t.Errorf("%s: test %q, negotiated %q; want TLS 1.3, X25519, %s", k.test, h.Test, h.TLS, k.key)
		}
		if h.CPUWindows == 0 || h.ClkTck == 0 {
			t.Errorf("%s: no CPU window read (%d windows)", k.test, h.CPUWindows)
		}
	}
	r := RR(t.Context(), RRConfig{Clients: 1, Duration: 100 * time.Millisecond}, tg(f.ecdsa))[0]
	if r.Error != "" || r.Ops == 0 || r.P50us <= 0 {
		t.Errorf("rr: error %q, %d ops, p50 %.1f", r.Error, r.Ops, r.P50us)
	}
	// This process is client and server: each session holds two
	// descriptors here, the client's and the echo's.
	idle, err := Idle(t.Context(), IdleConfig{Addr: f.ecdsa, Conns: 20, PID: os.Getpid(), Settle: time.Millisecond, TLS: f.client})
	if err != nil || idle.FDPerConn < 2 {
		t.Errorf("idle: %v, %.2f fds/session; want ≥ 2", err, idle.FDPerConn)
	}
}

// A resuming load counts only handshakes that resumed: against a server
// that issues no tickets, none does, and the target fails saying so.
func TestHandshakesCountOnlyResumed(t *testing.T) {
	f := newTLSFixture(t)
	cert, err := tls.LoadX509KeyPair(f.files.ECDSACert, f.files.ECDSAKey)
	if err != nil {
		t.Fatal(err)
	}
	noTickets := start(t, func(ctx context.Context, ln net.Listener) error {
		return tlsEcho(ctx, ln, &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	})
	h := Handshakes(t.Context(), HandshakeConfig{Workers: 2, Duration: 100 * time.Millisecond, Resume: true},
		[]Target{{Column: "x", Addr: noTickets, TLS: f.client}})[0]
	if h.Ops != 0 || h.NotResumed == 0 || !strings.Contains(h.Error, "no handshake resumed") {
		t.Errorf("resuming against a server without tickets: %d ops, %d not resumed, error %q; want 0, some, no handshake resumed", h.Ops, h.NotResumed, h.Error)
	}
}

// The client accepts only the benchmark's certificates: a server with
// another certificate (a proxy misconfigured to serve its default) fails
// every handshake.
func TestClientTLSRejectsOtherCertificates(t *testing.T) {
	f := newTLSFixture(t)
	onlyRSA, err := ClientTLS(f.files.RSACert)
	if err != nil {
		t.Fatal(err)
	}
	h := Handshakes(t.Context(), HandshakeConfig{Workers: 1, Duration: 50 * time.Millisecond},
		[]Target{{Column: "x", Addr: f.ecdsa, TLS: onlyRSA}})[0]
	if h.Ops != 0 || !strings.Contains(h.Error, "not a benchmark certificate") {
		t.Errorf("a client that accepts only the RSA certificate against the ECDSA server: %d ops, error %q", h.Ops, h.Error)
	}
	if _, err := ClientTLS(f.files.ECDSAKey); err == nil {
		t.Error("ClientTLS accepted a file with no certificate")
	}
}

// The TLS table: a row per load, pier-tls held to HAProxy (bulk and
// request/response ≥ 1×, handshakes ≥ 0.8×) and to plain pier's idle
// session (≤ 2×), each met or MISSED; what was negotiated; sessions that
// did not resume noted.
func TestTLSReportTargets(t *testing.T) {
	res := func(col, test string, perSec float64) Result {
		return Result{Column: col, Test: test, Workers: 32, Seconds: 2, PerSec: perSec, Ops: int64(perSec * 2),
			CPUTicks: int64(perSec / 10), CPUWindows: 2, ClkTck: 100, CPUusPerOp: 5000 / perSec * 10}
	}
	rr := func(col string, perSec, p50, p99 float64) Result {
		r := res(col, "rr", perSec)
		r.Workers, r.P50us, r.P99us = 1, p50, p99
		return r
	}
	hs := func(col, test string, perSec float64, negotiated string) Result {
		r := res(col, test, perSec)
		r.TLS = negotiated
		return r
	}
	results := []Result{
		{Column: "pier-tls", Test: "bulk", Streams: 4, MiB: 64, MBps: 900},
		{Column: "haproxy", Test: "bulk", Streams: 4, MiB: 64, MBps: 1000},
		{Column: "stunnel", Test: "bulk", Error: "stream 0: connection reset"},
		hs("pier-tls", "hs-ecdsa", 850, "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519 ECDSA"), hs("haproxy", "hs-ecdsa", 1000, "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519 ECDSA"),
		hs("pier-tls", "hs-rsa", 700, ""), hs("haproxy", "hs-rsa", 1000, ""),
		hs("pier-tls", "hs-resume", 3000, ""),
		rr("pier-tls", 11000, 80, 200), rr("haproxy", 10000, 100, 200),
		{Column: "pier-tls", Test: "idle", Conns: 1000, KBPerConn: 9, FDPerConn: 2},
		{Column: "pier", Test: "idle", Conns: 1000, KBPerConn: 4, FDPerConn: 2},
		{Column: "haproxy", Test: "idle", Conns: 1000, KBPerConn: 30, FDPerConn: 2},
		{Column: "nginx", Test: "*", Skipped: "nginx is not installed"},
	}
	results[7].NotResumed = 32
	var out bytes.Buffer
	if err := TLSReport(&out, results, []string{"pier-tls", "haproxy", "nginx", "stunnel", "pier"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| bulk MB/s (4 streams × 64 MiB each way) | 900 | 1000 | skipped | error | – |",
		"| full handshakes/s, ECDSA P-256 (32 workers, 2s) | 850 | 1000 | skipped | – | – |",
		"| idle KB/session (1000 sessions) | 9.0 | 30.0 | skipped | – | 4.0 |",
		"stunnel bulk: error: stream 0: connection reset",
		"pier-tls hs-resume: 32 handshakes did not resume (full, not counted) against 6000 that did",
		"- pier-tls: TLS 1.3 TLS_AES_128_GCM_SHA256 X25519 ECDSA",
		"bulk MB/s: pier-tls/haproxy 0.90 (higher is better); target (≥ 1.00 × haproxy) MISSED",
		"full handshakes/s, ECDSA P-256: pier-tls/haproxy 0.85 (higher is better); target (≥ 0.80 × haproxy) met",
		"full handshakes/s, RSA 2048: pier-tls/haproxy 0.70 (higher is better); target (≥ 0.80 × haproxy) MISSED",
		"resumed handshakes/s: no ratio (higher is better); target (≥ 0.80 × haproxy) not checked: no haproxy result",
		"req/s, 1 client: pier-tls/haproxy 1.10 (higher is better); target (≥ 1.00 × haproxy) met",
		"p50 latency, 1 client: pier-tls/haproxy 0.80 (lower is better)",
		"idle KB/session: pier-tls 9.0, haproxy 30.0, pier (plain) 4.0: 2.25 × plain; target (≤ 2 × pier's plain session) MISSED",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("TLS report lacks %q:\n%s", want, out.String())
		}
	}

	// pier-tls that could not run (no tls config in this build) misses
	// every target, with no made-up ratio.
	out.Reset()
	failed := []Result{{Column: "pier-tls", Test: "*", Error: "did not start: unknown field tls"}, results[1]}
	if err := TLSReport(&out, failed, []string{"pier-tls", "haproxy"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| bulk MB/s (4 streams × 64 MiB each way) | error | 1000 |",
		"pier-tls: error: did not start: unknown field tls",
		"no pier-tls results (pier-tls: error, see notes): no ratios; every target MISSED",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("TLS report lacks %q:\n%s", want, out.String())
		}
	}
}

// BenchmarkServerKeyOps prices, in Go, the server's public-key work in a
// full TLS 1.3 handshake with each certificate kind: its signature (the
// CertificateVerify: ECDSA P-256, or RSA-PSS 2048 with SHA-256 as Go's
// client asks) and its X25519 key share. pier-tls's CPU per RSA handshake
// is mostly the RSA signature; `openssl speed -seconds 3 rsa2048
// ecdsap256` gives OpenSSL's figures for the same operations (what
// HAProxy, nginx and stunnel spend).
func BenchmarkServerKeyOps(b *testing.B) {
	digest := sha256.Sum256([]byte("pier bench"))
	b.Run("sign/ECDSA-P256", func(b *testing.B) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign/RSA-2048-PSS", func(b *testing.B) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			b.Fatal(err)
		}
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		for b.Loop() {
			if _, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("X25519-share", func(b *testing.B) {
		peer, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			k, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := k.ECDH(peer.PublicKey()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
