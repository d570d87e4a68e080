package peek

import (
	"bytes"
	"crypto/tls"
	"errors"
	"reflect"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// A header then a hello, arriving one byte at a time: every read but
// the last asks for more, and the last gives both.
func TestScanOneByteAtATime(t *testing.T) {
	hello := clientHello(t, &tls.Config{ServerName: "db.example.com", NextProtos: []string{"h2"}})
	for _, v := range []uint8{V1, V2} {
		hdr := AppendHeader(nil, v, &Out{Src: ap("203.0.113.9:41000"), Dst: ap("192.0.2.1:443")})
		b := append(bytes.Clone(hdr), hello...)
		for i := range len(b) {
			r, more := Scan(b[:i], Want{Proxy: Any, Hello: true}, true, false)
			if !more {
				t.Fatalf("v%d: %d of %d bytes: no more asked (%+v)", v, i, len(b), r)
			}
			if i >= len(hdr) && (r.ProxyStatus != Complete || r.ProxyLen != len(hdr)) {
				t.Fatalf("v%d: %d bytes: header not complete: %+v", v, i, r)
			}
		}
		r, more := Scan(b, Want{Proxy: Any, Hello: true}, true, false)
		if more || r.ProxyStatus != Complete || r.HelloStatus != Complete ||
			r.Proxy.Src != ap("203.0.113.9:41000") || r.Hello.ServerName != "db.example.com" || r.ProxyLen != len(hdr) {
			t.Fatalf("v%d: whole: %+v more %v", v, r, more)
		}
	}
}

func TestScan(t *testing.T) {
	v1 := AppendHeader(nil, V1, &Out{Src: ap("203.0.113.9:41000"), Dst: ap("192.0.2.1:443")})
	v2 := AppendHeader(nil, V2, &Out{Src: ap("203.0.113.9:41000"), Dst: ap("192.0.2.1:443")})
	hello := clientHello(t, &tls.Config{ServerName: "a.test"})
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name    string
		b       []byte
		w       Want
		trusted bool
		eof     bool
		proxy   Status
		err     error
		hello   Status
		more    bool
	}{
		{"untrusted v1 refused", v1, Want{Proxy: Any}, false, false, Malformed, ErrUntrusted, Absent, false},
		{"untrusted v2 signature alone refused", v2[:12], Want{Proxy: Any, Hello: true}, false, false, Malformed, ErrUntrusted, Absent, false},
		{"no PROXY wanted: a header is still refused", v1, Want{Hello: true}, true, false, Malformed, ErrUntrusted, Absent, false},
		{"untrusted prefix waits", []byte("PRO"), Want{Proxy: Any}, false, false, NeedMore, nil, Absent, true},
		{"untrusted prefix then EOF is data", []byte("PRO"), Want{Proxy: Any, Hello: true}, false, true, Absent, nil, Absent, false},
		{"untrusted TLS client", hello, Want{Proxy: Any, Hello: true}, false, false, Absent, nil, Complete, false},
		{"trusted without header", hello, Want{Proxy: Any, Hello: true}, true, false, Absent, nil, Complete, false},
		{"trusted truncated at EOF", v2[:20], Want{Proxy: Any}, true, true, Malformed, ErrMalformed, Absent, false},
		{"trusted signature prefix then EOF", []byte("\r\n\r\n"), Want{Proxy: Any, Hello: true}, true, true, Absent, nil, Absent, false},
		{"version not accepted", v2, Want{Proxy: V1}, true, false, Malformed, ErrVersion, Absent, false},
		{"bad v1 numbers", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"), Want{Proxy: Any}, true, false, Malformed, ErrMalformed, Absent, false},
		{"v1 without LF", append([]byte("PROXY "), bytes.Repeat([]byte{'x'}, 200)...), Want{Proxy: Any}, true, false, TooLarge, ErrMalformed, Absent, false},
		{"header, no hello wanted", cat(v1, []byte("GET /")), Want{Proxy: Any}, true, false, Complete, nil, Absent, false},
		{"header then plain text", cat(v2, []byte("GET /")), Want{Proxy: Any, Hello: true}, true, false, Complete, nil, Absent, false},
		{"header then nothing yet", v2, Want{Proxy: Any, Hello: true}, true, false, Complete, nil, NeedMore, true},
		{"header then EOF: nothing sent", v2, Want{Proxy: Any, Hello: true}, true, true, Complete, nil, Absent, false},
		{"LOCAL then EOF (a health check)", AppendLocal(nil, V2), Want{Proxy: Any, Hello: true}, true, true, Complete, nil, Absent, false},
		{"hello cut by EOF", hello[:40], Want{Hello: true}, false, true, Absent, nil, Malformed, false},
		{"nothing yet", nil, Want{Proxy: Any, Hello: true}, true, false, NeedMore, nil, Absent, true},
		{"nothing at all", nil, Want{Proxy: Any, Hello: true}, true, true, Absent, nil, Absent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, more := Scan(tc.b, tc.w, tc.trusted, tc.eof)
			if r.ProxyStatus != tc.proxy || r.HelloStatus != tc.hello || more != tc.more {
				t.Fatalf("proxy %s hello %s more %v; want %s %s %v (%+v)", r.ProxyStatus, r.HelloStatus, more, tc.proxy, tc.hello, tc.more, r)
			}
			if tc.err == nil && r.ProxyErr != nil || tc.err != nil && !errors.Is(r.ProxyErr, tc.err) {
				t.Fatalf("err %v, want %v", r.ProxyErr, tc.err)
			}
			if r.ProxyStatus == Complete && r.ProxyLen == 0 || r.ProxyStatus != Complete && r.ProxyLen != 0 {
				t.Fatalf("ProxyLen %d with %s", r.ProxyLen, r.ProxyStatus)
			}
		})
	}
}

