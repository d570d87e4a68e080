package udp

import (
	"sync/atomic"

	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// Admission is the TCP proxy's, through package route (Global.Admit,
// Route.Admit), with a flow in the place of a connection: per_client
// max_connections caps a client's live flows, every rate counts new
// flows, and a route's places are its max_flows (a flowCount).

// routeRefusal is the route counter of each reason of refusal.
var routeRefusal = map[session.Reason]stats.Refusal{
	session.Limit:       stats.RefusedLimit,
	session.Denied:      stats.RefusedDenied,
	session.ClientLimit: stats.RefusedClientLimit,
	session.RateLimit:   stats.RefusedRateLimit,
}

// A flowCount is a route's live flows, against its max_flows: the
// route.Places a flow takes at admission. It is kept by route name across
// reloads, so flows begun under the old table still count against the new
// maximum (Apply sets it), and is shared by every socket of every address
// of the route: one atomic add per flow opened or ended.
type flowCount struct {
	live atomic.Int64
	max  atomic.Int64 // max_flows; 0: no cap
}

// Acquire takes a place for a new flow, or reports false at max_flows.
func (c *flowCount) Acquire() bool {
	n := c.live.Add(1)
	if m := c.max.Load(); m > 0 && n > m {
		c.live.Add(-1)
		return false
	}
	return true
}

func (c *flowCount) release() { c.live.Add(-1) }
