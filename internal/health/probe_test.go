package health

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
)

var ping = []byte("PING\r\n")

// serve starts a member on 127.0.0.1:0 whose connections handle serves.
func serve(t *testing.T, handle func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(testutil.NewUpstream(t, handle).Addr())
}

// refused returns a loopback address where nothing listens.
func refused(t *testing.T) netip.AddrPort {
	return netip.MustParseAddrPort(testutil.RefusedAddr(t))
}

// answer returns a member that reads the probe's PING (if it sends one),
// waits delay (ended early by the probe's close), writes pieces, pausing
// pace between them, and then reads until the probe closes.
func answer(withPing bool, delay, pace time.Duration, pieces ...string) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		if withPing {
			if _, err := io.ReadFull(c, make([]byte, len(ping))); err != nil {
				return
			}
		}
		if delay > 0 {
			c.SetReadDeadline(time.Now().Add(delay))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				return // the probe gave up
			}
			c.SetReadDeadline(time.Time{})
		}
		for i, p := range pieces {
			if i > 0 && pace > 0 {
				time.Sleep(pace) // the member's pace, not a wait for it
			}
			if _, err := c.Write([]byte(p)); err != nil {
				return
			}
		}
		io.Copy(io.Discard, c)
	}
}

// closeAfter returns a member that says pieces and closes its side.
func closeAfter(withPing bool, pieces ...string) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		if withPing {
			if _, err := io.ReadFull(c, make([]byte, len(ping))); err != nil {
				return
			}
		}
		for _, p := range pieces {
			c.Write([]byte(p))
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	}
}

func pingPong(timeout time.Duration) *Check {
	return &Check{Timeout: timeout, Send: ping, Expect: []byte("+PONG")}
}

var esmtp = regexp.MustCompile(`^220 .*ESMTP`)

