package app

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// scopeLimits is what a scope (the top level, or one route by name) keeps
// across reloads: its accept rate's bucket and its per-client table, so a
// reload that changes a limit keeps the tokens each bucket holds and every
// client's live count. compile reuses the objects; retune, run once the
// new table is in force, gives them the new settings (as apply does for
// admit.Limit), so a reload that fails changes nothing.
type scopeLimits struct {
	rate    *admit.Rate    // nil: no accept rate
	clients *admit.Clients // nil: no per-client limits

	// The settings in force (after retune), and the ones compile chose.
	rateIn, rateWant       config.Rate
	clientsIn, clientsWant admit.ClientLimits
}

// compileLimits is the scope's limits under l, reusing prev's rate and
// table where l keeps them.
func compileLimits(prev *scopeLimits, l *config.Limits) *scopeLimits {
	s := &scopeLimits{}
	if prev != nil {
		s.rateIn, s.clientsIn = prev.rateIn, prev.clientsIn
	}
	if l != nil && l.AcceptRate != nil {
		s.rateWant = resolveRate(*l.AcceptRate)
		if prev != nil && prev.rate != nil {
			s.rate = prev.rate
		} else {
			s.rate = admit.NewRate(s.rateWant.PerSecond, s.rateWant.Burst)
			s.rateIn = s.rateWant
		}
	}
	if l != nil && l.PerClient != nil {
		s.clientsWant = clientLimits(l.PerClient)
		if prev != nil && prev.clients != nil {
			s.clients = prev.clients
		} else {
			s.clients = admit.NewClients(s.clientsWant)
			s.clientsIn = s.clientsWant
		}
	}
	return s
}

// retune puts the settings compile chose in force on the objects it kept.
// A per-client table whose grouping (ipv4_prefix, ipv6_prefix) or bound
// (max_tracked) changed starts over empty: its entries were keyed under
// the old grouping. That is logged; the sessions they count are not
// touched, and their releases are ignored (admit's stale tickets).
func (s *scopeLimits) retune(scope string, log *slog.Logger) {
	if s.rate != nil && s.rateIn != s.rateWant {
		s.rate.Set(s.rateWant.PerSecond, s.rateWant.Burst)
		s.rateIn = s.rateWant
	}
	if s.clients != nil && s.clientsIn != s.clientsWant {
		if !s.clients.Set(s.clientsWant) {
			log.Info("per-client table started over: ipv4_prefix, ipv6_prefix or max_tracked changed",
				"scope", scope, "tracked_before", s.clientsIn.MaxTracked)
		}
		s.clientsIn = s.clientsWant
	}
}

// resolveRate fills a rate's absent burst: ceil(PerSecond), at least 1.
func resolveRate(r config.Rate) config.Rate {
	if r.Burst <= 0 {
		r.Burst = max(1, int(math.Ceil(r.PerSecond)))
	}
	return r
}

// clientLimits is a per_client mapping with its defaults filled.
func clientLimits(pc *config.PerClient) admit.ClientLimits {
	l := admit.ClientLimits{
		MaxConns:   pc.MaxConnections,
		V4Bits:     pc.IPv4Prefix,
		V6Bits:     pc.IPv6Prefix,
		MaxTracked: pc.MaxTracked,
	}
	if pc.Rate != nil {
		r := resolveRate(*pc.Rate)
		l.PerSecond, l.Burst = r.PerSecond, r.Burst
	}
	if l.V4Bits == 0 {
		l.V4Bits = config.DefaultIPv4Prefix
	}
	if l.V6Bits == 0 {
		l.V6Bits = config.DefaultIPv6Prefix
	}
	if l.MaxTracked == 0 {
		l.MaxTracked = config.DefaultMaxTracked
	}
	return l
}

// acl is an allow/deny pair as the data path checks it; nil when both are
// empty, so a scope without lists costs a nil check.
func acl(allow, deny []netip.Prefix) *admit.ACL {
	if len(allow) == 0 && len(deny) == 0 {
		return nil
	}
	return admit.NewACL(allow, deny)
}

