package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// start serves ln with serve-style server fn until the test ends, and
// returns ln's address.
func start(t *testing.T, fn func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return ln.Addr().String()
}

// mangling is a proxy that damages the upstream-to-client bytes with
// mangle, which sees each chunk and its offset in the stream and returns
// what to send instead. The client-to-upstream direction is left whole.
func mangling(upstream string, mangle func(off int64, b []byte) []byte) func(context.Context, net.Listener) error {
	return func(ctx context.Context, ln net.Listener) error {
		return serve(ctx, ln, func(client *net.TCPConn) {
			up, err := dial(ctx, upstream)
			if err != nil {
				return
			}
			defer up.Close()
			go clientToUpstream(up, client)
			buf := make([]byte, 32<<10)
			var off int64
			for {
				n, err := up.Read(buf)
				if n > 0 {
					if _, werr := client.Write(mangle(off, buf[:n])); werr != nil {
						return
					}
					off += int64(n)
				}
				if err != nil {
					client.CloseWrite()
					return
				}
			}
		})
	}
}

// at applies f to the chunk that holds stream offset k, at its index in
// the chunk; other chunks pass unchanged.
func at(k int64, f func(b []byte, i int) []byte) func(int64, []byte) []byte {
	return func(off int64, b []byte) []byte {
		if k < off || k >= off+int64(len(b)) {
			return b
		}
		return f(b, int(k-off))
	}
}

