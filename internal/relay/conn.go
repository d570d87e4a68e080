package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/dial"
	"github.com/pierproxy/pier/internal/session"
)

// budget bounds the bytes one direction moves per turn, so that a bulk
// transfer cannot starve the other sessions on its loop.
const budget = 2 << 20

// Params describe one session to Start.
type Params struct {
	// Client is the accepted client socket, non-blocking. The loop owns it
	// from Start on and closes it when the session ends.
	Client int
	// Target is the upstream address to dial; the pool has resolved it.
	Target netip.AddrPort
	// ConnectTimeout bounds connecting, every try together (the connect
	// budget). Zero means no bound.
	ConnectTimeout time.Duration
	// DialTimeout bounds one try, when Upstreams may offer another. Zero:
	// only ConnectTimeout.
	DialTimeout time.Duration
	// Upstreams, if set, offers another member when a dial fails or its
	// try times out, and hears when one succeeds.
	Upstreams Upstreams
	// IdleTimeout ends a session after no byte moved either way for this
	// long. Zero means never.
	IdleTimeout time.Duration
	// HalfCloseTimeout ends a session this long after one direction has
	// finished, if the other has not. Zero means never.
	HalfCloseTimeout time.Duration
	// Record is filled in as the session goes and handed to Done.
	Record *session.Record
	// Done is called once, on the loop's goroutine, when the session has
	// ended and its sockets are closed. It must not block.
	Done func(*session.Record)
	// LocalError, if set, is called on the loop when a dial fails for lack
	// of pier's own resources, so the caller can slow accepting down.
	LocalError func(*Loop, error)
	// Filters, if set, is the route's filter set in force. A session
	// starts with the set in force when its upstream connects, and takes
	// up a new one between chunks: a direction with no filter splices.
	Filters *chain.InForce
}

// Upstreams is what a session dials: *pool.Attempt is one. Its methods
// run on the loop and must not block.
type Upstreams interface {
	// Retry is told that the dial failed (or timed out) with err, and
	// returns the next member's address and name, or false when the
	// session has no try left.
	Retry(err error) (addr netip.AddrPort, name string, ok bool)
	// Connected is told that the dial succeeded.
	Connected()
	// Failed is told that the last try failed with err when the session
	// may not try again (its connect budget is spent).
	Failed(err error)
}

// errDialTimeout is a try that ran out of time.
var errDialTimeout = errors.New("connect timed out")

// Session states.
const (
	dialing = iota
	relaying
	closed
)

// Sides of a session, as kept in its epoll entries.
const (
	clientSide   = 0
	upstreamSide = 1
)

// A side is one of a session's sockets and what the loop knows of its
// readiness: set by epoll's edges, cleared by EAGAIN.
type side struct {
	fd       int
	readable bool
	writable bool
	hup      bool // epoll has reported the peer's FIN or an error
}

// A flow is one direction of a session: bytes read from src, spliced
// through pipe, written to dst.
type flow struct {
	src, dst *side
	pipe     *pipe
	inPipe   int    // bytes read into pipe and not yet written
	spill    []byte // bytes a short pipe could not take, after inPipe's
	eof      bool   // src has sent FIN
	shut     bool   // the FIN has been passed on to dst
	bulk     bool   // the last read filled the scratch buffer: splice until EAGAIN
	bytes    int64  // delivered to dst
	// chain, when set, runs the direction through its filters: read,
	// filter, write, instead of splice.
	chain *chain.Chain
	// pending is set while the direction waits to take up next (nil for
	// no filters) at its next chunk boundary; it reads nothing meanwhile.
	pending bool
	next    *chain.Chain
}

