package discover

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/pierproxy/pier/internal/testutil/dnstest"
)

// waitFor bounds every wait of the watcher tests.
const waitFor = 5 * time.Second

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("no %s within %v", what, waitFor)
		panic("unreachable")
	}
}

// A watchRig watches one source and hands the test what the watcher does:
// each update, each finished lookup and each log record, in order.
type watchRig struct {
	w       *Watcher
	updates chan []Endpoint
	lookups chan error
	logs    chan slog.Record
}

func watch(t *testing.T, r Resolver, src Source, interval time.Duration) *watchRig {
	t.Helper()
	rig := &watchRig{
		updates: make(chan []Endpoint, 64),
		lookups: make(chan error, 64),
		logs:    make(chan slog.Record, 64),
	}
	log := slog.New(recordHandler(rig.logs))
	rig.w = Watch(observed{r, rig.lookups}, src, interval, 2*time.Second, log, func(eps []Endpoint) {
		rig.updates <- eps
	})
	t.Cleanup(rig.w.Stop)
	return rig
}

// observed is a Resolver that reports each finished lookup.
type observed struct {
	Resolver
	done chan<- error
}

func (o observed) Host(ctx context.Context, host string, port uint16) ([]Endpoint, time.Duration, error) {
	eps, ttl, err := o.Resolver.Host(ctx, host, port)
	o.done <- err
	return eps, ttl, err
}

// recordHandler is a slog.Handler that passes each record on.
type recordHandler chan<- slog.Record

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h <- r.Clone()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func attrs(r slog.Record) map[string]string {
	m := make(map[string]string)
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

func (rig *watchRig) expectUpdate(t *testing.T, want ...Endpoint) {
	t.Helper()
	checkEndpoints(t, receive(t, rig.updates, "update"), want)
}

func TestWatcherReportsTheFirstSetAndEachChange(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 300, ip("192.0.2.1"))
	rig := watch(t, Servers([]string{s.Addr()}), Source{Host: "db.example", Port: 5432}, time.Hour)
	rig.expectUpdate(t, ep("192.0.2.1", 5432, "db.example"))

	s.SetA("db.example", 300, ip("192.0.2.2"), ip("192.0.2.1"))
	rig.w.Now()
	rig.expectUpdate(t, ep("192.0.2.1", 5432, "db.example"), ep("192.0.2.2", 5432, "db.example"))

	// The same set, in another order, is no change.
	s.SetA("db.example", 300, ip("192.0.2.1"), ip("192.0.2.2"))
	rig.w.Now()
	receive(t, rig.lookups, "lookup") // the first
	receive(t, rig.lookups, "lookup") // the second
	receive(t, rig.lookups, "lookup") // the one for the same set
	s.SetA("db.example", 300, ip("192.0.2.3"))
	rig.w.Now()
	// Updates come in order: had the same set been reported, it would be next.
	rig.expectUpdate(t, ep("192.0.2.3", 5432, "db.example"))
}

func TestWatcherAsksAgainAfterInterval(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 0, ip("192.0.2.1"))
	rig := watch(t, Servers([]string{s.Addr()}), Source{Host: "db.example", Port: 80}, 50*time.Millisecond)
	rig.expectUpdate(t, ep("192.0.2.1", 80, "db.example"))
	s.SetA("db.example", 0, ip("192.0.2.2"))
	rig.expectUpdate(t, ep("192.0.2.2", 80, "db.example"))
}

// A TTL shorter than the interval brings the next lookup forward: with an
// hour's interval and a TTL of 1s, a change shows within seconds.
func TestWatcherAsksAgainWhenTheTTLEnds(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.SetA("db.example", 1, ip("192.0.2.1"))
	rig := watch(t, Servers([]string{s.Addr()}), Source{Host: "db.example", Port: 80}, time.Hour)
	rig.expectUpdate(t, ep("192.0.2.1", 80, "db.example"))
	start := time.Now()
	s.SetA("db.example", 1, ip("192.0.2.2"))
	rig.expectUpdate(t, ep("192.0.2.2", 80, "db.example"))
	t.Logf("change seen after %v", time.Since(start))
}

func TestNextWait(t *testing.T) {
	tests := []struct {
		name          string
		interval, ttl time.Duration
		want          time.Duration
	}{
		{"TTL unknown", time.Minute, 0, time.Minute},
		{"TTL longer than interval", time.Minute, time.Hour, time.Minute},
		{"TTL shorter than interval", time.Minute, 10 * time.Second, 10 * time.Second},
		{"TTL under a second", time.Minute, 100 * time.Millisecond, time.Second},
		{"interval under a second", 200 * time.Millisecond, time.Hour, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextWait(tt.interval, tt.ttl); got != tt.want {
				t.Errorf("nextWait(%v, %v) = %v, want %v", tt.interval, tt.ttl, got, tt.want)
			}
		})
	}
}

