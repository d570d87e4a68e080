package dnstest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"
)

// TestMain checks that a server leaves no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ask sends one query for name and type over network and returns the
// reply, or nil if none came within the deadline.
func ask(t *testing.T, s *Server, network, name string, typ dnsmessage.Type, edns bool, wait time.Duration) *dnsmessage.Message {
	t.Helper()
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 0xbeef, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}
	if edns {
		var h dnsmessage.ResourceHeader
		h.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
		q.Additionals = []dnsmessage.Resource{{Header: h, Body: &dnsmessage.OPTResource{}}}
	}
	query, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial(network, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	var reply []byte
	if network == "tcp" {
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(query))), query...)); err != nil {
			t.Fatal(err)
		}
		var size [2]byte
		if _, err = io.ReadFull(c, size[:]); err == nil {
			reply = make([]byte, binary.BigEndian.Uint16(size[:]))
			_, err = io.ReadFull(c, reply)
		}
	} else {
		if _, err := c.Write(query); err != nil {
			t.Fatal(err)
		}
		reply = make([]byte, 65535)
		var n int
		n, err = c.Read(reply)
		reply = reply[:n]
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(reply); err != nil {
		t.Fatal(err)
	}
	if m.Header.ID != q.Header.ID || !m.Header.Response {
		t.Fatalf("reply header %+v", m.Header)
	}
	return &m
}

const wait = 5 * time.Second

func TestServerAnswersAddressesByFamily(t *testing.T) {
	s := New(t)
	s.SetA("Db.Example", 42, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"))
	for _, tt := range []struct {
		typ  dnsmessage.Type
		want dnsmessage.ResourceBody
	}{
		{dnsmessage.TypeA, &dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}}},
		{dnsmessage.TypeAAAA, &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::1").As16()}},
	} {
		m := ask(t, s, "udp", "db.EXAMPLE.", tt.typ, true, wait)
		if m.Header.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
			t.Fatalf("%v: %+v", tt.typ, m)
		}
		if got := m.Answers[0]; got.Header.TTL != 42 || got.Body.GoString() != tt.want.GoString() {
			t.Errorf("%v: answer %v", tt.typ, got.GoString())
		}
	}
	if n := s.Queries("db.example."); n != 2 {
		t.Errorf("Queries = %d, want 2", n)
	}
}

func TestServerUnknownNameIsNXDOMAIN(t *testing.T) {
	s := New(t)
	s.SetA("db.example", 1, netip.MustParseAddr("192.0.2.1"))
	s.Remove("db.example")
	for _, network := range []string{"udp", "tcp"} {
		if m := ask(t, s, network, "db.example.", dnsmessage.TypeA, false, wait); m.Header.RCode != dnsmessage.RCodeNameError {
			t.Errorf("%s: rcode %v, want NXDOMAIN", network, m.Header.RCode)
		}
	}
}

func TestServerFailAndDrop(t *testing.T) {
	s := New(t)
	s.SetA("db.example", 1, netip.MustParseAddr("192.0.2.1"))
	s.Fail("db.example", dnsmessage.RCodeServerFailure)
	if m := ask(t, s, "udp", "db.example.", dnsmessage.TypeA, false, wait); m.Header.RCode != dnsmessage.RCodeServerFailure || len(m.Answers) != 0 {
		t.Errorf("failing: %+v", m)
	}
	s.Fail("db.example", dnsmessage.RCodeSuccess)
	s.Drop("db.example", true)
	// The one wait for nothing: short, and it cannot flake the other way.
	if m := ask(t, s, "udp", "db.example.", dnsmessage.TypeA, false, 100*time.Millisecond); m != nil {
		t.Errorf("dropped name answered: %+v", m)
	}
	s.Drop("db.example", false)
	if m := ask(t, s, "tcp", "db.example.", dnsmessage.TypeA, false, wait); len(m.Answers) != 1 {
		t.Errorf("after drop: %+v", m)
	}
}

// Without EDNS0 a UDP answer over 512 bytes is truncated (RFC 1035 section
// 4.2.1); over TCP it comes whole.
func TestServerTruncatesLargeUDPAnswers(t *testing.T) {
	s := New(t)
	var addrs []netip.Addr
	for i := range 40 { // 40 A records: about 670 bytes
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	s.SetA("big.example", 60, addrs...)
	if m := ask(t, s, "udp", "big.example.", dnsmessage.TypeA, false, wait); !m.Header.Truncated || len(m.Answers) != 0 {
		t.Errorf("UDP without EDNS0: truncated %v, %d answers", m.Header.Truncated, len(m.Answers))
	}
	if m := ask(t, s, "udp", "big.example.", dnsmessage.TypeA, true, wait); m.Header.Truncated || len(m.Answers) != 40 {
		t.Errorf("UDP with EDNS0 1232: truncated %v, %d answers", m.Header.Truncated, len(m.Answers))
	}
	if m := ask(t, s, "tcp", "big.example.", dnsmessage.TypeA, false, wait); m.Header.Truncated || len(m.Answers) != 40 {
		t.Errorf("TCP: truncated %v, %d answers", m.Header.Truncated, len(m.Answers))
	}
	s.ForceTruncate(true)
	s.SetA("small.example", 60, addrs[0])
	if m := ask(t, s, "udp", "small.example.", dnsmessage.TypeA, true, wait); !m.Header.Truncated {
		t.Error("ForceTruncate: UDP answer not truncated")
	}
}

// An SRV answer carries its targets' addresses as additional records.
func TestServerSRVAdditionals(t *testing.T) {
	s := New(t)
	s.SetSRV("_x._tcp.example", 60, SRV{Priority: 1, Weight: 2, Port: 3, Target: "t.example"})
	s.SetA("t.example", 60, netip.MustParseAddr("192.0.2.1"))
	m := ask(t, s, "udp", "_x._tcp.example.", dnsmessage.TypeSRV, false, wait)
	if len(m.Answers) != 1 || len(m.Additionals) != 1 {
		t.Fatalf("%d answers, %d additionals; want 1, 1", len(m.Answers), len(m.Additionals))
	}
	if srv := m.Answers[0].Body.(*dnsmessage.SRVResource); srv.Port != 3 || srv.Target.String() != "t.example." {
		t.Errorf("SRV %v", srv.GoString())
	}
}

func TestServerCNAMEChain(t *testing.T) {
	s := New(t)
	s.SetCNAME("www.example", 60, "lb.example")
	s.SetA("lb.example", 60, netip.MustParseAddr("192.0.2.1"))
	m := ask(t, s, "udp", "www.example.", dnsmessage.TypeA, false, wait)
	if len(m.Answers) != 2 || m.Answers[0].Header.Type != dnsmessage.TypeCNAME || m.Answers[1].Header.Type != dnsmessage.TypeA {
		t.Errorf("answers %+v, want the CNAME then the A", m.Answers)
	}
}
