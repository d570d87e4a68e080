package discover

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// ednsSize is the UDP payload size the client advertises with EDNS0
	// (RFC 6891) and the size of its UDP read buffer. 4096 is what most
	// resolvers offer; an answer that does not fit comes truncated and is
	// asked again over TCP.
	ednsSize = 4096
	// maxCNAME bounds the CNAME chain followed in an answer, as Go's own
	// resolver and most stub resolvers do; a longer chain is a loop or a
	// mistake.
	maxCNAME = 8
)

// errMismatch is a reply to some other query: another id, not a response,
// or another question. Over UDP it is ignored, as a forgery or a late reply.
var errMismatch = fmt.Errorf("%w: reply does not match the query", ErrBadReply)

// A record is one resource record of a reply that discover uses: A, AAAA,
// CNAME or SRV, class IN. Names are canonical (see canonical).
type record struct {
	name   string
	typ    dnsmessage.Type
	ttl    uint32
	addr   netip.Addr // A, AAAA
	target string     // CNAME, SRV
	// SRV
	priority, weight, port uint16
}

// A reply is what discover reads of a DNS reply.
type reply struct {
	rcode     dnsmessage.RCode
	truncated bool // the records were not read: ask again over TCP
	answers   []record
	extra     []record // the Additional section
}

// newQuery returns a recursive query for q with EDNS0.
func newQuery(id uint16, q dnsmessage.Question) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var h dnsmessage.ResourceHeader
	if err := h.SetEDNS0(ednsSize, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(h, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// parseReply reads msg as the reply to the query id for q. A reply that is
// not a response, or carries another id or question, is errMismatch; one
// that cannot be read is ErrBadReply. A truncated reply returns at once,
// records unread. Records of other types and classes are skipped.
func parseReply(msg []byte, id uint16, q dnsmessage.Question) (reply, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return reply{}, fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	if !h.Response || h.ID != id || h.OpCode != 0 {
		return reply{}, errMismatch
	}
	// The question must come back as asked (RFC 5452 section 9.1), which
	// also makes a forged reply guess it.
	got, err := p.Question()
	if err != nil {
		return reply{}, fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	if got.Type != q.Type || got.Class != q.Class || canonical(got.Name.String()) != canonical(q.Name.String()) {
		return reply{}, errMismatch
	}
	if _, err := p.Question(); !errors.Is(err, dnsmessage.ErrSectionDone) {
		return reply{}, fmt.Errorf("%w: more than one question", ErrBadReply)
	}
	r := reply{rcode: h.RCode, truncated: h.Truncated}
	if h.Truncated {
		return r, nil
	}
	if r.answers, err = readSection(&p, p.AnswerHeader, p.SkipAnswer); err != nil {
		return reply{}, fmt.Errorf("%w: answer: %v", ErrBadReply, err)
	}
	if err := p.SkipAllAuthorities(); err != nil {
		return reply{}, fmt.Errorf("%w: authority: %v", ErrBadReply, err)
	}
	if r.extra, err = readSection(&p, p.AdditionalHeader, p.SkipAdditional); err != nil {
		return reply{}, fmt.Errorf("%w: additional: %v", ErrBadReply, err)
	}
	return r, nil
}

// readSection reads the records of the section p is in, with next and
// skip the section's methods of p.
func readSection(p *dnsmessage.Parser, next func() (dnsmessage.ResourceHeader, error), skip func() error) ([]record, error) {
	var rs []record
	for {
		h, err := next()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return rs, nil
		}
		if err != nil {
			return nil, err
		}
		r := record{name: canonical(h.Name.String()), typ: h.Type, ttl: h.TTL}
		if r.ttl > 1<<31-1 { // RFC 2181 section 8: read as 0
			r.ttl = 0
		}
		if h.Class != dnsmessage.ClassINET {
			if err := skip(); err != nil {
				return nil, err
			}
			continue
		}
		switch h.Type {
		case dnsmessage.TypeA:
			a, err := p.AResource()
			if err != nil {
				return nil, err
			}
			r.addr = netip.AddrFrom4(a.A)
		case dnsmessage.TypeAAAA:
			a, err := p.AAAAResource()
			if err != nil {
				return nil, err
			}
			r.addr = netip.AddrFrom16(a.AAAA)
		case dnsmessage.TypeCNAME:
			c, err := p.CNAMEResource()
			if err != nil {
				return nil, err
			}
			r.target = canonical(c.CNAME.String())
		case dnsmessage.TypeSRV:
			s, err := p.SRVResource()
			if err != nil {
				return nil, err
			}
			r.target = canonical(s.Target.String())
			r.priority, r.weight, r.port = s.Priority, s.Weight, s.Port
		default:
			if err := skip(); err != nil {
				return nil, err
			}
			continue
		}
		rs = append(rs, r)
	}
}

// follow returns the records of type typ for name in rs, following the
// CNAME chain from name, and the smallest TTL along the way. No records
// (and no error) means the name has none of that type.
func follow(rs []record, name string, typ dnsmessage.Type) ([]record, time.Duration, error) {
	var ttl time.Duration
	for hops := 0; ; hops++ {
		var found []record
		var alias *record
		for i := range rs {
			switch r := &rs[i]; {
			case r.name != name:
			case r.typ == typ:
				found = append(found, *r)
				ttl = minTTL(ttl, seconds(r.ttl))
			case r.typ == dnsmessage.TypeCNAME && alias == nil:
				alias = r
			}
		}
		if len(found) > 0 || alias == nil {
			return found, ttl, nil
		}
		if hops == maxCNAME {
			return nil, 0, fmt.Errorf("%w: CNAME chain longer than %d at %s", ErrBadReply, maxCNAME, name)
		}
		ttl = minTTL(ttl, seconds(alias.ttl))
		name = alias.target
	}
}

func seconds(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }

// canonical is name in lower case with the final dot, the form names are
// compared in: DNS names are case-insensitive in ASCII only (RFC 4343).
func canonical(name string) string {
	b := []byte(name)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	if len(b) == 0 || b[len(b)-1] != '.' {
		b = append(b, '.')
	}
	return string(b)
}

// typeName is t as DNS texts write it, for errors.
func typeName(t dnsmessage.Type) string {
	switch t {
	case dnsmessage.TypeA:
		return "A"
	case dnsmessage.TypeAAAA:
		return "AAAA"
	case dnsmessage.TypeSRV:
		return "SRV"
	}
	return t.String()
}

// rcodeName is c as DNS texts write it, for errors.
func rcodeName(c dnsmessage.RCode) string {
	switch c {
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE%d", c)
}
