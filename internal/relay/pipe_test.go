package relay

import (
	"bytes"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/session"
)

// shortPipes makes the loop's pipes as small as the kernel makes them for
// a user past fs.pipe-user-pages-soft: two pages, less than the scratch
// buffer.
func shortPipes(t *testing.T) {
	old := pipeSize
	pipeSize = 8192
	t.Cleanup(func() { pipeSize = old })
}

// A read the destination cannot take, larger than an empty short pipe,
// keeps its remainder and delivers it after the pipe, in order.
func TestShortPipeSpill(t *testing.T) {
	shortPipes(t)
	l, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.shutdown()

	src, srcPeer := tcpPair(t)
	dst, dstPeer := tcpPair(t)
	defer unix.Close(src)
	defer unix.Close(dst)
	c := &conn{l: l, heapIdx: -1}
	c.upstream = side{fd: src, readable: true}
	c.client = side{fd: dst, writable: true}
	f := &c.toClient
	*f = flow{src: &c.upstream, dst: &c.client}

	// Fill dst until the kernel refuses more, counting what it took.
	if err := unix.SetsockoptInt(dst, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	var before bytes.Buffer
	fill := bytes.Repeat([]byte{'.'}, 4096)
	for {
		n, err := unix.Write(dst, fill)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		before.Write(fill[:n])
	}

	msg := make([]byte, 20000) // less than scratch, more than a short pipe
	for i := range msg {
		msg[i] = byte(i % 251)
	}
	if _, err := srcPeer.Write(msg); err != nil {
		t.Fatal(err)
	}
	waitInq(t, src, len(msg))

	if _, ferr := c.move(f); ferr != nil {
		t.Fatal(ferr.err)
	}
	checkFlows(t, c)
	if f.pipe == nil || f.pipe.size >= len(msg) {
		t.Fatalf("pipe %+v: want one shorter than %d bytes", f.pipe, len(msg))
	}
	if f.inPipe+len(f.spill)+int(f.bytes) != len(msg) || len(f.spill) == 0 {
		t.Fatalf("after move: %d in pipe, %d spilled, %d written; want %d with a spill",
			f.inPipe, len(f.spill), f.bytes, len(msg))
	}

	want := append(before.Bytes(), msg...)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(dstPeer, int64(len(want))))
		got <- b
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.inPipe > 0 || len(f.spill) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stuck with %d in pipe, %d spilled", f.inPipe, len(f.spill))
		}
		fds := []unix.PollFd{{Fd: int32(dst), Events: unix.POLLOUT}}
		unix.Poll(fds, 1000)
		c.client.writable = true
		if _, ferr := c.move(f); ferr != nil {
			t.Fatal(ferr.err)
		}
		checkFlows(t, c)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer got %d bytes, want %d identical", len(b), len(want))
	}
	if f.bytes != int64(len(msg)) {
		t.Errorf("flow counted %d bytes, want %d", f.bytes, len(msg))
	}
}

// A whole session through short pipes, bulk and small reads alike,
// delivers every byte.
func TestShortPipesSession(t *testing.T) {
	shortPipes(t)
	payload := make([]byte, 8<<20)
	for i := range payload {
		payload[i] = byte(i * 7 / 5)
	}
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for off, i := 0, 0; off < len(payload); i++ {
			n := min(len(payload)-off, 1000+(i*7919)%60000)
			if _, err := c.Write(payload[off : off+n]); err != nil {
				return
			}
			off += n
		}
	}()

	l, stop := startLoop(t)
	defer stop()

	fd, client := tcpPair(t)
	done := make(chan *session.Record, 1)
	l.Start(&Params{
		Client:        fd,
		Target:        netip.MustParseAddrPort(up.Addr().String()),
		ConnectBudget: 5 * time.Second,
		Record:        &session.Record{Start: time.Now()},
		Done:          func(r *session.Record) { done <- r },
	})

	client.SetReadDeadline(time.Now().Add(time.Minute))
	h := sha256.New()
	n, err := io.CopyBuffer(h, client, make([]byte, 1500))
	if err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	want := sha256.Sum256(payload)
	if n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("client got %d bytes, want %d identical", n, len(payload))
	}
	client.Close()
	select {
	case r := <-done:
		if r.ToClient != int64(len(payload)) {
			t.Errorf("record says %d bytes to client, want %d", r.ToClient, len(payload))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session did not finish")
	}
}

// tcpPair returns a non-blocking descriptor for one end of a loopback
// TCP connection, owned by the caller, and the other end.
func tcpPair(t *testing.T) (int, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	raw, err := accepted.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	raw.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return fd, peer
}

// waitInq waits until fd has n bytes to read.
func waitInq(t *testing.T, fd, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes arrived, want %d", q, n)
		}
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
	}
}
