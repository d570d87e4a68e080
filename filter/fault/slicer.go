package fault

import (
	"math/rand/v2"
	"time"

	"github.com/pierproxy/pier/filter"
)

// slicer forwards bytes in small pieces, each its own write, so that the
// peer's reads come short: a test for code that assumes one read brings
// one message.
//
//	size: 1          # default 1; a piece's average size in bytes
//	variation: 0     # default 0; a piece is size ± up to variation bytes (less than size)
//	delay: 0         # default 0; the time between pieces
//	direction: client  # default client (Toxiproxy's downstream)
//
// Each call forwards at most one piece and asks to be called again after
// delay (with delay 0, at once): pier writes what one call forwarded
// before it calls again, so pieces leave as separate writes even then.
// A piece is what is there when its time comes, if less than its size:
// the slicer never waits to fill one.
type slicer struct {
	common
	size, variation int
	delay           time.Duration
}

func newSlicer(o *filter.Options) (filter.Filter, error) {
	f := &slicer{common: parseCommon(o, filter.ToClient)}
	f.size = int(o.Size("size", 1, 1, 1<<30))
	f.variation = int(o.Size("variation", 0, 0, 1<<30))
	f.delay = o.Duration("delay", 0)
	if f.variation >= f.size && f.variation > 0 {
		o.Errorf("variation", "%d is not less than size (%d): a piece would be empty", f.variation, f.size)
	}
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *slicer) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	return f.streams(s, func(dir filter.Direction) filter.Stream {
		st := &slicerStream{size: f.size, variation: f.variation, delay: f.delay}
		if f.variation > 0 {
			st.rng = f.rand(s, dir)
		}
		return st
	})
}

type slicerStream struct {
	size, variation int
	delay           time.Duration
	rng             *rand.Rand // nil without variation
	next            time.Time  // when the next piece may go
}

func (s *slicerStream) Process(b *filter.Batch) error {
	if len(b.In) == 0 {
		return nil
	}
	if b.Now.Before(s.next) {
		b.WakeAt(s.next)
		return nil
	}
	piece := s.size
	if s.rng != nil {
		piece += s.rng.IntN(2*s.variation+1) - s.variation
	}
	b.Pass(min(piece, len(b.In)))
	s.next = b.Now.Add(s.delay)
	if len(b.In) > 0 {
		b.WakeAt(s.next)
	}
	return nil
}

var _ filter.Filter = (*slicer)(nil)
