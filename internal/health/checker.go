package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// DefaultInterval is the interval of a Checker made with none: HAProxy's
// default "inter".
const DefaultInterval = 2 * time.Second

// firstStagger bounds the delay of a new address's first probe: soon enough
// to read as "at once", enough to keep the members of a pool that has just
// started from all being dialed in the same instant.
const firstStagger = 100 * time.Millisecond

// A Checker probes a changing set of addresses every interval, each on its
// own staggered schedule (spread over the interval so probes do not all
// fire at once), with at most one probe in flight per address, and reports
// each result.
//
// Each address has one goroutine, which probes it and sleeps between
// probes: pools are small, so the goroutines number the pool's members, and
// a slow member delays no other. The first probe of an address runs at once
// (within 100 ms); the second at a random point between half and one and a
// half intervals later, which spreads the pool's probes over the interval;
// after that each probe starts one interval after the last one ended, so a
// probe that runs long (Timeout longer than the interval) delays the next
// rather than overlapping it.
type Checker struct {
	interval time.Duration
	log      *slog.Logger
	report   func(netip.AddrPort, error)
	probe    func(context.Context, netip.AddrPort) error // check.Probe; tests wrap it

	mu      sync.Mutex // held by Set and Stop throughout; the probers never take it
	probers map[netip.AddrPort]*prober
	stopped bool
}

// A prober is the goroutine that probes one address.
type prober struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
}

// NewChecker returns a Checker that probes with c every interval (zero:
// DefaultInterval) and calls report with each result: nil for healthy.
// It probes nothing until Set. The Checker's goroutines share c, which must
// not change afterwards.
//
// report is called from the Checker's goroutines, possibly concurrently for
// different addresses, never concurrently for the same address. A result
// for which IsLocal is true is not reported: the Checker logs it to log at
// Warn (nil log: discarded), as it says nothing about the member.
//
// Set and Stop wait for a report under way for an address they remove, so
// report must not call Set or Stop, and their caller must not hold a lock
// that report takes.
func NewChecker(c *Check, interval time.Duration, log *slog.Logger, report func(addr netip.AddrPort, err error)) *Checker {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if report == nil {
		report = func(netip.AddrPort, error) {}
	}
	return &Checker{
		interval: interval,
		log:      log,
		report:   report,
		probe:    c.Probe,
		probers:  make(map[netip.AddrPort]*prober),
	}
}

// Set replaces the addresses to check. New ones are probed at once (within
// a small stagger); addresses already checked keep their schedule. Removed
// ones stop: a probe in flight for a removed address is canceled and its
// result dropped, and no report for it begins after Set returns. Set after
// Stop does nothing.
func (k *Checker) Set(addrs []netip.AddrPort) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	want := make(map[netip.AddrPort]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	var removed []*prober
	for a, p := range k.probers {
		if !want[a] {
			p.cancel()
			removed = append(removed, p)
			delete(k.probers, a)
		}
	}
	for a := range want {
		if k.probers[a] == nil {
			k.probers[a] = k.start(a)
		}
	}
	for _, p := range removed {
		<-p.done
	}
}

// Stop ends every goroutine of the Checker and waits for them; no report
// after Stop returns. A probe in flight is canceled.
func (k *Checker) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	for _, p := range k.probers {
		p.cancel()
	}
	for a, p := range k.probers {
		<-p.done
		delete(k.probers, a)
	}
}

func (k *Checker) start(addr netip.AddrPort) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{cancel: cancel, done: make(chan struct{})}
	go k.watch(ctx, addr, p.done)
	return p
}

// watch probes addr until ctx ends: the goroutine of one address.
func (k *Checker) watch(ctx context.Context, addr netip.AddrPort, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(jitter(min(firstStagger, k.interval)))
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := k.probe(ctx, addr)
		// Removed or stopped: the result is about a member nobody
		// asks after any more, and possibly only a cancellation.
		// Set and Stop wait for this goroutine, so a report that
		// starts here ends before they return.
		if ctx.Err() != nil {
			return
		}
		if IsLocal(err) {
			k.log.Warn("health check failed for lack of pier's own resources; not counted", "member", addr, "err", err)
		} else {
			k.report(addr, err)
		}
		next := k.interval
		if n == 0 {
			next = k.interval/2 + jitter(k.interval)
		}
		t.Reset(next)
	}
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
