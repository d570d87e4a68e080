// Package sockopt sets the socket options pier wants on both legs of every
// session: TCP_NODELAY, because a proxy must not add Nagle's delay to small
// writes its peers already chose to send, and TCP keepalive, so that a peer
// that vanishes without a FIN is noticed and its session ends.
//
// Listeners get both once; Linux copies them to every accepted socket, so
// accepting costs no extra system call. A dialed socket gets TCP_NODELAY
// before connect and keepalive only once its session has lived as long as
// the first probe's delay (the relay loop's timer does it): a session
// shorter than that could never send a probe, and the four setsockopt
// calls would be a sixth of what a short connection costs in system
// calls.
package sockopt

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/nonblock"
)

// Keepalive timing: the first probe after 15s of silence, then every 15s,
// giving up after 4 unanswered probes: a dead peer is noticed within 75s.
const (
	KeepaliveIdle     = 15 * time.Second
	KeepaliveInterval = 15 * time.Second
	KeepaliveCount    = 4
)

// Tune sets TCP_NODELAY and keepalive on fd.
func Tune(fd int) error {
	if err := NoDelay(fd); err != nil {
		return err
	}
	return Keepalive(fd)
}

// NoDelay sets TCP_NODELAY on fd.
func NoDelay(fd int) error {
	return nonblock.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
}

// Keepalive turns keepalive on for fd, with pier's timing.
func Keepalive(fd int) error {
	opts := [...]struct{ level, name, value int }{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(KeepaliveIdle / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(KeepaliveInterval / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, KeepaliveCount},
	}
	for _, o := range opts {
		if err := nonblock.SetsockoptInt(fd, o.level, o.name, o.value); err != nil {
			return err
		}
	}
	return nil
}
