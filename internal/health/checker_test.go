package health

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pierproxy/pier/internal/testutil"
)

// wait bounds every wait for a Checker's reports.
const wait = 5 * time.Second

// tally counts a Checker's reports per address and lets a test wait for a
// count. report never blocks, so Stop never waits on the test.
type tally struct {
	mu      sync.Mutex
	n       map[netip.AddrPort]int
	last    map[netip.AddrPort]error
	busy    map[netip.AddrPort]bool
	overlap atomic.Int32 // reports of one address that overlapped
	changed chan struct{}
}

func newTally() *tally {
	return &tally{
		n:       make(map[netip.AddrPort]int),
		last:    make(map[netip.AddrPort]error),
		busy:    make(map[netip.AddrPort]bool),
		changed: make(chan struct{}, 1),
	}
}

func (y *tally) report(addr netip.AddrPort, err error) {
	y.mu.Lock()
	if y.busy[addr] {
		y.overlap.Add(1)
	}
	y.busy[addr] = true
	y.mu.Unlock()

	time.Sleep(time.Millisecond) // widen the window an overlapping report would fall in

	y.mu.Lock()
	y.busy[addr] = false
	y.n[addr]++
	y.last[addr] = err
	y.mu.Unlock()
	select {
	case y.changed <- struct{}{}:
	default:
	}
}

func (y *tally) count(addr netip.AddrPort) int {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.n[addr]
}

// until waits, at most 5 s, for every address to have at least n reports
// more than from.
func (y *tally) until(t *testing.T, n int, addrs ...netip.AddrPort) {
	t.Helper()
	from := make([]int, len(addrs))
	for i, a := range addrs {
		from[i] = y.count(a)
	}
	deadline := time.After(wait)
	for {
		done := true
		for i, a := range addrs {
			done = done && y.count(a) >= from[i]+n
		}
		if done {
			return
		}
		select {
		case <-y.changed:
		case <-deadline:
			t.Fatalf("fewer than %d new reports for each of %v within %v", n, addrs, wait)
		}
	}
}

func pong(t *testing.T) netip.AddrPort { return serve(t, answer(true, 0, 0, "+PONG\r\n")) }

// Every address is probed again and again, and each result goes to its
// own address.
func TestCheckerReportsEveryAddress(t *testing.T) {
	up, down := pong(t), refused(t)
	y := newTally()
	k := NewChecker(pingPong(5*time.Second), 10*time.Millisecond, nil, y.report)
	defer k.Stop()
	k.Set([]netip.AddrPort{up, down})
	y.until(t, 3, up, down)
	k.Stop()
	if err := y.last[up]; err != nil {
		t.Errorf("the healthy member: %v", err)
	}
	if err := y.last[down]; err == nil || err.Error() != "connect: connection refused" {
		t.Errorf("the refusing member: %v, want connect: connection refused", err)
	}
	if n := y.overlap.Load(); n > 0 {
		t.Errorf("%d reports of one address overlapped", n)
	}
}

// A new address is probed at once, not an interval later: this is what
// lets a member that starts up be found down within fall*interval.
func TestCheckerProbesNewAddressesAtOnce(t *testing.T) {
	a, b := pong(t), refused(t)
	y := newTally()
	k := NewChecker(pingPong(5*time.Second), time.Hour, nil, y.report)
	defer k.Stop()
	k.Set([]netip.AddrPort{a})
	y.until(t, 1, a)
	k.Set([]netip.AddrPort{a, b})
	y.until(t, 1, b)
	if n := y.count(a); n != 1 {
		t.Errorf("%d reports for an address kept by Set, want its schedule kept: 1", n)
	}
}

