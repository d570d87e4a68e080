package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/nonblock"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/session"
)

// The peeking state and the PROXY header out, in the harness: a fake Peek
// decides on the bytes the test's client sends, the upstream is a real
// listener on 127.0.0.1:0, and every step is checked against the flows'
// invariants, 9 and 10 (early's) included.

// fakePeek records every call of Peeked and answers with decide.
type fakePeek struct {
	mu     sync.Mutex
	calls  []peekCall
	decide func(buf []byte, eof bool, elapsed time.Duration) Decision
}

type peekCall struct {
	buf     string
	cap     int
	eof     bool
	elapsed time.Duration
}

func (f *fakePeek) peeked(buf []byte, eof bool, elapsed time.Duration) Decision {
	f.mu.Lock()
	f.calls = append(f.calls, peekCall{string(buf), cap(buf), eof, elapsed})
	f.mu.Unlock()
	return f.decide(buf, eof, elapsed)
}

// peekSession is a session started in the peeking state on h's loop.
type peekSession struct {
	c      *conn
	client *os.File // the test's end of the client socket
	fd     int      // the loop's end
	ended  chan *session.Record
}

// beginPeeking starts a peeking session whose client has already sent
// first.
func (h *harness) beginPeeking(pk *Peek, first string) *peekSession {
	h.t.Helper()
	fd, client := socketPair(h.t)
	if first != "" {
		if _, err := client.Write([]byte(first)); err != nil {
			h.t.Fatal(err)
		}
	}
	ps := h.beginPeekingFD(pk, fd)
	ps.client = client
	return ps
}

// beginPeekingFD starts a peeking session on the loop's client socket fd.
func (h *harness) beginPeekingFD(pk *Peek, fd int) *peekSession {
	h.t.Helper()
	ps := &peekSession{fd: fd, ended: make(chan *session.Record, 1)}
	h.l.now = time.Since(h.l.start)
	h.l.live.Add(1) // as Begin does
	h.l.begin(&Params{
		Client: fd,
		Record: &session.Record{ID: 7, Start: time.Now()},
		Peek:   pk,
		Done:   func(r *session.Record) { ps.ended <- r },
	})
	ps.c = h.l.slots[len(h.l.slots)-1]
	return ps
}

// send writes b from the test's client and hands the loop the edge.
func (h *harness) send(ps *peekSession, b string) {
	h.t.Helper()
	if _, err := ps.client.Write([]byte(b)); err != nil {
		h.t.Fatal(err)
	}
	h.clientEdge(ps)
}

// clientEdge hands the loop the client socket's readiness as epoll would.
func (h *harness) clientEdge(ps *peekSession) {
	h.t.Helper()
	if ev := pollEvents(ps.fd, false, 5*time.Second); ev != 0 {
		h.event(ps.c, clientSide, ev)
	} else {
		h.t.Fatal("the client socket is not readable")
	}
	if ps.c.state != closed {
		checkFlows(h.t, ps.c)
	}
}

// upstream is a listener on 127.0.0.1:0 whose first connection's bytes
// the test reads.
type upstream struct {
	ln   net.Listener
	addr netip.AddrPort
	conn chan net.Conn
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &upstream{ln: ln, addr: netip.MustParseAddrPort(ln.Addr().String()), conn: make(chan net.Conn, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(u.conn)
				return
			}
			t.Cleanup(func() { c.Close() })
			u.conn <- c
		}
	}()
	return u
}

func (u *upstream) accepted(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-u.conn:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream accepted nothing")
	}
	return nil
}

// readN reads exactly n bytes from c, with a deadline.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %q of %d bytes: %v", b, n, err)
	}
	return string(b)
}

// nothingMore asserts that c has no byte to read within a short while.
func nothingMore(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var b [64]byte
	if n, err := c.Read(b[:]); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("more arrived: %q, %v", b[:n], err)
	}
}

// connect feeds the session its upstream socket's readiness until the
// handshake is over.
func (h *harness) connect(ps *peekSession) {
	h.t.Helper()
	if ps.c.state != dialing {
		h.t.Fatalf("state %d, want dialing", ps.c.state)
	}
	ev := pollEvents(ps.c.upstream.fd, true, 10*time.Second)
	if ev == 0 {
		h.t.Fatal("the upstream socket said nothing within 10s")
	}
	h.event(ps.c, upstreamSide, ev)
	if ps.c.state != relaying {
		h.t.Fatalf("state %d after the handshake, want relaying", ps.c.state)
	}
	checkFlows(h.t, ps.c)
}

