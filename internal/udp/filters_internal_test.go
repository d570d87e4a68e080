package udp

import (
	"testing"
	"time"
)

// Datagrams due at the same time leave a delay queue in the order they
// were queued, among others due earlier and later: a heap alone swaps
// equals, which broke latency's order and put a duplicate before its
// original.
func TestDelayQueueKeepsOrderOfEquals(t *testing.T) {
	var q delayQueue
	dues := []time.Duration{5, 3, 5, 5, 1, 5, 3, 5, 5, 2, 5}
	for i, at := range dues {
		if !q.push(at, []byte{byte(i)}) {
			t.Fatal("queue full")
		}
	}
	var got []int
	last := time.Duration(-1)
	lastIdx := map[time.Duration]int{}
	for q.len() > 0 {
		at, _ := q.head()
		i := int(q.pop()[0])
		if at < last {
			t.Fatalf("time went back: %v after %v", at, last)
		}
		if prev, ok := lastIdx[at]; ok && i < prev {
			t.Fatalf("due %v: datagram %d left after %d", at, i, prev)
		}
		lastIdx[at], last = i, at
		got = append(got, i)
	}
	if len(got) != len(dues) {
		t.Fatalf("got %d datagrams back, want %d", len(got), len(dues))
	}
}
