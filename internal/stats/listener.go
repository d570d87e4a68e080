package stats

import "sync/atomic"

// ListenerRefusal says why a listener refused a client before (or
// without) a route: the refusals of the edge.
type ListenerRefusal uint8

// The listener refusals, in the words the metrics use (the why label).
const (
	ListenerDenied         ListenerRefusal = iota // the top-level allow/deny list
	ListenerNoRoute                               // no route on the shared address matched
	ListenerProxyUntrusted                        // a PROXY header from an untrusted address
	ListenerProxyError                            // a bad, unaccepted, missing or late PROXY header
	ListenerRateLimit                             // the global accept rate, or the global per-client rate
	ListenerClientLimit                           // the global per-client max_connections

	// NumListenerRefusals is one past the last, for arrays indexed by it.
	NumListenerRefusals = iota
)

var listenerRefusalNames = [...]string{
	ListenerDenied:         "denied",
	ListenerNoRoute:        "no_route",
	ListenerProxyUntrusted: "proxy_untrusted",
	ListenerProxyError:     "proxy_error",
	ListenerRateLimit:      "rate_limit",
	ListenerClientLimit:    "client_limit",
}

func (r ListenerRefusal) String() string {
	if int(r) < len(listenerRefusalNames) {
		return listenerRefusalNames[r]
	}
	return "unknown"
}

// PeekResult is how a ClientHello peek ended.
type PeekResult uint8

// The peek results, in the words the metrics use (the result label).
const (
	PeekTLS      PeekResult = iota // a whole ClientHello was read
	PeekNotTLS                     // the first bytes were not a TLS handshake (or broke its grammar)
	PeekTimeout                    // peek_timeout ran out first
	PeekTooLarge                   // the hello did not fit in 16 KiB
	PeekClosed                     // the client closed (or reset) first

	// NumPeekResults is one past the last, for arrays indexed by it.
	NumPeekResults = iota
)

var peekResultNames = [...]string{
	PeekTLS:      "tls",
	PeekNotTLS:   "not_tls",
	PeekTimeout:  "timeout",
	PeekTooLarge: "too_large",
	PeekClosed:   "closed",
}

func (r PeekResult) String() string {
	if int(r) < len(peekResultNames) {
		return peekResultNames[r]
	}
	return "unknown"
}

// HeaderResult is what a listener that accepts PROXY headers got from a
// trusted client.
type HeaderResult uint8

// The header results, in the words the metrics use (the result label).
const (
	HeaderV1     HeaderResult = iota // a v1 header with addresses
	HeaderV2                         // a v2 PROXY command
	HeaderLocal                      // a v2 LOCAL or v1 UNKNOWN header: the real endpoints stand
	HeaderAbsent                     // no header (the route does not require one)

	// NumHeaderResults is one past the last, for arrays indexed by it.
	NumHeaderResults = iota
)

var headerResultNames = [...]string{
	HeaderV1:     "v1",
	HeaderV2:     "v2",
	HeaderLocal:  "local",
	HeaderAbsent: "absent",
}

func (r HeaderResult) String() string {
	if int(r) < len(headerResultNames) {
		return headerResultNames[r]
	}
	return "unknown"
}

// A Listener is one listener's edge counters: refusals before a route,
// ClientHello peeks, PROXY headers. One shard per relay loop, as Route.
type Listener struct {
	shards []ListenerShard // by loop index
}

// NewListener makes the counters of a listener served by loops relay
// loops.
func NewListener(loops int) *Listener {
	return &Listener{shards: make([]ListenerShard, max(loops, 0))}
}

// Shard returns the counters loop (its index) writes. A nil Listener, or
// a loop it was not made for, gives nil: nothing is counted.
func (l *Listener) Shard(loop int) *ListenerShard {
	if l == nil || loop < 0 || loop >= len(l.shards) {
		return nil
	}
	return &l.shards[loop]
}