// conn is one session on a loop.
type conn struct {
	l     *Loop
	p     *Params
	slot  int32
	gen   uint32
	state uint8

	queued  bool // in the loop's run queue
	heapIdx int  // index in the loop's timer heap, or -1
	due     time.Duration

	client, upstream side
	toUpstream       flow
	toClient         flow

	target      netip.AddrPort
	connectBy   time.Duration // deadline for connecting, every try
	tryBy       time.Duration // deadline for this try, when DialTimeout is set
	retried     bool          // the upstream socket is not the first one
	lastActive  time.Duration
	halfClosed  time.Duration // when the first direction finished, or 0
	startedWall time.Time

	filters *chain.Set      // the filter set the flows' chains come from
	info    *filter.Session // what the filters know of the session
}

var errLoopClosed = errors.New("relay: loop closed")

// Start hands a new session to the loop. Safe to call from any goroutine.
// If the loop has been closed the client socket is closed and Done is
// called with session.Shutdown.
func (l *Loop) Start(p *Params) {
	if !l.post(func() { l.begin(p) }) {
		unix.Close(p.Client)
		p.Record.Reason = session.Shutdown
		p.Done(p.Record)
	}
}

// Begin starts a session from the loop's own goroutine: from the ready
// function of a Watch. Anywhere else, use Start.
func (l *Loop) Begin(p *Params) { l.begin(p) }

func (l *Loop) begin(p *Params) {
	l.nextGen = (l.nextGen + 1) & (1<<30 - 1)
	c := &conn{l: l, p: p, gen: l.nextGen, heapIdx: -1, target: p.Target}
	c.client.fd = p.Client
	c.upstream.fd = -1
	c.toUpstream = flow{src: &c.client, dst: &c.upstream}
	c.toClient = flow{src: &c.upstream, dst: &c.client}
	c.startedWall = p.Record.Start
	l.allocSlot(c)
	l.live.Add(1)
	if p.ConnectTimeout > 0 {
		c.connectBy = l.now + p.ConnectTimeout
		l.timers.schedule(c, c.connectBy)
	}
	if err := l.add(c, clientSide, c.client.fd); err != nil {
		c.finish(session.LocalError, fmt.Errorf("relay: epoll_ctl: %w", err), false)
		return
	}
	c.dial()
}

func (c *conn) dial() {
	c.p.Record.Dialed = c.target
	c.p.Record.Tries++
	c.tryBy = c.l.now + c.p.DialTimeout
	fd, err := dial.Start(c.target)
	if err != nil {
		c.dialFailed(err)
		return
	}
	c.upstream.fd = fd
	c.state = dialing
	if c.p.DialTimeout > 0 {
		c.reschedule()
	}
	if err := c.l.add(c, upstreamSide, fd); err != nil {
		c.finish(session.LocalError, fmt.Errorf("relay: epoll_ctl: %w", err), false)
	}
}

func (c *conn) dialFailed(err error) {
	local := dial.IsLocal(err)
	if c.retry(err) {
		return
	}
	if local {
		if c.p.LocalError != nil {
			c.p.LocalError(c.l, err)
		}
		c.finish(session.LocalError, err, false)
		return
	}
	c.finish(session.ConnectFailed, err, false)
}

// retry moves the session to the next member after a failed try, if
// Upstreams offers one. No byte has moved yet either way: the client's
// bytes wait in its socket until the upstream connects.
func (c *conn) retry(err error) bool {
	if c.p.Upstreams == nil {
		return false
	}
	next, name, ok := c.p.Upstreams.Retry(err)
	if !ok {
		return false
	}
	if c.upstream.fd >= 0 {
		unix.Close(c.upstream.fd) // closing takes it out of epoll
	}
	c.upstream = side{fd: -1}
	c.retried = true
	c.target = next
	c.p.Record.Upstream = name
	c.dial()
	return true
}

