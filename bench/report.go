package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Report writes the results of one run as one markdown table, a column per
// entry of columns in that order and a row per measurement, then the notes
// (errors, skipped columns) and the ratios of pier to the other proxies.
func Report(w io.Writer, results []Result, columns []string) error {
	t := newTable(results)
	p := &printer{w: w}
	p.printf("| | %s |\n", strings.Join(columns, " | "))
	p.printf("|---|%s\n", strings.Repeat("---:|", len(columns)))
	for _, row := range t.rows() {
		cells := make([]string, len(columns))
		for i, col := range columns {
			cells[i] = t.cell(col, row)
		}
		p.printf("| %s | %s |\n", row.label, strings.Join(cells, " | "))
	}
	if notes := t.notes(columns); len(notes) > 0 {
		p.printf("\nNotes:\n")
		for _, n := range notes {
			p.printf("- %s\n", n)
		}
	}
	p.printf("\nRatios (pier / other):\n")
	for _, line := range t.ratios() {
		p.printf("- %s\n", line)
	}
	t.syscallTable(p, columns)
	return p.err
}

// printer writes formatted text and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// table indexes results by column and row key.
type table struct {
	byKey   map[string]map[string]Result // column → key → result
	skipped map[string]string            // column → why it was not run
	failed  map[string]string            // column → why it could not run (did not build or start)
	params  map[string]Result            // key → the first result for it, for its label
	rrKeys  []int                        // client counts of the rr rows, ascending
}

// key names a row group: the test, and for rr the number of clients.
func key(r Result) string {
	switch r.Test {
	case "rr":
		return fmt.Sprintf("rr/%d", r.Workers)
	case "udprr":
		return fmt.Sprintf("udprr/%d", r.Workers)
	case "udp":
		return fmt.Sprintf("udp/%d/%d", r.Size, r.Flows)
	}
	return r.Test
}

func newTable(results []Result) *table {
	t := &table{
		byKey:   make(map[string]map[string]Result),
		skipped: make(map[string]string),
		failed:  make(map[string]string),
		params:  make(map[string]Result),
	}
	for _, r := range results {
		if r.Test == "" || r.Test == "*" {
			if r.Error != "" {
				t.failed[r.Column] = r.Error
			} else {
				t.skipped[r.Column] = r.Skipped
			}
			continue
		}
		if t.byKey[r.Column] == nil {
			t.byKey[r.Column] = make(map[string]Result)
		}
		k := key(r)
		t.byKey[r.Column][k] = r
		// Label a row with the parameters of a result that ran: a
		// skipped or failed one may not carry them.
		if p, ok := t.params[k]; !ok || p.Error != "" || p.Skipped != "" {
			t.params[k] = r
		}
		if r.Test == "rr" && !slices.Contains(t.rrKeys, r.Workers) {
			t.rrKeys = append(t.rrKeys, r.Workers)
		}
	}
	slices.Sort(t.rrKeys)
	return t
}

// row is one line of the table: a label and how to show a result in it.
type row struct {
	label string
	key   string
	show  func(Result) string
}

func (t *table) rows() []row {
	var rows []row
	b := t.params["bulk"]
	rows = append(rows, row{
		label: fmt.Sprintf("bulk MB/s (%d streams × %d MiB each way)", b.Streams, b.MiB),
		key:   "bulk",
		show:  func(r Result) string { return num(r.MBps) },
	})
	c := t.params["cps"]
	rows = append(rows, row{
		label: fmt.Sprintf("connections/s (%d workers, %gs)", c.Workers, c.Seconds),
		key:   "cps",
		show:  withErrors(func(r Result) string { return num(r.PerSec) }),
	}, row{
		label: "CPU µs/conn",
		key:   "cps",
		show:  cpuCost,
	})
	for _, n := range t.rrKeys {
		k := fmt.Sprintf("rr/%d", n)
		p := t.params[k]
		rows = append(rows,
			row{
				label: fmt.Sprintf("req/s, %s (64 B, %gs)", clients(n), p.Seconds),
				key:   k,
				show:  withErrors(func(r Result) string { return num(r.PerSec) }),
			},
			row{
				label: fmt.Sprintf("p50 / p99 µs, %s", clients(n)),
				key:   k,
				show:  func(r Result) string { return num(r.P50us) + " / " + num(r.P99us) },
			},
			row{
				label: fmt.Sprintf("CPU µs/req, %s", clients(n)),
				key:   k,
				show:  cpuCost,
			})
	}
	idle := "idle KB/conn"
	if n := t.params["idle"].Conns; n > 0 {
		idle += fmt.Sprintf(" (%d conns)", n)
	}
	rows = append(rows,
		row{
			label: idle,
			key:   "idle",
			show:  func(r Result) string { return fmt.Sprintf("%.1f", r.KBPerConn) },
		},
		row{
			label: "idle fds/conn",
			key:   "idle",
			show:  func(r Result) string { return fmt.Sprintf("%.2f", r.FDPerConn) },
		})
	return rows
}