// relay drives the session until done says so, as the loop would.
func (h *harness) relay(ps *peekSession, done func() bool) {
	h.t.Helper()
	h.drive(&hsession{c: ps.c, clientFd: ps.fd, upFd: ps.c.upstream.fd, ended: ps.ended}, done)
}

// idleLoop asserts that the loop holds nothing more: no session, no
// descriptor but the pipes it keeps for reuse.
func idleLoop(t *testing.T, l *Loop) {
	t.Helper()
	if live, fds := l.Live(), l.Descriptors()-int64(2*len(l.pipes)); live != 0 || fds != 0 {
		t.Errorf("after the session: %d live, %d descriptors held", live, fds)
	}
	for _, c := range l.slots {
		if c != nil {
			t.Errorf("slot %d still holds a session", c.slot)
		}
	}
	if len(l.timers) != 0 {
		t.Errorf("%d timers left", len(l.timers))
	}
}

// ended returns the record Done got, failing if it got none.
func (ps *peekSession) record(t *testing.T) *session.Record {
	t.Helper()
	select {
	case r := <-ps.ended:
		return r
	default:
		t.Fatal("the session has not ended")
	}
	return nil
}

// next is a Decision to dial target, skipping skip bytes.
func next(target netip.AddrPort, skip int, p Params) Decision {
	p.Target = target
	return Decision{Next: &p, Skip: skip}
}

// A client whose first bytes are queued at accept costs one read before
// the decision, and the session reads nothing more until a new edge; the
// bytes reach the upstream first and once, then the session relays as
// always.
func TestPeekOneReadWhenHelloQueued(t *testing.T) {
	h := newHarness(t)
	up := newUpstream(t)
	var done []*session.Record
	fp := &fakePeek{decide: func(buf []byte, eof bool, _ time.Duration) Decision {
		return next(up.addr, 0, Params{IdleTimeout: time.Hour, Done: func(r *session.Record) { done = append(done, r) }})
	}}
	ps := h.beginPeeking(&Peek{Timeout: time.Second, Peeked: fp.peeked}, "HELLO-queued")
	if len(fp.calls) != 1 || fp.calls[0].buf != "HELLO-queued" || fp.calls[0].eof {
		t.Fatalf("Peeked calls %+v, want one with the queued bytes", fp.calls)
	}
	if ps.c.client.readable {
		t.Fatal("after a short read the client is still readable: the relay would read again before an edge")
	}
	if ps.c.mstate != session.Connecting || ps.c.p.Record.ID != 7 || ps.c.p.Client != ps.fd {
		t.Fatalf("after the decision: state %v, record %d, client fd %d", ps.c.mstate, ps.c.p.Record.ID, ps.c.p.Client)
	}
	// The loop's own epoll events from here: the client's first (from
	// its epoll entry, made before the read) must not say readable once
	// the read drained the socket, and the upstream's says connected.
	for deadline := time.Now().Add(10 * time.Second); ps.c.state == dialing; {
		if time.Now().After(deadline) {
			t.Fatal("the upstream never connected")
		}
		h.l.now = time.Since(h.l.start)
		n, _ := nonblock.EpollPoll(h.l.epfd, h.l.events[:])
		for i := range n {
			h.l.dispatch(&h.l.events[i])
		}
		unix.Poll(nil, 1)
	}
	if ps.c.state != relaying || ps.c.client.readable {
		t.Fatalf("after connect: state %d, client readable %v: the relay would read again with no new byte", ps.c.state, ps.c.client.readable)
	}
	checkFlows(t, ps.c)
	u := up.accepted(t)
	if got := readN(t, u, len("HELLO-queued")); got != "HELLO-queued" {
		t.Fatalf("the upstream's first bytes: %q", got)
	}
	nothingMore(t, u)
	if ps.c.early != nil {
		t.Errorf("early kept after its bytes went out: %+v", *ps.c.early)
	}
	h.send(ps, " and more")
	h.relay(ps, func() bool { return ps.c.toUpstream.bytes == int64(len("HELLO-queued and more")) })
	if got := readN(t, u, len(" and more")); got != " and more" {
		t.Fatalf("then: %q", got)
	}
	if len(fp.calls) != 1 {
		t.Errorf("Peeked called %d times", len(fp.calls))
	}
	// The upstream answers; then both sides finish: the next Params'
	// Done has the record.
	u.Write([]byte("answer"))
	u.(*net.TCPConn).CloseWrite()
	unix.Shutdown(int(ps.client.Fd()), unix.SHUT_WR)
	h.relay(ps, func() bool { return false })
	if len(done) != 1 || done[0].Reason != session.Done || done[0].ToClient != 6 || done[0].ToUpstream != 21 {
		t.Fatalf("the next Params' Done got %+v", done)
	}
	if len(ps.ended) != 0 {
		t.Error("the first Params' Done ran for a session that dialed")
	}
	idleLoop(t, h.l)
}

