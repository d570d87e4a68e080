package admit

import (
	"testing"
	"time"
)

// The limiters below are fed a late time, then an earlier one, in turn:
// a decision taken at its clock's now, then one that passes the accept
// time of a client that spoke seconds later (or a loop that read the
// clock just before another). Taken in order, every call is at the late
// time, so no more than the burst may pass. rate.Limiter alone takes the
// earlier time as its last and credits the interval again at the next
// late one: a full bucket every other call.

// TestRateEarlierTimeRefillsNothing pins that for the accept rate.
func TestRateEarlierTimeRefillsNothing(t *testing.T) {
	const burst = 4
	late := time.Now().Add(time.Hour) // after Set's clock too
	early := late.Add(-5 * time.Second)
	r := NewRate(20, burst)
	passed := 0
	for i := range 100 {
		at := late
		if i%2 == 1 {
			at = early
		}
		if r.Allow(at) {
			passed++
		}
	}
	if passed > burst {
		t.Errorf("%d passed at 20/s, burst %d, all within one instant", passed, burst)
	}
	if passed < burst {
		t.Errorf("only %d passed: the burst is %d", passed, burst)
	}
	// A retune in between does not rewind it either.
	r.Set(20, burst)
	if r.Allow(early) || r.Allow(late) {
		t.Error("Set refilled the bucket")
	}
}

// TestClientsEarlierTimeRefillsNothing pins it for a client's rate.
func TestClientsEarlierTimeRefillsNothing(t *testing.T) {
	const burst = 4
	c := NewClients(ClientLimits{PerSecond: 20, Burst: burst})
	a := ip("192.0.2.1")
	late := t0.Add(time.Hour)
	early := late.Add(-5 * time.Second)
	passed := 0
	for i := range 100 {
		at := late
		if i%2 == 1 {
			at = early
		}
		tk, v := c.Admit(a, at)
		if v == Admitted {
			passed++
			c.Release(tk)
		}
	}
	if passed != burst {
		t.Errorf("%d passed at 20/s, burst %d, all within one instant", passed, burst)
	}
	// A retune (Set, applied at the next Admit) does not rewind it.
	c.Set(ClientLimits{PerSecond: 20, Burst: burst + 1})
	if _, v := c.Admit(a, early); v == Admitted {
		t.Error("a retune at an earlier time refilled the bucket")
	}
}
