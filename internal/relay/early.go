package relay

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/dial"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/session"
)

// A session's life before its first byte reaches the upstream, when it is
// not the plain one: the peeking state, which reads the client's first
// bytes (a PROXY header, a TLS ClientHello) before anything is dialed and
// lets Peek.Peeked choose the route, and the PROXY header pier writes to
// the upstream before any client byte. Both ride the flow engine: at
// connect the header goes into toUpstream's spill, which is written before
// a pending filter chain is attached, so it reaches the upstream raw and
// first even on a filtered route; the client's peeked bytes follow it in
// the spill when the direction is unfiltered, or are fed into the first
// filter before src is read when it is filtered (a dump shows the hello).
// A session on a plain listener with no PROXY header to send has no early
// at all: its path is the one it always had.

// early is what a session keeps from before its upstream connected until
// its first bytes are out. Nil for plain sessions, and once done.
type early struct {
	peek *Peek // nil once decided (or never peeking: PROXY out only)
	// acceptedAt is Record.Start on the loop's clock: Peek.Timeout and a
	// Decision's Wait count from it.
	acceptedAt time.Duration
	// by is when Peeked is called again if nothing arrives.
	by time.Duration
	// buf holds the bytes read while a decision waits for more; nil while
	// a read's bytes are looked at in the loop's scratch buffer, which is
	// where a ClientHello read whole stays.
	buf []byte
	eof bool // the client sent FIN while peeking: read nothing more
	// need is the last Decision's Need: a read that leaves buf shorter
	// calls no Peeked.
	need int
	// peeked is the client's bytes past the PROXY header, to be delivered
	// to the upstream first and once, after the header.
	peeked []byte
	// hidden is how many of toUpstream's spill bytes, from its front, are
	// the PROXY header pier wrote: not the client's, so never counted.
	hidden int
}

// peeking is the state of a session reading its client's first bytes,
// before anything is dialed.
const peeking = closed + 1

// maxPeekTime bounds the peeking state whatever Peeked asks: a Decision's
// Wait past it is cut to it, and at it Peeked must decide. The
// configuration bounds each of the header's and the hello's timeouts to a
// minute, so two minutes is only a guard against a Peeked that never
// decides.
const maxPeekTime = 2 * time.Minute

// errUndecided is why a session ends when Peeked, at its deadline, still
// asks to wait, or decides nothing: a bug of the caller's, bounded here.
var errUndecided = errors.New("relay: peek: no decision at the deadline")

// beginPeeking starts c in the peeking state: the client socket is in
// epoll, nothing is dialed. One read is tried at once, since a client's
// first bytes are usually queued by the time it is accepted.
func (c *conn) beginPeeking() {
	l := c.l
	pk := c.p.Peek
	e := &early{peek: pk, acceptedAt: c.startedWall.Sub(l.start)}
	timeout := pk.Timeout
	if timeout <= 0 || timeout > maxPeekTime {
		timeout = maxPeekTime
	}
	e.by = e.acceptedAt + timeout
	c.early = e
	c.state = peeking
	c.mstate = session.Peeking
	l.timers.schedule(c, e.by)
	// Read now, not at the epoll entry's first event: a client's first
	// bytes are usually queued by accept time, and that event would cost
	// a turn. Once this read drains the socket, the event says only
	// writable (epoll looks again when it reports), so after connect the
	// flow reads the client again only on a new edge.
	c.client.readable = true
	c.peekRead()
}

// max is how many bytes a peek may hold.
func (pk *Peek) max() int {
	if pk.Max <= 0 || pk.Max > peek.Max {
		return peek.Max
	}
	return pk.Max
}

