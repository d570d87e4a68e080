package udp

import (
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
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

// holdAnHour delays every datagram by an hour.
type holdAnHour struct{}

func (holdAnHour) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at.Add(time.Hour), d)
	return nil
}

// The bytes a socket's flows hold delayed are bounded together, not only
// per flow: past maxDelayedPerSocket a delayed datagram is dropped and
// counted (queue_full), and the budget comes back as flows end with
// theirs (lost, and counted).
func TestDelayedBytesBoundedPerSocket(t *testing.T) {
	k := &socket{c: &counters{}, wall: time.Now()}
	big := make([]byte, 1<<20-1) // within one queue's byte bound
	streams := []filter.DatagramStream{holdAnHour{}}
	n := maxDelayedPerSocket/len(big) + 4
	var flows []*flow
	for range n {
		f := &flow{filt: &flowFilters{}, heap: -1}
		f.due = time.Duration(1 << 62)
		flows = append(flows, f)
		k.filtered(f, streams, &f.filt.upQ, big, func(*socket, *flow, []byte) bool {
			t.Fatal("a datagram delayed an hour went out at once")
			return false
		})
	}
	if k.delayed > maxDelayedPerSocket {
		t.Fatalf("%d bytes delayed, past the bound of %d", k.delayed, maxDelayedPerSocket)
	}
	full := k.c.queueFull.Load()
	if full == 0 {
		t.Fatal("no datagram was dropped at the socket's bound")
	}
	held := uint64(n) - full
	for _, f := range flows {
		k.closeFilters(f, 0, nil)
	}
	if k.delayed != 0 {
		t.Errorf("%d bytes still counted after every flow ended", k.delayed)
	}
	if got := k.c.filterDrop.Load(); got != held {
		t.Errorf("%d datagrams counted lost with their flows, want %d", got, held)
	}
}