// Probe's verdict and its words for each way a member can answer.
func TestProbeVerdicts(t *testing.T) {
	long := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name   string
		handle func(*net.TCPConn) // nil: nothing listens
		check  *Check
		want   string // the error's text; "": healthy
	}{
		{"a right answer passes", answer(true, 0, 0, "+PONG\r\n"), pingPong(5 * time.Second), ""},
		{"a wrong answer fails and is quoted",
			answer(true, 0, 0, "-ERR unknown command\r\n"), pingPong(5 * time.Second),
			`reply "-ERR unknown command\r\n" does not begin with "+PONG"`},
		{"a long wrong answer is quoted up to 64 bytes",
			answer(true, 0, 0, long), pingPong(5 * time.Second),
			`reply "` + long[:64] + `"... does not begin with "+PONG"`},
		{"a reply is escaped for the log line",
			answer(true, 0, 0, "\x00\xff\n"), pingPong(5 * time.Second),
			`reply "\x00\xff\n" does not begin with "+PONG"`},
		{"a member that says nothing times out",
			testutil.Hold, pingPong(100 * time.Millisecond),
			"timeout after 100ms waiting for the reply"},
		{"a member that stops mid-reply times out, quoted",
			answer(true, 0, 0, "+PO"), pingPong(100 * time.Millisecond),
			`timeout after 100ms waiting for the rest of the reply "+PO"`},
		{"a member that closes at once has not replied",
			func(*net.TCPConn) {}, &Check{Timeout: 5 * time.Second, Expect: []byte("220 ")},
			"connection closed before a reply"},
		{"a member that closes after the request has not replied",
			closeAfter(true), pingPong(5 * time.Second),
			"connection closed before a reply"},
		{"a member that closes mid-reply fails",
			closeAfter(true, "+PO"), pingPong(5 * time.Second),
			`reply "+PO" does not begin with "+PONG": connection closed`},
		{"a refused connection fails", nil, pingPong(5 * time.Second),
			"connect: connection refused"},
		{"a reply split into single bytes passes",
			answer(true, 0, 5*time.Millisecond, "+", "P", "O", "N", "G", "\r", "\n"), pingPong(5 * time.Second), ""},
		{"a wrong first byte fails before the rest arrives",
			answer(true, 0, 0, "-"), pingPong(10 * time.Second),
			`reply "-" does not begin with "+PONG"`},
		{"ExpectRE: a matching banner passes",
			answer(false, 0, 0, "220 mail.example ESMTP ready\r\n"),
			&Check{Timeout: 5 * time.Second, ExpectRE: esmtp}, ""},
		{"ExpectRE: a banner in pieces passes once it matches",
			answer(false, 0, 5*time.Millisecond, "22", "0 mail.exa", "mple ES", "MTP"),
			&Check{Timeout: 5 * time.Second, ExpectRE: esmtp}, ""},
		{"ExpectRE: a wrong banner fails when the member closes",
			closeAfter(false, "554 go away\r\n"),
			&Check{Timeout: 5 * time.Second, ExpectRE: esmtp},
			`reply "554 go away\r\n" does not match ^220 .*ESMTP`},
		{"ExpectRE: 4 KiB without a match fail before the timeout",
			answer(false, 0, 0, strings.Repeat("y", 5000)),
			&Check{Timeout: 10 * time.Second, ExpectRE: esmtp},
			`reply "` + strings.Repeat("y", 64) + `"... does not match ^220 .*ESMTP`},
		{"ExpectRE: a banner that never matches times out",
			answer(false, 0, 0, "220 mail.example\r\n"),
			&Check{Timeout: 100 * time.Millisecond, ExpectRE: esmtp},
			`timeout after 100ms waiting for the rest of the reply "220 mail.example\r\n"`},
		{"Expect and ExpectRE: both must hold",
			closeAfter(false, "220 mail.example SMTP\r\n"),
			&Check{Timeout: 5 * time.Second, Expect: []byte("220"), ExpectRE: esmtp},
			`reply "220 mail.example SMTP\r\n" does not match ^220 .*ESMTP`},
		{"connect only: accepting is healthy", testutil.Hold, &Check{Timeout: 5 * time.Second}, ""},
		{"connect only: refusing is not", nil, &Check{Timeout: 5 * time.Second}, "connect: connection refused"},
		{"send only: writing is healthy", testutil.Hold, &Check{Timeout: 5 * time.Second, Send: ping}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := refused(t)
			if tc.handle != nil {
				addr = serve(t, tc.handle)
			}
			err := tc.check.Probe(t.Context(), addr)
			if got := errText(err); got != tc.want {
				t.Fatalf("Probe: %s\nwant:  %s", got, tc.want)
			}
			if IsLocal(err) {
				t.Errorf("IsLocal(%v) = true, want false: the member's fault", err)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A member that answers later than Timeout fails with a timeout, and the
// probe gives up at Timeout: it neither waits for the answer nor gives up
// early.
func TestProbeTimesOutAtTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	addr := serve(t, answer(true, 10*timeout, 0, "+PONG\r\n"))
	start := time.Now()
	err := pingPong(timeout).Probe(t.Context(), addr)
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) || err.Error() != "timeout after 200ms waiting for the reply" {
		t.Fatalf("Probe: %v, want a timeout waiting for the reply", err)
	}
	if took < timeout/2 || took > timeout+2*time.Second {
		t.Errorf("Probe took %v, want about %v", took, timeout)
	}
}

// Port sends the probe to a port of its own on the member's address.
func TestProbePortOverridesTheMembersPort(t *testing.T) {
	health := serve(t, answer(true, 0, 0, "+PONG\r\n"))
	member := netip.AddrPortFrom(health.Addr(), refused(t).Port())
	c := pingPong(5 * time.Second)
	if err := c.Probe(t.Context(), member); err == nil {
		t.Fatal("probe of the member's own port passed; nothing listens there")
	}
	c.Port = health.Port()
	if err := c.Probe(t.Context(), member); err != nil {
		t.Fatalf("probe with Port: %v", err)
	}
}

// A probe ends its connection with a FIN, so members do not log resets,
// and leaves no descriptor open.
func TestProbeClosesCleanly(t *testing.T) {
	ended := make(chan error, 1)
	u := testutil.NewUpstream(t, func(c *net.TCPConn) {
		if _, err := io.ReadFull(c, make([]byte, len(ping))); err != nil {
			ended <- err
			return
		}
		c.Write([]byte("+PONG\r\n"))
		_, err := io.Copy(io.Discard, c) // nil at EOF; a RST is ECONNRESET
		ended <- err
	})
	addr := netip.MustParseAddrPort(u.Addr())
	if err := pingPong(5*time.Second).Probe(t.Context(), addr); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("member's read after the probe: %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the member never saw the probe close")
	}

	u.Close() // and with it the member's side of the connection

	// Descriptors: every kind of ending, then the members are closed,
	// which waits for their side of each connection to close.
	before := testutil.OpenFDs(t)
	ups := []*testutil.Upstream{
		testutil.NewUpstream(t, answer(true, 0, 0, "+PONG\r\n")),
		testutil.NewUpstream(t, testutil.Hold),
		testutil.NewUpstream(t, closeAfter(true)),
		testutil.NewUpstream(t, answer(true, 0, 0, "-ERR\r\n")),
	}
	members := []netip.AddrPort{refused(t)}
	for _, u := range ups {
		members = append(members, netip.MustParseAddrPort(u.Addr()))
	}
	for _, c := range []*Check{pingPong(50 * time.Millisecond), {Timeout: 5 * time.Second}} {
		for _, m := range members {
			c.Probe(t.Context(), m)
		}
	}
	for _, u := range ups {
		u.Close()
	}
	if after := testutil.OpenFDs(t); after != before {
		t.Errorf("%d descriptors open after the probes, %d before", after, before)
	}
}

