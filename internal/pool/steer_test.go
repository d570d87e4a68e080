package pool

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/discover"
	"github.com/pierproxy/pier/internal/health"
	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/testutil/dnstest"
)

// picks makes n picks and counts them by address, ending each session.
func picks(t *testing.T, p *Pool, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		a := p.Pick(netip.Addr{})
		if a == nil {
			t.Fatal("no member could take a session")
		}
		got[a.Member().Addr.String()]++
		a.Done()
	}
	return got
}

// status returns the Status of the member at addr.
func status(t *testing.T, p *Pool, addr string) MemberStatus {
	t.Helper()
	for _, st := range p.Status() {
		if st.Addr.String() == addr {
			return st
		}
	}
	t.Fatalf("no member %s in %v", addr, p.Status())
	return MemberStatus{}
}

// until polls cond, at most wait, and fails the test with what if it never
// holds.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", wait, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// acceptor is a listener on 127.0.0.1 that accepts and closes every
// connection: a member a connect-only check finds healthy.
func acceptor(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// closedPort returns an address on 127.0.0.1 nothing listens on: dials to
// it are refused.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Draining a member by its name stops new sessions on it at once, leaves
// its live ones alone, and undraining (clearing the override) brings new
// sessions back.
func TestSteerDrainNoNewSessions(t *testing.T) {
	p := newPool(t, Config{Members: specs("10.0.0.1:1", "10.0.0.2:1")}, nil)
	var held *Attempt
	for held == nil {
		a := p.Pick(netip.Addr{})
		if a.Member().Addr.String() == "10.0.0.1:1" {
			held = a
		} else {
			a.Done()
		}
	}
	if err := p.Steer("10.0.0.1:1", Steering{Drain: new(true)}); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, p, 100); got["10.0.0.1:1"] != 0 {
		t.Errorf("picks %v after drain, want none on 10.0.0.1:1", got)
	}
	st := status(t, p, "10.0.0.1:1")
	if !st.Drain || st.Disabled || st.Steering.Drain == nil || !*st.Steering.Drain || st.Active != 1 {
		t.Errorf("status %+v: want draining by steering, its live session still counted", st)
	}
	held.Done()
	if st := status(t, p, "10.0.0.1:1"); st.Active != 0 {
		t.Errorf("%d live after the held session ended, want 0", st.Active)
	}
	if err := p.Steer("10.0.0.1:1", Steering{}); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, p, 100); got["10.0.0.1:1"] != 50 {
		t.Errorf("picks %v after undrain, want 50 each", got)
	}
	if st := status(t, p, "10.0.0.1:1"); st.Drain || !st.Steering.IsZero() {
		t.Errorf("status %+v after the override was cleared", st)
	}
	// A member the file drains is undrained by a steering of false.
	sp := specs("10.0.0.1:1", "10.0.0.2:1")
	sp[0].Drain = true
	q := newPool(t, Config{Members: sp}, nil)
	if err := q.Steer("10.0.0.1:1", Steering{Drain: new(false)}); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, q, 10); got["10.0.0.1:1"] != 5 {
		t.Errorf("picks %v, want the file's drain overridden", got)
	}
}

