package listen

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Accepted sockets come out non-blocking, with TCP_NODELAY and keepalive
// inherited from the listener, at no extra system call per accept.
func TestAcceptedSocketOptions(t *testing.T) {
	ln, err := Open("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, _, _, err := ln.Accept(); err != unix.EAGAIN {
		t.Fatalf("accept with nobody waiting: %v, want EAGAIN", err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd, client, _, err := ln.Accept() // the handshake is done when Dial returns
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if client.String() != c.LocalAddr().String() {
		t.Errorf("client %v, want %v", client, c.LocalAddr())
	}
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 4},
	} {
		v, err := unix.GetsockoptInt(fd, o.level, o.opt)
		if err != nil || v != o.want {
			t.Errorf("%s = %d (%v), want %d", o.name, v, err, o.want)
		}
	}
	flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if flags&unix.O_NONBLOCK == 0 {
		t.Error("accepted socket is blocking")
	}
}

// Backoff doubles from 5ms while failures go on, up to 1s, and a success
// starts it over.
func TestBackoff(t *testing.T) {
	ln, err := Open("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var got []time.Duration
	for range 10 {
		got = append(got, ln.Backoff(unix.EMFILE))
	}
	if got[0] != minBackoff || got[1] != 2*minBackoff || got[9] != maxBackoff {
		t.Errorf("backoffs %v", got)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd, _, _, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if d := ln.Backoff(unix.EMFILE); d != minBackoff {
		t.Errorf("after a success the backoff is %v, want %v", d, minBackoff)
	}
}

// A port another process holds fails with an error that names the port
// and the command that shows who holds it, and is still EADDRINUSE.
func TestBindErrorAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln, err := Open(addr, slog.New(slog.DiscardHandler))
	if err == nil {
		ln.Close()
		t.Fatal("listening twice on one address succeeded")
	}
	want := "listen " + addr + ": address already in use: another process holds the port; see which with ss -ltnp 'sport = :" + port + "'"
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("error %v is not EADDRINUSE", err)
	}
}

// Permission denied on a port below 1024 names the capability that grants
// it; on a higher port (a security module's refusal) it does not pretend
// to know.
func TestBindErrorPrivilegedPort(t *testing.T) {
	denied := func(addr string) error {
		// As net.Listen reports it.
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", unix.EACCES)}
	}
	err := bindError(":80", denied(":80"))
	want := "listen :80: permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep $(which pier))"
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	if !errors.Is(err, unix.EACCES) {
		t.Errorf("error %v is not EACCES", err)
	}
	if err := bindError(":8080", denied(":8080")); strings.Contains(err.Error(), "CAP_NET_BIND_SERVICE") || !errors.Is(err, unix.EACCES) {
		t.Errorf("port 8080: %v", err)
	}
	if os.Geteuid() != 0 {
		// The real thing, where the test may not bind low ports.
		if ln, err := Open("127.0.0.1:1", slog.New(slog.DiscardHandler)); err == nil {
			ln.Close() // ip_unprivileged_port_start lowered: nothing to see
		} else if !strings.Contains(err.Error(), "CAP_NET_BIND_SERVICE") {
			t.Errorf("binding port 1 unprivileged: %v", err)
		}
	}
}
