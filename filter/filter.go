// Package filter is pier's hook into the bytes of a session: the place the
// original port forwarder marked "here we can parse and/or modify the
// data". Users import it to write filters of their own and to register them
// by name, so that a config file can use them like the built-in ones
// (package filter/builtin).
//
// A Filter is configured once, from its Options. For every session on its
// route it makes up to two Streams, one per direction, which see that
// direction's bytes in order, with the Stream before them in the chain
// already applied, and say what to forward:
//
//	type upper struct{}
//
//	func (upper) Streams(*filter.Session) (toUpstream, toClient filter.Stream) {
//		return upperStream{}, nil // only the bytes the client sends
//	}
//
//	type upperStream struct{}
//
//	func (upperStream) Process(b *filter.Batch) error {
//		b.Emit(bytes.ToUpper(b.In)) // or write into a buffer of its own
//		b.Drop(len(b.In))
//		return nil
//	}
//
// Streams run on pier's relay loops, one call at a time per session: a
// Stream needs no locks for its own state, and must not block. It waits by
// leaving bytes in Batch.In and asking, with Batch.WakeAt, to be called
// again later; the bytes it leaves count against its hold limit, and once
// that is reached pier stops reading from the source until the Stream takes
// some (backpressure, with bounded memory).
//
// A Filter that holds something beyond its Streams (a file, an Output, a
// goroutine) implements io.Closer. pier calls Close once, when a reload or
// shutdown drops the Filter, after the new set of filters is in force.
// Sessions that began on the old set may still be draining then, so the
// old Filter's Streams may still be called after Close: they must go on
// working harmlessly, passing bytes and counting what they can no longer
// write (an Output does that by itself).
//
// A panic in a Factory (see Spec.Build), in Streams or in Process ends
// only what it was making: the config, or the session, whose access log
// line then says filter_error; the log names the filter, with the stack.
//
// On a UDP route, a filter works on datagrams instead: a Filter that is
// also a DatagramFilter makes, for every flow (the datagrams between one
// client address and its upstream), up to two DatagramStreams, one per
// direction. Each datagram is given to the first stream with its arrival
// time; a stream passes it on, changed or not, with a time at which it is
// due (later, to delay it), any number of times (none drops it):
//
//	func (lossy) Datagrams(*filter.Session) (toUpstream, toClient filter.DatagramStream) {
//		return nil, &lossyStream{} // only the datagrams to the client
//	}
//
//	func (s *lossyStream) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
//		if s.n++; s.n%10 != 0 { // every tenth is lost
//			out.Send(at.Add(5*time.Millisecond), d)
//		}
//		return nil
//	}
//
// What a stream sends is the input of the next, at once, each datagram
// with its time (RunDatagrams runs a chain as pier does); pier sends what
// the last one sends when it is due, holding what is not yet due in a
// queue of at most DatagramQueueLen datagrams and DatagramQueueBytes
// bytes per flow direction, dropping (and counting) at its tail. The
// times are virtual: a stream never waits, and is called only when a
// datagram reaches it. Spec.DatagramOnly marks a filter that means
// something only on datagrams.
//
// docs/filters.md walks through writing one.
package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"
)

// A Direction is which way bytes flow.
type Direction uint8

const (
	// ToUpstream is the bytes the client sends, on their way to the upstream.
	ToUpstream Direction = 1 << iota
	// ToClient is the bytes the upstream sends, on their way to the client.
	ToClient
	// Both is both directions, for options that pick.
	Both = ToUpstream | ToClient
)