// Bytes that come one at a time are each a read and a call of Peeked,
// which sees every byte so far; the header's bytes the decision skips
// never reach the upstream, the rest reach it first and once, before what
// the client sends after.
func TestPeekSplitArrivals(t *testing.T) {
	h := newHarness(t)
	up := newUpstream(t)
	const first = "HDR:hello"
	fp := &fakePeek{decide: func(buf []byte, eof bool, _ time.Duration) Decision {
		if string(buf) != first {
			return Decision{Wait: 10 * time.Second}
		}
		return next(up.addr, len("HDR:"), Params{Done: func(*session.Record) {}})
	}}
	ps := h.beginPeeking(&Peek{Timeout: 10 * time.Second, Peeked: fp.peeked}, "")
	if len(fp.calls) != 0 || ps.c.state != peeking || ps.c.client.readable {
		t.Fatalf("nothing sent: calls %+v, state %d, readable %v", fp.calls, ps.c.state, ps.c.client.readable)
	}
	for i := range len(first) {
		h.send(ps, first[i:i+1])
		if c := fp.calls[len(fp.calls)-1]; c.buf != first[:i+1] {
			t.Fatalf("call %d saw %q, want %q", i, c.buf, first[:i+1])
		}
		if i < len(first)-1 && cap(ps.c.early.buf) > peek.Max {
			t.Fatalf("buffer of cap %d", cap(ps.c.early.buf))
		}
	}
	if len(fp.calls) != len(first) {
		t.Fatalf("%d calls for %d bytes", len(fp.calls), len(first))
	}
	// Sent before the upstream connects: waits in the socket behind the
	// peeked bytes.
	if _, err := ps.client.Write([]byte("|after")); err != nil {
		t.Fatal(err)
	}
	h.connect(ps)
	u := up.accepted(t)
	h.relay(ps, func() bool { return ps.c.toUpstream.bytes == int64(len("hello|after")) })
	if got := readN(t, u, len("hello|after")); got != "hello|after" {
		t.Fatalf("the upstream got %q", got)
	}
	nothingMore(t, u)
	if r := ps.c.p.Record; r.ToUpstream != int64(len("hello|after")) {
		t.Errorf("counted %d bytes to the upstream", r.ToUpstream)
	}
	ps.c.finish(session.Shutdown, nil, false)
	idleLoop(t, h.l)
}

// The peek's deadline calls Peeked, which decides; a Peeked that still
// asks to wait, at or before the deadline, ends the session (proxy_error):
// nothing waits unbounded on a silent client.
func TestPeekDeadline(t *testing.T) {
	for _, tc := range []struct {
		name      string
		atTimeout Decision
		want      session.Reason
		wantErr   error
	}{
		{"decides", Decision{End: session.NoRoute}, session.NoRoute, nil},
		{"waits again", Decision{Wait: 50 * time.Millisecond}, session.ProxyError, errUndecided},
		{"decides nothing", Decision{}, session.ProxyError, errUndecided},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			fp := &fakePeek{decide: func(buf []byte, eof bool, elapsed time.Duration) Decision {
				if elapsed < 50*time.Millisecond {
					return Decision{Wait: 50 * time.Millisecond}
				}
				return tc.atTimeout
			}}
			ps := h.beginPeeking(&Peek{Timeout: time.Hour, Peeked: fp.peeked}, "PRO")
			if due, _ := ps.c.deadline(); due != ps.c.early.acceptedAt+50*time.Millisecond {
				t.Fatalf("deadline %v after a Wait of 50ms from accept at %v", due, ps.c.early.acceptedAt)
			}
			start := time.Now()
			for ps.c.state != closed {
				if time.Since(start) > 5*time.Second {
					t.Fatal("the deadline never ended the session")
				}
				time.Sleep(5 * time.Millisecond) // the loop's clock, not a server, is waited for
				h.turn()
			}
			r := ps.record(t)
			if r.Reason != tc.want || r.Err != tc.wantErr {
				t.Fatalf("ended %v (%v), want %v (%v)", r.Reason, r.Err, tc.want, tc.wantErr)
			}
			last := fp.calls[len(fp.calls)-1]
			if last.elapsed < 50*time.Millisecond || last.buf != "PRO" {
				t.Errorf("the deadline's call: %+v", last)
			}
			if r.Tries != 0 {
				t.Errorf("%d dials for a session that never decided to dial", r.Tries)
			}
			if _, err := ps.client.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("the client reads %v, want EOF: its socket is closed", err)
			}
			idleLoop(t, h.l)
		})
	}
}

