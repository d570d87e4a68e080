package proxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/testutil"
)

// A client refused by the route's limit gets an access log line of its
// own, reason=limit, at Warn, and is counted as refused, not as a session;
// Stats sums what the sessions moved.
func TestRefusedClientLoggedAndCounted(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	r := newRoute(t, "r", up.Addr())
	r.Limit = admit.NewLimit(1)
	srv, recs := start(t, r)

	live := dial(t, srv, "r")
	live.Write([]byte("hello"))
	if _, err := io.ReadFull(live, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	refused := dial(t, srv, "r")
	if n, err := refused.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("client beyond the limit read %d, %v; want closed", n, err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "limit")
	if rec["route"] != "r" || rec["client"] != refused.LocalAddr().String() {
		t.Errorf("refusal record %v: want route r and client %v", rec, refused.LocalAddr())
	}
	if st := srv.Stats(); st.Refused != 1 || st.Sessions != 0 {
		t.Errorf("stats %+v after one refusal and no end: want Refused 1, Sessions 0", st)
	}

	live.CloseWrite()
	io.ReadAll(live)
	wantReason(t, recs.Next(t, wait), "done")
	want := proxy.Stats{Sessions: 1, ToUpstream: 5, ToClient: 5, Refused: 1}
	if st := srv.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// The refusal line is at Warn, like the other clients pier could not serve.
func TestRefusedClientLineIsWarn(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Hold)
	r := newRoute(t, "r", up.Addr())
	r.Limit = admit.NewLimit(1)
	logs, log := testutil.NewLogs()
	levels := &levelLog{Handler: log.Handler(), mu: new(sync.Mutex), levels: make(map[string]slog.Level)}
	srv, err := proxy.New(proxy.Options{Log: slog.New(levels)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, srv) })
	if err := srv.Apply(table(t, r)); err != nil {
		t.Fatal(err)
	}
	dial(t, srv, "r").Write([]byte("x"))
	refused := dial(t, srv, "r")
	refused.Read(make([]byte, 1))
	logs.WaitFor(t, wait, "session", "reason=limit")
	if got := levels.levelOf("session"); got != slog.LevelWarn {
		t.Errorf("refusal logged at %v, want WARN", got)
	}
}

// Dials that fail are counted as such: a refused upstream and one with no
// member are failed dials, and sessions too.
func TestStatsCountFailedDials(t *testing.T) {
	srv, recs := start(t, newRoute(t, "r", testutil.RefusedAddr(t)))
	c := dial(t, srv, "r")
	c.Read(make([]byte, 1))
	wantReason(t, recs.Next(t, wait), "connect_failed")
	if st := srv.Stats(); st.FailedDials != 1 || st.Sessions != 1 {
		t.Errorf("stats %+v, want one failed dial in one session", st)
	}
}

// Apply logs each listener it opens ("listening") and each it closes
// ("stopped listening"), and says nothing of one it keeps.
func TestApplyLogsListenerChanges(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	logs, log := testutil.NewLogs()
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, srv) })
	a, b := newRoute(t, "a", up.Addr()), newRoute(t, "b", up.Addr())
	a.Listen, b.Listen = []string{testutil.RefusedAddr(t)}, []string{testutil.RefusedAddr(t)}
	for i, step := range []struct {
		routes          []*route.Route
		opened, stopped [2]int // of a and b, so far
	}{
		{[]*route.Route{a}, [2]int{1, 0}, [2]int{0, 0}},
		{[]*route.Route{a, b}, [2]int{1, 1}, [2]int{0, 0}}, // a kept: not logged again
		{[]*route.Route{b}, [2]int{1, 1}, [2]int{1, 0}},
	} {
		if err := srv.Apply(table(t, step.routes...)); err != nil {
			t.Fatal(err)
		}
		for k, r := range []*route.Route{a, b} {
			open := "listening route=" + r.Name + " addr=" + r.Listen[0]
			stop := "stopped " + open
			if got := logs.Count(stop); got != step.stopped[k] {
				t.Errorf("step %d: %d lines %q, want %d", i, got, stop, step.stopped[k])
			}
			if got := logs.Count(open) - logs.Count(stop); got != step.opened[k] {
				t.Errorf("step %d: %d lines %q, want %d", i, got, open, step.opened[k])
			}
		}
	}
}

