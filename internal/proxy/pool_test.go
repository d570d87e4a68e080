package proxy_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/discover"
	"github.com/pierproxy/pier/internal/health"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/testutil/dnstest"
)

// poolRoute returns a route named name on 127.0.0.1:0 with the pool cfg,
// whose members are addrs.
func poolRoute(t *testing.T, name string, cfg pool.Config, addrs ...string) *route.Route {
	t.Helper()
	for _, a := range addrs {
		s, err := pool.ParseAddress(a)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Members = append(cfg.Members, s)
	}
	cfg.Route = name
	p, err := pool.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	rt := newRoute(t, name, addrs[0])
	rt.Pool = p
	return rt
}

// echoAt is an echo server on addr that a test can stop and start again on
// the same address, counting the connections it accepts.
type echoAt struct {
	addr     string
	accepted atomic.Int64
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func newEchoAt(t *testing.T) *echoAt {
	e := &echoAt{addr: "127.0.0.1:0"}
	e.start(t)
	t.Cleanup(e.stop)
	return e
}

func (e *echoAt) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.mu.Lock()
	e.ln, e.conns = ln, make(map[net.Conn]bool)
	e.mu.Unlock()
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.mu.Lock()
			e.conns[c] = true
			e.mu.Unlock()
			e.wg.Go(func() {
				testutil.Echo(c.(*net.TCPConn))
				c.Close()
			})
		}
	})
}

// stop closes the listener and every connection: the member is dead.
func (e *echoAt) stop() {
	e.mu.Lock()
	if e.ln != nil {
		e.ln.Close()
		e.ln = nil
	}
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// A member killed under steady traffic is found by its health check;
// from then on no new client fails or is even sent to it. Brought back,
// it rejoins after rise checks and takes sessions again.
func TestKillMemberUnderTraffic(t *testing.T) {
	a, b, c := newEchoAt(t), newEchoAt(t), newEchoAt(t)
	logs, log := testutil.NewLogs()
	rt := poolRoute(t, "db", pool.Config{
		Log:   log,
		Check: &health.Check{Timeout: time.Second}, CheckInterval: 20 * time.Millisecond, Rise: 2, Fall: 2,
		Passive: pool.Passive{Failures: 1, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second},
		Retries: 2,
	}, a.addr, b.addr, c.addr)
	srv, recs := start(t, rt)
	addr := srv.Addrs("db")[0].String()

	// Steady traffic, from before the kill until well after it is found.
	stop := make(chan struct{})
	var failed atomic.Int64
	var sessions atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				sessions.Add(1)
				if got, err := roundTrip(addr); err != nil || got != "q" {
					failed.Add(1)
				}
			}
		})
	}
	b.stop()
	// Sessions sent to it fail over (and the passive check ejects it);
	// the active check finds it down after fall checks.
	logs.WaitFor(t, wait, "upstream member down", "addr="+b.addr, "2 health checks failed")
	close(stop)
	wg.Wait()
	// Sessions on b when it died fail; new ones go elsewhere, retried
	// if they were sent to b.
	t.Logf("%d sessions under traffic while the member died, %d failed", sessions.Load(), failed.Load())
	for range sessions.Load() {
		recs.Next(t, wait)
	}

	// Found down: every new client succeeds, on the first member tried.
	for i := range 60 {
		if got, err := roundTrip(addr); err != nil || got != "q" {
			t.Fatalf("client %d after the member was found down: %q, %v", i, got, err)
		}
		rec := recs.Next(t, wait)
		if rec["tries"] != nil || rec["dialed"] == b.addr {
			t.Fatalf("client %d was sent to the dead member: %v", i, rec)
		}
	}

	// Back: after rise checks it takes sessions again.
	b.start(t)
	logs.WaitFor(t, wait, "upstream member up", "addr="+b.addr, "2 health checks passed")
	before := b.accepted.Load()
	for i := range 30 {
		if got, err := roundTrip(addr); err != nil || got != "q" {
			t.Fatalf("client %d after the member came back: %q, %v", i, got, err)
		}
		recs.Next(t, wait)
	}
	// Round robin over three gives it about ten; its turn in the rotation
	// starts where it left off, so allow for that.
	if n := b.accepted.Load() - before; n < 5 {
		t.Errorf("the member that came back accepted %d connections of 30 sessions, want about 10", n)
	}
}

