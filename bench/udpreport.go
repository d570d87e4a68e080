package bench

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The UDP table (bench/udp): pier forwarding datagrams next to nginx's
// stream module, socat and no proxy at all (direct), each in front of the
// same Go UDP echo.
const (
	udpPier = "pier"
	udpPeer = "nginx" // issue 15's targets are set against it
)

// udpOthers are the columns pier is compared with, in the ratio lines.
var udpOthers = []string{"nginx", "socat", "direct"}

// UDPReport writes the results of a bench/udp run: one markdown table, a
// column per entry of columns, then the notes and pier's ratios to the
// others with issue 15's targets, each marked met or MISSED: at least
// nginx's datagrams/s on every rate row and its queries/s, at most its p99,
// and no datagram lost at the paced rate.
func UDPReport(w io.Writer, results []Result, columns []string) error {
	t := newTable(results)
	p := &printer{w: w}
	p.printf("| | %s |\n", strings.Join(columns, " | "))
	p.printf("|---|%s\n", strings.Repeat("---:|", len(columns)))
	for _, row := range t.udpRows() {
		cells := make([]string, len(columns))
		for i, col := range columns {
			cells[i] = t.cell(col, row)
		}
		p.printf("| %s | %s |\n", row.label, strings.Join(cells, " | "))
	}
	if notes := t.udpNotes(columns); len(notes) > 0 {
		p.printf("\nNotes:\n")
		for _, n := range notes {
			p.printf("- %s\n", n)
		}
	}
	p.printf("\nRatios (pier / other) and targets:\n")
	for _, line := range t.udpRatios() {
		p.printf("- %s\n", line)
	}
	return p.err
}

// udpRateKeys returns the keys of the datagrams/s rows: one flow before
// many, small datagrams before large.
func (t *table) udpRateKeys() []string {
	var keys []string
	for k, r := range t.params {
		if r.Test == "udp" {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		ra, rb := t.params[a], t.params[b]
		return cmp.Or(cmp.Compare(ra.Flows, rb.Flows), cmp.Compare(ra.Size, rb.Size))
	})
	return keys
}

// udpRRKeys returns the keys of the query rows, by client count.
func (t *table) udpRRKeys() []string {
	var keys []string
	for k, r := range t.params {
		if r.Test == "udprr" {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(t.params[a].Workers, t.params[b].Workers) })
	return keys
}

func flows(n int) string {
	if n == 1 {
		return "1 flow"
	}
	return fmt.Sprintf("%d flows", n)
}

// lostOf shows what became of a load's datagrams: "0 of 1234", or with
// the share lost.
func lostOf(r Result) string {
	if r.Lost == 0 {
		return fmt.Sprintf("0 of %d", r.Sent)
	}
	return fmt.Sprintf("%d of %d (%.2f%%)", r.Lost, r.Sent, 100*float64(r.Lost)/float64(max(r.Sent, 1)))
}

// withWrong adds the count of datagrams that came back wrong to a cell
// that has any.
func withWrong(show func(Result) string) func(Result) string {
	return func(r Result) string {
		if r.Wrong > 0 {
			return fmt.Sprintf("%s (%d wrong)", show(r), r.Wrong)
		}
		return show(r)
	}
}

