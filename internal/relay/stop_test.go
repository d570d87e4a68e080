package relay

import (
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/session"
)

// emitThenFail forwards out in its first call and fails with err in the
// same call.
type emitThenFail struct {
	out []byte
	err error
}

func (s *emitThenFail) Process(b *filter.Batch) error {
	b.Emit(s.out)
	s.out = nil
	return s.err
}

// A filter that ends the session after forwarding more than the
// destination takes at once keeps the session until the destination has
// taken it, as it drains, and reads nothing more meanwhile; a destination
// that then takes nothing for the route's idle timeout ends it anyway,
// with the filter's reason, not idle_timeout.
func TestFilterEndWaitsForDestinationBounded(t *testing.T) {
	h := newHarness(t)
	s := h.session()
	c := s.c
	c.p.IdleTimeout = time.Minute
	forwarded := payloadBytes(2 << 20) // beyond a socket pair's buffers
	c.toUpstream.chain = chain.New(&filter.Session{}, filter.ToUpstream,
		[]chain.Stage{{Name: "f", Stream: &emitThenFail{out: forwarded, err: filter.ErrReset}}})
	h.event(c, clientSide, unix.EPOLLOUT)
	h.event(c, upstreamSide, unix.EPOLLOUT)
	if c.state == closed {
		t.Fatalf("ended (%v) with %d of %d forwarded bytes delivered", (<-s.ended).Reason, c.toUpstream.bytes, len(forwarded))
	}
	if c.stopping != &c.toUpstream {
		t.Fatal("the session did not stop relaying when its filter ended it")
	}
	first := c.toUpstream.bytes
	if first == 0 || first >= int64(len(forwarded)) {
		t.Fatalf("delivered %d of %d at once: the test needs a destination that takes some", first, len(forwarded))
	}

	// The destination takes some: more goes out on its writable edge.
	if _, err := io.ReadFull(s.upstream, make([]byte, first)); err != nil {
		t.Fatal(err)
	}
	if ev := pollEvents(s.upFd, true, 10*time.Second); ev&unix.EPOLLOUT == 0 {
		t.Fatalf("the loop's upstream end is not writable after the peer read (%#x)", ev)
	}
	if _, err := s.client.Write([]byte("more to read")); err != nil {
		t.Fatal(err)
	}
	h.event(c, upstreamSide, unix.EPOLLOUT)
	h.event(c, clientSide, unix.EPOLLIN)
	if c.state == closed || c.toUpstream.bytes <= first {
		t.Fatalf("closed %v, delivered %d after the destination read %d", c.state == closed, c.toUpstream.bytes, first)
	}
	// Peeked through the loop's own end: still all there.
	var b [64]byte
	if n, _, _ := unix.Recvfrom(s.clientFd, b[:], unix.MSG_PEEK); n != len("more to read") {
		t.Fatalf("the client was read after its filter ended the session (%d bytes left of %d)", n, len("more to read"))
	}

	// Then it takes nothing for the idle timeout.
	c.lastActive = h.l.now - c.p.IdleTimeout - 1
	c.reschedule()
	h.turn()
	if c.state != closed {
		t.Fatal("a destination that took nothing for the idle timeout kept the session")
	}
	r := <-s.ended
	if r.Reason != session.FilterReset {
		t.Errorf("ended with %v, want %v", r.Reason, session.FilterReset)
	}
	if r.ToUpstream != c.toUpstream.bytes || r.ToUpstream >= int64(len(forwarded)) {
		t.Errorf("record says %d bytes to upstream; %d were delivered", r.ToUpstream, c.toUpstream.bytes)
	}
}

// A filter that closes the session after forwarding bytes waits, as a
// reset does, until they are written, then closes: the peer reads them
// all, then EOF.
func TestFilterCloseDeliversThenCloses(t *testing.T) {
	h := newHarness(t)
	s := h.session()
	c := s.c
	forwarded := payloadBytes(1 << 20)
	c.toUpstream.chain = chain.New(&filter.Session{}, filter.ToUpstream,
		[]chain.Stage{{Name: "f", Stream: &emitThenFail{out: forwarded, err: filter.ErrClose}}})
	got := make(chan int, 1)
	go func() {
		n, _ := io.Copy(io.Discard, s.upstream)
		got <- int(n)
	}()
	h.event(c, upstreamSide, unix.EPOLLOUT)
	h.drive(s, func() bool { return false })
	r := <-s.ended
	if r.Reason != session.FilterClose || r.ToUpstream != int64(len(forwarded)) {
		t.Errorf("ended with %v after %d bytes, want %v after %d", r.Reason, r.ToUpstream, session.FilterClose, len(forwarded))
	}
	select {
	case n := <-got:
		if n != len(forwarded) {
			t.Errorf("upstream read %d bytes, then EOF; want %d", n, len(forwarded))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream never read EOF")
	}
}

func payloadBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}