// With every member down, a client is closed at once, its session logged
// as no_upstream, and the log says why.
func TestEveryMemberDown(t *testing.T) {
	logs, log := testutil.NewLogs()
	x, y := testutil.RefusedAddr(t), testutil.RefusedAddr(t)
	rt := poolRoute(t, "db", pool.Config{
		Log:   log,
		Check: &health.Check{Timeout: time.Second}, CheckInterval: 20 * time.Millisecond, Rise: 1, Fall: 1,
	}, x, y)
	srv, recs := start(t, rt)
	logs.WaitFor(t, wait, "upstream member down", "addr="+x)
	logs.WaitFor(t, wait, "upstream member down", "addr="+y)
	for range 3 {
		c := dial(t, srv, "db")
		if n, err := c.Read(make([]byte, 1)); n != 0 || (err != io.EOF && !testutil.IsReset(err)) {
			t.Fatalf("read %d, %v; want the client closed", n, err)
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "no_upstream")
		// "At once": no dial, so no dial's time either.
		if rec["dialed"] != nil {
			t.Errorf("a member was dialed: %v", rec)
		}
	}
	line := logs.WaitFor(t, wait, "no upstream member can take a session", "route=db", "members=2", "down=2")
	t.Log(line)
	if n := logs.Count("no upstream member can take a session"); n != 1 {
		t.Errorf("the warning was logged %d times for 3 clients within a second, want once", n)
	}
	if rt.Pool.Refused() != 3 {
		t.Errorf("refused %d, want 3", rt.Pool.Refused())
	}
}

// A failed dial, refused or timed out, is retried on another member; the
// bytes the client sent early reach the upstream once, and come back
// exactly.
func TestRetryToAnotherMember(t *testing.T) {
	h := &hashEcho{hashes: make(map[string]bool)}
	good := testutil.NewUpstream(t, h.serve)
	for _, tc := range []struct {
		name string
		bad  string
		want string // the error of the first try
	}{
		{"refused", testutil.RefusedAddr(t), "refused"},
		{"timeout", unresponsive(t), "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := poolRoute(t, "r", pool.Config{Retries: 1}, tc.bad, good.Addr())
			rt.ConnectTimeout = 200 * time.Millisecond
			srv, recs := start(t, rt)
			retried := 0
			for i := range 6 {
				c := dial(t, srv, "r")
				// Sent before pier has even dialed.
				data := make([]byte, 100<<10)
				rand.NewChaCha8([32]byte{byte(i)}).Read(data)
				sum := sha256.Sum256(data)
				go func() {
					c.Write(data)
					c.CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil || sha256.Sum256(got) != sum {
					t.Fatalf("session %d: %d bytes back (%v), want the %d sent", i, len(got), err, len(data))
				}
				rec := recs.Next(t, wait)
				wantReason(t, rec, "done")
				if rec["tries"] != nil {
					retried++
					if rec["dialed"] != good.Addr() {
						t.Errorf("session %d retried to %v, want %s", i, rec["dialed"], good.Addr())
					}
				}
				h.mu.Lock()
				once := h.hashes[fmt.Sprintf("%x", sum)]
				h.mu.Unlock()
				if !once {
					t.Errorf("session %d: the upstream did not get the bytes sent", i)
				}
			}
			// Round robin over two: every other session tries the bad one.
			if retried != 3 {
				t.Errorf("%d of 6 sessions were retried, want 3", retried)
			}
		})
	}
}

// A member that accepted and sent bytes is never retried, even if it
// then closes at once: the client may have acted on what it got.
func TestNoRetryAfterBytes(t *testing.T) {
	hello := testutil.NewUpstream(t, func(c *net.TCPConn) {
		io.ReadAll(c)
		c.Write([]byte("hello"))
		c.Close()
	})
	other := testutil.NewUpstream(t, testutil.Echo)
	rt := poolRoute(t, "r", pool.Config{Retries: 3}, hello.Addr(), other.Addr())
	srv, recs := start(t, rt)
	for i := range 4 {
		c := dial(t, srv, "r")
		c.Write([]byte("q"))
		c.CloseWrite()
		got, _ := io.ReadAll(c)
		rec := recs.Next(t, wait)
		if rec["tries"] != nil {
			t.Fatalf("session %d was retried: %v", i, rec)
		}
		if rec["dialed"] == hello.Addr() && string(got) != "hello" {
			t.Errorf("session %d: got %q from the member that says hello", i, got)
		}
		if rec["dialed"] == other.Addr() && string(got) != "q" {
			t.Errorf("session %d: got %q from the echo", i, got)
		}
	}
}

// Passive checks: a member that refuses is ejected after failures in a
// row and the log says so; sessions keep succeeding through retries.
func TestPassiveEjectionOnSockets(t *testing.T) {
	logs, log := testutil.NewLogs()
	bad := testutil.RefusedAddr(t)
	good := testutil.NewUpstream(t, testutil.Echo)
	rt := poolRoute(t, "r", pool.Config{
		Log: log, Retries: 1,
		Passive: pool.Passive{Failures: 2, Backoff: time.Hour, MaxBackoff: time.Hour},
	}, bad, good.Addr())
	srv, recs := start(t, rt)
	addr := srv.Addrs("r")[0].String()
	tries := 0
	for i := range 10 {
		if got, err := roundTrip(addr); err != nil || got != "q" {
			t.Fatalf("client %d: %q, %v", i, got, err)
		}
		if recs.Next(t, wait)["tries"] != nil {
			tries++
		}
	}
	if tries != 2 {
		t.Errorf("%d sessions tried the refusing member, want 2 (then it is ejected)", tries)
	}
	line := logs.WaitFor(t, wait, "upstream member down", "addr="+bad, "2 tries in a row failed", "refused")
	if !strings.Contains(line, "for=1h0m0s") {
		t.Errorf("the log does not say for how long: %s", line)
	}
}

