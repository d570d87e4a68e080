package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// What the dashboard reads beside the admin API's views: each route's
// recent rates, the recent session ends, and the filters' option lists.

// History answers the last samples of every route in force, in the
// configuration's order.
func (c control) History() admin.History {
	times, routes := c.d.history.snapshot()
	h := admin.History{Interval: historyInterval.Seconds(), Times: times}
	c.d.mu.Lock()
	cfg := c.d.cfg
	c.d.mu.Unlock()
	for i := range cfg.Routes {
		name := cfg.Routes[i].Name
		rh, ok := routes[name]
		if !ok {
			continue
		}
		h.Routes = append(h.Routes, admin.RouteHistory{
			Name: name, SessionsPerSec: rh.sessions, ToUpstreamBps: rh.up, ToClientBps: rh.down, Live: rh.live,
		})
	}
	return h
}

// sampleRoutes is what the history samples each second: every route's
// totals, read as a scrape reads them.
func (d *Daemon) sampleRoutes() []routeTotals {
	d.mu.Lock()
	cfg, routes := d.cfg, d.routes
	d.mu.Unlock()
	out := make([]routeTotals, 0, len(cfg.Routes))
	for i := range cfg.Routes {
		c := routes[cfg.Routes[i].Name]
		if c == nil {
			continue
		}
		t := c.stats.Totals()
		out = append(out, routeTotals{name: cfg.Routes[i].Name, started: t.Started, up: t.ToUpstream, down: t.ToClient, live: c.limit.Live()})
	}
	return out
}

// Ends answers the most recent session ends, newest first.
func (c control) Ends(ctx context.Context, q admin.EndsQuery) (admin.EndsPage, error) {
	m := proxy.EndsMatch{Route: q.Route}
	if q.Reason != "" {
		r, ok := reasonNamed(q.Reason)
		if !ok {
			return admin.EndsPage{}, &admin.Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("reason %q is not a close reason", q.Reason),
				Problems: []admin.Problem{{Field: "reason", Message: "not a close reason (done, client_reset, connect_failed, ...)"}}}
		}
		m.Reason = r
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	recs, partial := c.d.srv.RecentEnds(ctx, m, limit)
	if partial {
		return admin.EndsPage{}, admin.ErrPartial
	}
	page := admin.EndsPage{Ends: make([]admin.End, 0, len(recs))}
	for _, r := range recs {
		e := admin.End{
			ID: r.ID, Route: r.Route, Client: r.Client.String(), Upstream: r.Upstream,
			Time: r.Start.Add(r.Duration), DurationSeconds: r.Duration.Seconds(),
			BytesToUpstream: r.ToUpstream, BytesToClient: r.ToClient, Reason: r.Reason.String(),
		}
		if r.Dialed.IsValid() {
			e.Dialed = r.Dialed.String()
		}
		if r.Err != nil {
			e.Error = r.Err.Error()
		}
		page.Ends = append(page.Ends, e)
	}
	return page, nil
}

// reasonNamed is the close reason the access log names name.
func reasonNamed(name string) (session.Reason, bool) {
	for r := session.Reason(1); r < session.NumReasons; r++ {
		if r.String() == name {
			return r, true
		}
	}
	return session.NotEnded, false
}

// FilterSpecs answers every registered filter with its declared options.
func (c control) FilterSpecs() []admin.FilterSpec {
	var out []admin.FilterSpec
	for _, name := range filter.Names() {
		spec, ok := filter.Lookup(name)
		if !ok {
			continue
		}
		fs := admin.FilterSpec{Name: spec.Name, Help: spec.Short, FlagKey: spec.FlagKey, OptionsDeclared: spec.Options != nil}
		for _, o := range spec.Options {
			fs.Options = append(fs.Options, admin.OptionSpec{
				Name: o.Name, Kind: o.Kind, Default: o.Default, Help: o.Help, Required: o.Required, Choices: o.Choices,
			})
		}
		out = append(out, fs)
	}
	return out
}

// routeStats are a route's totals, as /metrics has them.
func routeStats(c *carried) admin.RouteStats {
	t := c.stats.Totals()
	st := admin.RouteStats{
		Started: t.Started, ToUpstream: t.ToUpstream, ToClient: t.ToClient,
		Refused: make(map[string]uint64, stats.NumRefusals), Ended: make(map[string]uint64, session.NumReasons),
	}
	for why := stats.Refusal(0); why < stats.NumRefusals; why++ {
		st.Refused[why.String()] = t.Refused[why]
	}
	for r := session.Reason(1); r < session.NumReasons; r++ {
		if r != session.Limit {
			st.Ended[r.String()] = t.Ended[r]
		}
	}
	return st
}
