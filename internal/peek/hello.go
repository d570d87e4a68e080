package peek

// Hello is what pier routes on in a TLS ClientHello (RFC 8446 §4.1.2,
// inside TLS records; RFC 8446 §5.1: a handshake message may span
// records): the server_name extension's host_name (RFC 6066 §3) and the
// ALPN protocols (RFC 7301 §3.1), in the client's order of preference.
type Hello struct {
	ServerName string   // lowercased, no trailing dot; "" when absent
	ALPN       []string // nil when absent; at most the first MaxALPN (MaxALPNBytes in all)
}

// TLS wire constants (RFC 8446 §5.1, §4, §4.2).
const (
	recordHeaderLen     = 5       // type, legacy version (2), length (2)
	maxRecord           = 1 << 14 // a plaintext record's fragment is at most 2^14 bytes
	recordTypeHandshake = 22
	handshakeHeaderLen  = 4 // type, uint24 length
	typeClientHello     = 1
	extServerName       = 0
	extALPN             = 16
	hostNameType        = 0
)

// ParseClientHello parses a ClientHello from the start of b: NeedMore
// while b is a proper prefix of one, Absent when b is not a TLS handshake
// record, Malformed when it breaks the grammar, TooLarge when it would
// not fit in Max.
//
// It accepts what crypto/tls's server accepts before its
// GetConfigForClient callback, with the same server name (lowercased,
// a trailing dot stripped where crypto/tls refuses one) and ALPN list,
// except that records other than handshake records (a warning alert or
// change_cipher_spec before the hello) are Malformed here: no client
// sends them first. It reads only server_name and ALPN among the
// extensions, so it accepts some hellos crypto/tls refuses.
func ParseClientHello(b []byte) (Hello, Status) {
	h, st, _ := ParseClientHelloNeed(b)
	return h, st
}

// ParseClientHelloNeed is ParseClientHello, which also says, when the
// status is NeedMore, the fewest bytes b must hold (counted from its
// start) before the hello can be complete: a caller reading a hello that
// comes in small pieces need not parse it again before then (or before
// the client's EOF, or its deadline). Only a client's broken prefix is
// told apart sooner (a record of length 0, a second byte past 0x0f), and
// a caller that skips learns of it at need or at its deadline: a valid
// hello is never decided later. need is 0 with any other status.
func ParseClientHelloNeed(b []byte) (h Hello, st Status, need int) {
	msg, st, need := handshakeMessage(b)
	if st != Complete {
		if st != NeedMore {
			need = 0
		}
		return Hello{}, st, need
	}
	h, st = parseClientHelloMsg(msg)
	return h, st, 0
}

// handshakeMessage returns the first handshake message (header
// included) carried by the TLS records at the start of b. It copies only
// when the message spans records, and only once the message is
// complete; then the copy is the message's length, at most len(b). While
// the message is incomplete it only walks the record headers: the data
// path calls it after every read, so a hello split into 1-byte records
// costs no allocation per read, and a walk is a few steps per record.
// need, with NeedMore, is the fewest bytes b must hold before the
// message can be complete (a lower bound: the rest may all come in one
// record), so that a caller can skip the walks in between.
func handshakeMessage(b []byte) ([]byte, Status, int) {
	if len(b) == 0 {
		return nil, NeedMore, 1
	}
	// crypto/tls's own test for "this might not be TLS" on a first
	// record: a handshake type, and a version below 16.0.
	if b[0] != recordTypeHandshake || len(b) > 1 && b[1] >= 0x10 {
		return nil, Absent, 0
	}
	var (
		hdr   [handshakeHeaderLen]byte // the message's header, gathered across fragments
		have  int                      // handshake bytes in b so far
		total = -1                     // the message's length with its header, once known
	)
	for off := 0; ; {
		if len(b)-off < recordHeaderLen {
			need := off + recordHeaderLen + max(total-have, 1)
			return nil, needMore(len(b), need), need
		}
		if b[off] != recordTypeHandshake {
			return nil, Malformed, 0 // a handshake message may not be interleaved with other records
		}
		n := int(b[off+3])<<8 | int(b[off+4])
		if n == 0 || n > maxRecord {
			return nil, Malformed, 0 // RFC 8446 §5.1: no empty handshake fragments, none above 2^14
		}
		end := off + recordHeaderLen + n
		frag := b[off+recordHeaderLen : min(end, len(b))]
		for i := 0; have+i < handshakeHeaderLen && i < len(frag); i++ {
			hdr[have+i] = frag[i]
		}
		have += len(frag)
		if total < 0 && have >= handshakeHeaderLen {
			if hdr[0] != typeClientHello {
				return nil, Malformed, 0
			}
			total = handshakeHeaderLen + (int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3]))
			if total+recordHeaderLen > Max {
				return nil, TooLarge, 0 // known from the length alone: decide now, not at Max bytes
			}
		}
		if total >= 0 && have >= total {
			if off == 0 {
				return frag[:total], Complete, 0 // one record holds it: no copy
			}
			return joinFragments(b, total), Complete, 0
		}
		if end > len(b) {
			// The record is cut short: the rest of the message comes
			// first in it, then (when the message is longer than the
			// record) after at least one more record header. The record's
			// own end is not needed: a message may end before it does.
			short := end - len(b)
			need := len(b) + handshakeHeaderLen - have // the length is not known yet
			if total >= 0 {
				if rest := total - have; rest <= short {
					need = len(b) + rest
				} else {
					need = len(b) + short + recordHeaderLen + rest - short
				}
			}
			return nil, needMore(len(b), need), need
		}
		off = end
	}
}

