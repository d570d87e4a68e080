package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/session"
)

// The harness drives a Loop by hand, without Run: sessions over socket
// pairs, readiness fed to dispatch as epoll events the test makes up (or
// reads from poll(2)), and the loop's later stages (run queue, timers)
// called one at a time. A test can then stop between any two steps and
// look at the flows, which are the loop goroutine's alone under Run.

// harness is one hand-driven loop.
type harness struct {
	t *testing.T
	l *Loop
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	l, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.shutdown)
	return &harness{t: t, l: l}
}

// hsession is a relaying session whose client and upstream are socket
// pairs: the loop holds one end of each, the test the other.
type hsession struct {
	c                *conn
	client, upstream *os.File // the test's ends
	clientFd, upFd   int      // the loop's ends
	ended            chan *session.Record
}

// startLoop runs a new loop on a goroutine of its own. stop closes it and
// waits for Run to return, reporting an error it returned; call it once.
func startLoop(tb testing.TB) (l *Loop, stop func()) {
	tb.Helper()
	l, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- l.Run() }()
	return l, func() {
		l.Close()
		if err := <-ran; err != nil {
			tb.Error(err)
		}
	}
}

// listenerFD opens a TCP listener on 127.0.0.1:0 and returns it with a
// non-blocking duplicate of its descriptor, for a loop to watch; both are
// closed when the test ends.
func listenerFD(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fd := int(f.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	return ln, fd
}

// socketPair returns the loop's end (non-blocking) and the test's.
func socketPair(t *testing.T) (int, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { peer.Close() })
	return fds[0], peer
}

// session starts a session already connected: as the loop has it once its
// upstream's handshake is done.
func (h *harness) session() *hsession {
	h.t.Helper()
	s := &hsession{ended: make(chan *session.Record, 1)}
	s.clientFd, s.client = socketPair(h.t)
	s.upFd, s.upstream = socketPair(h.t)
	l := h.l
	l.nextGen++
	c := &conn{l: l, gen: l.nextGen, heapIdx: -1, state: relaying}
	c.p = &Params{Record: &session.Record{Start: time.Now()}, Done: func(r *session.Record) { s.ended <- r }}
	c.client = side{fd: s.clientFd}
	c.upstream = side{fd: s.upFd}
	c.toUpstream = flow{src: &c.client, dst: &c.upstream}
	c.toClient = flow{src: &c.upstream, dst: &c.client}
	c.startedWall = c.p.Record.Start
	l.allocSlot(c)
	l.live.Add(1)
	l.fds.Add(2)
	s.c = c
	return s
}

// event feeds the loop one made-up readiness event for which side of s.
func (h *harness) event(c *conn, which int, events uint32) {
	h.l.now = time.Since(h.l.start)
	ev := unix.EpollEvent{Events: events, Fd: c.slot, Pad: int32(c.gen<<1) | int32(which)}
	h.l.dispatch(&ev)
}

// turn runs what Run does after the events of a turn: the run queue and
// the timers.
func (h *harness) turn() {
	h.l.now = time.Since(h.l.start)
	h.l.runQueued()
	h.l.expire()
}

// pollEvents asks poll(2) what fd is ready for, as epoll would report it,
// waiting up to timeout for readability (and writability when want).
func pollEvents(fd int, wantOut bool, timeout time.Duration) uint32 {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	if wantOut {
		pfd[0].Events |= unix.POLLOUT
	}
	if n, _ := unix.Poll(pfd, int(timeout/time.Millisecond)); n <= 0 {
		return 0
	}
	var ev uint32
	r := pfd[0].Revents
	for _, m := range [...]struct {
		p int16
		e uint32
	}{{unix.POLLIN, unix.EPOLLIN}, {unix.POLLOUT, unix.EPOLLOUT}, {unix.POLLRDHUP, unix.EPOLLRDHUP},
		{unix.POLLHUP, unix.EPOLLHUP}, {unix.POLLERR, unix.EPOLLERR}} {
		if r&m.p != 0 {
			ev |= m.e
		}
	}
	return ev
}

