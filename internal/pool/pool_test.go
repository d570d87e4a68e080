package pool

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pierproxy/pier/internal/health"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait in these tests; it is never slept.
const wait = 10 * time.Second

func specs(addrs ...string) []Spec {
	out := make([]Spec, len(addrs))
	for i, a := range addrs {
		s, err := ParseAddress(a)
		if err != nil {
			panic(err)
		}
		out[i] = s
	}
	return out
}

func newPool(t *testing.T, cfg Config, prev *Pool) *Pool {
	t.Helper()
	p, err := New(cfg, prev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

var errRefused = fmt.Errorf("dial: %w", syscall.ECONNREFUSED)

// Consecutive failed dials eject a member for a backoff that doubles while
// it keeps failing, up to the maximum; a success ends it; the log says
// when and why.
func TestPassiveEjection(t *testing.T) {
	l, log := testutil.NewLogs()
	p := newPool(t, Config{
		Route: "db", Members: specs("10.0.0.1:1", "10.0.0.2:1"), Log: log, Retries: 0,
		Passive: Passive{Failures: 2, Backoff: time.Hour, MaxBackoff: 3 * time.Hour},
	}, nil)
	bad := p.Members()[0]
	fail := func() {
		t.Helper()
		for {
			a := p.Pick(netip.Addr{})
			if a == nil {
				t.Fatal("no member")
			}
			m := a.Member()
			if m == bad {
				a.Retry(errRefused)
				a.Done()
				return
			}
			a.Done()
		}
	}
	fail()
	if !bad.usable(time.Now().UnixNano(), false) {
		t.Fatal("ejected after one failure, want two")
	}
	fail()
	if bad.usable(time.Now().UnixNano(), false) {
		t.Fatal("still usable after two failures in a row")
	}
	l.WaitFor(t, wait, "upstream member down", "10.0.0.1:1", "2 tries in a row failed", "connection refused", "for=1h0m0s")
	for range 20 {
		a := p.Pick(netip.Addr{})
		if a.Member() == bad {
			t.Fatal("an ejected member was picked")
		}
		a.Done()
	}
	// The backoff passes; the next dial fails too: ejected for twice as
	// long, then at most the maximum.
	for _, want := range []time.Duration{2 * time.Hour, 3 * time.Hour, 3 * time.Hour} {
		bad.h.ejectEnd.Store(0)
		fail()
		if bad.h.backoff != want {
			t.Errorf("backoff %v, want %v", bad.h.backoff, want)
		}
	}
	// It passes, and connects: back, with the backoff reset.
	bad.h.ejectEnd.Store(0)
	for {
		a := p.Pick(netip.Addr{})
		if a.Member() == bad {
			a.Connected()
			a.Done()
			break
		}
		a.Done()
	}
	l.WaitFor(t, wait, "upstream member up", "10.0.0.1:1", "a connect succeeded after its ejection")
	if bad.h.fails != 0 || bad.h.backoff != 0 {
		t.Errorf("after a success: %d failures, backoff %v; want none", bad.h.fails, bad.h.backoff)
	}
}

// pier's own failures never count against a member, and are not retried.
func TestLocalFailuresDoNotCount(t *testing.T) {
	p := newPool(t, Config{Members: specs("10.0.0.1:1", "10.0.0.2:1"), Retries: 3,
		Passive: Passive{Failures: 1, Backoff: time.Hour}}, nil)
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS} {
		a := p.Pick(netip.Addr{})
		if _, _, ok := a.Retry(fmt.Errorf("dial: %w", errno)); ok {
			t.Errorf("%v: retried on another member", errno)
		}
		a.Done()
	}
	for _, m := range p.Members() {
		if !m.usable(time.Now().UnixNano(), false) || m.h.fails != 0 {
			t.Errorf("%s counted pier's own failures: %d", m.Name, m.h.fails)
		}
	}
}

// Retries go to members not tried yet, as many as allowed, and the live
// count follows the session.
func TestRetryOtherMembers(t *testing.T) {
	p := newPool(t, Config{Members: specs("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1"), Retries: 2}, nil)
	a := p.Pick(netip.Addr{})
	seen := map[netip.AddrPort]bool{a.Member().Addr: true}
	for i := range 2 {
		addr, name, ok := a.Retry(errRefused)
		if !ok {
			t.Fatalf("retry %d refused", i+1)
		}
		if seen[addr] || name != addr.String() {
			t.Fatalf("retry %d went to %s (%s), tried already: %v", i+1, addr, name, seen)
		}
		seen[addr] = true
		var live int64
		for _, m := range p.Members() {
			live += m.Active()
		}
		if live != 1 {
			t.Errorf("%d live sessions counted, want 1", live)
		}
	}
	if _, _, ok := a.Retry(errRefused); ok {
		t.Error("a third retry with retries: 2")
	}
	a.Done()
	for _, m := range p.Members() {
		if m.Active() != 0 {
			t.Errorf("%s: %d live sessions after Done", m.Name, m.Active())
		}
	}
}

// With every member down, a pick fails at once, is counted and logged
// with why; with try_all, members are tried anyway.
func TestAllDown(t *testing.T) {
	for _, tryAll := range []bool{false, true} {
		l, log := testutil.NewLogs()
		p := newPool(t, Config{Route: "db", Members: specs("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"), Log: log, TryAll: tryAll}, nil)
		ms := p.Members()
		ms[0].v.down.Store(true)
		ms[1].h.ejectEnd.Store(time.Now().Add(time.Hour).UnixNano())
		ms[2].Drain = true
		a := p.Pick(netip.Addr{})
		if tryAll {
			if a == nil || a.Member() == ms[2] {
				t.Fatalf("try_all: got %v, want a member that is not draining", a)
			}
			a.Done()
			continue
		}
		if a != nil {
			t.Fatalf("picked %s with every member down", a.Member().Name)
		}
		if p.Refused() != 1 {
			t.Errorf("refused %d, want 1", p.Refused())
		}
		l.WaitFor(t, wait, "no upstream member can take a session", "route=db", "members=3", "down=1", "ejected=1", "draining=1")
	}
}

// With try_all and no member that can take a session even so, both
// warnings are logged: the second is not swallowed by the first's
// once-a-second limit.
func TestTryAllThenNoneBothWarn(t *testing.T) {
	l, log := testutil.NewLogs()
	sp := specs("10.0.0.1:1", "10.0.0.2:1")
	sp[0].Drain, sp[1].Drain = true, true
	p := newPool(t, Config{Route: "db", Members: sp, Log: log, TryAll: true}, nil)
	if a := p.Pick(netip.Addr{}); a != nil {
		t.Fatalf("picked %s with every member draining", a.Member().Name)
	}
	l.WaitFor(t, wait, "no upstream member is healthy; trying them anyway")
	l.WaitFor(t, wait, "no upstream member can take a session", "draining=2")
}

// max_connections holds under concurrent picks.
func TestMaxConnections(t *testing.T) {
	sp := specs("10.0.0.1:1", "10.0.0.2:1")
	sp[0].MaxConns, sp[1].MaxConns = 3, 2
	p := newPool(t, Config{Members: sp}, nil)
	var got atomic.Int64
	var mu sync.Mutex
	var held []*Attempt
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if a := p.Pick(netip.Addr{}); a != nil {
					got.Add(1)
					mu.Lock()
					held = append(held, a)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if got.Load() != 5 {
		t.Errorf("%d sessions admitted, want 5 (caps 3 and 2)", got.Load())
	}
	for _, a := range held {
		a.Done()
	}
	if a := p.Pick(netip.Addr{}); a == nil {
		t.Error("no member after every session ended")
	} else {
		a.Done()
	}
}

// An active check finds a member that answers wrong, and brings it back
// after rise good answers; the log says when and why.
func TestActiveCheck(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(wait))
				buf := make([]byte, 6)
				if _, err := c.Read(buf); err != nil {
					return
				}
				if healthy.Load() {
					c.Write([]byte("+PONG\r\n"))
				} else {
					c.Write([]byte("-ERR\r\n"))
				}
			})
		}
	})
	l, log := testutil.NewLogs()
	p := newPool(t, Config{
		Route: "redis", Members: specs(ln.Addr().String()), Log: log,
		Check:         &health.Check{Timeout: time.Second, Send: []byte("PING\r\n"), Expect: []byte("+PONG")},
		CheckInterval: 20 * time.Millisecond, Rise: 2, Fall: 2,
	}, nil)
	m := p.Members()[0]
	healthy.Store(false)
	l.WaitFor(t, wait, "upstream member down", ln.Addr().String(), "2 health checks failed", `-ERR`)
	if p.Pick(netip.Addr{}) != nil {
		t.Error("picked a member its health check found down")
	}
	healthy.Store(true)
	l.WaitFor(t, wait, "upstream member up", ln.Addr().String(), "2 health checks passed")
	if !m.usable(time.Now().UnixNano(), false) {
		t.Error("not usable after coming up")
	}
}