// Disabling a member stops its health checks (its check counter stops
// moving while the other member's goes on) as well as new sessions;
// draining does not stop them; enabling starts them again.
func TestDisableStopsProbes(t *testing.T) {
	a, b := acceptor(t).Addr().String(), acceptor(t).Addr().String()
	p := newPool(t, Config{Members: specs(a, b), Check: &health.Check{Timeout: time.Second},
		CheckInterval: 5 * time.Millisecond, Rise: 1, Fall: 1}, nil)
	passed := func(addr string) uint64 { return status(t, p, addr).ChecksPassed }
	grows := func(addr string, by uint64) {
		t.Helper()
		from := passed(addr)
		until(t, fmt.Sprintf("%s checked %d more times", addr, by), func() bool { return passed(addr) >= from+by })
	}
	grows(a, 2)

	if err := p.Steer(a, Steering{Drain: new(true)}); err != nil {
		t.Fatal(err)
	}
	grows(a, 2) // draining: still checked

	if err := p.Steer(a, Steering{Disabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	// Steer returns after any report under way: from here a's count is
	// fixed. b's checks are the clock.
	frozen := passed(a)
	grows(b, 5)
	if n := passed(a); n != frozen {
		t.Errorf("a disabled member was checked %d more times", n-frozen)
	}
	if got := picks(t, p, 20); got[a] != 0 {
		t.Errorf("picks %v, want none on the disabled member", got)
	}
	if st := status(t, p, a); !st.Disabled || st.Drain {
		t.Errorf("status %+v: want disabled, and the drain override replaced", st)
	}

	if err := p.Steer(a, Steering{Disabled: new(false)}); err != nil {
		t.Fatal(err)
	}
	grows(a, 2)
	if got := picks(t, p, 20); got[a] != 10 {
		t.Errorf("picks %v after enable, want 10 each", got)
	}
}

// A steered weight sets the member's share: 3 against 1 gives exactly 750
// of 1000 smooth round robin picks; weight 0 and weights past 1000 are
// refused, 0 with a pointer to drain.
func TestSteerWeightShares(t *testing.T) {
	p := newPool(t, Config{Members: specs("10.0.0.1:1", "10.0.0.2:1")}, nil)
	if err := p.Steer("10.0.0.1:1", Steering{Weight: new(3)}); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, p, 1000); got["10.0.0.1:1"] != 750 || got["10.0.0.2:1"] != 250 {
		t.Errorf("picks %v, want 750 and 250 (3:1)", got)
	}
	if st := status(t, p, "10.0.0.1:1"); st.Weight != 3 || st.FileWeight != 1 {
		t.Errorf("weight %d, file weight %d; want 3 and 1", st.Weight, st.FileWeight)
	}
	for _, w := range []int{0, -1, 1001} {
		err := p.Steer("10.0.0.1:1", Steering{Weight: new(w)})
		if err == nil {
			t.Errorf("weight %d accepted", w)
		} else if w == 0 && !strings.Contains(err.Error(), "drain") {
			t.Errorf("weight 0: %v; want it to say to drain instead", err)
		}
	}
	if st := status(t, p, "10.0.0.1:1"); st.Weight != 3 {
		t.Errorf("a refused weight changed the weight to %d", st.Weight)
	}
	if err := p.Steer("10.0.0.1:1", Steering{}); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, p, 1000); got["10.0.0.1:1"] != 500 {
		t.Errorf("picks %v after the override was cleared, want 500 each", got)
	}
}

// Steer knows members by their configured names only.
func TestSteerUnknownMember(t *testing.T) {
	dns := dnstest.New(t)
	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.1"))
	p := newPool(t, Config{Members: []Spec{{Host: "db.test", Port: 5432}},
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: time.Hour, ResolveTimeout: time.Second}, nil)
	for _, name := range []string{"10.9.9.9:1", "127.0.0.1:5432", "db.test", ""} {
		if err := p.Steer(name, Steering{Drain: new(true)}); !errors.Is(err, ErrNoMember) {
			t.Errorf("Steer(%q) = %v, want ErrNoMember", name, err)
		}
	}
	if err := p.Steer("db.test:5432", Steering{Drain: new(true)}); err != nil {
		t.Errorf("Steer by the configured name: %v", err)
	}
}

// A name's steering applies to every address it expands to, also after
// its lookups change them; a pool made by a reload takes the steering
// its Config gives, and only that.
func TestSteeringSurvivesRebuildAndReload(t *testing.T) {
	dns := dnstest.New(t)
	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"))
	logs, log := testutil.NewLogs()
	cfg := Config{
		Route: "db", Log: log,
		Members:  []Spec{{Host: "db.test", Port: 5432}, {Host: "127.0.0.9", Port: 9}},
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: 20 * time.Millisecond, ResolveTimeout: time.Second,
	}
	p := newPool(t, cfg, nil)
	if err := p.Steer("db.test:5432", Steering{Drain: new(true)}); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, p, 10); got["127.0.0.9:9"] != 10 {
		t.Errorf("picks %v, want every address of the drained name left out", got)
	}
	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.3"))
	logs.WaitFor(t, wait, "upstream members changed", "member=db.test:5432", "addresses=1")
	if st := status(t, p, "127.0.0.3:5432"); !st.Drain {
		t.Errorf("the name's new address is not drained: %+v", st)
	}
	if got := picks(t, p, 10); got["127.0.0.9:9"] != 10 {
		t.Errorf("picks %v after the name changed, want its new address drained too", got)
	}

	// A reload keeps what its Config says: here a weight, not the drain.
	cfg.Steering = map[string]Steering{"db.test:5432": {Weight: new(3)}, "gone.test:1": {Drain: new(true)}}
	q := newPool(t, cfg, p)
	if st := status(t, q, "127.0.0.3:5432"); st.Drain || st.Weight != 3 || st.FileWeight != 1 {
		t.Errorf("after a reload with a weight: %+v", st)
	}
	if got := picks(t, q, 400); got["127.0.0.3:5432"] != 300 {
		t.Errorf("picks %v, want 300 of 400 on the weight 3 member", got)
	}
	cfg.Steering = nil
	r := newPool(t, cfg, q)
	if st := status(t, r, "127.0.0.3:5432"); st.Weight != 1 || !st.Steering.IsZero() {
		t.Errorf("a reload without steering kept some: %+v", st)
	}
	cfg.Steering = map[string]Steering{"db.test:5432": {Weight: new(0)}}
	if _, err := New(cfg, r); err == nil {
		t.Error("a Config steering weight 0 accepted")
	}
}