// drive feeds s the readiness poll(2) sees until done reports true or the
// session ends, checking the flows' invariants after every step.
func (h *harness) drive(s *hsession, done func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() && s.c.state != closed {
		if time.Now().After(deadline) {
			h.t.Fatalf("stuck: to upstream %+v, to client %+v", s.c.toUpstream, s.c.toClient)
		}
		for _, x := range [...]struct {
			which int
			fd    int
			out   bool
		}{
			{clientSide, s.clientFd, s.c.toClient.waitsForDst()},
			{upstreamSide, s.upFd, s.c.toUpstream.waitsForDst()},
		} {
			if s.c.state == closed {
				break
			}
			if ev := pollEvents(x.fd, x.out, 10*time.Millisecond); ev != 0 {
				h.event(s.c, x.which, ev)
			}
		}
		h.turn()
		if s.c.state != closed {
			checkFlows(h.t, s.c)
		}
	}
}

// waitsForDst reports whether f has bytes its destination has not taken.
func (f *flow) waitsForDst() bool {
	return f.inPipe > 0 || len(f.spill) > 0 || f.chain != nil && len(f.chain.Out()) > 0
}

// checkFlows asserts the invariants flow's doc comment lists, for both
// directions of c.
func checkFlows(t *testing.T, c *conn) {
	t.Helper()
	for _, x := range [...]struct {
		name string
		f    *flow
	}{{"to upstream", &c.toUpstream}, {"to client", &c.toClient}} {
		if err := x.f.invariantsBroken(); err != nil {
			t.Fatalf("flow %s: %v: %+v", x.name, err, *x.f)
		}
	}
	if e := c.early; e != nil {
		f := &c.toUpstream
		switch {
		case e.peeked != nil && f.eof:
			t.Fatalf("9: %d peeked bytes wait behind the client's FIN", len(e.peeked))
		case e.peeked != nil && c.state == relaying && f.chain == nil && !f.pending:
			t.Fatalf("9: %d peeked bytes kept from an unfiltered flow", len(e.peeked))
		case e.hidden > len(f.spill):
			t.Fatalf("10: %d header bytes to send, %d in the spill", e.hidden, len(f.spill))
		case e.hidden > 0 && f.bytes > 0:
			t.Fatalf("10: %d bytes delivered before the PROXY header", f.bytes)
		}
	}
}

// invariantsBroken returns which of flow's invariants f breaks, if any.
func (f *flow) invariantsBroken() error {
	switch {
	case f.inPipe < 0:
		return fmt.Errorf("inPipe %d < 0", f.inPipe)
	case f.inPipe > 0 && f.pipe == nil:
		return fmt.Errorf("1: %d bytes in no pipe", f.inPipe)
	case f.chain == nil && f.pipe != nil && f.inPipe == 0:
		return fmt.Errorf("2: an idle flow holds a pipe")
	case f.shut && !f.eof:
		return fmt.Errorf("4: FIN passed on before one came")
	case f.shut && (f.inPipe > 0 || len(f.spill) > 0):
		return fmt.Errorf("4: FIN passed on before %d bytes", f.inPipe+len(f.spill))
	case f.chain != nil && (f.pipe != nil || len(f.spill) > 0 || f.bulk):
		return fmt.Errorf("5: a filtered flow holds a pipe, a spill or bulk mode")
	case f.pending && f.shut:
		return fmt.Errorf("6: a flow taking up filters has passed its FIN on")
	case f.bytes < 0:
		return fmt.Errorf("7: bytes %d < 0", f.bytes)
	}
	return nil
}

// smallBudget makes a turn's budget small, so a test can see it used up.
func smallBudget(t *testing.T, n int) {
	old := budget
	budget = n
	t.Cleanup(func() { budget = old })
}

