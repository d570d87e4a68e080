package bench

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// startUDPEcho serves the UDP echo on 127.0.0.1:0 until the test ends.
func startUDPEcho(t *testing.T) string {
	t.Helper()
	conns, err := ListenUDPEcho("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	return serveUDP(t, func(ctx context.Context) error { return UDPEcho(ctx, conns) }, conns[0])
}

// serveUDP runs fn until the test ends and returns c's address.
func serveUDP(t *testing.T, fn func(context.Context) error, c *net.UDPConn) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return c.LocalAddr().String()
}

// mangledEcho is a UDP echo that sends back what mangle makes of the
// i-th datagram it receives (nil: nothing).
func mangledEcho(t *testing.T, mangle func(i int, d []byte) []byte) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return serveUDP(t, func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		buf := make([]byte, udpMaxDatagram)
		for i := 0; ; i++ {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if d := mangle(i, buf[:n]); d != nil {
				c.WriteToUDPAddrPort(d, from)
			}
		}
	}, c)
}

// Every UDP load runs against the echo and counts what it should: the
// closed loop and the paced load lose nothing and see nothing wrong on
// loopback, queries are answered and timed, and each idle flow holds its
// client's socket (this process is the client).
func TestUDPLoadsAgainstUDPEcho(t *testing.T) {
	addr := startUDPEcho(t)
	tg := []Target{{Column: "direct", Addr: addr, PID: os.Getpid()}}
	for _, cfg := range []UDPRateConfig{
		{Size: 64, Flows: 1, Window: 8},
		{Size: 1400, Flows: 20, Window: 16},
		{Test: "udploss", Size: 64, Flows: 10, Pace: 2000},
	} {
		cfg.Duration, cfg.Rounds, cfg.Drain = 200*time.Millisecond, 2, 100*time.Millisecond
		r := UDPRate(t.Context(), cfg, tg)[0]
		if r.Error != "" || r.PerSec <= 0 || r.Sent == 0 || r.Lost != 0 || r.Wrong != 0 || r.Ops != r.Sent {
			t.Errorf("%+v: error %q, %.0f/s, sent %d, received %d, lost %d, wrong %d; want all back", cfg, r.Error, r.PerSec, r.Sent, r.Ops, r.Lost, r.Wrong)
		}
		if r.Test != cfg.test() || r.Size != cfg.Size || r.Flows != cfg.Flows || r.CPUWindows == 0 {
			t.Errorf("%+v: result %+v: parameters or CPU windows missing", cfg, r)
		}
		if cfg.Pace > 0 && (r.Sent < 300 || r.Sent > 500) {
			t.Errorf("paced at 2000/s for 0.2 s: sent %d; want about 400", r.Sent)
		}
	}
	q := UDPRR(t.Context(), UDPRRConfig{Clients: 2, Duration: 200 * time.Millisecond, Rounds: 2}, tg)[0]
	if q.Error != "" || q.Ops == 0 || q.P50us <= 0 || q.P99us < q.P50us || q.Lost != 0 || q.Errors != 0 || q.Sent != q.Ops {
		t.Errorf("udprr: %+v", q)
	}
	idle, err := UDPIdle(t.Context(), UDPIdleConfig{Addr: addr, Flows: 20, PID: os.Getpid(), Settle: time.Millisecond})
	if err != nil || idle.FDPerConn < 1 {
		t.Errorf("udpidle: %v, %.2f fds/flow; want ≥ 1 (the client's socket)", err, idle.FDPerConn)
	}
	wctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := WaitUDP(wctx, addr); err != nil {
		t.Errorf("WaitUDP: %v", err)
	}
}

