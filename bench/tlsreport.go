package bench

import (
	"fmt"
	"io"
	"strings"
)

// The TLS table (bench/tls): pier terminating TLS next to HAProxy, nginx
// and stunnel, and a Go TLS echo with no proxy (direct-tls); plain pier's
// idle cost from the same run is the yardstick of pier's TLS sessions.
const (
	tlsPier  = "pier-tls" // pier terminating TLS
	tlsPlain = "pier"     // plain pier, measured for idle only
	tlsPeer  = "haproxy"  // the targets are set against it
)

// Issue 14's targets: bulk and 1-client request/response at least
// HAProxy's; handshakes/s at least 0.8 of HAProxy's; an idle TLS session
// at most twice the memory of an idle plain one.
const (
	tlsRateTarget      = 1.0
	tlsHandshakeTarget = 0.8
	tlsIdleTarget      = 2.0
)

// tlsOthers are the columns pier-tls is compared with, in the ratio lines.
var tlsOthers = []string{"haproxy", "nginx", "stunnel", "direct-tls"}

// TLSReport writes the results of a bench/tls run: one markdown table, a
// column per entry of columns, then the notes, what each column
// negotiated, and pier-tls's ratios to the others with issue 14's targets,
// each marked met or MISSED.
func TLSReport(w io.Writer, results []Result, columns []string) error {
	t := newTable(results)
	p := &printer{w: w}
	p.printf("| | %s |\n", strings.Join(columns, " | "))
	p.printf("|---|%s\n", strings.Repeat("---:|", len(columns)))
	for _, row := range t.tlsRows() {
		cells := make([]string, len(columns))
		for i, col := range columns {
			cells[i] = t.cell(col, row)
		}
		p.printf("| %s | %s |\n", row.label, strings.Join(cells, " | "))
	}
	notes := t.notes(columns)
	for _, col := range columns {
		if r, ok := usable(t.byKey[col], "hs-resume"); ok && r.NotResumed > 0 {
			notes = append(notes, fmt.Sprintf("%s hs-resume: %d handshakes did not resume (full, not counted) against %d that did", col, r.NotResumed, r.Ops))
		}
	}
	if len(notes) > 0 {
		p.printf("\nNotes:\n")
		for _, n := range notes {
			p.printf("- %s\n", n)
		}
	}
	var negotiated []string
	for _, col := range columns {
		var kinds []string
		for _, k := range []string{"hs-ecdsa", "hs-rsa"} {
			if r, ok := usable(t.byKey[col], k); ok && r.TLS != "" {
				kinds = append(kinds, r.TLS)
			}
		}
		if len(kinds) > 0 {
			negotiated = append(negotiated, fmt.Sprintf("%s: %s", col, strings.Join(kinds, "; ")))
		}
	}
	if len(negotiated) > 0 {
		p.printf("\nNegotiated (the first full handshake of each load):\n")
		for _, n := range negotiated {
			p.printf("- %s\n", n)
		}
	}
	p.printf("\nRatios (pier-tls / other) and targets:\n")
	for _, line := range t.tlsRatios() {
		p.printf("- %s\n", line)
	}
	return p.err
}

func (t *table) tlsRows() []row {
	rate := withErrors(func(r Result) string { return num(r.PerSec) })
	b := t.params["bulk"]
	rows := []row{{
		label: fmt.Sprintf("bulk MB/s (%d streams × %d MiB each way)", b.Streams, b.MiB),
		key:   "bulk",
		show:  func(r Result) string { return num(r.MBps) },
	}}
	for _, h := range []struct{ key, what, cpu string }{
		{"hs-ecdsa", "full handshakes/s, ECDSA P-256", "CPU µs/full handshake, ECDSA"},
		{"hs-rsa", "full handshakes/s, RSA 2048", "CPU µs/full handshake, RSA"},
		{"hs-resume", "resumed handshakes/s, ECDSA P-256", "CPU µs/resumed handshake"},
	} {
		p := t.params[h.key]
		rows = append(rows, row{
			label: fmt.Sprintf("%s (%d workers, %gs)", h.what, p.Workers, p.Seconds),
			key:   h.key,
			show:  rate,
		}, row{
			label: h.cpu,
			key:   h.key,
			show:  cpuCost,
		})
	}
	p := t.params["rr/1"]
	rows = append(rows,
		row{label: fmt.Sprintf("req/s, 1 client (64 B, %gs)", p.Seconds), key: "rr/1", show: rate},
		row{label: "p50 / p99 µs, 1 client", key: "rr/1", show: func(r Result) string { return num(r.P50us) + " / " + num(r.P99us) }},
		row{label: "CPU µs/req, 1 client", key: "rr/1", show: cpuCost},
	)
	idle := "idle KB/session"
	if n := t.params["idle"].Conns; n > 0 {
		idle += fmt.Sprintf(" (%d sessions)", n)
	}
	rows = append(rows,
		row{label: idle, key: "idle", show: func(r Result) string { return fmt.Sprintf("%.1f", r.KBPerConn) }},
		row{label: "idle fds/session", key: "idle", show: func(r Result) string { return fmt.Sprintf("%.2f", r.FDPerConn) }},
	)
	return rows
}

