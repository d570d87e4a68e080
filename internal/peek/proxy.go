package peek

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"strconv"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// Header is a received PROXY protocol header.
type Header struct {
	Version uint8 // V1 or V2
	// Local: a v2 LOCAL command or a v1 UNKNOWN line (a balancer's health
	// check): the connection's real endpoints stand, Src and Dst are
	// invalid.
	Local    bool
	Src, Dst netip.AddrPort // unmapped; the original client and the address it dialed
	// TLVs (v2 only); zero when absent.
	ALPN      string
	Authority string // PP2_TYPE_AUTHORITY: the server name the client asked for
	UniqueID  []byte // PP2_TYPE_UNIQUE_ID, ≤ 128 bytes
	SSL       *SSL   // PP2_TYPE_SSL; nil when absent
}

// SSL is the PP2_TYPE_SSL TLV: what a TLS-terminating balancer saw.
type SSL struct {
	Client   uint8 // PP2_CLIENT_* bits
	Verified bool  // the client presented a certificate that verified
	Version  string
	CN       string
	Cipher   string
}

// v2 header layout (spec §2.2): signature (12), version and command,
// family and protocol, length (2), then length bytes.
const (
	v2FixedLen    = 16
	maxUniqueID   = 128 // spec §2.2.5
	v2CRCTLVLen   = 3 + 4
	tlvHeaderLen  = 3
	v1Terminator  = '\n'
	v1CR          = '\r'
	v2LengthStart = 14
)

// HeaderLen frames a PROXY header at the start of b without parsing its
// fields: Complete with n its length (v1: "PROXY" up to LF within
// MaxV1 bytes; v2: the 12-byte signature and 16+length bytes, length ≤
// go-proxyproto's MaxV2HeaderSize), NeedMore while b is a proper prefix
// of a signature or header, Absent when b starts with no signature,
// TooLarge when the header would exceed its bound.
func HeaderLen(b []byte) (n int, st Status) {
	switch {
	case bytes.HasPrefix(b, proxyproto.SIGV1):
		// Spec §2.1: the line is at most 107 bytes, CRLF included, and
		// holds no other LF; the parser checks the CR and the fields.
		if i := bytes.IndexByte(b[:min(len(b), MaxV1)], v1Terminator); i >= 0 {
			return i + 1, Complete
		}
		if len(b) >= MaxV1 {
			return 0, TooLarge
		}
		return 0, NeedMore
	case bytes.HasPrefix(b, proxyproto.SIGV2):
		if len(b) < v2FixedLen {
			return 0, NeedMore
		}
		l := binary.BigEndian.Uint16(b[v2LengthStart:])
		if l > proxyproto.MaxV2HeaderSize {
			return 0, TooLarge
		}
		if n = v2FixedLen + int(l); len(b) < n {
			return 0, NeedMore
		}
		return n, Complete
	case signaturePrefix(b):
		return 0, NeedMore
	}
	return 0, Absent
}

// signaturePrefix reports whether b is a proper prefix of a signature
// (empty included): such bytes may still become a header.
func signaturePrefix(b []byte) bool {
	return len(b) < len(proxyproto.SIGV1) && bytes.HasPrefix(proxyproto.SIGV1, b) ||
		len(b) < len(proxyproto.SIGV2) && bytes.HasPrefix(proxyproto.SIGV2, b)
}

// fullSignature reports whether b starts with a whole v1 or v2 signature.
func fullSignature(b []byte) bool {
	return bytes.HasPrefix(b, proxyproto.SIGV1) || bytes.HasPrefix(b, proxyproto.SIGV2)
}

