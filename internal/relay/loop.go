// Package relay moves bytes both ways between a client and its upstream
// until both sides are done, and is where pier spends its time.
//
// A Loop is an event loop over one epoll instance: it owns the sockets of
// every session started on it, connects to the upstream without blocking,
// and waits for readiness itself, so an idle session holds no goroutine,
// no buffer and no descriptor beyond its two sockets. When bytes arrive,
// the loop splices them from one socket to the other through a pipe taken
// from a small pool, keeping half-close (a FIN becomes shutdown(SHUT_WR) on
// the other side) and backpressure (a direction whose destination is full
// stops reading its source). Idle, half-close and connect timeouts live in
// one timer heap per loop.
//
// Files: loop.go is the event loop, conn.go a session's life (dial,
// retry, deadlines, finish), early.go its peeking state (the client's
// first bytes read before the route is chosen) and the PROXY header it
// writes first, flow.go the flow engine that moves bytes
// (splice, read and write) with its invariants, filtered.go the filtered
// path, watch.go the listening sockets, list.go listing and ending live
// sessions for the admin API, pipe.go and timer.go what the loop keeps,
// sys.go the system calls.
//
// The loop's goroutine waits in epoll_wait itself, so the kernel wakes the
// thread that handles the event directly, with no hop through Go's
// scheduler: this is what keeps pier's request/response latency at the
// level of C proxies. Listening sockets are watched by the loops too
// (Watch), so a client is accepted and, unless another loop has two
// sessions fewer to look after (then the accepting loop hands it over
// with Start), dialed for and relayed on one loop. Other goroutines talk to a loop only
// through Start, Watch, Unwatch, CloseAll, List, End, EndMatching,
// TakeUpFilters and Close, which queue work and wake it through an
// eventfd; none of them waits for the loop.
//
// A session counts itself on Params.Stats, its route's shard for this
// loop (package stats): its state, its bytes at the end of each turn, its
// connect time and its end. Only this loop writes that shard.
//
//	l, _ := relay.New(logger)
//	go l.Run()
//	l.Start(&relay.Params{Client: fd, Target: addr, ...})
package relay

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/nonblock"
	"github.com/pierproxy/pier/internal/session"
)

// maxEvents is how many readiness events one epoll_wait returns; more wait
// for the next turn of the loop.
const maxEvents = 256

// wakeSlot marks the eventfd's epoll entry; session entries use their slot,
// and watched listeners watchBase-index.
const (
	wakeSlot  = -1
	watchBase = -2
)

// A Loop runs sessions on one epoll instance. Create it with New, run it with
// Run on a goroutine of its own, and stop it with Close once it holds no
// session.
type Loop struct {
	log   *slog.Logger
	epfd  int
	wake  int           // eventfd that other goroutines write to wake the loop
	start time.Time     // the loop's clock starts here
	now   time.Duration // time since start, read once per turn of the loop

	mu       sync.Mutex
	posted   []func() // work queued by other goroutines, run on the loop
	closing  bool     // Close was called: post queues nothing more
	finished bool     // Run has taken the last posted work: nothing queued runs

	live    atomic.Int64 // sessions started and not yet finished
	fds     atomic.Int64 // descriptors the sessions and the pipe pool hold
	slots   []*conn      // sessions by slot; the slot is in each epoll entry
	free    []int32      // unused slots
	timers  timers
	runq    []*conn // sessions that used their turn's budget and have more to do
	pipes   []*pipe
	events  [maxEvents]unix.EpollEvent
	nextGen uint32
	watches []*watch // listening sockets, by index; nil when removed
	scratch [scratchSize]byte
	// handshakes counts the TLS handshakes in flight (tls.go);
	// handshakers their goroutines, which shutdown waits for.
	handshakes  int
	handshakers sync.WaitGroup
}

// scratchSize is the loop's one user-space buffer, for reads that turn
// out small.
const scratchSize = 32 << 10

// A watch is a listening socket the loop accepts on.
type watch struct {
	fd     int
	ready  func(*Loop)
	paused bool
	resume time.Duration // when a paused watch is re-armed
}

