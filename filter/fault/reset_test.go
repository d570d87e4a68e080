package fault_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

func TestCutAfterBytesPassesExactlyThatMany(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
	}{
		{"reset", filter.ErrReset},
		{"limit", filter.ErrClose},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := mustFault(t, c.name, "bytes=10", "direction=client")
			d, _ := drive(t, f, filter.ToClient)
			if err := d.Write(pattern(0, 4)); err != nil {
				t.Fatalf("after 4 of 10 bytes: %v", err)
			}
			err := d.Write(pattern(4, 10))
			if !errors.Is(err, c.err) {
				t.Fatalf("past 10 bytes: error %v, want %v", err, c.err)
			}
			if string(d.Out) != string(pattern(0, 10)) {
				t.Errorf("forwarded %d bytes, want the first 10", len(d.Out))
			}

			// Reaching the count exactly is enough.
			d, _ = drive(t, f, filter.ToClient)
			if err := d.Write(pattern(0, 10)); !errors.Is(err, c.err) || len(d.Out) != 10 {
				t.Errorf("10 bytes at once: error %v, %d out; want %v, 10", err, len(d.Out), c.err)
			}

			// 0: at the first call, with nothing forwarded.
			d, _ = drive(t, mustFault(t, c.name, "bytes=0", "direction=client"), filter.ToClient)
			if err := d.Write([]byte("x")); !errors.Is(err, c.err) || len(d.Out) != 0 {
				t.Errorf("bytes 0: error %v, %d out; want %v, 0", err, len(d.Out), c.err)
			}
		})
	}
}

func TestCutCountsEachDirectionOnItsOwn(t *testing.T) {
	for _, name := range []string{"reset", "limit"} {
		f := mustFault(t, name, "bytes=3", "direction=both")
		up, down := f.Streams(session(1, "192.0.2.1:1"))
		var bu, bd filter.Batch
		bu.Reset([]byte("ab"), nil, false, filtertest.Epoch)
		if err := up.Process(&bu); err != nil {
			t.Fatalf("%s: 2 of 3 bytes upstream: %v", name, err)
		}
		bd.Reset([]byte("ab"), nil, false, filtertest.Epoch)
		if err := down.Process(&bd); err != nil {
			t.Errorf("%s: 2 bytes to the client after 2 upstream: %v; each direction counts its own", name, err)
		}
		bu.Reset([]byte("c"), nil, false, filtertest.Epoch)
		if err := up.Process(&bu); err == nil {
			t.Errorf("%s: 3 of 3 bytes upstream: no error", name)
		}
	}
}

func TestResetAfterTime(t *testing.T) {
	f := mustFault(t, "reset", "after=1s")
	d, _ := drive(t, f, filter.ToUpstream)
	// The time counts from the stream's first call, not from when the
	// session began.
	d.Session.Start = d.Now.Add(-time.Hour)
	t0 := d.Now
	if err := d.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	if !d.Wake.Equal(t0.Add(time.Second)) {
		t.Fatalf("wake at t0+%v, want t0+1s", d.Wake.Sub(t0))
	}
	if err := d.Advance(999 * time.Millisecond); err != nil {
		t.Fatalf("before 1s: %v", err)
	}
	if err := d.Write([]byte("c")); err != nil {
		t.Fatalf("at t0+999ms: %v", err)
	}
	err := d.Advance(time.Millisecond)
	if !errors.Is(err, filter.ErrReset) || !d.Now.Equal(t0.Add(time.Second)) {
		t.Fatalf("at t0+%v: error %v, want %v at t0+1s", d.Now.Sub(t0), err, filter.ErrReset)
	}
	if string(d.Out) != "abc" {
		t.Errorf("out %q, want \"abc\"", d.Out)
	}
}

func TestResetBytesOrAfterWhicheverFirst(t *testing.T) {
	f := mustFault(t, "reset", "after=1s", "bytes=5")
	d, _ := drive(t, f, filter.ToUpstream)
	if err := d.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := d.Advance(time.Second); !errors.Is(err, filter.ErrReset) {
		t.Errorf("3 of 5 bytes at 1s: error %v, want %v", err, filter.ErrReset)
	}
	d, _ = drive(t, f, filter.ToUpstream)
	if err := d.Write([]byte("abcdef")); !errors.Is(err, filter.ErrReset) || string(d.Out) != "abcde" {
		t.Errorf("6 bytes at once: error %v, out %q; want %v, \"abcde\"", err, d.Out, filter.ErrReset)
	}
}