// When a loop cannot watch a new listener, Apply says so and leaves
// nothing behind: the listener is closed, the old table is in force, and
// the next Apply works.
func TestApplyWatchFailureUndoesEverything(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	srv, err := proxy.New(proxy.Options{Log: slog.New(slog.DiscardHandler), Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, srv) })
	old := newRoute(t, "old", up.Addr())
	if err := srv.Apply(table(t, old)); err != nil {
		t.Fatal(err)
	}
	before := testutil.OpenFDs(t)
	boom := errors.New("no room in epoll")
	proxy.FailWatch(srv, 1, boom) // the second loop refuses the new listener
	next := newRoute(t, "next", up.Addr())
	next.Listen = []string{testutil.RefusedAddr(t)}
	err = srv.Apply(table(t, old, next))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "route next") {
		t.Fatalf("Apply: %v, want the watch's error naming the route", err)
	}
	if addrs := srv.Addrs("next"); len(addrs) != 0 {
		t.Errorf("a failed Apply left route next listening on %v", addrs)
	}
	if c, err := net.DialTimeout("tcp", next.Listen[0], wait); err == nil {
		c.Close()
		t.Errorf("%s still accepts after a failed Apply", next.Listen[0])
	}
	// More after is a leak; fewer is an earlier test's connection that
	// finished closing meanwhile (its upstream's handler), not this one's.
	if after := testutil.OpenFDs(t); after > before {
		t.Errorf("%d descriptors open after a failed Apply, %d before", after, before)
	}
	// The old table is in force, and its route serves.
	if got, err := roundTrip(srv.Addrs("old")[0].String()); err != nil || got != "q" {
		t.Errorf("old route after a failed Apply: %q, %v", got, err)
	}
	if err := srv.Apply(table(t, old, next)); err != nil {
		t.Fatalf("Apply after the failure: %v", err)
	}
}

// Loops default to GOMAXPROCS, which follows a container's CPU limit, not
// to the machine's CPUs.
func TestLoopsFollowGOMAXPROCS(t *testing.T) {
	want := runtime.NumCPU() + 1
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(want))
	srv, err := proxy.New(proxy.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, srv)
	if got := proxy.Loops(srv); got != want {
		t.Errorf("%d loops, want GOMAXPROCS=%d", got, want)
	}
}

// Shutdown returns within its grace and drainBound even when a relay loop
// is stuck in a log handler that blocks: whether the loop stalled ending a
// session Shutdown cut short, or ending one on its own before Shutdown was
// called (then the loop cannot even let go of the listener). Addrs answers
// meanwhile, and the listener the stuck loop held is closed once the loop
// lets go of it.
func TestShutdownBoundedWhenLogStalls(t *testing.T) {
	for _, endedBefore := range []bool{false, true} {
		name := "live session"
		if endedBefore {
			name = "session ended before shutdown"
		}
		t.Run(name, func(t *testing.T) { shutdownWithLogStalled(t, endedBefore) })
	}
}

func shutdownWithLogStalled(t *testing.T, endedBefore bool) {
	up := testutil.NewUpstream(t, testutil.Echo)
	stall := &stallLog{release: make(chan struct{}), stalled: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(stall.release)
		}
	}
	defer release() // a failed test still lets the loop go
	srv, err := proxy.New(proxy.Options{Log: slog.New(stall), Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(table(t, newRoute(t, "r", up.Addr()))); err != nil {
		t.Fatal(err)
	}
	// Short only from here: the Apply above waits for a healthy loop,
	// which may be slow on a loaded machine.
	defer proxy.SetDrainBound(proxy.SetDrainBound(300 * time.Millisecond))
	addr := srv.Addrs("r")[0].String()
	c := dial(t, srv, "r")
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if endedBefore {
		stall.endSession(t, c) // its log line stalls the loop
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- srv.Shutdown(ctx) }()
	addrs := make(chan int, 1)
	go func() { addrs <- len(srv.Addrs("r")) }()
	select {
	case <-addrs:
	case <-time.After(wait):
		t.Error("Addrs hangs while a loop is stuck")
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("shutdown: %v, want deadline exceeded", err)
		}
		t.Logf("shutdown returned after %v with the log stalled", time.Since(begin))
	case <-time.After(wait):
		t.Fatal("shutdown still waiting on a stalled log")
	}
	select {
	case <-stall.stalled:
	default:
		t.Error("the log never stalled: the test proves nothing")
	}
	// Let the loop finish, and wait for it: no goroutine outlives the test.
	release()
	for deadline := time.Now().Add(wait); srv.Live() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("sessions still live after the log was released")
		}
		time.Sleep(time.Millisecond)
	}
	// The listener closes once the loop has let go of it.
	for deadline := time.Now().Add(wait); ; {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener is still open after the loop let go of it")
		}
		time.Sleep(time.Millisecond)
	}
}

