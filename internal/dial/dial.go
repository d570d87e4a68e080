// Package dial opens pier's connections to upstreams without blocking: Start
// creates the socket and begins the TCP handshake, the relay's event loop
// waits for the socket to become writable, and Result says whether the
// handshake succeeded. Names are the pool's to resolve (package discover).
//
// dial also decides whose fault a failure is, for every stage that opens a
// socket (accept included): IsLocal separates pier's own shortages
// (ephemeral ports, descriptors, memory) from an upstream that refused or
// did not answer, so that the caller backs off instead of blaming the
// member, and Reason names a failed dial's end in the access log's words.
// No other package keeps its own list of such errors.
package dial

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/nonblock"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/sockopt"
)

// ErrTimeout is a try that ran out of time before the upstream answered.
var ErrTimeout = errors.New("dial: connect timed out")

// Start opens a non-blocking TCP socket with TCP_NODELAY and starts
// connecting it to addr (keepalive comes later, if the session lives long
// enough: see package sockopt). The caller owns fd and must close it; the
// connection is established when fd becomes writable and Result returns nil.
func Start(addr netip.AddrPort) (fd int, err error) {
	var rsa unix.RawSockaddrAny
	family, n := rawSockaddr(addr, &rsa)
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("dial: socket: %w", err)
	}
	if err := sockopt.NoDelay(fd); err != nil {
		nonblock.Close(fd)
		return -1, fmt.Errorf("dial: setsockopt: %w", err)
	}
	switch err := nonblock.Connect(fd, unsafe.Pointer(&rsa), n); err {
	case nil, unix.EINPROGRESS, unix.EINTR:
		return fd, nil
	default:
		nonblock.Close(fd)
		return -1, fmt.Errorf("dial %s: %w", addr, err)
	}
}

// Result reports how the handshake started by Start ended. Call it once fd
// has become writable (or reported an error).
func Result(fd int, addr netip.AddrPort) error {
	errno, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("dial %s: getsockopt: %w", addr, err)
	}
	if errno != 0 {
		return fmt.Errorf("dial %s: %w", addr, unix.Errno(errno))
	}
	return nil
}

// IsLocal reports whether err is pier's own shortage rather than the
// upstream's fault: out of ephemeral ports, descriptors or memory. Such a
// failure should slow pier's accepting down and never mark a member down.
func IsLocal(err error) bool {
	for _, e := range [...]error{unix.EADDRNOTAVAIL, unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Reason is how a session whose dial failed with err ends: LocalError for
// pier's own shortage (IsLocal), ConnectTimeout for ErrTimeout, and
// ConnectFailed for an upstream that refused or was unreachable.
func Reason(err error) session.Reason {
	switch {
	case IsLocal(err):
		return session.LocalError
	case errors.Is(err, ErrTimeout):
		return session.ConnectTimeout
	}
	return session.ConnectFailed
}

// rawSockaddr writes addr into rsa as connect(2) takes it and returns
// its family and length.
func rawSockaddr(addr netip.AddrPort, rsa *unix.RawSockaddrAny) (family int, n uint32) {
	ip := addr.Addr().Unmap()
	port := addr.Port()
	if ip.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		sa.Family = unix.AF_INET
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa.Addr = ip.As4()
		return unix.AF_INET, unix.SizeofSockaddrInet4
	}
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
	sa.Family = unix.AF_INET6
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	sa.Addr = ip.As16()
	if z := ip.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	return unix.AF_INET6, unix.SizeofSockaddrInet6
}

// Accept takes a waiting connection from the listening socket fd, non-
// blocking and close-on-exec, with the client's address. It is accept4(2)
// itself: unix.Accept4 also asks every IPv4 socket its protocol (for
// L2TP), a system call per client that pier does not need.
func Accept(fd int) (nfd int, client netip.AddrPort, err error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	nfd, err = nonblock.Accept4(fd, &rsa, &n, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, netip.AddrPort{}, err
	}
	return nfd, rawAddrPort(&rsa), nil
}

// LocalAddr returns the local address of socket fd: getsockname(2), with
// no further system call (see Accept).
func LocalAddr(fd int) (netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	_, _, errno := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return netip.AddrPort{}, errno
	}
	return rawAddrPort(&rsa), nil
}

// rawAddrPort reads an IPv4 or IPv6 socket address as the kernel wrote
// it; the port is in network byte order.
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}