// New creates a loop. It fails only when the system refuses an epoll
// instance or an eventfd (out of descriptors).
func New(log *slog.Logger) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll_create: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("relay: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("relay: epoll_ctl: %w", err)
	}
	return &Loop{log: log, epfd: epfd, wake: wake, start: time.Now()}, nil
}

// Live returns how many sessions the loop holds.
func (l *Loop) Live() int64 { return l.live.Load() }

// Descriptors returns how many descriptors the loop holds for sessions:
// their sockets and the pipes in use or kept for reuse. Not counted: the
// loop's own epoll and eventfd, and the listeners it watches. Safe to call
// from any goroutine; the loop changes it once per socket or pipe opened
// or closed, never per byte.
func (l *Loop) Descriptors() int64 { return l.fds.Load() }

// post queues f to run on the loop and wakes it. It reports false when the
// loop has been closed, in which case f will never run.
func (l *Loop) post(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	l.queue(f)
	return true
}

// Do runs f on the loop's goroutine at its next turn, for a caller that
// reads what only the loop may touch (the proxy's record of recent
// session ends). f must not block: it holds up every session of the loop.
// Do reports false when the loop has been closed: f will never run.
func (l *Loop) Do(f func()) bool { return l.post(f) }

// queue appends f to the posted work and wakes the loop; l.mu is held.
// The wake is written under l.mu so that it never reaches an eventfd
// shutdown has closed (or a descriptor that reused its number).
func (l *Loop) queue(f func()) {
	l.posted = append(l.posted, f)
	if len(l.posted) == 1 {
		// One write per batch: the loop swaps the whole queue out, and
		// an eventfd counter cannot overflow at one write per swap.
		var one = [8]byte{1}
		unix.Write(l.wake, one[:])
	}
}

// CloseAll ends every session on the loop now, with reason. Safe to call
// from any goroutine.
func (l *Loop) CloseAll(reason session.Reason) {
	l.post(func() {
		for _, c := range l.slots {
			if c != nil {
				c.finish(reason, nil, false)
			}
		}
	})
}

// Close stops the loop: Run returns after it has ended the sessions it still
// holds with session.Shutdown.
func (l *Loop) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return // the eventfd is closed
	}
	l.closing = true
	var one = [8]byte{1}
	unix.Write(l.wake, one[:])
}

// Run runs the loop until Close. It must run on exactly one goroutine.
func (l *Loop) Run() error {
	// The loop keeps its thread: the kernel wakes the thread that runs
	// the loop, and Go's scheduler never moves the loop to another one
	// (a quarter to a tenth of the CPU migrations under load). The loop
	// blocks only in epoll_wait, so a thread to itself costs nothing
	// but that thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.shutdown()
	for {
		l.now = time.Since(l.start)
		n, err := l.wait()
		if err != nil {
			return err
		}
		l.now = time.Since(l.start)
		for i := range n {
			l.dispatch(&l.events[i])
		}
		if done := l.runPosted(); done {
			return nil
		}
		l.runQueued()
		l.expire()
		l.resumeWatches()
	}
}

// wait returns the next batch of events. It blocks only when the loop has
// nothing left to do this turn, and then no longer than the next timer.
func (l *Loop) wait() (int, error) {
	timeout := -1
	if len(l.runq) > 0 {
		timeout = 0
	} else if due, ok := l.nextDue(); ok {
		// epoll_wait counts milliseconds: round up, so a timer is never
		// checked before it is due.
		timeout = int(max(due-time.Since(l.start)+time.Millisecond-1, 0) / time.Millisecond)
	}
	if timeout == 0 {
		// Sessions wait in the run queue, or a timer is due: look,
		// don't wait.
		n, err := nonblock.EpollPoll(l.epfd, l.events[:])
		if err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("relay: epoll_wait: %w", err)
		}
		return n, nil
	}
	// The one call that may block: through x/sys/unix, so that Go's
	// scheduler lends the loop's P to other goroutines meanwhile.
	for {
		n, err := unix.EpollWait(l.epfd, l.events[:], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("relay: epoll_wait: %w", err)
		}
		return n, nil
	}
}

