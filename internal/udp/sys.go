package udp

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of a socket's goroutine. golang.org/x/sys/unix v0.50.0
// has the Mmsghdr type but no Recvmmsg or Sendmmsg, so they are made here,
// with syscall.RawSyscall6 like package nonblock's: every socket is
// non-blocking, each call returns at once, and skipping Go's scheduler
// bookkeeping is what nonblock measured to pay. None retries on EINTR
// itself; the callers below do.

// recvmmsg is recvmmsg(2) with no timeout: the datagrams queued now, at
// most len(msgs).
func recvmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	for {
		r, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(msgs))),
			uintptr(len(msgs)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// sendmmsg is sendmmsg(2): it returns how many of msgs went out, or the
// error of the first when none did.
func sendmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	for {
		r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(msgs))),
			uintptr(len(msgs)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// send is send(2) on a connected socket, never blocking.
func send(fd int, b []byte) error {
	for {
		_, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))),
			uintptr(len(b)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// connect is connect(2) of a UDP socket: it only sets the peer, so it
// returns at once.
func connect(fd int, sa *sockaddr) error {
	for {
		_, _, e := syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.b)), uintptr(sa.n))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// A sockaddr is a raw IPv4 or IPv6 socket address as the kernel reads and
// writes it: 28 bytes hold a sockaddr_in6, and a sockaddr_in fits.
type sockaddr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32
}

// makeSockaddr returns a's raw address for a socket of family; an IPv4
// address on an IPv6 socket is written IPv4-mapped.
func makeSockaddr(a netip.AddrPort, family int) sockaddr {
	var sa sockaddr
	ip := a.Addr()
	if family == unix.AF_INET {
		raw := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.b))
		raw.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], a.Port())
		raw.Addr = ip.Unmap().As4()
		sa.n = unix.SizeofSockaddrInet4
		return sa
	}
	raw := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.b))
	raw.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], a.Port())
	raw.Addr = ip.As16()
	sa.n = unix.SizeofSockaddrInet6
	return sa
}

// addrPort reads a raw socket address as the kernel wrote it; zero for a
// family that is neither IPv4 nor IPv6. An IPv4-mapped IPv6 address stays
// mapped: it is the flow table's key as received.
func addrPort(b *[unix.SizeofSockaddrInet6]byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(b[2:4])
	switch *(*uint16)(unsafe.Pointer(&b[0])) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port)
	}
	return netip.AddrPort{}
}

// localAddr is a socket's bound address.
func localAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, unix.EAFNOSUPPORT
}

// gsoSupported reports whether the kernel knows UDP_SEGMENT (GSO) and
// UDP_GRO, asked of a throwaway socket.
func gsoSupported() (gso, gro bool) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, false
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	gso = err == nil
	_, err = unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO)
	gro = err == nil
	return gso, gro
}
