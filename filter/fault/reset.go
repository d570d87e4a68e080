package fault

import (
	"time"

	"github.com/pierproxy/pier/filter"
)

// reset, timeout and limit end a session early. They share one Stream,
// cutStream, which forwards (or drops) bytes until a byte count or a time
// is reached and then returns its error.
//
// Counts and times are per direction: with direction both, each
// direction counts its own bytes, and the first to reach its mark ends
// the session. A time counts from the stream's first call, which pier
// makes when the filter takes up the session, rather than from
// Session.Start, so that a fault added to a running session by a reload
// gives it the full time, as a Toxiproxy toxic added to a live connection
// does.
//
// When the source ends before the mark, the end passes on as usual.

// reset ends the session with a TCP reset to both sides, like a peer or
// a middlebox that drops the connection's state.
//
//	bytes: 64KiB     # reset once this many bytes have passed (0: at the first call)
//	after: 5s        # reset this long after the first call (0: at the first call)
//	direction: both  # default both
//	start: take_up   # or first_byte: when after's clock starts
//	drop: false      # true: drop the bytes before the reset, forward none
//
// At least one of bytes and after is required; with both, the first
// reached counts. Exactly bytes bytes are forwarded, then the reset.
//
// start: first_byte starts the clock (and the count's "at the first
// call", for bytes 0) at the first byte that comes, or at the end of the
// source if none does, instead of when the filter takes up the session:
// Toxiproxy's reset_peer waits so, and drops what it sees (drop: true),
// which is how pier serves that toxic.
//
// after may also be a byte count, "reset after 100 bytes": a whole number
// with an optional unit (100, 64KiB) is bytes, a duration (2s) is time.
// That is what lets the command line say either with the flag's one
// value: --reset 100 resets after 100 bytes, --reset 2s after 2 seconds.
type reset struct {
	common
	bytes     int64 // -1: none
	after     time.Duration
	timed     bool
	firstByte bool // start: first_byte
	drop      bool
}

func newReset(o *filter.Options) (filter.Filter, error) {
	f := &reset{common: parseCommon(o, filter.Both), bytes: -1}
	if !o.Has("bytes") && !o.Has("after") {
		o.Errorf("", "missing bytes or after: when to reset (say after: 5s, or bytes: 64KiB)")
	}
	if o.Has("bytes") {
		f.bytes = o.Size("bytes", 0, 0, 1<<62)
	}
	if afterIsBytes(o) {
		if o.Has("bytes") {
			o.Errorf("after", "%q is a byte count, and bytes is given too: give one", o.String("after", ""))
		} else {
			f.bytes = o.Size("after", 0, 0, 1<<62)
		}
	} else {
		f.timed = o.Has("after")
		f.after = o.Duration("after", 0)
	}
	f.firstByte = o.Enum("start", "take_up", "take_up", "first_byte") == "first_byte"
	f.drop = o.Bool("drop", false)
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// afterIsBytes reports whether reset's after is a byte count (100,
// 64KiB) rather than a time. "0" is either, and the same: at the first
// call.
func afterIsBytes(o *filter.Options) bool {
	_, err := filter.ParseSize(o.String("after", ""))
	return o.Has("after") && err == nil
}

func (f *reset) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	return f.streams(s, func(filter.Direction) filter.Stream {
		return &cutStream{left: f.bytes, after: f.after, timed: f.timed, drop: f.drop, waitFirst: f.firstByte, err: filter.ErrReset}
	})
}

// timeout drops every byte, and closes the session cleanly after a while,
// like a peer that has gone silent.
//
//	after: 5s           # default 0: never close, only drop
//	direction: both     # default both
//	close_at_end: false # true: close the session when the input ends
//
// close_at_end closes the session (cleanly, both sides) when the
// stream's input ends: at the source's FIN, and also when the route's
// filters change under a live session (a reload, a runtime edit), which
// ends the input of the old filters. That is Toxiproxy's timeout toxic,
// whose removal closes the connections it held, so that bytes it dropped
// never leave a gap in a stream that goes on.
type timeout struct {
	common
	after      time.Duration
	closeAtEnd bool
}

func newTimeout(o *filter.Options) (filter.Filter, error) {
	f := &timeout{common: parseCommon(o, filter.Both)}
	f.after = o.Duration("after", 0)
	f.closeAtEnd = o.Bool("close_at_end", false)
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *timeout) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	return f.streams(s, func(filter.Direction) filter.Stream {
		return &cutStream{left: -1, drop: true, after: f.after, timed: f.after > 0, closeAtEnd: f.closeAtEnd, err: filter.ErrClose}
	})
}

// limit closes the session cleanly once some bytes have passed, like a
// peer that hangs up mid-message.
//
//	bytes: 1KiB      # required; close once this many bytes have passed
//	direction: client  # default client (Toxiproxy's downstream)
type limit struct {
	common
	bytes int64
}

func newLimit(o *filter.Options) (filter.Filter, error) {
	f := &limit{common: parseCommon(o, filter.ToClient)}
	if !o.Has("bytes") {
		o.Errorf("bytes", "missing: how many bytes to pass before closing (say bytes: 1KiB)")
	}
	f.bytes = o.Size("bytes", 0, 0, 1<<62)
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *limit) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	return f.streams(s, func(filter.Direction) filter.Stream {
		return &cutStream{left: f.bytes, err: filter.ErrClose}
	})
}

// A cutStream forwards bytes (or drops them) until left reaches 0 or
// after has passed since its start, and then returns err.
type cutStream struct {
	left       int64 // bytes still to forward (or drop); -1: no count
	drop       bool  // drop bytes rather than forward them
	after      time.Duration
	timed      bool      // after counts
	waitFirst  bool      // the start is the first byte (or the end), not the first call
	closeAtEnd bool      // the end of the input is err too (ErrClose)
	deadline   time.Time // set at the start when timed
	err        error
}

func (s *cutStream) Process(b *filter.Batch) error {
	if s.waitFirst {
		if len(b.In) == 0 && !b.EOF {
			return nil
		}
		s.waitFirst = false
	}
	if s.timed && s.deadline.IsZero() {
		s.deadline = b.Now.Add(s.after)
	}
	if s.timed && !b.Now.Before(s.deadline) {
		return s.err
	}
	n := int64(len(b.In))
	if s.left >= 0 {
		n = min(n, s.left)
	}
	if s.drop {
		b.Drop(int(n))
	} else {
		b.Pass(int(n))
	}
	if s.left >= 0 {
		if s.left -= n; s.left == 0 {
			return s.err // after the bytes: they are delivered first
		}
	}
	if s.closeAtEnd && b.EOF {
		return filter.ErrClose
	}
	if s.timed && !b.EOF {
		b.WakeAt(s.deadline)
	}
	return nil
}

var (
	_ filter.Filter = (*reset)(nil)
	_ filter.Filter = (*timeout)(nil)
	_ filter.Filter = (*limit)(nil)
)