func (t *table) udpRows() []row {
	var rows []row
	rate := withWrong(func(r Result) string { return num(r.PerSec) })
	for _, k := range t.udpRateKeys() {
		p := t.params[k]
		what := fmt.Sprintf("%d B, %s", p.Size, flows(p.Flows))
		rows = append(rows,
			row{label: fmt.Sprintf("datagrams/s, %s (window %d, %gs)", what, p.Window, p.Seconds), key: k, show: rate},
			row{label: "lost of sent, " + what, key: k, show: lostOf},
			row{label: "CPU µs/datagram, " + what, key: k, show: cpuCost},
		)
	}
	for _, k := range t.udpRRKeys() {
		p := t.params[k]
		rows = append(rows,
			row{label: fmt.Sprintf("queries/s, a socket each, %s (%d B, %gs)", clients(p.Workers), p.Size, p.Seconds), key: k,
				show: withWrong(withErrors(func(r Result) string { return num(r.PerSec) }))},
			row{label: "p50 / p99 µs, " + clients(p.Workers), key: k, show: func(r Result) string { return num(r.P50us) + " / " + num(r.P99us) }},
			row{label: "unanswered queries, " + clients(p.Workers), key: k, show: lostOf},
			row{label: "CPU µs/query, " + clients(p.Workers), key: k, show: cpuCost},
		)
	}
	if p, ok := t.params["udploss"]; ok {
		what := fmt.Sprintf("paced %.0f/s, %d B, %s", p.Pace, p.Size, flows(p.Flows))
		rows = append(rows,
			row{label: fmt.Sprintf("lost of sent, %s (%gs)", what, p.Seconds), key: "udploss", show: withWrong(lostOf)},
			row{label: "CPU µs/datagram, " + what, key: "udploss", show: cpuCost},
		)
	}
	idle := "idle KB/flow"
	if n := t.params["udpidle"].Conns; n > 0 {
		idle += fmt.Sprintf(" (%d flows)", n)
	}
	rows = append(rows,
		row{label: idle, key: "udpidle", show: func(r Result) string { return fmt.Sprintf("%.1f", r.KBPerConn) }},
		row{label: "idle fds/flow", key: "udpidle", show: func(r Result) string { return fmt.Sprintf("%.2f", r.FDPerConn) }},
	)
	return rows
}

// udpNotes are the table's notes (errors, skipped columns, CPU
// resolution) in the words of datagrams, and the datagrams that came back
// wrong.
func (t *table) udpNotes(columns []string) []string {
	var out []string
	for _, n := range t.notes(columns) {
		if strings.HasPrefix(n, "CPU µs rows:") {
			n = fmt.Sprintf("CPU µs rows: utime+stime of the proxy and its child processes (/proc/PID/stat), read right before and after each round (its drain included),"+
				" over the datagrams or queries echoed; /proc counts in ticks of %s (CLK_TCK %d), so each round's reading is within 2 ticks per process.",
				tickLength(t.clkTck()), t.clkTck())
		}
		out = append(out, n)
	}
	for _, col := range columns {
		keys := make([]string, 0, len(t.byKey[col]))
		for k := range t.byKey[col] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if r := t.byKey[col][k]; r.Wrong > 0 {
				out = append(out, fmt.Sprintf("%s %s: %d datagrams came back changed, to another flow, or more often than sent", col, k, r.Wrong))
			}
		}
	}
	return out
}

// udpRatios compares pier with every other column, a line per
// measurement, and holds it to issue 15's targets against nginx.
func (t *table) udpRatios() []string {
	pier, ok := t.byKey[udpPier]
	if !ok || len(pier) == 0 {
		why := "no pier results"
		if _, failed := t.failed[udpPier]; failed {
			why += " (pier: error, see notes)"
		}
		return []string{why + ": no ratios; every target MISSED"}
	}
	var out []string
	line := func(label, k string, v func(Result) float64, lowerBetter bool, target string) {
		var parts []string
		for _, o := range udpOthers {
			if s, ok := t.ratio(pier, o, k, v); ok {
				parts = append(parts, fmt.Sprintf("pier/%s %s", o, s))
			}
		}
		l := label + ": "
		if len(parts) == 0 {
			l += "no ratio"
		} else {
			l += strings.Join(parts, ", ")
		}
		if lowerBetter {
			l += " (lower is better)"
		} else {
			l += " (higher is better)"
		}
		if target != "" {
			l += "; " + target
		}
		out = append(out, l)
	}
	perSec := func(r Result) float64 { return r.PerSec }
	p99 := func(r Result) float64 { return r.P99us }
	for _, k := range t.udpRateKeys() {
		p := t.params[k]
		line(fmt.Sprintf("datagrams/s, %d B, %s", p.Size, flows(p.Flows)), k, perSec, false, t.udpTarget(pier, k, perSec, false))
	}
	for _, k := range t.udpRRKeys() {
		n := clients(t.params[k].Workers)
		line("queries/s, "+n, k, perSec, false, t.udpTarget(pier, k, perSec, false))
		line("p50 latency, "+n, k, func(r Result) float64 { return r.P50us }, true, "")
		line("p99 latency, "+n, k, p99, true, t.udpTarget(pier, k, p99, true))
	}
	cpuKeys := append(t.udpRateKeys(), t.udpRRKeys()...)
	for _, k := range cpuKeys {
		var parts []string
		for _, o := range udpOthers {
			if s, ok := t.cpuRatio(pier, o, k); ok {
				parts = append(parts, fmt.Sprintf("pier/%s %s", o, s))
			}
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("CPU per %s: %s (lower is better)", udpWhat(t.params[k]), strings.Join(parts, ", ")))
		}
	}
	out = append(out, t.udpLoss(pier))
	if pi, ok := usable(pier, "udpidle"); ok {
		l := fmt.Sprintf("idle flow: pier %.1f KB, %.2f fds", pi.KBPerConn, pi.FDPerConn)
		for _, o := range udpOthers {
			if r, ok := usable(t.byKey[o], "udpidle"); ok {
				l += fmt.Sprintf("; %s %.1f KB, %.2f fds", o, r.KBPerConn, r.FDPerConn)
			}
		}
		out = append(out, l+" (no target: stated)")
	}
	return out
}

