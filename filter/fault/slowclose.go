package fault

import (
	"time"

	"github.com/pierproxy/pier/filter"
)

// slowClose holds the end of the stream (the FIN) for a while after it
// comes, like a peer slow to close its side; the bytes pass at once.
//
//	delay: 2s        # required; how long to hold the end
//	direction: client  # default client (Toxiproxy's downstream)
type slowClose struct {
	common
	delay time.Duration
}

func newSlowClose(o *filter.Options) (filter.Filter, error) {
	f := &slowClose{common: parseCommon(o, filter.ToClient)}
	if !o.Has("delay") {
		o.Errorf("delay", "missing: how long to hold the end of the stream (say delay: 2s)")
	}
	f.delay = o.Duration("delay", 0)
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *slowClose) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	return f.streams(s, func(filter.Direction) filter.Stream {
		return &slowCloseStream{delay: f.delay}
	})
}

type slowCloseStream struct {
	delay time.Duration
	end   time.Time // when the end may pass on; zero before EOF
}

func (s *slowCloseStream) Process(b *filter.Batch) error {
	b.Pass(len(b.In))
	if !b.EOF {
		return nil
	}
	if s.end.IsZero() {
		s.end = b.Now.Add(s.delay)
	}
	if b.Now.Before(s.end) {
		b.WakeAt(s.end)
	}
	return nil
}

var _ filter.Filter = (*slowClose)(nil)
