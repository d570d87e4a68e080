// Package netem holds pier's datagram faults, in the manner of Linux
// netem: they make a UDP route behave like a lossy, unreliable network, so
// that clients can be tested against one. Each is a filter (package
// filter) registered by name when the package is loaded, and each works
// only on datagrams (filter.Spec.DatagramOnly: the config refuses them on
// tcp routes, where the kernel's TCP would hide them anyway):
//
//	loss       drop each datagram with a probability
//	duplicate  send each datagram twice with a probability
//	reorder    hold each datagram back by delay with a probability,
//	           so that the ones after it overtake it
//
// A config file puts them on a udp route like any filter:
//
//	filters:
//	  - loss: {probability: 0.05, seed: 7}
//	  - reorder: {probability: 0.25, delay: 10ms}
//
// Each takes probability (required, from 0 to 1: the share of datagrams
// it acts on, each drawn on its own), seed (a whole number: the draws of
// a flow are then the same every run, from the seed and the flow's id, so
// a test run repeats; without it, random) and direction ("upstream", the
// datagrams the client sends, "client", those sent to it, or "both", the
// default: each direction draws on its own).
//
// They never read the wall clock or block: a datagram's fate is decided
// when it arrives, and a delay is a later time given with it (see
// filter.DatagramStream).
package netem

import (
	"math/rand/v2"
	"time"

	"github.com/pierproxy/pier/filter"
)

func init() {
	for _, s := range []filter.Spec{
		{Name: "loss", New: newLoss, FlagKey: "probability", DatagramOnly: true,
			Short:   "drop each datagram with a probability (udp routes)",
			Options: withCommon("the share of datagrams dropped, from 0 to 1", "which datagrams may be lost")},
		{Name: "duplicate", New: newDuplicate, FlagKey: "probability", DatagramOnly: true,
			Short:   "send each datagram twice with a probability (udp routes)",
			Options: withCommon("the share of datagrams sent twice, from 0 to 1", "which datagrams may be duplicated")},
		{Name: "reorder", New: newReorder, FlagKey: "probability", DatagramOnly: true,
			Short: "hold each datagram back by delay with a probability, so later ones overtake it (udp routes)",
			Options: withCommon("the share of datagrams held back, from 0 to 1", "which datagrams may be reordered",
				filter.OptionDoc{Name: "delay", Kind: filter.KindDuration, Default: "10ms", Help: "how long a datagram chosen is held back"})},
	} {
		filter.Register(s)
	}
}

// withCommon documents probability, then own, then seed and direction.
func withCommon(probHelp, dirHelp string, own ...filter.OptionDoc) []filter.OptionDoc {
	docs := []filter.OptionDoc{{Name: "probability", Kind: filter.KindNumber, Required: true, Help: probHelp}}
	docs = append(docs, own...)
	return append(docs,
		filter.OptionDoc{Name: "seed", Kind: filter.KindNumber,
			Help: "a whole number: each flow's draws come from it and the flow's id, the same every run (default: random)"},
		filter.DirectionOption(filter.Both, dirHelp),
	)
}

// maxDelay bounds reorder's delay: a datagram held longer than a day is
// lost, not reordered.
const maxDelay = 24 * time.Hour

// common is what every netem filter reads.
type common struct {
	probability float64
	seed        uint64
	seeded      bool
	dir         filter.Direction
}

func parseCommon(o *filter.Options) common {
	if !o.Has("probability") {
		o.Errorf("probability", "missing: the share of datagrams to act on, from 0 to 1 (say probability: 0.1)")
	}
	c := common{probability: o.Float("probability", 0, 0, 1)}
	c.seed, c.seeded = uint64(o.Int("seed", 0, 0, 1<<62)), o.Has("seed")
	c.dir = o.Direction("direction", filter.Both)
	return c
}

