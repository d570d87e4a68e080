package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// straceSample is strace 6.1's -c summary, as it writes it on detaching.
const straceSample = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.26    0.000082          20     32000           write
 25.83    0.000070           1     32000        50 read
  5.90    0.000016           2      8000           nanosleep
  2.95    0.000008           0      4000           epoll_pwait
  0.74    0.000002           1        40         8 futex
  0.00    0.000000           0        16           setsockopt
------ ----------- ----------- --------- --------- ----------------
100.00    0.000271           0     76056        58 total
`

// The summary is read by name, calls and failed calls, the errors column
// being blank for a call that never failed; the total line is not a
// system call; no table (strace never attached) is an error, not zeros.
func TestParseStraceSummary(t *testing.T) {
	got, err := ParseStraceSummary(strings.NewReader(straceSample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]SyscallCount{
		"write": {Calls: 32000}, "read": {Calls: 32000, Errors: 50}, "nanosleep": {Calls: 8000},
		"epoll_pwait": {Calls: 4000}, "futex": {Calls: 40, Errors: 8}, "setsockopt": {Calls: 16},
	}
	if len(got) != len(want) {
		t.Errorf("got %d system calls %v, want %d", len(got), got, len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %+v, want %+v", name, got[name], w)
		}
	}
	for _, bad := range []string{"", "strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n"} {
		if _, err := ParseStraceSummary(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseStraceSummary(%q) succeeded, want an error", bad)
		}
	}
}

// The syscall table gives each proxy's calls per request by name, most
// frequent first, failed calls in parentheses, rare calls summed in
// "other", and a total; the ratio line compares the totals. A failed load
// under strace is an error, not a table of zeros.
func TestReportShowsSyscallMix(t *testing.T) {
	pierCounts, err := ParseStraceSummary(strings.NewReader(straceSample))
	if err != nil {
		t.Fatal(err)
	}
	pier := SyscallResult("pier", Result{Column: "pier", Test: "rr", Workers: 16, Ops: 16000}, strings.NewReader(straceSample))
	if pier.Error != "" || pier.Ops != 16000 || len(pier.Syscalls) != len(pierCounts) {
		t.Fatalf("SyscallResult: %+v", pier)
	}
	haproxy := Result{Column: "haproxy", Test: "syscalls", Workers: 16, Ops: 16000, Syscalls: map[string]SyscallCount{
		"recvfrom": {Calls: 32000}, "sendto": {Calls: 32000}, "epoll_wait": {Calls: 4000},
	}}
	failed := SyscallResult("nginx", Result{Column: "nginx", Test: "rr", Error: "dial tcp: refused"}, strings.NewReader(straceSample))
	if !strings.Contains(failed.Error, "refused") || failed.Syscalls != nil {
		t.Errorf("SyscallResult of a failed load: %+v, want its error and no counts", failed)
	}
	results := []Result{
		{Column: "pier", Test: "rr", Workers: 16, Seconds: 3, PerSec: 60000, Ops: 180000},
		pier, haproxy, failed,
		{Column: "gocopy", Test: "syscalls", Skipped: "strace is not installed"},
	}
	var out bytes.Buffer
	if err := Report(&out, results, []string{"pier", "gocopy", "haproxy", "nginx"}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"System calls per request, 16 clients (strace -c -f on the proxy over a fixed load of 16000 requests",
		"| syscall | pier | haproxy |",
		"| read | 2.00 (<0.01) | – |",
		"| recvfrom | – | 2.00 |",
		"| nanosleep | 0.50 | – |",
		"| other | <0.01 (<0.01) | – |",
		"| total | 4.75 (<0.01) | 4.25 |",
		"system calls per request, 16 clients: pier/haproxy 1.12 (lower is better)",
		"nginx syscalls: error: the load under strace failed: dial tcp: refused",
		"gocopy syscalls: skipped: strace is not installed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	// The syscall rows are a table of their own, after the ratios: the
	// main table has no row for them.
	if i, j := strings.Index(text, "Ratios"), strings.Index(text, "| syscall |"); i < 0 || j < i {
		t.Errorf("syscall table not after the ratios:\n%s", text)
	}
}

// RR with MaxOps and a long duration is a fixed-count load: the syscall
// pass divides strace's counts by exactly this many requests.
func TestRRMaxOpsIsAFixedCount(t *testing.T) {
	echo := start(t, Echo)
	r := RR(t.Context(), RRConfig{Clients: 3, MaxOps: 50, Duration: time.Minute}, []Target{{Column: "direct", Addr: echo}})
	if r[0].Error != "" || r[0].Ops != 150 {
		t.Errorf("RR of 3 clients × 50: error %q, %d requests; want 150", r[0].Error, r[0].Ops)
	}
}

// Hog burns CPU until its context ends, and then returns: the test waits
// until this process has used two ticks more CPU than before it started,
// cancels, and waits for Hog, each wait bounded.
func TestHogBurnsCPUUntilDone(t *testing.T) {
	before, err := procTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	chunks := make(chan int64, 1)
	go func() { chunks <- Hog(ctx, 1) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := procTicks(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now >= before+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process used %d ticks in 10 s with Hog running", now-before)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case n := <-chunks:
		if n <= 0 {
			t.Errorf("Hog did %d chunks of work", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Hog did not return within 10 s of its context ending")
	}
}
