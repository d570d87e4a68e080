package peek

import "testing"

// HelloNeed is a lower bound of the bytes a split hello completes at, and
// a reader that parses again only once it holds that many bytes reaches
// the complete hello at the same byte as one that parses after every
// byte, in far fewer parses: with 1-byte records, about one per record.
func TestHelloNeedSkipsToCompletion(t *testing.T) {
	for _, tc := range helloConfigs {
		for _, size := range []int{1, 3, 40, maxRecord} {
			b := resplit(t, clientHello(t, tc.cfg), size)
			records := 0
			for off := 0; off < len(b); off += recordHeaderLen + (int(b[off+3])<<8 | int(b[off+4])) {
				records++
			}
			parses, need := 0, 0
			for i := 1; i <= len(b); i++ {
				r, more := Scan(b[:i], Want{Hello: true}, false, false)
				if i < len(b) && (!more || r.HelloNeed <= i || r.HelloNeed > len(b)) {
					t.Fatalf("%s/%d: prefix %d of %d: more %v, need %d", tc.name, size, i, len(b), more, r.HelloNeed)
				}
				if i == len(b) && (more || r.HelloStatus != Complete || r.HelloNeed != 0) {
					t.Fatalf("%s/%d: whole: %s, more %v, need %d", tc.name, size, r.HelloStatus, more, r.HelloNeed)
				}
				if i >= need {
					parses++
					need = r.HelloNeed
				}
			}
			// The first parse and one per record that needs another header
			// walk; the header of the message and its end add a few.
			if parses > records+3 {
				t.Errorf("%s/%d: %d parses for %d records, %d bytes", tc.name, size, parses, records, len(b))
			}
		}
	}
}

// A header's bytes count in HelloNeed: it is counted from the start of
// what Scan was given.
func TestHelloNeedAfterHeader(t *testing.T) {
	hello := clientHello(t, helloConfigs[0].cfg)
	hdr := []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1000 443\r\n")
	b := append(append([]byte(nil), hdr...), hello...)
	r, more := Scan(b[:len(hdr)+10], Want{Proxy: Any, Hello: true}, true, false)
	if !more || r.ProxyStatus != Complete || r.HelloNeed != len(b) {
		t.Fatalf("more %v, proxy %s, need %d; want the whole %d", more, r.ProxyStatus, r.HelloNeed, len(b))
	}
	if r, _ := Scan(b[:len(hdr)+10], Want{Proxy: Any, Hello: true}, true, true); r.HelloNeed != 0 {
		t.Errorf("with eof: need %d", r.HelloNeed)
	}
}
