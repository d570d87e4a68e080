package discover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// System returns the machine's resolver, net.DefaultResolver: /etc/hosts,
// then the servers of /etc/resolv.conf with its search list. It reports no
// TTLs (always 0), so a Watcher on it asks at its interval.
func System() Resolver { return system{net.DefaultResolver} }

// system is a Resolver on a net.Resolver; tests give it one whose Dial
// reaches a dnstest server.
type system struct{ r *net.Resolver }

func (s system) Host(ctx context.Context, host string, port uint16) ([]Endpoint, time.Duration, error) {
	if eps, ok := literal(host, port); ok {
		return eps, 0, nil
	}
	addrs, err := s.r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, 0, systemError(host, "A or AAAA", err)
	}
	eps := make([]Endpoint, 0, len(addrs))
	for _, a := range addrs {
		eps = append(eps, Endpoint{Addr: netip.AddrPortFrom(a.Unmap(), port), Target: trimDot(host)})
	}
	return sortEndpoints(eps), 0, nil
}

func (s system) SRV(ctx context.Context, name string) ([]Endpoint, time.Duration, error) {
	_, recs, err := s.r.LookupSRV(ctx, "", "", name)
	if err != nil {
		return nil, 0, systemError(name, "SRV", err)
	}
	var eps []Endpoint
	for _, rec := range recs {
		if rec.Target == "." { // "service not available here", RFC 2782
			continue
		}
		hosts, _, err := s.Host(ctx, rec.Target, rec.Port)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		for _, h := range hosts {
			h.Weight, h.Priority, h.Target = int(rec.Weight), int(rec.Priority), trimDot(rec.Target)
			eps = append(eps, h)
		}
	}
	if len(eps) == 0 {
		return nil, 0, &notFoundError{name: name, types: "SRV target address"}
	}
	return sortEndpoints(eps), 0, nil
}

// systemError turns a net.Resolver error into this package's: a name that
// does not exist, or has no records, is ErrNotFound.
func systemError(name, types string, err error) error {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return &notFoundError{name: name, types: types}
	}
	return fmt.Errorf("discover: lookup %s %s: %w", name, types, err)
}
