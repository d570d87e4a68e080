package pcap

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"time"
)

// Flags are a TCP segment's control bits.
type Flags uint8

// The control bits pier writes (RFC 9293, section 3.1).
const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
)

func (f Flags) String() string {
	var names []string
	for i, n := range [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"} {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, "|")
}

// A Packet is one TCP segment, or UDP datagram, in a capture, with the IP
// header reduced to its addresses: both IPv4 (Is4) makes an IPv4 packet,
// anything else an IPv6 one.
type Packet struct {
	Time time.Time
	// UDP marks a UDP datagram (a UDP route's): Payload is its payload,
	// and the TCP fields (Seq, Ack, Flags, Window, Options) are zero.
	UDP bool
	// Comment is the packet's pcapng comment: pier puts "pier session
	// <id>, route <name>" on each session's first packet in a file.
	Comment  string
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    Flags
	Window   uint16
	// Options is the TCP options as they appear in the header: their
	// length is a multiple of 4.
	Options []byte
	Payload []byte
}

const (
	ipv4Header = 20
	ipv6Header = 40
	tcpHeader  = 20
	udpHeader  = 8
	protoTCP   = 6
	protoUDP   = 17
	hopLimit   = 64

	// maxPacket bounds the IP packets pier writes, clear of the 65535
	// bytes an IPv4 total length (or IPv6 payload length) can say.
	maxPacket = 65000

	// windowShift scales the window each side advertises (0xffff <<
	// 14, about 1 GiB: the largest RFC 7323 allows), so that however many
	// bytes one call records before the other side's ACK, tools never
	// see a full window.
	windowShift = 14
)

var be = binary.BigEndian

// mss is the most payload one segment between these addresses carries.
func mss(src, dst netip.Addr) int {
	if src.Is4() && dst.Is4() {
		return maxPacket - ipv4Header - tcpHeader
	}
	return maxPacket - ipv6Header - tcpHeader
}

// synOptions are the options on the SYN and SYN-ACK: the MSS, and the
// window scale (after a NOP, to keep it 4-byte aligned).
func synOptions(mss int) []byte {
	return []byte{2, 4, byte(mss >> 8), byte(mss), 1, 3, 3, windowShift}
}

// appendIP appends p as an IP packet, IPv4 with identification id or
// IPv6, with correct IP and TCP (or UDP) checksums. The caller keeps a
// TCP packet within maxPacket, and a UDP one within what its IP header
// can say (maxDatagram).
func appendIP(b []byte, p *Packet, id uint16) []byte {
	src, dst := p.Src.Addr(), p.Dst.Addr()
	proto, tcpLen := byte(protoTCP), tcpHeader+len(p.Options)+len(p.Payload)
	if p.UDP {
		proto, tcpLen = protoUDP, udpHeader+len(p.Payload)
	}
	var pseudo uint64
	if src.Is4() && dst.Is4() {
		start := len(b)
		s, d := src.As4(), dst.As4()
		b = be.AppendUint16(b, 0x4500) // version 4, 5 words of header
		b = be.AppendUint16(b, uint16(ipv4Header+tcpLen))
		b = be.AppendUint16(b, id)
		b = be.AppendUint16(b, 0x4000) // don't fragment
		b = append(b, hopLimit, proto, 0, 0)
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		be.PutUint16(b[start+10:], checksum(b[start:], 0))
		pseudo = sum(s[:], 0) + sum(d[:], 0)
	} else {
		s, d := src.As16(), dst.As16()
		b = be.AppendUint32(b, 6<<28)
		b = be.AppendUint16(b, uint16(tcpLen))
		b = append(b, proto, hopLimit)
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		pseudo = sum(s[:], 0) + sum(d[:], 0)
	}
	pseudo += uint64(proto) + uint64(tcpLen)

	t := len(b)
	if p.UDP {
		b = be.AppendUint16(b, p.Src.Port())
		b = be.AppendUint16(b, p.Dst.Port())
		b = be.AppendUint16(b, uint16(tcpLen))
		b = append(b, 0, 0)
		b = append(b, p.Payload...)
		c := checksum(b[t:], pseudo)
		if c == 0 {
			c = 0xffff // 0 would say "no checksum" (RFC 768)
		}
		be.PutUint16(b[t+6:], c)
		return b
	}
	b = be.AppendUint16(b, p.Src.Port())
	b = be.AppendUint16(b, p.Dst.Port())
	b = be.AppendUint32(b, p.Seq)
	b = be.AppendUint32(b, p.Ack)
	b = append(b, byte((tcpHeader+len(p.Options))/4)<<4, byte(p.Flags))
	b = be.AppendUint16(b, p.Window)
	b = append(b, 0, 0, 0, 0) // checksum, urgent pointer
	b = append(b, p.Options...)
	b = append(b, p.Payload...)
	be.PutUint16(b[t+16:], checksum(b[t:], pseudo))
	return b
}

// sum adds b to s as big-endian 16-bit words, the first step of the
// Internet checksum (RFC 1071). 64 bits cannot overflow for any packet.
func sum(b []byte, s uint64) uint64 {
	for len(b) >= 2 {
		s += uint64(be.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// checksum is the Internet checksum of b, starting from the sum s of a
// pseudo-header. Over bytes that include a correct checksum it is 0.
func checksum(b []byte, s uint64) uint16 {
	s = sum(b, s)
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