// A reload keeps the health and live sessions of members that stay, and
// drops the verdict of a check that changed.
func TestReloadKeepsHealth(t *testing.T) {
	check := &health.Check{Timeout: time.Second}
	cfg := Config{Members: specs("10.0.0.1:1", "10.0.0.2:1"), Check: check, CheckInterval: time.Hour, Rise: 1, Fall: 1,
		Passive: Passive{Failures: 1, Backoff: time.Hour}}
	old, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	old.Stop()
	ms := old.Members()
	ms[0].v.down.Store(true)
	ms[1].h.ejectEnd.Store(time.Now().Add(time.Hour).UnixNano())
	a := old.Pick(netip.Addr{}) // none can take it
	if a != nil {
		t.Fatal("picked a member that is down")
	}
	ms[1].h.active.Store(7) // live sessions of the old pool
	// Same members and check, one more member: state carries.
	cfg.Members = specs("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")
	p := newPool(t, cfg, old)
	byAddr := map[string]*Member{}
	for _, m := range p.Members() {
		byAddr[m.Addr.String()] = m
	}
	if !byAddr["10.0.0.1:1"].v.down.Load() || byAddr["10.0.0.2:1"].Active() != 7 ||
		byAddr["10.0.0.2:1"].usable(time.Now().UnixNano(), false) || !byAddr["10.0.0.3:1"].usable(time.Now().UnixNano(), false) {
		t.Error("the reload lost the members' health or live sessions")
	}
	// A different check: its verdict starts afresh; the ejection stays.
	cfg.Check = &health.Check{Timeout: 2 * time.Second}
	q := newPool(t, cfg, p)
	for _, m := range q.Members() {
		if m.Addr.String() == "10.0.0.1:1" && m.v.down.Load() {
			t.Error("the old check's verdict carried over to a new check")
		}
		if m.Addr.String() == "10.0.0.2:1" && m.usable(time.Now().UnixNano(), false) {
			t.Error("the passive ejection did not carry over")
		}
	}
}

