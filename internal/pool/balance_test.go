package pool

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// members makes n members on 10.0.0.1.., with the given weights (1 if
// weights is short).
func members(n int, weights ...int) []*Member {
	ms := make([]*Member, n)
	for i := range ms {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i + 1)}), 5432)
		ms[i] = &Member{Addr: addr, Name: addr.String(), Weight: w, h: &Health{}, v: &verdict{}}
	}
	return ms
}

func pickN(s *set, b Balance, n int) map[*Member]int {
	got := make(map[*Member]int)
	for range n {
		m := s.pick(b, &choice{now: time.Now().UnixNano()})
		got[m]++
	}
	return got
}

// Smooth weighted round robin gives every member exactly its weight's
// share over each cycle of the total weight, and never gives a heavy
// member more than its share in a row.
func TestRoundRobinWeightsExact(t *testing.T) {
	ms := members(3, 5, 1, 1)
	s := newSet(ms)
	var seq []string
	for range 7 {
		seq = append(seq, s.pick(RoundRobin, &choice{}).Name)
	}
	// nginx's example: a a b a c a a for weights 5, 1, 1.
	a, b, c := ms[0].Name, ms[1].Name, ms[2].Name
	want := []string{a, a, b, a, c, a, a}
	if fmt.Sprint(seq) != fmt.Sprint(want) {
		t.Errorf("sequence %v, want %v", seq, want)
	}
	got := pickN(s, RoundRobin, 7*1000)
	for i, w := range []int{5, 1, 1} {
		if got[ms[i]] != w*1000 {
			t.Errorf("member %d (weight %d): %d picks of 7000, want exactly %d", i, w, got[ms[i]], w*1000)
		}
	}
}

// Unusable members are passed over, and the rest share by weight.
func TestRoundRobinSkipsUnusable(t *testing.T) {
	ms := members(4, 1, 2, 3, 4)
	ms[1].v.down.Store(true)
	ms[2].Drain = true
	ms[3].h.ejectEnd.Store(time.Now().Add(time.Hour).UnixNano())
	s := newSet(ms)
	got := pickN(s, RoundRobin, 100)
	if got[ms[0]] != 100 {
		t.Errorf("picks %v, want all 100 on the only usable member", got)
	}
	ms[3].h.ejectEnd.Store(0) // the ejection is over
	got = pickN(s, RoundRobin, 500)
	if got[ms[0]] != 100 || got[ms[3]] != 400 {
		t.Errorf("picks %v, want 100 and 400 (weights 1 and 4)", got)
	}
}

// Backups take sessions only while no primary can.
func TestTiers(t *testing.T) {
	ms := members(3)
	ms[2].Tier = 1 << 16 // backup
	s := newSet(ms)
	for _, b := range []Balance{RoundRobin, LeastConn, Random, Hash} {
		if got := pickN(s, b, 100); got[ms[2]] != 0 {
			t.Errorf("%v: the backup got %d of 100 picks while primaries were up", b, got[ms[2]])
		}
	}
	ms[0].v.down.Store(true)
	ms[1].v.down.Store(true)
	for _, b := range []Balance{RoundRobin, LeastConn, Random, Hash} {
		if got := pickN(s, b, 100); got[ms[2]] != 100 {
			t.Errorf("%v: the backup got %d of 100 picks with every primary down", b, got[ms[2]])
		}
	}
	ms[2].v.down.Store(true)
	if m := s.pick(RoundRobin, &choice{}); m != nil {
		t.Errorf("picked %v with every member down", m.Name)
	}
}

// Random (two choices) follows weights on idle members: each share within
// 2% of 50 000 picks (the standard deviation is at most 0.22%).
func TestRandomWeights(t *testing.T) {
	ms := members(3, 1, 2, 5)
	s := newSet(ms)
	const n = 50_000
	got := pickN(s, Random, n)
	// With every member idle, the lighter of two draws is the first: the
	// share is the weight's.
	for i, w := range []float64{1, 2, 5} {
		share := float64(got[ms[i]]) / n
		if want := w / 8; math.Abs(share-want) > 0.02 {
			t.Errorf("member %d (weight %v): share %.4f, want %.4f ± 0.02", i, w, share, want)
		}
	}
}

// least_conn and random follow load: with one member carrying sessions,
// new ones go to the others.
func TestLoadAware(t *testing.T) {
	for _, b := range []Balance{LeastConn, Random} {
		ms := members(3)
		s := newSet(ms)
		ms[0].h.active.Store(100)
		ms[1].h.active.Store(10)
		got := pickN(s, b, 1000)
		if b == LeastConn && got[ms[2]] != 1000 {
			t.Errorf("%v: picks %v, want every one on the idle member", b, got)
		}
		// Two choices avoid the loaded member unless both draws hit it
		// (1/9 of the time).
		if b == Random && got[ms[0]] > 200 {
			t.Errorf("%v: the loaded member got %d of 1000 picks, want at most 200", b, got[ms[0]])
		}
	}
}

