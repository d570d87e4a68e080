// Package admit decides whether pier takes a new client at all, before any
// byte is read or any upstream is dialed: a rejected client costs one accept
// and one close.
//
// A Limit caps a route's live sessions. It survives reloads (the
// application layer hands the same Limit to the route's next version), so
// sessions begun under the old table still count against the new maximum.
//
//	lim := admit.NewLimit(10000)
//	if !lim.Acquire() { /* close the client */ }
//	defer lim.Release()
//
// An ACL says which client addresses may connect at all (deny wins), a
// Rate caps how fast a route (or pier) accepts, and Clients caps each
// client address (or prefix): its live sessions and its connection rate,
// in a table of bounded size. None of them blocks.
//
//	if !acl.Allows(ip) { /* close: denied */ }
//	if !rt.Allow(now) { /* close: rate_limit */ }
//	t, v := clients.Admit(ip, now) // v != Admitted: close
//	defer clients.Release(t)
package admit

import "sync/atomic"

// A Limit counts live sessions against a maximum. The zero value admits
// everyone.
type Limit struct {
	max      atomic.Int64 // 0 means no limit
	live     atomic.Int64
	rejected atomic.Uint64
}

// NewLimit returns a Limit of max live sessions; 0 means no limit.
func NewLimit(max int) *Limit {
	l := &Limit{}
	l.SetMax(max)
	return l
}

// SetMax changes the maximum; sessions already live are never ended by it.
func (l *Limit) SetMax(max int) { l.max.Store(int64(max)) }

// Acquire takes a place for a new session. It reports false, and counts a
// rejection, when the limit is reached; then the caller must not Release.
func (l *Limit) Acquire() bool {
	n := l.live.Add(1)
	if m := l.max.Load(); m > 0 && n > m {
		l.live.Add(-1)
		l.rejected.Add(1)
		return false
	}
	return true
}

// Release gives back a place taken by Acquire.
func (l *Limit) Release() { l.live.Add(-1) }

// Live returns the number of sessions holding a place.
func (l *Limit) Live() int64 { return l.live.Load() }

// Rejected returns how many clients Acquire has turned away.
func (l *Limit) Rejected() uint64 { return l.rejected.Load() }
