package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/session"
)

// TLS on a session's sides: the client's terminated (pier the server),
// the upstream's originated (pier the client), or both.
//
// A handshake runs off the loop, on a goroutine of its own, through a
// duplicate of the side's socket registered with Go's poller: it may wait
// for its peer and spend a millisecond of CPU on a signature, and neither
// may hold up the loop's other sessions. It is bounded by the route's
// handshake timeout, by the loop's timer as well as by the duplicate's
// deadline and its context's, and it ends at once when the session does
// (finish closes the duplicate and cancels the context, which a handshake
// waiting for its turn to sign, in tlsconf, gives the turn up for). Its
// result comes back to the loop as posted work.
//
// Then the loop drives the same tls.Conn without blocking: its transport,
// rawConn, reads the loop's own socket and answers EAGAIN with an error
// crypto/tls treats as temporary (it does not make it sticky), and never
// fails a write: what the socket does not take waits in pending, which the
// loop writes out when the socket is writable again, and no new record is
// written while it holds bytes. A TLS side never splices: its flows go
// through the scratch buffer (or their filters), as plaintext.
//
// Kernel TLS would let a terminated session splice again once its keys
// are in the kernel; this kernel offers no tls ULP
// (/proc/sys/net/ipv4/tcp_available_ulp), so pier keeps the record layer
// in user space (tlsconf.KernelTLS reports what the kernel offers).

// DefaultHandshakeTimeout bounds a TLS handshake whose Params set none.
const DefaultHandshakeTimeout = 10 * time.Second

// maxHandshakes bounds one loop's handshakes in flight: each holds a
// goroutine and a duplicate socket while its peer answers. A client over
// the bound ends at once (tls_handshake_failed), as HAProxy's maxsslconn.
const maxHandshakes = 4096

// maxReadPending bounds the ciphertext a TLS side may hold unsent while
// the loop reads it: crypto/tls answers some records it reads (a
// KeyUpdate) with records of its own, so a peer that sends those and
// never reads would otherwise grow pending for ever. Past it, the side is
// not read until its pending is out.
const maxReadPending = 64 << 10

// maxPending is the backstop: a side whose unsent ciphertext passes it
// fails (its session ends) rather than grow.
const maxPending = 1 << 20

var (
	errHandshakeTimeout = errors.New("relay: tls: handshake timed out")
	errHandshakesFull   = fmt.Errorf("relay: tls: more than %d handshakes in flight on one loop", maxHandshakes)
	errPendingFull      = fmt.Errorf("relay: tls: more than %d bytes of records the peer does not read", maxPending)
)

// MemberTLS, when a session's Upstreams implements it, gives the TLS
// client configuration for the member just dialed (nil: plain), which
// overrides Params.TLSClient. It runs on the loop and must not block.
type MemberTLS interface {
	UpstreamTLS() *tls.Config
}

// wouldBlock is rawConn's EAGAIN: a net.Error whose Temporary is true,
// so that crypto/tls returns it without remembering it.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "relay: tls: would block" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock error = wouldBlock{}

// rawConn is a tls.Conn's transport over a side's socket. While hc is set
// (the handshake, off the loop) it is hc; then it is the loop's own
// non-blocking socket.
type rawConn struct {
	fd int
	// hc is the handshake's duplicate of fd, in Go's poller; nil once the
	// loop has taken the side back. Set before the handshake starts,
	// cleared on the loop after it ended.
	hc net.Conn
	// prefix is bytes of the peer's read before the handshake began (a
	// ClientHello peeked to choose the route): read first.
	prefix []byte
	// pending is ciphertext the socket has not taken yet.
	pending []byte
	// eof: the socket returned EOF. With crypto/tls's io.EOF it tells a
	// bare FIN (a truncation) from a close_notify.
	eof bool
}

func (r *rawConn) Read(b []byte) (int, error) {
	if len(r.prefix) > 0 {
		n := copy(b, r.prefix)
		r.prefix = r.prefix[n:]
		if len(r.prefix) == 0 {
			r.prefix = nil
		}
		return n, nil
	}
	if r.hc != nil {
		return r.hc.Read(b)
	}
	n, err := read(r.fd, b)
	switch {
	case err == unix.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		r.eof = true
		return 0, io.EOF
	}
	return n, nil
}

func (r *rawConn) Write(b []byte) (int, error) {
	if r.hc != nil {
		return r.hc.Write(b)
	}
	total := len(b)
	if len(r.pending)+len(b) > maxPending {
		return 0, errPendingFull
	}
	if len(r.pending) == 0 {
		n, err := write(r.fd, b)
		if err != nil && err != unix.EAGAIN {
			return 0, err
		}
		b = b[max(n, 0):]
		if len(b) == 0 {
			return total, nil
		}
	}
	r.pending = append(r.pending, b...)
	return total, nil
}