func TestCutEndBeforeTheMarkPassesOn(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []string
	}{
		{"reset", []string{"bytes=100"}},
		{"reset", []string{"after=1s"}},
		{"limit", []string{"bytes=100"}},
		{"timeout", []string{"after=1s"}},
		{"timeout", nil},
	} {
		d, _ := drive(t, mustFault(t, c.name, append(c.opts, "direction=upstream")...), filter.ToUpstream)
		if err := d.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if err := d.CloseWrite(); err != nil {
			t.Fatalf("%s %v: at the end: %v", c.name, c.opts, err)
		}
		if !d.Finished {
			t.Errorf("%s %v: the end did not pass on (held %d, wake %v)", c.name, c.opts, len(d.In), d.Wake)
		}
	}
}

func TestTimeoutDropsThenCloses(t *testing.T) {
	d, _ := drive(t, mustFault(t, "timeout", "after=1s"), filter.ToClient)
	t0 := d.Now
	if err := d.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if len(d.Out) != 0 || len(d.In) != 0 {
		t.Fatalf("out %q, held %q: want every byte dropped", d.Out, d.In)
	}
	if err := d.Advance(999 * time.Millisecond); err != nil {
		t.Fatalf("before 1s: %v", err)
	}
	if err := d.Write([]byte("def")); err != nil || len(d.Out) != 0 {
		t.Fatalf("at t0+999ms: error %v, out %q", err, d.Out)
	}
	err := d.Advance(time.Millisecond)
	if !errors.Is(err, filter.ErrClose) || !d.Now.Equal(t0.Add(time.Second)) {
		t.Errorf("at t0+%v: error %v, want %v at t0+1s", d.Now.Sub(t0), err, filter.ErrClose)
	}
}

func TestTimeoutZeroOnlyDrops(t *testing.T) {
	d, _ := drive(t, mustFault(t, "timeout"), filter.ToClient)
	for range 3 {
		if err := d.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if err := d.Advance(time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.Out) != 0 || len(d.In) != 0 || !d.Wake.IsZero() {
		t.Errorf("out %q, held %q, wake %v: want all dropped and no wake", d.Out, d.In, d.Wake)
	}
}

// after is bytes when it is a byte count and time when it is a duration,
// so that the flag's one value says either: --reset 100, --reset 2s.
func TestResetAfterCountIsBytes(t *testing.T) {
	for _, after := range []string{"10", "10B"} {
		d, _ := drive(t, mustFault(t, "reset", "after="+after), filter.ToUpstream)
		if err := d.Write(pattern(0, 4)); err != nil {
			t.Fatalf("after=%s: 4 bytes: %v", after, err)
		}
		if !d.Wake.IsZero() {
			t.Errorf("after=%s: a wake at %v; a byte count sets no timer", after, d.Wake)
		}
		if err := d.Advance(time.Hour); err != nil {
			t.Fatalf("after=%s: an hour later: %v; a byte count is not a time", after, err)
		}
		if err := d.Write(pattern(4, 12)); !errors.Is(err, filter.ErrReset) || string(d.Out) != string(pattern(0, 10)) {
			t.Errorf("after=%s: past 10 bytes: error %v, %d out; want %v after exactly 10", after, err, len(d.Out), filter.ErrReset)
		}
	}
	// 2KiB is bytes too.
	d, _ := drive(t, mustFault(t, "reset", "after=2KiB"), filter.ToUpstream)
	if err := d.Write(make([]byte, 2048)); !errors.Is(err, filter.ErrReset) || len(d.Out) != 2048 {
		t.Errorf("after=2KiB: error %v, %d out; want a reset after 2048", err, len(d.Out))
	}
	// A duration stays a time.
	d, _ = drive(t, mustFault(t, "reset", "after=2s"), filter.ToUpstream)
	if err := d.Write(make([]byte, 4096)); err != nil {
		t.Fatalf("after=2s: bytes alone reset: %v", err)
	}
	if err := d.Advance(2 * time.Second); !errors.Is(err, filter.ErrReset) {
		t.Errorf("after=2s at 2s: %v, want %v", err, filter.ErrReset)
	}
	// Two byte counts are one too many.
	if _, err := newFault("reset", "after=100", "bytes=5"); err == nil || !strings.Contains(err.Error(), `after: "100" is a byte count, and bytes is given too`) {
		t.Errorf("after=100 with bytes=5: %v", err)
	}
	if _, err := newFault("reset", "after=soon"); err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Errorf("after=soon: %v", err)
	}
}