// A client's FIN while peeking is a call with eof, and nothing is read
// after it; once the session dials, the peeked bytes go first and the FIN
// after them. A client that sends nothing but its FIN is decided on too.
func TestPeekEOF(t *testing.T) {
	t.Run("after bytes", func(t *testing.T) {
		h := newHarness(t)
		up := newUpstream(t)
		fp := &fakePeek{decide: func(buf []byte, eof bool, _ time.Duration) Decision {
			if !eof {
				return Decision{Wait: 10 * time.Second}
			}
			return next(up.addr, 0, Params{Done: func(*session.Record) {}})
		}}
		ps := h.beginPeeking(&Peek{Timeout: 10 * time.Second, Peeked: fp.peeked}, "GET /")
		unix.Shutdown(int(ps.client.Fd()), unix.SHUT_WR)
		h.clientEdge(ps)
		if n := len(fp.calls); n != 2 || fp.calls[1].buf != "GET /" || !fp.calls[1].eof {
			t.Fatalf("calls %+v", fp.calls)
		}
		h.connect(ps)
		u := up.accepted(t)
		h.relay(ps, func() bool { return ps.c.toUpstream.shut })
		u.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, err := io.ReadAll(u); string(got) != "GET /" || err != nil {
			t.Fatalf("the upstream read %q, %v; want the bytes then EOF", got, err)
		}
		ps.c.finish(session.Shutdown, nil, false)
		idleLoop(t, h.l)
	})
	t.Run("nothing sent", func(t *testing.T) {
		h := newHarness(t)
		fp := &fakePeek{decide: func(buf []byte, eof bool, _ time.Duration) Decision {
			if !eof {
				return Decision{Wait: 10 * time.Second}
			}
			return Decision{End: session.NoRoute, Err: errors.New("nothing to route on")}
		}}
		ps := h.beginPeeking(&Peek{Timeout: 10 * time.Second, Peeked: fp.peeked}, "")
		unix.Shutdown(int(ps.client.Fd()), unix.SHUT_WR)
		h.clientEdge(ps)
		if r := ps.record(t); r.Reason != session.NoRoute || r.Tries != 0 {
			t.Fatalf("ended %v after %d tries", r.Reason, r.Tries)
		}
		if len(fp.calls) != 1 || fp.calls[0].buf != "" || !fp.calls[0].eof {
			t.Fatalf("calls %+v", fp.calls)
		}
		idleLoop(t, h.l)
	})
}

// A decision to end closes the client and hands the record to the first
// Params' Done, with no dial; a client reset while peeking ends it too.
func TestPeekDecisionToEnd(t *testing.T) {
	h := newHarness(t)
	denied := errors.New("not you")
	fp := &fakePeek{decide: func([]byte, bool, time.Duration) Decision {
		return Decision{End: session.ProxyUntrusted, Err: denied}
	}}
	ps := h.beginPeeking(&Peek{Timeout: time.Second, Peeked: fp.peeked}, "PROXY TCP4 ")
	r := ps.record(t)
	if r.Reason != session.ProxyUntrusted || r.Err != denied || r.Tries != 0 || r.ToUpstream != 0 {
		t.Fatalf("ended %+v", r)
	}
	if _, err := ps.client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the client reads %v, want EOF", err)
	}
	idleLoop(t, h.l)

	// A reset: the client closes with SO_LINGER 0.
	fd, client, _ := tcpClient(t)
	fp = &fakePeek{decide: func([]byte, bool, time.Duration) Decision { return Decision{Wait: time.Hour} }}
	ps = h.beginPeekingFD(&Peek{Timeout: time.Second, Peeked: fp.peeked}, fd)
	client.(*net.TCPConn).SetLinger(0)
	client.Close()
	h.clientEdge(ps)
	if r := ps.record(t); r.Reason != session.ClientReset || len(fp.calls) != 0 {
		t.Fatalf("ended %v (%v) after %d calls, want client_reset", r.Reason, r.Err, len(fp.calls))
	}
	idleLoop(t, h.l)
}