// Failed dials count against their member whether the passive check is
// on or not (and for a lone member, which it never ejects); pier's own
// failures do not; the count survives a reload.
func TestConnectFailuresCountedWithPassiveOff(t *testing.T) {
	bad, good := closedPort(t), acceptor(t).Addr().String()
	_, refused := net.Dial("tcp", bad)
	if !errors.Is(refused, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want connection refused", refused)
	}
	for _, tc := range []struct {
		name    string
		members []Spec
		passive Passive
	}{
		{"passive off", specs(bad, good), Passive{}},
		{"lone member, passive on", specs(bad), Passive{Failures: 1, Backoff: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Members: tc.members, Passive: tc.passive, Retries: 1}
			p := newPool(t, cfg, nil)
			n := 0
			for n < 3 {
				a := p.Pick(netip.Addr{})
				if a.Member().Addr.String() == bad {
					_, err := net.Dial("tcp", bad)
					a.Failed(err)
					n++
				}
				a.Done()
			}
			// A retry counts the same way; pier's own failure not at all.
			for {
				a := p.Pick(netip.Addr{})
				if a.Member().Addr.String() == bad {
					_, err := net.Dial("tcp", bad)
					a.Retry(err)
					a.Done()
					break
				}
				a.Done()
			}
			a := p.Pick(netip.Addr{})
			a.Failed(syscall.EMFILE)
			a.Done()
			if st := status(t, p, bad); st.ConnectFailures != 4 || st.Ejected {
				t.Errorf("%d connect failures counted (ejected %v), want 4 and no ejection", st.ConnectFailures, st.Ejected)
			}
			if len(tc.members) > 1 {
				if st := status(t, p, good); st.ConnectFailures != 0 {
					t.Errorf("the good member has %d connect failures", st.ConnectFailures)
				}
			}
			q := newPool(t, cfg, p)
			if st := status(t, q, bad); st.ConnectFailures != 4 {
				t.Errorf("%d connect failures after a reload, want 4", st.ConnectFailures)
			}
		})
	}
}

// Active check results are counted per member and the last error is
// kept: a real listener passes, the same port closed fails with the
// refusal, and disabling the member keeps its verdict and error.
func TestCheckResultsCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			ln.Close()
		}
		wg.Wait()
	})
	p := newPool(t, Config{Members: specs(addr), Check: &health.Check{Timeout: time.Second},
		CheckInterval: 5 * time.Millisecond, Rise: 1, Fall: 1, TryAll: true}, nil)
	until(t, "3 checks passed", func() bool { return status(t, p, addr).ChecksPassed >= 3 })
	if st := status(t, p, addr); st.ChecksFailed != 0 || st.LastCheckError != "" || st.Down {
		t.Errorf("a passing member: %+v", st)
	}
	ln.Close()
	closed = true
	wg.Wait()
	until(t, "a failed check", func() bool { return status(t, p, addr).Down })
	st := status(t, p, addr)
	if st.ChecksFailed == 0 || !strings.Contains(st.LastCheckError, "connection refused") {
		t.Errorf("a refusing member: %d failed, last error %q", st.ChecksFailed, st.LastCheckError)
	}
	// Disabled, with a live session, through two rebuilds: the verdict,
	// the error and the session's count stay.
	held := p.Pick(netip.Addr{}) // down, but try_all
	if held == nil {
		t.Fatal("no member with try_all")
	}
	defer held.Done()
	for _, s := range []Steering{{Disabled: new(true)}, {Disabled: new(true), Weight: new(2)}} {
		if err := p.Steer(addr, s); err != nil {
			t.Fatal(err)
		}
	}
	if st := status(t, p, addr); !st.Down || !strings.Contains(st.LastCheckError, "connection refused") || st.Active != 1 {
		t.Errorf("disabled: the verdict or the live session was not kept: %+v", st)
	}
}

// With merges a change into an override field by field, sharing no
// pointer with either.
func TestSteeringWith(t *testing.T) {
	base := Steering{Drain: new(true), Weight: new(5)}
	change := Steering{Drain: new(false), Disabled: new(true)}
	got := base.With(change)
	if *got.Drain != false || *got.Disabled != true || *got.Weight != 5 {
		t.Errorf("With = drain %v disabled %v weight %v", *got.Drain, *got.Disabled, *got.Weight)
	}
	*got.Weight, *got.Drain = 7, true
	if *base.Weight != 5 || *change.Drain != false {
		t.Error("With shares pointers with its inputs")
	}
	if !(Steering{}).With(Steering{}).IsZero() {
		t.Error("nothing with nothing is not zero")
	}
}