// flush writes pending out; EAGAIN when the socket still holds some back.
func (r *rawConn) flush() error {
	for len(r.pending) > 0 {
		n, err := write(r.fd, r.pending)
		if err != nil {
			return err
		}
		r.pending = r.pending[n:]
	}
	r.pending = nil // an idle side holds no buffer
	return nil
}

func (r *rawConn) Close() error                     { return nil } // the loop closes fd
func (r *rawConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (r *rawConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (r *rawConn) SetDeadline(time.Time) error      { return nil }
func (r *rawConn) SetReadDeadline(time.Time) error  { return nil }
func (r *rawConn) SetWriteDeadline(time.Time) error { return nil }

// A tlsSide is the TLS of one side of a session.
type tlsSide struct {
	conn *tls.Conn
	raw  rawConn
	// cancel ends the handshake's context: its deadline, or the session's
	// end (abortHandshake). A handshake waiting for its turn to sign
	// (tlsconf) gives the turn up then.
	cancel context.CancelFunc
	// closeNotified: close_notify has been written (into pending at
	// least): the FIN may follow once pending is out.
	closeNotified bool
}

// read reads plaintext as read(2) would: EAGAIN when nothing is there,
// (0, nil) at the end of the stream. A stream that ended with a bare FIN
// is marked truncated in the record.
func (c *conn) tlsRead(s *side, b []byte) (int, error) {
	n, err := s.tls.conn.Read(b)
	switch {
	case err == nil || n > 0:
		return n, nil
	case errors.Is(err, errWouldBlock):
		return 0, unix.EAGAIN
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		if s.tls.raw.eof {
			c.truncated(s)
		}
		return 0, nil
	}
	return 0, err
}

// tlsWrite writes plaintext as write(2) would: all of b once the side's
// earlier records are out, EAGAIN while they are not.
func (c *conn) tlsWrite(s *side, b []byte) (int, error) {
	t := s.tls
	if err := t.raw.flush(); err != nil {
		return 0, err
	}
	return t.conn.Write(b)
}

// tlsShut sends close_notify on s; it reports false, with s not writable,
// while close_notify and what came before it are not all out: the FIN
// must wait for them.
func (c *conn) tlsShut(s *side) (bool, error) {
	t := s.tls
	if !t.closeNotified {
		t.closeNotified = true
		if err := t.conn.CloseWrite(); err != nil {
			return false, err
		}
	}
	err := t.raw.flush()
	if err == unix.EAGAIN {
		s.writable = false
		return false, nil
	}
	return err == nil, err
}

// truncated records that s's stream ended without close_notify.
func (c *conn) truncated(s *side) {
	r := c.p.Record
	if r.TLS == nil {
		r.TLS = &session.TLS{}
	}
	if s == &c.client {
		r.TLS.Truncated = "client"
	} else {
		r.TLS.Truncated = "upstream"
	}
}

// handshaking is the state of a session whose TLS handshake with one
// side runs off the loop.
const handshaking = peeking + 1

// beginHandshake starts the TLS handshake on s, as the server with
// TLSServer on the client side or as the client with cfg on the upstream
// side, off the loop. prefix is what was read of the client already;
// preface is written to the upstream before the handshake (the PROXY
// header). handshook continues the session on the loop.
func (c *conn) beginHandshake(s *side, cfg *tls.Config, prefix, preface []byte) {
	l := c.l
	if l.handshakes >= maxHandshakes {
		c.finish(session.TLSHandshakeFailed, handshakeError(s == &c.client, errHandshakesFull), false)
		return
	}
	hc, err := dupConn(s.fd)
	if err != nil {
		c.finish(session.LocalError, err, false)
		return
	}
	l.handshakes++
	l.handshakers.Add(1)
	t := &tlsSide{raw: rawConn{fd: s.fd, hc: hc, prefix: prefix}}
	if s == &c.client {
		t.conn = tls.Server(&t.raw, cfg)
	} else {
		t.conn = tls.Client(&t.raw, cfg)
	}
	s.tls = t
	c.state = handshaking
	timeout := c.p.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	c.handshakeBy = l.now + timeout
	l.timers.schedule(c, c.handshakeBy)
	hc.SetDeadline(time.Now().Add(timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.cancel = cancel
	go func() {
		defer l.handshakers.Done()
		err := handshake(ctx, hc, t.conn, preface)
		cancel()
		var h *session.TLSHandshake
		if err == nil {
			// Here rather than on the loop: the peer's subject is
			// formatted, and the loop's other sessions need not wait.
			h = describe(t.conn.ConnectionState())
		}
		if !l.post(func() { c.handshook(s, t, h, err) }) {
			hc.Close() // the loop is gone, and its sessions with it
		}
	}()
}

// handshake writes preface, then runs the handshake: on the handshake's
// goroutine.
func handshake(ctx context.Context, hc net.Conn, tc *tls.Conn, preface []byte) error {
	if len(preface) > 0 {
		if _, err := hc.Write(preface); err != nil {
			return err
		}
	}
	return tc.HandshakeContext(ctx)
}

// dupConn returns a duplicate of fd in Go's poller, for a handshake's
// goroutine: it waits for its peer there, not on the loop.
func dupConn(fd int) (net.Conn, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("relay: tls: dup: %w", err)
	}
	f := os.NewFile(uintptr(d), "")
	hc, err := net.FileConn(f) // a duplicate of its own
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("relay: tls: %w", err)
	}
	return hc, nil
}

// handshook continues a session on the loop once the handshake t on s
// ended with err, or settled h. A session that ended meanwhile (its
// timer, the admin API, shutdown), or that left t behind for another
// member (a retry after the handshake timed out), only gives t's slot in
// the bound back.
func (c *conn) handshook(s *side, t *tlsSide, h *session.TLSHandshake, err error) {
	l := c.l
	l.handshakes--
	t.raw.hc.Close()
	if c.state != handshaking || s.tls != t {
		return
	}
	t.raw.hc = nil
	l.timers.remove(c)
	c.handshakeBy = 0
	if err != nil {
		if s == &c.client {
			c.finish(session.TLSHandshakeFailed, handshakeError(true, err), false)
		} else {
			c.upstreamHandshakeFailed(handshakeError(false, err))
		}
		return
	}
	// Whatever edges the handshake's reads and writes took, the loop
	// looks again: EAGAIN will say there is nothing.
	s.readable, s.writable = true, true
	r := c.p.Record
	if r.TLS == nil {
		r.TLS = &session.TLS{}
	}
	if s == &c.client {
		r.TLS.Client = h
		c.startDialing()
		return
	}
	r.TLS.Upstream = h
	if c.p.Upstreams != nil {
		c.p.Upstreams.Connected() // only now: a member whose TLS fails is not a success
	}
	c.connected()
}

// upstreamHandshakeFailed moves on to the next member, as a failed dial
// does, while the connect budget lasts; the pool counts the failure
// against the member either way (passive checks eject one whose TLS
// always fails).
func (c *conn) upstreamHandshakeFailed(err error) {
	if c.p.Upstreams != nil {
		if c.p.ConnectBudget == 0 || c.l.now < c.connectBy {
			if c.retry(err) {
				return
			}
		} else {
			c.p.Upstreams.Failed(err)
		}
	}
	c.finish(session.TLSHandshakeFailed, err, false)
}

// A HandshakeError is a session's failed TLS handshake (its record's Err,
// reason tls_handshake_failed), saying which side it failed with: a
// client's failure is the client's business, an upstream's is pier's
// own (a member's certificate, or its TLS). Branch with errors.As.
type HandshakeError struct {
	Upstream bool // with the upstream (pier the client); else the client
	Err      error
}

func (e *HandshakeError) Error() string {
	if e.Upstream {
		return "upstream: " + e.Err.Error()
	}
	return "client: " + e.Err.Error()
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// handshakeError names the side a handshake failed with.
func handshakeError(client bool, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errHandshakeTimeout
	}
	return &HandshakeError{Upstream: !client, Err: err}
}

// handshakeRefused reports whether err, from s, is the peer's alert
// before any byte of its came: in TLS 1.3 the client's handshake ends
// before the server has judged its certificate, so a server that refuses
// pier's (or a client that refuses pier's) says so in its first record.
func (c *conn) handshakeRefused(s *side, err error) bool {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" {
		return false
	}
	from := &c.toUpstream // bytes read from the client
	if s == &c.upstream {
		from = &c.toClient
	}
	return from.bytes == 0 && len(from.spill) == 0
}

// abortHandshake ends a handshake in flight when its session ends: its
// goroutine's reads and writes fail at once.
func (s *side) abortHandshake() {
	if s.tls != nil && s.tls.raw.hc != nil {
		s.tls.cancel()
		s.tls.raw.hc.Close()
	}
}

// describe is what the record keeps of a handshake.
func describe(cs tls.ConnectionState) *session.TLSHandshake {
	h := &session.TLSHandshake{
		Version:    tls.VersionName(cs.Version),
		Cipher:     tls.CipherSuiteName(cs.CipherSuite),
		ServerName: cs.ServerName,
		ALPN:       cs.NegotiatedProtocol,
		Resumed:    cs.DidResume,
	}
	if len(cs.PeerCertificates) > 0 {
		// Verified, unless an upstream_tls skips verification: then it
		// is what the member presented.
		h.PeerSubject = cs.PeerCertificates[0].Subject.String()
	}
	return h
}

// upstreamTLS is the TLS configuration for the member just connected:
// the member's (MemberTLS), or the Params'; nil for plain.
func (c *conn) upstreamTLS() *tls.Config {
	if mt, ok := c.p.Upstreams.(MemberTLS); ok {
		if cfg := mt.UpstreamTLS(); cfg != nil {
			return cfg
		}
	}
	return c.p.TLSClient
}

// readSide and writeSide read and write a side as read(2) and write(2)
// do, through its TLS when it has one.
func (c *conn) readSide(s *side, b []byte) (int, error) {
	if s.tls != nil {
		return c.tlsRead(s, b)
	}
	return read(s.fd, b)
}

func (c *conn) writeSide(s *side, b []byte) (int, error) {
	if s.tls != nil {
		return c.tlsWrite(s, b)
	}
	return write(s.fd, b)
}

// moveTLS runs a direction with TLS on either side, unfiltered: it never
// splices; it reads into the scratch buffer and writes, and what dst does
// not take waits in spill (a plain dst) or in dst's pending ciphertext (a
// TLS one), and src is not read again until it is out. A TLS src is read
// until it says EAGAIN: crypto/tls may hold whole records it has read
// ahead, which no epoll edge will announce.
func (c *conn) moveTLS(f *flow) (more bool, ferr *flowError) {
	moved := 0
	for moved < budget {
		if len(f.spill) > 0 {
			if !f.dst.writable {
				break
			}
			n, err := c.writeSide(f.dst, f.spill)
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
				n = c.countSpill(f, n)
			}
			f.bytes += int64(n)
			moved += n
			continue
		}
		if t := f.dst.tls; t != nil && len(t.raw.pending) > 0 {
			if ferr := c.flushTLS(f.dst); ferr != nil {
				return false, ferr
			}
			if len(t.raw.pending) > 0 {
				break // the rest when dst is writable
			}
			continue
		}
		if f.eof {
			if !f.shut {
				if ferr := c.shut(f); ferr != nil {
					return false, ferr
				}
			}
			break
		}
		if f.pending {
			c.attach(f)
			return c.move(f)
		}
		if !f.src.readable {
			break
		}
		if !c.roomToRead(f) {
			break
		}
		buf := c.l.scratch[:]
		n, err := c.readSide(f.src, buf)
		if err == unix.EAGAIN {
			f.src.readable = false
			break
		}
		if err != nil {
			return false, c.sideError(f.src, err)
		}
		if n == 0 {
			f.eof = true
			continue
		}
		if f.src.tls == nil && n < len(buf) && !f.src.hup {
			f.src.readable = false
		}
		moved += n
		w := 0
		if f.dst.writable {
			w, err = c.writeSide(f.dst, buf[:n])
			if err == unix.EAGAIN {
				w = 0
				f.dst.writable = false
			} else if err != nil {
				return false, c.sideError(f.dst, err)
			}
			f.bytes += int64(w)
		}
		if w < n {
			f.spill = append([]byte(nil), buf[w:n]...)
			f.dst.writable = false
		}
	}
	if moved > 0 {
		c.lastActive = c.l.now
	}
	return moved >= budget, nil
}

