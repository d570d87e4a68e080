package proxy

import (
	"context"
	"slices"
	"time"

	"github.com/pierproxy/pier/internal/session"
)

// recentEnds is how many finished sessions each loop remembers, for the
// admin API's list of recent ends (what a burst of connect_failed looks
// like, without reading the access log).
const recentEnds = 512

// endRing is one loop's last recentEnds finished sessions. Only its loop
// writes or reads it: a reader asks the loop (relay.Loop.Do).
type endRing struct {
	recs [recentEnds]session.Record
	n    uint64 // records ever added
}

func (e *endRing) add(r *session.Record) {
	e.recs[e.n%recentEnds] = *r
	e.n++
}

// EndsMatch selects recent ends; zero fields match all.
type EndsMatch struct {
	Route  string
	Reason session.Reason // NotEnded: every reason
}

// RecentEnds returns the most recent finished sessions matching m, newest
// first, at most limit (and at most recentEnds per loop), as the loops
// remember them; partial reports a loop that did not answer before ctx
// ended (its ends are left out).
func (s *Server) RecentEnds(ctx context.Context, m EndsMatch, limit int) (ends []session.Record, partial bool) {
	replies := make(chan []session.Record, len(s.loops))
	asked := 0
	for i, l := range s.loops {
		ring := &s.ends[i]
		if l.Do(func() { replies <- ring.match(m, limit) }) {
			asked++
		}
	}
	partial = collect(ctx, replies, asked, func(r []session.Record) bool {
		ends = append(ends, r...)
		return false
	})
	slices.SortFunc(ends, func(a, b session.Record) int { return endTime(b).Compare(endTime(a)) })
	if len(ends) > limit {
		ends = ends[:limit]
	}
	return ends, partial
}

// match copies out the newest records matching m, at most limit; on the
// loop.
func (e *endRing) match(m EndsMatch, limit int) []session.Record {
	var out []session.Record
	for i := uint64(0); i < min(e.n, recentEnds) && len(out) < limit; i++ {
		r := &e.recs[(e.n-1-i)%recentEnds]
		if (m.Route == "" || r.Route == m.Route) && (m.Reason == session.NotEnded || r.Reason == m.Reason) {
			out = append(out, *r)
		}
	}
	return out
}

func endTime(r session.Record) time.Time { return r.Start.Add(r.Duration) }
