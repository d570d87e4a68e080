package fault

import (
	"math/rand/v2"
	"time"

	"github.com/pierproxy/pier/filter"
)

// On a UDP route, latency and bandwidth work on datagrams: each datagram
// leaves with a time of its own, and pier's engine holds it until then.
// Their targeting options choose flows as they choose sessions.

// datagrams returns a DatagramStream from mk for each direction the fault
// acts on, if it targets the flow s.
func (c *common) datagrams(s *filter.Session, mk func(filter.Direction) filter.DatagramStream) (toUpstream, toClient filter.DatagramStream) {
	if !c.target.Chooses(s) {
		return nil, nil
	}
	if c.dir&filter.ToUpstream != 0 {
		toUpstream = mk(filter.ToUpstream)
	}
	if c.dir&filter.ToClient != 0 {
		toClient = mk(filter.ToClient)
	}
	return toUpstream, toClient
}

// Datagrams delays every datagram by delay ± jitter, keeping their order
// as the byte stream's latency does: a datagram whose jittered time falls
// before the one ahead of it leaves with that one. hold does not apply:
// the engine bounds what is held (filter.DatagramQueueLen,
// DatagramQueueBytes).
func (f *latency) Datagrams(s *filter.Session) (toUpstream, toClient filter.DatagramStream) {
	return f.datagrams(s, func(dir filter.Direction) filter.DatagramStream {
		st := &latencyDatagrams{delay: f.delay, jitter: f.jitter}
		if f.jitter > 0 {
			st.rng = f.rand(s, dir)
		}
		return st
	})
}

type latencyDatagrams struct {
	delay, jitter time.Duration
	rng           *rand.Rand // nil without jitter
	last          time.Time  // the latest due time given: none leaves before it
}

func (s *latencyDatagrams) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	due := at.Add(s.delay)
	if s.rng != nil {
		due = due.Add(time.Duration(s.rng.Int64N(2*int64(s.jitter)+1)) - s.jitter)
		if due.Before(at) {
			due = at
		}
	}
	if due.Before(s.last) {
		due = s.last
	}
	s.last = due
	out.Send(due, d)
	return nil
}

// Datagrams sends datagrams no faster than rate, as a link of that speed
// does: a datagram leaves once the one before it has gone out (at2 =
// max(at, next); next = at2 + len/rate). burst does not apply: a link
// sends one datagram at a time. A datagram that would wait behind more
// than filter.DatagramQueueBytes of others is dropped, as a router's full
// queue drops it, so that a sender faster than rate meets loss, not an
// ever longer delay. rate 0 drops every datagram (a dead link): there is
// no end of input for it to hold them until.
func (f *bandwidth) Datagrams(s *filter.Session) (toUpstream, toClient filter.DatagramStream) {
	return f.datagrams(s, func(filter.Direction) filter.DatagramStream {
		return &bandwidthDatagrams{rate: f.rate}
	})
}

type bandwidthDatagrams struct {
	rate int64     // bytes per second
	next time.Time // when the link is free: the last datagram has gone out
	// rest is the part of a nanosecond the last datagram's time on the
	// link left over, in billionths of a byte (see nano): carried on so
	// that many small datagrams add up to exactly rate.
	rest int64
}

func (s *bandwidthDatagrams) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	if s.rate == 0 {
		return nil
	}
	if s.next.Before(at) {
		s.next, s.rest = at, 0
	}
	// The bytes still to go out ahead of d, at rate: past the queue's
	// bound, d is dropped and takes no time on the link.
	// (At most about 1 MiB of seconds at rate: the product cannot
	// overflow.)
	if ahead := int64(s.next.Sub(at)) * s.rate / nano; ahead > 0 && ahead+int64(len(d)) > filter.DatagramQueueBytes {
		return nil
	}
	at2 := s.next
	// len/rate seconds on the link, in nanoseconds, with the remainder
	// carried: no overflow, as len is at most 64 KiB.
	work := int64(len(d))*nano + s.rest
	s.next = s.next.Add(time.Duration(work / s.rate))
	s.rest = work % s.rate
	out.Send(at2, d)
	return nil
}

var (
	_ filter.DatagramFilter = (*latency)(nil)
	_ filter.DatagramFilter = (*bandwidth)(nil)
)
