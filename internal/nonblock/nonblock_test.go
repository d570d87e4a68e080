package nonblock_test

import (
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/nonblock"
)

// pair returns a connected non-blocking socket pair.
func pair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestReadWriteAndEAGAIN(t *testing.T) {
	a, b := pair(t)
	buf := make([]byte, 16)
	if n, err := nonblock.Read(a, buf); err != unix.EAGAIN || n != -1 {
		t.Fatalf("read of an empty socket: %d, %v; want -1, EAGAIN", n, err)
	}
	if n, err := nonblock.Write(b, []byte("hello")); err != nil || n != 5 {
		t.Fatalf("write: %d, %v", n, err)
	}
	if n, err := nonblock.Read(a, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %q, %v", buf[:max(n, 0)], err)
	}
	if n, err := nonblock.Write(-1, []byte("x")); err != unix.EBADF || n != 0 {
		t.Fatalf("write to a bad descriptor: %d, %v; want 0, EBADF", n, err)
	}
	// A zero-length read is no error.
	if n, err := nonblock.Read(a, nil); err != unix.EAGAIN && (err != nil || n != 0) {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	if err := nonblock.Shutdown(b, unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	if n, err := nonblock.Read(a, buf); err != nil || n != 0 {
		t.Fatalf("read after the peer's shutdown: %d, %v; want EOF", n, err)
	}
}

func TestSpliceThroughAPipe(t *testing.T) {
	a, b := pair(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := nonblock.Splice(a, p[1], 1<<16); err != unix.EAGAIN {
		t.Fatalf("splice from an empty socket: %v, want EAGAIN", err)
	}
	nonblock.Write(b, []byte("spliced"))
	if n, err := nonblock.Splice(a, p[1], 1<<16); err != nil || n != 7 {
		t.Fatalf("socket to pipe: %d, %v", n, err)
	}
	if n, err := nonblock.Splice(p[0], b, 7); err != nil || n != 7 {
		t.Fatalf("pipe to socket: %d, %v", n, err)
	}
	buf := make([]byte, 16)
	if n, _ := nonblock.Read(a, buf); string(buf[:max(n, 0)]) != "spliced" {
		t.Fatalf("read back %q", buf[:max(n, 0)])
	}
}

func TestConnectAcceptSetsockoptClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lfile, _ := ln.(*net.TCPListener).File()
	defer lfile.Close()
	lfd := int(lfile.Fd())
	if err := unix.SetNonblock(lfd, true); err != nil {
		t.Fatal(err)
	}

	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	if _, err := nonblock.Accept4(lfd, &rsa, &n, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC); err != unix.EAGAIN {
		t.Fatalf("accept with nobody waiting: %v, want EAGAIN", err)
	}

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := nonblock.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		t.Fatal(err)
	}
	if v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); v != 1 {
		t.Fatalf("TCP_NODELAY reads %d after setting it", v)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
	pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
	pb[0], pb[1] = byte(port>>8), byte(port)
	if err := nonblock.Connect(fd, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4); err != nil && err != unix.EINPROGRESS {
		t.Fatalf("connect: %v", err)
	}
	pfd := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	if n, _ := unix.Poll(pfd, int(10*time.Second/time.Millisecond)); n != 1 {
		t.Fatal("no client to accept within 10s")
	}
	n = uint32(unix.SizeofSockaddrAny)
	cfd, err := nonblock.Accept4(lfd, &rsa, &n, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	if rsa.Addr.Family != unix.AF_INET || n != unix.SizeofSockaddrInet4 {
		t.Fatalf("accepted address: family %d, length %d", rsa.Addr.Family, n)
	}
	if err := nonblock.Close(cfd); err != nil {
		t.Fatal(err)
	}
	if err := nonblock.Close(fd); err != nil {
		t.Fatal(err)
	}
	if err := nonblock.Close(-1); err != unix.EBADF {
		t.Fatalf("close of no descriptor: %v, want EBADF", err)
	}
}

func TestEpollPollNeverWaits(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	a, b := pair(t)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, a, &ev); err != nil {
		t.Fatal(err)
	}
	events := make([]unix.EpollEvent, 4)
	if n, err := nonblock.EpollPoll(epfd, events); n != 0 || err != nil {
		t.Fatalf("nothing ready: %d, %v", n, err)
	}
	nonblock.Write(b, []byte("x"))
	if n, err := nonblock.EpollPoll(epfd, events); n != 1 || err != nil || events[0].Fd != 7 {
		t.Fatalf("one ready: %d, %v, %+v", n, err, events[0])
	}
	if n, err := nonblock.EpollPoll(epfd, nil); n != 0 || err != nil {
		t.Fatalf("no room for events: %d, %v", n, err)
	}
}