func clients(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}

// cpuCost shows a result's CPU cost per operation: "n/a" when no process
// was measured (direct), "error" when its CPU time could not be read.
func cpuCost(r Result) string {
	switch {
	case r.CPUError != "":
		return "error"
	case !cpuMeasured(r):
		return "n/a"
	}
	return num(r.CPUusPerOp)
}

// cpuMeasured reports whether r carries a CPU cost per operation.
func cpuMeasured(r Result) bool {
	return r.CPUError == "" && r.CPUWindows > 0 && r.ClkTck > 0 && r.Ops > 0
}

// withErrors adds the count of failed operations to a cell that has any.
func withErrors(show func(Result) string) func(Result) string {
	return func(r Result) string {
		if r.Errors > 0 {
			return fmt.Sprintf("%s (%d err)", show(r), r.Errors)
		}
		return show(r)
	}
}

// num formats a measurement: whole numbers from 100 up, one decimal below.
func num(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func (t *table) cell(col string, rw row) string {
	r, ok := t.byKey[col][rw.key]
	if !ok {
		if _, failed := t.failed[col]; failed {
			return "error"
		}
		if reason, skipped := t.skipped[col]; skipped {
			return skipWord(reason)
		}
	}
	switch {
	case !ok:
		return "–"
	case r.Skipped != "":
		return skipWord(r.Skipped)
	case r.Error != "":
		return "error"
	}
	return rw.show(r)
}

// skipWord is what a cell says for a test that was not run: "n/a" when it
// does not apply (idle cost of no proxy), "skipped" otherwise.
func skipWord(reason string) string {
	if strings.HasPrefix(reason, "n/a") {
		return "n/a"
	}
	return "skipped"
}

// notes lists why cells say error or skipped, and the first failure behind
// any error counts, in column order.
func (t *table) notes(columns []string) []string {
	var out []string
	for _, col := range columns {
		if reason, ok := t.failed[col]; ok {
			out = append(out, fmt.Sprintf("%s: error: %s", col, clip(reason)))
		}
		if reason, ok := t.skipped[col]; ok {
			out = append(out, fmt.Sprintf("%s: %s", col, clip(reason)))
		}
		keys := make([]string, 0, len(t.byKey[col]))
		for k := range t.byKey[col] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			r := t.byKey[col][k]
			switch {
			case r.Error != "":
				out = append(out, fmt.Sprintf("%s %s: error: %s", col, k, clip(r.Error)))
			case r.Errors > 0:
				out = append(out, fmt.Sprintf("%s %s: %d failed, first: %s", col, k, r.Errors, clip(r.FirstError)))
			case r.Skipped != "" && skipWord(r.Skipped) != "n/a":
				out = append(out, fmt.Sprintf("%s %s: skipped: %s", col, k, clip(r.Skipped)))
			}
			switch {
			case r.Error != "":
			case r.CPUError != "":
				out = append(out, fmt.Sprintf("%s %s: CPU: error: %s", col, k, clip(r.CPUError)))
			case cpuMeasured(r) && cpuUncertain(r) > cpuUncertainNote:
				out = append(out, fmt.Sprintf("%s %s: CPU within ±%.0f%% only (%d ticks of 1/%d s, to within 2 ticks per process per round): a longer BENCH_SECONDS narrows it",
					col, k, 100*cpuUncertain(r), r.CPUTicks, r.ClkTck))
			}
		}
	}
	if hz := t.clkTck(); hz > 0 {
		out = append(out, fmt.Sprintf("CPU µs rows: utime+stime of the proxy and its child processes (/proc/PID/stat), read right before and after each round,"+
			" over the connections or requests completed; /proc counts in ticks of %s (CLK_TCK %d), so each round's reading is within 2 ticks per process.",
			tickLength(hz), hz))
	}
	return out
}