// ParseHeader parses b, which is exactly one header (as HeaderLen framed
// it), accepting the versions in accept (V1, V2 or Any). Its errors wrap
// ErrMalformed or ErrVersion (and go-proxyproto's error, when it found
// one).
func ParseHeader(b []byte, accept uint8) (Header, error) {
	n, st := HeaderLen(b)
	if st != Complete || n != len(b) {
		return Header{}, fmt.Errorf("%w: not exactly one header (%d bytes, framed %s %d)", ErrMalformed, len(b), st, n)
	}
	version := V2
	if b[0] == proxyproto.SIGV1[0] {
		version = V1
	}
	if accept&version == 0 {
		return Header{}, fmt.Errorf("%w: v%d", ErrVersion, version)
	}
	// go-proxyproto reads from a bufio.Reader; a v1 line must be buffered
	// whole, so the buffer holds all of b (bufio's minimum is 16).
	ph, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16)))
	if err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	h := Header{Version: version}
	switch {
	case ph.Command.IsLocal():
		// Spec §2.2: LOCAL is the sender's own connection (a health
		// check); the receiver uses the real endpoints. v1 UNKNOWN: §2.1.
		h.Local = true
	case ph.TransportProtocol == proxyproto.TCPv4 || ph.TransportProtocol == proxyproto.TCPv6:
		src, dst, ok := ph.TCPAddrs()
		if !ok {
			return Header{}, fmt.Errorf("%w: no TCP addresses", ErrMalformed)
		}
		h.Src, h.Dst = addrPort(src), addrPort(dst)
		if !h.Src.IsValid() || !h.Dst.IsValid() {
			return Header{}, fmt.Errorf("%w: bad address", ErrMalformed)
		}
	default:
		// UDP and UNIX families: pier relays TCP; the spec lets a
		// receiver refuse a family it does not support.
		return Header{}, fmt.Errorf("%w: family %#x is not TCP", ErrMalformed, byte(ph.TransportProtocol))
	}
	if version == V2 {
		if err := readTLVs(b, ph, &h); err != nil {
			return Header{}, err
		}
	}
	return h, nil
}

