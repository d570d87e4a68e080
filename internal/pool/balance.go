package pool

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// A Balance is how a pool chooses among the members that can take a
// session.
type Balance uint8

const (
	// RoundRobin is smooth weighted round robin, as nginx does it: over
	// any run of picks each member's share follows its weight, and a heavy
	// member's turns are spread out rather than bunched.
	RoundRobin Balance = iota
	// LeastConn picks the member with the fewest live sessions for its
	// weight; ties go round.
	LeastConn
	// Random picks two members at random, by weight, and takes the one
	// with fewer live sessions for its weight (the power of two choices).
	Random
	// Hash is rendezvous (highest random weight) hashing on the client's
	// address: a client goes to the same member while the members stay
	// the same; a member that leaves moves only its own clients; and every
	// pier with the same members chooses alike, with nothing shared.
	Hash
)

// ParseBalance returns the Balance a configuration names.
func ParseBalance(s string) (Balance, error) {
	switch s {
	case "", "round_robin":
		return RoundRobin, nil
	case "least_conn":
		return LeastConn, nil
	case "random":
		return Random, nil
	case "hash":
		return Hash, nil
	}
	return 0, fmt.Errorf("pool: unknown balance %q", s)
}

func (b Balance) String() string {
	switch b {
	case RoundRobin:
		return "round_robin"
	case LeastConn:
		return "least_conn"
	case Random:
		return "random"
	case Hash:
		return "hash"
	}
	return fmt.Sprintf("Balance(%d)", uint8(b))
}

// A set is a pool's members at one moment, ordered by tier. A pool
// replaces its set whole when discovery changes the members.
type set struct {
	members []*Member
	tiers   []int // where each tier begins in members, then len(members)

	mu sync.Mutex // guards cw
	cw []int64    // smooth round robin's current weights
	rr atomic.Uint64
}

func newSet(members []*Member) *set {
	slices.SortStableFunc(members, func(a, b *Member) int {
		if a.Tier != b.Tier {
			return a.Tier - b.Tier
		}
		return a.Addr.Compare(b.Addr)
	})
	s := &set{members: members, cw: make([]int64, len(members))}
	for i, m := range members {
		if i == 0 || m.Tier != members[i-1].Tier {
			s.tiers = append(s.tiers, i)
		}
		m.key = memberKey(m.Addr)
	}
	s.tiers = append(s.tiers, len(members))
	return s
}

// A choice is what one pick may choose from.
type choice struct {
	now       int64     // unix nanos, for ejections
	anyHealth bool      // ignore health verdicts
	tried     []*Member // members this session has tried
	key       uint64    // the client's hash, for Hash
}

func (c *choice) ok(m *Member) bool {
	if !m.usable(c.now, c.anyHealth) {
		return false
	}
	// By address: a member listed twice (a name and an IP) is one.
	for _, t := range c.tried {
		if t.Addr == m.Addr {
			return false
		}
	}
	return true
}

// pick returns a member for a session, from the lowest tier that has one
// that can take it, or nil.
func (s *set) pick(b Balance, c *choice) *Member {
	for t := 0; t+1 < len(s.tiers); t++ {
		lo, hi := s.tiers[t], s.tiers[t+1]
		var i int
		switch b {
		case LeastConn:
			i = s.leastConn(lo, hi, c)
		case Random:
			i = s.random(lo, hi, c)
		case Hash:
			i = s.hash(lo, hi, c)
		default:
			i = s.roundRobin(lo, hi, c)
		}
		if i >= 0 {
			return s.members[i]
		}
	}
	return nil
}

// roundRobin is nginx's smooth weighted round robin over the members of
// [lo, hi) that can take a session: each gains its weight, the highest
// wins and pays back the total.
func (s *set) roundRobin(lo, hi int, c *choice) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, total := -1, int64(0)
	for i := lo; i < hi; i++ {
		m := s.members[i]
		if !c.ok(m) {
			continue
		}
		s.cw[i] += int64(m.Weight)
		total += int64(m.Weight)
		if best < 0 || s.cw[i] > s.cw[best] {
			best = i
		}
	}
	if best >= 0 {
		s.cw[best] -= total
	}
	return best
}

// lighter reports whether a carries less load for its weight than b.
func lighter(a, b *Member) bool {
	return a.h.active.Load()*int64(b.Weight) < b.h.active.Load()*int64(a.Weight)
}

// leastConn picks the member with the fewest live sessions per weight,
// starting the scan at a rotating place so that ties take turns.
func (s *set) leastConn(lo, hi int, c *choice) int {
	n := hi - lo
	start := int(s.rr.Add(1) % uint64(n))
	best := -1
	for k := range n {
		i := lo + (start+k)%n
		m := s.members[i]
		if !c.ok(m) {
			continue
		}
		if best < 0 || lighter(m, s.members[best]) {
			best = i
		}
	}
	return best
}

// random draws two members by weight and keeps the lighter. The usable
// members are noted once, so that members turning unusable meanwhile (on
// other loops, or by a health check) cannot leave a draw empty.
func (s *set) random(lo, hi int, c *choice) int {
	var idxA [128]int32
	var cumA [128]int
	idx, cum := idxA[:], cumA[:]
	if hi-lo > len(idxA) {
		idx, cum = make([]int32, hi-lo), make([]int, hi-lo)
	}
	n, total := 0, 0
	for i := lo; i < hi; i++ {
		if c.ok(s.members[i]) {
			total += s.members[i].Weight
			idx[n], cum[n] = int32(i), total
			n++
		}
	}
	if n == 0 {
		return -1
	}
	draw := func() int {
		r := rand.IntN(total)
		k, _ := slices.BinarySearch(cum[:n], r+1)
		return int(idx[k])
	}
	a, b := draw(), draw()
	if lighter(s.members[b], s.members[a]) {
		return b
	}
	return a
}

// hash is weighted rendezvous hashing: every member scores the key, and
// the highest score wins. The score is weight / -ln(u), u uniform in
// (0, 1) from the member's and the key's hashes, which gives each member
// a share of keys in proportion to its weight (Schindelhauer and Schomaker's
// weighted distributed hash tables).
func (s *set) hash(lo, hi int, c *choice) int {
	best, bestScore := -1, 0.0
	for i := lo; i < hi; i++ {
		m := s.members[i]
		if !c.ok(m) {
			continue
		}
		u := (float64(mix(m.key^c.key)>>11) + 0.5) / (1 << 53)
		score := float64(m.Weight) / -math.Log(u)
		if best < 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// memberKey hashes a member's address: the same address gives the same
// key in every pier, so they all rank members alike.
func memberKey(a netip.AddrPort) uint64 {
	h := fnv.New64a()
	b, _ := a.MarshalBinary()
	h.Write(b)
	return h.Sum64()
}

// ClientKey hashes a client's address (not its port) for the Hash
// balancer.
func ClientKey(a netip.Addr) uint64 {
	b := a.Unmap().As16()
	// FNV-1a, inline: hash.Hash would allocate on every session.
	x := uint64(14695981039346656037)
	for _, c := range b {
		x ^= uint64(c)
		x *= 1099511628211
	}
	return x
}

// mix is SplitMix64's finalizer: it spreads the bits of x over all 64.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