// joinFragments copies the first total handshake bytes out of the
// records at the start of b, which handshakeMessage has checked.
func joinFragments(b []byte, total int) []byte {
	msg := make([]byte, 0, total)
	for off := 0; len(msg) < total; {
		n := int(b[off+3])<<8 | int(b[off+4])
		frag := b[off+recordHeaderLen : min(off+recordHeaderLen+n, len(b))] // the last may be cut short
		msg = append(msg, frag[:min(len(frag), total-len(msg))]...)
		off += recordHeaderLen + n
	}
	return msg
}

// needMore says NeedMore, or TooLarge when the bytes the item needs at
// least (need, counted from the start) would not fit in Max.
func needMore(have, need int) Status {
	if need > Max || have >= Max {
		return TooLarge
	}
	return NeedMore
}

// parseClientHelloMsg reads a ClientHello message (RFC 8446 §4.1.2) the
// way crypto/tls's clientHelloMsg.unmarshal does, keeping only the
// server name and the ALPN list.
func parseClientHelloMsg(msg []byte) (Hello, Status) {
	s := reader(msg[handshakeHeaderLen:])
	var body reader
	if !s.skip(2+32) || // legacy_version, random
		!s.prefixed8(nil) || // legacy_session_id
		!s.prefixed16(&body) || len(body)%2 != 0 || // cipher_suites
		!s.prefixed8(nil) { // legacy_compression_methods
		return Hello{}, Malformed
	}
	var h Hello
	if len(s) == 0 {
		return h, Complete // extensions are optional before TLS 1.3
	}
	var exts reader
	if !s.prefixed16(&exts) || len(s) != 0 {
		return Hello{}, Malformed
	}
	var seenName, seenALPN bool
	for len(exts) > 0 {
		var typ uint16
		var data reader
		if !exts.uint16(&typ) || !exts.prefixed16(&data) {
			return Hello{}, Malformed
		}
		switch typ {
		case extServerName:
			if seenName || !parseServerName(data, &h) {
				return Hello{}, Malformed
			}
			seenName = true
		case extALPN:
			if seenALPN || !parseALPN(data, &h) {
				return Hello{}, Malformed
			}
			seenALPN = true
		}
	}
	return h, Complete
}

// parseServerName reads a server_name extension (RFC 6066 §3): one
// host_name at most; names of other types are skipped.
func parseServerName(data reader, h *Hello) bool {
	var list reader
	if !data.prefixed16(&list) || len(list) == 0 || len(data) != 0 {
		return false
	}
	found := false
	for len(list) > 0 {
		var typ uint8
		var name reader
		if !list.uint8(&typ) || !list.prefixed16(&name) || len(name) == 0 {
			return false
		}
		if typ != hostNameType {
			continue
		}
		if found {
			return false // RFC 6066 §3: one name per type
		}
		found = true
		h.ServerName = hostName(name)
	}
	return true
}

// hostName lowercases an ASCII host name and strips one trailing dot
// (RFC 6066 §3 forbids it; some clients send it anyway).
func hostName(b []byte) string {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	lower := true
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			lower = false
			break
		}
	}
	if lower {
		return string(b)
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// ALPN bounds on what a Hello keeps of the client's list: the whole list
// is checked, but a session keeps its Hello (the log's alpn field) for its
// life, and a 16 KiB hello can offer ~8,000 one-byte protocols. A route
// matches the client's order, so the first ones are the ones that count;
// real clients offer 2 or 3.
const (
	MaxALPN      = 8   // protocols kept, the client's first
	MaxALPNBytes = 255 // their bytes in all (one protocol's bound)
)

// parseALPN reads an application_layer_protocol_negotiation extension
// (RFC 7301 §3.1): a non-empty list of non-empty names. It keeps the
// first MaxALPN names while they fit in MaxALPNBytes in all.
func parseALPN(data reader, h *Hello) bool {
	var list reader
	if !data.prefixed16(&list) || len(list) == 0 || len(data) != 0 {
		return false
	}
	kept, full := 0, false
	for len(list) > 0 {
		var name reader
		if !list.prefixed8(&name) || len(name) == 0 {
			return false
		}
		if full = full || len(h.ALPN) == MaxALPN || kept+len(name) > MaxALPNBytes; !full {
			kept += len(name)
			h.ALPN = append(h.ALPN, string(name))
		}
	}
	return true
}

// reader consumes big-endian fields from the front of a byte slice, as
// golang.org/x/crypto/cryptobyte does (peek imports no more than it must).
type reader []byte

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) uint8(v *uint8) bool {
	if len(*r) < 1 {
		return false
	}
	*v = (*r)[0]
	*r = (*r)[1:]
	return true
}

func (r *reader) uint16(v *uint16) bool {
	if len(*r) < 2 {
		return false
	}
	*v = uint16((*r)[0])<<8 | uint16((*r)[1])
	*r = (*r)[2:]
	return true
}

// prefixed8 takes a field with a one-byte length; out may be nil.
func (r *reader) prefixed8(out *reader) bool {
	var n uint8
	return r.uint8(&n) && r.take(int(n), out)
}

// prefixed16 takes a field with a two-byte length; out may be nil.
func (r *reader) prefixed16(out *reader) bool {
	var n uint16
	return r.uint16(&n) && r.take(int(n), out)
}

func (r *reader) take(n int, out *reader) bool {
	if len(*r) < n {
		return false
	}
	if out != nil {
		*out = (*r)[:n]
	}
	*r = (*r)[n:]
	return true
}
