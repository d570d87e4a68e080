package listen

import (
	"log/slog"
	"net"
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