// A session with more bytes than a turn's budget moves no more than the
// budget (plus the one read or splice under way) per turn and waits in the
// run queue; a small session on the same loop is served in the same turn,
// and the hog gets its next turn after it, from the run queue.
func TestFairnessBulkHogYieldsEachTurn(t *testing.T) {
	shortPipes(t)
	smallBudget(t, 64<<10)
	h := newHarness(t)
	hog, small := h.session(), h.session()

	// The hog's client has far more than a budget waiting, and its
	// upstream takes everything: only the budget can stop it.
	const bulk = 1 << 20
	var peers sync.WaitGroup
	defer peers.Wait()
	// Ending the session closes the loop's ends: the peers see EPIPE and
	// EOF and return.
	defer hog.c.finish(session.Shutdown, nil, false)
	peers.Go(func() {
		buf := make([]byte, 32<<10)
		for off := 0; off < bulk; off += len(buf) {
			if _, err := hog.client.Write(buf); err != nil {
				return
			}
		}
	})
	peers.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := hog.upstream.Read(buf); err != nil {
				return
			}
		}
	})
	waitReadable(t, hog.clientFd, 128<<10)
	if _, err := small.client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}

	// One turn: epoll reports both sessions.
	h.event(hog.c, upstreamSide, unix.EPOLLOUT)
	h.event(hog.c, clientSide, unix.EPOLLIN|unix.EPOLLOUT)
	first := hog.c.toUpstream.bytes
	if limit := int64(budget + scratchSize); first < int64(budget) || first > limit {
		t.Fatalf("hog moved %d bytes in one turn, want between the budget %d and %d", first, budget, limit)
	}
	if !hog.c.queued || len(h.l.runq) != 1 {
		t.Fatalf("hog with more to do is not in the run queue (queued %v, queue %d)", hog.c.queued, len(h.l.runq))
	}
	checkFlows(t, hog.c)
	h.event(small.c, upstreamSide, unix.EPOLLOUT)
	h.event(small.c, clientSide, unix.EPOLLIN|unix.EPOLLOUT)
	if got := small.c.toUpstream.bytes; got != 4 {
		t.Fatalf("small session moved %d bytes in the hog's turn, want 4", got)
	}
	if small.c.queued {
		t.Error("small session with nothing left is in the run queue")
	}
	if hog.c.toUpstream.bytes != first {
		t.Fatal("hog moved again before the small session had its turn")
	}
	// Next turn: the hog goes on from the run queue, again for a budget.
	h.turn()
	if second := hog.c.toUpstream.bytes - first; second <= 0 || second > int64(budget+scratchSize) {
		t.Errorf("hog moved %d bytes in its second turn, want up to a budget", second)
	}
	checkFlows(t, hog.c)
}

// waitReadable waits until fd has n bytes to read.
func waitReadable(t *testing.T, fd, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err == nil && q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes queued, want %d (%v)", q, n, err)
		}
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 10)
	}
}