func (d Direction) String() string {
	switch d {
	case ToUpstream:
		return "upstream"
	case ToClient:
		return "client"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// A Session is what a filter knows of the session its Streams serve. It
// does not change while they live.
type Session struct {
	// ID is the session's id, the same as in its access log line.
	ID uint64
	// Route is the name of the route the client arrived on.
	Route string
	// Client is the client's address; Local the address it connected to.
	Client, Local netip.AddrPort
	// Upstream is the upstream address pier connected to, and UpstreamLocal
	// pier's end of that connection.
	Upstream, UpstreamLocal netip.AddrPort
	// Start is when the client was accepted.
	Start time.Time
	// Peer is the socket's address when a PROXY header replaced Client
	// (Client is then the address the header carried); zero otherwise.
	Peer netip.AddrPort
	// ServerName and ALPN are the TLS ClientHello's server name
	// (lowercased) and protocols, in the client's order, when the
	// listener peeked at it; empty otherwise.
	ServerName string
	ALPN       []string
	// Proxy is the PROXY header the client's connection arrived with;
	// nil when none did.
	Proxy *ProxyInfo
}

// ProxyInfo is what a PROXY header received from a trusted balancer said
// besides the addresses (which are in Session.Client and Session.Local).
type ProxyInfo struct {
	// Version is 1 or 2; 0 for a local header whose version pier was
	// not told.
	Version int
	// Local is set for a v2 LOCAL or v1 UNKNOWN header: the balancer
	// speaks for itself, and the socket's own addresses stand.
	Local bool
	// Authority, ALPN and UniqueID are a v2 header's TLVs of those types
	// (PP2_TYPE_AUTHORITY, PP2_TYPE_ALPN, PP2_TYPE_UNIQUE_ID); empty when
	// absent.
	Authority, ALPN, UniqueID string
	// SSL is a v2 header's SSL TLV: how the client reached the balancer;
	// nil when absent.
	SSL *SSLInfo
}

// SSLInfo is a v2 PROXY header's PP2_TYPE_SSL TLV.
type SSLInfo struct {
	// Version is the TLS version ("TLSv1.3"), CN the client
	// certificate's common name, Cipher the cipher suite's name; empty
	// when the balancer did not say.
	Version, CN, Cipher string
	// Verified: the client presented a certificate and it was verified.
	Verified bool
}

// A Filter is one configured filter on a route. Streams is called once for
// each session, when its upstream connection is made, and may return nil
// for a direction the filter leaves alone (or both, for a session it does
// not target). It is called from many goroutines at once.
//
// A Filter may implement io.Closer: see the package doc for when Close is
// called and what its Streams must do after it.
type Filter interface {
	Streams(s *Session) (toUpstream, toClient Stream)
}

// A Stream is one Filter's work on one direction of one session.
//
// Process is called once when the Stream takes up its session (with In
// empty: a Stream that acts on time, like a reset after five seconds,
// starts its clock there), when bytes arrive from the Stream before it (or
// from the source, for the first), when a time it asked for with WakeAt has
// come, when the source has ended (Batch.EOF), and after room has freed up
// downstream. It takes bytes from the front of b.In (Pass, Drop) and
// forwards bytes (Pass, Emit); what it leaves in b.In is offered again, with
// any newer bytes after it, at the next call.
//
// An error ends the session: ErrReset and ErrClose as they say, any other
// error as a filter failure, logged with the filter's name. Bytes forwarded
// in the same call are delivered first. A panic in Process ends only its
// session, and is logged with the filter's name.
type Stream interface {
	Process(b *Batch) error
}

// A Closer is a Stream that wants to know when its session ends, whether
// by both sides finishing (err nil) or otherwise. Close is called once,
// after the last Process.
type Closer interface {
	Close(err error)
}

// A Dropper is a Filter that writes its output off the relay loops (an
// Output) and so may have to drop some of it: Dropped returns what it
// could not write since it was built, as a running total. dump and pcap
// are Droppers; pier reads it for the metrics.
type Dropper interface {
	Dropped() Lost
}

// A Holder is a Stream that may leave more bytes in Batch.In than pier's
// default hold limit (DefaultHold) before pier stops reading the source.
type Holder interface {
	HoldLimit() int
}

// DefaultHold is how many bytes a Stream may leave unconsumed in Batch.In
// before pier stops reading from the source, unless it is a Holder.
const DefaultHold = 256 << 10

var (
	// ErrReset ends the session with a TCP reset to both sides.
	ErrReset = errors.New("reset by filter")
	// ErrClose ends the session by closing both sides cleanly.
	ErrClose = errors.New("closed by filter")
)

// A Batch is one call to Stream.Process: the bytes waiting for the
// Stream, and what it does with them.
type Batch struct {
	// In is the bytes not yet taken, oldest first. They stay valid until
	// Process returns; a Stream that keeps bytes past that copies them.
	In []byte
	// EOF reports that the source has finished: In is all there will be.
	// A Stream is finished, and the end passed on, once it returns from
	// a call with EOF set, In empty, and no WakeAt.
	EOF bool
	// Now is the time of this call.
	Now time.Time
	// Session is the session, and Dir the direction, the Stream serves.
	Session *Session
	Dir     Direction

	out  []byte
	wake time.Time
}

// Pass forwards the first n bytes of In unchanged and takes them from In.
func (b *Batch) Pass(n int) {
	b.out = append(b.out, b.In[:n]...)
	b.In = b.In[n:]
}

// Drop takes the first n bytes from In without forwarding them.
func (b *Batch) Drop(n int) { b.In = b.In[n:] }

// Emit forwards p after whatever this call has forwarded so far. p is
// copied; the Stream may reuse it.
func (b *Batch) Emit(p []byte) { b.out = append(b.out, p...) }

// WakeAt asks for Process to be called again at t, even if no byte
// arrives. Of several calls in one Process, the earliest time counts.
func (b *Batch) WakeAt(t time.Time) {
	if b.wake.IsZero() || t.Before(b.wake) {
		b.wake = t
	}
}

// Reset prepares b for a call that forwards into out. It is for the code
// that drives Streams (pier's relay, and tests of a Stream); a Stream
// never calls it.
func (b *Batch) Reset(in, out []byte, eof bool, now time.Time) {
	b.In, b.out, b.EOF, b.Now, b.wake = in, out, eof, now, time.Time{}
}

// Out returns what the call forwarded, appended to the out given to
// Reset; Wake the time it asked for, or zero. Like Reset, they are for the
// code that drives Streams.
func (b *Batch) Out() []byte         { return b.out }
func (b *Batch) Wake() time.Time     { return b.wake }
func (b *Batch) Finished() bool      { return b.EOF && len(b.In) == 0 && b.wake.IsZero() }
func (b *Batch) Taken(in []byte) int { return len(in) - len(b.In) }

// A Factory makes a Filter from its options. It reports every problem
// with the options through o (see Options.Errorf), or as an error.
type Factory func(o *Options) (Filter, error)

// A Spec describes a registered filter.
type Spec struct {
	// Name is the filter's name in config files ("dump").
	Name string
	// New makes the filter.
	New Factory
	// Short is a one-line description, for help text.
	Short string
	// FlagKey is the option a bare command-line value sets: with FlagKey
	// "delay", `pier forward --latency 100ms` means delay=100ms. A flag
	// value may instead list options, `--latency delay=100ms,jitter=10ms`.
	// Empty means the flag takes only such a list.
	FlagKey string
	// DatagramOnly reports that the filter has meaning only on udp
	// routes (loss, duplicate, reorder): its Filter is a DatagramFilter
	// whose Streams returns nil, nil, and the config refuses it on tcp
	// routes.
	DatagramOnly bool
	// Options documents every option New reads, in the order a user is
	// best shown them (the README's): the admin dashboard builds a form
	// from them, with each field's kind, default and help. Declaring them
	// is optional: nil means not declared (the filter still works
	// everywhere, but no form can be built for it), and an
	// empty, non-nil slice means the filter takes no options. Register
	// checks what is declared (see OptionDoc); filtertest.CheckOptions
	// checks it against what New really reads.
	Options []OptionDoc
}

// An OptionDoc describes one option a Factory reads, for a form or help
// text. Default is written as a user writes the value, ready to prefill
// a field; "" means none, or one no value can say (bandwidth's burst is
// rate/10): then Help says what happens without it.
type OptionDoc struct {
	Name string
	// Kind is one of the Kind constants: what the value is and how a form
	// asks for it.
	Kind    string
	Default string
	// Help is one line: what the option does, and what no value means
	// when Default cannot say it.
	Help string
	// Required reports that New refuses the options without this one.
	Required bool
	// Choices are the values an enum or a direction takes, nil for the
	// other kinds.
	Choices []string
}

// The kinds of option (OptionDoc.Kind), each with what a user writes,
// which is also what the admin API takes as the option's JSON string:
const (
	// KindDuration is a Go duration, not negative: "100ms", "2s", "1m30s"
	// (a bare "0" too). Options.Duration reads it.
	KindDuration = "duration"
	// KindSize is a byte count with an optional unit: "4096", "64KiB",
	// "10MB" (B, KB, MB, GB in powers of 1000; KiB, MiB, GiB of 1024).
	// Options.Size reads it.
	KindSize = "size"
	// KindNumber is a number, whole or not as Help says: "5", "0.25".
	// Options.Int and Options.Float read it.
	KindNumber = "number"
	// KindBool is "true" or "false": a checkbox. Options.Bool reads it.
	KindBool = "bool"
	// KindString is any text, a file path or a pattern: a text field.
	// Options.String reads it.
	KindString = "string"
	// KindEnum is one of Choices: a select. Options.Enum reads it.
	KindEnum = "enum"
	// KindList is one value or a list of them ("10.0.0.0/8", or
	// ["10.0.0.0/8", "::1"]): a field of one value per line, sent as a
	// JSON list. Options.Strings and Options.Prefixes read it.
	KindList = "list"
	// KindDirection is which bytes the filter works on: "upstream" (the
	// bytes the client sends), "client" (the bytes sent to the client) or
	// "both", its Choices. Options.Direction reads it.
	KindDirection = "direction"
)

// directionChoices are a direction option's values, as Options.Direction
// takes them.
var directionChoices = []string{"upstream", "client", "both"}

// DirectionOption documents the option "direction", read with
// o.Direction("direction", def), with help saying what it picks.
func DirectionOption(def Direction, help string) OptionDoc {
	return OptionDoc{Name: "direction", Kind: KindDirection, Default: def.String(), Help: help,
		Choices: append([]string(nil), directionChoices...)}
}

// checkOptions reports the first mistake in s's declared options: one a
// form could not be built from.
func (s Spec) checkOptions() error {
	if s.Options == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, d := range s.Options {
		if d.Name == "" || seen[d.Name] {
			return fmt.Errorf("option %q: empty or declared twice", d.Name)
		}
		seen[d.Name] = true
		switch d.Kind {
		case KindDuration, KindSize, KindNumber, KindBool, KindString, KindList:
			if d.Choices != nil {
				return fmt.Errorf("option %s: Choices are for an enum or a direction, not a %s", d.Name, d.Kind)
			}
		case KindEnum, KindDirection:
			if len(d.Choices) == 0 {
				return fmt.Errorf("option %s: kind %s without Choices", d.Name, d.Kind)
			}
			if d.Default != "" && !slices.Contains(d.Choices, d.Default) {
				return fmt.Errorf("option %s: default %q is not one of its Choices", d.Name, d.Default)
			}
		default:
			return fmt.Errorf("option %s: unknown kind %q", d.Name, d.Kind)
		}
		if d.Required && d.Default != "" {
			return fmt.Errorf("option %s: required, with a default", d.Name)
		}
	}
	if s.FlagKey != "" && !seen[s.FlagKey] {
		return fmt.Errorf("FlagKey %s is not among the Options", s.FlagKey)
	}
	return nil
}

// Build makes the filter from its options, as New does, but returns a
// panic in New as a *PanicError instead of letting it end the program.
func (s Spec) Build(o *Options) (f Filter, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, &PanicError{Filter: s.Name, Value: p, Stack: debug.Stack()}
		}
	}()
	return s.New(o)
}

// A PanicError is a panic in a filter's code, recovered: the filter's
// name, the value it panicked with and the stack where it did. Error
// gives one line; log Stack beside it.
type PanicError struct {
	Filter string
	Value  any
	Stack  []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("filter %s: panic: %v", e.Filter, e.Value)
}

var (
	regMu    sync.RWMutex
	registry = map[string]Spec{}
)

// Register makes a filter available by name to config files and the
// command line. It panics if the name is empty or taken, or if Options
// declares something no form could show (an unknown kind, an enum
// without choices, a name twice, a FlagKey not among them): registration
// happens in init functions, where these are programming errors.
func Register(s Spec) {
	regMu.Lock()
	defer regMu.Unlock()
	if s.Name == "" || s.New == nil {
		panic("filter: Register with an empty name or no factory")
	}
	if err := s.checkOptions(); err != nil {
		panic("filter: Register " + s.Name + ": " + err.Error())
	}
	if _, dup := registry[s.Name]; dup {
		panic("filter: Register called twice for " + s.Name)
	}
	registry[s.Name] = s
}

// Lookup returns the filter registered under name.
func Lookup(name string) (Spec, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	s, ok := registry[name]
	return s, ok
}

// Names returns the registered names, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