// Datagrams an upstream drops are counted lost; changed ones are counted
// wrong, not received; one echo sent twice is counted wrong once.
func TestUDPRateCountsLossAndDamage(t *testing.T) {
	cfg := UDPRateConfig{Size: 64, Flows: 2, Window: 4, Duration: 300 * time.Millisecond, Timeout: 20 * time.Millisecond, Drain: 50 * time.Millisecond}
	for _, c := range []struct {
		name        string
		mangle      func(i int, d []byte) []byte
		lost, wrong bool
	}{
		{"drops every 5th", func(i int, d []byte) []byte {
			if i%5 == 4 {
				return nil
			}
			return d
		}, true, false},
		{"flips a byte of every 3rd", func(i int, d []byte) []byte {
			if i%3 == 2 {
				d[len(d)-1] ^= 1
			}
			return d
		}, true, true},
		{"to the other flow", func(i int, d []byte) []byte {
			if i%4 == 3 {
				d[0] ^= 1 // flow 0 ↔ flow 1
			}
			return d
		}, true, true},
	} {
		r := UDPRate(t.Context(), cfg, []Target{{Column: "x", Addr: mangledEcho(t, c.mangle)}})[0]
		if r.Error != "" || (r.Lost > 0) != c.lost || (r.Wrong > 0) != c.wrong || r.Ops+r.Lost != r.Sent {
			t.Errorf("%s: error %q, sent %d, received %d, lost %d, wrong %d; want lost %v, wrong %v", c.name, r.Error, r.Sent, r.Ops, r.Lost, r.Wrong, c.lost, c.wrong)
		}
		if c.lost && r.Stalls == 0 {
			t.Errorf("%s: no stall counted though datagrams were lost", c.name)
		}
	}
	dup := mangledEcho(t, func(i int, d []byte) []byte { return d })
	r := UDPRate(t.Context(), cfg, []Target{{Column: "x", Addr: dup}})[0]
	if r.Wrong != 0 || r.Lost != 0 {
		t.Errorf("plain echo: lost %d, wrong %d", r.Lost, r.Wrong)
	}
	// Nothing listening: ICMP port unreachable is counted, and the target
	// fails for want of any echo, not on the first refusal.
	closed, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	nobody := closed.LocalAddr().String()
	closed.Close()
	r = UDPRate(t.Context(), cfg, []Target{{Column: "x", Addr: nobody}})[0]
	if r.Errors == 0 || !strings.Contains(r.FirstError, "ECONNREFUSED") || !strings.Contains(r.Error, "no datagram came back") {
		t.Errorf("nothing listening: errors %d (first %q), error %q", r.Errors, r.FirstError, r.Error)
	}
	// A query's answer that differs is wrong; one that never comes, lost.
	silent := mangledEcho(t, func(int, []byte) []byte { return nil })
	q := UDPRR(t.Context(), UDPRRConfig{Duration: 100 * time.Millisecond, Timeout: 30 * time.Millisecond}, []Target{{Column: "x", Addr: silent}})[0]
	if q.Ops != 0 || q.Lost == 0 || !strings.Contains(q.Error, "no query answered") {
		t.Errorf("silent upstream: %d answered, %d lost, error %q", q.Ops, q.Lost, q.Error)
	}
}

// udpResults is a bench/udp run where pier carries rate and 1400 B at
// 1000 flows (below nginx there), has the given p99 and loss.
func udpResults(pierP99 float64, pierLost int64) []Result {
	var rs []Result
	for _, c := range []struct {
		col                string
		r64, r1400, q, p99 float64
		lost               int64
	}{
		{"direct", 300000, 200000, 30000, 40, 0},
		{"pier", 200000, 90000, 20000, pierP99, pierLost},
		{"nginx", 150000, 100000, 15000, 100, 0},
		{"socat", 50000, 40000, 900, 900, 3},
	} {
		cpu := Result{CPUTicks: 100, CPUWindows: 2, ClkTck: 100}
		rate := func(size, flows int, v float64) Result {
			r := cpu
			r.Column, r.Test, r.Size, r.Flows, r.Window, r.Seconds = c.col, "udp", size, flows, 64, 3
			r.PerSec, r.Sent, r.Ops = v, int64(v)*3+10, int64(v)*3
			r.Lost = 10
			r.CPUusPerOp = 1e6 / v
			return r
		}
		rr := cpu
		rr.Column, rr.Test, rr.Workers, rr.Size, rr.Seconds = c.col, "udprr", 1, 64, 3
		rr.PerSec, rr.P50us, rr.P99us, rr.Ops, rr.Sent, rr.CPUusPerOp = c.q, c.p99/2, c.p99, 100, 100, 5
		loss := Result{Column: c.col, Test: "udploss", Size: 64, Flows: 1000, Pace: 75000, Seconds: 3, Sent: 225000, Ops: 225000 - c.lost, Lost: c.lost}
		idle := Result{Column: c.col, Test: "udpidle", Conns: 1000, KBPerConn: 1.5, FDPerConn: 1}
		rs = append(rs, rate(64, 1, c.r64), rate(1400, 1000, c.r1400), rr, loss)
		if c.col != "direct" {
			rs = append(rs, idle)
		} else {
			rs = append(rs, Result{Column: "direct", Test: "udpidle", Skipped: "n/a: no proxy"})
		}
	}
	return rs
}

