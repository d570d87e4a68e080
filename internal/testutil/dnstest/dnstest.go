// Package dnstest is a DNS server for tests: it answers on UDP and TCP at
// 127.0.0.1 from records the test sets, and changes while the test runs, so
// a test can watch a client notice a new address, a failing server or a
// silent one. Only tests import it.
//
//	s := dnstest.New(t)
//	s.SetA("db.example", 30, netip.MustParseAddr("192.0.2.1"))
//	r := discover.Servers([]string{s.Addr()})
//	s.Fail("db.example", dnsmessage.RCodeServerFailure)
//
// It answers like a recursive resolver: a query for a name with a CNAME gets
// the chain and the records at its end, an SRV answer carries the address
// records of its targets in the Additional section when it has them, and an
// unknown name gets NXDOMAIN. A UDP answer larger than the client's EDNS0
// payload size (512 bytes without EDNS0) is truncated, with the TC bit set.
// The server stops when the test ends and leaves no goroutine behind.
package dnstest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// An SRV is one SRV record (RFC 2782).
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string
}

// maxChain bounds how many CNAMEs the server chases for one answer, as a
// recursive resolver would.
const maxChain = 8

// A Server is a DNS server on 127.0.0.1, UDP and TCP on the same port.
// Its methods are safe to call while it serves.
type Server struct {
	t    testing.TB
	udp  *net.UDPConn
	tcp  *net.TCPListener
	addr string
	wg   sync.WaitGroup

	mu       sync.Mutex
	names    map[string]*entry
	queries  map[string]int
	truncate bool
	conns    map[net.Conn]struct{}
	closed   bool
}

// An entry is what the server knows about one name.
type entry struct {
	addrs    []netip.Addr
	addrTTL  uint32
	srv      []SRV
	srvTTL   uint32
	cname    string
	cnameTTL uint32
	rcode    dnsmessage.RCode // answered instead of records when not success
	drop     bool
	spoof    bool
}

func (e *entry) empty() bool {
	return len(e.addrs) == 0 && len(e.srv) == 0 && e.cname == "" &&
		e.rcode == dnsmessage.RCodeSuccess && !e.drop && !e.spoof
}

// New starts a server that knows no names and stops it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		names:   make(map[string]*entry),
		queries: make(map[string]int),
		conns:   make(map[net.Conn]struct{}),
	}
	// UDP takes a free port first; TCP on the same port is usually free
	// too, and a few attempts cover the rare clash.
	var err error
	for range 10 {
		s.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		s.tcp, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.udp.LocalAddr().(*net.UDPAddr).Port})
		if err == nil {
			break
		}
		s.udp.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
	}
	s.addr = s.udp.LocalAddr().String()
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(s.close)
	return s
}

// Addr returns the server's address, "127.0.0.1:port", for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// SetA sets name's address records: A for each IPv4 address, AAAA for each
// IPv6 one, replacing those set before. With no addresses the name keeps
// no address records.
func (s *Server) SetA(name string, ttl uint32, addrs ...netip.Addr) {
	s.edit(name, func(e *entry) {
		e.addrs = append([]netip.Addr(nil), addrs...)
		e.addrTTL = ttl
	})
}

// SetSRV sets name's SRV records, replacing those set before.
func (s *Server) SetSRV(name string, ttl uint32, recs ...SRV) {
	s.t.Helper()
	for _, r := range recs {
		s.check(r.Target)
	}
	s.edit(name, func(e *entry) {
		e.srv = append([]SRV(nil), recs...)
		e.srvTTL = ttl
	})
}

// SetCNAME makes name an alias of target; an empty target removes the alias.
// An alias hides the name's other records, as in DNS.
func (s *Server) SetCNAME(name string, ttl uint32, target string) {
	s.t.Helper()
	s.check(target)
	s.edit(name, func(e *entry) {
		e.cname = ""
		if target != "" {
			e.cname = canonical(target)
		}
		e.cnameTTL = ttl
	})
}

// Fail makes queries for name answer rcode (SERVFAIL, REFUSED...) with no
// records. RCodeSuccess undoes it.
func (s *Server) Fail(name string, rcode dnsmessage.RCode) {
	s.edit(name, func(e *entry) { e.rcode = rcode })
}

// Drop makes queries for name go unanswered while on, so clients time out.
// They are still counted.
func (s *Server) Drop(name string, on bool) {
	s.edit(name, func(e *entry) { e.drop = on })
}

