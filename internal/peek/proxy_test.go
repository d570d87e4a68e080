package peek

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// libraryLen is how many bytes of b go-proxyproto's reader consumes as
// the header when it reads a stream that starts with b.
func libraryLen(b []byte) (int, *proxyproto.Header, error) {
	r := bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16))
	h, err := proxyproto.Read(r)
	return len(b) - r.Buffered(), h, err
}

// libraryHeader formats a header with go-proxyproto itself.
func libraryHeader(t testing.TB, version byte, src, dst string, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	s, d := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst))
	h := proxyproto.HeaderProxyFromAddrs(version, s, d)
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHeaderV1V2RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint8
		out     Out
		want    Header
	}{
		{"v1 ipv4", V1, Out{Src: ap("192.0.2.1:5000"), Dst: ap("198.51.100.2:443")},
			Header{Version: V1, Src: ap("192.0.2.1:5000"), Dst: ap("198.51.100.2:443")}},
		{"v1 ipv6", V1, Out{Src: ap("[2001:db8::1]:5000"), Dst: ap("[2001:db8::2]:443")},
			Header{Version: V1, Src: ap("[2001:db8::1]:5000"), Dst: ap("[2001:db8::2]:443")}},
		{"v1 mixed: TCP6, unmapped on reading", V1, Out{Src: ap("192.0.2.1:5000"), Dst: ap("[2001:db8::2]:443")},
			Header{Version: V1, Src: ap("192.0.2.1:5000"), Dst: ap("[2001:db8::2]:443")}},
		{"v1 mapped source is IPv4", V1, Out{Src: ap("[::ffff:192.0.2.1]:5000"), Dst: ap("198.51.100.2:443")},
			Header{Version: V1, Src: ap("192.0.2.1:5000"), Dst: ap("198.51.100.2:443")}},
		{"v1 drops TLVs", V1, Out{Src: ap("192.0.2.1:1"), Dst: ap("192.0.2.2:2"), Authority: "a.test", UniqueID: 7},
			Header{Version: V1, Src: ap("192.0.2.1:1"), Dst: ap("192.0.2.2:2")}},
		{"v2 ipv4", V2, Out{Src: ap("192.0.2.1:5000"), Dst: ap("198.51.100.2:443")},
			Header{Version: V2, Src: ap("192.0.2.1:5000"), Dst: ap("198.51.100.2:443")}},
		{"v2 ipv6 TLVs", V2, Out{Src: ap("[2001:db8::1]:65535"), Dst: ap("[2001:db8::2]:1"), Authority: "db.example.com", ALPN: "h2", UniqueID: 18446744073709551615},
			Header{Version: V2, Src: ap("[2001:db8::1]:65535"), Dst: ap("[2001:db8::2]:1"), Authority: "db.example.com", ALPN: "h2", UniqueID: []byte("18446744073709551615")}},
		{"v2 no addresses is LOCAL", V2, Out{Authority: "x"}, Header{Version: V2, Local: true}},
		{"v1 no addresses is UNKNOWN", V1, Out{}, Header{Version: V1, Local: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendHeader([]byte("keep"), tc.version, &tc.out)
			if string(b[:4]) != "keep" {
				t.Fatal("AppendHeader lost dst")
			}
			b = b[4:]
			n, st := HeaderLen(append(b, "data"...))
			if st != Complete || n != len(b) {
				t.Fatalf("HeaderLen = %d, %s; want %d", n, st, len(b))
			}
			h, err := ParseHeader(b, Any)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tc.want) {
				t.Fatalf("got %+v\nwant %+v", h, tc.want)
			}
			// The library reads the same header from the same bytes.
			ln, lh, err := libraryLen(append(b, "data"...))
			if err != nil || ln != len(b) {
				t.Fatalf("library: %d bytes, %v", ln, err)
			}
			if lh.Command.IsLocal() != tc.want.Local {
				t.Fatalf("library command %v", lh.Command)
			}
		})
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestAppendLocal(t *testing.T) {
	if got := string(AppendLocal(nil, V1)); got != "PROXY UNKNOWN\r\n" {
		t.Errorf("v1 local = %q", got)
	}
	// Spec §2.2: version 2, command LOCAL (0x20), family UNSPEC, length 0.
	want := append(bytes.Clone(proxyproto.SIGV2), 0x20, 0x00, 0, 0)
	if got := AppendLocal(nil, V2); !bytes.Equal(got, want) {
		t.Errorf("v2 local = %x, want %x", got, want)
	}
	for _, v := range []uint8{V1, V2} {
		h, err := ParseHeader(AppendLocal(nil, v), Any)
		if err != nil || !h.Local || h.Version != v {
			t.Errorf("v%d local parsed as %+v, %v", v, h, err)
		}
	}
}