func TestParseBalance(t *testing.T) {
	for _, b := range []Balance{RoundRobin, LeastConn, Random, Hash} {
		got, err := ParseBalance(b.String())
		if err != nil || got != b {
			t.Errorf("ParseBalance(%q) = %v, %v", b.String(), got, err)
		}
	}
	if _, err := ParseBalance("weighted"); err == nil || !strings.Contains(err.Error(), "weighted") {
		t.Errorf("an unknown balance: %v", err)
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("a pool with no members")
	}
	if _, err := ParseAddress("nohost"); err == nil {
		t.Error("ParseAddress accepted an address without a port")
	}
}

// A reload that fails after its pools were made leaves the running pool
// as it was: the new pool's own verdicts are its own.
func TestFailedReloadLeavesRunningPool(t *testing.T) {
	cfg := Config{Members: specs("10.0.0.1:1"), Check: &health.Check{Timeout: time.Second}, CheckInterval: time.Hour, Rise: 1, Fall: 1}
	running := newPool(t, cfg, nil)
	running.Members()[0].v.down.Store(true)
	cfg2 := cfg
	cfg2.Check = &health.Check{Timeout: 2 * time.Second}
	abandoned, err := New(cfg2, running)
	if err != nil {
		t.Fatal(err)
	}
	abandoned.Stop()
	if a := running.Pick(netip.Addr{}); a != nil {
		t.Error("the running pool picks its member that is down, after a reload was abandoned")
	}
	if a := abandoned.Pick(netip.Addr{}); a == nil {
		t.Error("a pool with a new check started with the old check's verdict")
	} else {
		a.Done()
	}
}

// A lone member is never ejected by the passive check: there is nowhere
// else to send its clients.
func TestLoneMemberNotEjected(t *testing.T) {
	p := newPool(t, Config{Members: specs("10.0.0.1:1"), Passive: Passive{Failures: 1, Backoff: time.Hour}}, nil)
	for range 5 {
		a := p.Pick(netip.Addr{})
		if a == nil {
			t.Fatal("the lone member was ejected")
		}
		a.Retry(errRefused)
		a.Done()
	}
}

// A connect that succeeds during an ejection ends it.
func TestConnectEndsEjection(t *testing.T) {
	p := newPool(t, Config{Members: specs("10.0.0.1:1", "10.0.0.2:1"), Passive: Passive{Failures: 1, Backoff: time.Hour}}, nil)
	first := p.Pick(netip.Addr{}) // in flight
	m := first.Member()
	for {
		a := p.Pick(netip.Addr{})
		if a.Member() == m {
			a.Retry(errRefused)
			a.Done()
			break
		}
		a.Done()
	}
	if m.usable(time.Now().UnixNano(), false) {
		t.Fatal("not ejected")
	}
	first.Connected()
	first.Done()
	if !m.usable(time.Now().UnixNano(), false) {
		t.Error("still ejected after a connect succeeded")
	}
}