// proxyVersion is a send_proxy or accept value as peek's versions: v1, v2,
// any (accept's absent value); 0 for "" and "none".
func proxyVersion(s string) uint8 {
	switch s {
	case "v1":
		return peek.V1
	case "v2":
		return peek.V2
	case "any":
		return peek.Any
	}
	return 0
}

// memberProxy is an upstream's send_proxy as pool.Spec takes it: "" the
// route's (0), "none" pool.NoProxy.
func memberProxy(s string) uint8 {
	if s == "none" {
		return pool.NoProxy
	}
	return proxyVersion(s)
}

// checkProxy is a health check's send_proxy as pool.Config takes it:
// "auto" or "" (0) the member's version as a LOCAL header, "none"
// pool.NoProxy.
func checkProxy(s string) uint8 {
	if s == "none" {
		return pool.NoProxy
	}
	return proxyVersion(s)
}

// proxyIn is a route's proxy_protocol as the data path takes it.
func proxyIn(pp *config.ProxyProtocol) *route.ProxyIn {
	if pp == nil {
		return nil
	}
	in := &route.ProxyIn{
		Accept:   proxyVersion(pp.Accept),
		Trusted:  admit.NewACL(pp.Trusted, nil),
		Required: pp.Required,
		Timeout:  pp.Timeout,
	}
	if in.Accept == 0 {
		in.Accept = peek.Any
	}
	if in.Timeout <= 0 {
		in.Timeout = config.DefaultProxyTimeout
	}
	return in
}

// peekTimeout is a route's peek_timeout with its default.
func peekTimeout(rc *config.Route) time.Duration {
	if rc.PeekTimeout > 0 {
		return rc.PeekTimeout
	}
	return config.DefaultPeekTimeout
}

// routeMatch is a route's match as the table takes it.
func routeMatch(m *config.Match) *route.Match {
	if m == nil {
		return nil
	}
	return &route.Match{SNI: m.SNI, ALPN: m.ALPN, Source: m.Source, Default: m.Default}
}

// matchCounts is a route's per-key counters: prev's while the keys are
// the same (counters only go up), new ones when they changed.
func matchCounts(prev *stats.Matches, m *route.Match, loops int) *stats.Matches {
	if m == nil {
		return nil
	}
	keys := m.KeyNames()
	if prev != nil && slices.Equal(prev.Keys(), keys) {
		return prev
	}
	return stats.NewMatches(keys, loops)
}

// edgeRoute fills a compiled route's edge fields from its configuration:
// what a client must show to take it, the PROXY protocol both ways, its
// access list and limits (carried in c).
func edgeRoute(r *route.Route, rc *config.Route, c *carried, loops int) {
	r.Match = routeMatch(rc.Match)
	r.Proxy = proxyIn(rc.ProxyProtocol)
	r.PeekTimeout = peekTimeout(rc)
	r.SendProxy = proxyVersion(rc.SendProxy)
	r.ACL = acl(rc.Allow, rc.Deny)
	c.matches = matchCounts(c.matches, r.Match, loops)
	r.Matches = c.matches
	c.limits = compileLimits(c.limits, rc.Limits)
	r.Rate, r.Clients = c.limits.rate, c.limits.clients
}

// edgeGlobal is the top level's part of the table: its access list, and
// its limits carried from prev.
func edgeGlobal(cfg *config.Config, prev *scopeLimits) (route.Global, *scopeLimits) {
	s := compileLimits(prev, cfg.Limits)
	return route.Global{ACL: acl(cfg.Allow, cfg.Deny), Rate: s.rate, Clients: s.clients}, s
}

