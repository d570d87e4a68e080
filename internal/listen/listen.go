// Package listen opens pier's listening sockets and accepts on them. The
// relay loops watch each listening socket and call Accept when clients are
// waiting, so an accepted socket never joins Go's poller: the loop that
// accepted it owns it. Accepted sockets come out non-blocking and, copied
// by Linux from the listening socket, with pier's socket options.
//
// Accept errors never spin: when the process is out of descriptors or
// memory (what dial.IsLocal calls pier's own shortage), or accept fails
// unexpectedly, Accept says how long to stop
// accepting, from 5ms doubling up to 1s while the errors go on, and logs
// at most once per 5s how many it saw. Backoff lets the data path ask for
// the same when it runs out of something itself (ephemeral ports, say).
//
//	ln, err := listen.Open("127.0.0.1:9090", logger)
//	...
//	fd, client, pause, err := ln.Accept() // when ln.Fd() is readable
//	...
//	ln.Close()
package listen

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
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

// A Listener is one listening TCP socket.
type Listener struct {
	log  *slog.Logger
	addr netip.AddrPort
	fd   int

	closeOnce sync.Once

	mu       sync.Mutex // guards the backoff state, shared by the loops
	backoff  time.Duration
	failures int
	lastLog  time.Time
}

// Open listens on addr ("host:port"; an empty host listens on every
// address, IPv4 and IPv6). The listening socket carries pier's socket
// options so that every accepted socket inherits them. A port below 1024
// without the privilege, or a port another process holds, fails with an
// error that says what to do.
func Open(addr string, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, bindError(addr, err)
	}
	tl := ln.(*net.TCPListener)
	local := tl.Addr().(*net.TCPAddr).AddrPort()
	// net.Listen resolves the address and sets up dual-stack sockets. A
	// duplicate of its descriptor is then ours alone: closing the original
	// takes it out of Go's poller, and the relay loops watch the copy.
	raw, err := tl.SyscallConn()
	fd := -1
	if err == nil {
		cerr := raw.Control(func(orig uintptr) {
			fd, err = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0)
		})
		if err == nil {
			err = cerr
		}
	}
	tl.Close()
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if err := sockopt.Tune(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return &Listener{
		log:  log.With("listen", local.String()),
		addr: netip.AddrPortFrom(local.Addr().Unmap(), local.Port()),
		fd:   fd,
	}, nil
}

// bindError says what to do about the two bind failures a user can fix
// (a privileged port, a port another process holds), and wraps the rest.
// The errno stays in the chain for errors.Is.
func bindError(addr string, err error) error {
	_, port, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, unix.EACCES):
		if p, perr := strconv.Atoi(port); perr == nil && p > 0 && p < 1024 {
			return fmt.Errorf("listen %s: %w: ports below 1024 need root or CAP_NET_BIND_SERVICE "+
				"(setcap cap_net_bind_service=+ep $(which pier))", addr, unix.EACCES)
		}
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("listen %s: %w: another process holds the port; see which with ss -ltnp 'sport = :%s'",
			addr, unix.EADDRINUSE, port)
	}
	return fmt.Errorf("listen: %w", err)
}

// Addr returns the address the socket is bound to (with the real port when
// the configured one was 0).
func (l *Listener) Addr() netip.AddrPort { return l.addr }

// Fd returns the listening descriptor, for the relay loops to watch.
func (l *Listener) Fd() int { return l.fd }

// Close closes the listening socket; clients not yet accepted are refused
// by the kernel. Callers stop watching Fd first.
func (l *Listener) Close() error {
	var err error = unix.EBADF
	l.closeOnce.Do(func() { err = unix.Close(l.fd) })
	return err
}

// Accept takes one waiting client. It returns unix.EAGAIN when none is
// waiting. When accepting fails for lack of resources it returns the error
// and how long the caller should stop accepting; other errors that are the
// client's (it gave up first) come back with a zero pause, to be ignored.
func (l *Listener) Accept() (fd int, client netip.AddrPort, pause time.Duration, err error) {
	nfd, client, err := dial.Accept(l.fd)
	switch err {
	case nil:
		l.mu.Lock()
		l.backoff = 0
		l.mu.Unlock()
		return nfd, client, 0, nil
	case unix.EAGAIN, unix.ECONNABORTED, unix.EINTR, unix.EPROTO:
		return -1, netip.AddrPort{}, 0, err
	default:
		// Out of descriptors or memory (dial.IsLocal says which errors
		// those are), or unexpected: either way, say so and do not spin.
		return -1, netip.AddrPort{}, l.Backoff(err), err
	}
}

// Backoff records a failure to serve a client for lack of pier's own
// resources and returns how long to stop accepting: 5ms at first, doubling
// while failures go on, up to 1s.
func (l *Listener) Backoff(err error) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	if now := time.Now(); now.Sub(l.lastLog) >= logEvery {
		l.log.Warn("accept failing, backing off", "error", err, "failures", l.failures)
		l.lastLog, l.failures = now, 0
	}
	l.backoff = min(max(2*l.backoff, minBackoff), maxBackoff)
	return l.backoff
}