// A failed lookup keeps the last good set: no update, one warning per run
// of failures, and a note when lookups succeed again.
func TestWatcherKeepsTheLastSetWhenLookupFails(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 300, ip("192.0.2.1"))
	rig := watch(t, Servers([]string{s.Addr()}), Source{Host: "db.example", Port: 80}, time.Hour)
	rig.expectUpdate(t, ep("192.0.2.1", 80, "db.example"))
	receive(t, rig.lookups, "first lookup")

	s.Fail("db.example", dnsmessage.RCodeServerFailure)
	for range 3 {
		rig.w.Now()
		if err := receive(t, rig.lookups, "failed lookup"); err == nil {
			t.Fatal("lookup succeeded against a failing server")
		}
	}
	s.Fail("db.example", dnsmessage.RCodeSuccess)
	rig.w.Now()
	receive(t, rig.lookups, "lookup")

	warn := receive(t, rig.logs, "warning")
	if warn.Level != slog.LevelWarn || warn.Message != "lookup failed, keeping the last good set" {
		t.Errorf("logged %v %q", warn.Level, warn.Message)
	}
	if a := attrs(warn); a["name"] != "db.example:80" || a["kept"] != "1" || !strings.Contains(a["error"], "SERVFAIL") {
		t.Errorf("warning attributes %v", a)
	}
	if back := receive(t, rig.logs, "recovery"); back.Level != slog.LevelInfo {
		t.Errorf("then logged %v %q, want the recovery at Info: one warning per run", back.Level, back.Message)
	}

	// Updates come in order: had a failure or the recovery to the same set
	// been reported, it would come before this one.
	s.SetA("db.example", 300, ip("192.0.2.2"))
	rig.w.Now()
	rig.expectUpdate(t, ep("192.0.2.2", 80, "db.example"))
}

// After a failure the watcher asks again on its own, at the interval (or
// 5s if shorter): a name that appears is picked up.
func TestWatcherRetriesAfterFailure(t *testing.T) {
	s := dnstest.New(t)
	rig := watch(t, Servers([]string{s.Addr()}), Source{Host: "db.example", Port: 80}, 50*time.Millisecond)
	if err := receive(t, rig.lookups, "lookup"); err == nil {
		t.Fatal("unknown name found")
	}
	s.SetA("db.example", 0, ip("192.0.2.1"))
	rig.expectUpdate(t, ep("192.0.2.1", 80, "db.example"))
}

// Stop ends a lookup in flight, waits for the goroutine, and no update
// comes after it; goleak (TestMain) checks no goroutine is left.
func TestWatcherStopEndsALookupInFlight(t *testing.T) {
	s := dnstest.New(t)
	s.Drop("db.example", true)
	r := &blockingUntilCalled{Resolver: Servers([]string{s.Addr()}), called: make(chan struct{}, 1)}
	var stopped atomic.Bool
	w := Watch(r, Source{Host: "db.example", Port: 80}, time.Hour, time.Hour, nil, func([]Endpoint) {
		if stopped.Load() {
			t.Error("update after Stop")
		}
	})
	receive(t, r.called, "lookup")
	done := make(chan struct{})
	go func() {
		w.Stop()
		stopped.Store(true)
		close(done)
	}()
	receive(t, done, "Stop to return")
	w.Stop() // twice is fine
}

// blockingUntilCalled is a Resolver that says when a lookup starts.
type blockingUntilCalled struct {
	Resolver
	called chan struct{}
}

func (b *blockingUntilCalled) Host(ctx context.Context, host string, port uint16) ([]Endpoint, time.Duration, error) {
	select {
	case b.called <- struct{}{}:
	default:
	}
	return b.Resolver.Host(ctx, host, port)
}

// A busy watcher, whose every lookup is a change, stops between updates.
func TestWatcherStopsWhileUpdating(t *testing.T) {
	var n atomic.Int32
	var stopped atomic.Bool
	r := changing{&n}
	updates := make(chan struct{}, 1)
	w := Watch(r, Source{Host: "db.example", Port: 80}, time.Millisecond, time.Second, nil, func(eps []Endpoint) {
		if stopped.Load() {
			t.Error("update after Stop")
		}
		select {
		case updates <- struct{}{}:
		default:
		}
	})
	for range 3 {
		receive(t, updates, "update")
	}
	w.Stop()
	stopped.Store(true)
}

// changing is a Resolver whose answer changes at each lookup.
type changing struct{ n *atomic.Int32 }

func (c changing) Host(_ context.Context, host string, port uint16) ([]Endpoint, time.Duration, error) {
	a := netip.AddrFrom4([4]byte{10, 0, 0, byte(c.n.Add(1))})
	return []Endpoint{{Addr: netip.AddrPortFrom(a, port), Target: host}}, 0, nil
}

func (c changing) SRV(context.Context, string) ([]Endpoint, time.Duration, error) {
	return nil, 0, ErrNotFound
}

// update may keep and change its slice: the watcher compares with its own
// copy, so the next lookup of the same set is still no change.
func TestWatcherUpdateOwnsItsSlice(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 300, ip("192.0.2.1"))
	rig := watch(t, Servers([]string{s.Addr()}), Source{Host: "db.example", Port: 80}, time.Hour)
	got := receive(t, rig.updates, "update")
	got[0].Addr = netip.MustParseAddrPort("192.0.2.99:1") // the watcher's copy must not change
	rig.w.Now()
	receive(t, rig.lookups, "first lookup")
	receive(t, rig.lookups, "second lookup")
	s.SetA("db.example", 300, ip("192.0.2.2"))
	rig.w.Now()
	rig.expectUpdate(t, ep("192.0.2.2", 80, "db.example"))
}