// When pipe2 fails with EMFILE mid-session (the process is out of
// descriptors), a bulk direction copies through the scratch buffer
// instead: every byte still arrives, in order, and the session ends
// cleanly, not with local_error.
func TestPipeEMFILEMidSession(t *testing.T) {
	h := newHarness(t)
	s := h.session()
	// Bytes first flow with pipes working, then pipe2 starts failing.
	old := pipe2
	t.Cleanup(func() { pipe2 = old })
	failing, refused := false, 0
	pipe2 = func(p []int, flags int) error {
		if failing {
			refused++
			return unix.EMFILE
		}
		return old(p, flags)
	}
	// A small send buffer on the upstream makes the destination full
	// often, so bytes must wait somewhere other than a pipe.
	if err := unix.SetsockoptInt(s.upFd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	const total = 2 << 20
	payload := make([]byte, total)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	var peers sync.WaitGroup
	defer peers.Wait()
	defer s.c.finish(session.Shutdown, nil, false) // on failure, free the peers
	clientFd, upFd := int(s.client.Fd()), int(s.upstream.Fd())
	// The client sends a quarter, waits until told, then the rest.
	more := make(chan struct{})
	peers.Go(func() {
		defer unix.Shutdown(clientFd, unix.SHUT_WR)
		if _, err := s.client.Write(payload[:total/4]); err != nil {
			return
		}
		select {
		case <-more:
		case <-time.After(10 * time.Second):
			return
		}
		s.client.Write(payload[total/4:])
	})
	got := make(chan []byte, 1)
	peers.Go(func() {
		var b []byte
		buf := make([]byte, 7000)
		for {
			n, err := s.upstream.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				got <- b
				return
			}
		}
	})
	h.drive(s, func() bool { return s.c.toUpstream.bytes == total/4 })
	// The loop's spare pipes go too: from here on, every pipe is new.
	for _, p := range h.l.pipes {
		p.close()
		h.l.fds.Add(-2)
	}
	h.l.pipes = nil
	failing = true
	close(more)
	tookPipe := false
	h.drive(s, func() bool {
		if s.c.toUpstream.pipe != nil {
			tookPipe = true
		}
		return s.c.toUpstream.shut
	})
	if s.c.state == closed {
		t.Fatalf("session ended: %v", (<-s.ended).Reason)
	}
	if tookPipe {
		t.Error("a pipe was taken while pipe2 failed")
	}
	if refused == 0 {
		t.Error("the session never asked for a pipe while pipe2 failed: the test proves nothing")
	}
	t.Logf("pipe2 refused %d times", refused)
	// The upstream answers with its FIN; the session ends done.
	unix.Shutdown(upFd, unix.SHUT_WR)
	h.drive(s, func() bool { return false })
	if r := <-s.ended; r.Reason != session.Done || r.ToUpstream != total {
		t.Errorf("session ended %v after %d bytes, want done after %d", r.Reason, r.ToUpstream, total)
	}
	b := <-got
	if len(b) != total || string(b) != string(payload) {
		t.Fatalf("upstream got %d bytes, want the %d sent, in order", len(b), total)
	}
}

// sideError blames the side whose socket failed: a failed write to the
// upstream ends the session with upstream_reset, to the client with
// client_reset; each peer of the failed side's survivor learns of it.
func TestSideErrorNamesTheFailingSide(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gone   func(*hsession) *os.File // the peer that goes away
		sender func(*hsession) *os.File // the peer whose bytes find it gone
		from   int                      // the side those bytes arrive on
		want   session.Reason
	}{
		{"upstream gone", func(s *hsession) *os.File { return s.upstream },
			func(s *hsession) *os.File { return s.client }, clientSide, session.UpstreamReset},
		{"client gone", func(s *hsession) *os.File { return s.client },
			func(s *hsession) *os.File { return s.upstream }, upstreamSide, session.ClientReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.session()
			tc.gone(s).Close()
			if _, err := tc.sender(s).Write([]byte("anyone there?")); err != nil {
				t.Fatal(err)
			}
			h.event(s.c, 1-tc.from, unix.EPOLLOUT)
			h.event(s.c, tc.from, unix.EPOLLIN|unix.EPOLLOUT)
			select {
			case r := <-s.ended:
				if r.Reason != tc.want {
					t.Errorf("ended %v (%v), want %v", r.Reason, r.Err, tc.want)
				}
			default:
				t.Fatal("session still live after a write to a closed peer")
			}
		})
	}
	c := &conn{}
	if e := c.sideError(&c.upstream, unix.EPIPE); e.reason != session.UpstreamReset {
		t.Errorf("sideError(upstream) = %v", e.reason)
	}
	if e := c.sideError(&c.client, unix.ECONNRESET); e.reason != session.ClientReset {
		t.Errorf("sideError(client) = %v", e.reason)
	}
}

