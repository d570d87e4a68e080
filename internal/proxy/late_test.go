package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/listen"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/route"
)

// lateWait bounds every wait in this file; it is never slept.
const lateWait = 10 * time.Second

// lateRoute is a route named name on 127.0.0.1:0 that no test here dials
// through.
func lateRoute(t *testing.T, name string) *route.Route {
	t.Helper()
	spec, err := pool.ParseAddress("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Config{Route: name, Members: []pool.Spec{spec}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &route.Route{
		Name:           name,
		Listen:         []string{"127.0.0.1:0"},
		Pool:           p,
		Limit:          admit.NewLimit(0),
		ConnectTimeout: time.Second,
	}
}

func lateApply(t *testing.T, s *Server, routes ...*route.Route) {
	t.Helper()
	tb, err := route.NewTable(routes, route.Global{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(tb); err != nil {
		t.Fatal(err)
	}
}

// listenerOf returns the open listener of route name.
func listenerOf(t *testing.T, s *Server, name string) *listener {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ln, ok := s.listeners[route.Key(name, false, "127.0.0.1:0")]
	if !ok {
		t.Fatalf("no listener for route %s", name)
	}
	return ln
}

// epollEntries counts the entries for descriptor fd in every epoll
// instance the process holds, as the kernel lists them in fdinfo.
func epollEntries(t *testing.T, fd int) int {
	t.Helper()
	files, err := filepath.Glob("/proc/self/fdinfo/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // closed since the listing
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) >= 2 && fields[0] == "tfd:" {
				if n2, err := strconv.Atoi(fields[1]); err == nil && n2 == fd {
					n++
				}
			}
		}
	}
	return n
}

// A session outlives the listener that accepted it, and with it the
// listener's pause (relay.Params.LocalError), which names the watch to
// pause by descriptor number. Once a reload has closed that listener and a
// new one has its number, a local error of the old listener's session
// must not stop the new listener accepting.
func TestClosedListenersPauseSparesItsSuccessor(t *testing.T) {
	// spare is a descriptor below every listener's, freed later so that
	// the new listener's socket lands on the old one's number.
	spare, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	spareOpen := true
	defer func() {
		if spareOpen {
			unix.Close(spare)
		}
	}()

	s := lateServer(t, 1)
	a, b, c := lateRoute(t, "a"), lateRoute(t, "b"), lateRoute(t, "c")
	lateApply(t, s, a)
	lnA := listenerOf(t, s, "a")
	fdA := lnA.Fd()
	lateApply(t, s, b) // closes a's listener
	if !lnA.closed.Load() {
		t.Fatal("Apply returned with the dropped listener still open")
	}

	// Take every free number below fdA, then free spare: listen.Open's
	// socket takes spare's number, and its duplicate, the one the loops
	// watch, fdA.
	var fillers []int
	defer func() {
		for _, f := range fillers {
			unix.Close(f)
		}
	}()
	for {
		f, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if f >= fdA {
			unix.Close(f)
			break
		}
		fillers = append(fillers, f)
	}
	unix.Close(spare)
	spareOpen = false
	lateApply(t, s, b, c)
	lnC := listenerOf(t, s, "c")
	if lnC.Fd() != fdA {
		t.Fatalf("setup: c's listener has descriptor %d, not a's old %d", lnC.Fd(), fdA)
	}
	if n := epollEntries(t, fdA); n != 1 {
		t.Fatalf("setup: %d epoll entries for c's listener, want the loop's 1", n)
	}

	// Run a's pause on the loop, as a dial of a's session failing with
	// EMFILE would.
	onLoop(t, s, s.loops[0], func(l *relay.Loop) {
		for range 10 { // up to listen's longest backoff
			lnA.pause(l, unix.EMFILE)
		}
	})
	// A paused watch is taken out of the loop's epoll until its pause
	// (a second here) is over.
	if n := epollEntries(t, fdA); n != 1 {
		t.Errorf("the closed listener's pause took the new listener on its number out of the loop's epoll (%d entries)", n)
	}
	if got := s.localErrors.Load(); got != 10 {
		t.Errorf("localErrors = %d, want the 10 local errors counted", got)
	}
}

// A dial that fails for pier's own lack of resources (out of ephemeral
// ports) pauses accepting on every loop, not only on the loop the session
// ran on: the loop that accepts and hands its clients over must back off
// too, or it accepts them only for their dials to fail.
func TestLocalErrorPausesEveryLoop(t *testing.T) {
	s := lateServer(t, 2)
	lateApply(t, s, lateRoute(t, "a"))
	lnA := listenerOf(t, s, "a")

	// The pause runs on loop 0, as a failed dial's would.
	var at time.Time
	onLoop(t, s, s.loops[0], func(l *relay.Loop) {
		lnA.pause(l, unix.EADDRNOTAVAIL)
		at = time.Now()
	})

	// A client now waits out the pause on both loops: its session (whose
	// upstream refuses) ends no sooner.
	c, err := net.DialTimeout("tcp", lnA.Addr().String(), lateWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(lateWait))
	io.ReadAll(c)
	if waited := time.Since(at); waited < localErrorPause {
		t.Errorf("a client was served %v after the pause, within the %v every loop should back off", waited, localErrorPause)
	}
}

// onLoop runs f once on loop's goroutine, where a session's LocalError
// runs: from the ready of a probe listener the loop watches. It returns
// once f has run and the loop has let go of the probe.
func onLoop(t *testing.T, s *Server, loop *relay.Loop, f func(*relay.Loop)) {
	t.Helper()
	probe, err := listen.Open("127.0.0.1:0", s.log)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	var once sync.Once
	if err := <-loop.Watch(probe.Fd(), func(l *relay.Loop) {
		for {
			fd, _, _, err := probe.Accept()
			if err != nil {
				return
			}
			unix.Close(fd)
			once.Do(func() { f(l); close(ran) })
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dropped := make(chan struct{})
		loop.Unwatch(probe.Fd(), func() { probe.Close(); close(dropped) })
		<-dropped
	}()
	conn, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(conn)
	addr := probe.Addr()
	if err := unix.Connect(conn, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(lateWait):
		t.Fatal("the probe's ready never ran")
	}
}

// lateServer is a server with loops relay loops, stopped when the test
// ends.
func lateServer(t *testing.T, loops int) *Server {
	t.Helper()
	s, err := New(Options{Log: slog.New(slog.DiscardHandler), Loops: loops})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), lateWait)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}
