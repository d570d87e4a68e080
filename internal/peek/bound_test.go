package peek

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A hello offering thousands of ALPN protocols is read whole (the list is
// well-formed) but its Hello keeps only the client's first MaxALPN: a
// session keeps its Hello for its life, and a 16 KiB hello must not cost
// it ~85 KB of strings.
func TestALPNKeptIsBounded(t *testing.T) {
	var many []string
	for i := range 3000 {
		many = append(many, fmt.Sprintf("%x", i))
	}
	b := clientHello(t, &tls.Config{ServerName: "a.test", NextProtos: many})
	h, st := ParseClientHello(b)
	if st != Complete {
		t.Fatalf("%d-byte hello: %s", len(b), st)
	}
	if !slices.Equal(h.ALPN, many[:MaxALPN]) {
		t.Fatalf("kept %d protocols %v, want the first %d", len(h.ALPN), h.ALPN[:min(len(h.ALPN), 12)], MaxALPN)
	}
	if ref, ok := stdlibHello(b); !ok || !equalHello(ref, h) {
		t.Fatalf("crypto/tls (capped) saw %+v, parser %+v", ref, h)
	}

	// Long names: the byte bound stops before the count bound.
	long := []string{strings.Repeat("a", 200), strings.Repeat("b", 50), "cccccc", "d"}
	h, st = ParseClientHello(clientHello(t, &tls.Config{NextProtos: long}))
	if st != Complete || !slices.Equal(h.ALPN, long[:2]) {
		t.Fatalf("long names: kept %q (%s), want the first 2 (the third passes 255 bytes; none after it)", h.ALPN, st)
	}
}

// A hello in 1-byte records, read one byte at a time with a parse after
// each read (what the relay does), costs a bounded number of allocations
// in all: the fragments are joined once, when the message is complete,
// not re-copied on every read.
func TestSplitHelloIncrementalAllocs(t *testing.T) {
	b := resplit(t, clientHello(t, helloConfigs[0].cfg), 1)
	w := Want{Hello: true}
	allocs := testing.AllocsPerRun(3, func() {
		for i := 1; i < len(b); i++ {
			if _, st := ParseClientHello(b[:i]); st != NeedMore {
				t.Fatalf("prefix %d: %s", i, st)
			}
			if r, _ := Scan(b[:i], w, false, false); r.HelloStatus != NeedMore {
				t.Fatalf("scan prefix %d: %s", i, r.HelloStatus)
			}
		}
		if h, st := ParseClientHello(b); st != Complete || !equalHello(h, helloConfigs[0].want) {
			t.Fatalf("whole: %+v %s", h, st)
		}
	})
	// The last parse: the joined message and three strings. Per-read
	// copies would cost thousands (one per read past the first record).
	if allocs > 8 {
		t.Fatalf("%v allocations parsing a %d-byte split hello incrementally, want ≤ 8", allocs, len(b))
	}
}
