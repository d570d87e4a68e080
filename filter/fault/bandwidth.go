package fault

import (
	"time"

	"github.com/pierproxy/pier/filter"
)

// bandwidth forwards at most rate bytes per second, like a slow link.
//
//	rate: 1MB        # required; bytes per second (0: a stall, see below)
//	burst: 64KiB     # default rate/10 or 16KiB, whichever is larger
//	direction: client  # default client (Toxiproxy's downstream)
//
// It is a token bucket: tokens come at rate, up to burst, and each byte
// forwarded takes one, so by any time t after the first byte at most
// burst + rate*t bytes have gone. The bucket starts full. A stream that
// waits for tokens asks to be woken when about 10ms worth have come (at
// most burst, and never less than one byte), not for every byte.
//
// rate 0 is a stall: nothing is forwarded until the stream's input ends,
// at the source's end or when the route's filters change under a live
// session, and then everything held goes at once. It is Toxiproxy's
// bandwidth toxic at rate 0, which holds a connection's bytes until the
// toxic is removed; what it holds is bounded like any stream's (256 KiB,
// then the source is slowed).
type bandwidth struct {
	common
	rate, burst int64
}

// maxRate bounds rate and burst so that the bucket, kept in
// billionths of a byte, fits an int64.
const maxRate = 1 << 33 // 8 GiB

func newBandwidth(o *filter.Options) (filter.Filter, error) {
	f := &bandwidth{common: parseCommon(o, filter.ToClient)}
	if !o.Has("rate") {
		o.Errorf("rate", "missing: bytes per second (say rate: 1MB)")
	}
	f.rate = o.Size("rate", 1, 0, maxRate)
	f.burst = o.Size("burst", max(f.rate/10, 16<<10), 1, maxRate)
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *bandwidth) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	return f.streams(s, func(filter.Direction) filter.Stream {
		return &bandwidthStream{
			rate:   f.rate,
			burst:  f.burst * nano,
			step:   min(f.burst, max(f.rate/100, 1)) * nano,
			tokens: f.burst * nano,
		}
	})
}

// nano is a byte in the bucket's unit: rate bytes per second is rate of
// these per nanosecond, so refilling is exact integer arithmetic.
const nano = int64(time.Second)

type bandwidthStream struct {
	rate   int64 // bytes per second: billionths of a byte per nanosecond
	burst  int64 // the bucket's size, in billionths of a byte
	step   int64 // the tokens worth waking for
	tokens int64 // in billionths of a byte
	last   time.Time
}

func (s *bandwidthStream) Process(b *filter.Batch) error {
	if s.rate == 0 { // a stall
		if b.EOF {
			b.Pass(len(b.In))
		}
		return nil
	}
	s.refill(b.Now)
	if n := min(int64(len(b.In)), s.tokens/nano); n > 0 {
		b.Pass(int(n))
		s.tokens -= n * nano
	}
	if len(b.In) > 0 {
		need := min(int64(len(b.In))*nano, s.step) - s.tokens
		b.WakeAt(b.Now.Add(time.Duration((need + s.rate - 1) / s.rate)))
	}
	return nil
}

// refill adds the tokens that came since the last call.
func (s *bandwidthStream) refill(now time.Time) {
	if s.last.IsZero() {
		s.last = now
		return
	}
	dt := int64(now.Sub(s.last))
	if dt <= 0 {
		return
	}
	s.last = now
	if room := s.burst - s.tokens; dt > room/s.rate {
		s.tokens = s.burst // and no overflow from dt*rate
	} else {
		s.tokens += dt * s.rate
	}
}

var _ filter.Filter = (*bandwidth)(nil)