// least_conn weights the count: a member of weight 3 carries three times
// the sessions of one of weight 1.
func TestLeastConnWeighted(t *testing.T) {
	ms := members(2, 3, 1)
	s := newSet(ms)
	for range 400 {
		m := s.pick(LeastConn, &choice{})
		m.h.active.Add(1) // the sessions stay
	}
	if a, b := ms[0].Active(), ms[1].Active(); a != 300 || b != 100 {
		t.Errorf("live sessions %d and %d, want 300 and 100 (weights 3 and 1)", a, b)
	}
}

// The consistent hash: a key stays on its member; removing one of N
// members moves only the keys that were on it (exactly: rendezvous
// hashing keeps every other key's ranking); keys spread evenly (each of
// 10 members within ±10% of its share of 20 000 keys; the hash is
// deterministic, so this cannot flake); weights are
// honoured; and two pools built apart agree.
func TestHashConsistent(t *testing.T) {
	const keys = 20_000
	key := func(i int) uint64 {
		return ClientKey(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}).Next())
	}
	spread := func(s *set) ([]*Member, map[*Member]int) {
		owner := make([]*Member, keys)
		count := make(map[*Member]int)
		for i := range owner {
			owner[i] = s.pick(Hash, &choice{key: key(i ^ i<<16)})
			count[owner[i]]++
		}
		return owner, count
	}
	ms := members(10)
	before, count := spread(newSet(ms))
	for _, m := range ms {
		if share := float64(count[m]) / keys; math.Abs(share-0.1) > 0.01 {
			t.Errorf("member %s: %.4f of keys, want 0.1 ± 0.01", m.Name, share)
		}
	}
	// Built again, from other objects in another order: the same choices.
	again := members(10)
	for i, j := 0, len(again)-1; i < j; i, j = i+1, j-1 {
		again[i], again[j] = again[j], again[i]
	}
	owner2, _ := spread(newSet(again))
	for i := range before {
		if before[i].Addr != owner2[i].Addr {
			t.Fatalf("key %d: %v in one pool, %v in another with the same members", i, before[i].Addr, owner2[i].Addr)
		}
	}
	// Member 3 leaves.
	gone := ms[3]
	rest := append(append([]*Member{}, ms[:3]...), ms[4:]...)
	after, _ := spread(newSet(rest))
	moved := 0
	for i := range before {
		if before[i] != after[i] {
			moved++
			if before[i] != gone {
				t.Fatalf("key %d moved from %s, which stayed, to %s", i, before[i].Name, after[i].Name)
			}
		}
	}
	if moved != count[gone] {
		t.Errorf("%d keys moved, want exactly the %d that were on the member that left", moved, count[gone])
	}
	// A member down is skipped the same way, and its keys come back.
	gone.v.down.Store(true)
	down, _ := spread(newSet(ms))
	gone.v.down.Store(false)
	for i := range before {
		if before[i] != gone && down[i] != before[i] {
			t.Fatalf("key %d moved off %s when another member went down", i, before[i].Name)
		}
	}
	// Weights: 1, 1, 2: shares 1/4, 1/4, 1/2 within ±2%.
	w := members(3, 1, 1, 2)
	_, wc := spread(newSet(w))
	for i, want := range []float64{0.25, 0.25, 0.5} {
		if share := float64(wc[w[i]]) / keys; math.Abs(share-want) > 0.02 {
			t.Errorf("weighted member %d: %.4f of keys, want %.2f ± 0.02", i, share, want)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bal := range []Balance{RoundRobin, LeastConn, Random, Hash} {
		for _, n := range []int{5, 50} {
			b.Run(fmt.Sprintf("%v/%d", bal, n), func(b *testing.B) {
				p := &Pool{cfg: Config{Balance: bal}}
				p.set.Store(newSet(members(n)))
				client := netip.MustParseAddr("192.0.2.7")
				b.ReportAllocs()
				for b.Loop() {
					a := p.Pick(client)
					a.Done()
				}
			})
		}
	}
}

// Members turning unusable between a pick's looks (at their cap, on other
// loops) never make a pick fail with a usable member, or panic.
func TestRandomUnderChurn(t *testing.T) {
	ms := members(2)
	for _, m := range ms {
		m.MaxConns = 1
	}
	p := &Pool{cfg: Config{Balance: Random}, log: slog.New(slog.DiscardHandler)}
	p.set.Store(newSet(ms))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20_000 {
				if a := p.Pick(netip.Addr{}); a != nil {
					a.Done()
				}
			}
		})
	}
	wg.Wait()
	for _, m := range ms {
		if m.Active() != 0 {
			t.Errorf("%s: %d live sessions left", m.Name, m.Active())
		}
	}
}
