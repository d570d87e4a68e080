// Package pool chooses the upstream for each new session from a route's
// members. Members named by an IP literal are dialed as they are; members
// named by a host name are resolved per session by the relay.
//
//	p, _ := pool.New([]string{"10.0.0.1:25", "mail2.internal:25"})
//	m := p.Pick()
package pool

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
)

// A Member is one upstream a route may send sessions to.
type Member struct {
	// Address is the member as configured: host:port.
	Address string
	// Target is Address parsed when its host is an IP literal, so it is
	// dialed without a lookup. Otherwise it is not valid.
	Target netip.AddrPort
}

// A Pool hands out its members in turn. It is safe for concurrent use.
type Pool struct {
	members []Member
	next    atomic.Uint64
}

// New returns a pool of the given host:port addresses, in that order.
func New(addrs []string) (*Pool, error) {
	if len(addrs) == 0 {
		return nil, errors.New("pool: no members")
	}
	p := &Pool{members: make([]Member, len(addrs))}
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("pool: member %q: %w", a, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("pool: member %q: bad port", a)
		}
		p.members[i].Address = a
		if ip, err := netip.ParseAddr(host); err == nil {
			n, _ := strconv.ParseUint(port, 10, 16)
			p.members[i].Target = netip.AddrPortFrom(ip.Unmap(), uint16(n))
		}
	}
	return p, nil
}

// Members returns the pool's members; the caller must not modify them.
func (p *Pool) Members() []Member { return p.members }

// Pick returns the member for a new session: round robin over all members.
func (p *Pool) Pick() *Member {
	n := p.next.Add(1) - 1
	return &p.members[n%uint64(len(p.members))]
}
