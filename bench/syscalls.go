package bench

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The syscall mix: bench/run attaches `strace -c -f` to a proxy's processes
// (every thread) for a fixed-count request/response load, after the timed
// loads, since strace stops the proxy at every system call, and turns the
// summary into a Result with Test "syscalls": the calls by name, which the
// report divides by the requests completed. It shows where a change moved
// the cost (a read and a write per event, or also futex, nanosleep and
// epoll_wait around them), not how fast anything ran.

// SyscallCount is one line of strace's summary: how often a system call
// was made, and how many of those calls failed (EAGAIN, mostly).
type SyscallCount struct {
	Calls  int64 `json:"calls"`
	Errors int64 `json:"errors,omitempty"`
}

// ParseStraceSummary reads the table `strace -c` prints when it detaches:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 30.26    0.000082          20         4         2 wait4
//	...
//	100.00    0.000271           0       363        56 total
//
// and returns the counts by name, without the total. It fails when there
// is no table (strace did not attach, or was killed before it printed).
func ParseStraceSummary(r io.Reader) (map[string]SyscallCount, error) {
	counts := make(map[string]SyscallCount)
	sc := bufio.NewScanner(r)
	header, total := false, false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 0 && f[0] == "%":
			header = true
			continue
		case !header || len(f) == 0 || strings.HasPrefix(f[0], "---"):
			continue
		}
		// % time, seconds, usecs/call, calls, [errors], syscall: the
		// errors column is blank for a call that never failed.
		if len(f) != 5 && len(f) != 6 {
			return nil, fmt.Errorf("bench: strace summary: unexpected line %q", sc.Text())
		}
		var c SyscallCount
		var err error
		if c.Calls, err = strconv.ParseInt(f[3], 10, 64); err != nil {
			return nil, fmt.Errorf("bench: strace summary: calls in %q: %w", sc.Text(), err)
		}
		if len(f) == 6 {
			if c.Errors, err = strconv.ParseInt(f[4], 10, 64); err != nil {
				return nil, fmt.Errorf("bench: strace summary: errors in %q: %w", sc.Text(), err)
			}
		}
		name := f[len(f)-1]
		if name == "total" {
			total = true
			continue
		}
		counts[name] = SyscallCount{Calls: counts[name].Calls + c.Calls, Errors: counts[name].Errors + c.Errors}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: strace summary: %w", err)
	}
	if !total {
		return nil, fmt.Errorf("bench: strace printed no summary (did it attach?)")
	}
	return counts, nil
}

// SyscallResult is the "syscalls" result of column: the strace summary
// over the fixed-count rr load whose result is rr.
func SyscallResult(column string, rr Result, strace io.Reader) Result {
	res := Result{Column: column, Test: "syscalls", Workers: rr.Workers, Ops: rr.Ops}
	switch {
	case rr.Error != "":
		res.Error = "the load under strace failed: " + rr.Error
		return res
	case rr.Ops == 0:
		res.Error = "the load under strace completed no request"
		return res
	}
	counts, err := ParseStraceSummary(strace)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Syscalls = counts
	return res
}
