package bench

import (
	"context"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// procTicks reads utime+stime, the same account getrusage(RUSAGE_SELF)
// gives: after this process has used some CPU, the two agree to within
// the ticks /proc rounds away. Reading other fields (the children's
// times, the start time) would not.
func TestProcTicksAgreesWithGetrusage(t *testing.T) {
	hz := clockTicks()
	if hz <= 0 {
		t.Fatalf("clockTicks() = %d, want a positive tick rate", hz)
	}
	// Use some CPU first, so a wrong field cannot match by being near 0.
	deadline := time.Now().Add(10 * time.Second)
	for x := 1.0; rusageSeconds(t) < 0.3 && time.Now().Before(deadline); {
		for range 1 << 20 {
			x = math.Sqrt(x + 1)
		}
	}
	before := rusageSeconds(t)
	ticks, err := procTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	after := rusageSeconds(t)
	got := float64(ticks) / float64(hz)
	// /proc rounds utime and stime down, 1 tick each; the race detector's
	// threads may run between the readings.
	slack := 3 / float64(hz)
	if got < before-slack || got > after+slack {
		t.Errorf("procTicks = %d ticks = %.3f s; getrusage says %.3f to %.3f s", ticks, got, before, after)
	}
}

func rusageSeconds(t *testing.T) float64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// A window on a process counts its descendants' CPU: here the measured
// process is an idle shell whose child spins, as nginx's master idles while
// its workers proxy. Without the descendants the window stays at 0.
func TestCPUWindowCountsDescendants(t *testing.T) {
	sh := exec.Command("/bin/sh", "-c", `/bin/sh -c 'while :; do :; done' & wait`)
	if err := sh.Start(); err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	var tree []int
	t.Cleanup(func() {
		for _, p := range slices.Backward(tree) {
			syscall.Kill(p, syscall.SIGKILL)
		}
		sh.Process.Kill()
		sh.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for len(tree) < 2 && time.Now().Before(deadline) {
		var err error
		if tree, err = Descendants(sh.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if len(tree) < 2 {
			time.Sleep(5 * time.Millisecond) // polling for the fork, bounded by deadline
		}
	}
	if len(tree) < 2 {
		t.Fatalf("the spinning child of pid %d did not appear", sh.Process.Pid)
	}
	w := startCPU(sh.Process.Pid)
	var ticks int64
	for ticks < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // one tick at 100 Hz; bounded by deadline
		var err error
		if ticks, err = w.spent(); err != nil {
			t.Fatal(err)
		}
	}
	if ticks < 3 {
		t.Fatalf("window on pid %d counted %d ticks while its child spun; want its child's time", sh.Process.Pid, ticks)
	}
	var r Result
	w.end(&r)
	if r.CPUWindows != len(tree) || r.CPUTicks < 3 || r.ClkTck != clockTicks() {
		t.Errorf("end: %d windows, %d ticks, clk_tck %d; want %d windows, ≥ 3 ticks, %d", r.CPUWindows, r.CPUTicks, r.ClkTck, len(tree), clockTicks())
	}
}

// CPS and RR read the CPU of a target with a PID around every round and
// give its cost per operation; direct (no PID) gets none, and a target
// whose process is gone gets a CPU error but keeps its rate.
func TestLoadsMeasureCPUOfTargetsWithAPID(t *testing.T) {
	echo := start(t, Echo)
	addr := start(t, func(ctx context.Context, ln net.Listener) error { return GoCopy(ctx, ln, echo) })
	gone := exec.Command("/bin/true")
	if err := gone.Run(); err != nil {
		t.Skipf("no /bin/true: %v", err)
	}
	targets := []Target{
		{Column: "direct", Addr: echo},
		{Column: "gocopy", Addr: addr, PID: os.Getpid()}, // this process is gocopy (and client, and echo)
		{Column: "gone", Addr: addr, PID: gone.Process.Pid},
	}
	const rounds = 2
	results := map[string][]Result{
		"cps": CPS(t.Context(), CPSConfig{Workers: 2, Duration: 100 * time.Millisecond, Rounds: rounds}, targets),
		"rr":  RR(t.Context(), RRConfig{Clients: 2, Duration: 100 * time.Millisecond, Rounds: rounds}, targets),
	}
	for test, res := range results {
		direct, gocopy, gone := res[0], res[1], res[2]
		if direct.Error != "" || direct.CPUWindows != 0 || direct.CPUusPerOp != 0 || direct.CPUError != "" {
			t.Errorf("%s direct: error %q, %d CPU windows, %.1f µs/op, CPU error %q; want no CPU reading", test, direct.Error, direct.CPUWindows, direct.CPUusPerOp, direct.CPUError)
		}
		if gocopy.Error != "" || gocopy.CPUError != "" || gocopy.CPUWindows != rounds || gocopy.ClkTck != clockTicks() || gocopy.Ops == 0 {
			t.Fatalf("%s gocopy: %+v; want %d CPU windows (one process, %d rounds) and no error", test, gocopy, rounds, rounds)
		}
		want := float64(gocopy.CPUTicks) * 1e6 / float64(gocopy.ClkTck) / float64(gocopy.Ops)
		if gocopy.CPUusPerOp != want {
			t.Errorf("%s gocopy: %.3f µs/op, want %d ticks / %d ops = %.3f", test, gocopy.CPUusPerOp, gocopy.CPUTicks, gocopy.Ops, want)
		}
		if gone.Error != "" || gone.PerSec <= 0 || gone.CPUError == "" || gone.CPUusPerOp != 0 {
			t.Errorf("%s with an exited pid: error %q, %.0f/s, CPU error %q, %.1f µs/op; want a rate and a CPU error", test, gone.Error, gone.PerSec, gone.CPUError, gone.CPUusPerOp)
		}
	}
}