// peekRead reads what the client has sent, up to the peek's bound, and
// asks Peeked after each read that returned bytes or EOF, unless the last
// Decision's Need says more bytes must come first. A short read
// leaves the client not readable (unless epoll reported a FIN or error),
// so that after connect the flow reads again only on a new edge.
func (c *conn) peekRead() {
	e := c.early
	max := e.peek.max()
	for c.state == peeking && c.client.readable && !e.eof && len(e.buf) < max {
		room := c.l.scratch[:max-len(e.buf)]
		n, err := read(c.client.fd, room)
		if err == unix.EAGAIN {
			c.client.readable = false
			return
		}
		if err != nil {
			c.finish(session.ClientReset, err, false)
			return
		}
		if n == 0 {
			// Not recorded as the flow's EOF: the socket answers 0 again
			// once the peeked bytes are out, so the FIN stays behind them.
			e.eof = true
		} else if n < len(room) && !c.client.hup {
			c.client.readable = false
		}
		b := room[:n:n] // Peeked may not append into the scratch buffer
		if e.buf != nil {
			e.buf = appendBounded(e.buf, b, max)
			b = e.buf
			if len(b) < e.need && len(b) < max && !e.eof {
				continue // Peeked said it cannot decide on fewer
			}
		}
		d := e.peek.Peeked(b, e.eof, e.elapsed(c.l.now))
		if d.Wait > 0 && e.buf == nil && len(b) > 0 {
			// The bytes wait for more: out of the scratch buffer, which
			// the next read (of any session) overwrites.
			e.buf = appendBounded(nil, b, max)
		}
		c.decide(d, b, false)
	}
}

// appendBounded appends b to buf, growing it at most to max bytes of
// capacity: a split hello costs what it has sent so far, not the bound.
func appendBounded(buf, b []byte, max int) []byte {
	if need := len(buf) + len(b); need > cap(buf) {
		grown := make([]byte, len(buf), min(max, need+need/2))
		copy(grown, buf)
		buf = grown
	}
	return append(buf, b...)
}

// peekExpired runs at the peek's deadline: Peeked must decide now.
func (c *conn) peekExpired() {
	e := c.early
	b := e.buf
	c.decide(e.peek.Peeked(b, e.eof, e.elapsed(c.l.now)), b, true)
}

// elapsed is the time since accept at loop time now. The loop reads its
// clock once per turn, so a client accepted in this turn may look
// accepted a little after now: that is no time at all.
func (e *early) elapsed(now time.Duration) time.Duration {
	return max(now-e.acceptedAt, 0)
}

// decide carries out a Decision on the bytes b it was made on. atDeadline:
// Peeked was called because its deadline passed, so it may not wait again
// unless it asks for a later one.
func (c *conn) decide(d Decision, b []byte, atDeadline bool) {
	e := c.early
	elapsed := e.elapsed(c.l.now)
	switch {
	case d.Wait > 0 && !(atDeadline && (d.Wait <= elapsed || elapsed >= maxPeekTime)):
		e.need = d.Need
		e.by = e.acceptedAt + min(d.Wait, maxPeekTime)
		c.l.timers.schedule(c, e.by)
	case d.Wait > 0 || d.Next == nil && d.End == session.NotEnded:
		c.finish(session.ProxyError, errUndecided, false)
	case d.Next == nil:
		c.finish(d.End, d.Err, false)
	default:
		c.beginDialing(d.Next, b[min(max(d.Skip, 0), len(b)):])
	}
}

// beginDialing leaves the peeking state for next's route: the session
// keeps its socket and its Record, and the client's bytes in peeked (past
// the PROXY header) wait for the upstream to connect.
func (c *conn) beginDialing(next *Params, peeked []byte) {
	l, e := c.l, c.early
	next.Client, next.Record = c.p.Client, c.p.Record
	c.p = next
	c.target = next.Target
	e.peek, e.buf = nil, nil
	if len(peeked) > 0 {
		e.peeked = append([]byte(nil), peeked...) // own copy: b may be the scratch buffer
	}
	c.mstate = session.Connecting
	next.Stats.Enter(session.Connecting)
	l.timers.remove(c)
	if next.TLSServer != nil {
		// The route terminates TLS: the peeked hello is the handshake's
		// first input, never the upstream's.
		prefix := e.peeked
		e.peeked = nil
		c.beginHandshake(&c.client, next.TLSServer, prefix, nil)
		return
	}
	c.startDialing()
}

