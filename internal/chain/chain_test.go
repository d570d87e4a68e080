package chain

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

type fn func(b *filter.Batch) error

func (f fn) Process(b *filter.Batch) error { return f(b) }

func one(s filter.Stream) *Chain {
	return New(&filter.Session{}, filter.ToUpstream, []Stage{{Name: "s", Stream: s}})
}

func feed(t *testing.T, c *Chain, p []byte) int {
	t.Helper()
	n := 0
	for len(p) > 0 {
		space := c.ReadSpace()
		if space == nil {
			return n
		}
		m := copy(space, p)
		c.Fill(m)
		p = p[m:]
		n += m
	}
	return n
}

var t0 = time.Unix(1e9, 0)

// A stream that takes nothing holds DefaultHold bytes, and then the reader
// must wait.
func TestHoldLimitStopsReading(t *testing.T) {
	c := one(fn(func(*filter.Batch) error { return nil }))
	defer c.Close(nil)
	if n := feed(t, c, make([]byte, 1<<20)); n != filter.DefaultHold {
		t.Fatalf("took %d bytes before stopping, want %d", n, filter.DefaultHold)
	}
	if _, err := c.Run(t0); err != nil {
		t.Fatal(err)
	}
	if c.ReadSpace() != nil {
		t.Fatal("room to read while the stream holds its limit")
	}
}

type holder struct{ fn }

func (holder) HoldLimit() int { return 300 << 10 }

func TestHolderLimit(t *testing.T) {
	c := one(holder{func(*filter.Batch) error { return nil }})
	defer c.Close(nil)
	if n := feed(t, c, make([]byte, 1<<20)); n != 300<<10 {
		t.Fatalf("took %d bytes, want the holder's 300 KiB", n)
	}
}

// Bytes a stream forwards in the call that fails still go out; the error
// names the filter.
func TestErrorKeepsOutput(t *testing.T) {
	c := one(fn(func(b *filter.Batch) error {
		b.Pass(2)
		return filter.ErrReset
	}))
	defer c.Close(nil)
	feed(t, c, []byte("abcd"))
	_, err := c.Run(t0)
	var ce *Error
	if !errors.As(err, &ce) || ce.Filter != "s" || !IsReset(err) {
		t.Fatalf("err %v, want filter s's ErrReset", err)
	}
	if string(c.Out()) != "ab" {
		t.Fatalf("out %q, want ab", c.Out())
	}
}

func TestPanicBecomesError(t *testing.T) {
	c := one(fn(func(*filter.Batch) error { panic("boom") }))
	defer c.Close(nil)
	feed(t, c, []byte("x"))
	_, err := c.Run(t0)
	var ce *Error
	if !errors.As(err, &ce) || ce.Panic != "boom" || len(ce.Stack) == 0 {
		t.Fatalf("err %v, want the panic with its stack", err)
	}
}

// A stream that holds bytes at the end without asking for time is an
// error, not a stall.
func TestHoldingAtEOFIsAnError(t *testing.T) {
	c := one(fn(func(*filter.Batch) error { return nil }))
	defer c.Close(nil)
	feed(t, c, []byte("x"))
	c.CloseInput()
	if _, err := c.Run(t0); err == nil {
		t.Fatal("no error for bytes held at the end")
	}
}

// A stream is called for its wake time once per Run, so each piece it
// forwards then goes out before the next; the end passes on only when
// every stage has finished.
func TestWakeOncePerRunAndEnd(t *testing.T) {
	c := New(&filter.Session{}, filter.ToUpstream, []Stage{
		{Name: "slice", Stream: fn(func(b *filter.Batch) error {
			if len(b.In) > 0 {
				b.Pass(1)
			}
			if len(b.In) > 0 {
				b.WakeAt(b.Now)
			}
			return nil
		})},
		{Name: "pass", Stream: fn(func(b *filter.Batch) error {
			b.Pass(len(b.In))
			return nil
		})},
	})
	defer c.Close(nil)
	feed(t, c, []byte("abc"))
	c.CloseInput()
	var pieces []string
	for i := 0; !c.Done(); i++ {
		if i > 10 {
			t.Fatal("chain never finished")
		}
		if _, err := c.Run(t0); err != nil {
			t.Fatal(err)
		}
		pieces = append(pieces, string(c.Out()))
		c.Sent(len(c.Out()))
	}
	if len(pieces) != 3 || pieces[0] != "a" || pieces[1] != "b" || pieces[2] != "c" {
		t.Fatalf("pieces %q, want a, b, c one per Run", pieces)
	}
}

// funcFilter is a Filter made of a function.
type funcFilter func(*filter.Session) (filter.Stream, filter.Stream)

func (f funcFilter) Streams(s *filter.Session) (filter.Stream, filter.Stream) { return f(s) }

// closeCounter is a Stream that passes everything and counts its Closes.
type closeCounter struct{ closes *int }

func (c closeCounter) Process(b *filter.Batch) error { b.Pass(len(b.In)); return nil }
func (c closeCounter) Close(error)                   { *c.closes++ }

// A panic in Streams ends the session as a panic in Process does: the
// chain's first Run returns an *Error carrying the panic and its stack,
// whichever direction runs first, and the Streams already made by the
// filters before it are closed with the chains.
func TestPanicInStreamsFailsTheSession(t *testing.T) {
	closes := 0
	set := &Set{Filters: []Named{
		{Name: "ok", Filter: funcFilter(func(*filter.Session) (filter.Stream, filter.Stream) {
			return closeCounter{&closes}, closeCounter{&closes}
		})},
		{Name: "bad", Filter: funcFilter(func(*filter.Session) (filter.Stream, filter.Stream) {
			panic("boom")
		})},
	}}
	for _, dir := range []string{"upstream", "client"} {
		t.Run(dir, func(t *testing.T) {
			closes = 0
			up, down := set.Chains(&filter.Session{ID: 1})
			if up == nil || down == nil {
				t.Fatalf("chains %v, %v: want both, to report the panic", up, down)
			}
			first := up
			if dir == "client" {
				first = down
			}
			_, err := first.Run(t0)
			var ce *Error
			if !errors.As(err, &ce) || ce.Filter != "bad" || ce.Panic != "boom" {
				t.Fatalf("Run: %v, want the panic of filter bad", err)
			}
			if !strings.Contains(string(ce.Stack), "Streams") {
				t.Errorf("stack does not show Streams:\n%s", ce.Stack)
			}
			if IsReset(err) || IsClose(err) {
				t.Errorf("%v reads as a reset or close, want a filter failure", err)
			}
			up.Close(err)
			down.Close(err)
			if closes != 2 {
				t.Errorf("%d streams of the filter before closed, want 2", closes)
			}
		})
	}
}