// PauseWatch stops a loop accepting for the time asked; ResumeWatches
// ends the pause at once.
func TestPauseWatch(t *testing.T) {
	l, stop := startLoop(t)
	defer stop()
	ln, fd := listenerFD(t)
	accepted := make(chan time.Time, 16)
	if err := <-l.Watch(fd, func(*Loop) {
		for {
			nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
			if err != nil {
				return
			}
			unix.Close(nfd)
			accepted <- time.Now()
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dropped := make(chan struct{})
		l.Unwatch(fd, func() { close(dropped) })
		<-dropped
	}()

	pause := func(d time.Duration) time.Time {
		at := make(chan time.Time, 1)
		l.post(func() {
			at <- time.Now()
			l.PauseWatch(fd, d)
		})
		return <-at
	}
	connect := func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	const d = 200 * time.Millisecond
	pausedAt := pause(d)
	connect()
	select {
	case at := <-accepted:
		if at.Sub(pausedAt) < d-5*time.Millisecond {
			t.Errorf("accepted %v after a pause of %v", at.Sub(pausedAt), d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("never accepted after the pause")
	}

	pause(time.Hour)
	connect()
	l.post(l.ResumeWatches)
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("ResumeWatches did not end an hour's pause")
	}
}

// An event the loop read for an upstream socket that a retry has since
// replaced carries the session's slot, generation and side: it must not be
// taken for the new socket's handshake. An event for a session that has
// ended, whose slot a new session took, goes nowhere.
func TestStaleEventAfterRetry(t *testing.T) {
	h := newHarness(t)
	first, second := unresponsive(t), unresponsive(t)
	up := &fakeUpstreams{next: second}
	clientFd, _ := socketPair(t)
	ended := make(chan *session.Record, 1)
	h.l.live.Add(1) // as Begin does
	h.l.begin(&Params{
		Client:     clientFd,
		Target:     first,
		TryTimeout: time.Hour,
		Upstreams:  up,
		Record:     &session.Record{Start: time.Now()},
		Done:       func(r *session.Record) { ended <- r },
	})
	c := h.l.slots[len(h.l.slots)-1]
	oldFd := c.upstream.fd
	c.expired(session.ConnectTimeout) // the try's time is up: on to second
	if c.p.Record.Tries != 2 || c.target != second || c.state != dialing {
		t.Fatalf("after the retry: tries %d, target %v, state %d", c.p.Record.Tries, c.target, c.state)
	}
	// The old socket's last event, read in the same batch as the retry.
	h.event(c, upstreamSide, unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP)
	if c.state != dialing || up.connected {
		t.Fatalf("an event of the replaced socket (fd %d) was taken for the new one's handshake: state %d, connected %v",
			oldFd, c.state, up.connected)
	}
	select {
	case r := <-ended:
		t.Fatalf("session ended: %v (%v)", r.Reason, r.Err)
	default:
	}

	// The session ends; a new one takes its slot; the old generation's
	// event goes nowhere.
	c.finish(session.Shutdown, nil, false)
	<-ended
	s := h.session()
	if s.c.slot != c.slot {
		t.Fatalf("new session in slot %d, want the freed %d", s.c.slot, c.slot)
	}
	stale := *c
	stale.slot = s.c.slot
	s.client.Write([]byte("x"))
	h.event(&stale, clientSide, unix.EPOLLIN|unix.EPOLLOUT)
	if s.c.client.readable || s.c.toUpstream.bytes != 0 {
		t.Error("an event of an ended session reached the session in its slot")
	}
}

// fakeUpstreams offers one more member, once.
type fakeUpstreams struct {
	next      netip.AddrPort
	retried   bool
	connected bool
}

func (f *fakeUpstreams) Retry(error) (netip.AddrPort, string, bool) {
	if f.retried {
		return netip.AddrPort{}, "", false
	}
	f.retried = true
	return f.next, f.next.String(), true
}
func (f *fakeUpstreams) Connected()   { f.connected = true }
func (f *fakeUpstreams) Failed(error) {}

// unresponsive returns the address of a listener whose accept queue is
// full, so that a connect to it gets no answer and stays in progress.
func unresponsive(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	raw, _ := ln.(*net.TCPListener).SyscallConn()
	raw.Control(func(fd uintptr) { unix.Listen(int(fd), 0) })
	for i := range 8 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond)
		if err != nil {
			if i == 0 {
				t.Fatalf("could not fill the backlog: %v", err)
			}
			return netip.MustParseAddrPort(ln.Addr().String())
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("backlog never filled")
	return netip.AddrPort{}
}