// draws returns the random numbers for one direction of flow s: with a
// seed, the same every run for the same flow id and direction (the id,
// not the order flows come in, so that concurrency does not change them).
func (c *common) draws(s *filter.Session, dir filter.Direction) *rand.Rand {
	if !c.seeded {
		return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return rand.New(rand.NewPCG(c.seed, s.ID<<2|uint64(dir)))
}

// datagrams returns a stream from mk for each direction c acts on.
func (c *common) datagrams(s *filter.Session, mk func(*rand.Rand) filter.DatagramStream) (toUpstream, toClient filter.DatagramStream) {
	if c.dir&filter.ToUpstream != 0 {
		toUpstream = mk(c.draws(s, filter.ToUpstream))
	}
	if c.dir&filter.ToClient != 0 {
		toClient = mk(c.draws(s, filter.ToClient))
	}
	return toUpstream, toClient
}

// hit draws once: true with the probability.
func hit(rng *rand.Rand, p float64) bool { return rng.Float64() < p }

// Streams leaves byte streams alone: these filters mean something only on
// datagrams (Spec.DatagramOnly), and the config refuses them on tcp
// routes.
func (common) Streams(*filter.Session) (toUpstream, toClient filter.Stream) { return nil, nil }

// loss drops each datagram with a probability.
type loss struct{ common }

func newLoss(o *filter.Options) (filter.Filter, error) {
	f := &loss{parseCommon(o)}
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *loss) Datagrams(s *filter.Session) (toUpstream, toClient filter.DatagramStream) {
	return f.datagrams(s, func(rng *rand.Rand) filter.DatagramStream { return &lossStream{p: f.probability, rng: rng} })
}

type lossStream struct {
	p   float64
	rng *rand.Rand
}

func (s *lossStream) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	if !hit(s.rng, s.p) {
		out.Send(at, d)
	}
	return nil
}

// duplicate sends each datagram twice with a probability, both at once.
type duplicate struct{ common }

func newDuplicate(o *filter.Options) (filter.Filter, error) {
	f := &duplicate{parseCommon(o)}
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *duplicate) Datagrams(s *filter.Session) (toUpstream, toClient filter.DatagramStream) {
	return f.datagrams(s, func(rng *rand.Rand) filter.DatagramStream { return &duplicateStream{p: f.probability, rng: rng} })
}

type duplicateStream struct {
	p   float64
	rng *rand.Rand
}

func (s *duplicateStream) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at, d)
	if hit(s.rng, s.p) {
		out.Send(at, d)
	}
	return nil
}

// reorder holds each datagram back by delay with a probability; the
// others go at once, and so overtake the ones held back. It is netem's
// reordering turned around: netem sends a chosen share at once and delays
// the rest; here the rest go at once and the chosen ones are late, which
// is the same picture without delaying every datagram.
type reorder struct {
	common
	delay time.Duration
}

func newReorder(o *filter.Options) (filter.Filter, error) {
	f := &reorder{common: parseCommon(o)}
	f.delay = o.Duration("delay", 10*time.Millisecond)
	if f.delay > maxDelay {
		o.Errorf("delay", "%v is more than %v", f.delay, maxDelay)
	}
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *reorder) Datagrams(s *filter.Session) (toUpstream, toClient filter.DatagramStream) {
	return f.datagrams(s, func(rng *rand.Rand) filter.DatagramStream {
		return &reorderStream{p: f.probability, delay: f.delay, rng: rng}
	})
}

type reorderStream struct {
	p     float64
	delay time.Duration
	rng   *rand.Rand
}

func (s *reorderStream) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	if hit(s.rng, s.p) {
		at = at.Add(s.delay)
	}
	out.Send(at, d)
	return nil
}

var (
	_ filter.DatagramFilter = (*loss)(nil)
	_ filter.DatagramFilter = (*duplicate)(nil)
	_ filter.DatagramFilter = (*reorder)(nil)
	_ filter.Filter         = (*loss)(nil)
)