// cpuUncertainNote is the share of a CPU total its tick resolution may be
// off by above which the notes say so.
const cpuUncertainNote = 0.05

// cpuUncertain is the most a CPU total may be off by, as a share of it:
// 2 ticks per process per window.
func cpuUncertain(r Result) float64 {
	return 2 * float64(r.CPUWindows) / float64(max(r.CPUTicks, 1))
}

// clkTck returns the tick rate of the CPU times measured, 0 if none was.
func (t *table) clkTck() int64 {
	for _, byKey := range t.byKey {
		for _, r := range byKey {
			if cpuMeasured(r) {
				return r.ClkTck
			}
		}
	}
	return 0
}

// tickLength says how long one clock tick is: "10 ms" at 100 Hz.
func tickLength(hz int64) string {
	if 1000%hz == 0 {
		return fmt.Sprintf("%d ms", 1000/hz)
	}
	return fmt.Sprintf("%.2f ms", 1000/float64(hz))
}

func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// ratios says how pier compares: throughput and rates against gocopy,
// pier-ref (another pier build, when the run has one), pier-admin (pier
// with its admin server on and scraped), haproxy and nginx
// (above 1 pier is faster), latency and CPU per connection and per request
// against pier-ref, haproxy and nginx (below 1 pier is quicker, or
// cheaper), what pier's access log costs (pier-log against
// pier), and the idle cost against pier's targets: fewer KB than HAProxy,
// no descriptor beyond the two sockets.
func (t *table) ratios() []string {
	pier, ok := t.byKey["pier"]
	if !ok || len(pier) == 0 {
		return []string{"no pier results: no ratios (see notes)"}
	}
	others := []string{"gocopy", "pier-ref", "pier-admin", "haproxy", "nginx"}
	peers := others[1:] // for latency and CPU: proxies that do the same work
	var out []string
	rate := func(label, k string, v func(Result) float64) {
		var parts []string
		for _, o := range others {
			if s, ok := t.ratio(pier, o, k, v); ok {
				parts = append(parts, fmt.Sprintf("pier/%s %s", o, s))
			}
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("%s: %s (higher is better)", label, strings.Join(parts, ", ")))
		}
	}
	rate("bulk throughput", "bulk", func(r Result) float64 { return r.MBps })
	rate("connections/s", "cps", func(r Result) float64 { return r.PerSec })
	for _, n := range t.rrKeys {
		rate("req/s, "+clients(n), fmt.Sprintf("rr/%d", n), func(r Result) float64 { return r.PerSec })
	}
	for _, n := range t.rrKeys {
		k := fmt.Sprintf("rr/%d", n)
		var parts []string
		for _, o := range peers {
			p50, ok50 := t.ratio(pier, o, k, func(r Result) float64 { return r.P50us })
			p99, ok99 := t.ratio(pier, o, k, func(r Result) float64 { return r.P99us })
			if ok50 && ok99 {
				parts = append(parts, fmt.Sprintf("pier/%s %s / %s", o, p50, p99))
			}
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("p50 / p99 latency, %s: %s (lower is better)", clients(n), strings.Join(parts, ", ")))
		}
	}
	cpu := func(label, k string) {
		var parts []string
		for _, o := range peers {
			if s, ok := t.cpuRatio(pier, o, k); ok {
				parts = append(parts, fmt.Sprintf("pier/%s %s", o, s))
			}
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("%s: %s (lower is better)", label, strings.Join(parts, ", ")))
		}
	}
	cpu("CPU per connection", "cps")
	for _, n := range t.rrKeys {
		cpu("CPU per request, "+clients(n), fmt.Sprintf("rr/%d", n))
	}
	if line, ok := t.syscallRatio(pier); ok {
		out = append(out, line)
	}
	if line, ok := t.accessLog(pier); ok {
		out = append(out, line)
	}
	out = append(out, t.edge(pier)...)
	if pi, ok := usable(pier, "idle"); ok {
		line := fmt.Sprintf("idle KB/conn: pier %.1f", pi.KBPerConn)
		if h, ok := usable(t.byKey["haproxy"], "idle"); ok {
			line += fmt.Sprintf(", haproxy %.1f: target (below haproxy) %s", h.KBPerConn, verdict(pi.KBPerConn < h.KBPerConn))
		} else {
			line += ": no haproxy result to compare with"
		}
		out = append(out, line)
		// A few pooled pipes or timers over thousands of connections round
		// to nothing; a descriptor per connection shows as 3.00.
		out = append(out, fmt.Sprintf("idle fds/conn: pier %.2f: target (2, its two sockets) %s", pi.FDPerConn, verdict(pi.FDPerConn <= 2.02)))
	}
	return out
}

