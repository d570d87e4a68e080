package fault_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

func TestLatencyHoldsEachByteForDelay(t *testing.T) {
	f := mustFault(t, "latency", "delay=100ms")
	d, _ := drive(t, f, filter.ToClient)
	t0 := d.Now
	steps := []struct {
		write   string
		advance time.Duration
		want    string
	}{
		{"a", 30 * time.Millisecond, ""},
		{"bc", 69 * time.Millisecond, ""},
		{"", time.Millisecond, "a"}, // t0+100ms
		{"", 29 * time.Millisecond, "a"},
		{"", time.Millisecond, "abc"}, // t0+130ms
	}
	for _, s := range steps {
		if s.write != "" {
			if err := d.Write([]byte(s.write)); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Advance(s.advance); err != nil {
			t.Fatal(err)
		}
		if string(d.Out) != s.want {
			t.Fatalf("at t0+%v: out %q, want %q", d.Now.Sub(t0), d.Out, s.want)
		}
	}
	if !d.Wake.IsZero() {
		t.Errorf("nothing held, yet it asks to wake at t0+%v", d.Wake.Sub(t0))
	}
}

// writeIrregularly writes n arrivals of 1 to 100 bytes, 0 to 5ms apart,
// then the end, and returns what it wrote and when each byte arrived.
func writeIrregularly(t *testing.T, d *filtertest.Driver, n int) (in []byte, arrived []time.Time) {
	t.Helper()
	src := rand.New(rand.NewPCG(1, 2))
	for range n {
		p := pattern(len(in), 1+src.IntN(100))
		if err := d.Write(p); err != nil {
			t.Fatal(err)
		}
		in = append(in, p...)
		for range p {
			arrived = append(arrived, d.Now)
		}
		if err := d.Advance(time.Duration(src.IntN(5000)) * time.Microsecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := d.Drain(time.Minute); err != nil {
		t.Fatal(err)
	}
	return in, arrived
}

func TestLatencyJitterKeepsOrderAndBounds(t *testing.T) {
	const delay, jitter = 50 * time.Millisecond, 40 * time.Millisecond
	f := mustFault(t, "latency", "delay=50ms", "jitter=40ms", "seed=7")
	d, r := drive(t, f, filter.ToClient)
	in, arrived := writeIrregularly(t, d, 300)

	if !bytes.Equal(d.Out, in) {
		t.Fatalf("forwarded %d bytes, not the %d written in order", len(d.Out), len(in))
	}
	delays := map[time.Duration]bool{}
	for i, at := range r.left {
		held := at.Sub(arrived[i])
		if held < delay-jitter || held > delay+jitter {
			t.Fatalf("byte %d held %v, want %v ± %v", i, held, delay, jitter)
		}
		delays[held] = true
	}
	if len(delays) < 20 {
		t.Errorf("only %d different delays over 300 arrivals: no jitter?", len(delays))
	}
}

func TestLatencyJitterWithSeedRepeats(t *testing.T) {
	run := func() []time.Time {
		f := mustFault(t, "latency", "delay=50ms", "jitter=40ms", "seed=7")
		d, r := drive(t, f, filter.ToClient)
		writeIrregularly(t, d, 50)
		return r.left
	}
	a, b := run(), run()
	for i := range a {
		if !a[i].Equal(b[i]) {
			t.Fatalf("byte %d left at %v, then at %v, with the same seed", i, a[i], b[i])
		}
	}
}

func TestLatencyDelayNeverBelowZero(t *testing.T) {
	// jitter > delay: the draws below zero are held for none.
	f := mustFault(t, "latency", "delay=5ms", "jitter=50ms", "seed=1")
	d, r := drive(t, f, filter.ToClient)
	in, arrived := writeIrregularly(t, d, 200)
	if !bytes.Equal(d.Out, in) {
		t.Fatal("bytes lost, repeated or reordered")
	}
	for i, at := range r.left {
		if at.Before(arrived[i]) {
			t.Fatalf("byte %d left %v before it arrived", i, arrived[i].Sub(at))
		}
	}
}

func TestLatencyManyTinyArrivalsKeepEveryByte(t *testing.T) {
	// More arrivals within one delay than the stream keeps apart.
	f := mustFault(t, "latency", "delay=1s")
	d, r := drive(t, f, filter.ToClient)
	var in []byte
	var arrived []time.Time
	for i := range 10000 {
		in = append(in, byte(i))
		arrived = append(arrived, d.Now)
		if err := d.Write(in[i:]); err != nil {
			t.Fatal(err)
		}
		if err := d.Advance(10 * time.Microsecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := d.Drain(time.Minute); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Out, in) {
		t.Fatal("bytes lost, repeated or reordered")
	}
	for i, at := range r.left {
		if held := at.Sub(arrived[i]); held < time.Second {
			t.Fatalf("byte %d held %v, want at least 1s", i, held)
		}
	}
}

func TestLatencyEndWaitsForTheBytes(t *testing.T) {
	f := mustFault(t, "latency", "delay=100ms")
	d, _ := drive(t, f, filter.ToClient)
	t0 := d.Now
	if err := d.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if d.Finished || len(d.Out) != 0 {
		t.Fatalf("at the end: finished %v, out %q; want the bytes still held", d.Finished, d.Out)
	}
	if err := d.Drain(time.Second); err != nil {
		t.Fatal(err)
	}
	if string(d.Out) != "bye" || d.Now.Sub(t0) != 100*time.Millisecond {
		t.Errorf("finished at t0+%v with %q, want t0+100ms with \"bye\"", d.Now.Sub(t0), d.Out)
	}
}

func TestLatencyHoldLimitIsTheOption(t *testing.T) {
	for _, c := range []struct {
		opts []string
		want int
	}{
		{[]string{"delay=1ms"}, 4 << 20},
		{[]string{"delay=1ms", "hold=64KiB"}, 64 << 10},
	} {
		up, _ := mustFault(t, "latency", append(c.opts, "direction=upstream")...).Streams(session(1, "192.0.2.1:1"))
		h, ok := up.(filter.Holder)
		if !ok {
			t.Fatalf("%v: the stream is not a filter.Holder", c.opts)
		}
		if got := h.HoldLimit(); got != c.want {
			t.Errorf("%v: HoldLimit %d, want %d", c.opts, got, c.want)
		}
	}
}

// steady returns a function that runs one call of s as pier's relay
// would in a steady stream: chunk new bytes every tick, the held bytes
// kept in one buffer.
func steady(s filter.Stream, chunk int, tick time.Duration) func() {
	var b filter.Batch
	in := make([]byte, 0, 8<<20)
	out := make([]byte, 0, 8<<20)
	data := pattern(0, chunk)
	now := filtertest.Epoch
	return func() {
		if len(in)+chunk <= cap(in) {
			in = append(in, data...)
		}
		b.Reset(in, out[:0], false, now)
		if err := s.Process(&b); err != nil {
			panic(err)
		}
		in = in[:copy(in, b.In)]
		now = now.Add(tick)
	}
}

func TestLatencySteadyStateAllocatesNothing(t *testing.T) {
	up, _ := mustFault(t, "latency", "delay=10ms", "jitter=5ms", "seed=1", "direction=upstream").Streams(session(1, "192.0.2.1:1"))
	step := steady(up, 1024, time.Millisecond)
	for range 1000 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

func BenchmarkLatency(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		b.Run(byteCount(size), func(b *testing.B) {
			up, _ := mustFault(b, "latency", "delay=10ms", "jitter=5ms", "seed=1", "direction=upstream").Streams(session(1, "192.0.2.1:1"))
			step := steady(up, size, 100*time.Microsecond)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
		})
	}
}

func byteCount(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
