package discover

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// maxAttempt bounds how long one server gets for one query when the
// context allows more: a recursive server answers in milliseconds or
// fails, and a silent one must leave time for the next.
const maxAttempt = 3 * time.Second

// Servers returns a Resolver that asks the DNS servers at addrs itself,
// "ip:port" each (a bare IP means port 53), and reports TTLs.
//
// Each query goes to the servers in order and stops at the first that
// answers with records, NXDOMAIN or no records; a server that fails
// (SERVFAIL, REFUSED...), answers badly or is silent passes the query on.
// A server gets an even share of what is left of the context, at most 3s.
// Queries go over UDP with EDNS0 (4096 bytes), again over TCP when the
// reply is truncated; replies must carry the query's random id and its
// question, and other replies are ignored. A CNAME chain in an answer is
// followed up to 8 links. Names are fully qualified: no search list, no
// /etc/hosts.
func Servers(addrs []string) Resolver {
	c := &client{servers: make([]string, len(addrs))}
	for i, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			a = netip.AddrPortFrom(ip, 53).String()
		}
		c.servers[i] = a
	}
	return c
}

type client struct {
	servers []string
}

// An answer is the records a server gave for one name and type.
type answer struct {
	recs  []record // at the end of the CNAME chain
	ttl   time.Duration
	extra []record // the Additional section
}

func (c *client) Host(ctx context.Context, host string, port uint16) ([]Endpoint, time.Duration, error) {
	if eps, ok := literal(host, port); ok {
		return eps, 0, nil
	}
	addrs, ttl, err := c.addrs(ctx, host)
	if err != nil {
		return nil, 0, err
	}
	eps := make([]Endpoint, 0, len(addrs))
	for _, a := range addrs {
		eps = append(eps, Endpoint{Addr: netip.AddrPortFrom(a, port), Target: trimDot(host)})
	}
	return sortEndpoints(eps), ttl, nil
}

// addrs asks for host's A and AAAA records at once and waits for both.
// One family failing is fine while the other answers.
func (c *client) addrs(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	name := canonical(host)
	var v4, v6 answer
	var err4, err6 error
	var wg sync.WaitGroup
	wg.Go(func() { v4, err4 = c.lookup(ctx, name, dnsmessage.TypeA) })
	v6, err6 = c.lookup(ctx, name, dnsmessage.TypeAAAA)
	wg.Wait()
	if err4 != nil && err6 != nil {
		return nil, 0, hostError(host, err4, err6)
	}
	addrs := make([]netip.Addr, 0, len(v4.recs)+len(v6.recs))
	for _, r := range v4.recs {
		addrs = append(addrs, r.addr)
	}
	for _, r := range v6.recs {
		addrs = append(addrs, r.addr.Unmap())
	}
	return addrs, minTTL(v4.ttl, v6.ttl), nil
}

// hostError is the error of a host whose A and AAAA lookups both failed:
// not found if both say so, else the failure that may pass.
func hostError(host string, err4, err6 error) error {
	var nf4, nf6 *notFoundError
	switch {
	case errors.As(err4, &nf4) && errors.As(err6, &nf6):
		return &notFoundError{name: host, types: "A or AAAA", nxdomain: nf4.nxdomain || nf6.nxdomain}
	case nf4 != nil:
		return err6
	}
	return err4
}

func (c *client) SRV(ctx context.Context, name string) ([]Endpoint, time.Duration, error) {
	srv, err := c.lookup(ctx, canonical(name), dnsmessage.TypeSRV)
	if err != nil {
		return nil, 0, err
	}
	ttl := srv.ttl
	type target struct {
		addrs []netip.Addr
		err   error
	}
	targets := make(map[string]target) // a target may serve several ports
	var eps []Endpoint
	for _, rec := range srv.recs {
		if rec.target == "." { // "service not available here", RFC 2782
			continue
		}
		t, ok := targets[rec.target]
		if !ok {
			var tttl time.Duration
			t.addrs, tttl = additional(srv.extra, rec.target)
			if len(t.addrs) == 0 {
				t.addrs, tttl, t.err = c.addrs(ctx, rec.target)
			}
			ttl = minTTL(ttl, tttl)
			targets[rec.target] = t
		}
		if errors.Is(t.err, ErrNotFound) {
			continue
		}
		if t.err != nil {
			return nil, 0, t.err
		}
		for _, a := range t.addrs {
			eps = append(eps, Endpoint{
				Addr:     netip.AddrPortFrom(a, rec.port),
				Weight:   int(rec.weight),
				Priority: int(rec.priority),
				Target:   trimDot(rec.target),
			})
		}
	}
	if len(eps) == 0 {
		return nil, 0, &notFoundError{name: name, types: "SRV target address"}
	}
	return sortEndpoints(eps), ttl, nil
}

