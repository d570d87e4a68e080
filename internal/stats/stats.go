// Package stats holds the data path's counters per route (and, for the
// edge, per listener and per match key): one Shard per relay loop,
// written only by that loop, summed by Totals when someone reads them (a
// Prometheus scrape, the admin API).
//
// The hot path pays one uncontended atomic add per event on a cache line
// no other loop writes, and nothing per byte beyond one add per direction
// per turn of the loop: a scrape never wakes or waits for a loop, so it
// answers even while one is stuck. Every Shard method is nil-safe, so a
// route built without counters (Route.Stats nil) costs a nil check.
//
//	st := stats.NewRoute("db", srv.Loops())
//	sh := st.Shard(loop) // on loop's goroutine only:
//	sh.Start(); sh.Enter(session.Connecting); ...; sh.End(rec)
//	t := st.Totals()     // from any goroutine
//
// stats imports only internal/session and the standard library.
package stats

import (
	"sync/atomic"
	"time"

	"github.com/pierproxy/pier/internal/session"
)

// Refusal says why a client was refused: counted apart from the reasons
// sessions end, because a limit refusal is not a session at all.
type Refusal uint8

// The reasons a client is refused, in the words the metrics use.
const (
	RefusedLimit       Refusal = iota // the route was at max_connections
	RefusedNoUpstream                 // no member of the pool could take it
	RefusedLocalError                 // pier ran out of something before a byte moved
	RefusedDenied                     // the route's allow/deny list refused the client's address
	RefusedClientLimit                // the client was at the route's per-client max_connections
	RefusedRateLimit                  // the route's accept rate or the client's rate was spent

	// NumRefusals is one past the last refusal, for arrays indexed by it.
	NumRefusals = iota
)

var refusalNames = [...]string{
	RefusedLimit:       "limit",
	RefusedNoUpstream:  "no_upstream",
	RefusedLocalError:  "local_error",
	RefusedDenied:      "denied",
	RefusedClientLimit: "client_limit",
	RefusedRateLimit:   "rate_limit",
}

func (r Refusal) String() string {
	if int(r) < len(refusalNames) {
		return refusalNames[r]
	}
	return "unknown"
}

// The histograms' upper bounds, in seconds. A connect to a member on the
// same host takes ~50µs, across a data centre ~0.5ms, and the default
// connect timeout is 5s; sessions last from a request's millisecond to a
// database connection's hour.
var (
	connectBounds  = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	durationBounds = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 600, 3600}
)

// maxBounds is the most bounds a histogram has.
const maxBounds = 13

var (
	connectLimits  = limits(connectBounds)
	durationLimits = limits(durationBounds)
)

func limits(bounds []float64) []time.Duration {
	if len(bounds) > maxBounds {
		panic("stats: more bounds than maxBounds")
	}
	d := make([]time.Duration, len(bounds))
	for i, b := range bounds {
		d[i] = time.Duration(b * float64(time.Second))
	}
	return d
}

// A Route is one route's counters.
type Route struct {
	Name   string
	shards []Shard // by loop index
}

// NewRoute makes the counters of a route served by loops relay loops.
func NewRoute(name string, loops int) *Route {
	r := &Route{Name: name, shards: make([]Shard, max(loops, 0))}
	for i := range r.shards {
		r.shards[i].ConnectTime.limits = connectLimits
		r.shards[i].Duration.limits = durationLimits
	}
	return r
}

// Shard returns the counters loop (its index) writes. A nil Route, or a
// loop it was not made for, gives nil: nothing is counted.
func (r *Route) Shard(loop int) *Shard {
	if r == nil || loop < 0 || loop >= len(r.shards) {
		return nil
	}
	return &r.shards[loop]
}

// A Shard is the counters of one route on one relay loop. Only that loop
// writes them (hence the atomics are never contended); any goroutine may
// read them. Its methods do nothing on a nil Shard.
type Shard struct {
	started    atomic.Uint64
	ended      [session.NumReasons]atomic.Uint64
	refused    [NumRefusals]atomic.Uint64
	toUpstream atomic.Uint64
	toClient   atomic.Uint64
	retries    atomic.Uint64
	// states counts live sessions by state. A session enters and leaves
	// its states on one loop, so a shard's counts never go negative.
	states      [session.NumStates]atomic.Int64
	ConnectTime Histogram
	Duration    Histogram
	_           [64]byte // the next loop's shard starts on another cache line
}

// Start counts a session admitted.
func (s *Shard) Start() {
	if s != nil {
		s.started.Add(1)
	}
}

// Refuse counts a client refused for why. A no_upstream client is a
// session as well: End counts it, and that counts the refusal too.
func (s *Shard) Refuse(why Refusal) {
	if s != nil && why < NumRefusals {
		s.refused[why].Add(1)
	}
}

