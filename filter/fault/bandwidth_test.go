package fault_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

func TestBandwidthStaysWithinTheBucketAndReachesTheRate(t *testing.T) {
	const rate, burst = 100_000, 16 << 10 // the default burst: 16KiB > rate/10
	f := mustFault(t, "bandwidth", "rate=100KB")
	d, _ := drive(t, f, filter.ToClient)
	t0 := d.Now
	written := 0
	for d.Now.Sub(t0) < 10*time.Second {
		// Keep the source ahead, as a bulk sender would, within pier's
		// default hold.
		if len(d.In) < filter.DefaultHold {
			if err := d.Write(pattern(written, 4096)); err != nil {
				t.Fatal(err)
			}
			written += 4096
		}
		if err := d.Advance(3 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		elapsed := d.Now.Sub(t0)
		if most := burst + rate*int64(elapsed)/int64(time.Second); int64(len(d.Out)) > most {
			t.Fatalf("at t0+%v: %d bytes out, more than burst + rate*t = %d", elapsed, len(d.Out), most)
		}
	}
	if want := rate * 10 * 99 / 100; len(d.Out) < want {
		t.Errorf("%d bytes out in 10s at %d B/s, want at least %d", len(d.Out), rate, want)
	}
	if !bytes.Equal(d.Out, pattern(0, len(d.Out))) {
		t.Error("bytes lost, repeated or reordered")
	}
	// One call per write (3,334) and about one wake per 10ms of tokens
	// (1,000): far from one per byte (a million).
	if d.Calls > 5000 {
		t.Errorf("%d calls to Process in 10s: it wakes for too little", d.Calls)
	}
}

func TestBandwidthPacesExactly(t *testing.T) {
	// A full bucket of 100 goes at once; then 10 bytes (10ms of tokens)
	// every 10ms.
	f := mustFault(t, "bandwidth", "rate=1000", "burst=100")
	d, _ := drive(t, f, filter.ToClient)
	t0 := d.Now
	in := pattern(0, 1000)
	if err := d.Write(in); err != nil {
		t.Fatal(err)
	}
	if len(d.Out) != 100 || !d.Wake.Equal(t0.Add(10*time.Millisecond)) {
		t.Fatalf("at t0: %d bytes out, wake at t0+%v; want 100, t0+10ms", len(d.Out), d.Wake.Sub(t0))
	}
	for k := 1; k <= 89; k++ {
		if err := d.Advance(10 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if len(d.Out) != 100+10*k {
			t.Fatalf("at t0+%v: %d bytes out, want %d", d.Now.Sub(t0), len(d.Out), 100+10*k)
		}
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := d.Drain(time.Minute); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Out, in) || d.Now.Sub(t0) != 900*time.Millisecond {
		t.Errorf("finished at t0+%v with %d bytes, want t0+900ms with all 1000", d.Now.Sub(t0), len(d.Out))
	}
}

func TestBandwidthBucketRefillsOnlyToBurst(t *testing.T) {
	f := mustFault(t, "bandwidth", "rate=1000", "burst=100")
	d, _ := drive(t, f, filter.ToClient)
	if err := d.Write(pattern(0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := d.Advance(time.Hour); err != nil { // idle: the bucket fills, to 100
		t.Fatal(err)
	}
	if err := d.Write(pattern(100, 500)); err != nil {
		t.Fatal(err)
	}
	if len(d.Out) != 200 {
		t.Errorf("after an idle hour, %d bytes out at once, want 100 + burst 100", len(d.Out))
	}
}

func TestBandwidthSteadyStateAllocatesNothing(t *testing.T) {
	up, _ := mustFault(t, "bandwidth", "rate=10MB", "direction=upstream").Streams(session(1, "192.0.2.1:1"))
	step := steady(up, 1024, 100*time.Microsecond)
	for range 1000 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}
