package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/listen"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/testutil"
)

// stallLoop makes loop stuck, as a log handler that blocks would: it runs
// a function on the loop that waits until release is called (or the test
// ends), and returns once the loop is stuck in it.
func stallLoop(t *testing.T, s *Server, loop *relay.Loop) (release func()) {
	t.Helper()
	probe, err := listen.Open("127.0.0.1:0", s.log)
	if err != nil {
		t.Fatal(err)
	}
	stuck, unstick := make(chan struct{}), make(chan struct{})
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		close(unstick)
		dropped := make(chan struct{})
		loop.Unwatch(probe.Fd(), func() { probe.Close(); close(dropped) })
		select {
		case <-dropped:
		case <-time.After(lateWait):
			t.Error("the loop never let go of the probe")
		}
	}
	t.Cleanup(release) // before the server's Shutdown: cleanups run last first
	if err := <-loop.Watch(probe.Fd(), func(*relay.Loop) {
		fd, _, _, err := probe.Accept()
		if err != nil {
			return
		}
		unix.Close(fd)
		close(stuck)
		<-unstick
	}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", probe.Addr().String(), lateWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case <-stuck:
	case <-time.After(lateWait):
		t.Fatal("the loop never ran the stalling function")
	}
	return release
}

// A loop that does not answer makes a listing partial within the
// caller's bound, and the loops that answer still give their sessions;
// ending by id or by match says partial too, and nothing waits longer.
func TestSessionsPartialWhenLoopStuck(t *testing.T) {
	s := lateServer(t, 2)
	hold := testutil.NewUpstream(t, testutil.Hold)
	spec, err := pool.ParseAddress(hold.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Config{Route: "r", Members: []pool.Spec{spec}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	lateApply(t, s, &route.Route{Name: "r", Listen: []string{"127.0.0.1:0"}, Pool: p, Limit: admit.NewLimit(0)})
	release := stallLoop(t, s, s.loops[0])

	// The one loop left accepts the client and keeps it: the stuck one
	// has no fewer sessions.
	c, err := net.DialTimeout("tcp", s.Addrs("r")[0].String(), lateWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(lateWait)
	for s.loops[1].Live() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the session never started on the loop that answers")
		}
		time.Sleep(time.Millisecond)
	}

	const bound = 200 * time.Millisecond
	const slack = 2 * time.Second // a loaded machine's scheduling, not a wait for the loop
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	begin := time.Now()
	// Loop 1 took the session in the turn it accepted it (Live counts it
	// from then), so its answer holds it.
	page, matched, partial := s.Sessions(ctx, relay.Match{}, 0, 10)
	if took := time.Since(begin); took > bound+slack {
		t.Errorf("Sessions took %v with a bound of %v", took, bound)
	}
	if !partial || matched != 1 || len(page) != 1 {
		t.Errorf("partial %v, matched %d, %d listed; want true, 1, 1 (the answering loop's)", partial, matched, len(page))
	}
	if found, partial := s.EndSession(ctx, 1<<40, false); found || !partial {
		t.Errorf("EndSession: found %v, partial %v; want false, true", found, partial)
	}
	if _, partial := s.EndSessions(ctx, relay.Match{Route: "nothing"}, false); !partial {
		t.Error("EndSessions: not partial")
	}

	release()
	ctx2, cancel2 := context.WithTimeout(context.Background(), lateWait)
	defer cancel2()
	if page, _, partial := s.Sessions(ctx2, relay.Match{}, 0, 10); partial || len(page) != 1 {
		t.Errorf("with every loop answering: partial %v, %d listed", partial, len(page))
	}
	if n, partial := s.EndSessions(ctx2, relay.Match{}, true); n != 1 || partial {
		t.Errorf("ended %d, partial %v; want 1, false", n, partial)
	}
}

// A dial that failed for pier's own lack of resources counts a local-error
// pause on the listener that took the client, and only on it.
func TestListenerStatsCountLocalErrorPauses(t *testing.T) {
	s := lateServer(t, 2)
	lateApply(t, s, lateRoute(t, "a"), lateRoute(t, "b"))
	lnA := listenerOf(t, s, "a")
	for range 2 {
		onLoop(t, s, s.loops[0], func(l *relay.Loop) { lnA.pause(l, unix.EADDRNOTAVAIL) })
	}
	got := s.ListenerStats()
	if len(got) != 2 || got[0].Route != "a" || got[1].Route != "b" || got[0].Addr != lnA.Addr() {
		t.Fatalf("listener stats %+v, want a's then b's", got)
	}
	if got[0].LocalErrorPauses != 2 || got[1].LocalErrorPauses != 0 {
		t.Errorf("local-error pauses a=%d b=%d, want 2 and 0", got[0].LocalErrorPauses, got[1].LocalErrorPauses)
	}
	if got[0].AcceptErrors != 0 || got[0].DescriptorPauses != 0 {
		t.Errorf("a: %+v: only local-error pauses happened", got[0])
	}
}