// Spoof makes each UDP answer for name, while on, follow two forged replies
// that carry the address 192.0.2.66 (A) or 2001:db8::66 (AAAA): one with
// another query id, one with the right id but another question. A client
// that checks replies ignores both.
func (s *Server) Spoof(name string, on bool) {
	s.edit(name, func(e *entry) { e.spoof = on })
}

// Remove forgets name: its records, failure, drop and spoof settings. It
// then answers NXDOMAIN. Its query count stays.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, canonical(name))
}

// ForceTruncate makes every UDP answer, while on, an empty one with the TC
// bit set, so clients must ask again over TCP.
func (s *Server) ForceTruncate(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate = on
}

// Queries returns how many queries for name the server has received, of
// any type, over UDP and TCP, answered or not.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[canonical(name)]
}

// check fails the test if DNS cannot carry name (over 255 bytes).
func (s *Server) check(name string) {
	s.t.Helper()
	if _, err := dnsmessage.NewName(canonical(name)); err != nil {
		s.t.Fatalf("dnstest: name %q: %v", name, err)
	}
}

func (s *Server) edit(name string, f func(*entry)) {
	s.t.Helper()
	s.check(name)
	n := canonical(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.names[n]
	if e == nil {
		e = new(entry)
		s.names[n] = e
	}
	f(e)
	if e.empty() {
		delete(s.names, n)
	}
}

// canonical is name in lower case with the final dot, the form names are
// kept and compared in (DNS names are case-insensitive, RFC 4343).
// It is discover's canonical again, on purpose: the test server must not
// share the code it checks (and discover's tests import this package).
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

func (s *Server) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.udp.Close()
	s.tcp.Close()
	s.wg.Wait()
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for _, out := range s.answer(buf[:n], true) {
			s.udp.WriteToUDPAddrPort(out, from)
		}
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// serveConn answers length-prefixed queries (RFC 1035 section 4.2.2) until
// the client or the server closes the connection.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var size [2]byte
	for {
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		for _, out := range s.answer(q, false) {
			out = append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}

// answer returns the messages to send for query: none for a query it cannot
// read or a dropped name, else the answer, after forgeries when spoofing.
func (s *Server) answer(query []byte, udp bool) [][]byte {
	var q dnsmessage.Message
	if err := q.Unpack(query); err != nil || q.Header.Response || len(q.Questions) != 1 {
		return nil
	}
	question := q.Questions[0]
	name := canonical(question.Name.String())
	var opt *dnsmessage.Resource
	for i := range q.Additionals {
		if q.Additionals[i].Header.Type == dnsmessage.TypeOPT {
			opt = &q.Additionals[i]
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries[name]++
	e := s.names[name]
	if e != nil && e.drop {
		return nil
	}

	r := dnsmessage.Message{
		Header: dnsmessage.Header{
			ID: q.Header.ID, Response: true, Authoritative: true,
			RecursionDesired: q.Header.RecursionDesired, RecursionAvailable: true,
		},
		Questions: q.Questions,
	}
	switch {
	case e == nil:
		r.Header.RCode = dnsmessage.RCodeNameError
	case e.rcode != dnsmessage.RCodeSuccess:
		r.Header.RCode = e.rcode
	default:
		r.Answers, r.Additionals = s.records(name, question.Type)
	}
	if opt != nil {
		r.Additionals = append(r.Additionals, ednsRecord()...)
	}
	out, err := r.Pack()
	if err != nil {
		return nil
	}
	limit := 512 // RFC 1035 section 4.2.1, without EDNS0
	if opt != nil && int(opt.Header.Class) > limit {
		limit = int(opt.Header.Class) // RFC 6891 section 6.2.3
	}
	if udp && (s.truncate || len(out) > limit) {
		// The truncated answer keeps only the question and the OPT record.
		r.Header.Truncated = true
		r.Answers, r.Additionals = nil, nil
		if opt != nil {
			r.Additionals = ednsRecord()
		}
		if out, err = r.Pack(); err != nil {
			return nil
		}
	}
	if !udp || e == nil || !e.spoof {
		return [][]byte{out}
	}
	return append(s.forgeries(r, name, question.Type), out)
}

// records returns the answer for name and type as a recursive resolver
// gives it: the CNAME chain, then the records at its end; and, for SRV, the
// targets' addresses as additional records.
func (s *Server) records(name string, typ dnsmessage.Type) (answers, additionals []dnsmessage.Resource) {
	seen := make(map[string]bool)
	for range maxChain {
		e := s.names[name]
		if e == nil || seen[name] {
			return answers, nil
		}
		seen[name] = true
		if e.cname != "" {
			answers = append(answers, resource(name, e.cnameTTL, &dnsmessage.CNAMEResource{CNAME: mustName(e.cname)}))
			if typ == dnsmessage.TypeCNAME {
				return answers, nil
			}
			name = e.cname
			continue
		}
		switch typ {
		case dnsmessage.TypeA, dnsmessage.TypeAAAA:
			answers = append(answers, addrRecords(name, e.addrTTL, e.addrs, typ)...)
		case dnsmessage.TypeSRV:
			for _, r := range e.srv {
				target := canonical(r.Target)
				answers = append(answers, resource(name, e.srvTTL, &dnsmessage.SRVResource{
					Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: mustName(target),
				}))
				if t := s.names[target]; t != nil && t.cname == "" {
					additionals = append(additionals, addrRecords(target, t.addrTTL, t.addrs, dnsmessage.TypeA)...)
					additionals = append(additionals, addrRecords(target, t.addrTTL, t.addrs, dnsmessage.TypeAAAA)...)
				}
			}
		}
		return answers, additionals
	}
	return answers, nil
}

// forgeries returns the replies an off-path attacker might send for r.
func (s *Server) forgeries(r dnsmessage.Message, name string, typ dnsmessage.Type) [][]byte {
	var bogus []dnsmessage.Resource
	switch typ {
	case dnsmessage.TypeA:
		bogus = addrRecords(name, 3600, []netip.Addr{netip.MustParseAddr("192.0.2.66")}, typ)
	case dnsmessage.TypeAAAA:
		bogus = addrRecords(name, 3600, []netip.Addr{netip.MustParseAddr("2001:db8::66")}, typ)
	}
	wrongID := r
	wrongID.Header.ID ^= 0x5a5a
	wrongID.Header.RCode, wrongID.Header.Truncated = dnsmessage.RCodeSuccess, false
	wrongID.Answers = bogus
	wrongQuestion := wrongID
	wrongQuestion.Header.ID = r.Header.ID
	wrongQuestion.Questions = []dnsmessage.Question{{Name: mustName("spoofed.invalid."), Type: typ, Class: dnsmessage.ClassINET}}
	var out [][]byte
	for _, m := range []dnsmessage.Message{wrongID, wrongQuestion} {
		if b, err := m.Pack(); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// ednsRecord is the OPT record of an answer to an EDNS0 query (RFC 6891).
func ednsRecord() []dnsmessage.Resource {
	var h dnsmessage.ResourceHeader
	h.SetEDNS0(4096, dnsmessage.RCodeSuccess, false)
	return []dnsmessage.Resource{{Header: h, Body: &dnsmessage.OPTResource{}}}
}

func addrRecords(name string, ttl uint32, addrs []netip.Addr, typ dnsmessage.Type) []dnsmessage.Resource {
	var rs []dnsmessage.Resource
	for _, a := range addrs {
		switch {
		case a.Is4() && typ == dnsmessage.TypeA:
			rs = append(rs, resource(name, ttl, &dnsmessage.AResource{A: a.As4()}))
		case !a.Is4() && typ == dnsmessage.TypeAAAA:
			rs = append(rs, resource(name, ttl, &dnsmessage.AAAAResource{AAAA: a.As16()}))
		}
	}
	return rs
}

func resource(name string, ttl uint32, body dnsmessage.ResourceBody) dnsmessage.Resource {
	var typ dnsmessage.Type
	switch body.(type) {
	case *dnsmessage.AResource:
		typ = dnsmessage.TypeA
	case *dnsmessage.AAAAResource:
		typ = dnsmessage.TypeAAAA
	case *dnsmessage.CNAMEResource:
		typ = dnsmessage.TypeCNAME
	case *dnsmessage.SRVResource:
		typ = dnsmessage.TypeSRV
	}
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: mustName(name), Type: typ, Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   body,
	}
}

// mustName converts a name edit has checked, or a constant.
func mustName(name string) dnsmessage.Name {
	n, err := dnsmessage.NewName(name)
	if err != nil {
		panic("dnstest: " + err.Error())
	}
	return n
}
