package health

// State is one member's verdict under a pool's thresholds. Not safe for
// concurrent use by itself; the pool calls it from one goroutine (or under
// its lock).
//
// A new member starts up, as in HAProxy, so that a pool serves at once
// after start or reload instead of refusing everything until its first
// round of checks: a member that is really down then takes fall failures
// to be found. So a pool must run the first probe of a member at once (a
// Checker does), not an interval later: a dead member is then marked down
// within fall*interval of being added, and its sessions fail over to the
// other members meanwhile. A pool that must not send a session to an
// unchecked member (nginx Plus's "mandatory") passes up=false instead: the
// member then comes up after rise successes.
type State struct {
	rise, fall int
	up         bool
	run        int // consecutive results against the verdict
}

// NewState returns a member's state with up as its initial verdict. A member that
// is up goes down after fall consecutive failures; one that is down comes
// up after rise consecutive successes. A rise or fall below 1 counts as 1.
func NewState(rise, fall int, up bool) *State {
	return &State{rise: max(rise, 1), fall: max(fall, 1), up: up}
}

// Observe records one probe result; it reports whether the verdict changed.
// A result that agrees with the verdict resets the count against it: only
// consecutive results change a verdict.
func (s *State) Observe(ok bool) (changed bool) {
	if ok == s.up {
		s.run = 0
		return false
	}
	s.run++
	need := s.fall
	if !s.up {
		need = s.rise
	}
	if s.run < need {
		return false
	}
	s.up, s.run = ok, 0
	return true
}

// Up reports the verdict: whether the member should get new sessions.
func (s *State) Up() bool { return s.up }