// A ListenerShard is one loop's counters of a listener. Only that loop
// writes them; its methods do nothing on a nil shard.
type ListenerShard struct {
	refused [NumListenerRefusals]atomic.Uint64
	peeks   [NumPeekResults]atomic.Uint64
	headers [NumHeaderResults]atomic.Uint64
	peeking atomic.Int64
	_       [64]byte // the next loop's shard starts on another cache line
}

// Refuse counts a client refused at the edge for why.
func (s *ListenerShard) Refuse(why ListenerRefusal) {
	if s != nil && why < NumListenerRefusals {
		s.refused[why].Add(1)
	}
}

// Peek counts a ClientHello peek ended with result.
func (s *ListenerShard) Peek(result PeekResult) {
	if s != nil && result < NumPeekResults {
		s.peeks[result].Add(1)
	}
}

// Header counts what a trusted client sent for a PROXY header.
func (s *ListenerShard) Header(result HeaderResult) {
	if s != nil && result < NumHeaderResults {
		s.headers[result].Add(1)
	}
}

// EnterPeeking counts a session that starts reading its first bytes;
// LeavePeeking, once per EnterPeeking, one that stopped (decided or
// ended). Their difference is the pier_listener_sessions_peeking gauge.
func (s *ListenerShard) EnterPeeking() {
	if s != nil {
		s.peeking.Add(1)
	}
}

// LeavePeeking: see EnterPeeking.
func (s *ListenerShard) LeavePeeking() {
	if s != nil {
		s.peeking.Add(-1)
	}
}

// ListenerTotals are a listener's counters summed over its loops.
type ListenerTotals struct {
	Refused [NumListenerRefusals]uint64
	Peeks   [NumPeekResults]uint64
	Headers [NumHeaderResults]uint64
	Peeking int64 // sessions reading their first bytes now
}

// Totals sums the listener's shards. Safe from any goroutine.
func (l *Listener) Totals() ListenerTotals {
	var t ListenerTotals
	if l == nil {
		return t
	}
	for i := range l.shards {
		s := &l.shards[i]
		for j := range s.refused {
			t.Refused[j] += s.refused[j].Load()
		}
		for j := range s.peeks {
			t.Peeks[j] += s.peeks[j].Load()
		}
		for j := range s.headers {
			t.Headers[j] += s.headers[j].Load()
		}
		t.Peeking += s.peeking.Load()
	}
	return t
}

// Matches counts a route's sessions by the match key that chose them
// (route.Route.KeyName's index): a bounded label set, the configured
// keys, never the server names clients send.
type Matches struct {
	keys   []string
	shards []MatchShard // by loop index
}

// NewMatches makes the counters of keys (route.Match.KeyNames) for loops
// relay loops.
func NewMatches(keys []string, loops int) *Matches {
	m := &Matches{keys: keys, shards: make([]MatchShard, max(loops, 0))}
	for i := range m.shards {
		m.shards[i].counts = make([]atomic.Uint64, len(keys))
	}
	return m
}

// Keys returns the key names, indexed as Add and Totals index them.
func (m *Matches) Keys() []string {
	if m == nil {
		return nil
	}
	return m.keys
}

// Shard returns the counters loop writes; nil (count nothing) for a nil
// Matches or a loop it was not made for.
func (m *Matches) Shard(loop int) *MatchShard {
	if m == nil || loop < 0 || loop >= len(m.shards) {
		return nil
	}
	return &m.shards[loop]
}

// A MatchShard is one loop's match counters of a route. Only that loop
// writes them; its methods do nothing on a nil shard.
type MatchShard struct {
	counts []atomic.Uint64
	_      [64]byte // the next loop's shard header starts on another cache line
}

// Add counts a session chosen by key i; an i out of range (-1: no match)
// counts nothing.
func (s *MatchShard) Add(i int) {
	if s != nil && i >= 0 && i < len(s.counts) {
		s.counts[i].Add(1)
	}
}

// Totals sums the shards: sessions by key, indexed as Keys.
func (m *Matches) Totals() []uint64 {
	if m == nil {
		return nil
	}
	t := make([]uint64, len(m.keys))
	for i := range m.shards {
		for j := range m.shards[i].counts {
			t[j] += m.shards[i].counts[j].Load()
		}
	}
	return t
}