// HeaderLen frames exactly what go-proxyproto's reader consumes.
func TestHeaderLenMatchesLibrary(t *testing.T) {
	for _, b := range [][]byte{
		libraryHeader(t, 1, "192.0.2.1:1", "192.0.2.2:2"),
		libraryHeader(t, 1, "[2001:db8::1]:1", "[2001:db8::2]:2"),
		libraryHeader(t, 2, "192.0.2.1:1", "192.0.2.2:2"),
		libraryHeader(t, 2, "[2001:db8::1]:1", "[2001:db8::2]:2", proxyproto.TLV{Type: proxyproto.PP2_TYPE_NOOP, Value: make([]byte, 300)}),
		[]byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		AppendLocal(nil, V2),
	} {
		stream := append(bytes.Clone(b), "\x16\x03\x01 after"...)
		ln, _, err := libraryLen(stream)
		if err != nil {
			t.Fatalf("%q: library: %v", b, err)
		}
		n, st := HeaderLen(stream)
		if st != Complete || n != ln || n != len(b) {
			t.Fatalf("%q: HeaderLen %d %s, library %d", b, n, st, ln)
		}
		for i := range len(b) {
			if _, st := HeaderLen(b[:i]); st != NeedMore {
				t.Fatalf("%q: prefix %d: %s, want need_more", b, i, st)
			}
		}
	}
}

func TestHeaderLenBounds(t *testing.T) {
	long := []byte("PROXY TCP4 " + strings.Repeat("1", 200))
	if _, st := HeaderLen(long); st != TooLarge {
		t.Errorf("v1 without LF in 107 bytes: %s", st)
	}
	if _, st := HeaderLen(long[:MaxV1-1]); st != NeedMore {
		t.Errorf("v1 of 106 bytes without LF: %s", st)
	}
	// LF as byte 107 is within the bound; as byte 108 it is not.
	in := append(bytes.Repeat([]byte("P"), MaxV1-1), '\n')
	copy(in, "PROXY ")
	if n, st := HeaderLen(in); st != Complete || n != MaxV1 {
		t.Errorf("LF at 107: %d %s", n, st)
	}
	v2 := append(bytes.Clone(proxyproto.SIGV2), 0x21, 0x11, 0, 0)
	binary.BigEndian.PutUint16(v2[14:], proxyproto.MaxV2HeaderSize+1)
	if _, st := HeaderLen(v2); st != TooLarge {
		t.Errorf("v2 length over the bound: %s", st)
	}
	binary.BigEndian.PutUint16(v2[14:], proxyproto.MaxV2HeaderSize)
	if _, st := HeaderLen(v2); st != NeedMore {
		t.Errorf("v2 at the bound, body missing: %s", st)
	}
	for _, s := range []string{"GET /", "\x16\x03\x01", "PROX\x00", "\r\n\r\n\x00\r\nQUI\x00"} {
		if _, st := HeaderLen([]byte(s)); st != Absent {
			t.Errorf("%q: %s, want absent", s, st)
		}
	}
}

// Spec §2.1: ports are 0..65535 in decimal without leading zeros,
// addresses in their family's form, fields separated by single spaces.
func TestV1BadNumbers(t *testing.T) {
	for _, line := range []string{
		"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 1\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 080 1\r\n",
		"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
		"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
		"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY\r\n",
	} {
		h, err := ParseHeader([]byte(line), Any)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %+v, %v; want ErrMalformed", line, h, err)
		}
	}
	if _, err := ParseHeader([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"), Any); !errors.Is(err, proxyproto.ErrInvalidPortNumber) {
		t.Errorf("the library's reason is kept: %v", err)
	}
}

