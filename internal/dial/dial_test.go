package dial

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/session"
)

// Accept and LocalAddr read addresses, ports in network byte order,
// for IPv4 and IPv6, as the other end sees them.
func TestAcceptAndLocalAddr(t *testing.T) {
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", network)
		if err != nil {
			t.Logf("%s: %v", network, err)
			continue
		}
		defer ln.Close()
		raw, _ := ln.(*net.TCPListener).SyscallConn()
		var lfd int
		raw.Control(func(fd uintptr) { lfd = int(fd) })
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The handshake is done, so the connection waits in the queue.
		fd, client, err := Accept(lfd)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); client != want {
			t.Errorf("%s: Accept says the client is %v, the client says %v", network, client, want)
		}
		local, err := LocalAddr(fd)
		if want := c.RemoteAddr().(*net.TCPAddr).AddrPort(); err != nil || local != want {
			t.Errorf("%s: LocalAddr says %v (%v), the client dialed %v", network, local, err, want)
		}
		if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
			t.Errorf("%s: the accepted socket blocks", network)
		}
	}
}

// Reason is the one place a failed dial is classified: pier's own
// shortages as local_error (never the member's fault), a try out of time as
// connect_timeout, anything else as the upstream's failure, however the
// error is wrapped.
func TestReasonClassifiesDialErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want session.Reason
	}{
		{fmt.Errorf("dial: socket: %w", unix.EMFILE), session.LocalError},
		{fmt.Errorf("dial: socket: %w", unix.ENFILE), session.LocalError},
		{fmt.Errorf("dial 10.0.0.1:80: %w", unix.EADDRNOTAVAIL), session.LocalError},
		{unix.ENOBUFS, session.LocalError},
		{unix.ENOMEM, session.LocalError},
		{ErrTimeout, session.ConnectTimeout},
		{fmt.Errorf("dial 10.0.0.1:80: %w", unix.ECONNREFUSED), session.ConnectFailed},
		{unix.EHOSTUNREACH, session.ConnectFailed},
		{unix.ENETUNREACH, session.ConnectFailed},
	} {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %v, want %v", tc.err, got, tc.want)
		}
		if local := IsLocal(tc.err); local != (tc.want == session.LocalError) {
			t.Errorf("IsLocal(%v) = %v", tc.err, local)
		}
	}
}
