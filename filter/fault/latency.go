package fault

import (
	"math/rand/v2"
	"time"

	"github.com/pierproxy/pier/filter"
)

// latency holds every byte for delay ± jitter before forwarding it, like
// a long or unsteady path.
//
//	delay: 100ms     # required; how long each byte is held
//	jitter: 20ms     # default 0; each arrival's delay varies by up to ±jitter
//	hold: 4MiB       # default 4MiB; most bytes held before pier stops reading
//	direction: client  # default client (Toxiproxy's downstream)
//
// The bytes of one arrival (what one read brought) are held together.
// Order is kept: an arrival whose jittered time falls before an earlier
// one's leaves with it, so a byte leaves between arrival+delay-jitter and
// arrival+delay+jitter, and never before arrival (late only when the
// destination is slow, or past maxArrivals). Holding is bounded by
// hold, so throughput is at most hold/delay (40 MB/s for 4MiB at 100ms);
// past that the source is slowed, as a long fat pipe with a small window
// would be.
type latency struct {
	common
	delay, jitter time.Duration
	hold          int
}

// maxLatency bounds delay and jitter, so that due times (durations since
// a stream's first call) cannot overflow.
const maxLatency = 24 * time.Hour

func newLatency(o *filter.Options) (filter.Filter, error) {
	f := &latency{common: parseCommon(o, filter.ToClient)}
	if !o.Has("delay") {
		o.Errorf("delay", "missing: how long to hold each byte (say delay: 100ms)")
	}
	f.delay = o.Duration("delay", 0)
	f.jitter = o.Duration("jitter", 0)
	f.hold = int(o.Size("hold", 4<<20, 1, 1<<30))
	for _, k := range []struct {
		key string
		d   time.Duration
	}{{"delay", f.delay}, {"jitter", f.jitter}} {
		if k.d > maxLatency {
			o.Errorf(k.key, "%v is more than %v", k.d, maxLatency)
		}
	}
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *latency) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	return f.streams(s, func(dir filter.Direction) filter.Stream {
		st := &latencyStream{delay: f.delay, jitter: f.jitter, hold: f.hold}
		if f.jitter > 0 {
			st.rng = f.rand(s, dir)
		}
		return st
	})
}

// maxArrivals bounds how many arrivals a stream keeps apart (16 bytes
// each): past that, a new arrival joins the one before it and leaves at
// the later of their times. Only a peer writing thousands of tiny
// segments within one delay gets there.
const maxArrivals = 4096

// An arrival is the bytes one call brought: where they end, counted in
// bytes since the stream began, and when they are due, counted from the
// stream's first call (plain numbers keep the ring free of pointers).
type arrival struct {
	end int64
	due time.Duration
}

type latencyStream struct {
	delay, jitter time.Duration
	hold          int
	rng           *rand.Rand // nil without jitter

	base       time.Time // the first call: due times count from it
	seen, sent int64     // bytes scheduled and forwarded since the start

	// q is a ring of the arrivals not yet forwarded, oldest at head. It
	// grows by doubling, to maxArrivals, and is then reused.
	q       []arrival
	head, n int
}

func (s *latencyStream) HoldLimit() int { return s.hold }

func (s *latencyStream) Process(b *filter.Batch) error {
	if s.base.IsZero() {
		s.base = b.Now
	}
	now := b.Now.Sub(s.base)
	// b.In is what was left last time (seen-sent bytes), then new bytes.
	if n := int64(len(b.In)) - (s.seen - s.sent); n > 0 {
		s.arrive(now, n)
	}
	for s.n > 0 {
		a := s.q[s.head]
		if a.due > now {
			b.WakeAt(s.base.Add(a.due))
			break
		}
		b.Pass(int(a.end - s.sent))
		s.sent = a.end
		s.head = (s.head + 1) % len(s.q)
		s.n--
	}
	return nil
}

// arrive schedules n new bytes that came at now.
func (s *latencyStream) arrive(now time.Duration, n int64) {
	due := now + s.delay
	if s.rng != nil {
		due += time.Duration(s.rng.Int64N(2*int64(s.jitter)+1)) - s.jitter
		due = max(due, now)
	}
	s.seen += n
	if s.n > 0 {
		last := &s.q[(s.head+s.n-1)%len(s.q)]
		// Due no later than the arrival before: it leaves with that one,
		// which keeps the order (due times never decrease).
		if due <= last.due || s.n == maxArrivals {
			last.end, last.due = s.seen, max(last.due, due)
			return
		}
	}
	if s.n == len(s.q) {
		s.grow()
	}
	s.q[(s.head+s.n)%len(s.q)] = arrival{end: s.seen, due: due}
	s.n++
}

// grow doubles the ring, unwrapping it.
func (s *latencyStream) grow() {
	q := make([]arrival, max(16, 2*len(s.q)))
	for i := range s.n {
		q[i] = s.q[(s.head+i)%len(s.q)]
	}
	s.q, s.head = q, 0
}

var (
	_ filter.Filter = (*latency)(nil)
	_ filter.Holder = (*latencyStream)(nil)
)