func TestParseHeaderVersion(t *testing.T) {
	v1 := libraryHeader(t, 1, "192.0.2.1:1", "192.0.2.2:2")
	v2 := libraryHeader(t, 2, "192.0.2.1:1", "192.0.2.2:2")
	if _, err := ParseHeader(v2, V1); !errors.Is(err, ErrVersion) {
		t.Errorf("v2 to a v1 route: %v", err)
	}
	if _, err := ParseHeader(v1, V2); !errors.Is(err, ErrVersion) {
		t.Errorf("v1 to a v2 route: %v", err)
	}
	if _, err := ParseHeader(append(v1, 'x'), Any); !errors.Is(err, ErrMalformed) {
		t.Errorf("a header and more: %v", err)
	}
	if _, err := ParseHeader(v2[:20], Any); !errors.Is(err, ErrMalformed) {
		t.Errorf("a cut header: %v", err)
	}
}

// v2 TLVs a balancer sends (spec §2.2.1–2.2.6) are read: ALPN,
// authority, unique ID, SSL; a CRC32c is checked.
func TestHeaderTLVs(t *testing.T) {
	ssl, err := tlvparse.PP2SSL{
		Client: tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN,
		Verify: 0,
		TLV: []proxyproto.TLV{
			{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte("client.example")},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte("TLS_AES_128_GCM_SHA256")},
		},
	}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b := libraryHeader(t, 2, "[2001:db8::7]:40000", "192.0.2.2:443",
		proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte("h2")},
		proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("db.example.com")},
		proxyproto.TLV{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte("req-1")},
		ssl,
		proxyproto.TLV{Type: 0xE0, Value: []byte("custom, ignored")},
	)
	h, err := ParseHeader(b, V2)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{
		Version: V2, Src: ap("[2001:db8::7]:40000"), Dst: ap("192.0.2.2:443"), // mapped on the wire, unmapped here
		ALPN: "h2", Authority: "db.example.com", UniqueID: []byte("req-1"),
		SSL: &SSL{Client: 3, Verified: true, Version: "TLSv1.3", CN: "client.example", Cipher: "TLS_AES_128_GCM_SHA256"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got %+v %+v\nwant %+v %+v", h, h.SSL, want, want.SSL)
	}

	// A unique ID over 128 bytes (spec §2.2.5) is refused.
	long := libraryHeader(t, 2, "192.0.2.1:1", "192.0.2.2:2", proxyproto.TLV{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: make([]byte, 129)})
	if _, err := ParseHeader(long, V2); !errors.Is(err, ErrMalformed) {
		t.Errorf("129-byte unique ID: %v", err)
	}
	// A TLV running past the header is refused.
	cut := libraryHeader(t, 2, "192.0.2.1:1", "192.0.2.2:2", proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("abc")})
	cut[len(cut)-4] = 9 // the authority's length: 0x0009, beyond the end
	if _, err := ParseHeader(cut, V2); !errors.Is(err, ErrMalformed) {
		t.Errorf("overrunning TLV: %v", err)
	}
}

func TestHeaderCRC32c(t *testing.T) {
	b := libraryHeader(t, 2, "192.0.2.1:1", "192.0.2.2:2", proxyproto.TLV{Type: proxyproto.PP2_TYPE_CRC32C, Value: make([]byte, 4)})
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(b[len(b)-4:], sum)
	if _, err := ParseHeader(b, V2); err != nil {
		t.Fatalf("good checksum: %v", err)
	}
	b[len(b)-1]++
	if _, err := ParseHeader(b, V2); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad checksum: %v", err)
	}
}

// A v2 PROXY command for UDP or a UNIX socket is refused: pier relays
// TCP, and the spec lets a receiver refuse a family it does not support.
func TestHeaderNotTCP(t *testing.T) {
	for _, fam := range []proxyproto.AddressFamilyAndProtocol{proxyproto.UDPv4, proxyproto.UnixStream} {
		b := append(bytes.Clone(proxyproto.SIGV2), 0x21, byte(fam), 0, 0)
		l := addressLen(byte(fam))
		binary.BigEndian.PutUint16(b[14:], uint16(l))
		b = append(b, make([]byte, l)...)
		if _, err := ParseHeader(b, V2); !errors.Is(err, ErrMalformed) {
			t.Errorf("family %#x: %v", byte(fam), err)
		}
	}
}
