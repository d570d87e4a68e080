package proxy_test

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/pierproxy/pier/internal/testutil"
)

// The relay's cost by payload size: a persistent session through pier to
// an echo upstream, each op sending size bytes and reading them back.
// Compare with BenchmarkDirect*, the same traffic without pier, using
// benchstat (see bench/README.md).
func BenchmarkRelayEcho(b *testing.B) {
	for _, size := range []int{64, 16 << 10, 1 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			up := testutil.NewUpstream(b, testutil.Echo)
			srv, _ := start(b, newRoute(b, "r", up.Addr()))
			benchEcho(b, srv.Addrs("r")[0].String(), size)
		})
	}
}

// The same through one pass-through filter: the read, filter, write path.
// Its allocs/op next to BenchmarkRelayEcho's is what the filtered path
// allocates per round trip (none, in the steady state).
func BenchmarkRelayFilteredEcho(b *testing.B) {
	for _, size := range []int{64, 16 << 10, 1 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			up := testutil.NewUpstream(b, testutil.Echo)
			var n atomic.Int64
			srv, _ := start(b, filtered(b, "r", up.Addr(), funcFilter{up: pass(&n), down: pass(&n)}))
			benchEcho(b, srv.Addrs("r")[0].String(), size)
		})
	}
}

func BenchmarkDirectEcho(b *testing.B) {
	for _, size := range []int{64, 16 << 10, 1 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			up := testutil.NewUpstream(b, testutil.Echo)
			benchEcho(b, up.Addr(), size)
		})
	}
}

func benchEcho(b *testing.B, addr string, size int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out := make([]byte, size)
	in := make([]byte, size)
	b.SetBytes(int64(2 * size))
	b.ReportAllocs()
	errc := make(chan error, 1)
	for b.Loop() {
		go func() {
			_, err := c.Write(out)
			errc <- err
		}()
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}

// A new session per op: connect, send, half-close, read the echo to EOF.
func BenchmarkRelayConnect(b *testing.B) {
	up := testutil.NewUpstream(b, testutil.Echo)
	srv, _ := start(b, newRoute(b, "r", up.Addr()))
	addr := srv.Addrs("r")[0].String()
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write([]byte("ping"))
		c.(*net.TCPConn).CloseWrite()
		if got, err := io.ReadAll(c); err != nil || len(got) != 4 {
			b.Fatalf("read %q, %v", got, err)
		}
		c.Close()
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