func addrPort(a *net.TCPAddr) netip.AddrPort {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok || a.Port < 0 || a.Port > 0xffff {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

// readTLVs fills h's TLV fields from a v2 header (raw is its bytes).
func readTLVs(raw []byte, ph *proxyproto.Header, h *Header) error {
	tlvs, err := ph.TLVs()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	for _, t := range tlvs {
		switch t.Type {
		case proxyproto.PP2_TYPE_ALPN:
			h.ALPN = string(t.Value)
		case proxyproto.PP2_TYPE_AUTHORITY:
			h.Authority = string(t.Value)
		case proxyproto.PP2_TYPE_UNIQUE_ID:
			if len(t.Value) > maxUniqueID {
				return fmt.Errorf("%w: unique ID of %d bytes (at most %d)", ErrMalformed, len(t.Value), maxUniqueID)
			}
			h.UniqueID = bytes.Clone(t.Value)
		case proxyproto.PP2_TYPE_CRC32C:
			if !checksumOK(raw, t.Value) {
				return fmt.Errorf("%w: CRC32c mismatch", ErrMalformed)
			}
		case proxyproto.PP2_TYPE_SSL:
			s, err := tlvparse.SSL(t)
			if err != nil {
				return fmt.Errorf("%w: SSL TLV: %w", ErrMalformed, err)
			}
			h.SSL = &SSL{Client: s.Client, Verified: s.Verified()}
			h.SSL.Version, _ = s.SSLVersion()
			h.SSL.CN, _ = s.ClientCN()
			h.SSL.Cipher, _ = s.SSLCipher()
		}
	}
	return nil
}

// checksumOK verifies a PP2_TYPE_CRC32C TLV (spec §2.2.3): the CRC32c of
// the whole header with the checksum's own four bytes zeroed.
func checksumOK(raw, sum []byte) bool {
	if len(sum) != 4 {
		return false
	}
	want := binary.BigEndian.Uint32(sum)
	// Find the TLV's value in raw: walk the TLVs after the addresses.
	start := v2FixedLen + addressLen(raw[13])
	for i := start; i+tlvHeaderLen <= len(raw); {
		l := int(binary.BigEndian.Uint16(raw[i+1:]))
		if raw[i] == byte(proxyproto.PP2_TYPE_CRC32C) && l == 4 && i+tlvHeaderLen+4 <= len(raw) {
			c := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			c.Write(raw[:i+tlvHeaderLen])
			c.Write([]byte{0, 0, 0, 0})
			c.Write(raw[i+tlvHeaderLen+4:])
			return c.Sum32() == want
		}
		i += tlvHeaderLen + l
	}
	return false
}

// addressLen is the size of a v2 address block for a family byte.
func addressLen(family byte) int {
	switch proxyproto.AddressFamilyAndProtocol(family) {
	case proxyproto.TCPv4, proxyproto.UDPv4:
		return 12
	case proxyproto.TCPv6, proxyproto.UDPv6:
		return 36
	case proxyproto.UnixStream, proxyproto.UnixDatagram:
		return 216
	}
	return 0
}

// Out is what a PROXY header sent to an upstream carries.
type Out struct {
	Src, Dst  netip.AddrPort // the original client, and the address it dialed
	Authority string         // v2 PP2_TYPE_AUTHORITY (the SNI); "" none
	ALPN      string         // v2 PP2_TYPE_ALPN; "" none
	// UniqueID is the v2 PP2_TYPE_UNIQUE_ID: the session id, written in
	// decimal so a balancer's log (HAProxy's fc_pp_unique_id) shows the
	// id pier's access log does; 0 none.
	UniqueID uint64
}

// AppendHeader appends a version (V1 or V2) header for o to dst. v1
// carries no TLVs. Addresses are unmapped; a mix of IPv4 and IPv6 is
// written as TCP6 with the IPv4 address in its mapped form. Without two
// valid addresses it appends AppendLocal's header: a header that lied
// about the client would be worse than none.
func AppendHeader(dst []byte, version uint8, o *Out) []byte {
	if o == nil || !o.Src.IsValid() || !o.Dst.IsValid() {
		return AppendLocal(dst, version)
	}
	src, dst4 := o.Src.Addr().Unmap(), o.Dst.Addr().Unmap()
	ph := &proxyproto.Header{
		Version:           2,
		Command:           proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv6,
	}
	if version == V1 {
		ph.Version = 1
	}
	if src.Is4() && dst4.Is4() {
		ph.TransportProtocol = proxyproto.TCPv4
	} else {
		src, dst4 = netip.AddrFrom16(src.As16()), netip.AddrFrom16(dst4.As16())
	}
	ph.SourceAddr = &net.TCPAddr{IP: src.AsSlice(), Port: int(o.Src.Port())}
	ph.DestinationAddr = &net.TCPAddr{IP: dst4.AsSlice(), Port: int(o.Dst.Port())}
	if ph.Version == 2 {
		var tlvs []proxyproto.TLV
		if o.ALPN != "" {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(o.ALPN)})
		}
		if o.Authority != "" {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(o.Authority)})
		}
		if o.UniqueID != 0 {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: strconv.AppendUint(nil, o.UniqueID, 10)})
		}
		if len(tlvs) > 0 {
			// JoinTLVs refuses only values over 65535 bytes; an SNI is
			// at most 255 and the rest are short.
			if err := ph.SetTLVs(tlvs); err != nil {
				return AppendLocal(dst, version)
			}
		}
	}
	b, err := ph.Format()
	if err != nil {
		return AppendLocal(dst, version)
	}
	return append(dst, b...)
}

// localV2 is a v2 LOCAL command with no address block (spec §2.2).
var localV2 = func() []byte {
	b, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	if err != nil {
		panic(err) // a fixed header; cannot fail
	}
	return b
}()

// localV1 is v1's "unknown connection" line (spec §2.1).
const localV1 = "PROXY UNKNOWN\r\n"

// AppendLocal appends a header that says "use the real endpoints": a v2
// LOCAL command, or v1 "PROXY UNKNOWN\r\n". Health checks send it.
func AppendLocal(dst []byte, version uint8) []byte {
	if version == V1 {
		return append(dst, localV1...)
	}
	return append(dst, localV2...)
}
