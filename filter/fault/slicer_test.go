package fault_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

// pieces returns what each call that forwarded something forwarded.
func pieces(r *recorder) []call {
	var ps []call
	for _, c := range r.calls {
		if c.n > 0 {
			ps = append(ps, c)
		}
	}
	return ps
}

func TestSlicerPiecesAreSizedAndSpaced(t *testing.T) {
	f := mustFault(t, "slicer", "size=4", "variation=2", "delay=10ms", "seed=3")
	d, r := drive(t, f, filter.ToClient)
	in := pattern(0, 1000)
	if err := d.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := d.Drain(time.Hour); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Out, in) {
		t.Fatal("bytes lost, repeated or reordered")
	}
	ps := pieces(r)
	smallest, largest := 4, 4
	for i, p := range ps {
		if i > 0 {
			if gap := p.at.Sub(ps[i-1].at); gap < 10*time.Millisecond {
				t.Fatalf("piece %d left %v after the one before, want at least 10ms", i, gap)
			}
		}
		if i == len(ps)-1 {
			break // the rest, whatever its size
		}
		if p.n < 2 || p.n > 6 {
			t.Fatalf("piece %d has %d bytes, want 4 ± 2", i, p.n)
		}
		smallest, largest = min(smallest, p.n), max(largest, p.n)
	}
	// Over some 250 pieces, each of the 5 sizes comes up.
	if smallest != 2 || largest != 6 {
		t.Errorf("pieces from %d to %d bytes, want from 2 to 6", smallest, largest)
	}
}

func TestSlicerWithoutDelayStillForwardsOnePiecePerCall(t *testing.T) {
	f := mustFault(t, "slicer", "size=3")
	d, r := drive(t, f, filter.ToClient)
	t0 := d.Now
	if err := d.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := d.Advance(0); err != nil { // the wakes it asked for, now
		t.Fatal(err)
	}
	if got := fmt.Sprint(pieces(r)); got != fmt.Sprint([]call{{t0, 3}, {t0, 3}, {t0, 3}, {t0, 1}}) {
		t.Errorf("pieces %s, want 3, 3, 3, 1 bytes, all at t0", got)
	}
	if string(d.Out) != "0123456789" {
		t.Errorf("out %q", d.Out)
	}
}

func TestSlicerDefaultsToSingleBytes(t *testing.T) {
	d, r := drive(t, mustFault(t, "slicer"), filter.ToClient)
	if err := d.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := d.Advance(0); err != nil {
		t.Fatal(err)
	}
	if ps := pieces(r); len(ps) != 5 || string(d.Out) != "hello" {
		t.Errorf("%d pieces, out %q; want 5 pieces of one byte", len(ps), d.Out)
	}
}

func TestSlicerBytesArrivingInTheGapWait(t *testing.T) {
	f := mustFault(t, "slicer", "size=2", "delay=10ms")
	d, _ := drive(t, f, filter.ToClient)
	t0 := d.Now
	if err := d.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	if err := d.Advance(5 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := d.Write([]byte("cd")); err != nil {
		t.Fatal(err)
	}
	if string(d.Out) != "ab" || !d.Wake.Equal(t0.Add(10*time.Millisecond)) {
		t.Fatalf("at t0+5ms: out %q, wake t0+%v; want \"ab\", t0+10ms", d.Out, d.Wake.Sub(t0))
	}
	if err := d.Advance(5 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if string(d.Out) != "abcd" {
		t.Errorf("at t0+10ms: out %q, want \"abcd\"", d.Out)
	}
}