// tlsRatios compares pier-tls with every other column, a line per
// measurement, and holds it to its targets against HAProxy (rates) and
// against plain pier (idle memory).
func (t *table) tlsRatios() []string {
	pier, ok := t.byKey[tlsPier]
	if !ok || len(pier) == 0 {
		_, failed := t.failed[tlsPier]
		why := "no pier-tls results"
		if failed {
			why += " (pier-tls: error, see notes)"
		}
		return []string{why + ": no ratios; every target MISSED"}
	}
	var out []string
	rate := func(label, k string, v func(Result) float64, target float64, lowerBetter bool) {
		var parts []string
		for _, o := range tlsOthers {
			if s, ok := t.ratio(pier, o, k, v); ok {
				parts = append(parts, fmt.Sprintf("pier-tls/%s %s", o, s))
			}
		}
		line := label + ": "
		if len(parts) == 0 {
			line += "no ratio"
		} else {
			line += strings.Join(parts, ", ")
		}
		if lowerBetter {
			line += " (lower is better)"
		} else {
			line += " (higher is better)"
		}
		if target > 0 {
			line += "; " + t.tlsTarget(pier, k, v, target)
		}
		out = append(out, line)
	}
	perSec := func(r Result) float64 { return r.PerSec }
	rate("bulk MB/s", "bulk", func(r Result) float64 { return r.MBps }, tlsRateTarget, false)
	rate("full handshakes/s, ECDSA P-256", "hs-ecdsa", perSec, tlsHandshakeTarget, false)
	rate("full handshakes/s, RSA 2048", "hs-rsa", perSec, tlsHandshakeTarget, false)
	rate("resumed handshakes/s", "hs-resume", perSec, tlsHandshakeTarget, false)
	rate("req/s, 1 client", "rr/1", perSec, tlsRateTarget, false)
	rate("p50 latency, 1 client", "rr/1", func(r Result) float64 { return r.P50us }, 0, true)
	rate("p99 latency, 1 client", "rr/1", func(r Result) float64 { return r.P99us }, 0, true)
	for _, k := range []struct{ key, label string }{
		{"hs-ecdsa", "CPU per full handshake, ECDSA P-256"},
		{"hs-rsa", "CPU per full handshake, RSA 2048"},
		{"hs-resume", "CPU per resumed handshake"},
		{"rr/1", "CPU per request, 1 client"},
	} {
		var parts []string
		for _, o := range tlsOthers {
			if s, ok := t.cpuRatio(pier, o, k.key); ok {
				parts = append(parts, fmt.Sprintf("pier-tls/%s %s", o, s))
			}
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("%s: %s (lower is better)", k.label, strings.Join(parts, ", ")))
		}
	}
	out = append(out, t.tlsIdle(pier))
	return out
}

// tlsTarget holds pier-tls's value of k to target × HAProxy's.
func (t *table) tlsTarget(pier map[string]Result, k string, v func(Result) float64, target float64) string {
	want := fmt.Sprintf("target (≥ %.2f × %s)", target, tlsPeer)
	p, ok := usable(pier, k)
	if !ok {
		return want + " MISSED: pier-tls not measured"
	}
	h, ok := usable(t.byKey[tlsPeer], k)
	if !ok || v(h) == 0 {
		return want + " not checked: no " + tlsPeer + " result"
	}
	return want + " " + verdict(v(p) >= target*v(h))
}

// tlsIdle holds an idle TLS session of pier-tls to tlsIdleTarget times an
// idle plain session of pier, from the same run.
func (t *table) tlsIdle(pier map[string]Result) string {
	want := fmt.Sprintf("target (≤ %.0f × pier's plain session)", tlsIdleTarget)
	pi, ok := usable(pier, "idle")
	if !ok {
		return "idle KB/session: " + want + " MISSED: pier-tls not measured"
	}
	line := fmt.Sprintf("idle KB/session: pier-tls %.1f", pi.KBPerConn)
	if h, ok := usable(t.byKey[tlsPeer], "idle"); ok {
		line += fmt.Sprintf(", %s %.1f", tlsPeer, h.KBPerConn)
	}
	plain, ok := usable(t.byKey[tlsPlain], "idle")
	if !ok || plain.KBPerConn <= 0 {
		return line + ", pier (plain) not measured: " + want + " not checked"
	}
	return fmt.Sprintf("%s, pier (plain) %.1f: %.2f × plain; %s %s",
		line, plain.KBPerConn, pi.KBPerConn/plain.KBPerConn, want, verdict(pi.KBPerConn <= tlsIdleTarget*plain.KBPerConn))
}