// nextDue returns the earliest timer or paused watch.
func (l *Loop) nextDue() (time.Duration, bool) {
	var due time.Duration
	ok := false
	if c := l.timers.next(); c != nil {
		due, ok = c.due, true
	}
	for _, w := range l.watches {
		if w != nil && w.paused && (!ok || w.resume < due) {
			due, ok = w.resume, true
		}
	}
	return due, ok
}

// dispatch hands one readiness event to its session.
func (l *Loop) dispatch(ev *unix.EpollEvent) {
	if ev.Fd == wakeSlot {
		var buf [8]byte
		unix.Read(l.wake, buf[:])
		return
	}
	if ev.Fd <= watchBase {
		if i := int(watchBase - ev.Fd); i < len(l.watches) {
			if w := l.watches[i]; w != nil && !w.paused {
				w.ready(l)
			}
		}
		return
	}
	c := l.slots[ev.Fd]
	if c == nil || c.gen != uint32(ev.Pad)>>1 {
		return // the session ended earlier in this batch
	}
	c.ready(int(ev.Pad&1), ev.Events)
}

// runPosted runs the work other goroutines queued. It reports true when the
// loop has been closed.
func (l *Loop) runPosted() bool {
	l.mu.Lock()
	work := l.posted
	l.posted = nil
	closing := l.closing
	l.mu.Unlock()
	for i, f := range work {
		f()
		work[i] = nil
	}
	return closing
}

// runQueued gives another turn to sessions that used up their budget.
func (l *Loop) runQueued() {
	q := l.runq
	l.runq = nil
	for _, c := range q {
		c.queued = false
		if c.state == relaying {
			c.pump()
		}
	}
}

// expire ends the sessions whose deadline has passed and pushes back the
// ones that were active since their entry was scheduled.
func (l *Loop) expire() {
	for {
		c := l.timers.next()
		if c == nil || c.due > l.now {
			return
		}
		due, reason := c.deadline()
		if due > l.now {
			l.timers.schedule(c, due)
			continue
		}
		if reason == session.NotEnded {
			// The upstream's keepalive or a filter's time has come,
			// not the session's end.
			l.timers.remove(c)
			c.keepaliveIfDue()
			c.pump()
			if c.state != closed {
				c.reschedule()
			}
			continue
		}
		c.expired(reason)
	}
}

// shutdown ends what is left when Run returns.
func (l *Loop) shutdown() {
	l.mu.Lock()
	l.closing, l.finished = true, true
	work := l.posted
	l.posted = nil
	l.mu.Unlock()
	// No ready runs from here on, so the watches are let go of at once:
	// an Unwatch now calls only its dropped, on its caller's goroutine,
	// and the PauseWatch or ResumeWatches of a session ended below find
	// nothing to touch.
	l.watches = nil
	for _, f := range work {
		f() // a Start queued before Close still finishes its session below
	}
	for _, c := range l.slots {
		if c != nil {
			c.finish(session.Shutdown, nil, false)
		}
	}
	for _, p := range l.pipes {
		p.close()
		l.fds.Add(-2)
	}
	l.pipes = nil
	unix.Close(l.wake)
	unix.Close(l.epfd)
	// Every session is over, so every handshake's duplicate socket is
	// closed and its context cancelled: its goroutine returns at once,
	// from a read, a write or a wait for its turn to sign.
	l.handshakers.Wait()
}

// add registers one of c's sockets with the loop's epoll, edge-triggered:
// the loop remembers readiness itself and only needs to hear of changes.
func (l *Loop) add(c *conn, side int, fd int) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     c.slot,
		Pad:    int32(c.gen<<1) | int32(side),
	}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

func (l *Loop) allocSlot(c *conn) {
	if n := len(l.free); n > 0 {
		c.slot = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		c.slot = int32(len(l.slots))
		l.slots = append(l.slots, nil)
	}
	l.slots[c.slot] = c
}

func (l *Loop) freeSlot(c *conn) {
	l.slots[c.slot] = nil
	l.free = append(l.free, c.slot)
}

// enqueue gives c another turn after the other sessions had theirs.
func (l *Loop) enqueue(c *conn) {
	if !c.queued {
		c.queued = true
		l.runq = append(l.runq, c)
	}
}