// A peek holds at most Peek.Max bytes: Peeked never sees more, and the
// buffer grows with what arrived, never past the bound.
func TestPeekBufferBounded(t *testing.T) {
	h := newHarness(t)
	const max = 100
	fp := &fakePeek{decide: func([]byte, bool, time.Duration) Decision { return Decision{Wait: time.Hour} }}
	ps := h.beginPeeking(&Peek{Max: max, Timeout: time.Hour, Peeked: fp.peeked}, "ab")
	if c := fp.calls[0]; c.buf != "ab" {
		t.Fatalf("first call %+v", c)
	}
	if got := cap(ps.c.early.buf); got < 2 || got > 3 {
		t.Errorf("2 bytes kept in a buffer of cap %d: a split hello should cost what it sent", got)
	}
	h.send(ps, strings.Repeat("x", 3*max))
	for _, c := range fp.calls {
		if len(c.buf) > max || c.cap > max {
			t.Fatalf("Peeked saw %d bytes (cap %d), bound %d", len(c.buf), c.cap, max)
		}
	}
	if got := fp.calls[len(fp.calls)-1].buf; len(got) != max {
		t.Fatalf("last call saw %d bytes, want the bound %d", len(got), max)
	}
	calls := len(fp.calls)
	h.clientEdge(ps) // more is queued, but the peek is full
	if len(fp.calls) != calls {
		t.Error("Peeked called again with a full buffer and nothing new")
	}
	ps.c.finish(session.Shutdown, nil, false)
	idleLoop(t, h.l)
}

// An operator's End and CloseAll reach a peeking session, which a listing
// shows as peeking, with no route yet.
func TestEndWhilePeeking(t *testing.T) {
	h := newHarness(t)
	fp := &fakePeek{decide: func([]byte, bool, time.Duration) Decision { return Decision{Wait: time.Hour} }}
	ps := h.beginPeeking(&Peek{Timeout: time.Hour, Peeked: fp.peeked}, "")
	var page []SessionInfo
	h.l.List(Match{}, Paging{Limit: 10}, func(p []SessionInfo, _ int) { page = p })
	h.l.runPosted()
	if len(page) != 1 || page[0].State != session.Peeking || page[0].ID != 7 || page[0].Route != "" {
		t.Fatalf("listing %+v", page)
	}
	found := false
	h.l.End(7, false, func(f bool) { found = f })
	h.l.runPosted()
	if r := ps.record(t); !found || r.Reason != session.Admin {
		t.Fatalf("End: found %v, reason %v", found, r.Reason)
	}
	idleLoop(t, h.l)

	ps = h.beginPeeking(&Peek{Timeout: time.Hour, Peeked: fp.peeked}, "x")
	h.l.CloseAll(session.Shutdown)
	h.l.runPosted()
	if r := ps.record(t); r.Reason != session.Shutdown {
		t.Fatalf("CloseAll: %v", r.Reason)
	}
	idleLoop(t, h.l)
}

// fakeHeader stands for the PROXY codec (package peek's), so that the
// header's bytes, version and addresses show in what the upstream reads.
func fakeHeader(t *testing.T) {
	old := appendProxyHeader
	appendProxyHeader = func(dst []byte, v uint8, o *peek.Out) []byte {
		return fmt.Appendf(dst, "[v%d %v>%v #%d]", v, o.Src, o.Dst, o.UniqueID)
	}
	t.Cleanup(func() { appendProxyHeader = old })
}

// memberProxy offers one more member after the first, each with its own
// PROXY version.
type memberProxy struct {
	fakeUpstreams
	versions [2]uint8
}

func (m *memberProxy) SendProxy() uint8 {
	if m.retried {
		return m.versions[1]
	}
	return m.versions[0]
}

// A retry dials the next member with the peeked bytes kept: the member
// that connects gets its own PROXY header first (its version), then the
// peeked bytes, once, then the client's later bytes; the header is not
// counted as the client's.
func TestPeekedBytesSentOnceAfterRetry(t *testing.T) {
	fakeHeader(t)
	h := newHarness(t)
	first, up := unresponsive(t), newUpstream(t)
	members := &memberProxy{fakeUpstreams: fakeUpstreams{next: up.addr}, versions: [2]uint8{1, 2}}
	src := netip.MustParseAddrPort("192.0.2.1:4000")
	dst := netip.MustParseAddrPort("198.51.100.2:443")
	fp := &fakePeek{decide: func([]byte, bool, time.Duration) Decision {
		return next(first, 0, Params{TryTimeout: time.Hour, Upstreams: members, SendProxy: 1,
			ProxyOut: &peek.Out{Src: src, Dst: dst, UniqueID: 7}, Done: func(*session.Record) {}})
	}}
	ps := h.beginPeeking(&Peek{Timeout: time.Second, Peeked: fp.peeked}, "hello")
	if ps.c.state != dialing || ps.c.target != first {
		t.Fatalf("state %d, target %v", ps.c.state, ps.c.target)
	}
	ps.c.expired(session.ConnectTimeout) // the first try's time is up
	if ps.c.p.Record.Tries != 2 || ps.c.target != up.addr {
		t.Fatalf("after the retry: tries %d, target %v", ps.c.p.Record.Tries, ps.c.target)
	}
	h.connect(ps)
	u := up.accepted(t)
	want := fmt.Sprintf("[v2 %v>%v #7]hello", src, dst)
	if got := readN(t, u, len(want)); got != want {
		t.Fatalf("the upstream's first bytes %q, want %q", got, want)
	}
	h.send(ps, "+later")
	h.relay(ps, func() bool { return ps.c.toUpstream.bytes == int64(len("hello+later")) })
	if got := readN(t, u, len("+later")); got != "+later" {
		t.Fatalf("then %q", got)
	}
	nothingMore(t, u)
	ps.c.countBytes()
	if r := ps.c.p.Record; r.ToUpstream != int64(len("hello+later")) {
		t.Errorf("counted %d bytes to the upstream, want the client's %d", r.ToUpstream, len("hello+later"))
	}
	ps.c.finish(session.Shutdown, nil, false)
	idleLoop(t, h.l)
}