// At Max bytes nothing waits: an incomplete hello is too large.
func TestScanStopsAtMax(t *testing.T) {
	b := bytes.Repeat([]byte{recordTypeHandshake, 3, 1, 0, 1, 0}, Max)[:Max]
	b[5], b[17] = typeClientHello, 0x30
	r, more := Scan(b, Want{Hello: true}, false, false)
	if more || r.HelloStatus != TooLarge {
		t.Fatalf("%+v more %v", r, more)
	}
}

func proxySeeds(f *testing.F) {
	for _, v := range []uint8{V1, V2} {
		f.Add(AppendHeader(nil, v, &Out{Src: ap("192.0.2.1:1"), Dst: ap("192.0.2.2:2")}))
		f.Add(AppendHeader(nil, v, &Out{Src: ap("[2001:db8::1]:1"), Dst: ap("[2001:db8::2]:2"), Authority: "a.test", ALPN: "h2", UniqueID: 42}))
		f.Add(AppendLocal(nil, v))
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"))
	f.Add([]byte("PROXY TCP6 ::1 ::2 1 2\r\nGET /"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(append(bytes.Clone(proxyproto.SIGV2), 0x21, 0x11, 0xff, 0xff))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
}

// FuzzProxyHeader feeds a stream one byte at a time: HeaderLen says
// need_more until it says complete at the length go-proxyproto reads;
// a header that parses formats back to a header that parses the same,
// and formatting is stable (parse, format, parse, format: same bytes).
func FuzzProxyHeader(f *testing.F) {
	proxySeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, st := 0, NeedMore
		for i := 0; i <= len(b) && st == NeedMore; i++ {
			n, st = HeaderLen(b[:i])
			if st == Complete && n != i {
				t.Fatalf("complete at %d bytes with length %d", i, n)
			}
		}
		if st != Complete {
			return
		}
		h, err := ParseHeader(b[:n], Any)
		ln, lh, lerr := libraryLen(b)
		if (err == nil) != (lerr == nil) {
			// The library does not check a CRC32c, an SSL TLV, a unique
			// ID's length, or families pier refuses; nothing else differs.
			if err == nil || lh == nil {
				t.Fatalf("parser %v, library %v", err, lerr)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if ln != n {
			t.Fatalf("framed %d bytes, library read %d", n, ln)
		}
		if h.Local {
			return
		}
		var id uint64
		for _, c := range h.UniqueID {
			id = id*10 + uint64(c-'0')
		}
		out := Out{Src: h.Src, Dst: h.Dst, Authority: h.Authority, ALPN: h.ALPN, UniqueID: id}
		b1 := AppendHeader(nil, h.Version, &out)
		h1, err := ParseHeader(b1, Any)
		if err != nil {
			t.Fatalf("reformatted header %q: %v", b1, err)
		}
		if h1.Src != h.Src || h1.Dst != h.Dst || h1.Authority != h.Authority || h1.ALPN != h.ALPN {
			t.Fatalf("round trip: %+v then %+v", h, h1)
		}
		b2 := AppendHeader(nil, h1.Version, &Out{Src: h1.Src, Dst: h1.Dst, Authority: h1.Authority, ALPN: h1.ALPN, UniqueID: id})
		if !bytes.Equal(b1, b2) {
			t.Fatalf("format unstable: %q then %q", b1, b2)
		}
	})
}

// FuzzScan: garbage, truncated and oversized input never panics; more
// is never asked with eof or at Max; a result that needs no more stays
// the same when more bytes come (a decision is never taken back);
// ProxyLen is within b.
func FuzzScan(f *testing.F) {
	proxySeeds(f)
	helloSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > Max {
			b = b[:Max]
		}
		for _, w := range []Want{{Proxy: Any, Hello: true}, {Proxy: V1}, {Proxy: V2, Hello: true}, {Hello: true}} {
			for _, trusted := range []bool{true, false} {
				if _, more := Scan(b, w, trusted, false); more && len(b) == Max {
					t.Fatal("more at Max")
				}
				whole, wmore := Scan(b, w, trusted, true)
				if wmore {
					t.Fatal("more with eof")
				}
				if whole.ProxyLen < 0 || whole.ProxyLen > len(b) {
					t.Fatalf("ProxyLen %d of %d", whole.ProxyLen, len(b))
				}
				// Every prefix of a short input; of a long one, prefixes
				// ever further apart (each Scan reads from the start).
				for i := 0; i <= len(b); i += 1 + i/64 {
					r, more := Scan(b[:i], w, trusted, false)
					if more && i == Max {
						t.Fatal("more at Max")
					}
					if !more && i < len(b) && !sameResult(r, whole) {
						t.Fatalf("%+v trusted %v: decided at %d bytes %+v, at %d %+v", w, trusted, i, r, len(b), whole)
					}
					if !more {
						break
					}
				}
			}
		}
	})
}

// sameResult compares what a caller acts on (errors by their kind).
func sameResult(a, b Result) bool {
	kind := func(err error) error {
		for _, e := range []error{ErrUntrusted, ErrVersion, ErrMalformed} {
			if errors.Is(err, e) {
				return e
			}
		}
		return err
	}
	return a.ProxyStatus == b.ProxyStatus && a.ProxyLen == b.ProxyLen && reflect.DeepEqual(a.Proxy, b.Proxy) &&
		kind(a.ProxyErr) == kind(b.ProxyErr) && a.HelloStatus == b.HelloStatus && equalHello(a.Hello, b.Hello)
}
