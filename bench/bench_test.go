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
			res := Bulk(t.Context(), cfg, []Target{{"bad", addr}})
			if res[0].Error == "" || !strings.Contains(res[0].Error, ErrCorrupt.Error()) {
				t.Fatalf("Bulk through a proxy with a %s: error %q, want %q", tt.name, res[0].Error, ErrCorrupt)
			}
			if res[0].MBps != 0 {
				t.Errorf("a failed target reports %.0f MB/s, want none", res[0].MBps)
			}
			_, err := bulkRound(t.Context(), addr, 1, 1<<20, 10*time.Second)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("bulkRound: %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("honest gocopy passes", func(t *testing.T) {
		addr := start(t, func(ctx context.Context, ln net.Listener) error { return GoCopy(ctx, ln, echo) })
		res := Bulk(t.Context(), BulkConfig{Streams: 2, Bytes: 2 << 20, Rounds: 2}, []Target{{"direct", echo}, {"gocopy", addr}})
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
	bad := []Target{{"bad", start(t, mangling(echo, at(0, func(b []byte, i int) []byte { b[i] ^= 1; return b })))}}
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
