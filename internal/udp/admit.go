package udp

import (
	"sync/atomic"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// Admission mirrors the TCP proxy's (internal/proxy, decide.go: admitTop,
// admitRoute), with a flow in the place of a connection: per_client
// max_connections caps a client's live flows, and every rate counts new
// flows. It is copied, not imported: udp depends on stages, not on the
// TCP proxy.

// A refusal is why a datagram did not open a flow.
type refusal struct {
	reason session.Reason
	limit  string       // session.Edge.Limit; "" none
	rt     *route.Route // counted on this route; nil: before any route
}

// held is what a flow holds in per-client tables, released when it ends.
// A nil *held holds nothing.
type held struct {
	global, route     *admit.Clients
	globalTk, routeTk admit.Ticket
}

func (h *held) release() {
	if h == nil {
		return
	}
	if h.global != nil {
		h.global.Release(h.globalTk)
	}
	if h.route != nil {
		h.route.Release(h.routeTk)
	}
	*h = held{}
}

// admitTop applies the top level to a new flow from rec.Client at now:
// allow/deny first (a denied client spends no one's rate), the accept
// rate, the per-client table.
func admitTop(g route.Global, rec *session.Record, now time.Time) (*held, *refusal) {
	ip := rec.Client.Addr()
	if !g.ACL.Allows(ip) {
		return nil, &refusal{reason: session.Denied}
	}
	if !g.Rate.Allow(now) {
		return nil, &refusal{reason: session.RateLimit, limit: "global_rate"}
	}
	if g.Clients == nil {
		return nil, nil
	}
	tk, v := g.Clients.Admit(ip, now)
	if ref := clientRefusal(v, "global_", nil); ref != nil {
		return nil, ref
	}
	return &held{global: g.Clients, globalTk: tk}, nil
}

// admitRoute applies rt's own rules after the top level's: allow/deny,
// rate, per-client table, max_flows (count). What it takes in rt's
// per-client table is added to *h; the place in count is taken.
func admitRoute(rt *route.Route, rec *session.Record, h **held, count *flowCount, now time.Time) *refusal {
	ip := rec.Client.Addr()
	if !rt.ACL.Allows(ip) {
		return &refusal{reason: session.Denied, rt: rt}
	}
	if !rt.Rate.Allow(now) {
		return &refusal{reason: session.RateLimit, limit: "route_rate", rt: rt}
	}
	var tk admit.Ticket
	if rt.Clients != nil {
		var v admit.Verdict
		tk, v = rt.Clients.Admit(ip, now)
		if ref := clientRefusal(v, "", rt); ref != nil {
			return ref
		}
	}
	if !count.acquire(rt.MaxFlows) {
		if rt.Clients != nil {
			rt.Clients.Release(tk)
		}
		return &refusal{reason: session.Limit, rt: rt}
	}
	if rt.Clients != nil {
		if *h == nil {
			*h = &held{}
		}
		(*h).route, (*h).routeTk = rt.Clients, tk
	}
	return nil
}

// clientRefusal words a per-client table's verdict.
func clientRefusal(v admit.Verdict, scope string, rt *route.Route) *refusal {
	switch v {
	case admit.TooManyConns:
		return &refusal{reason: session.ClientLimit, limit: scope + "client_connections", rt: rt}
	case admit.TooFast:
		return &refusal{reason: session.RateLimit, limit: scope + "client_rate", rt: rt}
	}
	return nil
}

// routeRefusal is the route counter of each reason of refusal.
var routeRefusal = map[session.Reason]stats.Refusal{
	session.Limit:       stats.RefusedLimit,
	session.Denied:      stats.RefusedDenied,
	session.ClientLimit: stats.RefusedClientLimit,
	session.RateLimit:   stats.RefusedRateLimit,
}

// A flowCount is a route's live flows, against its max_flows. It is kept
// by route name across reloads, so flows begun under the old table still
// count against the new maximum, and is shared by every socket of every
// address of the route: one atomic add per flow opened or ended.
type flowCount struct{ live atomic.Int64 }

// acquire takes a place for a new flow under max (0: no cap).
func (c *flowCount) acquire(max int) bool {
	n := c.live.Add(1)
	if max > 0 && n > int64(max) {
		c.live.Add(-1)
		return false
	}
	return true
}

func (c *flowCount) release() { c.live.Add(-1) }
