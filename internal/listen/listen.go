// Package listen runs pier's accept loops: one goroutine per listening
// socket, handing each accepted client socket, already non-blocking and
// with pier's socket options, to a handler that must not block.
//
// Accept errors never spin: when the process is out of descriptors or
// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the loop backs off, from 5ms
// doubling up to 1s, and logs at most once per interval how many errors it
// saw. Pause lets the data path ask for the same backoff when it runs out
// of something itself (ephemeral ports, say).
//
//	ln, err := listen.Open("127.0.0.1:9090", logger)
//	go ln.Serve(func(fd int, client netip.AddrPort) { ... })
//	...
//	ln.Close()
package listen

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/dial"
	"github.com/pierproxy/pier/internal/sockopt"
)

// Backoff bounds for accept errors that persist.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
	// logEvery rate-limits the log line about accept errors.
	logEvery = 5 * time.Second
)

// A Listener is one listening TCP socket and its accept loop.
type Listener struct {
	log  *slog.Logger
	addr netip.AddrPort
	file *os.File
	raw  syscall.RawConn

	closeOnce sync.Once
	closed    chan struct{}
	served    chan struct{} // closed when Serve returns
	pauseTill atomic.Int64  // unix nanos before which no accept happens
}

// Open listens on addr ("host:port"; an empty host listens on every
// address, IPv4 and IPv6). The listening socket carries pier's socket
// options so that every accepted socket inherits them.
func Open(addr string, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	tl := ln.(*net.TCPListener)
	local := tl.Addr().(*net.TCPAddr).AddrPort()
	// The copy File makes is a pollable descriptor whose raw Read works,
	// unlike a net.Listener's: the accept loop calls accept4 itself so
	// that accepted sockets never join Go's poller.
	file, err := tl.File()
	tl.Close()
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	raw, err := file.SyscallConn()
	if err == nil {
		err = raw.Control(func(fd uintptr) { err = sockopt.Tune(int(fd)) })
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return &Listener{
		log:    log.With("listen", local.String()),
		addr:   netip.AddrPortFrom(local.Addr().Unmap(), local.Port()),
		file:   file,
		raw:    raw,
		closed: make(chan struct{}),
		served: make(chan struct{}),
	}, nil
}

// Addr returns the address the socket is bound to (with the real port when
// the configured one was 0).
func (l *Listener) Addr() netip.AddrPort { return l.addr }

// Pause stops accepting for d, unless a longer pause is already on.
func (l *Listener) Pause(d time.Duration) {
	till := time.Now().Add(d).UnixNano()
	for {
		cur := l.pauseTill.Load()
		if cur >= till || l.pauseTill.CompareAndSwap(cur, till) {
			return
		}
	}
}

// Close stops the accept loop and closes the listening socket, and waits
// for Serve to return if it is running. Clients not yet accepted are
// refused by the kernel.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.file.Close()
	})
	return err
}

// Done is closed when Serve has returned.
func (l *Listener) Done() <-chan struct{} { return l.served }

// Serve accepts clients until Close, calling handle for each on the accept
// loop's goroutine; handle owns fd. Serve returns nil after Close, or the
// error that made accepting impossible.
func (l *Listener) Serve(handle func(fd int, client netip.AddrPort)) error {
	defer close(l.served)
	backoff := time.Duration(0)
	var failures int
	var lastLog time.Time
	for {
		if !l.waitPause() {
			return nil
		}
		var nfd int
		var sa unix.Sockaddr
		var aerr error
		err := l.raw.Read(func(fd uintptr) bool {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN
		})
		if err != nil {
			select {
			case <-l.closed:
				return nil
			default:
				return fmt.Errorf("listen %s: %w", l.addr, err)
			}
		}
		switch {
		case aerr == nil:
			backoff = 0
			handle(nfd, dial.AddrPort(sa))
			continue
		case aerr == unix.ECONNABORTED || aerr == unix.EINTR || aerr == unix.EPROTO:
			continue // the client gave up first; nothing of ours is wrong
		case aerr == unix.EMFILE || aerr == unix.ENFILE || aerr == unix.ENOBUFS || aerr == unix.ENOMEM:
			failures++
			if now := time.Now(); now.Sub(lastLog) >= logEvery {
				l.log.Warn("accept failing, backing off", "error", aerr, "failures", failures)
				lastLog, failures = now, 0
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			l.Pause(backoff)
		default:
			return fmt.Errorf("listen %s: accept: %w", l.addr, aerr)
		}
	}
}

// waitPause sleeps out a pause. It reports false if the listener closed.
func (l *Listener) waitPause() bool {
	for {
		d := time.Until(time.Unix(0, l.pauseTill.Load()))
		if d <= 0 {
			select {
			case <-l.closed:
				return false
			default:
				return true
			}
		}
		t := time.NewTimer(d)
		select {
		case <-l.closed:
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
