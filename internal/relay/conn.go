package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/dial"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/sockopt"
	"github.com/pierproxy/pier/internal/stats"
)

// A session's life on its loop: Start or Begin takes the client socket,
// dial connects to the upstream without blocking (retry moves to another
// member when a try fails or times out), ready turns epoll's events into
// state, deadline and expired keep the connect, idle and half-close
// timeouts, and finish closes everything and hands the record on. How bytes
// move while the session relays is the flow engine's (flow.go).

// Params describe one session to Start.
type Params struct {
	// Client is the accepted client socket, non-blocking. The loop owns it
	// from Start on and closes it when the session ends.
	Client int
	// Target is the upstream address to dial; the pool has resolved it.
	Target netip.AddrPort
	// ConnectBudget bounds connecting, every try together (the route's
	// connect budget). Zero means no bound.
	ConnectBudget time.Duration
	// TryTimeout bounds one try, when Upstreams may offer another. Zero
	// means only ConnectBudget bounds it.
	TryTimeout time.Duration
	// Upstreams, if set, offers another member when a dial fails or its
	// try times out, and hears when one succeeds.
	Upstreams Upstreams
	// IdleTimeout ends a session after no byte moved either way for this
	// long. Zero means never.
	IdleTimeout time.Duration
	// HalfCloseTimeout ends a session this long after one direction has
	// finished, if the other has not. Zero means never.
	HalfCloseTimeout time.Duration
	// Record is filled in as the session goes and handed to Done. While
	// the session is live, its byte counts are those already added to
	// Stats.
	Record *session.Record
	// Done is called once, on the loop's goroutine, when the session has
	// ended and its sockets are closed. It must not block.
	Done func(*session.Record)
	// LocalError, if set, is called on the loop when a dial fails for lack
	// of pier's own resources, so the caller can slow accepting down.
	LocalError func(*Loop, error)
	// Filters, if set, is the route's filter set in force. A session
	// starts with the set in force when its upstream connects, and takes
	// up a new one between chunks: at its next turn, which
	// Loop.TakeUpFilters gives it at once. A direction with no filter
	// splices.
	Filters *chain.InForce
	// Stats, if set, counts the session on this loop's shard of its
	// route's counters: its states, its bytes as they move, its connect
	// time, and its end. Nil counts nothing.
	Stats *stats.Shard
	// Peek, if set, makes the session read the client's first bytes
	// before anything is dialed, and lets Peek.Peeked choose what
	// happens next (see Peek). Nil: dial at once, as always.
	Peek *Peek
	// ProxyOut, with a PROXY version to send (SendProxy, or the member's
	// through MemberProxy), is the PROXY header written to the upstream
	// before any client byte. An invalid Dst is filled with the address
	// the client connected to. Nil: no header.
	ProxyOut *peek.Out
	// SendProxy is the route's PROXY version for upstreams (peek.V1,
	// peek.V2); 0 none. A member's MemberProxy overrides it.
	SendProxy uint8
	// TLSServer, if set, terminates TLS on the client side: the session
	// handshakes with the client (off the loop; tls.go) before it dials.
	TLSServer *tls.Config
	// TLSClient, if set, originates TLS to the upstream once connected,
	// after the PROXY header; a member's MemberTLS overrides it.
	TLSClient *tls.Config
	// HandshakeTimeout bounds each TLS handshake, from its start. Zero:
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Peek is the pre-dial phase of a session whose route depends on its
// first bytes (a PROXY header, a TLS ClientHello).
type Peek struct {
	// Max is the most bytes read before deciding; at most peek.Max.
	Max int
	// Timeout is the first deadline, counted from accept
	// (Record.Start); a Decision's Wait moves it.
	Timeout time.Duration
	// Peeked runs on the loop after each read that returned bytes or
	// EOF, and at the deadline it asked for. buf is every byte read so
	// far, from the first; it is valid only during the call. It must
	// not block.
	Peeked func(buf []byte, eof bool, elapsed time.Duration) Decision
}

// Decision is what Peek.Peeked decided.
type Decision struct {
	// Wait > 0: read more, and call Peeked again no later than this long
	// after accept.
	Wait time.Duration
	// Need (with Wait): Peeked is not called again, after a read,
	// before it has at least this many bytes (counted from the first),
	// unless the client sent EOF or the peek's Max is reached; the
	// deadline calls it whatever it holds. A hello split into tiny
	// records is thus not parsed again after every read. 0: after every
	// read.
	Need int
	// Next (Wait == 0): dial with these Params. Their Client and Record
	// are ignored: the session keeps its socket and its Record.
	Next *Params
	// End and Err (Wait == 0, Next == nil): end the session for End; the
	// first Params' Done gets the Record.
	End session.Reason
	Err error
	// Skip is how many leading bytes were the PROXY header: they are
	// never passed on to the upstream.
	Skip int
}

// MemberProxy, when a session's Upstreams implements it, gives the PROXY
// version (peek.V1, peek.V2; 0 none) for the member just dialed,
// overriding Params.SendProxy. It runs on the loop and must not block.
type MemberProxy interface {
	SendProxy() uint8
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

// Session states (and peeking, early.go's).
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

// conn is one session on a loop.
type conn struct {
	l     *Loop
	p     *Params
	slot  int32
	gen   uint32
	state uint8
	// mstate is the session's state as the metrics and the admin API
	// name it, finer than state: Open becomes half-closed on the first
	// FIN passed on.
	mstate session.State

	queued  bool // in the loop's run queue
	heapIdx int  // index in the loop's timer heap, or -1
	due     time.Duration

	client, upstream side
	toUpstream       flow
	toClient         flow

	target      netip.AddrPort
	connectBy   time.Duration // deadline for connecting, every try
	tryBy       time.Duration // deadline for this try, when TryTimeout is set
	retried     bool          // the upstream socket is not the first one
	lastActive  time.Duration
	halfClosed  time.Duration // when the first direction finished, or 0
	keepaliveAt time.Duration // when the upstream socket gets keepalive, or 0 once it has it
	startedWall time.Time

	filters *chain.Set      // the filter set the flows' chains come from
	info    *filter.Session // what the filters know of the session

	// early is the peeking state's, and the first bytes' that pier
	// writes to the upstream before the client's (early.go); nil for a
	// plain session.
	early *early

	// stopping is the flow whose filter ended the session with stop;
	// the session lives on only to deliver what the filters forwarded
	// (drainStopped). stopCheck is when it next looks at dst's send
	// queue (0: not yet), stopQueued what it found there last.
	stopping   *flow
	stop       *flowError
	stopCheck  time.Duration
	stopQueued int

	// handshakeBy is when a TLS handshake in flight times out (tls.go).
	handshakeBy time.Duration
}

var errLoopClosed = errors.New("relay: loop closed")

// Start hands a new session to the loop, from any goroutine. It reports
// false, and leaves the client socket and Done to the caller, when the
// loop has been closed: Done is called on the loop's goroutine or not at
// all.
//
// The session counts in Live at once, and in Descriptors with the two
// sockets it will hold, so that a caller choosing a loop by its sessions,
// or keeping a descriptor reserve, sees it before the loop gets to it.
func (l *Loop) Start(p *Params) bool {
	l.live.Add(1)
	l.fds.Add(2)
	if !l.post(func() { l.fds.Add(-2); l.begin(p) }) {
		l.live.Add(-1)
		l.fds.Add(-2)
		return false
	}
	return true
}

// Begin starts a session from the loop's own goroutine: from the ready
// function of a Watch. Anywhere else, use Start.
func (l *Loop) Begin(p *Params) {
	l.live.Add(1)
	l.begin(p)
}

func (l *Loop) begin(p *Params) {
	l.nextGen = (l.nextGen + 1) & (1<<30 - 1)
	c := &conn{l: l, p: p, gen: l.nextGen, heapIdx: -1, target: p.Target}
	c.client.fd = p.Client
	c.upstream.fd = -1
	c.toUpstream = flow{src: &c.client, dst: &c.upstream}
	c.toClient = flow{src: &c.upstream, dst: &c.client}
	c.startedWall = p.Record.Start
	c.lastActive = l.now // the connect time starts: lastActive is unused while dialing
	l.allocSlot(c)
	l.fds.Add(1) // the client socket
	if p.Peek != nil {
		c.mstate = session.Peeking
		if err := l.add(c, clientSide, c.client.fd); err != nil {
			c.finish(session.LocalError, fmt.Errorf("relay: epoll_ctl: %w", err), false)
			return
		}
		c.beginPeeking()
		return
	}
	c.mstate = session.Connecting
	p.Stats.Enter(session.Connecting)
	if err := l.add(c, clientSide, c.client.fd); err != nil {
		c.finish(session.LocalError, fmt.Errorf("relay: epoll_ctl: %w", err), false)
		return
	}
	if p.TLSServer != nil {
		c.beginHandshake(&c.client, p.TLSServer, nil, nil)
		return
	}
	c.startDialing()
}

// startDialing starts the connect budget and the first dial.
func (c *conn) startDialing() {
	c.state = dialing
	c.lastActive = c.l.now // the connect time starts
	if c.p.ConnectBudget > 0 {
		c.connectBy = c.l.now + c.p.ConnectBudget
		c.l.timers.schedule(c, c.connectBy)
	}
	c.dial()
}

func (c *conn) dial() {
	c.p.Record.Dialed = c.target
	c.p.Record.Tries++
	c.tryBy = c.l.now + c.p.TryTimeout
	fd, err := dial.Start(c.target)
	if err != nil {
		c.dialFailed(err)
		return
	}
	c.upstream.fd = fd
	c.l.fds.Add(1)
	c.state = dialing
	if c.p.TryTimeout > 0 {
		c.reschedule()
	}
	if err := c.l.add(c, upstreamSide, fd); err != nil {
		c.finish(session.LocalError, fmt.Errorf("relay: epoll_ctl: %w", err), false)
	}
}

// dialFailed moves on to the next member after a failed try, or ends the
// session for the reason dial gives the error.
func (c *conn) dialFailed(err error) {
	if c.retry(err) {
		return
	}
	reason := dial.Reason(err)
	if reason == session.LocalError && c.p.LocalError != nil {
		c.p.LocalError(c.l, err)
	}
	c.finish(reason, err, false)
}

// retry moves the session to the next member after a failed try, if
// Upstreams offers one. No byte has moved yet either way: the client's
// bytes wait in its socket until the upstream connects (and those it
// peeked at, in early.peeked); the PROXY header is built at the connect,
// for the member that answered.
func (c *conn) retry(err error) bool {
	if c.p.Upstreams == nil {
		return false
	}
	next, name, ok := c.p.Upstreams.Retry(err)
	if !ok {
		return false
	}
	c.upstream.abortHandshake() // a timed-out TLS handshake's goroutine returns
	if c.upstream.fd >= 0 {
		closeFD(c.upstream.fd) // closing takes it out of epoll
		c.l.fds.Add(-1)
	}
	c.upstream = side{fd: -1}
	c.retried = true
	c.lastActive = c.l.now // the connect time is each try's
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
			// Writable with no error or hang-up means connected: only a
			// failed or odd handshake needs SO_ERROR read to say why.
			if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 || events&unix.EPOLLOUT == 0 {
				if err := dial.Result(c.upstream.fd, c.target); err != nil {
					c.dialFailed(err)
					return
				}
			}
			c.p.Stats.Connected(c.l.now - c.lastActive)
			if cfg := c.upstreamTLS(); cfg != nil {
				// The PROXY header, if any, goes first and raw. The
				// member counts as connected once its handshake is done.
				c.beginHandshake(&c.upstream, cfg, nil, c.proxyHeader())
				return
			}
			if c.p.Upstreams != nil {
				c.p.Upstreams.Connected()
			}
			c.connected()
		}
	case relaying:
		if events&unix.EPOLLERR != 0 && c.sawReset(which) {
			return
		}
		c.pump()
	case peeking:
		if which == clientSide && s.readable {
			c.peekRead()
		}
	}
}