// A removed address gets no report once Set returns, while the others go
// on; added again, it is probed again.
func TestCheckerSetStopsRemovedAddresses(t *testing.T) {
	a, b := pong(t), serve(t, answer(true, 5*time.Millisecond, 0, "+PONG\r\n"))
	var removed atomic.Bool
	var late atomic.Int32
	y := newTally()
	k := NewChecker(pingPong(5*time.Second), time.Millisecond, nil, func(addr netip.AddrPort, err error) {
		if addr == b && removed.Load() {
			late.Add(1)
		}
		y.report(addr, err)
	})
	defer k.Stop()
	k.Set([]netip.AddrPort{a, b})
	y.until(t, 3, a, b)
	k.Set([]netip.AddrPort{a})
	removed.Store(true)
	y.until(t, 5, a)
	if n := late.Load(); n > 0 {
		t.Fatalf("%d reports for a removed address after Set returned", n)
	}
	removed.Store(false)
	k.Set([]netip.AddrPort{b, a})
	y.until(t, 2, b)
}

// Stop cancels the probes in flight, ends every goroutine, and no report
// comes after it; Set after Stop starts nothing.
func TestCheckerStopEndsEverything(t *testing.T) {
	accepted := make(chan struct{}, 1)
	silent := serve(t, func(c *net.TCPConn) {
		select {
		case accepted <- struct{}{}:
		default:
		}
		testutil.Hold(c)
	})
	up, down := pong(t), refused(t)
	before := goleak.IgnoreCurrent()

	var stopped atomic.Bool
	var late atomic.Int32
	y := newTally()
	k := NewChecker(pingPong(time.Hour), 5*time.Millisecond, nil, func(addr netip.AddrPort, err error) {
		if stopped.Load() {
			late.Add(1)
		}
		y.report(addr, err)
	})
	k.Set([]netip.AddrPort{silent, up, down})
	y.until(t, 2, up, down)
	select {
	case <-accepted:
	case <-time.After(wait):
		t.Fatal("the silent member was never probed")
	}
	start := time.Now()
	k.Stop() // the silent member's probe waits for an hour unless canceled
	stopped.Store(true)
	if took := time.Since(start); took > wait {
		t.Errorf("Stop took %v", took)
	}
	k.Set([]netip.AddrPort{up})
	k.Stop()
	goleak.VerifyNone(t, before)
	if n := late.Load(); n > 0 {
		t.Errorf("%d reports after Stop returned", n)
	}
	if n := y.count(silent); n > 0 {
		t.Errorf("%d reports for the silent member, whose only probe was canceled", n)
	}
}

// Probes of one address never overlap, even when each takes longer than
// the interval.
func TestCheckerNeverOverlapsProbesOfOneAddress(t *testing.T) {
	slow1 := serve(t, answer(true, 20*time.Millisecond, 0, "+PONG\r\n"))
	slow2 := serve(t, answer(true, 20*time.Millisecond, 0, "+PONG\r\n"))
	var mu sync.Mutex
	inflight := make(map[netip.AddrPort]int)
	most := 0
	y := newTally()
	k := NewChecker(pingPong(5*time.Second), time.Microsecond, nil, y.report)
	probe := k.probe
	k.probe = func(ctx context.Context, addr netip.AddrPort) error {
		mu.Lock()
		inflight[addr]++
		most = max(most, inflight[addr])
		mu.Unlock()
		defer func() {
			mu.Lock()
			inflight[addr]--
			mu.Unlock()
		}()
		return probe(ctx, addr)
	}
	defer k.Stop()
	k.Set([]netip.AddrPort{slow1, slow2})
	y.until(t, 5, slow1, slow2)
	k.Stop()
	if most != 1 {
		t.Errorf("%d probes of one address in flight at once, want 1", most)
	}
	for _, a := range []netip.AddrPort{slow1, slow2} {
		if err := y.last[a]; err != nil {
			t.Errorf("%v: %v", a, err)
		}
	}
	if n := y.overlap.Load(); n > 0 {
		t.Errorf("%d reports of one address overlapped", n)
	}
}

// warnings is a slog.Handler that hands each Warn message to a channel.
type warnings struct{ ch chan<- string }

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	var member bool
	r.Attrs(func(a slog.Attr) bool {
		member = member || a.Key == "member"
		return true
	})
	msg := r.Message
	if !member {
		msg += " (without the member)"
	}
	select {
	case w.ch <- msg:
	default:
	}
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }
