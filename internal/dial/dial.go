// Package dial opens pier's connections to upstreams without blocking: Start
// creates the socket and begins the TCP handshake, the relay's event loop
// waits for the socket to become writable, and Result says whether the
// handshake succeeded. Names are the pool's to resolve (package discover).
//
// dial also decides whose fault a failure is: IsLocal separates pier's own
// shortages (ephemeral ports, descriptors, memory) from an upstream that
// refused or did not answer, so that the caller backs off instead of
// blaming the member.
package dial

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/sockopt"
)

// Start opens a non-blocking TCP socket with pier's socket options and
// starts connecting it to addr. The caller owns fd and must close it; the
// connection is established when fd becomes writable and Result returns nil.
func Start(addr netip.AddrPort) (fd int, err error) {
	family, sa := sockaddr(addr)
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("dial: socket: %w", err)
	}
	if err := sockopt.Tune(fd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("dial: setsockopt: %w", err)
	}
	switch err := unix.Connect(fd, sa); err {
	case nil, unix.EINPROGRESS, unix.EINTR:
		return fd, nil
	default:
		unix.Close(fd)
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

func sockaddr(addr netip.AddrPort) (int, unix.Sockaddr) {
	ip := addr.Addr().Unmap()
	if ip.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	if z := ip.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return unix.AF_INET6, sa
}

// AddrPort converts a socket address from accept or getsockname.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
