package route

import (
	"net/netip"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/session"
)

// Admission: the rules a new client meets, the top level's (Global.Admit)
// then its route's (Route.Admit), in the order they apply. The TCP proxy
// admits a connection through them and the UDP engine a flow (per-client
// max_connections then counts a client's live flows, and every rate new
// flows), so the two cannot drift apart.

// A Refusal is why a client was turned away before it was a session.
type Refusal struct {
	Reason session.Reason
	// Limit is the limit that refused (session.Edge.Limit); "" none.
	Limit string
	// Route is the route that refused, for its counters; nil: the top
	// level (or the listener) did.
	Route *Route
}

// Held is what a session holds in per-client tables, released when it
// ends. A nil *Held holds nothing: sessions of routes without per-client
// limits allocate none.
type Held struct {
	global, route     *admit.Clients
	globalTk, routeTk admit.Ticket
}

// Release gives back the places h holds; h holds none after it.
func (h *Held) Release() {
	if h == nil {
		return
	}
	if h.global != nil {
		h.global.Release(h.globalTk)
	}
	if h.route != nil {
		h.route.Release(h.routeTk)
	}
	*h = Held{}
}

// Admit applies the top level to a client ip at now, the time of the
// decision: its allow/deny list and per-client table (addr: ip is the
// client's, not a trusted balancer's, whose clients are checked once its
// PROXY header is read) and its accept rate (accepting: counted at
// accept only, not again when a header is read). Deny is checked first so
// that denied clients spend no one's rate. now must not go back: a rate fed
// a time before its last would take it back and refill.
func (g Global) Admit(ip netip.Addr, now time.Time, accepting, addr bool) (*Held, *Refusal) {
	if addr && !g.ACL.Allows(ip) {
		return nil, &Refusal{Reason: session.Denied}
	}
	if accepting && !g.Rate.Allow(now) {
		return nil, &Refusal{Reason: session.RateLimit, Limit: "global_rate"}
	}
	if !addr || g.Clients == nil {
		return nil, nil
	}
	tk, v := g.Clients.Admit(ip, now)
	if ref := clientRefusal(v, "global_", nil); ref != nil {
		return nil, ref
	}
	return &Held{global: g.Clients, globalTk: tk}, nil
}

// Places caps a route's live sessions: Acquire takes a place, or reports
// false when none is left. *admit.Limit is the TCP proxy's
// (max_connections); the UDP engine counts flows against max_flows.
type Places interface {
	Acquire() bool
}

// Admit applies rt's own rules to a client ip at now, after the top
// level's (see Global.Admit): allow/deny, accept rate, per-client table,
// then a place in places. What it takes in rt's per-client table is added
// to *h.
func (rt *Route) Admit(ip netip.Addr, now time.Time, h **Held, places Places) *Refusal {
	if !rt.ACL.Allows(ip) {
		return &Refusal{Reason: session.Denied, Route: rt}
	}
	if !rt.Rate.Allow(now) {
		return &Refusal{Reason: session.RateLimit, Limit: "route_rate", Route: rt}
	}
	var tk admit.Ticket
	if rt.Clients != nil {
		var v admit.Verdict
		tk, v = rt.Clients.Admit(ip, now)
		if ref := clientRefusal(v, "", rt); ref != nil {
			return ref
		}
	}
	if !places.Acquire() {
		if rt.Clients != nil {
			rt.Clients.Release(tk)
		}
		return &Refusal{Reason: session.Limit, Route: rt}
	}
	if rt.Clients != nil {
		if *h == nil {
			*h = &Held{}
		}
		(*h).route, (*h).routeTk = rt.Clients, tk
	}
	return nil
}

// clientRefusal words a per-client table's verdict; scope is "global_"
// for the top level's table.
func clientRefusal(v admit.Verdict, scope string, rt *Route) *Refusal {
	switch v {
	case admit.TooManyConns:
		return &Refusal{Reason: session.ClientLimit, Limit: scope + "client_connections", Route: rt}
	case admit.TooFast:
		return &Refusal{Reason: session.RateLimit, Limit: scope + "client_rate", Route: rt}
	}
	return nil
}