// tcpClient returns the loop's end of an accepted TCP connection
// (non-blocking) and the test's, so that getsockname has an address.
func tcpClient(t *testing.T) (int, net.Conn, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.(*net.TCPConn).File()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fd, true)
	return fd, c, netip.MustParseAddrPort(ln.Addr().String())
}

// A session with a PROXY header to send and nothing to peek (a plain
// listener) writes the header before any client byte, even when the
// upstream speaks first and the client has sent nothing; the header's
// destination is the address the client connected to when the caller
// left it unset; its bytes are not the client's.
func TestProxyHeaderBeforeAnyClientByte(t *testing.T) {
	fakeHeader(t)
	h := newHarness(t)
	up := newUpstream(t)
	fd, client, local := tcpClient(t)
	src := netip.MustParseAddrPort("192.0.2.9:5000")
	ended := make(chan *session.Record, 1)
	h.l.live.Add(1)
	h.l.begin(&Params{Client: fd, Target: up.addr, SendProxy: 2, ProxyOut: &peek.Out{Src: src},
		Record: &session.Record{Start: time.Now()}, Done: func(r *session.Record) { ended <- r }})
	c := h.l.slots[len(h.l.slots)-1]
	if c.early != nil {
		t.Fatal("a session with nothing to peek has an early before it connects")
	}
	ps := &peekSession{c: c, fd: fd, ended: ended}
	h.connect(ps)
	u := up.accepted(t)
	want := fmt.Sprintf("[v2 %v>%v #0]", src, local)
	if got := readN(t, u, len(want)); got != want {
		t.Fatalf("the upstream's first bytes %q, want %q", got, want)
	}
	if c.early != nil || c.toUpstream.bytes != 0 {
		t.Fatalf("after the header: early %v, bytes %d", c.early, c.toUpstream.bytes)
	}
	u.Write([]byte("220 ready\r\n"))
	client.Write([]byte("HELO"))
	h.relay(ps, func() bool { return c.toUpstream.bytes == 4 && c.toClient.bytes == 11 })
	if got := readN(t, u, 4); got != "HELO" {
		t.Fatalf("then %q", got)
	}
	c.finish(session.Shutdown, nil, false)
	if r := <-ended; r.ToUpstream != 4 {
		t.Errorf("counted %d bytes to the upstream, want 4", r.ToUpstream)
	}
	idleLoop(t, h.l)
}

// With the real codec: the upstream's first bytes are the header
// peek.AppendHeader writes (v1 and v2).
func TestProxyHeaderIsTheCodecs(t *testing.T) {
	o := &peek.Out{Src: netip.MustParseAddrPort("192.0.2.1:4000"), Dst: netip.MustParseAddrPort("198.51.100.2:443")}
	if len(peek.AppendHeader(nil, peek.V1, o)) == 0 {
		t.Skip("package peek writes no header yet")
	}
	for _, v := range []uint8{peek.V1, peek.V2} {
		h := newHarness(t)
		up := newUpstream(t)
		fd, _ := socketPair(t)
		out := *o
		h.l.live.Add(1)
		h.l.begin(&Params{Client: fd, Target: up.addr, SendProxy: v, ProxyOut: &out,
			Record: &session.Record{Start: time.Now()}, Done: func(*session.Record) {}})
		c := h.l.slots[len(h.l.slots)-1]
		h.connect(&peekSession{c: c, fd: fd})
		want := peek.AppendHeader(nil, v, o)
		if got := readN(t, up.accepted(t), len(want)); got != string(want) {
			t.Errorf("v%d: the upstream's first bytes %q, want %q", v, got, want)
		}
		c.finish(session.Shutdown, nil, false)
	}
}