// ratio formats pier's value of k over other's, if both were measured.
func (t *table) ratio(pier map[string]Result, other, k string, v func(Result) float64) (string, bool) {
	p, ok := usable(pier, k)
	if !ok {
		return "", false
	}
	o, ok := usable(t.byKey[other], k)
	if !ok || v(o) == 0 {
		return "", false
	}
	return fmt.Sprintf("%.2f", v(p)/v(o)), true
}

// cpuRatio formats pier's CPU per operation of k over other's, if both
// were measured.
func (t *table) cpuRatio(pier map[string]Result, other, k string) (string, bool) {
	p, ok := usable(pier, k)
	if !ok || !cpuMeasured(p) {
		return "", false
	}
	o, ok := usable(t.byKey[other], k)
	if !ok || !cpuMeasured(o) || o.CPUusPerOp == 0 {
		return "", false
	}
	return fmt.Sprintf("%.2f", p.CPUusPerOp/o.CPUusPerOp), true
}

// accessLog compares pier-log, pier with its access log on, with pier: the
// rate it keeps and the CPU each session's record costs.
func (t *table) accessLog(pier map[string]Result) (string, bool) {
	p, ok := usable(pier, "cps")
	if !ok || p.PerSec == 0 {
		return "", false
	}
	l, ok := usable(t.byKey["pier-log"], "cps")
	if !ok {
		return "", false
	}
	line := fmt.Sprintf("access log: pier-log/pier connections/s %.2f", l.PerSec/p.PerSec)
	if cpuMeasured(p) && cpuMeasured(l) {
		line += fmt.Sprintf(", CPU per connection %+.1f µs (the access log's cost per session)", l.CPUusPerOp-p.CPUusPerOp)
	}
	return line, true
}

// edgeColumns are pier with issue 13's edge features on, each held to
// plain pier: connections/s and 1-client req/s at least edgeTarget of it.
// pier-sni's loads send a ClientHello first, which plain pier moves too:
// when pier-hello (plain pier given the same loads) was measured, it is
// the baseline, so that the ratio prices routing by SNI, not the hello's
// bytes.
var edgeColumns = []struct{ col, what, base string }{
	{"pier-acl", "an ACL of 1000 CIDRs", ""},
	{"pier-limits", "per-client limits and accept rates", ""},
	{"pier-sni", "a route chosen by SNI", "pier-hello"},
}

const edgeTarget = 0.95

// edge compares each edge column with plain pier, one line per column:
// its rates as a fraction of pier's (higher is better) and the target.
func (t *table) edge(pier map[string]Result) []string {
	var out []string
	for _, e := range edgeColumns {
		m, ok := t.byKey[e.col]
		_, failed := t.failed[e.col]
		if !ok && !failed {
			continue
		}
		base, baseName := pier, "pier"
		if b, ok := t.byKey[e.base]; ok {
			base, baseName = b, e.base
		}
		var parts, missed []string
		met := true
		add := func(label, k string, held bool) {
			p, ok := usable(base, k)
			c, cok := usable(m, k)
			if !ok || !cok || p.PerSec == 0 {
				if held {
					met, missed = false, append(missed, label+" not measured")
				}
				return
			}
			f := c.PerSec / p.PerSec
			parts = append(parts, fmt.Sprintf("%s %.2f", label, f))
			if held && f < edgeTarget {
				met, missed = false, append(missed, label)
			}
		}
		add("connections/s", "cps", true)
		for _, n := range t.rrKeys {
			add("req/s "+clients(n), fmt.Sprintf("rr/%d", n), n == 1)
		}
		if failed {
			parts = []string{"no results"}
		}
		line := fmt.Sprintf("%s (%s)/%s: %s (higher is better); target (≥ %.2f for connections/s and req/s 1 client) %s",
			e.col, e.what, baseName, strings.Join(parts, ", "), edgeTarget, verdict(met))
		if !met {
			line += ": " + strings.Join(missed, ", ")
		}
		out = append(out, line)
	}
	return out
}

