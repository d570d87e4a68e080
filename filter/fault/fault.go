// Package fault holds pier's fault-injection filters, in the manner of
// Toxiproxy's toxics: they make a route behave like a bad network or a
// failing peer, so that clients can be tested against one. Each is a
// filter (package filter) registered by name when the package is loaded:
//
//	latency     hold every byte for delay ± jitter, in order
//	bandwidth   forward at most rate bytes per second
//	slicer      forward in small pieces, one write each, delay apart
//	reset       end the session with a TCP reset after some bytes or time
//	timeout     drop every byte, and close the session after some time
//	limit       close the session after some bytes
//	slow_close  hold the end of the stream (FIN) for a while
//
// A config file puts them on a route like any filter:
//
//	filters:
//	  - latency: {delay: 100ms, jitter: 20ms}
//	  - reset: {bytes: 64KiB, probability: 0.1, seed: 7}
//
// Every fault takes two kinds of common options. direction ("upstream":
// the bytes the client sends, "client": the bytes sent to the client, or
// "both") says which way it acts; each direction gets a Stream of its own,
// with its own counts and clocks. The targeting options of
// filter.ParseTarget (probability, seed, clients, every) say which
// sessions it acts on; a session not chosen passes through untouched.
//
// On a udp route, latency and bandwidth work on datagrams (see
// datagram.go); the others are for byte streams only, and the config
// refuses them there.
//
// The faults never read the wall clock: they go by Batch.Now, so that
// filtertest can drive them on a fake one.
package fault

import (
	"math/rand/v2"

	"github.com/pierproxy/pier/filter"
)

func init() {
	for _, s := range []filter.Spec{
		{Name: "latency", New: newLatency, FlagKey: "delay", Short: "hold every byte for delay ± jitter, keeping order",
			Options: withTarget(
				filter.OptionDoc{Name: "delay", Kind: filter.KindDuration, Required: true, Help: "how long each byte is held"},
				filter.OptionDoc{Name: "jitter", Kind: filter.KindDuration, Default: "0", Help: "each read's delay varies by up to ± this"},
				filter.OptionDoc{Name: "hold", Kind: filter.KindSize, Default: "4MiB", Help: "the most bytes held at once; past it pier stops reading the source"},
				filter.DirectionOption(filter.ToClient, "which bytes to delay"),
			)},
		{Name: "bandwidth", New: newBandwidth, FlagKey: "rate", Short: "forward at most rate bytes per second",
			Options: withTarget(
				filter.OptionDoc{Name: "rate", Kind: filter.KindSize, Required: true, Help: "bytes per second (1MB, 64KiB); 0 holds every byte until the input ends"},
				filter.OptionDoc{Name: "burst", Kind: filter.KindSize, Help: "the token bucket's size (default: rate/10, at least 16KiB)"},
				filter.DirectionOption(filter.ToClient, "which bytes to throttle"),
			)},
		{Name: "slicer", New: newSlicer, FlagKey: "size", Short: "forward in pieces of size ± variation bytes, delay apart",
			Options: withTarget(
				filter.OptionDoc{Name: "size", Kind: filter.KindSize, Default: "1", Help: "a piece's average size"},
				filter.OptionDoc{Name: "variation", Kind: filter.KindSize, Default: "0", Help: "a piece is size ± up to this (less than size)"},
				filter.OptionDoc{Name: "delay", Kind: filter.KindDuration, Default: "0", Help: "time between pieces"},
				filter.DirectionOption(filter.ToClient, "which bytes to slice"),
			)},
		{Name: "reset", New: newReset, FlagKey: "after", Short: "reset the session (TCP RST) after some bytes or some time",
			Options: withTarget(
				filter.OptionDoc{Name: "bytes", Kind: filter.KindSize, Help: "reset once this many bytes have passed (this or after, or both)"},
				// A time or a size: a string, which a form does not check as either.
				filter.OptionDoc{Name: "after", Kind: filter.KindString, Help: "a time (2s): reset this long after the start; or a size (64KiB): reset after that many bytes, as bytes does"},
				filter.OptionDoc{Name: "start", Kind: filter.KindEnum, Default: "take_up", Choices: []string{"take_up", "first_byte"},
					Help: "when a time after starts: take_up (the filter first sees the direction) or first_byte (its first byte, or its end)"},
				filter.OptionDoc{Name: "drop", Kind: filter.KindBool, Default: "false", Help: "true: forward nothing before the reset"},
				filter.DirectionOption(filter.Both, "which bytes count (each direction counts its own)"),
			)},
		{Name: "timeout", New: newTimeout, FlagKey: "after", Short: "drop every byte, and close the session after some time",
			Options: withTarget(
				filter.OptionDoc{Name: "after", Kind: filter.KindDuration, Default: "0", Help: "when to close the session (0: never, only drop)"},
				filter.OptionDoc{Name: "close_at_end", Kind: filter.KindBool, Default: "false", Help: "true: also close when the input ends, or the filter is removed or changed"},
				filter.DirectionOption(filter.Both, "which bytes to drop"),
			)},
		{Name: "limit", New: newLimit, FlagKey: "bytes", Short: "close the session after some bytes",
			Options: withTarget(
				filter.OptionDoc{Name: "bytes", Kind: filter.KindSize, Required: true, Help: "how many bytes pass before the close"},
				filter.DirectionOption(filter.ToClient, "which bytes count"),
			)},
		{Name: "slow_close", New: newSlowClose, FlagKey: "delay", Short: "hold the end of the stream (FIN) for delay",
			Options: withTarget(
				filter.OptionDoc{Name: "delay", Kind: filter.KindDuration, Required: true, Help: "how long to hold the end of the stream"},
				filter.DirectionOption(filter.ToClient, "which direction's end to hold"),
			)},
	} {
		filter.Register(s)
	}
}

// withTarget is a fault's own options followed by those every fault
// reads to choose its sessions (parseCommon's filter.ParseTarget).
func withTarget(own ...filter.OptionDoc) []filter.OptionDoc {
	return append(own, filter.TargetOptions()...)
}

type common struct {
	dir    filter.Direction
	target *filter.Target
	seed   uint64
	seeded bool
}

// parseCommon reads the common options, with def the fault's default
// direction.
func parseCommon(o *filter.Options, def filter.Direction) common {
	c := common{dir: o.Direction("direction", def), target: filter.ParseTarget(o)}
	c.seed, c.seeded = c.target.Seed()
	return c
}

// streams returns a Stream from mk for each direction the fault acts on,
// if it targets s.
func (c *common) streams(s *filter.Session, mk func(filter.Direction) filter.Stream) (toUpstream, toClient filter.Stream) {
	if !c.target.Chooses(s) {
		return nil, nil
	}
	if c.dir&filter.ToUpstream != 0 {
		toUpstream = mk(filter.ToUpstream)
	}
	if c.dir&filter.ToClient != 0 {
		toClient = mk(filter.ToClient)
	}
	return toUpstream, toClient
}

// rand returns the random numbers for one direction of s: with a seed,
// the same ones every run for the same session id and direction (the
// session id, not the order sessions come in, so that concurrency does not
// change them); without, different ones every time.
func (c *common) rand(s *filter.Session, dir filter.Direction) *rand.Rand {
	if !c.seeded {
		return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return rand.New(rand.NewPCG(c.seed, s.ID<<2|uint64(dir)))
}