// Apply does not hang on a relay loop stuck in a log handler: it gives up
// after drainBound, says so, and the table in force stays as it was.
func TestApplyBoundedWhenLoopStuck(t *testing.T) {
	// Long enough for a healthy loop to answer on a loaded machine under
	// -race; the stuck phase waits it out once.
	defer proxy.SetDrainBound(proxy.SetDrainBound(2 * time.Second))
	up := testutil.NewUpstream(t, testutil.Echo)
	stall := &stallLog{release: make(chan struct{}), stalled: make(chan struct{})}
	srv, err := proxy.New(proxy.Options{Log: slog.New(stall), Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := newRoute(t, "r", up.Addr())
	if err := srv.Apply(table(t, r)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	released := make(chan struct{})
	defer func() {
		select {
		case <-released:
		default:
			close(stall.release)
		}
	}()
	c := dial(t, srv, "r")
	c.Write([]byte("x"))
	stall.endSession(t, c)

	applied := make(chan error, 1)
	go func() { applied <- srv.Apply(table(t, r, newRoute(t, "r2", up.Addr()))) }()
	select {
	case err := <-applied:
		if err == nil || !strings.Contains(err.Error(), "did not answer") {
			t.Errorf("apply with a stuck loop: %v, want the loop's silence", err)
		}
	case <-time.After(wait):
		t.Fatal("apply hangs on a stuck loop")
	}
	if got := srv.Addrs("r2"); len(got) != 0 {
		t.Errorf("route r2 listens on %v after a failed apply", got)
	}
	if got := srv.Addrs("r"); len(got) != 1 {
		t.Errorf("route r listens on %v after a failed apply, want its one listener", got)
	}
	close(stall.release)
	close(released)
	// The loop is back: the same table applies now.
	if err := srv.Apply(table(t, r, newRoute(t, "r2", up.Addr()))); err != nil {
		t.Errorf("apply once the loop is back: %v", err)
	}
}

// A Shutdown whose ctx is already done, with no session live, cuts nothing
// short: it returns nil, every time (a select between a done ctx and the
// drained sessions must not pick at random).
func TestShutdownDoneCtxNoSessionsReturnsNil(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 50 {
		srv, err := proxy.New(proxy.Options{Log: slog.New(slog.DiscardHandler), Loops: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Apply(table(t, newRoute(t, "r", up.Addr()))); err != nil {
			t.Fatal(err)
		}
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown %d with no session: %v, want nil", i, err)
		}
	}
}

// A session may hold six descriptors: its two sockets and a splice pipe
// (two ends) for each direction, when both directions have bytes in
// flight at once. The descriptor reserve counts no fewer.
func TestDescriptorsPerSessionCoversBothPipes(t *testing.T) {
	const flood = 8 << 20 // more than a pipe and the socket buffers' usual size
	// The upstream writes and never reads, and stays open until the test
	// ends: closing with unread bytes would reset the session before both
	// pipes filled, where the kernel's buffers can take all of flood.
	hold := make(chan struct{})
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.Write(make([]byte, flood)) // never reads: the client's bytes back up
		<-hold
	})
	srv, err := proxy.New(proxy.Options{Log: slog.New(slog.DiscardHandler), Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(table(t, newRoute(t, "r", up.Addr()))); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, srv)
	c := dial(t, srv, "r")
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		c.Write(make([]byte, flood)) // never reads: the upstream's back up
	}()
	defer func() {
		c.Close() // ends the write, and the session
		<-wrote
		close(hold)
		up.Close()
	}()
	var most int64
	for deadline := time.Now().Add(wait); most < 6; {
		most = max(most, proxy.Descriptors(srv))
		if time.Now().After(deadline) {
			t.Fatalf("the session held at most %d descriptors; the test needs both pipes full", most)
		}
		time.Sleep(time.Millisecond)
	}
	if most > proxy.DescriptorsPerSession {
		t.Errorf("a session held %d descriptors; the reserve counts %d per session", most, proxy.DescriptorsPerSession)
	}
}

// stallLog blocks every "session" line until release is closed.
type stallLog struct {
	release chan struct{}
	stalled chan struct{}
	once    sync.Once
}

// endSession ends c's session with a FIN both ways and waits until its
// log line has stalled the loop that ran it.
func (h *stallLog) endSession(t *testing.T, c *net.TCPConn) {
	t.Helper()
	c.CloseWrite()
	io.ReadAll(c)
	select {
	case <-h.stalled:
	case <-time.After(wait):
		t.Fatal("the session's log line never came")
	}
}

func (h *stallLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *stallLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *stallLog) WithGroup(string) slog.Handler            { return h }
func (h *stallLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "session" {
		h.once.Do(func() { close(h.stalled) })
		<-h.release
	}
	return nil
}

// levelLog remembers the level of the last line of each message.
type levelLog struct {
	slog.Handler
	mu     *sync.Mutex
	levels map[string]slog.Level
}

func (h *levelLog) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.levels[r.Message] = r.Level
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h *levelLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelLog{Handler: h.Handler.WithAttrs(as), mu: h.mu, levels: h.levels}
}

func (h *levelLog) levelOf(msg string) slog.Level {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.levels[msg]
}

func shutdown(t testing.TB, srv *proxy.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