// The report shows every row and holds pier to nginx on each rate, to
// nginx's p99, and to losing nothing paced, marking each met or MISSED.
func TestUDPReportTargets(t *testing.T) {
	var out bytes.Buffer
	if err := UDPReport(&out, udpResults(90, 0), []string{"direct", "pier", "nginx", "socat"}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"| datagrams/s, 64 B, 1 flow (window 64, 3s) | 300000 | 200000 | 150000 | 50000 |",
		"| lost of sent, 1400 B, 1000 flows | 10 of 600010 (0.00%) |",
		"| p50 / p99 µs, 1 client | 20.0 / 40.0 | 45.0 / 90.0 | 50.0 / 100 | 450 / 900 |",
		"| lost of sent, paced 75000/s, 64 B, 1000 flows (3s) | 0 of 225000 | 0 of 225000 | 0 of 225000 | 3 of 225000 (0.00%) |",
		"| idle fds/flow | n/a | 1.00 | 1.00 | 1.00 |",
		"datagrams/s, 64 B, 1 flow: pier/nginx 1.33, pier/socat 4.00, pier/direct 0.67 (higher is better); target (≥ nginx) met",
		"datagrams/s, 1400 B, 1000 flows: pier/nginx 0.90, pier/socat 2.25, pier/direct 0.45 (higher is better); target (≥ nginx) MISSED",
		"queries/s, 1 client: pier/nginx 1.33",
		"p99 latency, 1 client: pier/nginx 0.90, pier/socat 0.10, pier/direct 2.25 (lower is better); target (≤ nginx) met",
		"loss at 75000/s paced: pier 0 of 225000, nginx 0 of 225000, socat 3 of 225000 (0.00%), direct 0 of 225000; target (0 lost) met",
		"idle flow: pier 1.5 KB, 1.00 fds; nginx 1.5 KB, 1.00 fds; socat 1.5 KB, 1.00 fds (no target: stated)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	out.Reset()
	UDPReport(&out, udpResults(110, 2), []string{"direct", "pier", "nginx", "socat"})
	for _, want := range []string{
		"p99 latency, 1 client: pier/nginx 1.10, pier/socat 0.12, pier/direct 2.75 (lower is better); target (≤ nginx) MISSED",
		"loss at 75000/s paced: pier 2 of 225000 (0.00%)",
		"; target (0 lost) MISSED",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report with pier's p99 above nginx's and a loss lacks %q:\n%s", want, out.String())
		}
	}
	// Without nginx, targets are not checked; without pier, all MISSED.
	var noNginx, noPier []Result
	for _, r := range udpResults(90, 0) {
		if r.Column != "nginx" {
			noNginx = append(noNginx, r)
		}
		if r.Column != "pier" {
			noPier = append(noPier, r)
		}
	}
	noNginx = append(noNginx, Result{Column: "nginx", Test: "*", Skipped: "nginx is not installed"})
	out.Reset()
	UDPReport(&out, noNginx, []string{"direct", "pier", "nginx", "socat"})
	if s := out.String(); !strings.Contains(s, "target (≥ nginx) not checked: no nginx result") || strings.Contains(s, "(≥ nginx) met") || !strings.Contains(s, "nginx: nginx is not installed") {
		t.Errorf("without nginx:\n%s", s)
	}
	noPier = append(noPier, Result{Column: "pier", Test: "*", Error: "go build ./cmd/pier failed"})
	out.Reset()
	UDPReport(&out, noPier, []string{"direct", "pier", "nginx", "socat"})
	if s := out.String(); !strings.Contains(s, "no pier results (pier: error, see notes): no ratios; every target MISSED") {
		t.Errorf("without pier:\n%s", s)
	}
}

// The paced rate is a share of nginx's 1000-flow rate, or of the least
// any column carried when nginx has none.
func TestUDPPace(t *testing.T) {
	rs := udpResults(90, 0)
	if rate, from, err := UDPPace(rs, "nginx", "udp/1400/1000", 0.5); err != nil || rate != 50000 || from != "nginx" {
		t.Errorf("UDPPace nginx = %v, %q, %v; want 50000 from nginx", rate, from, err)
	}
	if rate, from, err := UDPPace(rs, "haproxy", "udp/1400/1000", 0.5); err != nil || rate != 20000 || from != "socat" {
		t.Errorf("UDPPace without the column = %v, %q, %v; want 20000 from socat", rate, from, err)
	}
	if _, _, err := UDPPace(rs, "nginx", "udp/9/9", 0.5); err == nil {
		t.Error("UDPPace with no such row: no error")
	}
}
