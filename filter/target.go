package filter

import (
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
)

// A Target chooses the sessions a fault applies to. Its options, which
// every built-in fault filter takes:
//
//	probability: 0.25      # this share of sessions (default 1: all)
//	seed: 42               # makes the choice repeatable run to run
//	clients: [10.0.0.0/8]  # only clients in these prefixes
//	every: 3               # only every 3rd session (the 3rd, 6th, ...)
//
// A session is chosen when it passes every test given. The tests count
// only the sessions that reach them, in order: `every` counts sessions
// from the chosen clients, and `probability` draws only for those.
type Target struct {
	probability float64
	clients     []netip.Prefix
	every       uint64
	seed        uint64
	seeded      bool // seed was given

	seen atomic.Uint64
	mu   sync.Mutex
	rng  *rand.Rand
}

// TargetOptions documents the options ParseTarget reads, in that order,
// for a Spec's Options: a fault filter appends them to its own.
func TargetOptions() []OptionDoc {
	return []OptionDoc{
		{Name: "probability", Kind: KindNumber, Default: "1", Help: "this share of sessions, from 0 to 1"},
		{Name: "seed", Kind: KindNumber, Help: "a whole number seeding the choice (and the fault's own randomness, like jitter), so a test run can be repeated (default: random)"},
		{Name: "clients", Kind: KindList, Help: "only clients in these CIDR prefixes, or at these addresses (default: all)"},
		{Name: "every", Kind: KindNumber, Help: "only every Nth session: the Nth, 2Nth, ... (default: all)"},
	}
}

// ParseTarget reads a Target's options from o.
func ParseTarget(o *Options) *Target {
	t := &Target{
		probability: o.Float("probability", 1, 0, 1),
		clients:     o.Prefixes("clients"),
		every:       uint64(o.Int("every", 0, 0, 1<<62)),
	}
	t.seed, t.seeded = uint64(o.Int("seed", 0, 0, 1<<62)), o.Has("seed")
	seed := t.seed
	if !t.seeded {
		seed = new(maphash.Hash).Sum64()
	}
	t.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return t
}

// Seed returns the seed option, if it was given: a filter seeds its own
// randomness (a fault's jitter, say) from it too, so that a run repeats.
func (t *Target) Seed() (uint64, bool) { return t.seed, t.seeded }

// Chooses reports whether the fault applies to s. It is called once per
// session, from any goroutine.
func (t *Target) Chooses(s *Session) bool {
	if len(t.clients) > 0 {
		in := false
		a := s.Client.Addr().Unmap()
		for _, p := range t.clients {
			if p.Contains(a) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if t.every > 1 && t.seen.Add(1)%t.every != 0 {
		return false
	}
	if t.probability >= 1 {
		return true
	}
	t.mu.Lock()
	r := t.rng.Float64()
	t.mu.Unlock()
	return r < t.probability
}
