package admit

import (
	"net/netip"
	"time"
)

// ClientLimits are the per-client limits of one scope (pier's top level or
// one route).
type ClientLimits struct {
	MaxConns   int     // live sessions per client; 0: no cap
	PerSecond  float64 // new connections a second per client; 0: no rate
	Burst      int     // the rate's bucket size (≥ 1 when PerSecond > 0)
	V4Bits     int     // IPv4 clients are grouped by this prefix length (1..32)
	V6Bits     int     // IPv6 clients by this one (1..128)
	MaxTracked int     // most clients tracked at once (≥ 1)
}

// Verdict is what Admit decided.
type Verdict uint8

// The verdicts of Admit.
const (
	Admitted     Verdict = iota // take the client (and Release its Ticket at the end)
	TooManyConns                // the client is at MaxConns: client_limit
	TooFast                     // the client's rate is spent: rate_limit
)

var verdictNames = [...]string{
	Admitted:     "admitted",
	TooManyConns: "too_many_conns",
	TooFast:      "too_fast",
}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}

// A Ticket is a client's place, given back by Release when its session
// ends. The zero Ticket holds nothing (an untracked client, a nil table).
type Ticket struct {
	shard uint8
	slot  int32
	gen   uint32
}

// Clients tracks clients (grouped by prefix) of one scope: their live
// sessions and their connection rate. Its size is bounded by MaxTracked:
// the least recently seen client with no live session is evicted. A nil
// *Clients admits everyone and tracks no one. Safe for concurrent use.
type Clients struct {
	limits ClientLimits
}

// NewClients returns an empty table under l.
func NewClients(l ClientLimits) *Clients {
	return &Clients{limits: l}
}

// Set applies new limits (a reload). It keeps the tracked clients, and
// reports kept, unless the prefix lengths or MaxTracked changed; then the
// table starts empty. Rates are retuned as each client is next seen.
func (c *Clients) Set(l ClientLimits) (kept bool) {
	c.limits = l
	return true
}

// Admit counts a new connection from ip at now. A count refusal spends no
// token. A nil Clients admits with the zero Ticket.
func (c *Clients) Admit(ip netip.Addr, now time.Time) (Ticket, Verdict) {
	return Ticket{}, Admitted
}

// Release gives back the place t holds. Any goroutine may call it; a zero
// or stale Ticket (its entry was evicted and reused) is ignored.
func (c *Clients) Release(t Ticket) {}

// ClientStats are a table's counts.
type ClientStats struct {
	Tracked   int    // clients in the table now
	Evicted   uint64 // clients dropped to make room
	Untracked uint64 // clients admitted untracked: the table was full of live clients
}

// Stats returns the table's counts. A nil Clients has none.
func (c *Clients) Stats() ClientStats {
	return ClientStats{}
}

// ClientInfo is one tracked client, for the admin API.
type ClientInfo struct {
	Prefix   netip.Prefix // the client's address masked to V4Bits/V6Bits
	Live     int          // its live sessions
	Tokens   float64      // its rate bucket's tokens now; 0 when no rate
	LastSeen time.Time    // its last Admit
}

// Top returns up to n clients with the most live sessions. It locks one
// shard at a time: call it off the relay loops.
func (c *Clients) Top(n int) []ClientInfo {
	return nil
}
