package dump

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// BenchmarkDumpPaced dumps 64-byte chunks as a relay loop carrying
// requests and answers does: 20µs of other work between them, which lets
// the output's goroutine run dry between chunks. cpu-ns/op is the whole
// process's CPU per chunk (the loop's Process, the output's goroutine,
// its wake-ups and write(2)s), 20µs of it the pacing.
func BenchmarkDumpPaced(b *testing.B) {
	d, _ := newTestDump(b, map[string]string{"to": os.DevNull})
	up, _ := d.Streams(filtertest.New(nil).Session)
	chunk := bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 4)
	var batch filter.Batch
	out := make([]byte, 0, len(chunk))
	b.ReportAllocs()
	var ru syscall.Rusage
	cpu := func() time.Duration {
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	for b.Loop() {
		batch.Reset(chunk, out[:0], false, filtertest.Epoch)
		if err := up.Process(&batch); err != nil {
			b.Fatal(err)
		}
		for start := time.Now(); time.Since(start) < 20*time.Microsecond; {
			// a relay loop's work on the next request
		}
	}
	if !d.out.Sync(10 * time.Second) {
		b.Fatal("output not written within 10s")
	}
	b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
}
