package config

import (
	"errors"
	"fmt"
	"net/netip"

	yaml "go.yaml.in/yaml/v4"
)

// listenAddr is a parsed listen address: what it would bind.
type listenAddr struct {
	// ips are the addresses bound; nil means every address (a wildcard).
	ips  []netip.Addr
	port uint16
}

var loopbacks = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}

// parseListen checks a listen address: host:port, the host empty, an IP
// literal or "localhost", the port 0 to 65535.
func parseListen(s string) (listenAddr, error) {
	if isDigits(s) {
		return listenAddr{}, fmt.Errorf("missing host: for every address on port %s, write \":%s\"", s, s)
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return listenAddr{}, err
	}
	n, err := parsePort(port, 0)
	if err != nil {
		return listenAddr{}, err
	}
	if host == "" {
		return listenAddr{port: n}, nil
	}
	if host == "localhost" {
		return listenAddr{ips: loopbacks, port: n}, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return listenAddr{}, errors.New("the host must be empty (every address), an IP address or localhost")
	}
	if ip = ip.Unmap(); ip.IsUnspecified() {
		return listenAddr{port: n}, nil
	}
	return listenAddr{ips: []netip.Addr{ip}, port: n}, nil
}

// A claim is a listen address some route has taken.
type claim struct {
	route int    // index in the route list
	name  string // the route's name, if it has a valid one
	addr  string // as written
	line  int
}

// binds holds the listen addresses claimed so far, by port, so that each
// new one is checked without comparing every pair.
type binds map[uint16]*portClaims

type portClaims struct {
	first *claim // the first address claimed on the port
	wild  *claim // the first wildcard claimed on the port
	byIP  map[netip.Addr]*claim
}

// take records c, which binds a, and returns an earlier claim it collides
// with, or nil. Linux refuses a second bind of one address and port, and a
// wildcard on a port collides with every other address on that port. Port
// 0 never collides: each bind gets a free port of its own.
func (b binds) take(a listenAddr, c *claim) *claim {
	if a.port == 0 {
		return nil
	}
	pc := b[a.port]
	if pc == nil {
		pc = &portClaims{first: c, byIP: make(map[netip.Addr]*claim)}
		b[a.port] = pc
	}
	var hit *claim
	if a.ips == nil {
		if pc.first != c {
			hit = pc.first
		}
		if pc.wild == nil {
			pc.wild = c
		}
	} else {
		hit = pc.wild
	}
	for _, ip := range a.ips {
		if prev := pc.byIP[ip]; prev == nil {
			pc.byIP[ip] = c
		} else if hit == nil {
			hit = prev
		}
	}
	return hit
}

// shareHint ends a collision between two routes' addresses: routes with
// a match may share one, when they write it alike.
const shareHint = "; write the same address in both routes, each with a match, to share it"

// udpShareHint ends a collision between two udp routes' addresses: they
// have no match (a datagram shows nothing to choose a route by). A tcp
// route's address never collides with a udp route's: see claimsUDP.
const udpShareHint = "; udp routes cannot share an address"

// claimListens takes the valid addresses of the listen list n for route i,
// reporting each that collides with an address taken before, by this
// route or an earlier one. Invalid addresses were reported when the list
// was parsed. A route with a match (shared) joins the earlier routes with
// a match that wrote the address alike; out is its index among the routes
// decoded, for checkShared.
func (p *parser) claimListens(b binds, i int, name string, n *yaml.Node, shared bool, out int, hint string) {
	if n == nil {
		return
	}
	items := []*yaml.Node{n} // one address alone
	if list := p.resolve(n); list.Kind == yaml.SequenceNode {
		items = list.Content
	}
	for _, item := range items {
		if p.stop {
			return
		}
		s := p.resolve(item)
		if s.Kind != yaml.ScalarNode || s.Tag == "!!null" {
			continue
		}
		a, err := parseListen(s.Value)
		if err != nil {
			continue
		}
		if shared {
			if g := p.shared[s.Value]; len(g) > 0 && g[len(g)-1].route != i {
				// The group's first claim stands for the one listener.
				p.shared[s.Value] = append(g, sharer{route: i, out: out, item: item})
				continue
			}
		}
		// The item's own position: the same alias may be listed twice.
		at := pos(item)
		prev := b.take(a, &claim{route: i, name: name, addr: s.Value, line: at.Line})
		switch {
		case prev == nil:
			if shared {
				if p.shared == nil {
					p.shared = make(map[string][]sharer)
				}
				p.shared[s.Value] = append(p.shared[s.Value], sharer{route: i, out: out, item: item})
			}
		case p.places != nil:
			p.claimError(at, s.Value, i, prev, hint)
		case prev.route == i && prev.addr == s.Value:
			p.errAt(at.Line, at.Col, "listen: %s is listed twice in this route (first at line %d)", quote(s.Value), prev.line)
		case prev.route == i:
			p.errAt(at.Line, at.Col, "listen: %s overlaps %s (line %d) in this route", quote(s.Value), quote(prev.addr), prev.line)
		case prev.name != "":
			p.errAt(at.Line, at.Col, "listen: %s overlaps %s of route %s (line %d)%s", quote(s.Value), quote(prev.addr), quote(prev.name), prev.line, hint)
		default:
			p.errAt(at.Line, at.Col, "listen: %s overlaps %s of an earlier route (line %d)%s", quote(s.Value), quote(prev.addr), prev.line, hint)
		}
	}
}

// claimError reports a collision in a configuration with places (built in
// code or from a command line), whose node lines are place indexes: it
// names the earlier route by its place rather than by a line.
func (p *parser) claimError(at Pos, addr string, i int, prev *claim, hint string) {
	switch {
	case prev.route == i && prev.addr == addr:
		p.errAt(at.Line, at.Col, "listen: %s is listed twice in this route", quote(addr))
	case prev.route == i:
		p.errAt(at.Line, at.Col, "listen: %s overlaps %s in this route", quote(addr), quote(prev.addr))
	case prev.name != "":
		p.errAt(at.Line, at.Col, "listen: %s overlaps %s of route %s%s", quote(addr), quote(prev.addr), quote(prev.name), hint)
	default:
		p.errAt(at.Line, at.Col, "listen: %s overlaps %s of routes[%d]%s", quote(addr), quote(prev.addr), prev.route, hint)
	}
}