// roomToRead reports whether f may read its TLS src: not while records
// crypto/tls wrote in answer to what it read (maxReadPending) wait to go
// out on it. It tries to send them first; when the socket takes none, its
// EPOLLOUT edge runs the session again.
func (c *conn) roomToRead(f *flow) bool {
	t := f.src.tls
	if t == nil || len(t.raw.pending) <= maxReadPending {
		return true
	}
	if ferr := c.flushTLS(f.src); ferr != nil {
		return false // the other direction meets the error on its next write
	}
	return len(t.raw.pending) <= maxReadPending
}

// shut passes f's FIN on, after close_notify when dst is TLS: f stays not
// shut while close_notify waits for dst to take it.
func (c *conn) shut(f *flow) *flowError {
	if f.dst.tls != nil {
		done, err := c.tlsShut(f.dst)
		if err != nil {
			return c.sideError(f.dst, err)
		}
		if !done {
			return nil
		}
	}
	c.passFIN(f)
	return nil
}

// flushTLS writes out what dst's TLS holds back, if dst is writable; it
// reports an error only for a failed write.
func (c *conn) flushTLS(s *side) *flowError {
	t := s.tls
	if t == nil || len(t.raw.pending) == 0 || !s.writable {
		return nil
	}
	if err := t.raw.flush(); err == unix.EAGAIN {
		s.writable = false
	} else if err != nil {
		return c.sideError(s, err)
	}
	return nil
}
