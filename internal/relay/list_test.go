package relay

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
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
	return listBy(tb, l, m, Paging{Order: ByID, Cursor: after, Limit: limit})
}

// listBy runs List on l with p and waits for its reply.
func listBy(tb testing.TB, l *Loop, m Match, p Paging) ([]SessionInfo, int) {
	tb.Helper()
	type reply struct {
		page    []SessionInfo
		matched int
	}
	replies := make(chan reply, 1)
	if !l.List(m, p, func(p []SessionInfo, n int) { replies <- reply{p, n} }) {
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

// shuffleIDs swaps the IDs over l's slots, so slot order is not ID order,
// and gives each session bytes each way from a fixed pseudo-random
// sequence with many ties (sums from a small range), so the order's tie
// break by ID is exercised.
func shuffleIDs(tb testing.TB, l *Loop) {
	tb.Helper()
	onLoop(tb, l, func() {
		for i := range l.slots {
			j := (i*7919 + 13) % len(l.slots)
			l.slots[i].p.Record.ID, l.slots[j].p.Record.ID = l.slots[j].p.Record.ID, l.slots[i].p.Record.ID
		}
		x := uint32(2463534242)
		for _, c := range l.slots {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			c.toUpstream.bytes = int64(x % 200)
			c.toClient.bytes = int64(x / 200 % 300)
		}
	})
}

// everySession is what a listing of every session would hold, read on
// the loop in one turn, sorted by o: the brute force a walk is checked
// against.
func everySession(tb testing.TB, l *Loop, o Order) []SessionInfo {
	tb.Helper()
	var all []SessionInfo
	onLoop(tb, l, func() {
		var names namesCache
		for _, c := range l.slots {
			if c != nil && c.state != closed {
				all = append(all, c.sessionInfo(&names))
			}
		}
	})
	slices.SortFunc(all, func(a, b SessionInfo) int { return o.Compare(&a, &b) })
	return all
}

// sortedIDs is page's IDs in o's order.
func sortedIDs(page []SessionInfo, o Order) []uint64 {
	page = slices.Clone(page)
	slices.SortFunc(page, func(a, b SessionInfo) int { return o.Compare(&a, &b) })
	ids := make([]uint64, len(page))
	for i, s := range page {
		ids[i] = s.ID
	}
	return ids
}

// The heaviest sessions across several posted turns are exactly those a
// sort of every session puts first: the walk's bounded heap keeps the top
// Offset+Limit by bytes each way summed, ties by ID, whatever slot and
// chunk each sits in.
func TestListByBytesKeepsTheHeaviestAcrossChunks(t *testing.T) {
	l, stop := startLoop(t)
	defer stop()
	const n = 3*walkChunk + 17
	fakeSessions(t, l, n)
	shuffleIDs(t, l)
	all := everySession(t, l, ByBytes)
	for _, p := range []Paging{
		{Order: ByBytes, Limit: 50},
		{Order: ByBytes, Offset: 100, Limit: 25},
		{Order: ByBytes, Offset: n - 10, Limit: 25}, // past the end: the last 10 and the rest
		{Order: ByBytes, Limit: 1},
	} {
		page, matched := listBy(t, l, Match{}, p)
		k := min(p.Offset+p.Limit, n)
		if matched != n || len(page) != k {
			t.Fatalf("%+v: matched %d, %d kept; want %d, %d", p, matched, len(page), n, k)
		}
		if got, want := sortedIDs(page, ByBytes), sortedIDs(all[:k], ByBytes); !slices.Equal(got, want) {
			t.Errorf("%+v: kept %v, want %v", p, got[:min(10, len(got))], want[:min(10, len(want))])
		}
	}
	// A heavier session after the others were read: first on the next listing.
	onLoop(t, l, func() { l.slots[len(l.slots)-1].toClient.bytes = 1 << 40 })
	page, _ := listBy(t, l, Match{}, Paging{Order: ByBytes, Limit: 3})
	if first := sortedIDs(page, ByBytes)[0]; first != lastSlotID(t, l) {
		t.Errorf("the heaviest session is %d, want %d", first, lastSlotID(t, l))
	}
}

// lastSlotID is the ID of the session in l's last slot.
func lastSlotID(tb testing.TB, l *Loop) uint64 {
	var id uint64
	onLoop(tb, l, func() { id = l.slots[len(l.slots)-1].p.Record.ID })
	return id
}

// ByAge keeps the newest IDs below its cursor, across chunks.
func TestListByAgeKeepsTheNewestBeforeTheCursor(t *testing.T) {
	l, stop := startLoop(t)
	defer stop()
	const n = 3*walkChunk + 17
	fakeSessions(t, l, n)
	shuffleIDs(t, l)
	for _, tc := range []struct {
		cursor uint64
		from   uint64 // the newest kept
	}{{0, n}, {n + 5, n}, {1000, 999}} {
		page, matched := listBy(t, l, Match{}, Paging{Order: ByAge, Cursor: tc.cursor, Limit: 40})
		if matched != n || len(page) != 40 {
			t.Fatalf("before %d: matched %d, %d kept; want %d, 40", tc.cursor, matched, len(page), n)
		}
		for i, id := range sortedIDs(page, ByAge) {
			if want := tc.from - uint64(i); id != want {
				t.Fatalf("before %d: #%d is %d, want %d", tc.cursor, i, id, want)
			}
		}
	}
	if page, _ := listBy(t, l, Match{}, Paging{Order: ByAge, Cursor: 3, Limit: 40}); len(page) != 2 {
		t.Errorf("before 3: %d kept, want 2 (IDs 2 and 1)", len(page))
	}
}

// A listing by bytes allocates its page before the walk and nothing per
// session on the loop: the allocations of a listing of 4k sessions do not
// grow with them.
func TestListByBytesAllocatesNothingPerSession(t *testing.T) {
	l, stop := startLoop(t)
	defer stop()
	fakeSessions(t, l, 4*walkChunk)
	shuffleIDs(t, l)
	allocs := testing.AllocsPerRun(5, func() {
		listBy(t, l, Match{Route: "r"}, Paging{Order: ByBytes, Offset: 10, Limit: 20})
	})
	// The page, the closures, the reply channel, the posts of 4 chunks, a
	// timer: a few dozen at most; one per session would be 4096.
	t.Logf("%v allocations", allocs)
	if allocs > 64 {
		t.Errorf("%v allocations a listing of %d sessions, want a few, none per session", allocs, 4*walkChunk)
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

// BenchmarkListSessionsByBytes lists the heaviest of 10k sessions whose
// bytes come in no order: the heap's sifts on top of the walk.
func BenchmarkListSessionsByBytes(b *testing.B) {
	for _, keep := range []int{100, 1100} {
		b.Run(fmt.Sprint("keep=", keep), func(b *testing.B) {
			l, stop := startLoop(b)
			defer stop()
			const n = 10000
			fakeSessions(b, l, n)
			shuffleIDs(b, l)
			b.ReportAllocs()
			for b.Loop() {
				if _, matched := listBy(b, l, Match{Route: "r"}, Paging{Order: ByBytes, Limit: keep}); matched != n {
					b.Fatalf("matched %d", matched)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/session")
		})
	}
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

// A deep page of a loop with few sessions costs what those sessions
// need, not the depth: a page is sized by the loop's live sessions.
func TestListDeepPageOfAnIdleLoopIsSmall(t *testing.T) {
	l, stop := startLoop(t)
	defer stop()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	listBy(t, l, Match{}, Paging{Order: ByBytes, Offset: 10000, Limit: 1000})
	runtime.ReadMemStats(&after)
	// 11,001 SessionInfos would be about 1.9 MB.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<10 {
		t.Errorf("listing an idle loop 10,000 deep allocated %d bytes", grew)
	}
}
