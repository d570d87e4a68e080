package filter_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Send copies: a stream may reuse its buffer at once, and what was sent
// stays as it was until Reset, however the arena grows after it.
func TestDatagramOutSendCopies(t *testing.T) {
	var o filter.DatagramOut
	buf := []byte("first")
	o.Send(t0, buf)
	copy(buf, "XXXXX")
	first := o.Data(0)
	o.Send(t0.Add(time.Second), bytes.Repeat([]byte("y"), 100000)) // grows the arena
	if string(first) != "first" || string(o.Data(0)) != "first" {
		t.Errorf("Data(0) = %q then %q, want \"first\": Send did not copy", first, o.Data(0))
	}
	if o.Len() != 2 || !o.At(1).Equal(t0.Add(time.Second)) || len(o.Data(1)) != 100000 {
		t.Errorf("Len %d, At(1) %v, len(Data(1)) %d", o.Len(), o.At(1), len(o.Data(1)))
	}
	if d := o.Data(0); cap(d) != len(d) {
		t.Errorf("Data(0) has room past its end (cap %d, len %d): an append would write over the next", cap(d), len(d))
	}
	o.Reset()
	if o.Len() != 0 || o.Dropped() != 0 {
		t.Errorf("after Reset: Len %d, Dropped %d", o.Len(), o.Dropped())
	}
}

// One call sends at most DatagramQueueLen datagrams and DatagramQueueBytes
// bytes; the rest are counted, not kept.
func TestDatagramOutIsBounded(t *testing.T) {
	var o filter.DatagramOut
	for range filter.DatagramQueueLen + 5 {
		o.Send(t0, []byte("x"))
	}
	if o.Len() != filter.DatagramQueueLen || o.Dropped() != 5 {
		t.Errorf("Len %d, Dropped %d; want %d, 5", o.Len(), o.Dropped(), filter.DatagramQueueLen)
	}
	o.Reset()
	big := make([]byte, 64<<10)
	for range 20 {
		o.Send(t0, big)
	}
	if o.Len() != filter.DatagramQueueBytes/len(big) || o.Dropped() != 20-o.Len() {
		t.Errorf("64 KiB datagrams: Len %d, Dropped %d; want %d kept", o.Len(), o.Dropped(), filter.DatagramQueueBytes/len(big))
	}
}

// Once warm, sending and resetting allocates nothing: the engine does it
// for every datagram.
func TestDatagramOutSteadyStateAllocatesNothing(t *testing.T) {
	var o filter.DatagramOut
	d := make([]byte, 1500)
	run := func() {
		o.Reset()
		o.Send(t0, d)
		o.Send(t0, d)
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per datagram", n)
	}
	var bufs [2]filter.DatagramOut
	chain := []filter.DatagramStream{delay(time.Millisecond), dup{}}
	filter.RunDatagrams(chain, t0, d, &bufs)
	if n := testing.AllocsPerRun(100, func() { filter.RunDatagrams(chain, t0, d, &bufs) }); n != 0 {
		t.Errorf("RunDatagrams: %v allocations per datagram", n)
	}
}

type delay time.Duration

func (s delay) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at.Add(time.Duration(s)), d)
	return nil
}

type dup struct{}

func (dup) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at, d)
	out.Send(at, d)
	return nil
}

// back sends every datagram an hour before it was given it.
type back struct{}

func (back) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at.Add(-time.Hour), append([]byte("<"), d...))
	return nil
}

// seen records the times it is given.
type seen struct{ at []time.Time }

func (s *seen) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	s.at = append(s.at, at)
	out.Send(at, d)
	return nil
}

// A chain gives each stream what the one before sent, each datagram with
// its own time; a time before the one a stream was given counts as that
// one; nil streams are skipped; no stream at all sends the datagram as it
// came.
func TestRunDatagramsChainsStreams(t *testing.T) {
	var bufs [2]filter.DatagramOut
	out, dropped, err := filter.RunDatagrams(nil, t0, []byte("d"), &bufs)
	if err != nil || dropped != 0 || out.Len() != 1 || string(out.Data(0)) != "d" || !out.At(0).Equal(t0) {
		t.Fatalf("no streams: %d sent, err %v", out.Len(), err)
	}
	s := &seen{}
	chain := []filter.DatagramStream{delay(5 * time.Millisecond), nil, dup{}, s, back{}, delay(time.Millisecond)}
	out, _, err = filter.RunDatagrams(chain, t0, []byte("d"), &bufs)
	if err != nil {
		t.Fatal(err)
	}
	want := t0.Add(5 * time.Millisecond)
	if len(s.at) != 2 || !s.at[0].Equal(want) || !s.at[1].Equal(want) {
		t.Errorf("the fourth stream was given %v, want twice %v", s.at, want)
	}
	if out.Len() != 2 {
		t.Fatalf("%d sent, want 2", out.Len())
	}
	for i := range out.Len() {
		// back's hour before counts as the time it was given.
		if got := out.At(i); !got.Equal(want.Add(time.Millisecond)) || string(out.Data(i)) != "<d" {
			t.Errorf("datagram %d: %q at %v, want \"<d\" at %v", i, out.Data(i), got, want.Add(time.Millisecond))
		}
	}
}

type failing struct{ err error }

func (f failing) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at, d)
	return f.err
}

// A stream's error comes back after what it sent in the same call has
// been through the rest of the chain, as the engine sends it before
// ending the flow.
func TestRunDatagramsSendsWhatCameBeforeAnError(t *testing.T) {
	var bufs [2]filter.DatagramOut
	s := &seen{}
	out, _, err := filter.RunDatagrams([]filter.DatagramStream{dup{}, failing{filter.ErrClose}, s}, t0, []byte("d"), &bufs)
	if !errors.Is(err, filter.ErrClose) {
		t.Fatalf("err %v, want ErrClose", err)
	}
	// dup sent two; the failing stream took the first, sent it and
	// failed, and was given nothing more.
	if out.Len() != 1 || len(s.at) != 1 {
		t.Errorf("%d sent, the last stream given %d; want 1 and 1", out.Len(), len(s.at))
	}
}