// sendFirst readies what the upstream gets before any client byte, at
// connect: the PROXY header, when the route or the member sends one, and
// the peeked bytes of an unfiltered direction, in toUpstream's spill (the
// filtered path feeds them through its chain instead; see feedPeeked).
// Only sessions with an early, or a ProxyOut, come here.
func (c *conn) sendFirst(filtered bool) {
	var hdr []byte
	if c.upstream.tls == nil { // else the handshake wrote it first
		hdr = c.proxyHeader()
	}
	e := c.early
	if e == nil {
		if len(hdr) == 0 {
			return // this member is sent no header: nothing goes first
		}
		e = &early{}
		c.early = e
	}
	f := &c.toUpstream
	if len(hdr) > 0 {
		f.spill = hdr
		e.hidden = len(hdr)
	}
	if !filtered && len(e.peeked) > 0 {
		f.spill = append(f.spill, e.peeked...)
		e.peeked = nil
	}
	if e.hidden == 0 && e.peeked == nil {
		c.early = nil
	}
}

// appendProxyHeader writes a PROXY header; a variable only so that a test
// can tell the header's bytes apart whatever the codec writes.
var appendProxyHeader = peek.AppendHeader

// proxyHeader returns the PROXY header for the member just connected, or
// nil: the member's version (MemberProxy) or else the route's. Built per
// connect, so that a retry's header is its own member's.
func (c *conn) proxyHeader() []byte {
	o := c.p.ProxyOut
	if o == nil {
		return nil
	}
	v := c.p.SendProxy
	if mp, ok := c.p.Upstreams.(MemberProxy); ok {
		v = mp.SendProxy()
	}
	if v == 0 {
		return nil
	}
	if !o.Dst.IsValid() {
		// The address the client connected to: a wildcard listener's
		// own is not it. One getsockname, on send_proxy routes only.
		if a, err := dial.LocalAddr(c.client.fd); err == nil {
			o.Dst = a
		} else {
			o.Dst = c.p.Record.Listener
		}
	}
	return appendProxyHeader(nil, v, o)
}

// countSpill returns how many of n bytes just written from f's spill were
// the client's: the PROXY header at its front is pier's.
func (c *conn) countSpill(f *flow, n int) int {
	e := c.early
	if e == nil || e.hidden == 0 || f != &c.toUpstream {
		return n
	}
	h := min(n, e.hidden)
	e.hidden -= h
	if e.hidden == 0 && e.peeked == nil {
		c.early = nil
	}
	return n - h
}

// feedPeeked gives a filtered direction the client's peeked bytes before
// anything read from the socket, as much as its first filter takes. It
// reports the bytes fed.
func (c *conn) feedPeeked(f *flow) int {
	e := c.early
	space := f.chain.ReadSpace()
	if space == nil {
		return 0
	}
	n := copy(space, e.peeked)
	f.chain.Fill(n)
	e.peeked = e.peeked[n:]
	if len(e.peeked) == 0 {
		e.peeked = nil
		if e.hidden == 0 {
			c.early = nil
		}
	}
	return n
}

// peekedLeft reports whether f is toUpstream with peeked bytes not yet
// handed on: src must not be read before them.
func (c *conn) peekedLeft(f *flow) bool {
	return c.early != nil && c.early.peeked != nil && f == &c.toUpstream
}

// unfilterPeeked moves the peeked bytes of a direction that has just
// taken up no chain into its spill, where the unfiltered path sends them
// before reading src. attach calls it at a chunk boundary: the pipe and
// spill are empty.
func (c *conn) unfilterPeeked(f *flow) {
	if c.peekedLeft(f) {
		f.spill = append(f.spill, c.early.peeked...)
		c.early.peeked = nil
		if c.early.hidden == 0 {
			c.early = nil
		}
	}
}