// Drained members and members at their cap take no new sessions.
func TestDrainAndMemberCap(t *testing.T) {
	a := testutil.NewUpstream(t, testutil.Hold)
	b := testutil.NewUpstream(t, testutil.Hold)
	d := testutil.NewUpstream(t, testutil.Echo)
	sa, _ := pool.ParseAddress(a.Addr())
	sb, _ := pool.ParseAddress(b.Addr())
	sd, _ := pool.ParseAddress(d.Addr())
	sa.MaxConns, sb.MaxConns, sd.Drain = 2, 1, true
	p, err := pool.New(pool.Config{Route: "r", Members: []pool.Spec{sa, sb, sd}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	rt := newRoute(t, "r", a.Addr())
	rt.Pool = p
	srv, recs := start(t, rt)
	for range 3 {
		c := dial(t, srv, "r")
		c.Write([]byte("x")) // held: the session stays live
	}
	// The fourth: a and b are full, d drains.
	c := dial(t, srv, "r")
	c.Read(make([]byte, 1))
	rec := recs.Next(t, wait)
	wantReason(t, rec, "no_upstream")
	var live int64
	for _, m := range p.Members() {
		live += m.Active()
		if m.Addr.String() == d.Addr() && m.Active() != 0 {
			t.Errorf("the drained member has %d sessions", m.Active())
		}
	}
	if live != 3 {
		t.Errorf("%d live sessions counted, want 3", live)
	}
}

// A try that the connect budget cuts short still counts against its
// member: every member that timed out is ejected.
func TestBudgetCutTryCounts(t *testing.T) {
	a, b, c := unresponsive(t), unresponsive(t), unresponsive(t)
	rt := poolRoute(t, "r", pool.Config{Retries: 2, Passive: pool.Passive{Failures: 1, Backoff: time.Hour, MaxBackoff: time.Hour}}, a, b, c)
	rt.ConnectTimeout, rt.ConnectBudget = 100*time.Millisecond, 300*time.Millisecond
	srv, recs := start(t, rt)
	cl := dial(t, srv, "r")
	io.ReadAll(cl)
	rec := recs.Next(t, wait)
	wantReason(t, rec, "connect_timeout")
	if rec["tries"] != int64(3) {
		t.Errorf("tries %v, want 3", rec["tries"])
	}
	if x := rt.Pool.Pick(netip.Addr{}); x != nil {
		t.Errorf("%s timed out and is still picked", x.Member().Addr)
		x.Done()
	}
}

// Members found through DNS follow its answers: new sessions go to the new
// address, and a session live on the old one carries on untouched.
func TestDiscoveryLeavesLiveSessions(t *testing.T) {
	old := testutil.NewUpstream(t, testutil.Echo)
	_, port, _ := net.SplitHostPort(old.Addr())
	// The new member: an echo on 127.0.0.2, same port.
	ln, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2:%s: %v", port, err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() { testutil.Echo(c.(*net.TCPConn)); c.Close() })
		}
	})
	dns := dnstest.New(t)
	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.1"))
	logs, log := testutil.NewLogs()
	n, _ := strconv.Atoi(port)
	p, err := pool.New(pool.Config{
		Route: "db", Log: log,
		Members:  []pool.Spec{{Host: "db.test", Port: uint16(n)}},
		Resolver: discover.Servers([]string{dns.Addr()}), ResolveInterval: 20 * time.Millisecond, ResolveTimeout: time.Second,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	rt := newRoute(t, "db", old.Addr())
	rt.Pool = p
	srv, recs := start(t, rt)

	live := dial(t, srv, "db")
	echo := func(c *net.TCPConn, msg string) {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, got, err)
		}
	}
	echo(live, "before")

	dns.SetA("db.test", 60, netip.MustParseAddr("127.0.0.2"))
	logs.WaitFor(t, wait, "upstream members changed", "member=db.test:"+port)
	for i := range 5 {
		if got, err := roundTrip(srv.Addrs("db")[0].String()); err != nil || got != "q" {
			t.Fatalf("new client %d: %q, %v", i, got, err)
		}
		if rec := recs.Next(t, wait); rec["dialed"] != "127.0.0.2:"+port {
			t.Fatalf("new client %d dialed %v, want the new address", i, rec["dialed"])
		}
	}
	if accepted.Load() != 5 {
		t.Errorf("the new member accepted %d sessions, want 5", accepted.Load())
	}
	// The session on the old address never noticed.
	echo(live, "after")
	live.CloseWrite()
	if rest, err := io.ReadAll(live); err != nil || len(rest) != 0 {
		t.Fatalf("end of the live session: %q, %v", rest, err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["dialed"] != old.Addr() {
		t.Errorf("the live session dialed %v, want %s", rec["dialed"], old.Addr())
	}
}