// connectedNow reports whether the upstream socket's handshake is done.
// Only a retry needs to ask: an event the loop read for the socket it
// replaced carries the same session and side.
func (c *conn) connectedNow() bool {
	if !c.retried {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(c.upstream.fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// ready records what epoll said about one side and acts on it.
func (c *conn) ready(which int, events uint32) {
	s := &c.client
	if which == upstreamSide {
		s = &c.upstream
		if c.state == dialing && !c.connectedNow() {
			return // an event of the socket a retry replaced
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.readable = true
	}
	if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.hup = true
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.writable = true
	}
	switch c.state {
	case dialing:
		if which == upstreamSide {
			if err := dial.Result(c.upstream.fd, c.target); err != nil {
				c.dialFailed(err)
				return
			}
			if c.p.Upstreams != nil {
				c.p.Upstreams.Connected()
			}
			c.state = relaying
			c.lastActive = c.l.now
			if c.p.Filters != nil && c.p.Filters.Load() != nil {
				// A route with no filters in force pays nothing here;
				// pump notices a set that comes later.
				c.beginSwitch()
			}
			c.reschedule()
			c.pump()
		}
	case relaying:
		if events&unix.EPOLLERR != 0 && c.sawReset(which) {
			return
		}
		c.pump()
	}
}

// sawReset ends the session if the socket on side which has a pending
// error (a RST arrived). A RST the flows would read anyway is left to them,
// but one on a socket no flow is reading or writing would otherwise go
// unnoticed until a timeout.
func (c *conn) sawReset(which int) bool {
	s := &c.client
	if which == upstreamSide {
		s = &c.upstream
	}
	errno, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil || errno == 0 {
		return false
	}
	c.finish(resetReason(which), unix.Errno(errno), true)
	return true
}

func resetReason(which int) session.Reason {
	if which == upstreamSide {
		return session.UpstreamReset
	}
	return session.ClientReset
}

// pump moves bytes both ways until both directions wait for the kernel or
// have used their budget for this turn.
func (c *conn) pump() {
	if c.p.Filters != nil && c.p.Filters.Load() != c.filters {
		c.beginSwitch()
	}
	moreUp, errUp := c.move(&c.toUpstream)
	if errUp != nil {
		c.finish(errUp.reason, errUp.err, errUp.reason != session.FilterClose)
		return
	}
	moreDown, errDown := c.move(&c.toClient)
	if errDown != nil {
		c.finish(errDown.reason, errDown.err, errDown.reason != session.FilterClose)
		return
	}
	if c.toUpstream.shut && c.toClient.shut {
		c.finish(session.Done, nil, false)
		return
	}
	if c.halfClosed == 0 && (c.toUpstream.shut || c.toClient.shut) {
		c.halfClosed = c.l.now
		c.reschedule()
	}
	if moreUp || moreDown {
		c.l.enqueue(c)
	}
	if c.toUpstream.chain != nil || c.toClient.chain != nil {
		// A filter may have asked to be woken sooner than the timer
		// the session has.
		c.reschedule()
	}
}

// flowError is why a flow stopped: which side failed, and how.
type flowError struct {
	reason session.Reason
	err    error
}

// move runs one direction of c until the kernel says wait (EAGAIN) on
// either socket or budget bytes have moved. It reports whether it stopped
// for the budget with more to do. An idle direction gives its pipe back.
//
// A burst starts with read(2) into the loop's scratch buffer and write(2)
// to dst: for the small messages of request/response traffic that is two
// system calls, and a short read proves the socket drained, with no third
// call to see EAGAIN. A read that fills the buffer means bulk: from there
// the direction splices, socket to pipe to socket, without copying, until
// the source is drained. Bytes dst could not take wait in the pipe either
// way.
func (c *conn) move(f *flow) (more bool, ferr *flowError) {
	if f.chain != nil {
		return c.moveFiltered(f)
	}
	moved := 0
	for moved < budget {
		if f.inPipe > 0 {
			if !f.dst.writable {
				break
			}
			n, err := splice(f.pipe.r, f.dst.fd, f.inPipe)
			if err == unix.EAGAIN {
				f.dst.writable = false
				break
			}
			if err != nil {
				return false, c.sideError(f.dst, err)
			}
			f.inPipe -= n
			f.bytes += int64(n)
			moved += n
			continue
		}
		if len(f.spill) > 0 {
			if !f.dst.writable {
				break
			}
			n, err := write(f.dst.fd, f.spill)
			if err == unix.EAGAIN {
				f.dst.writable = false
				break
			}
			if err != nil {
				return false, c.sideError(f.dst, err)
			}
			f.spill = f.spill[n:]
			if len(f.spill) == 0 {
				f.spill = nil
			}
			f.bytes += int64(n)
			moved += n
			continue
		}
		if f.eof {
			if !f.shut {
				f.shut = true
				// The peer may already be gone; what matters is that
				// our side has nothing more to send.
				unix.Shutdown(f.dst.fd, unix.SHUT_WR)
			}
			break
		}
		if f.pending {
			// Between chunks: take up the new filters.
			c.attach(f)
			return c.move(f)
		}
		if !f.src.readable {
			break
		}
		if f.bulk {
			if f.pipe == nil {
				p, err := c.l.getPipe()
				if err != nil {
					return false, &flowError{session.LocalError, fmt.Errorf("relay: pipe: %w", err)}
				}
				f.pipe = p
			}
			n, err := splice(f.src.fd, f.pipe.w, f.pipe.size)
			if err == unix.EAGAIN {
				f.src.readable = false
				f.bulk = false
				break
			}
			if err != nil {
				return false, c.sideError(f.src, err)
			}
			if n == 0 {
				f.eof = true
				continue
			}
			f.inPipe = n
			continue
		}
		n, ferr := c.copyOnce(f)
		if ferr != nil {
			return false, ferr
		}
		moved += n
	}
	if moved > 0 {
		c.lastActive = c.l.now
	}
	if f.inPipe == 0 && f.pipe != nil {
		c.l.putPipe(f.pipe, true)
		f.pipe = nil
	}
	return moved >= budget, nil
}

// copyOnce reads what src has, up to the scratch buffer, and writes it to
// dst; what dst does not take goes into the pipe. It returns the bytes
// read.
func (c *conn) copyOnce(f *flow) (int, *flowError) {
	buf := c.l.scratch[:]
	n, err := read(f.src.fd, buf)
	if err == unix.EAGAIN {
		f.src.readable = false
		return 0, nil
	}
	if err != nil {
		return 0, c.sideError(f.src, err)
	}
	if n == 0 {
		f.eof = true
		return 0, nil
	}
	if n < len(buf) {
		// A short read from TCP leaves its queue empty, and new bytes
		// will raise a new edge; but a FIN or error that epoll reported
		// already will not, so the next read must come to see it.
		if !f.src.hup {
			f.src.readable = false
		}
	} else {
		f.bulk = true
	}
	w := 0
	if f.dst.writable {
		w, err = write(f.dst.fd, buf[:n])
		if err == unix.EAGAIN {
			w = 0
			f.dst.writable = false
		} else if err != nil {
			return 0, c.sideError(f.dst, err)
		}
		f.bytes += int64(w)
	}
	if w < n {
		// dst is full: park the rest in a pipe until dst drains. The
		// pipe is empty, and almost always larger than the scratch
		// buffer; one the kernel cut short (a user past
		// fs.pipe-user-pages-soft gets two pages) leaves the remainder
		// to a spill slice, allocated for the occasion.
		if f.pipe == nil {
			p, err := c.l.getPipe()
			if err != nil {
				return 0, &flowError{session.LocalError, fmt.Errorf("relay: pipe: %w", err)}
			}
			f.pipe = p
		}
		m, err := write(f.pipe.w, buf[w:n])
		if err != nil && err != unix.EAGAIN {
			return 0, &flowError{session.LocalError, fmt.Errorf("relay: pipe write: %w", err)}
		}
		f.inPipe = m
		if w+m < n {
			f.spill = append([]byte(nil), buf[w+m:n]...)
		}
		f.dst.writable = false
	}
	return n, nil
}

func (c *conn) sideError(s *side, err error) *flowError {
	if s == &c.upstream {
		return &flowError{session.UpstreamReset, err}
	}
	return &flowError{session.ClientReset, err}
}

func read(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

func write(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}

func splice(from, to, n int) (int, error) {
	for {
		m, err := unix.Splice(from, nil, to, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EINTR {
			continue
		}
		return int(m), err
	}
}

// deadline returns when c must end if nothing happens, and why.
func (c *conn) deadline() (time.Duration, session.Reason) {
	const never = time.Duration(1<<63 - 1)
	switch c.state {
	case dialing:
		due := never
		if c.p.ConnectTimeout > 0 {
			due = c.connectBy
		}
		if c.p.DialTimeout > 0 && c.tryBy < due {
			due = c.tryBy
		}
		if due != never {
			return due, session.ConnectTimeout
		}
	case relaying:
		due, reason := never, session.IdleTimeout
		if c.p.IdleTimeout > 0 {
			due = c.lastActive + c.p.IdleTimeout
		}
		if c.halfClosed > 0 && c.p.HalfCloseTimeout > 0 {
			if d := c.halfClosed + c.p.HalfCloseTimeout; d < due {
				due, reason = d, session.HalfCloseTimeout
			}
		}
		for _, f := range [...]*flow{&c.toUpstream, &c.toClient} {
			if f.chain == nil {
				continue
			}
			if w := f.chain.Wake(); !w.IsZero() {
				if d := w.Sub(c.l.start); d < due {
					due, reason = d, session.Live
				}
			}
		}
		return due, reason
	}
	return never, session.Live
}

// expired ends c for reason, its deadline having come; a try that timed
// out moves on to the next member instead, if there is one and the
// connect budget has time left.
func (c *conn) expired(reason session.Reason) {
	if reason == session.ConnectTimeout && c.state == dialing && c.p.Upstreams != nil {
		if c.p.ConnectTimeout == 0 || c.l.now < c.connectBy {
			if c.retry(errDialTimeout) {
				return
			}
		} else {
			c.p.Upstreams.Failed(errDialTimeout)
		}
	}
	c.finish(reason, nil, false)
}

// reschedule fixes c's timer after its deadline may have moved earlier.
func (c *conn) reschedule() {
	due, _ := c.deadline()
	if due == time.Duration(1<<63-1) {
		c.l.timers.remove(c)
		return
	}
	c.l.timers.schedule(c, due)
}

// finish ends the session: closes both sockets (resetting the survivor when
// reset is set and the session died of an error, so that the other peer
// learns of it as a RST, not a clean FIN), releases pipes and slot, and
// hands the record to Done.
func (c *conn) finish(reason session.Reason, err error, reset bool) {
	if c.state == closed {
		return
	}
	c.state = closed
	l := c.l
	l.timers.remove(c)
	for _, s := range [...]*side{&c.client, &c.upstream} {
		if s.fd < 0 {
			continue
		}
		if reset {
			unix.SetsockoptLinger(s.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}
		unix.Close(s.fd)
		s.fd = -1
	}
	for _, f := range [...]*flow{&c.toUpstream, &c.toClient} {
		if f.pipe != nil {
			l.putPipe(f.pipe, f.inPipe == 0)
			f.pipe = nil
		}
		f.spill = nil
		if f.chain != nil {
			c.closeChain(f.chain, reason, err)
			f.chain = nil
		}
	}
	l.freeSlot(c)
	l.live.Add(-1)

	r := c.p.Record
	r.ToUpstream = c.toUpstream.bytes
	r.ToClient = c.toClient.bytes
	r.Duration = time.Since(c.startedWall)
	r.Reason = reason
	r.Err = err
	c.p.Done(r)
}