// usable returns the result for k if it was measured without error.
func usable(m map[string]Result, k string) (Result, bool) {
	r, ok := m[k]
	return r, ok && r.Error == "" && r.Skipped == ""
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

// minSyscallsPerReq is the fewest calls per request, in some column, for
// which a system call gets a row of its own in the syscall table; rarer
// ones (a connection's setup over thousands of requests) are summed in
// "other".
const minSyscallsPerReq = 0.01

// syscallTable prints, after the ratios, the system calls per request of
// every column with a "syscalls" result, by name: the calls strace counted
// over its fixed load divided by the requests completed, with the calls
// that failed (EAGAIN, mostly) in parentheses.
func (t *table) syscallTable(p *printer, columns []string) {
	var cols []string
	var runs []Result
	for _, col := range columns {
		if r, ok := usable(t.byKey[col], "syscalls"); ok && r.Ops > 0 && len(r.Syscalls) > 0 {
			cols = append(cols, col)
			runs = append(runs, r)
		}
	}
	if len(cols) == 0 {
		return
	}
	most := make(map[string]float64) // name → the most calls per request in any column
	for _, r := range runs {
		for name, c := range r.Syscalls {
			most[name] = max(most[name], perOp(c.Calls, r))
		}
	}
	var names []string
	for name, v := range most {
		if v >= minSyscallsPerReq {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if most[a] != most[b] {
			if most[a] > most[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	p.printf("\nSystem calls per request, %s (strace -c -f on the proxy over a fixed load of %d requests, after the timed loads; failed calls, mostly EAGAIN, in parentheses):\n\n",
		clients(runs[0].Workers), runs[0].Ops)
	p.printf("| syscall | %s |\n", strings.Join(cols, " | "))
	p.printf("|---|%s\n", strings.Repeat("---:|", len(cols)))
	row := func(label string, count func(Result) SyscallCount) {
		cells := make([]string, len(runs))
		for i, r := range runs {
			c := count(r)
			switch {
			case c.Calls == 0:
				cells[i] = "–"
			case c.Errors > 0:
				cells[i] = fmt.Sprintf("%s (%s)", perReq(c.Calls, r), perReq(c.Errors, r))
			default:
				cells[i] = perReq(c.Calls, r)
			}
		}
		p.printf("| %s | %s |\n", label, strings.Join(cells, " | "))
	}
	for _, name := range names {
		row(name, func(r Result) SyscallCount { return r.Syscalls[name] })
	}
	if len(names) < len(most) {
		row("other", func(r Result) SyscallCount {
			var sum SyscallCount
			for name, c := range r.Syscalls {
				if most[name] < minSyscallsPerReq {
					sum.Calls += c.Calls
					sum.Errors += c.Errors
				}
			}
			return sum
		})
	}
	row("total", syscallTotal)
}

// syscallTotal sums every system call of a "syscalls" result.
func syscallTotal(r Result) SyscallCount {
	var sum SyscallCount
	for _, c := range r.Syscalls {
		sum.Calls += c.Calls
		sum.Errors += c.Errors
	}
	return sum
}

func perOp(n int64, r Result) float64 { return float64(n) / float64(r.Ops) }

// perReq formats calls per request to two decimals, and a few calls over
// thousands of requests as "<0.01" rather than a misleading 0.00.
func perReq(n int64, r Result) string {
	if v := perOp(n, r); v >= 0.005 || n == 0 {
		return fmt.Sprintf("%.2f", v)
	}
	return "<0.01"
}

// syscallRatio compares pier's system calls per request with HAProxy's and
// nginx's, where the syscall pass ran on both.
func (t *table) syscallRatio(pier map[string]Result) (string, bool) {
	p, ok := usable(pier, "syscalls")
	if !ok || p.Ops == 0 || len(p.Syscalls) == 0 {
		return "", false
	}
	var parts []string
	for _, o := range []string{"haproxy", "nginx"} {
		r, ok := usable(t.byKey[o], "syscalls")
		if !ok || r.Ops == 0 || syscallTotal(r).Calls == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("pier/%s %.2f", o, perOp(syscallTotal(p).Calls, p)/perOp(syscallTotal(r).Calls, r)))
	}
	if len(parts) == 0 {
		return "", false
	}
	return fmt.Sprintf("system calls per request, %s: %s (lower is better)", clients(p.Workers), strings.Join(parts, ", ")), true
}
