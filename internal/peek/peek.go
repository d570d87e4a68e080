package peek

import (
	"bytes"
	"errors"
	"net/netip"

	proxyproto "github.com/pires/go-proxyproto"
)

// Max is the most bytes a peek may hold: a ClientHello with post-quantum
// key shares is ~1.8 KB, so 16 KiB leaves room for a PROXY header and
// large extensions while bounding what a silent or hostile client costs.
const Max = 16 << 10

// MaxV1 is the longest v1 header, CRLF included (spec §2.1: 107 bytes).
const MaxV1 = 107

// MaxV2 is the longest v2 header pier accepts: the 16-byte fixed part and
// go-proxyproto's bound on the length field.
var MaxV2 = 16 + int(proxyproto.MaxV2HeaderSize)

// PROXY protocol versions, as Want.Proxy and ParseHeader's accept take
// them (a bit set) and as AppendHeader writes them.
const (
	V1  uint8 = 1
	V2  uint8 = 2
	Any       = V1 | V2 // accept either
)

// Status says what a prefix of a client's bytes holds so far.
type Status uint8

// The statuses of a scan.
const (
	NeedMore  Status = iota // could still become a complete item: read more
	Complete                // a whole item was found
	Absent                  // not there: not TLS, or no PROXY signature
	Malformed               // started as the item, then broke its grammar
	TooLarge                // would not fit in Max (or the item's own bound)
)

var statusNames = [...]string{
	NeedMore:  "need_more",
	Complete:  "complete",
	Absent:    "absent",
	Malformed: "malformed",
	TooLarge:  "too_large",
}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Errors of the PROXY header path; ParseHeader and Scan wrap them, so
// branch with errors.Is.
var (
	// ErrMalformed: the bytes began as a PROXY header and broke its
	// grammar (bad numbers, bad family, truncated at EOF). Close the client.
	ErrMalformed = errors.New("peek: malformed PROXY header")
	// ErrVersion: a well-formed header of a version the route does not
	// accept. Close the client.
	ErrVersion = errors.New("peek: PROXY header version not accepted")
	// ErrUntrusted: a PROXY signature from a socket peer outside the
	// trusted list. Close the client; never pass the bytes on.
	ErrUntrusted = errors.New("peek: PROXY header from an untrusted address")
	// ErrMissing: a required header did not come. Close the client.
	ErrMissing = errors.New("peek: PROXY header required")
)

// Hello is what pier routes on in a TLS ClientHello (RFC 8446 §4.1.2,
// inside TLS records; RFC 8446 §5.1: a handshake message may span
// records): the server_name extension's host_name (RFC 6066 §3) and the
// ALPN protocols (RFC 7301 §3.1), in the client's order of preference.
type Hello struct {
	ServerName string   // lowercased, no trailing dot; "" when absent
	ALPN       []string // nil when absent
}

// ParseClientHello parses a ClientHello from the start of b: NeedMore
// while b is a proper prefix of one, Absent when b is not a TLS handshake
// record, Malformed when it breaks the grammar, TooLarge when it would
// not fit in Max.
func ParseClientHello(b []byte) (Hello, Status) {
	if len(b) == 0 {
		return Hello{}, NeedMore
	}
	return Hello{}, Absent
}

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

// HeaderLen frames a PROXY header at the start of b without parsing its
// fields: Complete with n its length (v1: "PROXY " up to CRLF within
// MaxV1 bytes; v2: the 12-byte signature and 16+length bytes, length ≤
// go-proxyproto's MaxV2HeaderSize), NeedMore while b is a proper prefix
// of a signature or header, Absent when b starts with no signature,
// TooLarge when the header would exceed its bound.
func HeaderLen(b []byte) (n int, st Status) {
	switch {
	case bytes.HasPrefix(b, proxyproto.SIGV2), bytes.HasPrefix(b, proxyproto.SIGV1):
		return 0, NeedMore
	case bytes.HasPrefix(proxyproto.SIGV2, b), bytes.HasPrefix(proxyproto.SIGV1, b):
		return 0, NeedMore
	}
	return 0, Absent
}

// ParseHeader parses b, which is exactly one header (as HeaderLen framed
// it), accepting the versions in accept (V1, V2 or Any). Its errors wrap
// ErrMalformed or ErrVersion.
func ParseHeader(b []byte, accept uint8) (Header, error) {
	return Header{}, ErrMalformed
}

// Out is what a PROXY header sent to an upstream carries.
type Out struct {
	Src, Dst  netip.AddrPort // the original client, and the address it dialed
	Authority string         // v2 PP2_TYPE_AUTHORITY (the SNI); "" none
	ALPN      string         // v2 PP2_TYPE_ALPN; "" none
	UniqueID  uint64         // v2 PP2_TYPE_UNIQUE_ID (the session id); 0 none
}

// AppendHeader appends a version (V1 or V2) header for o to dst. v1
// carries no TLVs. Addresses are unmapped; a mix of IPv4 and IPv6 is
// written as TCP6 with the IPv4 address in its mapped form.
func AppendHeader(dst []byte, version uint8, o *Out) []byte {
	return dst
}

// AppendLocal appends a header that says "use the real endpoints": a v2
// LOCAL command, or v1 "PROXY UNKNOWN\r\n". Health checks send it.
func AppendLocal(dst []byte, version uint8) []byte {
	return dst
}

// Want says what a listener expects in a client's first bytes.
type Want struct {
	// Proxy is the PROXY versions accepted (V1, V2, Any); 0: none, but a
	// signature is still detected (and refused as untrusted).
	Proxy uint8
	// Hello: look for a TLS ClientHello after any PROXY header.
	Hello bool
}

// Result is what Scan found.
type Result struct {
	ProxyStatus Status // Absent when no header was sent (or none wanted)
	ProxyLen    int    // bytes of b that are the header: never passed on
	Proxy       Header // valid when ProxyStatus == Complete
	ProxyErr    error  // wraps ErrMalformed, ErrVersion or ErrUntrusted
	HelloStatus Status // of b[ProxyLen:]; Absent when not wanted
	Hello       Hello  // valid when HelloStatus == Complete
}

// Scan is the one call the data path makes after each read: b is every
// byte read so far, trusted says whether the socket peer may send a PROXY
// header, eof that the client will send no more. It looks for a PROXY
// header first (from an untrusted peer a full signature is Malformed
// with ErrUntrusted; a signature prefix waits only while it could still
// complete), then for a ClientHello in b[ProxyLen:]. more reports that
// reading more could change the result; it is never true with eof or at
// len(b) == Max (then an incomplete item is TooLarge).
func Scan(b []byte, w Want, trusted bool, eof bool) (r Result, more bool) {
	r.ProxyStatus, r.HelloStatus = Absent, Absent
	return r, false
}
