package proxy_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
)

// slowRead is what a slow upstream got: the bytes' hash and count, and
// how its read ended.
type slowRead struct {
	sum [32]byte
	n   int64
	err error
}

// slowReader is an upstream that reads a little at a time, so that its
// socket's buffers and pier's are full whenever a filter ends the session.
func slowReader(got chan<- slowRead) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		h := sha256.New()
		buf := make([]byte, 16<<10)
		var r slowRead
		for {
			n, err := c.Read(buf)
			h.Write(buf[:n])
			r.n += int64(n)
			if err != nil {
				r.err = err
				break
			}
			// Slow, not a wait for anything: pier cannot count on it
			// to read soon.
			time.Sleep(time.Millisecond)
		}
		copy(r.sum[:], h.Sum(nil))
		got <- r
	}
}

// A filter that ends the session (reset, limit) forwards exactly its
// count first, however far behind the destination is: filter.Stream's
// "bytes forwarded in the same call are delivered first", the README's
// "exactly bytes bytes are forwarded first", Toxiproxy's limit_data. The
// count is well beyond what the sockets between pier and a slow upstream
// buffer, so that pier holds bytes the upstream has not taken when the
// filter stops.
func TestFilterEndDeliversWhatItForwarded(t *testing.T) {
	const n = 4 << 20
	msg := payload(9, 2*n)
	want := sha256.Sum256(msg[:n])
	for _, tc := range []struct {
		name, filter string
		opts         opts
		reason       string
		upstreamErr  error // how the upstream's read ends after the n bytes
	}{
		{"reset", "reset", opts{"bytes": fmt.Sprint(n), "direction": "upstream"}, "filter_reset", syscall.ECONNRESET},
		{"limit", "limit", opts{"bytes": fmt.Sprint(n), "direction": "upstream"}, "filter_close", io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan slowRead, 1)
			up := testutil.NewUpstream(t, slowReader(got))
			srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, tc.filter, tc.opts)))
			c := dial(t, srv, "f")
			sent := make(chan error, 1)
			go func() {
				_, err := c.Write(msg) // cut short when pier ends the session
				sent <- err
			}()
			var r slowRead
			select {
			case r = <-got:
			case <-time.After(wait):
				t.Fatal("the upstream's read never ended")
			}
			if r.n != n || r.sum != want {
				t.Errorf("upstream got %d bytes (same as sent: %v), want exactly the first %d", r.n, r.sum == want, n)
			}
			if !errors.Is(r.err, tc.upstreamErr) {
				t.Errorf("upstream's read ended with %v, want %v", r.err, tc.upstreamErr)
			}
			rec := recs.Next(t, wait)
			wantReason(t, rec, tc.reason)
			if rec["bytes_to_upstream"] != int64(n) {
				t.Errorf("bytes_to_upstream %v, want %d", rec["bytes_to_upstream"], n)
			}
			c.Close()
			select {
			case <-sent:
			case <-time.After(wait):
				t.Fatal("the client's write never returned")
			}
		})
	}
}