// start: first_byte starts reset's clock at the first byte, not at
// take-up: Toxiproxy's reset_peer waits so for its first chunk.
func TestResetStartFirstByteWaitsForTheFirstByte(t *testing.T) {
	d, _ := drive(t, mustFault(t, "reset", "after=1s", "start=first_byte"), filter.ToUpstream)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if !d.Wake.IsZero() {
		t.Fatalf("a wake at take-up (%v): the clock must wait for the first byte", d.Wake)
	}
	if err := d.Advance(time.Hour); err != nil {
		t.Fatalf("an hour with no byte: %v", err)
	}
	t1 := d.Now
	if err := d.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	if !d.Wake.Equal(t1.Add(time.Second)) {
		t.Fatalf("wake at first byte+%v, want +1s", d.Wake.Sub(t1))
	}
	if err := d.Advance(999 * time.Millisecond); err != nil {
		t.Fatalf("before 1s: %v", err)
	}
	if err := d.Advance(time.Millisecond); !errors.Is(err, filter.ErrReset) {
		t.Fatalf("1s after the first byte: %v, want %v", err, filter.ErrReset)
	}
	if string(d.Out) != "ab" {
		t.Errorf("out %q: without drop the bytes pass", d.Out)
	}

	// The default, take_up, starts at the first call.
	d, _ = drive(t, mustFault(t, "reset", "after=1s"), filter.ToUpstream)
	if err := d.Advance(time.Second); !errors.Is(err, filter.ErrReset) {
		t.Errorf("take_up: 1s after take-up with no byte: %v, want %v", err, filter.ErrReset)
	}

	// after 0: the reset comes with the first byte, not at take-up.
	d, _ = drive(t, mustFault(t, "reset", "after=0s", "start=first_byte", "drop=true"), filter.ToUpstream)
	if err := d.Start(); err != nil {
		t.Fatalf("after 0, first_byte, at take-up: %v", err)
	}
	if err := d.Write([]byte("x")); !errors.Is(err, filter.ErrReset) || len(d.Out) != 0 {
		t.Errorf("after 0 at the first byte: error %v, out %q; want %v, nothing", err, d.Out, filter.ErrReset)
	}

	// The end of the source starts the clock too.
	d, _ = drive(t, mustFault(t, "reset", "bytes=0", "start=first_byte"), filter.ToUpstream)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseWrite(); !errors.Is(err, filter.ErrReset) {
		t.Errorf("bytes 0, first_byte, at the end: %v, want %v", err, filter.ErrReset)
	}
}

func TestResetDropForwardsNothing(t *testing.T) {
	d, _ := drive(t, mustFault(t, "reset", "after=1s", "drop=true"), filter.ToClient)
	if err := d.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if len(d.Out) != 0 || len(d.In) != 0 {
		t.Fatalf("out %q, held %q: drop takes every byte and forwards none", d.Out, d.In)
	}
	if err := d.Advance(time.Second); !errors.Is(err, filter.ErrReset) {
		t.Fatalf("at 1s: %v, want %v", err, filter.ErrReset)
	}
	// With a count, the dropped bytes count.
	d, _ = drive(t, mustFault(t, "reset", "bytes=4", "drop=true"), filter.ToClient)
	if err := d.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := d.Write([]byte("def")); !errors.Is(err, filter.ErrReset) || len(d.Out) != 0 {
		t.Errorf("6 of 4 bytes dropped: error %v, out %q; want %v, nothing", err, d.Out, filter.ErrReset)
	}
}

// close_at_end closes the session when the input ends, as Toxiproxy
// closes a connection when its timeout toxic is removed; without it the
// end passes on (TestCutEndBeforeTheMarkPassesOn).
func TestTimeoutCloseAtEnd(t *testing.T) {
	for _, opts := range [][]string{{"close_at_end=true"}, {"after=1s", "close_at_end=true"}} {
		d, _ := drive(t, mustFault(t, "timeout", opts...), filter.ToClient)
		if err := d.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if err := d.Advance(500 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := d.CloseWrite(); !errors.Is(err, filter.ErrClose) {
			t.Errorf("%v: at the end: %v, want %v", opts, err, filter.ErrClose)
		}
		if len(d.Out) != 0 {
			t.Errorf("%v: out %q, want every byte dropped", opts, d.Out)
		}
	}
}

// rate 0 holds every byte until the input ends, then lets all go:
// Toxiproxy's bandwidth 0, which stalls until the toxic is removed.
func TestBandwidthZeroStallsUntilTheEnd(t *testing.T) {
	d, _ := drive(t, mustFault(t, "bandwidth", "rate=0"), filter.ToClient)
	if err := d.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := d.Advance(time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(d.Out) != 0 || string(d.In) != "hello" || !d.Wake.IsZero() {
		t.Fatalf("after an hour: out %q, held %q, wake %v; want all held, no wake", d.Out, d.In, d.Wake)
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if string(d.Out) != "hello" || !d.Finished {
		t.Errorf("at the end: out %q, finished %v; want all of it and finished", d.Out, d.Finished)
	}
}
