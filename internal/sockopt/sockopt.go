// Package sockopt sets the socket options pier wants on both legs of every
// session: TCP_NODELAY, because a proxy must not add Nagle's delay to small
// writes its peers already chose to send, and TCP keepalive, so that a peer
// that vanishes without a FIN is noticed and its session ends.
//
// Listeners get the options once; Linux copies them to every accepted socket,
// so accepting costs no extra system call. Dialed sockets get them before
// connect.
package sockopt

import (
	"time"

	"golang.org/x/sys/unix"
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
	opts := [...]struct{ level, name, value int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(KeepaliveIdle / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(KeepaliveInterval / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, KeepaliveCount},
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.value); err != nil {
			return err
		}
	}
	return nil
}
