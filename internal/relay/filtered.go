package relay

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/dial"
	"github.com/pierproxy/pier/internal/session"
)

// wallNow is the loop's clock as a time.Time, for filters.
func (l *Loop) wallNow() time.Time { return l.start.Add(l.now) }

// TakeUpFilters makes every session on the loop whose route's filters are
// in (Params.Filters == in) take up the set now in force in it on the
// loop's next turn, instead of at its next event: call it after in.Store.
// A session that is idle has no next event, and a filter set's change
// must still reach it: a timeout with close_at_end ends it, a stall lets
// its bytes go. It reports false when the loop has been closed.
//
// The loop walks its slots, walkChunk per turn (see walk), and gives each
// such session a turn (pump), which begins the switch and moves what it
// can at once: the old chains see their input end, and what they forward
// goes out as the destination takes it. A session still connecting takes
// the set up when it connects; one a filter has ended, or that took the
// set up already, is left as it is. Nothing is added to the turns of the
// data path: the sessions' own turns find a change as they always did.
// The walk's own turns may move bytes (a busy session's pump moves what
// it would have moved at its next event, only sooner), so one of them can
// take longer than a listing's.
func (l *Loop) TakeUpFilters(in *chain.InForce) bool {
	if in == nil {
		return true
	}
	return l.walk(func(c *conn) bool {
		if c.p.Filters == in && c.state == relaying && c.stopping == nil && in.Load() != c.filters {
			c.pump()
		}
		return false
	}, func() {})
}

// beginSwitch makes the chains of the filter set in force for both
// directions, to be taken up at each direction's next chunk boundary (see
// attach). Until then the direction reads nothing more, so the boundary
// comes as soon as what is in flight has gone out: the bytes in its pipe,
// or, for a direction already filtered, whatever its filters hold, which
// they flush as at the end of the stream, without the end being passed on.
// A direction whose source has ended keeps what it has.
func (c *conn) beginSwitch() {
	set := c.p.Filters.Load()
	c.filters = set
	if c.info == nil {
		r := c.p.Record
		c.info = &filter.Session{
			ID:       r.ID,
			Route:    r.Route,
			Client:   r.Client,
			Local:    r.Listener,
			Upstream: c.target,
			Start:    r.Start,
		}
		if a, err := dial.LocalAddr(c.upstream.fd); err == nil {
			c.info.UpstreamLocal = a
		}
		if r.Edge != nil {
			edgeInfo(c.info, r.Edge)
		}
	}
	up, down := set.Chains(c.info)
	for _, x := range [...]struct {
		f  *flow
		ch *chain.Chain
	}{{&c.toUpstream, up}, {&c.toClient, down}} {
		f := x.f
		if f.eof && !f.pending {
			if x.ch != nil {
				c.closeChain(x.ch, session.NotEnded, nil)
			}
			continue
		}
		if f.next != nil {
			c.closeChain(f.next, session.NotEnded, nil) // never taken up
		}
		if f.chain != nil && !f.pending {
			f.chain.CloseInput()
		}
		f.next, f.pending = x.ch, true
	}
}

// attach makes f take up its pending chain, at a chunk boundary: nothing
// in its pipe, and its old chain, if any, drained.
func (c *conn) attach(f *flow) {
	if f.chain != nil {
		c.closeChain(f.chain, session.NotEnded, nil)
	}
	f.chain, f.next, f.pending = f.next, nil, false
	if f.chain != nil && f.pipe != nil {
		c.l.putPipe(f.pipe, true)
		f.pipe = nil
	}
	if f.chain == nil && c.early != nil {
		c.unfilterPeeked(f)
	}
	f.bulk = false
	if f.chain != nil && f.eof {
		f.chain.CloseInput()
	}
}

// moveFiltered runs one direction through its chain: read into the first
// filter's queue, run the filters, write what comes out, until the kernel
// says wait on both sockets and the filters have nothing more to do, or
// budget bytes have moved.
func (c *conn) moveFiltered(f *flow) (more bool, ferr *flowError) {
	ch := f.chain
	moved := 0
	if ferr := c.flushTLS(f.dst); ferr != nil {
		return false, ferr
	}
	for moved < budget {
		progress := false
		if out := ch.Out(); len(out) > 0 && f.dst.writable {
			n, err := c.writeSide(f.dst, out)
			if n > 0 {
				ch.Sent(n)
				f.bytes += int64(n)
				moved += n
				progress = true
			}
			if err == unix.EAGAIN {
				f.dst.writable = false
			} else if err != nil {
				return false, c.sideError(f.dst, err)
			}
		}
		if !f.pending && c.peekedLeft(f) {
			// The client's peeked bytes come before anything read now.
			if n := c.feedPeeked(f); n > 0 {
				moved += n
				progress = true
			}
		} else if !f.eof && f.src.readable && !f.pending && c.roomToRead(f) {
			if space := ch.ReadSpace(); space != nil {
				n, err := c.readSide(f.src, space)
				switch {
				case err == unix.EAGAIN:
					f.src.readable = false
				case err != nil:
					return false, c.sideError(f.src, err)
				case n == 0:
					f.eof = true
					ch.CloseInput()
					progress = true
				default:
					ch.Fill(n)
					moved += n
					progress = true
					if n < len(space) && !f.src.hup && f.src.tls == nil {
						f.src.readable = false
					}
				}
			}
		}
		ran, err := ch.Run(c.l.wallNow())
		if err != nil {
			// The session ends, but only once what the filters
			// forwarded has reached dst: see drainStopped.
			c.stopping, c.stop = f, c.filterError(err)
			c.lastActive = c.l.now
			return false, nil
		}
		if f.pending && ch.Done() {
			c.attach(f)
			if moved > 0 {
				c.lastActive = c.l.now
			}
			return c.move(f)
		}
		if !progress && !ran {
			break
		}
	}
	if moved > 0 {
		c.lastActive = c.l.now
	}
	if ch.Done() && !f.shut && !f.pending {
		if ferr := c.shut(f); ferr != nil {
			return false, ferr
		}
	}
	return moved >= budget, nil
}