// upper passes the bytes toward the upstream upper-cased: what went
// through the filter shows.
type upper struct{}

func (upper) Streams(*filter.Session) (toUpstream, toClient filter.Stream) { return upperStream{}, nil }

type upperStream struct{}

func (upperStream) Process(b *filter.Batch) error {
	b.Emit(bytes.ToUpper(b.In))
	b.Drop(len(b.In))
	return nil
}

// seen records the filter.Session its Streams got.
type seen struct{ s chan *filter.Session }

func (f seen) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	f.s <- s
	return nil, nil
}

// On a filtered route the PROXY header still goes first and raw (it is
// pier's, not the client's), and the peeked bytes go through the filters,
// once, before anything read after them; the filters learn what the edge
// learned. A route whose filters leave the direction alone sends the
// peeked bytes unfiltered.
func TestProxyHeaderFirstEvenWithFilters(t *testing.T) {
	fakeHeader(t)
	for _, tc := range []struct {
		name   string
		filter filter.Filter
		want   string
	}{
		{"filtered", upper{}, "HELLO|AFTER"},
		{"direction left alone", nil, "hello|after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			up := newUpstream(t)
			got := seen{make(chan *filter.Session, 1)}
			set := &chain.Set{Filters: []chain.Named{{Name: "seen", Filter: got}}}
			if tc.filter != nil {
				set.Filters = append(set.Filters, chain.Named{Name: "upper", Filter: tc.filter})
			}
			in := new(chain.InForce)
			in.Store(set)
			src := netip.MustParseAddrPort("[2001:db8::1]:4000")
			dst := netip.MustParseAddrPort("[2001:db8::2]:443")
			fp := &fakePeek{decide: func([]byte, bool, time.Duration) Decision {
				return next(up.addr, 0, Params{Filters: in, SendProxy: 1,
					ProxyOut: &peek.Out{Src: src, Dst: dst}, Done: func(*session.Record) {}})
			}}
			ps := h.beginPeeking(&Peek{Timeout: time.Second, Peeked: fp.peeked}, "hello")
			edge := &session.Edge{Peer: netip.MustParseAddrPort("127.0.0.1:9"), SNI: "db.example.com",
				ALPN: []string{"h2"}, Proxy: "v2", ProxyVersion: 2, UniqueID: "u1", SSL: true, SSLCN: "cn"}
			ps.c.p.Record.Edge = edge
			ps.client.Write([]byte("|after")) // queued behind the peeked bytes
			h.connect(ps)
			u := up.accepted(t)
			hdr := fmt.Sprintf("[v1 %v>%v #0]", src, dst)
			h.relay(ps, func() bool { return ps.c.toUpstream.bytes == int64(len(tc.want)) })
			if b := readN(t, u, len(hdr)+len(tc.want)); b != hdr+tc.want {
				t.Fatalf("the upstream got %q, want %q", b, hdr+tc.want)
			}
			nothingMore(t, u)
			fs := <-got.s
			if fs.Peer != edge.Peer || fs.ServerName != "db.example.com" || len(fs.ALPN) != 1 ||
				fs.Proxy == nil || fs.Proxy.Version != 2 || fs.Proxy.UniqueID != "u1" || fs.Proxy.SSL == nil || fs.Proxy.SSL.CN != "cn" {
				t.Errorf("the filters' session: %+v (proxy %+v)", fs, fs.Proxy)
			}
			ps.c.finish(session.Shutdown, nil, false)
			idleLoop(t, h.l)
		})
	}
}