// End counts a session ended: its reason, its retries (dials beyond the
// first) and its duration. A session that ended for no_upstream, or for
// local_error before a byte moved, counts as refused as well: the client
// got nothing. Its bytes are not End's: AddBytes counted them as they
// moved.
func (s *Shard) End(r *session.Record) {
	if s == nil {
		return
	}
	if r.Reason < session.NumReasons {
		s.ended[r.Reason].Add(1)
	}
	if r.Tries > 1 {
		s.retries.Add(uint64(r.Tries - 1))
	}
	s.Duration.Observe(r.Duration)
	switch {
	case r.Reason == session.NoUpstream:
		s.refused[RefusedNoUpstream].Add(1)
	case r.Reason == session.LocalError && r.ToUpstream == 0 && r.ToClient == 0:
		s.refused[RefusedLocalError].Add(1)
	}
}

// Enter counts a session entering its first state.
func (s *Shard) Enter(to session.State) {
	if s != nil && to < session.NumStates {
		s.states[to].Add(1)
	}
}

// Move counts a session moving from one state to another.
func (s *Shard) Move(from, to session.State) {
	if s != nil && from < session.NumStates && to < session.NumStates && from != to {
		s.states[from].Add(-1)
		s.states[to].Add(1)
	}
}

// Leave counts a session leaving its last state: it ended.
func (s *Shard) Leave(from session.State) {
	if s != nil && from < session.NumStates {
		s.states[from].Add(-1)
	}
}

// AddBytes counts bytes delivered: up to the upstream, down to the client.
func (s *Shard) AddBytes(up, down int64) {
	if s == nil {
		return
	}
	if up > 0 {
		s.toUpstream.Add(uint64(up))
	}
	if down > 0 {
		s.toClient.Add(uint64(down))
	}
}

// Connected observes how long an upstream took to accept.
func (s *Shard) Connected(d time.Duration) {
	if s != nil {
		s.ConnectTime.Observe(d)
	}
}

// A Histogram counts observations in fixed buckets, Prometheus style: an
// observation v lands in the first bucket whose bound is >= v, or above
// the last bound. Only its shard's loop observes.
type Histogram struct {
	limits []time.Duration // the bounds, shared by every histogram of the kind
	counts [maxBounds + 1]atomic.Uint64
	sumNs  atomic.Uint64
}

// Observe counts one observation. A negative d counts as 0.
func (h *Histogram) Observe(d time.Duration) {
	if h == nil || h.limits == nil {
		return
	}
	d = max(d, 0)
	i := 0
	for i < len(h.limits) && d > h.limits[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(d))
}

// Totals are a route's counters summed over its loops.
type Totals struct {
	Started              uint64
	Ended                [session.NumReasons]uint64
	Refused              [NumRefusals]uint64
	ToUpstream, ToClient uint64                   // bytes delivered, live sessions' included
	Retries              uint64                   // dials beyond the first
	States               [session.NumStates]int64 // live sessions by state
	ConnectTime          HistogramTotals          // seconds
	Duration             HistogramTotals          // seconds
}

// HistogramTotals is a histogram summed over loops.
type HistogramTotals struct {
	Bounds []float64 // upper bounds in seconds, ascending (the +Inf bucket is implicit)
	Counts []uint64  // per bucket, not cumulative, len(Bounds)+1 (last = above the last bound)
	Sum    float64   // seconds
}

// Count returns the observations in every bucket.
func (h HistogramTotals) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Totals sums the route's shards. Safe from any goroutine; it only loads,
// so it never waits for a loop. The counts are each a moment's, not one
// moment's for all: a session ending meanwhile may be in Ended and still
// in States.
func (r *Route) Totals() Totals {
	var t Totals
	t.ConnectTime = newHistogramTotals(connectBounds)
	t.Duration = newHistogramTotals(durationBounds)
	if r == nil {
		return t
	}
	var connectNs, durationNs uint64
	for i := range r.shards {
		s := &r.shards[i]
		t.Started += s.started.Load()
		for j := range s.ended {
			t.Ended[j] += s.ended[j].Load()
		}
		for j := range s.refused {
			t.Refused[j] += s.refused[j].Load()
		}
		t.ToUpstream += s.toUpstream.Load()
		t.ToClient += s.toClient.Load()
		t.Retries += s.retries.Load()
		for j := range s.states {
			t.States[j] += s.states[j].Load()
		}
		for j := range t.ConnectTime.Counts {
			t.ConnectTime.Counts[j] += s.ConnectTime.counts[j].Load()
		}
		for j := range t.Duration.Counts {
			t.Duration.Counts[j] += s.Duration.counts[j].Load()
		}
		connectNs += s.ConnectTime.sumNs.Load()
		durationNs += s.Duration.sumNs.Load()
	}
	t.ConnectTime.Sum = time.Duration(connectNs).Seconds()
	t.Duration.Sum = time.Duration(durationNs).Seconds()
	return t
}

func newHistogramTotals(bounds []float64) HistogramTotals {
	return HistogramTotals{
		Bounds: append([]float64(nil), bounds...),
		Counts: make([]uint64, len(bounds)+1),
	}
}
