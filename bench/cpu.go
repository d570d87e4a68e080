package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// CPU cost is read from /proc/PID/stat, utime + stime, which count every
// thread of a process (a Go proxy's runtime threads, HAProxy's nbthread).
// The kernel keeps them in nanoseconds but shows them in clock ticks,
// 1/CLK_TCK s (10 ms at the usual 100 Hz), each rounded down: a reading of
// their sum is short by less than 2 ticks, so the difference of two
// readings of one process is within 2 ticks of the truth. The loads read
// right before and right after every round's measured window, so a total
// over W process-windows is within 2·W ticks (Result.CPUWindows).

// atClkTck is AT_CLKTCK, the entry of the auxiliary vector that holds the
// tick rate of /proc's times: where glibc's sysconf(_SC_CLK_TCK) reads it.
const atClkTck = 17

// userHZ is the tick rate Linux has used for /proc on every architecture
// since 2.6 (USER_HZ): the answer when the auxiliary vector has none.
const userHZ = 100

// clockTicks returns the ticks per second of /proc/PID/stat's times.
var clockTicks = sync.OnceValue(func() int64 {
	auxv, err := unix.Auxv()
	if err != nil {
		return userHZ
	}
	for _, kv := range auxv {
		if kv[0] == atClkTck && kv[1] > 0 {
			return int64(kv[1])
		}
	}
	return userHZ
})

// procTicks returns the CPU time pid has used, user and system, over all
// its threads, in clock ticks: fields 14 and 15 of /proc/PID/stat.
func procTicks(pid int) (int64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: CPU time of pid %d: %w", pid, err)
	}
	// The command name in parentheses may hold spaces: count the fields
	// after the last ')', where field 3 (state) is the first.
	const utime, stime = 14 - 3, 15 - 3
	var f []string
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
		f = strings.Fields(string(stat[i+1:]))
	}
	if len(f) <= stime {
		return 0, fmt.Errorf("bench: CPU time of pid %d: malformed /proc/%d/stat", pid, pid)
	}
	u, err := strconv.ParseInt(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: utime of pid %d: %w", pid, err)
	}
	s, err := strconv.ParseInt(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: stime of pid %d: %w", pid, err)
	}
	return u + s, nil
}

// cpuWindow is the CPU time a process tree spends over one measured window
// of a load: a round of CPS or RR on one target.
type cpuWindow struct {
	pids  []int   // the proxy and its descendants, found before the window
	start []int64 // their ticks at its start
	err   error   // why the window cannot be measured
}

// startCPU opens a window on pid's process tree: nginx's workers, the
// master's children, do its proxying. The walk of /proc that finds the
// tree takes milliseconds, so it happens before the first reading, which
// is then only a read of each process's stat. pid 0 (direct: no proxy)
// gives a window that measures nothing.
func startCPU(pid int) *cpuWindow {
	if pid <= 0 {
		return nil
	}
	w := &cpuWindow{}
	w.pids, w.err = Descendants(pid)
	if w.err != nil {
		return w
	}
	w.start = make([]int64, len(w.pids))
	for i, p := range w.pids {
		if w.start[i], w.err = procTicks(p); w.err != nil {
			return w
		}
	}
	return w
}

// spent returns the ticks the tree has used since the window started. A
// process of the tree that has exited took its ticks with it: that is an
// error, not a smaller number.
func (w *cpuWindow) spent() (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	var sum int64
	for i, p := range w.pids {
		t, err := procTicks(p)
		if err != nil {
			return 0, err
		}
		sum += t - w.start[i]
	}
	return sum, nil
}

// end closes the window and adds its ticks to r, or its error, which
// leaves r with no CPU cost: a total missing a window would read low. A
// nil window (no proxy) adds nothing.
func (w *cpuWindow) end(r *Result) {
	if w == nil {
		return
	}
	ticks, err := w.spent()
	if err != nil {
		if r.CPUError == "" {
			r.CPUError = err.Error()
		}
		return
	}
	r.CPUTicks += ticks
	r.CPUWindows += len(w.pids)
	r.ClkTck = clockTicks()
}

// finishCPU sets r's CPU cost per operation from its windows' total.
func finishCPU(r *Result) {
	if r.CPUError != "" || r.CPUWindows == 0 || r.Ops == 0 || r.ClkTck == 0 {
		return
	}
	r.CPUusPerOp = float64(r.CPUTicks) * 1e6 / float64(r.ClkTck) / float64(r.Ops)
}
