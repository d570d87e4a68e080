package relay

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The heap hands sessions back in deadline order, through schedules,
// reschedules and removals.
func TestTimersOrder(t *testing.T) {
	var h timers
	conns := make([]*conn, 200)
	for i := range conns {
		conns[i] = &conn{heapIdx: -1}
		h.schedule(conns[i], time.Duration(rand.IntN(1000)))
	}
	for _, c := range conns[:50] {
		h.schedule(c, time.Duration(rand.IntN(1000))) // move
	}
	for _, c := range conns[50:80] {
		h.remove(c)
		if c.heapIdx != -1 {
			t.Fatal("removed entry keeps its index")
		}
	}
	var got []time.Duration
	for c := h.next(); c != nil; c = h.next() {
		got = append(got, c.due)
		h.remove(c)
	}
	if len(got) != 170 {
		t.Fatalf("%d entries came out, want 170", len(got))
	}
	if !slices.IsSorted(got) {
		t.Fatalf("out of order: %v", got)
	}
}
