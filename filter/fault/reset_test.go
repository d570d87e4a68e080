package fault_test

import (
	"errors"
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