// connected starts relaying, the upstream connected (and its TLS
// handshake done, if it has one).
func (c *conn) connected() {
	c.state = relaying
	c.setState(session.Open)
	c.lastActive = c.l.now
	c.keepaliveAt = c.l.now + keepaliveDelay
	filtered := c.p.Filters != nil && c.p.Filters.Load() != nil
	if c.early != nil || c.p.ProxyOut != nil {
		c.sendFirst(filtered)
	}
	if filtered {
		// A route with no filters in force pays nothing here;
		// pump notices a set that comes later.
		c.beginSwitch()
	}
	c.reschedule()
	c.pump()
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

// deadline returns when c must end if nothing happens, and why.
func (c *conn) deadline() (time.Duration, session.Reason) {
	const never = time.Duration(1<<63 - 1)
	switch c.state {
	case dialing:
		due := never
		if c.p.ConnectBudget > 0 {
			due = c.connectBy
		}
		if c.p.TryTimeout > 0 && c.tryBy < due {
			due = c.tryBy
		}
		if due != never {
			return due, session.ConnectTimeout
		}
	case relaying:
		if c.stopping != nil {
			return c.stopDue()
		}
		due, reason := never, session.IdleTimeout
		if c.p.IdleTimeout > 0 {
			due = c.lastActive + c.p.IdleTimeout
		}
		if c.halfClosed > 0 && c.p.HalfCloseTimeout > 0 {
			if d := c.halfClosed + c.p.HalfCloseTimeout; d < due {
				due, reason = d, session.HalfCloseTimeout
			}
		}
		if c.keepaliveAt > 0 && c.keepaliveAt < due {
			due, reason = c.keepaliveAt, session.NotEnded
		}
		for _, f := range [...]*flow{&c.toUpstream, &c.toClient} {
			if f.chain == nil {
				continue
			}
			if w := f.chain.Wake(); !w.IsZero() {
				if d := w.Sub(c.l.start); d < due {
					due, reason = d, session.NotEnded
				}
			}
		}
		return due, reason
	case peeking:
		// The reason is expired's to find: Peeked decides at the
		// deadline (see peekExpired).
		return c.early.by, session.ProxyError
	case handshaking:
		return c.handshakeBy, session.TLSHandshakeFailed
	}
	return never, session.NotEnded
}

// expired ends c for reason, its deadline having come; a try that timed
// out moves on to the next member instead, if there is one and the
// connect budget has time left.
func (c *conn) expired(reason session.Reason) {
	if c.state == peeking {
		c.peekExpired()
		return
	}
	if c.state == handshaking {
		if c.upstream.tls == nil {
			c.finish(session.TLSHandshakeFailed, handshakeError(true, errHandshakeTimeout), false)
		} else {
			c.upstreamHandshakeFailed(handshakeError(false, errHandshakeTimeout))
		}
		return
	}
	if c.stopping != nil {
		// Its destination took nothing for too long: the filter's
		// ending, now, without the bytes it did not take.
		c.end(c.stop)
		return
	}
	if reason == session.ConnectTimeout && c.state == dialing && c.p.Upstreams != nil {
		if c.p.ConnectBudget == 0 || c.l.now < c.connectBy {
			if c.retry(dial.ErrTimeout) {
				return
			}
		} else {
			c.p.Upstreams.Failed(dial.ErrTimeout)
		}
	}
	c.finish(reason, nil, false)
}

// keepaliveDelay is how long a session lives before its upstream socket
// gets keepalive (package sockopt says why).
const keepaliveDelay = sockopt.KeepaliveIdle

// keepaliveIfDue turns keepalive on for the upstream socket once the
// session has lived keepaliveDelay. A failure costs only the probes: the
// idle timeout still ends a session whose peer vanished.
func (c *conn) keepaliveIfDue() {
	if c.keepaliveAt == 0 || c.keepaliveAt > c.l.now {
		return
	}
	c.keepaliveAt = 0
	sockopt.Keepalive(c.upstream.fd)
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
		s.abortHandshake()
		if s.fd < 0 {
			continue
		}
		if reset {
			unix.SetsockoptLinger(s.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}
		closeFD(s.fd)
		l.fds.Add(-1)
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
	c.early = nil
	l.freeSlot(c)
	l.live.Add(-1)

	c.countBytes()
	c.p.Stats.Leave(c.mstate)
	r := c.p.Record
	r.Duration = time.Since(c.startedWall)
	r.Reason = reason
	r.Err = err
	c.p.Stats.End(r)
	c.p.Done(r)
}

// setState moves the session to state s, for the metrics and the admin
// API.
func (c *conn) setState(s session.State) {
	c.p.Stats.Move(c.mstate, s)
	c.mstate = s
}

// countBytes adds the bytes delivered since it last ran to Stats, and to
// the Record, which keeps what was counted: a live session's bytes show
// in the route's totals at the end of each turn, not only when it ends.
// One add per direction that moved, per turn.
func (c *conn) countBytes() {
	r := c.p.Record
	up, down := c.toUpstream.bytes-r.ToUpstream, c.toClient.bytes-r.ToClient
	if up == 0 && down == 0 {
		return
	}
	c.p.Stats.AddBytes(up, down)
	r.ToUpstream, r.ToClient = c.toUpstream.bytes, c.toClient.bytes
}