// udpWhat names a row's unit of work for the CPU lines.
func udpWhat(r Result) string {
	if r.Test == "udprr" {
		return "query, " + clients(r.Workers)
	}
	return fmt.Sprintf("datagram, %d B, %s", r.Size, flows(r.Flows))
}

// udpTarget holds pier's value of k to nginx's: at least it (rates) or at
// most it (latency).
func (t *table) udpTarget(pier map[string]Result, k string, v func(Result) float64, lowerBetter bool) string {
	want := "target (≥ " + udpPeer + ")"
	if lowerBetter {
		want = "target (≤ " + udpPeer + ")"
	}
	p, ok := usable(pier, k)
	if !ok {
		return want + " MISSED: pier not measured"
	}
	n, ok := usable(t.byKey[udpPeer], k)
	if !ok || v(n) == 0 {
		return want + " not checked: no " + udpPeer + " result"
	}
	if lowerBetter {
		return want + " " + verdict(v(p) <= v(n))
	}
	return want + " " + verdict(v(p) >= v(n))
}

// udpLoss holds pier to losing nothing at the paced rate, and says what
// the others lost.
func (t *table) udpLoss(pier map[string]Result) string {
	const want = "target (0 lost) "
	p, ok := usable(pier, "udploss")
	if !ok {
		return "loss at a paced rate: " + want + "MISSED: pier not measured"
	}
	l := fmt.Sprintf("loss at %.0f/s paced: pier %s", p.Pace, lostOf(p))
	for _, o := range udpOthers {
		if r, ok := usable(t.byKey[o], "udploss"); ok {
			l += fmt.Sprintf(", %s %s", o, lostOf(r))
		}
	}
	return l + "; " + want + verdict(p.Lost == 0 && p.Wrong == 0 && p.Sent > 0)
}

// UDPPace picks the paced rate of bench/udp's loss load: share of what
// column carried on test key k (nginx, 1000 flows); when column has no
// result there, share of the least any column carried, so the rate is one
// every measured proxy carried. It fails when no column has a result.
func UDPPace(results []Result, column, k string, share float64) (float64, string, error) {
	t := newTable(results)
	if r, ok := usable(t.byKey[column], k); ok && r.PerSec > 0 {
		return share * r.PerSec, column, nil
	}
	least, from := 0.0, ""
	for col, m := range t.byKey {
		if r, ok := usable(m, k); ok && r.PerSec > 0 && (from == "" || r.PerSec < least) {
			least, from = r.PerSec, col
		}
	}
	if from == "" {
		return 0, "", fmt.Errorf("bench: no column has a result for %s", k)
	}
	return share * least, from, nil
}