// filterError turns a chain's error into how the session ends.
func (c *conn) filterError(err error) *flowError {
	c.logPanic(err)
	switch {
	case chain.IsReset(err):
		return &flowError{session.FilterReset, err}
	case chain.IsClose(err):
		return &flowError{session.FilterClose, err}
	}
	return &flowError{session.FilterError, err}
}

// closeChain tells a chain's streams the session (or their part in it) has
// ended.
func (c *conn) closeChain(ch *chain.Chain, reason session.Reason, err error) {
	var cerr error
	switch {
	case reason == session.Done || reason == session.NotEnded:
	case err != nil:
		cerr = err
	default:
		cerr = errors.New(reason.String())
	}
	c.logPanic(ch.Close(cerr))
}

// logPanic logs err if it is a filter's panic, with the filter's name and
// the stack.
func (c *conn) logPanic(err error) {
	var ce *chain.Error
	if errors.As(err, &ce) && ce.Panic != nil {
		c.l.log.Error("filter panicked", "filter", ce.Filter, "session", c.p.Record.ID,
			"route", c.p.Record.Route, "panic", fmt.Sprint(ce.Panic), "stack", string(ce.Stack))
	}
}

// stopBound bounds how long a session a filter ended waits for its
// destination to take what the filters forwarded, when the route has no
// idle timeout to bound it with.
const stopBound = 10 * time.Second

// stopPoll is how often a session that ends with a reset looks whether
// its destination's send queue has drained (see drainStopped).
const stopPoll = 5 * time.Millisecond

// drainStopped runs a session whose filter has ended it (ErrReset,
// ErrClose or a failure), for the flow that filter was on: nothing more is
// read either way and no filter runs again, but what the filters
// forwarded (the bytes passed in the same call as the error, and any
// before them still waiting) is written to dst as dst takes it, on its
// writable edges like any write. Then the session ends with the filter's
// reason. A reset, which makes the kernel drop what its send queue still
// holds, waits for that queue to empty as well: the kernel raises no edge
// for it, so a timer looks every stopPoll.
//
// Bounded: when dst takes no byte for the route's idle timeout (stopBound
// if there is none), the session ends anyway, with the filter's reason
// still (see deadline).
func (c *conn) drainStopped() {
	f := c.stopping
	moved := 0
	for moved < budget {
		out := f.chain.Out()
		if len(out) == 0 {
			break
		}
		if !f.dst.writable {
			c.reschedule()
			return
		}
		n, err := c.writeSide(f.dst, out)
		if n > 0 {
			f.chain.Sent(n)
			f.bytes += int64(n)
			moved += n
			c.lastActive = c.l.now
		}
		if err == unix.EAGAIN {
			f.dst.writable = false
		} else if err != nil {
			// dst is gone: nothing more can reach it.
			c.end(c.stop)
			return
		}
	}
	c.countBytes()
	if len(f.chain.Out()) > 0 {
		c.l.enqueue(c) // out of budget for this turn
		c.reschedule()
		return
	}
	if t := f.dst.tls; t != nil && len(t.raw.pending) > 0 {
		if ferr := c.flushTLS(f.dst); ferr != nil {
			c.end(c.stop)
			return
		}
		if len(t.raw.pending) > 0 {
			c.reschedule() // the rest when dst is writable
			return
		}
	}
	if c.stop.resets() {
		// SIOCOUTQ: bytes dst's kernel has not had acknowledged yet.
		q, err := unix.IoctlGetInt(f.dst.fd, unix.TIOCOUTQ)
		if err == nil && q > 0 {
			if q != c.stopQueued {
				c.stopQueued = q
				c.lastActive = c.l.now
			}
			c.stopCheck = c.l.now + stopPoll
			c.reschedule()
			return
		}
	}
	c.end(c.stop)
}

// stopDue returns when a session draining after its filter ended it gives
// up on its destination, or looks at its send queue again.
func (c *conn) stopDue() (time.Duration, session.Reason) {
	bound := c.p.IdleTimeout
	if bound <= 0 {
		bound = stopBound
	}
	due, reason := c.lastActive+bound, c.stop.reason
	if c.stopCheck > 0 && c.stopCheck < due {
		due, reason = c.stopCheck, session.NotEnded
	}
	return due, reason
}

// edgeInfo tells the filters what the listener's edge learned of the
// client: the socket's address behind a PROXY header, the ClientHello's
// server name and protocols, the header's TLVs.
func edgeInfo(s *filter.Session, e *session.Edge) {
	s.Peer, s.ServerName, s.ALPN = e.Peer, e.SNI, e.ALPN
	if e.Proxy == "" && e.ProxyVersion == 0 {
		return
	}
	version := int(e.ProxyVersion)
	if version == 0 {
		switch e.Proxy {
		case "v1":
			version = 1
		case "v2":
			version = 2
		}
	}
	s.Proxy = &filter.ProxyInfo{
		Version:   version,
		Local:     e.Proxy == "local",
		Authority: e.Authority,
		ALPN:      e.ProxyALPN,
		UniqueID:  e.UniqueID,
	}
	if e.SSL || e.SSLVersion != "" || e.SSLCN != "" || e.SSLCipher != "" {
		s.Proxy.SSL = &filter.SSLInfo{Version: e.SSLVersion, CN: e.SSLCN, Cipher: e.SSLCipher, Verified: e.SSLVerified}
	}
}
