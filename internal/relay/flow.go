package relay

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/session"
)

// The flow engine: how bytes move once a session's upstream has connected.
// A session is two flows, one per direction; pump runs both, move runs one
// (splice or read and write; filtered.go holds the filtered path), and a
// flow that used its turn's budget goes to the back of the loop's run
// queue. Everything about a session's life before and around this (dial,
// retry, deadlines, finish) is in conn.go.

// budget bounds the bytes one direction moves per turn, so that a bulk
// transfer cannot starve the other sessions on its loop. A variable only
// so that a test can make a small one.
var budget = 2 << 20

// A side is one of a session's sockets and what the loop knows of its
// readiness: set by epoll's edges, cleared by EAGAIN.
type side struct {
	fd       int
	readable bool
	writable bool
	hup      bool // epoll has reported the peer's FIN or an error
	// tls, when set, is the side's TLS (tls.go): its bytes are read and
	// written through it, and never spliced.
	tls *tlsSide
}

// A flow is one direction of a session: bytes read from src, spliced
// through pipe, written to dst.
//
// Invariants, true whenever the loop is not inside move for the flow (the
// tests assert them with checkFlow after every step they drive):
//
//  1. inPipe > 0 only with a pipe: bytes are never counted in a pipe the
//     flow does not hold.
//  2. An unfiltered flow holds a pipe only while bytes are in it (inPipe >
//     0): an idle direction costs no descriptor.
//  3. Bytes leave in the order they came: the pipe's before spill's, and
//     src is not read while either holds bytes.
//  4. shut implies eof, an empty pipe and no spill: the FIN is passed on
//     only after every byte before it.
//  5. A filtered flow (chain set) holds no pipe and no spill and is never
//     bulk: its bytes wait in its chain.
//  6. pending implies not shut: a direction that is taking up new
//     filters has not passed its FIN on.
//  7. bytes only grows, and counts bytes dst accepted, never bytes read.
//  8. Once a filter has ended the session (conn.stopping is set), no
//     source is read and no filter runs: only what the stopping flow's
//     chain forwarded is written out (drainStopped), then the session ends.
//  9. Peeked bytes (conn.early.peeked: the client's, read before the
//     dial) exist only for toUpstream, only while it has not read src,
//     and never with eof: they go out before any byte read after them.
//  10. A PROXY header pier writes is the first byte the upstream
//     receives (it heads toUpstream's spill at connect, before a chain
//     is attached), and is never counted in bytes.
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

// pump moves bytes both ways until both directions wait for the kernel or
// have used their budget for this turn.
func (c *conn) pump() {
	if c.stopping != nil {
		c.drainStopped()
		return
	}
	if c.p.Filters != nil && c.p.Filters.Load() != c.filters {
		c.beginSwitch()
	}
	var more bool
	for _, f := range [...]*flow{&c.toUpstream, &c.toClient} {
		m, err := c.move(f)
		if err != nil {
			c.end(err)
			return
		}
		if c.stopping != nil {
			c.drainStopped()
			return
		}
		more = more || m
	}
	if c.toUpstream.shut && c.toClient.shut {
		c.finish(session.Done, nil, false)
		return
	}
	if c.halfClosed == 0 && (c.toUpstream.shut || c.toClient.shut) {
		c.halfClosed = c.l.now
		if c.toUpstream.shut {
			c.setState(session.HalfClosedClient) // the client's FIN went on
		} else {
			c.setState(session.HalfClosedUpstream)
		}
		c.reschedule()
	}
	c.countBytes()
	if more {
		c.l.enqueue(c)
	}
	if c.toUpstream.chain != nil || c.toClient.chain != nil {
		// A filter may have asked to be woken sooner than the timer
		// the session has.
		c.reschedule()
	}
}

// passFIN passes f's FIN on to its destination: shutdown(SHUT_WR), unless
// the other direction is over too. Then the session ends at once, and the
// close that follows sends the FIN itself: the socket's receive queue is
// empty (its peer's FIN was read), so close does not turn into a RST. One
// system call less for every connection that ends cleanly.
func (c *conn) passFIN(f *flow) {
	f.shut = true
	other := &c.toClient
	if f == other {
		other = &c.toUpstream
	}
	if other.shut && other.eof {
		return
	}
	// The peer may already be gone; what matters is that our side has
	// nothing more to send.
	shutdownWR(f.dst.fd)
}

// flowError is why a flow stopped: which side failed, and how.
type flowError struct {
	reason session.Reason
	err    error
}

// end ends the session for e: with a reset to both sides, unless a filter
// closed it cleanly.
func (c *conn) end(e *flowError) {
	c.finish(e.reason, e.err, e.resets())
}

// resets reports whether ending for e resets both sides: every flow error
// does but a filter's clean close.
func (e *flowError) resets() bool { return e.reason != session.FilterClose }

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
	if f.src.tls != nil || f.dst.tls != nil {
		return c.moveTLS(f)
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
			if c.early != nil {
				n = c.countSpill(f, n) // a PROXY header is not the client's
			}
			f.bytes += int64(n)
			moved += n
			continue
		}
		if f.eof {
			if !f.shut {
				c.passFIN(f)
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
		if f.bulk && f.pipe == nil {
			// Out of descriptors for a pipe (EMFILE): copy through the
			// scratch buffer instead, a chunk at a time, rather than end
			// a session that already has both its sockets.
			if p, err := c.l.getPipe(); err == nil {
				f.pipe = p
			} else {
				f.bulk = false
			}
		}
		if f.bulk {
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
		// to a spill slice, allocated for the occasion; so does the whole
		// rest when no pipe can be had (out of descriptors).
		if f.pipe == nil {
			if p, err := c.l.getPipe(); err == nil {
				f.pipe = p
			}
		}
		m := 0
		if f.pipe != nil {
			m, err = write(f.pipe.w, buf[w:n])
			if err != nil && err != unix.EAGAIN {
				return 0, &flowError{session.LocalError, fmt.Errorf("relay: pipe write: %w", err)}
			}
			f.inPipe = m
		}
		if w+m < n {
			f.spill = append([]byte(nil), buf[w+m:n]...)
		}
		f.dst.writable = false
	}
	return n, nil
}

func (c *conn) sideError(s *side, err error) *flowError {
	if s.tls != nil && c.handshakeRefused(s, err) {
		return &flowError{session.TLSHandshakeFailed, handshakeError(s == &c.client, err)}
	}
	if s == &c.upstream {
		return &flowError{session.UpstreamReset, err}
	}
	return &flowError{session.ClientReset, err}
}