// TestSendProxyPerMember pins how a member's PROXY version resolves: its
// Spec's own, else the route's; NoProxy sends none whatever the route
// says; an Attempt reports its member's (relay.MemberProxy).
func TestSendProxyPerMember(t *testing.T) {
	ss := specs("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")
	ss[1].SendProxy = peek.V1
	ss[2].SendProxy = NoProxy
	p := newPool(t, Config{Route: "pp", Members: ss, SendProxy: peek.V2, Balance: Hash}, nil)
	want := map[string]uint8{"10.0.0.1:1": peek.V2, "10.0.0.2:1": peek.V1, "10.0.0.3:1": 0}
	for _, m := range p.Members() {
		if m.SendProxy != want[m.Name] {
			t.Errorf("member %s sends v%d, want v%d", m.Name, m.SendProxy, want[m.Name])
		}
	}
	if !p.SendsProxy() {
		t.Error("SendsProxy false with a route version")
	}
	for i := range 32 {
		a := p.Pick(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		if a.SendProxy() != want[a.Member().Name] {
			t.Errorf("attempt on %s reports v%d", a.Member().Name, a.SendProxy())
		}
		a.Done()
	}
	if newPool(t, Config{Route: "none", Members: specs("10.0.0.1:1")}, nil).SendsProxy() {
		t.Error("SendsProxy true with no version anywhere")
	}
	only := specs("10.0.0.1:1")
	only[0].SendProxy = peek.V1
	if !newPool(t, Config{Route: "one", Members: only}, nil).SendsProxy() {
		t.Error("SendsProxy false with a member's own version")
	}
}

// TestSendsProxyReadsNoSpecs: SendsProxy is asked for every session, so
// it is made once by New, not by a scan of the specs on each call: a
// change to the specs' slice after New (which the pool must not see
// anyway) leaves its answer as it was.
func TestSendsProxyReadsNoSpecs(t *testing.T) {
	addrs := make([]string, 64)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.%d.%d:1", i/256, i%256+1)
	}
	ss := specs(addrs...)
	ss[len(ss)-1].SendProxy = peek.V1 // only the last spec sends one
	p := newPool(t, Config{Route: "scan", Members: ss}, nil)
	if !p.SendsProxy() {
		t.Fatal("SendsProxy false with the last spec's own version")
	}
	ss[len(ss)-1].SendProxy = 0
	if !p.SendsProxy() {
		t.Error("SendsProxy scans the specs on every call")
	}
}

// TestCheckSendsProxyLocal: a member sent PROXY headers gets one on its
// health checks too, a LOCAL one (a balancer's own connection, spec
// §2.2), before the check's bytes; CheckProxy none sends none; auto
// sends none when the check probes another port.
func TestCheckSendsProxyLocal(t *testing.T) {
	for _, tc := range []struct {
		name      string
		member    uint8
		check     uint8
		otherPort bool
		want      string // what the member reads before "PING"
	}{
		{name: "auto v2", member: peek.V2, want: "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"}, // spec §2.2: LOCAL, UNSPEC, no address
		{name: "auto v1", member: peek.V1, want: "PROXY UNKNOWN\r\n"},
		{name: "forced v1", check: peek.V1, want: "PROXY UNKNOWN\r\n"},
		{name: "none", member: peek.V2, check: NoProxy},
		{name: "auto, another port", member: peek.V2, otherPort: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan string, 16)
			up := testutil.NewUpstream(t, func(c *net.TCPConn) {
				c.SetReadDeadline(time.Now().Add(wait))
				var b []byte
				buf := make([]byte, 256)
				for !strings.HasSuffix(string(b), "PING\r\n") {
					n, err := c.Read(buf)
					b = append(b, buf[:n]...)
					if err != nil {
						break
					}
				}
				got <- strings.TrimSuffix(string(b), "PING\r\n")
				c.Write([]byte("+PONG\r\n"))
			})
			ss := specs(up.Addr())
			ss[0].SendProxy = tc.member
			check := &health.Check{Timeout: wait, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}
			if tc.otherPort {
				check.Port = ss[0].Port // the same listener, named as another port
			}
			newPool(t, Config{Route: "hc", Members: ss, Check: check, CheckInterval: time.Hour, CheckProxy: tc.check}, nil)
			select {
			case b := <-got:
				if b != tc.want {
					t.Errorf("member read %q before the check, want %q", b, tc.want)
				}
			case <-time.After(wait):
				t.Fatal("no health check arrived")
			}
		})
	}
}
