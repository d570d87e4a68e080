package pcap

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/pierproxy/pier/filter"
)

// maxDatagram is the most payload pier records in one UDP packet
// between src and dst: what the IP header's length field can say (an
// IPv4 packet's total length, an IPv6 one's payload length: 65535) less
// the headers it counts. No datagram that can cross a socket is larger;
// a larger one (only a filter could make it) is not recorded.
func maxDatagram(src, dst netip.Addr) int {
	if src.Is4() && dst.Is4() {
		return 65535 - ipv4Header - udpHeader
	}
	return 65535 - udpHeader
}

// Datagrams records both directions of a UDP flow: each datagram one UDP
// packet, between the client's address and the upstream's (one
// conversation per flow, in one family, as for TCP; tshark's "follow
// udp" shows the flow whole), at its time at the filter's place in the
// chain. The flow's first packet in a file carries the comment "pier
// session <id>, route <name>". With per_session, a flow's file is
// closed when the engine says the flow ended.
func (f *Filter) Datagrams(s *filter.Session) (toUpstream, toClient filter.DatagramStream) {
	c := newCapture(f, s)
	return &datagramStream{c, client}, &datagramStream{c, upstream}
}

// A datagramStream records one direction of a flow: the datagrams its
// side sends. A flow's two run on its socket's goroutine, never at once,
// so their capture needs no lock.
type datagramStream struct {
	c    *capture
	side int
}

func (s *datagramStream) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at, d)
	s.c.datagram(s.side, at, d)
	return nil
}

// Close ends the flow's capture once both directions are closed.
func (s *datagramStream) Close(error) {
	c := s.c
	if c.closed[s.side] {
		return
	}
	c.closed[s.side] = true
	if !c.closed[1-s.side] || c.f.out == nil {
		return
	}
	var file io.Closer
	if c.file != nil {
		file = c.file
	}
	c.f.out.Done(&c.track, file)
}

// datagram writes one UDP packet from side to the other.
func (c *capture) datagram(side int, at time.Time, d []byte) {
	if len(d) > maxDatagram(c.addr[client].Addr(), c.addr[upstream].Addr()) {
		return
	}
	if !c.started {
		c.started = true
		c.comment = fmt.Sprintf("pier session %d, route %s", c.s.ID, c.s.Route)
	}
	p := Packet{
		Time:    at,
		UDP:     true,
		Comment: c.comment,
		Src:     c.addr[side],
		Dst:     c.addr[1-side],
		Payload: d,
	}
	c.comment = ""
	c.ipID[side]++
	if c.f.out == nil {
		return
	}
	b := blocks.Get().(*[]byte)
	*b = appendEPB((*b)[:0], &p, c.ipID[side])
	c.last.Store(at.UnixNano())
	c.f.out.Write(&c.track, *b, int64(len(d)))
	blocks.Put(b)
}

var (
	_ filter.DatagramFilter = (*Filter)(nil)
	_ filter.DatagramStream = (*datagramStream)(nil)
	_ filter.Closer         = (*datagramStream)(nil)
)
