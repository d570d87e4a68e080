// Package discover turns the names of a pool's members into addresses and
// keeps them current: a member configured as "host:port" expands to every
// A and AAAA address of host, one configured as an SRV name to the
// addresses of its targets with their ports, weights and priorities. The
// pool dials what discover last found; discover imports only the standard
// library and golang.org/x/net/dns/dnsmessage.
//
// A Resolver does one lookup. System uses the machine's resolver
// (/etc/hosts, resolv.conf) and knows no TTLs; Servers asks the given DNS
// servers itself and reports the TTLs, so a Watcher can follow them.
//
//	r := discover.Servers([]string{"10.0.0.53:53"})
//	w := discover.Watch(r, discover.Source{SRV: "_smtp._tcp.mail.internal"},
//		30*time.Second, 5*time.Second, log, func(eps []discover.Endpoint) {
//			members.Store(&eps) // on the watcher's goroutine
//		})
//	defer w.Stop()
package discover

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// An Endpoint is one address a member name expands to.
type Endpoint struct {
	Addr     netip.AddrPort
	Weight   int    // from SRV (0 if the record says 0); 0 for A/AAAA
	Priority int    // from SRV; 0 for A/AAAA
	Target   string // the SRV target or the host, for logs
}

// A Resolver looks names up. Its methods are safe for concurrent use.
//
// Lookups return their endpoints sorted by Priority, then Addr, without
// duplicates, so two results compare with slices.Equal. A TTL of 0 means
// unknown; a record whose TTL is 0 ("do not cache") also reads as unknown,
// so a Watcher falls back to its interval rather than asking every second.
type Resolver interface {
	// Host returns every A and AAAA address of host with port, and the
	// smallest TTL among the answers. An IP literal returns itself, TTL 0,
	// without a query.
	Host(ctx context.Context, host string, port uint16) ([]Endpoint, time.Duration, error)
	// SRV returns the targets of an SRV name with their ports, weights and
	// priorities, each target expanded to its A and AAAA addresses, and the
	// smallest TTL. A target that does not exist is left out; the lookup
	// fails if none is left, or if a target's lookup fails otherwise.
	SRV(ctx context.Context, name string) ([]Endpoint, time.Duration, error)
}

// ErrNotFound reports that a name does not exist (NXDOMAIN) or has no
// records of the types asked for. Asking again soon rarely helps: check
// the name in the configuration.
var ErrNotFound = errors.New("discover: not found")

// ErrServerFailure reports that every server asked answered with an error
// code (SERVFAIL, REFUSED...). It is usually passing: ask again later.
var ErrServerFailure = errors.New("discover: server failure")

// ErrBadReply reports a reply that cannot be used: malformed, or a CNAME
// chain longer than 8 or looping. Check the DNS server.
var ErrBadReply = errors.New("discover: bad reply")

// notFoundError is an ErrNotFound that says why: NXDOMAIN or no records.
type notFoundError struct {
	name     string
	types    string // "A", "SRV", "A or AAAA"...
	nxdomain bool
}

func (e *notFoundError) Error() string {
	if e.nxdomain {
		return "discover: not found: " + e.name + ": NXDOMAIN"
	}
	return "discover: not found: " + e.name + ": no " + e.types + " records"
}

func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

// A Source is what one configured member names: a host and port (member
// "host:port"), or an SRV name. SRV, when set, wins.
type Source struct {
	Host string
	Port uint16
	SRV  string
}

// String returns the source as configured, for logs.
func (s Source) String() string {
	if s.SRV != "" {
		return s.SRV
	}
	return net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port)))
}

// Lookup looks src up with r: SRV when src names an SRV record, else Host.
func Lookup(ctx context.Context, r Resolver, src Source) ([]Endpoint, time.Duration, error) {
	switch {
	case src.SRV != "":
		return r.SRV(ctx, src.SRV)
	case src.Host != "":
		return r.Host(ctx, src.Host, src.Port)
	}
	return nil, 0, errors.New("discover: empty source: neither host nor SRV name")
}

// literal returns the endpoint of an IP-literal host, which needs no lookup.
func literal(host string, port uint16) ([]Endpoint, bool) {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, false
	}
	return []Endpoint{{Addr: netip.AddrPortFrom(a.Unmap(), port), Target: host}}, true
}

// sortEndpoints puts eps in the order Resolver promises and drops
// duplicates. Weight and Target break ties only to make the order total.
func sortEndpoints(eps []Endpoint) []Endpoint {
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(
			cmp.Compare(a.Priority, b.Priority),
			a.Addr.Compare(b.Addr),
			cmp.Compare(a.Weight, b.Weight),
			strings.Compare(a.Target, b.Target),
		)
	})
	return slices.Compact(eps)
}

// minTTL is the smaller of two TTLs, where 0 is unknown and loses.
func minTTL(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// trimDot drops a name's final dot, for Endpoint.Target.
func trimDot(name string) string {
	if len(name) > 1 {
		return strings.TrimSuffix(name, ".")
	}
	return name
}
