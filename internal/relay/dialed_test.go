package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/sockopt"
)

// dialed starts a session on h's loop to target and feeds it its upstream
// socket's readiness until the handshake is over.
func (h *harness) dialed(t *testing.T, target netip.AddrPort) (*conn, chan *session.Record) {
	t.Helper()
	clientFd, _ := socketPair(t)
	ended := make(chan *session.Record, 1)
	h.l.live.Add(1)
	h.l.begin(&Params{
		Client:      clientFd,
		Target:      target,
		IdleTimeout: time.Hour,
		Record:      &session.Record{Start: time.Now()},
		Done:        func(r *session.Record) { ended <- r },
	})
	c := h.l.slots[len(h.l.slots)-1]
	if c.state != dialing {
		t.Fatalf("state %d after begin, want dialing", c.state)
	}
	ev := pollEvents(c.upstream.fd, true, 10*time.Second)
	if ev == 0 {
		t.Fatal("the upstream socket said nothing within 10s")
	}
	h.event(c, upstreamSide, ev)
	return c, ended
}

// A dialed upstream socket gets TCP_NODELAY at once and keepalive (pier's
// timing) only once the session has lived the first probe's delay: a
// short connection pays for one setsockopt, not five.
func TestUpstreamKeepaliveComesWithAge(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := newHarness(t)
	c, _ := h.dialed(t, netip.MustParseAddrPort(ln.Addr().String()))
	if c.state != relaying {
		t.Fatalf("state %d after the handshake, want relaying", c.state)
	}
	opt := func(level, name int) int {
		v, err := unix.GetsockoptInt(c.upstream.fd, level, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if opt(unix.IPPROTO_TCP, unix.TCP_NODELAY) != 1 {
		t.Error("no TCP_NODELAY on the dialed socket")
	}
	if opt(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0 {
		t.Error("keepalive set at dial: four system calls every short connection pays")
	}
	if c.keepaliveAt != h.l.now+keepaliveDelay {
		t.Fatalf("keepalive due at %v, loop time %v", c.keepaliveAt, h.l.now)
	}

	// Its time comes: the timer sets it, and the session goes on.
	c.keepaliveAt = h.l.now
	c.reschedule()
	h.turn()
	if c.state != relaying || c.keepaliveAt != 0 {
		t.Fatalf("after the keepalive timer: state %d, keepaliveAt %v", c.state, c.keepaliveAt)
	}
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(sockopt.KeepaliveIdle / time.Second)},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(sockopt.KeepaliveInterval / time.Second)},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, sockopt.KeepaliveCount},
	} {
		if got := opt(o.level, o.opt); got != o.want {
			t.Errorf("%s = %d, want %d", o.name, got, o.want)
		}
	}
	// And the idle timeout is the session's deadline again.
	if due, reason := c.deadline(); reason != session.IdleTimeout || due != c.lastActive+time.Hour {
		t.Errorf("deadline after keepalive: %v (%v)", due, reason)
	}
}

// A refused connect still reads the socket's error (the event carries
// EPOLLERR), and says why: only a clean writable edge skips SO_ERROR.
func TestRefusedDialSaysWhy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close() // nobody listens there now: the kernel refuses
	h := newHarness(t)
	c, ended := h.dialed(t, addr)
	if c.state != closed {
		t.Fatalf("state %d after a refused connect, want closed", c.state)
	}
	r := <-ended
	if r.Reason != session.ConnectFailed || !errors.Is(r.Err, unix.ECONNREFUSED) {
		t.Fatalf("ended with %v (%v), want %v with ECONNREFUSED", r.Reason, r.Err, session.ConnectFailed)
	}
}

// When the second direction ends, the session closes both sockets without
// a shutdown first: the FIN still reaches the peer as a FIN (its socket had
// nothing unread, so close is no reset), after every byte.
func TestLastFINGoesOutWithTheClose(t *testing.T) {
	shutdowns := 0
	old := shutdownWR
	shutdownWR = func(fd int) { shutdowns++; old(fd) }
	t.Cleanup(func() { shutdownWR = old })
	h := newHarness(t)
	s := h.session()
	// The upstream answers and finishes first.
	s.upstream.Write([]byte("response"))
	unix.Shutdown(int(s.upstream.Fd()), unix.SHUT_WR)
	h.drive(s, func() bool { return s.c.toClient.shut })
	if s.c.state == closed {
		t.Fatal("the session ended with the client's direction still open")
	}
	// Then the client sends its last bytes and its FIN.
	s.client.Write([]byte("request"))
	unix.Shutdown(int(s.client.Fd()), unix.SHUT_WR)
	h.drive(s, func() bool { return false })
	r := <-s.ended
	if r.Reason != session.Done {
		t.Fatalf("ended with %v (%v), want done", r.Reason, r.Err)
	}
	if shutdowns != 1 {
		t.Errorf("%d shutdown calls; want 1, for the first direction only: the close passes the second FIN", shutdowns)
	}
	for _, p := range []struct {
		name string
		f    io.Reader
		want string
	}{{"upstream", s.upstream, "request"}, {"client", s.client, "response"}} {
		got, err := io.ReadAll(p.f)
		if err != nil || string(got) != p.want {
			t.Errorf("the %s read %q, %v; want %q then EOF", p.name, got, err, p.want)
		}
	}
}
