package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"time"
)

// ReadFile reads the capture at path (see Parse).
func ReadFile(path string) ([]Packet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Parse reads a pcapng capture of raw IP packets carrying TCP or UDP, as pier
// writes them, checking what pier promises: every packet whole, IPv4 or
// IPv6 without options or extension headers, correct checksums. Other
// sections, either byte order, and other timestamp resolutions (10^-0 to
// 10^-9 s) are read too; blocks of other types are skipped. The packets'
// Options and Payload point into data.
func Parse(data []byte) ([]Packet, error) {
	var (
		pkts   []Packet
		order  binary.ByteOrder // of the current section; nil before one
		ifaces []uint64         // each interface's timestamp units per second
	)
	for off := 0; off < len(data); {
		if len(data)-off < 12 {
			return nil, fmt.Errorf("pcap: %d bytes at offset %d: too short for a block", len(data)-off, off)
		}
		typ := le.Uint32(data[off:]) // a section's type reads the same both ways
		if typ == blockSHB {
			switch binary.LittleEndian.Uint32(data[off+8:]) {
			case byteOrderMagic:
				order = binary.LittleEndian
			case 0x4d3c2b1a:
				order = binary.BigEndian
			default:
				return nil, fmt.Errorf("pcap: offset %d: bad byte-order magic", off)
			}
			ifaces = nil
		} else if order == nil {
			return nil, errors.New("pcap: not a pcapng file: no section header first")
		} else {
			typ = order.Uint32(data[off:])
		}
		n := int(order.Uint32(data[off+4:]))
		if n < 12 || n%4 != 0 || n > len(data)-off || int(order.Uint32(data[off+n-4:])) != n {
			return nil, fmt.Errorf("pcap: offset %d: bad block length %d", off, n)
		}
		body := data[off+8 : off+n-4]
		var err error
		switch typ {
		case blockSHB:
			if len(body) < 16 || order.Uint16(body[4:]) != 1 {
				err = errors.New("not a pcapng 1.x section header")
			}
		case blockIDB:
			var units uint64
			units, err = parseIDB(body, order)
			ifaces = append(ifaces, units)
		case blockEPB:
			if len(body) >= 4 && int(order.Uint32(body)) < len(ifaces) && ifaces[order.Uint32(body)] == 0 {
				break // a note (see appendNote)
			}
			var p Packet
			p, err = parseEPB(body, order, ifaces)
			pkts = append(pkts, p)
		}
		if err != nil {
			return nil, fmt.Errorf("pcap: block at offset %d: %w", off, err)
		}
		off += n
	}
	return pkts, nil
}

// parseIDB checks an interface is raw IP and returns its timestamp units
// per second.
func parseIDB(body []byte, order binary.ByteOrder) (uint64, error) {
	if len(body) < 8 {
		return 0, errors.New("short interface description")
	}
	lt := order.Uint16(body)
	if lt != linkTypeRaw && lt != linkTypeUpperPDU {
		return 0, fmt.Errorf("link type %d, not raw IP (%d)", lt, linkTypeRaw)
	}
	units := uint64(1e6) // pcapng's default: microseconds
	err := options(body[8:], order, func(code uint16, v []byte) error {
		if code != optTSResol {
			return nil
		}
		if len(v) != 1 || v[0] > 9 {
			return fmt.Errorf("unsupported timestamp resolution %x", v)
		}
		units = 1
		for range v[0] {
			units *= 10
		}
		return nil
	})
	if lt == linkTypeUpperPDU {
		units = 0 // pier's notes, not packets: skipped
	}
	return units, err
}

func parseEPB(body []byte, order binary.ByteOrder, ifaces []uint64) (Packet, error) {
	if len(body) < 20 {
		return Packet{}, errors.New("short packet block")
	}
	iface := order.Uint32(body)
	if iface >= uint32(len(ifaces)) {
		return Packet{}, fmt.Errorf("packet on undescribed interface %d", iface)
	}
	units := ifaces[iface]
	ts := uint64(order.Uint32(body[4:]))<<32 | uint64(order.Uint32(body[8:]))
	capLen, origLen := order.Uint32(body[12:]), order.Uint32(body[16:])
	if capLen != origLen {
		return Packet{}, fmt.Errorf("packet cut to %d of %d bytes", capLen, origLen)
	}
	rest := body[20:]
	if uint64(capLen) > uint64(len(rest)) {
		return Packet{}, errors.New("packet longer than its block")
	}
	padded := min(len(rest), (int(capLen)+3)&^3)
	p, err := parseIP(rest[:capLen])
	if err != nil {
		return Packet{}, err
	}
	sec, ns := ts/units, ts%units*(1e9/units)
	// Only times that fit pier's own nanosecond timestamps: a reader
	// that accepts what it could not write back is no test of a writer.
	if sec > (math.MaxUint64-ns)/1e9 {
		return Packet{}, errors.New("timestamp out of range")
	}
	p.Time = time.Unix(int64(sec), int64(ns)).UTC()
	err = options(rest[padded:], order, func(code uint16, v []byte) error {
		if code == optComment && p.Comment == "" {
			p.Comment = string(v)
		}
		return nil
	})
	return p, err
}

// options calls fn for each option in b, up to the end-of-options
// option or the end of b.
func options(b []byte, order binary.ByteOrder, fn func(code uint16, v []byte) error) error {
	for len(b) >= 4 {
		code, n := order.Uint16(b), int(order.Uint16(b[2:]))
		if code == optEnd {
			return nil
		}
		if 4+n > len(b) {
			return errors.New("option longer than its block")
		}
		if err := fn(code, b[4:4+n]); err != nil {
			return err
		}
		b = b[min(len(b), 4+(n+3)&^3):]
	}
	return nil
}

// parseIP reads one IP packet carrying a TCP segment or a UDP datagram,
// which must fill b.
func parseIP(b []byte) (Packet, error) {
	var p Packet
	if len(b) < 1 {
		return p, errors.New("empty packet")
	}
	var src, dst netip.Addr
	var pseudo uint64
	switch b[0] >> 4 {
	case 4:
		hl := int(b[0]&0xf) * 4
		if len(b) < ipv4Header || hl < ipv4Header || hl > len(b) {
			return p, errors.New("short IPv4 header")
		}
		if int(be.Uint16(b[2:])) != len(b) {
			return p, fmt.Errorf("IPv4 length %d in a packet of %d bytes", be.Uint16(b[2:]), len(b))
		}
		if be.Uint16(b[6:])&0x3fff != 0 {
			return p, errors.New("IPv4 fragment")
		}
		if b[9] != protoTCP && b[9] != protoUDP {
			return p, fmt.Errorf("IP protocol %d, not TCP or UDP", b[9])
		}
		p.UDP = b[9] == protoUDP
		if checksum(b[:hl], 0) != 0 {
			return p, errors.New("bad IPv4 header checksum")
		}
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		pseudo = sum(b[12:20], 0)
		b = b[hl:]
	case 6:
		if len(b) < ipv6Header {
			return p, errors.New("short IPv6 header")
		}
		if int(be.Uint16(b[4:]))+ipv6Header != len(b) {
			return p, fmt.Errorf("IPv6 payload length %d in a packet of %d bytes", be.Uint16(b[4:]), len(b))
		}
		if b[6] != protoTCP && b[6] != protoUDP {
			return p, fmt.Errorf("IPv6 next header %d, not TCP or UDP", b[6])
		}
		p.UDP = b[6] == protoUDP
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		pseudo = sum(b[8:40], 0)
		b = b[ipv6Header:]
	default:
		return p, fmt.Errorf("IP version %d", b[0]>>4)
	}
	if p.UDP {
		return parseUDP(p, src, dst, pseudo, b)
	}
	if len(b) < tcpHeader {
		return p, errors.New("short TCP header")
	}
	hl := int(b[12]>>4) * 4
	if hl < tcpHeader || hl > len(b) {
		return p, fmt.Errorf("TCP header length %d in a segment of %d bytes", hl, len(b))
	}
	if checksum(b, pseudo+protoTCP+uint64(len(b))) != 0 {
		return p, errors.New("bad TCP checksum")
	}
	p.Src = netip.AddrPortFrom(src, be.Uint16(b))
	p.Dst = netip.AddrPortFrom(dst, be.Uint16(b[2:]))
	p.Seq, p.Ack = be.Uint32(b[4:]), be.Uint32(b[8:])
	p.Flags, p.Window = Flags(b[13]), be.Uint16(b[14:])
	if hl > tcpHeader {
		p.Options = b[tcpHeader:hl]
	}
	if hl < len(b) {
		p.Payload = b[hl:]
	}
	return p, nil
}

// parseUDP reads the UDP datagram b, from src to dst, whose IP header
// summed to pseudo. Its checksum must be there, and right: pier always
// writes one.
func parseUDP(p Packet, src, dst netip.Addr, pseudo uint64, b []byte) (Packet, error) {
	if len(b) < udpHeader {
		return p, errors.New("short UDP header")
	}
	if int(be.Uint16(b[4:])) != len(b) {
		return p, fmt.Errorf("UDP length %d in a datagram of %d bytes", be.Uint16(b[4:]), len(b))
	}
	if be.Uint16(b[6:]) == 0 || checksum(b, pseudo+protoUDP+uint64(len(b))) != 0 {
		return p, errors.New("bad UDP checksum")
	}
	p.Src = netip.AddrPortFrom(src, be.Uint16(b))
	p.Dst = netip.AddrPortFrom(dst, be.Uint16(b[2:]))
	if len(b) > udpHeader {
		p.Payload = b[udpHeader:]
	}
	return p, nil
}

// A Conn is one TCP connection in a capture, put back together.
type Conn struct {
	// Client sent the SYN, Server answered it.
	Client, Server netip.AddrPort
	// Comment is the comment on the connection's first packet.
	Comment string
	// ToServer and ToClient are the bytes each way, in order.
	ToServer, ToClient []byte
	// ClientFIN and ServerFIN report each side's FIN; Reset an RST.
	ClientFIN, ServerFIN, Reset bool
}

// Reassemble puts the connections in pkts back together, in the order
// they began (UDP datagrams are left out), checking what a tool like Wireshark would: each starts with
// a three-way handshake, each side's sequence numbers run on with no gap
// or overlap, no side acknowledges what the other has not sent, and
// nothing follows a side's FIN but acknowledgements, or anything an RST.
func Reassemble(pkts []Packet) ([]*Conn, error) {
	type track struct {
		*Conn
		next     [2]uint32 // the sequence number each side sends next
		synAcked bool      // the SYN-ACK has been seen
		est      bool      // the handshake's last ACK has been seen
		fin      [2]bool
	}
	type key struct{ a, b netip.AddrPort }
	var conns []*Conn
	open := map[key]*track{}
	for i, p := range pkts {
		if p.UDP {
			continue
		}
		t, side := open[key{p.Src, p.Dst}], 0
		if t == nil {
			t, side = open[key{p.Dst, p.Src}], 1
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("pcap: packet %d (%v > %v %v seq %d ack %d len %d): %s",
				i, p.Src, p.Dst, p.Flags, p.Seq, p.Ack, len(p.Payload), fmt.Sprintf(format, args...))
		}
		if p.Flags&(SYN|ACK) == SYN {
			if t != nil && !t.Reset && !(t.fin[0] && t.fin[1]) {
				return nil, bad("SYN on an open connection")
			}
			t = &track{Conn: &Conn{Client: p.Src, Server: p.Dst, Comment: p.Comment}}
			t.next[0] = p.Seq + 1
			delete(open, key{p.Dst, p.Src})
			open[key{p.Src, p.Dst}] = t
			conns = append(conns, t.Conn)
			continue
		}
		switch {
		case t == nil || t.Reset:
			return nil, bad("no connection open")
		case p.Flags&ACK == 0:
			return nil, bad("no ACK after the SYN")
		case !t.synAcked:
			if side != 1 || p.Flags&SYN == 0 || p.Ack != t.next[0] {
				return nil, bad("want the SYN-ACK of seq %d", t.next[0]-1)
			}
			t.synAcked, t.next[1] = true, p.Seq+1
			continue
		case p.Flags&SYN != 0:
			return nil, bad("SYN on an open connection")
		case !t.est && (side != 0 || p.Seq != t.next[0] || p.Ack != t.next[1]):
			return nil, bad("want the handshake's ACK of seq %d", t.next[1]-1)
		case p.Seq != t.next[side]:
			return nil, bad("want seq %d: %d bytes missing or repeated", t.next[side], int32(p.Seq-t.next[side]))
		case int32(p.Ack-t.next[1-side]) > 0:
			return nil, bad("acknowledges %d bytes not sent", int32(p.Ack-t.next[1-side]))
		case t.fin[side] && (len(p.Payload) > 0 || p.Flags&FIN != 0):
			return nil, bad("data after FIN")
		}
		t.est = true
		if side == 0 {
			t.ToServer = append(t.ToServer, p.Payload...)
		} else {
			t.ToClient = append(t.ToClient, p.Payload...)
		}
		t.next[side] += uint32(len(p.Payload))
		if p.Flags&FIN != 0 {
			t.fin[side] = true
			t.next[side]++
			t.ClientFIN, t.ServerFIN = t.fin[0], t.fin[1]
		}
		if p.Flags&RST != 0 {
			t.Reset = true
		}
	}
	return conns, nil
}
