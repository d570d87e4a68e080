package filter_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct {
	entered chan struct{} // gets one value per Write begun
	release chan struct{}
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	b.entered <- struct{}{}
	<-b.release
	return len(p), nil
}

// AfterStop runs its function on the Output's goroutine once a write
// stuck past Close's bound returns, not before; on an Output already
// stopped, at once.
func TestAfterStop(t *testing.T) {
	w := &blockedWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	out := filter.NewOutput(w, filter.OutputConfig{Name: "test", CloseTimeout: 50 * time.Millisecond})
	out.Write(nil, []byte("x"), 1)
	<-w.entered
	if err := out.Close(); !errors.Is(err, filter.ErrOutputTimeout) {
		t.Fatalf("Close = %v, want ErrOutputTimeout", err)
	}
	ran := make(chan struct{})
	out.AfterStop(func() { close(ran) })
	select {
	case <-ran:
		t.Fatal("ran while the write was still stuck")
	default:
	}
	close(w.release)
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("did not run 10s after the write returned")
	}

	done := filter.NewOutput(io.Discard, filter.OutputConfig{})
	if err := done.Close(); err != nil {
		t.Fatal(err)
	}
	now := false
	done.AfterStop(func() { now = true })
	if !now {
		t.Error("did not run at once on a stopped Output")
	}
}

// gateWriter holds every Write until release is closed, then keeps what
// it is given; entered says a Write has begun.
type gateWriter struct {
	entered chan struct{} // holds at most one; a Write never waits on it
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (g *gateWriter) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

// Dropped counts every write the Output refused, for any Track or none,
// full or closed, and keeps counting after the Notes that reset each
// Track's own account are written: a total for the metrics that only
// grows.
func TestOutputDroppedCumulative(t *testing.T) {
	w := &gateWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	out := filter.NewOutput(w, filter.OutputConfig{Name: "test", MaxBytes: 100})
	defer out.Close()
	tr := &filter.Track{Note: func(dst []byte, l filter.Lost) []byte {
		return fmt.Appendf(dst, "[%d writes, %d bytes, %d units lost]", l.Writes, l.Bytes, l.Units)
	}}
	if !out.Write(tr, bytes.Repeat([]byte("a"), 60), 6) {
		t.Fatal("the first write was refused")
	}
	<-w.entered // the goroutine holds 60 of the 100 bytes: the writer is stuck
	if out.Write(tr, bytes.Repeat([]byte("b"), 50), 5) || out.Write(nil, bytes.Repeat([]byte("c"), 41), 4) {
		t.Fatal("a write past the bound was queued")
	}
	want := filter.Lost{Writes: 2, Bytes: 91, Units: 9}
	if got := out.Dropped(); got != want {
		t.Errorf("Dropped = %+v, want %+v", got, want)
	}
	close(w.release)
	if !out.Sync(10 * time.Second) {
		t.Fatal("not written after the writer was released")
	}
	w.mu.Lock()
	got := w.buf.String()
	w.mu.Unlock()
	if !strings.Contains(got, "[1 writes, 50 bytes, 5 units lost]") {
		t.Fatalf("the Track's loss was not noted: %q", got)
	}
	// The Note reset the Track's account, not the total.
	if got := out.Dropped(); got != want {
		t.Errorf("Dropped = %+v after the Note, want %+v still", got, want)
	}
	out.Write(tr, make([]byte, 101), 7) // never fits
	out.Close()
	out.Write(tr, make([]byte, 3), 1) // closed
	want = filter.Lost{Writes: 4, Bytes: 195, Units: 17}
	if got := out.Dropped(); got != want {
		t.Errorf("Dropped = %+v at the end, want %+v", got, want)
	}
}

// countingWriter counts the Writes it passes on to w, from the Output's
// goroutine; the benchmark reads the count once that goroutine has ended.
type countingWriter struct {
	w      io.Writer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.w.Write(p)
}

// cpuTime is the CPU time the process has used, user and system: what a
// Write costs the caller and what it costs the Output's goroutine
// (waking it, its write(2)s) together.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOutputWrite writes chunks the size a relay loop hands a dump
// or pcap stream, to /dev/null, back to back, or paced: 20µs of work
// between them, as a loop relaying requests and answers has, which lets
// the Output's goroutine drain and park between chunks. ns/op is the
// caller's cost; cpu-ns/op adds the Output's goroutine's (wake-ups,
// write(2)s); writes/op is how many writes reach the file per chunk.
func BenchmarkOutputWrite(b *testing.B) {
	for _, bench := range []struct {
		size int
		gap  time.Duration
	}{{64, 0}, {4 << 10, 0}, {64, 20 * time.Microsecond}} {
		size := bench.size
		name := strconv.Itoa(size) + "B"
		if bench.gap > 0 {
			name += "-paced"
		}
		b.Run(name, func(b *testing.B) {
			null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer null.Close()
			w := &countingWriter{w: null}
			out := filter.NewOutput(w, filter.OutputConfig{Name: "bench"})
			var tr filter.Track
			chunk := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			start := cpuTime(b)
			for b.Loop() {
				out.Write(&tr, chunk, int64(size))
				for start := time.Now(); time.Since(start) < bench.gap; {
					// a relay loop's work on the next request
				}
			}
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(w.writes)/float64(b.N), "writes/op")
		})
	}
}