// The verifier must never pass bytes that are not the bytes sent: one
// flipped bit, a lost or doubled byte, a short or a long stream each fail
// Bulk with ErrCorrupt, while the same load through an honest proxy passes.
func TestBulkFailsOnEveryCorruption(t *testing.T) {
	echo := start(t, Echo)
	const k = 300_000 // inside the first round of the first stream
	tests := []struct {
		name   string
		mangle func(int64, []byte) []byte
	}{
		{"flipped bit", at(k, func(b []byte, i int) []byte { b[i] ^= 0x10; return b })},
		{"lost byte", at(k, func(b []byte, i int) []byte { return append(b[:i:i], b[i+1:]...) })},
		{"doubled byte", at(k, func(b []byte, i int) []byte { return append(b[:i+1:i+1], b[i:]...) })},
		{"extra byte at the end", func(off int64, b []byte) []byte {
			if off+int64(len(b)) == 1<<20 {
				return append(b[:len(b):len(b)], 0)
			}
			return b
		}},
		{"cut short", func(off int64, b []byte) []byte {
			if off >= k {
				return nil
			}
			return b[:min(int64(len(b)), k-off)]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := start(t, mangling(echo, tt.mangle))
			cfg := BulkConfig{Streams: 2, Bytes: 2 << 20, Rounds: 2, Timeout: 10 * time.Second}
			res := Bulk(t.Context(), cfg, []Target{{Column: "bad", Addr: addr}})
			if res[0].Error == "" || !strings.Contains(res[0].Error, ErrCorrupt.Error()) {
				t.Fatalf("Bulk through a proxy with a %s: error %q, want %q", tt.name, res[0].Error, ErrCorrupt)
			}
			if res[0].MBps != 0 {
				t.Errorf("a failed target reports %.0f MB/s, want none", res[0].MBps)
			}
			_, err := bulkRound(t.Context(), addr, nil, 1, 1<<20, 10*time.Second)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("bulkRound: %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("honest gocopy passes", func(t *testing.T) {
		addr := start(t, func(ctx context.Context, ln net.Listener) error { return GoCopy(ctx, ln, echo) })
		res := Bulk(t.Context(), BulkConfig{Streams: 2, Bytes: 2 << 20, Rounds: 2}, []Target{{Column: "direct", Addr: echo}, {Column: "gocopy", Addr: addr}})
		for _, r := range res {
			if r.Error != "" || r.MBps <= 0 {
				t.Errorf("%s: error %q, %.0f MB/s; want a clean pass", r.Column, r.Error, r.MBps)
			}
		}
	})
}

// CPS and RR check their echoes too: a proxy that flips the first byte
// back fails every operation, so the target fails instead of scoring.
func TestCPSAndRRFailOnCorruption(t *testing.T) {
	echo := start(t, Echo)
	bad := []Target{{Column: "bad", Addr: start(t, mangling(echo, at(0, func(b []byte, i int) []byte { b[i] ^= 1; return b })))}}
	c := CPS(t.Context(), CPSConfig{Workers: 2, Duration: 100 * time.Millisecond}, bad)
	if c[0].Error == "" || c[0].Ops != 0 || !strings.Contains(c[0].FirstError, ErrCorrupt.Error()) {
		t.Errorf("CPS: error %q, %d ops, first error %q; want ErrCorrupt and no ops", c[0].Error, c[0].Ops, c[0].FirstError)
	}
	r := RR(t.Context(), RRConfig{Clients: 2, Duration: 100 * time.Millisecond}, bad)
	if r[0].Error == "" || r[0].Ops != 0 || !strings.Contains(r[0].FirstError, ErrCorrupt.Error()) {
		t.Errorf("RR: error %q, %d ops, first error %q; want ErrCorrupt and no ops", r[0].Error, r[0].Ops, r[0].FirstError)
	}
}

// Idle counts what the measured process holds per connection. Measured on
// this test process, which is client, gocopy and echo at once, every
// connection costs at least four descriptors: client, two proxy legs, echo.
func TestIdleCountsDescriptors(t *testing.T) {
	echo := start(t, Echo)
	addr := start(t, func(ctx context.Context, ln net.Listener) error { return GoCopy(ctx, ln, echo) })
	res, err := Idle(t.Context(), IdleConfig{Addr: addr, Conns: 50, PID: os.Getpid(), Settle: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.FDPerConn < 4 || res.RSSAfter <= 0 || res.Procs != 1 {
		t.Errorf("Idle on 50 connections: %.2f fds/conn, RSS %d KB, %d procs; want ≥ 4 fds/conn, some RSS, 1 proc", res.FDPerConn, res.RSSAfter, res.Procs)
	}
}

// A failed cell reads "error", and a column with no pier result gets no
// ratio rather than a made-up one.
func TestReportShowsErrorsAndRatios(t *testing.T) {
	results := []Result{
		{Column: "pier", Test: "bulk", Streams: 4, MiB: 256, MBps: 2000},
		{Column: "gocopy", Test: "bulk", Streams: 4, MiB: 256, MBps: 1000},
		{Column: "haproxy", Test: "bulk", Error: "dial tcp: connection refused"},
		{Column: "nginx", Test: "*", Skipped: "nginx not installed"},
		{Column: "pier", Test: "idle", Conns: 3000, KBPerConn: 2, FDPerConn: 2},
		{Column: "haproxy", Test: "idle", Conns: 3000, KBPerConn: 3.3, FDPerConn: 2},
	}
	var out bytes.Buffer
	if err := Report(&out, results, []string{"pier", "gocopy", "haproxy", "nginx"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| bulk MB/s (4 streams × 256 MiB each way) | 2000 | 1000 | error | skipped |",
		"haproxy bulk: error: dial tcp: connection refused",
		"nginx: nginx not installed",
		"bulk throughput: pier/gocopy 2.00 (higher is better)",
		"idle KB/conn: pier 2.0, haproxy 3.3: target (below haproxy) met",
		"idle fds/conn: pier 2.00: target (2, its two sockets) met",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// The CPU rows show each proxy's cost per connection and per request, n/a
// for direct (no process) and error where it could not be read; the ratio
// lines compare pier's with HAProxy's and nginx's, and pier-log's with
// pier's, and a total too coarse for its ticks gets a note.
func TestReportShowsCPUCostAndAccessLog(t *testing.T) {
	cpu := func(col, test string, clients int, perSec float64, ops, ticks int64) Result {
		return Result{Column: col, Test: test, Workers: clients, Seconds: 2, PerSec: perSec, Ops: ops,
			CPUTicks: ticks, CPUWindows: 2, ClkTck: 100, CPUusPerOp: float64(ticks) * 1e4 / float64(ops)}
	}
	results := []Result{
		{Column: "direct", Test: "cps", Workers: 32, Seconds: 2, PerSec: 14000, Ops: 28000},
		cpu("pier", "cps", 32, 9000, 18000, 180),     // 100 µs/conn
		cpu("pier-log", "cps", 32, 8100, 16200, 243), // 150 µs/conn
		cpu("haproxy", "cps", 32, 10000, 20000, 160), // 80 µs/conn
		{Column: "nginx", Test: "cps", Workers: 32, Seconds: 2, PerSec: 10000, Ops: 20000, CPUError: "bench: CPU time of pid 7: gone"},
		{Column: "direct", Test: "rr", Workers: 1, Seconds: 2, PerSec: 14000, Ops: 28000},
		cpu("pier", "rr", 1, 7000, 14000, 42),     // 30 µs/req, ±10%
		cpu("pier-log", "rr", 1, 7000, 14000, 42), // 30 µs/req
		cpu("haproxy", "rr", 1, 9000, 18000, 72),  // 40 µs/req
		cpu("nginx", "rr", 1, 9000, 18000, 90),    // 50 µs/req
	}
	var out bytes.Buffer
	if err := Report(&out, results, []string{"direct", "pier", "pier-log", "haproxy", "nginx"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| CPU µs/conn | n/a | 100 | 150 | 80.0 | error |",
		"| CPU µs/req, 1 client | n/a | 30.0 | 30.0 | 40.0 | 50.0 |",
		"nginx cps: CPU: error: bench: CPU time of pid 7: gone",
		"pier rr/1: CPU within ±10% only (42 ticks of 1/100 s",
		"ticks of 10 ms (CLK_TCK 100)",
		"CPU per connection: pier/haproxy 1.25 (lower is better)",
		"CPU per request, 1 client: pier/haproxy 0.75, pier/nginx 0.60 (lower is better)",
		"access log: pier-log/pier connections/s 0.90, CPU per connection +50.0 µs (the access log's cost per session)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "pier cps: CPU within") {
		t.Errorf("report notes the resolution of 180 ticks over 2 windows (±2%%):\n%s", out.String())
	}
}

// With a pier-ref column (bench/run -ref), the ratios compare pier with
// that other build too: rates, latency and CPU.
func TestReportComparesWithAnotherPierBuild(t *testing.T) {
	rr := func(col string, perSec, p99 float64, ticks int64) Result {
		ops := int64(perSec * 2)
		return Result{Column: col, Test: "rr", Workers: 16, Seconds: 2, PerSec: perSec, Ops: ops, P50us: 100, P99us: p99,
			CPUTicks: ticks, CPUWindows: 2, ClkTck: 100, CPUusPerOp: float64(ticks) * 1e4 / float64(ops)}
	}
	results := []Result{
		rr("pier", 12000, 400, 240),     // 100 µs/req
		rr("pier-ref", 10000, 500, 250), // 125 µs/req
		rr("haproxy", 11000, 400, 264),  // 120 µs/req
	}
	var out bytes.Buffer
	if err := Report(&out, results, []string{"pier", "pier-ref", "haproxy"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"req/s, 16 clients: pier/pier-ref 1.20, pier/haproxy 1.09 (higher is better)",
		"p50 / p99 latency, 16 clients: pier/pier-ref 1.00 / 0.80, pier/haproxy 1.00 / 1.00 (lower is better)",
		"CPU per request, 16 clients: pier/pier-ref 0.80, pier/haproxy 0.83 (lower is better)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// The edge columns (pier-acl, pier-limits, pier-sni) are each held to
// plain pier: connections/s and 1-client req/s at least 0.95 of it.
func TestReportHoldsEdgeColumnsToPier(t *testing.T) {
	res := func(col, test string, clients int, perSec float64) Result {
		return Result{Column: col, Test: test, Workers: clients, Seconds: 2, PerSec: perSec, Ops: int64(perSec * 2)}
	}
	results := []Result{
		res("pier", "cps", 32, 10000), res("pier-acl", "cps", 32, 9800), res("pier-sni", "cps", 32, 9000),
		res("pier", "rr", 1, 20000), res("pier-acl", "rr", 1, 19800), res("pier-sni", "rr", 1, 19900),
		res("pier", "rr", 16, 50000), res("pier-acl", "rr", 16, 40000), res("pier-sni", "rr", 16, 50000),
		{Column: "pier-limits", Test: "*", Error: "did not start"},
	}
	var out bytes.Buffer
	if err := Report(&out, results, []string{"pier", "pier-acl", "pier-limits", "pier-sni"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"pier-acl (an ACL of 1000 CIDRs)/pier: connections/s 0.98, req/s 1 client 0.99, req/s 16 clients 0.80 (higher is better); target (≥ 0.95 for connections/s and req/s 1 client) met",
		"pier-sni (a route chosen by SNI)/pier: connections/s 0.90, req/s 1 client 0.99, req/s 16 clients 1.00 (higher is better); target (≥ 0.95 for connections/s and req/s 1 client) MISSED: connections/s",
		"pier-limits (per-client limits and accept rates)/pier: no results (higher is better); target (≥ 0.95 for connections/s and req/s 1 client) MISSED: connections/s not measured, req/s 1 client not measured",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// pier-sni is held to pier-hello (plain pier given the same ClientHello
// first) when that column ran: the ratio prices the routing, not the
// hello's bytes.
func TestReportHoldsSNIToPierHello(t *testing.T) {
	res := func(col, test string, clients int, perSec float64) Result {
		return Result{Column: col, Test: test, Workers: clients, Seconds: 2, PerSec: perSec, Ops: int64(perSec * 2)}
	}
	results := []Result{
		res("pier", "cps", 32, 10000), res("pier-hello", "cps", 32, 9200), res("pier-sni", "cps", 32, 9000),
		res("pier", "rr", 1, 20000), res("pier-hello", "rr", 1, 19000), res("pier-sni", "rr", 1, 19000),
	}
	var out bytes.Buffer
	if err := Report(&out, results, []string{"pier", "pier-sni", "pier-hello"}); err != nil {
		t.Fatal(err)
	}
	want := "pier-sni (a route chosen by SNI)/pier-hello: connections/s 0.98, req/s 1 client 1.00 (higher is better); target (≥ 0.95 for connections/s and req/s 1 client) met"
	if !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}
