package app

import (
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/metrics"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// source is the Daemon as the metrics see it: a snapshot of every
// counter, taken per scrape. The data path's counters are the loops' own,
// summed here; nothing a scrape does reaches a loop.
type source struct{ d *Daemon }

func (s source) Snapshot() metrics.Snapshot {
	d := s.d
	d.mu.Lock()
	cfg, routes, global := d.cfg, d.routes, d.global
	d.mu.Unlock()

	var snap metrics.Snapshot
	for i := range cfg.Routes {
		name := cfg.Routes[i].Name
		c := routes[name]
		if c == nil {
			continue
		}
		snap.Routes = append(snap.Routes, routeMetrics(name, c))
		if c.set != nil {
			for j, f := range c.set.Filters {
				if dr, ok := f.Filter.(filter.Dropper); ok {
					lost := dr.Dropped()
					snap.Filters = append(snap.Filters, metrics.Filter{Route: name, Name: f.Name, Index: j,
						DroppedBytes: uint64(lost.Bytes), DroppedWrites: uint64(lost.Writes)})
				}
			}
		}
	}
	for _, l := range d.srv.ListenerStats() {
		snap.Listeners = append(snap.Listeners, listenerMetrics(&l))
	}
	snap.Clients = clientsMetrics(global)
	u := d.udp.Stats()
	snap.LogRefusalsSuppressed = d.srv.Stats().RefusalLogsSuppressed + u.RefusalLogsSuppressed
	if hasUDP(cfg) {
		snap.UDP = &metrics.UDP{ToUpstream: u.DatagramsToUpstream, ToClient: u.DatagramsToClient,
			Refused: u.Refused + u.NoUpstream,
			Dropped: map[string]uint64{"too_big": u.Dropped.TooBig, "queue_full": u.Dropped.QueueFull,
				"filter": u.Dropped.Filter, "other": u.Dropped.Other}}
	}
	snap.ReloadsOK, snap.ReloadsFailed = d.reloadsOK.Load(), d.reloadsFailed.Load()
	if t := d.lastReloadOK.Load(); t != 0 {
		snap.LastReloadOK = time.Unix(0, t)
	}
	if d.opts.LogDropped != nil {
		snap.LogDroppedAccess, snap.LogDroppedOther = d.opts.LogDropped()
	}
	return snap
}

func routeMetrics(name string, c *carried) metrics.Route {
	t := c.stats.Totals()
	r := metrics.Route{
		Name: name, Started: t.Started, Live: c.limit.Live(),
		Ended:      make(map[string]uint64, session.NumReasons),
		States:     make(map[string]int64, session.NumStates),
		Refused:    make(map[string]uint64, stats.NumRefusals),
		ToUpstream: t.ToUpstream, ToClient: t.ToClient, Retries: t.Retries,
		ConnectTime: histogram(t.ConnectTime), Duration: histogram(t.Duration),
		Clients: clientsMetrics(c.limits),
	}
	if c.matches != nil {
		r.Matched = make(map[string]uint64, len(c.matches.Keys()))
		counts := c.matches.Totals()
		for i, k := range c.matches.Keys() {
			r.Matched[k] = counts[i]
		}
	}
	for reason := session.Reason(1); reason < session.NumReasons; reason++ {
		if reason == session.Limit { // a refused client is not a session
			continue
		}
		r.Ended[reason.String()] = t.Ended[reason]
	}
	for st := session.State(0); st < session.NumStates; st++ {
		r.States[st.String()] = t.States[st]
	}
	for why := stats.Refusal(0); why < stats.NumRefusals; why++ {
		r.Refused[why.String()] = t.Refused[why]
	}
	type member struct{ name, addr string }
	seen := make(map[member]bool)
	for _, m := range c.pool.Status() {
		// A member listed twice is one series: the same address has one
		// health and one count, whichever entry names it.
		k := member{m.Name, m.Addr.String()}
		if seen[k] {
			continue
		}
		seen[k] = true
		r.Members = append(r.Members, metrics.Member{
			Name: m.Name, Addr: m.Addr.String(), Up: !m.Down, Ejected: m.Ejected, Draining: m.Drain, Disabled: m.Disabled,
			Weight: m.Weight, Live: m.Active, ConnectFailures: m.ConnectFailures,
			ChecksPassed: m.ChecksPassed, ChecksFailed: m.ChecksFailed,
		})
	}
	return r
}

// listenerMetrics is one listener's counts: its accept pauses, and every
// edge series at zero included (a listener's edge may refuse any client:
// the top level's lists and limits apply to all).
func listenerMetrics(l *proxy.ListenerStats) metrics.Listener {
	m := metrics.Listener{Route: l.Route, Addr: l.Addr.String(),
		Pauses: map[string]uint64{
			"accept_error": l.AcceptErrors, "descriptors": l.DescriptorPauses, "local_error": l.LocalErrorPauses,
		},
		Refused: make(map[string]uint64, stats.NumListenerRefusals),
		Peeks:   make(map[string]uint64, stats.NumPeekResults),
		Headers: make(map[string]uint64, stats.NumHeaderResults),
		Peeking: l.Peeking,
	}
	for why := stats.ListenerRefusal(0); why < stats.NumListenerRefusals; why++ {
		m.Refused[why.String()] = l.Refused[why]
	}
	for r := stats.PeekResult(0); r < stats.NumPeekResults; r++ {
		m.Peeks[r.String()] = l.Peeks[r]
	}
	for r := stats.HeaderResult(0); r < stats.NumHeaderResults; r++ {
		m.Headers[r.String()] = l.ProxyHeaders[r]
	}
	return m
}

// clientsMetrics is a scope's per-client table's counts; nil without one.
func clientsMetrics(s *scopeLimits) *metrics.Clients {
	if s == nil || s.clients == nil {
		return nil
	}
	st := s.clients.Stats()
	return &metrics.Clients{Tracked: st.Tracked, Evicted: st.Evicted, Untracked: st.Untracked}
}

func histogram(h stats.HistogramTotals) metrics.Histogram {
	return metrics.Histogram{Bounds: h.Bounds, Counts: h.Counts, Sum: h.Sum}
}

// hasUDP reports whether cfg has a udp route: the datagram series are
// emitted only then.
func hasUDP(cfg *config.Config) bool {
	for i := range cfg.Routes {
		if cfg.Routes[i].Protocol == config.UDP {
			return true
		}
	}
	return false
}
