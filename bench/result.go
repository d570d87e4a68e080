// Package bench measures pier side by side with a direct connection, a plain
// Go forwarder, HAProxy and nginx. It is the library behind the pierbench
// command and the bench/run script; nothing in pier imports it.
//
// It holds the two servers every column shares, so that only the proxy in
// the middle differs:
//
//	Echo    the upstream: sends back every byte, half-closes after the client
//	GoCopy  the baseline proxy: accept, dial, io.Copy each way, CloseWrite
//
// and the four loads, each returning one Result:
//
//	Bulk  parallel streams of pseudorandom bytes, every byte checked (MB/s)
//	CPS   connect, 64 bytes, half-close, read to EOF, close (connections/s)
//	RR    64-byte request, 64-byte reply on kept connections (req/s, p50, p99)
//	Idle  N open connections: what the proxy process holds for them (KB, fds)
//
// CPS and RR also read the CPU time of a target's process tree (Target.PID)
// around every round, for its CPU cost per connection or request.
// ParseStraceSummary and SyscallResult turn `strace -c -f`'s summary over
// a fixed-count RR load into system calls per request; Hog is the CPU hog
// of bench/run -busy.
//
// Report turns the Results of one run into the markdown table and the
// pier/others ratios. All traffic goes to the addresses given, which
// bench/run keeps on 127.0.0.1.
package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Result is one measurement of one column, written as one JSON line.
// Only the fields of its Test are set.
type Result struct {
	Column  string `json:"column"`            // direct, pier, gocopy, haproxy, nginx
	Test    string `json:"test"`              // bulk, cps, rr, idle, syscalls; TLS: hs-ecdsa, hs-rsa, hs-resume; UDP: udp, udploss, udprr, udpidle
	Error   string `json:"error,omitempty"`   // set when the test failed: the cell reads "error"
	Skipped string `json:"skipped,omitempty"` // set when the column was not run, with the reason

	// Parameters, so the table can say what it measured.
	Streams int     `json:"streams,omitempty"`   // bulk: parallel connections
	MiB     int64   `json:"mib,omitempty"`       // bulk: MiB each way per stream
	Workers int     `json:"workers,omitempty"`   // cps: concurrent workers; rr: clients
	Seconds float64 `json:"seconds,omitempty"`   // cps, rr: planned duration
	Conns   int     `json:"conns,omitempty"`     // idle: connections held open
	Elapsed float64 `json:"elapsed_s,omitempty"` // measured wall time of the load

	// Measurements.
	MBps       float64 `json:"mb_per_s,omitempty"`    // bulk: 10^6 bytes each way per second
	Ops        int64   `json:"ops,omitempty"`         // cps: connections, rr: requests completed
	Errors     int64   `json:"errors"`                // cps, rr: failed operations
	FirstError string  `json:"first_error,omitempty"` // cps, rr: the first failure, as a sample
	PerSec     float64 `json:"per_s,omitempty"`       // cps: connections/s; rr: requests/s
	P50us      float64 `json:"p50_us,omitempty"`      // rr: median latency, µs
	P99us      float64 `json:"p99_us,omitempty"`      // rr: 99th percentile latency, µs
	Procs      int     `json:"procs,omitempty"`       // idle: processes summed (nginx: master and workers)
	RSSBefore  int64   `json:"rss_before_kb,omitempty"`
	RSSAfter   int64   `json:"rss_after_kb,omitempty"`
	FDBefore   int     `json:"fd_before,omitempty"`
	FDAfter    int     `json:"fd_after,omitempty"`
	KBPerConn  float64 `json:"kb_per_conn,omitempty"` // idle: (RSSAfter-RSSBefore)/Conns, KiB
	FDPerConn  float64 `json:"fd_per_conn,omitempty"` // idle: (FDAfter-FDBefore)/Conns

	// UDP loads (bench/udp): the datagrams' size, the flows (client
	// sockets), the closed loop's window or the paced rate, and what came
	// of the datagrams sent: Ops received, Lost = Sent - Ops after a
	// drain, Wrong ones that came back changed or to another flow.
	Size   int     `json:"size,omitempty"`
	Flows  int     `json:"flows,omitempty"`
	Window int     `json:"window,omitempty"`
	Pace   float64 `json:"pace_per_s,omitempty"`
	Sent   int64   `json:"sent,omitempty"`
	Lost   int64   `json:"lost,omitempty"`
	Wrong  int64   `json:"wrong,omitempty"`
	Stalls int64   `json:"stalls,omitempty"` // closed loop: times a flow heard nothing for the loss timeout and sent afresh

	// TLS loads (bench/tls): what the first handshake negotiated, and for
	// resumed handshakes the full ones that were not counted in Ops.
	TLS        string `json:"tls,omitempty"`
	NotResumed int64  `json:"not_resumed,omitempty"`

	// CPU cost, cps and rr, of a target with a process (Target.PID): the
	// utime+stime of the process and its descendants over every round's
	// measured window. None of it is set for direct, which has no process.
	CPUTicks   int64   `json:"cpu_ticks,omitempty"`     // in 1/ClkTck s
	CPUWindows int     `json:"cpu_windows,omitempty"`   // processes × windows read: the total is exact to 2 ticks each
	ClkTck     int64   `json:"clk_tck,omitempty"`       // ticks per second of CPUTicks (sysconf CLK_TCK)
	CPUusPerOp float64 `json:"cpu_us_per_op,omitempty"` // CPU µs per connection (cps) or request (rr)
	CPUError   string  `json:"cpu_error,omitempty"`     // why CPU could not be read; the rates stand

	// Syscalls, test "syscalls": strace's count by name over a
	// fixed-count rr load of Workers clients that completed Ops requests.
	Syscalls map[string]SyscallCount `json:"syscalls,omitempty"`
}

// WriteJSON writes r as one line of JSON.
func (r Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// ReadResults reads the JSON lines WriteJSON wrote, skipping blank lines.
func ReadResults(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var res Result
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("bench: results line %d: %v", line, err)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}