// additional returns target's addresses from an SRV reply's Additional
// section, which servers may fill (RFC 2782) but need not.
func additional(extra []record, target string) ([]netip.Addr, time.Duration) {
	var addrs []netip.Addr
	var ttl time.Duration
	for _, r := range extra {
		if r.name == target && (r.typ == dnsmessage.TypeA || r.typ == dnsmessage.TypeAAAA) {
			addrs = append(addrs, r.addr.Unmap())
			ttl = minTTL(ttl, seconds(r.ttl))
		}
	}
	return addrs, ttl
}

// lookup asks the servers in turn for name's records of type typ.
func (c *client) lookup(ctx context.Context, name string, typ dnsmessage.Type) (answer, error) {
	qname, err := dnsmessage.NewName(name)
	if err != nil {
		return answer{}, fmt.Errorf("discover: lookup %s: %w", name, err)
	}
	q := dnsmessage.Question{Name: qname, Type: typ, Class: dnsmessage.ClassINET}
	if len(c.servers) == 0 {
		return answer{}, errors.New("discover: no DNS servers configured")
	}
	var last error
	for i, server := range c.servers {
		r, err := exchange(ctx, server, q, len(c.servers)-i)
		switch {
		case err != nil && ctxErr(ctx) != nil:
			return answer{}, fmt.Errorf("discover: lookup %s %s: %w", name, typeName(typ), ctxErr(ctx))
		case err != nil:
			last = fmt.Errorf("discover: lookup %s %s at %s: %w", name, typeName(typ), server, err)
		case r.rcode == dnsmessage.RCodeNameError:
			return answer{}, &notFoundError{name: name, nxdomain: true}
		case r.rcode != dnsmessage.RCodeSuccess:
			last = fmt.Errorf("%w: %s %s at %s: %s", ErrServerFailure, name, typeName(typ), server, rcodeName(r.rcode))
		default:
			recs, ttl, err := follow(r.answers, name, typ)
			if err != nil {
				last = fmt.Errorf("discover: lookup %s %s at %s: %w", name, typeName(typ), server, err)
				continue
			}
			if len(recs) == 0 {
				return answer{}, &notFoundError{name: name, types: typeName(typ)}
			}
			return answer{recs: recs, ttl: ttl, extra: r.extra}, nil
		}
	}
	return answer{}, last
}

// exchange asks server for q: over UDP, then over TCP if the reply is
// truncated. The server gets its share of ctx among the left servers
// still to try (this one included).
func exchange(ctx context.Context, server string, q dnsmessage.Question, left int) (reply, error) {
	d := maxAttempt
	if deadline, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(deadline)/time.Duration(left))
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	id := uint16(rand.Uint32())
	query, err := newQuery(id, q)
	if err != nil {
		return reply{}, err
	}
	r, err := exchangeUDP(ctx, server, query, id, q)
	if err != nil || !r.truncated {
		return r, err
	}
	return exchangeTCP(ctx, server, query, id, q)
}

// exchangeUDP sends query from a fresh socket (a fresh random port) and
// waits for the reply that matches it, ignoring others (RFC 5452).
func exchangeUDP(ctx context.Context, server string, query []byte, id uint16, q dnsmessage.Question) (reply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	defer bound(ctx, conn)()
	if _, err := conn.Write(query); err != nil {
		return reply{}, err
	}
	buf := make([]byte, ednsSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return reply{}, err
		}
		if r, err := parseReply(buf[:n], id, q); err == nil {
			return r, nil
		}
	}
}

// exchangeTCP sends query over TCP, length-prefixed (RFC 1035 section
// 4.2.2), and reads one reply, which must match.
func exchangeTCP(ctx context.Context, server string, query []byte, id uint16, q dnsmessage.Question) (reply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	defer bound(ctx, conn)()
	out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(query)), uint16(len(query)))
	if _, err := conn.Write(append(out, query...)); err != nil {
		return reply{}, err
	}
	var size [2]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return reply{}, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(conn, msg); err != nil {
		return reply{}, err
	}
	r, err := parseReply(msg, id, q)
	if err == nil && r.truncated {
		return reply{}, fmt.Errorf("%w: truncated over TCP", ErrBadReply)
	}
	return r, err
}

// ctxErr is ctx.Err, also once ctx's deadline has passed but its timer
// has not fired yet: the socket deadline set from it can fire first.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// bound makes conn's reads and writes end when ctx does, by its deadline
// or when it is canceled, until the returned stop is called.
func bound(ctx context.Context, conn net.Conn) (stop func()) {
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	cancel := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return func() { cancel() }
}
