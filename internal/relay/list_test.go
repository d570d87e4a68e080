package relay

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/session"
)

// fakeSessions puts n sessions without sockets in the running loop l's
// slots, IDs 1..n, for the walks to find. Only the walks look at them: no
// event comes. The loop's shutdown ends them.
func fakeSessions(tb testing.TB, l *Loop, n int) {
	tb.Helper()
	onLoop(tb, l, func() {
		for i := range n {
			l.nextGen = (l.nextGen + 1) & (1<<30 - 1)
			c := &conn{l: l, gen: l.nextGen, heapIdx: -1, state: relaying, mstate: session.Open}
			c.p = &Params{
				Record: &session.Record{
					ID: uint64(i + 1), Route: "r", Upstream: "10.0.0.1:5432",
					Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 40000),
					Start:  time.Now(),
				},
				Done: func(*session.Record) {},
			}
			c.client.fd, c.upstream.fd = -1, -1
			l.allocSlot(c)
			l.live.Add(1)
		}
	})
}

// onLoop runs f on the running loop l and waits for it.
func onLoop(tb testing.TB, l *Loop, f func()) {
	tb.Helper()
	ran := make(chan struct{})
	if !l.post(func() { f(); close(ran) }) {
		tb.Fatal("loop closed")
	}
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		tb.Fatal("the loop never ran the function")
	}
}

// list runs List on l and waits for its reply.
func list(tb testing.TB, l *Loop, m Match, after uint64, limit int) ([]SessionInfo, int) {
	tb.Helper()
	type reply struct {
		page    []SessionInfo
		matched int
	}
	replies := make(chan reply, 1)
	if !l.List(m, after, limit, func(p []SessionInfo, n int) { replies <- reply{p, n} }) {
		tb.Fatal("loop closed")
	}
	select {
	case r := <-replies:
		return r.page, r.matched
	case <-time.After(10 * time.Second):
		tb.Fatal("List never answered")
		return nil, 0
	}
}

// A walk spans more than one posted turn (walkChunk slots each) and still
// keeps the limit lowest IDs above after, whichever order slots hold them.
func TestListKeepsLowestIDsAcrossChunks(t *testing.T) {
	l, stop := startLoop(t)
	defer stop()
	const n = 3*walkChunk + 17
	fakeSessions(t, l, n)
	// Shuffle the IDs over the slots, so slot order is not ID order.
	onLoop(t, l, func() {
		for i := range l.slots {
			j := (i*7919 + 13) % len(l.slots)
			l.slots[i].p.Record.ID, l.slots[j].p.Record.ID = l.slots[j].p.Record.ID, l.slots[i].p.Record.ID
		}
	})
	page, matched := list(t, l, Match{}, 1000, 50)
	if matched != n || len(page) != 50 {
		t.Fatalf("matched %d, %d listed; want %d, 50", matched, len(page), n)
	}
	seen := make(map[uint64]bool)
	for _, s := range page {
		if s.ID <= 1000 || s.ID > 1050 || seen[s.ID] {
			t.Errorf("id %d, want each of 1001..1050 once", s.ID)
		}
		seen[s.ID] = true
	}
}

// BenchmarkListSessions lists 10k sessions a page of 100 at a time from
// the start: the walk's cost per session is what a loop's turn is held up
// by, walkChunk sessions at most per turn.
func BenchmarkListSessions(b *testing.B) {
	l, stop := startLoop(b)
	defer stop()
	const n = 10000
	fakeSessions(b, l, n)
	b.ReportAllocs()
	for b.Loop() {
		if _, matched := list(b, l, Match{Route: "r"}, 0, 100); matched != n {
			b.Fatalf("matched %d", matched)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/session")
}

// BenchmarkEndByID looks for an ID no session has among 100k: the whole
// walk End makes when it is not on this loop.
func BenchmarkEndByID(b *testing.B) {
	l, stop := startLoop(b)
	defer stop()
	const n = 100000
	fakeSessions(b, l, n)
	found := make(chan bool, 1)
	for b.Loop() {
		l.End(n+1, false, func(f bool) { found <- f })
		if <-found {
			b.Fatal("found")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/session")
}
