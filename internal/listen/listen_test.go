package listen

import (
	"log/slog"
	"net"
	"net/netip"
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
	got := make(chan int, 1)
	go ln.Serve(func(fd int, _ netip.AddrPort) { got <- fd })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var fd int
	select {
	case fd = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing accepted")
	}
	defer unix.Close(fd)
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
	ln.Close()
	<-ln.Done()
}

// Close ends Serve, which returns nil.
func TestCloseEndsServe(t *testing.T) {
	ln, err := Open("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- ln.Serve(func(fd int, _ netip.AddrPort) { unix.Close(fd) }) }()
	ln.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}
