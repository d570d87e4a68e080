package peek

import (
	"errors"
	"fmt"

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
	// HelloNeed, when Scan says more for the hello, is the fewest bytes
	// b must hold (from its start, the header's included) before the
	// hello can be complete: no need to Scan again before then, or before
	// EOF (see ParseClientHelloNeed). 0 otherwise.
	HelloNeed int
}

// Scan is the one call the data path makes after each read: b is every
// byte read so far, trusted says whether the socket peer may send a PROXY
// header, eof that the client will send no more. It looks for a PROXY
// header first (from an untrusted peer a full signature is Malformed
// with ErrUntrusted; a signature prefix waits only while it could still
// complete), then for a ClientHello in b[ProxyLen:]. more reports that
// reading more could change the result; it is never true with eof or at
// len(b) == Max (then an incomplete item is TooLarge). A result with
// more false stays the same however many bytes follow (FuzzScan).
//
// When the header is not Complete or Absent, the hello is not looked
// for (HelloStatus Absent, more false): the client is to be closed. A
// header followed by EOF and nothing else (a balancer's health check)
// has HelloStatus Absent; a hello cut short by EOF is Malformed.
func Scan(b []byte, w Want, trusted bool, eof bool) (r Result, more bool) {
	r.ProxyStatus, r.HelloStatus = Absent, Absent
	if len(b) > Max {
		b = b[:Max] // the caller's bound; never look past it
	}
	n, st := HeaderLen(b)
	switch {
	case st == Absent:
	case w.Proxy == 0 || !trusted:
		// A header from a peer that may not send one is refused, never
		// passed on as data; a prefix of a signature waits while it
		// could still become one.
		if fullSignature(b) {
			r.ProxyStatus, r.ProxyErr = Malformed, ErrUntrusted
			return r, false
		}
		if !eof && len(b) < Max {
			r.ProxyStatus = NeedMore
			return r, true
		}
	case st == NeedMore:
		if !fullSignature(b) && eof {
			break // "PRO" and then EOF: plain data, not a header
		}
		if eof {
			r.ProxyStatus, r.ProxyErr = Malformed, fmt.Errorf("%w: truncated at %d bytes", ErrMalformed, len(b))
			return r, false
		}
		r.ProxyStatus = NeedMore
		return r, true
	case st == TooLarge:
		r.ProxyStatus, r.ProxyErr = TooLarge, fmt.Errorf("%w: longer than its bound", ErrMalformed)
		return r, false
	default: // Complete
		h, err := ParseHeader(b[:n], w.Proxy)
		if err != nil {
			r.ProxyStatus, r.ProxyErr = Malformed, err
			return r, false
		}
		r.ProxyStatus, r.ProxyLen, r.Proxy = Complete, n, h
	}
	if !w.Hello {
		return r, false
	}
	rest := b[r.ProxyLen:]
	var need int
	r.Hello, r.HelloStatus, need = ParseClientHelloNeed(rest)
	if r.HelloStatus == NeedMore {
		switch {
		case eof && len(rest) == 0:
			r.HelloStatus = Absent // the client sent nothing (after its header): not TLS
		case eof:
			r.HelloStatus = Malformed // cut short by the client's FIN
		case len(b) >= Max:
			r.HelloStatus = TooLarge
		default:
			more = true
			r.HelloNeed = r.ProxyLen + need
		}
	}
	return r, more
}