// A canceled ctx ends a probe at once, whatever it waits for, with an error
// that wraps the cancellation.
func TestProbeEndsWithCtx(t *testing.T) {
	accepted := make(chan struct{})
	addr := serve(t, func(c *net.TCPConn) {
		close(accepted)
		testutil.Hold(c)
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pingPong(time.Hour).Probe(ctx, addr) }()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe never connected")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Probe: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Probe did not return after cancel")
	}
}

// A probe that cannot even open a socket, for lack of descriptors, fails in
// a way IsLocal recognizes, and a Checker logs it instead of reporting it:
// pier's shortage must never mark a member down.
func TestLocalShortageIsNotTheMembers(t *testing.T) {
	addr := serve(t, answer(true, 0, 0, "+PONG\r\n"))
	warned := make(chan string, 16)
	reported := make(chan error, 16)
	k := NewChecker(pingPong(5*time.Second), time.Hour, slog.New(&warnings{warned}),
		func(_ netip.AddrPort, err error) { reported <- err })
	defer k.Stop()

	withoutDescriptors(t, func() {
		err := pingPong(5*time.Second).Probe(t.Context(), addr)
		if !IsLocal(err) || !errors.Is(err, syscall.EMFILE) {
			t.Errorf("Probe without descriptors: %v; want EMFILE, IsLocal", err)
		}
		k.Set([]netip.AddrPort{addr})
		select {
		case msg := <-warned:
			if msg != "health check failed for lack of pier's own resources; not counted" {
				t.Errorf("Checker logged %q", msg)
			}
		case <-time.After(5 * time.Second):
			t.Error("the Checker logged no warning")
		}
		k.Stop()
	})
	select {
	case err := <-reported:
		t.Errorf("the Checker reported %v; a local failure must not be reported", err)
	default:
	}
}

// withoutDescriptors runs f with the descriptor limit at the lowest free
// descriptor, so that the next socket fails with EMFILE.
func withoutDescriptors(t *testing.T, f func()) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd) // fd is now the lowest free descriptor
	low := lim
	low.Cur = uint64(fd)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}()
	// A descriptor below fd that an earlier test's connection frees late
	// would let f open a socket after all: take every one that is free
	// now, until the limit says no.
	var held []int
	defer func() {
		for _, h := range held {
			syscall.Close(h)
		}
	}()
	for range 4096 {
		h, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		held = append(held, h)
	}
	f()
}

// IsLocal knows pier's own shortages by errno, however deeply wrapped, and
// nothing else.
func TestIsLocal(t *testing.T) {
	wrap := func(e error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", e)}
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		if !IsLocal(wrap(e)) {
			t.Errorf("IsLocal(%v) = false, want true", e)
		}
	}
	for _, e := range []error{nil, wrap(syscall.ECONNREFUSED), wrap(syscall.ETIMEDOUT), wrap(syscall.EHOSTUNREACH), io.EOF, os.ErrDeadlineExceeded} {
		if IsLocal(e) {
			t.Errorf("IsLocal(%v) = true, want false", e)
		}
	}
}

// A member that never completes the handshake fails with a connect
// timeout. Its stand-in is a listener with a backlog of 0 that never
// accepts: once one connection fills its queue, Linux drops further SYNs.
func TestProbeTimesOutConnecting(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4(sa.(*syscall.SockaddrInet4).Addr), uint16(sa.(*syscall.SockaddrInet4).Port))
	c := &Check{Timeout: 100 * time.Millisecond}
	for range 8 { // fill the queue; a probe that connects still passes
		err = c.Probe(t.Context(), addr)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || err.Error() != "connect: timeout after 100ms" {
		t.Fatalf("Probe: %v, want connect: timeout after 100ms", err)
	}
}

// TestProbeWritesPrefaceFirst pins Check.Preface: its bytes reach the
// member before Send, in order, and Preface is asked with the member's
// own address even when Port probes another port (the pool decides by
// the member, not by the port probed).
func TestProbeWritesPrefaceFirst(t *testing.T) {
	preface := []byte("PROXY UNKNOWN\r\n")
	got := make(chan []byte, 1)
	addr := serve(t, func(c *net.TCPConn) {
		b := make([]byte, len(preface)+len(ping))
		if _, err := io.ReadFull(c, b); err != nil {
			got <- nil
			return
		}
		got <- b
		c.Write([]byte("+PONG\r\n"))
		io.Copy(io.Discard, c)
	})
	member := netip.AddrPortFrom(addr.Addr(), 1) // Port sends the probe to addr
	var asked netip.AddrPort
	c := &Check{Timeout: wait, Port: addr.Port(), Send: ping, Expect: []byte("+PONG"),
		Preface: func(a netip.AddrPort) []byte { asked = a; return preface }}
	if err := c.Probe(context.Background(), member); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != string(preface)+string(ping) {
		t.Errorf("member read %q, want the preface then the ping", b)
	}
	if asked != member {
		t.Errorf("Preface asked for %v, want the member's own address %v", asked, member)
	}
}