// After peeking, the session's timers are its route's, counted from the
// connect: the idle timeout and the half-close timeout end it as they
// would any session, and the peek's deadline is gone.
func TestTimersAfterPeeking(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		fin  bool // the client finishes first
		want session.Reason
	}{
		{"idle", Params{IdleTimeout: 80 * time.Millisecond}, false, session.IdleTimeout},
		{"half-close", Params{IdleTimeout: time.Hour, HalfCloseTimeout: 80 * time.Millisecond}, true, session.HalfCloseTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			up := newUpstream(t)
			fp := &fakePeek{decide: func([]byte, bool, time.Duration) Decision {
				p := tc.p
				p.Done = func(*session.Record) {}
				return next(up.addr, 0, p)
			}}
			ps := h.beginPeeking(&Peek{Timeout: 20 * time.Millisecond, Peeked: fp.peeked}, "x")
			h.connect(ps)
			up.accepted(t)
			if due, _ := ps.c.deadline(); due != min(ps.c.lastActive+tc.p.IdleTimeout, ps.c.keepaliveAt) {
				t.Fatalf("deadline after connect %v, want the idle timeout's %v (or keepalive's)", due, ps.c.lastActive+tc.p.IdleTimeout)
			}
			var done *session.Record
			ps.c.p.Done = func(r *session.Record) { done = r }
			if tc.fin {
				unix.Shutdown(int(ps.client.Fd()), unix.SHUT_WR)
				h.relay(ps, func() bool { return ps.c.toUpstream.shut })
			}
			start := time.Now()
			for done == nil {
				if time.Since(start) > 5*time.Second {
					t.Fatal("the timeout never ended the session")
				}
				time.Sleep(5 * time.Millisecond) // the loop's clock
				h.turn()
			}
			if done.Reason != tc.want || time.Since(start) < 60*time.Millisecond && !tc.fin {
				t.Fatalf("ended %v after %v, want %v", done.Reason, time.Since(start), tc.want)
			}
			if len(fp.calls) != 1 {
				t.Errorf("the peek's deadline called Peeked again: %+v", fp.calls)
			}
			idleLoop(t, h.l)
		})
	}
}

// On a running loop, over TCP, with the kernel's own edges: a client
// accepted from a watched listener sends a header and its first message
// in pieces, with pauses; the session peeks, skips the header, dials, and
// the upstream gets the message first, then the rest; the echo comes back
// and both FINs end the session. Every descriptor is given back.
func TestPeekOnRunningLoop(t *testing.T) {
	l, stop := startLoop(t)
	defer stop()
	ln, lfd := listenerFD(t)
	up := newUpstream(t)
	const header, hello = "HDR!", "hello"
	ended := make(chan *session.Record, 1)
	var calls []string // the loop's alone until ended
	peeked := func(buf []byte, eof bool, elapsed time.Duration) Decision {
		calls = append(calls, string(buf))
		if len(buf) < len(header+hello) && !eof {
			return Decision{Wait: 5 * time.Second}
		}
		if string(buf) != header+hello {
			return Decision{End: session.ProxyError, Err: fmt.Errorf("peeked %q", buf)}
		}
		return next(up.addr, len(header), Params{IdleTimeout: 10 * time.Second,
			Done: func(r *session.Record) { ended <- r }})
	}
	if err := <-l.Watch(lfd, func(l *Loop) {
		for {
			fd, client, err := dialAccept(lfd)
			if err != nil {
				return
			}
			l.Begin(&Params{Client: fd, Record: &session.Record{Client: client, Start: time.Now()},
				Peek: &Peek{Timeout: 5 * time.Second, Peeked: peeked},
				Done: func(r *session.Record) { ended <- r }})
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dropped := make(chan struct{})
		l.Unwatch(lfd, func() { close(dropped) })
		<-dropped
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, piece := range []string{"H", "DR", "!he", "l", "lo"} {
		if _, err := c.Write([]byte(piece)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // separate segments: separate edges
	}
	u := up.accepted(t)
	if got := readN(t, u, len(hello)); got != hello {
		t.Fatalf("the upstream's first bytes %q", got)
	}
	c.Write([]byte(" world"))
	if got := readN(t, u, len(" world")); got != " world" {
		t.Fatalf("then %q", got)
	}
	u.Write([]byte("echo"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readN(t, c, 4); got != "echo" {
		t.Fatalf("the client got %q", got)
	}
	c.(*net.TCPConn).CloseWrite()
	u.(*net.TCPConn).CloseWrite()
	var r *session.Record
	select {
	case r = <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the session never ended")
	}
	if r.Reason != session.Done || r.ToUpstream != int64(len(hello+" world")) || r.ToClient != 4 {
		t.Fatalf("ended %v (%v), %d up, %d down", r.Reason, r.Err, r.ToUpstream, r.ToClient)
	}
	if len(calls) == 0 || calls[len(calls)-1] != header+hello {
		t.Errorf("Peeked saw %q", calls)
	}
	if n := l.Live(); n != 0 {
		t.Errorf("%d sessions live", n)
	}
	t.Logf("Peeked called %d times: %q", len(calls), calls)
}

// dialAccept accepts one client from the listening socket lfd, non-
// blocking, as the proxy does.
func dialAccept(lfd int) (int, netip.AddrPort, error) {
	fd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, netip.AddrPort{}, err
	}
	var client netip.AddrPort
	if in4, ok := sa.(*unix.SockaddrInet4); ok {
		client = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
	}
	return fd, client, nil
}
