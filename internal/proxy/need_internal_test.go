package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
)

// helloBytes is a ClientHello from crypto/tls for name, in one record.
func helloBytes(t *testing.T, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	}()
	head := make([]byte, 5)
	if _, err := io.ReadFull(b, head); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	a.Close()
	<-done
	return append(head, body...)
}

// A decision that waits for the rest of a ClientHello says how many bytes
// it needs (the PROXY header's counted), so that the relay does not call
// it again on fewer: the parser's figure, beyond what it was given.
func TestPeekedWaitCarriesNeed(t *testing.T) {
	hello := helloBytes(t, "db.example.com")
	hdr := []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1000 443\r\n")
	for _, tc := range []struct {
		name  string
		g     *route.Group
		first []byte
	}{
		{"hello only", &route.Group{NeedsHello: true}, hello[:20]},
		{"after a header", &route.Group{NeedsHello: true, Proxy: &route.ProxyIn{Accept: peek.Any}},
			append(append([]byte(nil), hdr...), hello[:20]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &early{g: tc.g, rec: &session.Record{}, trusted: true, want: peek.Want{Proxy: peek.Any, Hello: true}}
			d := e.peeked(tc.first, false, time.Millisecond)
			want := len(tc.first) - 20 + len(hello)
			if d.Wait <= 0 || d.Need != want {
				t.Fatalf("decision %+v, want a wait with Need %d", d, want)
			}
		})
	}
	// A PROXY header still coming: no hello figure yet, every read counts.
	e := &early{g: &route.Group{NeedsHello: true, Proxy: &route.ProxyIn{Accept: peek.Any}}, rec: &session.Record{},
		trusted: true, want: peek.Want{Proxy: peek.Any, Hello: true}}
	if d := e.peeked(hdr[:10], false, time.Millisecond); d.Wait <= 0 || d.Need != 0 {
		t.Fatalf("a header's prefix: decision %+v, want a wait with Need 0", d)
	}
}
