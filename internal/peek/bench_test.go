package peek

import (
	"crypto/tls"
	"testing"
)

// The costs a session on a PROXY or shared listener pays once, at its
// start: compare with a connection's ~10 µs of accept, dial and close.

func BenchmarkScanHeaderV2AndHello(b *testing.B) {
	buf := AppendHeader(nil, V2, &Out{Src: ap("203.0.113.9:41000"), Dst: ap("192.0.2.1:443"), Authority: "db.example.com", UniqueID: 1})
	buf = append(buf, clientHello(b, &tls.Config{ServerName: "db.example.com", NextProtos: []string{"h2"}})...)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := Scan(buf, Want{Proxy: Any, Hello: true}, true, false); r.HelloStatus != Complete {
			b.Fatal(r)
		}
	}
}

func BenchmarkParseHeaderV1(b *testing.B) {
	buf := AppendHeader(nil, V1, &Out{Src: ap("203.0.113.9:41000"), Dst: ap("192.0.2.1:443")})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(buf, Any); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	buf := clientHello(b, &tls.Config{ServerName: "db.example.com", NextProtos: []string{"h2", "http/1.1"}})
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, st := ParseClientHello(buf); st != Complete {
			b.Fatal(st)
		}
	}
}

func BenchmarkAppendHeaderV2(b *testing.B) {
	o := &Out{Src: ap("203.0.113.9:41000"), Dst: ap("192.0.2.1:443"), Authority: "db.example.com", UniqueID: 12345}
	b.ReportAllocs()
	var dst []byte
	for b.Loop() {
		dst = AppendHeader(dst[:0], V2, o)
	}
}

func BenchmarkAppendHeaderV1(b *testing.B) {
	o := &Out{Src: ap("203.0.113.9:41000"), Dst: ap("192.0.2.1:443")}
	b.ReportAllocs()
	var dst []byte
	for b.Loop() {
		dst = AppendHeader(dst[:0], V1, o)
	}
}
