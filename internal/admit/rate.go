package admit

import (
	"time"

	"golang.org/x/time/rate"
)

// A Rate caps how fast clients are accepted: a token bucket shared by
// every loop. A nil *Rate allows everything.
type Rate struct {
	l *rate.Limiter
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
	return r.l.AllowN(now, 1)
}

// Set retunes the bucket (a reload), keeping the tokens it holds.
func (r *Rate) Set(perSecond float64, burst int) {
	if r == nil {
		return
	}
	r.l.SetLimit(rate.Limit(perSecond))
	r.l.SetBurst(burst)
}
