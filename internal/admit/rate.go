package admit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// A Rate caps how fast clients are accepted: a token bucket shared by
// every loop. A nil *Rate allows everything.
type Rate struct {
	// mu orders the bucket's times: rate.Limiter takes a time earlier
	// than its last as its new last, and credits the interval again at
	// the next later one, so a caller's late, earlier time (a loop that
	// read the clock before another, an accept time used at a decision)
	// would refill the bucket. Under mu, a time is never earlier than last.
	mu   sync.Mutex
	last time.Time
	l    *rate.Limiter
}

// NewRate returns a bucket refilled at perSecond tokens a second, holding
// at most burst.
func NewRate(perSecond float64, burst int) *Rate {
	return &Rate{l: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// Allow takes a token at now and reports whether there was one. It never
// blocks. A nil Rate allows.
func (r *Rate) Allow(now time.Time) bool {
	if r == nil {
		return true
	}
	r.mu.Lock()
	now = r.advance(now)
	ok := r.l.AllowN(now, 1)
	r.mu.Unlock()
	return ok
}

// advance returns now, or the last time the bucket saw if now is
// earlier, and makes it the last. Called with r.mu.
func (r *Rate) advance(now time.Time) time.Time {
	if now.Before(r.last) {
		return r.last
	}
	r.last = now
	return now
}

// Set retunes the bucket (a reload), keeping the tokens it holds.
func (r *Rate) Set(perSecond float64, burst int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	now := r.advance(time.Now())
	r.l.SetLimitAt(now, rate.Limit(perSecond))
	r.l.SetBurstAt(now, burst)
	r.mu.Unlock()
}