// Clients answers a per-client table: the top level's, or a route's.
// The table is read off the loops (admit.Clients.Top locks one shard at a
// time), outside d.mu.
func (c control) Clients(q admin.ClientsQuery) (admin.ClientsPage, error) {
	d := c.d
	d.mu.Lock()
	page := admin.ClientsPage{Scope: "global"}
	s := d.global
	if q.Route != "" {
		r := d.routes[q.Route]
		if r == nil || d.routeConfig(q.Route) == nil {
			d.mu.Unlock()
			return admin.ClientsPage{}, fmt.Errorf("route %q: %w", q.Route, admin.ErrNotFound)
		}
		page.Scope, s = q.Route, r.limits
	}
	d.mu.Unlock()
	if s == nil || s.clients == nil {
		return page, nil
	}
	page.Limits = perClientView(s)
	page.Tracked, page.Evicted, page.Untracked = page.Limits.Tracked, page.Limits.Evicted, page.Limits.Untracked
	for _, ci := range s.clients.Top(max(q.Limit, 1)) {
		page.Clients = append(page.Clients, admin.Client{Prefix: ci.Prefix.String(), Live: ci.Live, Tokens: ci.Tokens, LastSeen: ci.LastSeen})
	}
	return page, nil
}

// perClientView is a scope's per-client limits in force and its table's
// counts now; nil without a table.
func perClientView(s *scopeLimits) *admin.PerClient {
	if s == nil || s.clients == nil {
		return nil
	}
	l := s.clientsWant
	v := &admin.PerClient{MaxConnections: l.MaxConns, IPv4Prefix: l.V4Bits, IPv6Prefix: l.V6Bits, MaxTracked: l.MaxTracked}
	if l.PerSecond > 0 {
		v.Rate = &admin.Rate{PerSecond: l.PerSecond, Burst: l.Burst}
	}
	st := s.clients.Stats()
	v.Tracked, v.Evicted, v.Untracked = st.Tracked, st.Evicted, st.Untracked
	return v
}

// limitsView is a scope's limits as the admin API shows them; nil when
// it has none.
func limitsView(s *scopeLimits) *admin.Limits {
	if s == nil || s.rate == nil && s.clients == nil {
		return nil
	}
	v := &admin.Limits{PerClient: perClientView(s)}
	if s.rate != nil {
		v.AcceptRate = &admin.Rate{PerSecond: s.rateWant.PerSecond, Burst: s.rateWant.Burst}
	}
	return v
}

// edgeView fills a route's view with its edge settings; c may be nil (a
// route not compiled yet).
func edgeView(r *admin.Route, rc *config.Route, c *carried) {
	r.PeekTimeoutSeconds = peekTimeout(rc).Seconds()
	r.SendProxy = rc.SendProxy
	if r.SendProxy == "" {
		r.SendProxy = "none"
	}
	r.Allow, r.Deny = prefixStrings(rc.Allow), prefixStrings(rc.Deny)
	if m := rc.Match; m != nil {
		r.Match = &admin.Match{SNI: m.SNI, ALPN: m.ALPN, Source: prefixStrings(m.Source), Default: m.Default,
			Matched: make(map[string]uint64)}
		if c != nil && c.matches != nil {
			counts := c.matches.Totals()
			for i, k := range c.matches.Keys() {
				r.Match.Matched[k] = counts[i]
			}
		}
	}
	if pp := proxyIn(rc.ProxyProtocol); pp != nil {
		accept := map[uint8]string{peek.V1: "v1", peek.V2: "v2", peek.Any: "any"}[pp.Accept]
		r.ProxyProtocol = &admin.ProxyProtocol{Accept: accept, Trusted: prefixStrings(rc.ProxyProtocol.Trusted),
			Required: pp.Required, TimeoutSeconds: pp.Timeout.Seconds()}
	}
	if c != nil {
		r.Limits = limitsView(c.limits)
	}
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// sessionEdge fills a session's view with what its edge learned.
func sessionEdge(v *admin.Session, e *session.Edge) {
	if e == nil {
		return
	}
	if e.Peer.IsValid() {
		v.Peer = e.Peer.String()
	}
	v.Proxy, v.SNI, v.ALPN, v.Match = e.Proxy, e.SNI, e.ALPN, e.Matched
	t := admin.TLVs{Authority: e.Authority, UniqueID: e.UniqueID, ALPN: e.ProxyALPN, SSLVersion: e.SSLVersion, SSLCN: e.SSLCN}
	if t != (admin.TLVs{}) {
		v.TLVs = &t
	}
}
