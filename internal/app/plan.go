package app

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
)

// Live counts the live sessions a change would touch.
type Live interface {
	Route(name string) int64           // live sessions of a route
	Member(route, member string) int64 // live sessions on a member (configured name)
}

// The kinds and actions of a Change (admin.Change.Kind, .Action).
const (
	kindListener = "listener"
	kindRoute    = "route"
	kindMember   = "member"
	kindFilter   = "filter"
	kindSetting  = "setting"

	actionOpen   = "open"
	actionClose  = "close"
	actionAdd    = "add"
	actionRemove = "remove"
	actionChange = "change"
)

// Plan lists what putting next in force in place of cur would change, and
// what each change does to the live sessions it touches, as a reload does
// it (apply, compile, proxy.Server.Apply). cur and next are compared
// whole, so they must be alike: both the file's configurations, or both
// with owners' routes (merge) and the overlay's filter lists
// (overlay.apply); a route in one only shows as added or removed.
//
// The order is stable: listeners (open, then moved, then close: the order
// Apply takes), routes (removed in cur's order, then added and changed in
// next's), members and filters of the routes in both (route by route in
// next's order; removed first), then settings (grace_period, resolver,
// admin, toxiproxy). The members and filters of an added or removed route
// are its route's change, not listed apart. No change: an empty plan.
func Plan(cur, next *config.Config, live Live) []admin.Change {
	var out []admin.Change
	out = append(out, planListeners(cur, next, live)...)
	out = append(out, planRoutes(cur, next, live)...)
	curRoutes := routesByName(cur)
	for i := range next.Routes {
		nr := &next.Routes[i]
		if cr := curRoutes[nr.Name]; cr != nil {
			out = append(out, planMembers(cr, nr, live)...)
		}
	}
	for i := range next.Routes {
		nr := &next.Routes[i]
		if cr := curRoutes[nr.Name]; cr != nil {
			out = append(out, planFilters(cr, nr, live)...)
		}
	}
	out = append(out, planSettings(cur, next)...)
	return out
}

func routesByName(cfg *config.Config) map[string]*config.Route {
	m := make(map[string]*config.Route, len(cfg.Routes))
	for i := range cfg.Routes {
		m[cfg.Routes[i].Name] = &cfg.Routes[i]
	}
	return m
}

// listenAt is one listener of a configuration: its route.Key, which the
// proxy keeps a listener open by across reloads.
type listenAt struct {
	key, route, addr string
}

func listens(cfg *config.Config) []listenAt {
	var ls []listenAt
	for _, r := range cfg.Routes {
		for _, a := range r.Listen {
			ls = append(ls, listenAt{route.ProtocolKey(r.Protocol, r.Name, r.Match != nil, a), r.Name, a})
		}
	}
	return ls
}

// planListeners compares listeners by route.Key: an address is its own
// key, so an address that passes to another route (a renamed route) stays
// open and only changes route; an address on port 0 is keyed by its route
// too, so renaming its route closes it and opens another.
func planListeners(cur, next *config.Config, live Live) []admin.Change {
	was := make(map[string]listenAt)
	for _, l := range listens(cur) {
		was[l.key] = l
	}
	will := make(map[string]bool)
	var opens, moves, closes []admin.Change
	for _, l := range listens(next) {
		will[l.key] = true
		old, ok := was[l.key]
		switch {
		case !ok:
			opens = append(opens, admin.Change{Kind: kindListener, Action: actionOpen, Route: l.route, Name: l.addr,
				Effect: "opens before the new table takes effect; if it cannot bind, the reload fails and nothing changes"})
		case old.route != l.route:
			n := live.Route(old.route)
			moves = append(moves, admin.Change{Kind: kindListener, Action: actionChange, Route: l.route, Name: l.addr,
				Fields: []string{"route"}, LiveSessions: n,
				Effect: fmt.Sprintf("stays open: new clients on it go to route %s; the %d live sessions of route %s are not ended and finish on %s",
					l.route, n, old.route, old.route)})
		}
	}
	for _, l := range listens(cur) {
		if will[l.key] {
			continue
		}
		n := live.Route(l.route)
		closes = append(closes, admin.Change{Kind: kindListener, Action: actionClose, Route: l.route, Name: l.addr,
			LiveSessions: n,
			Effect:       fmt.Sprintf("stops accepting; the %d live sessions of route %s, those accepted on it among them, are not ended", n, l.route)})
	}
	return slices.Concat(opens, moves, closes)
}

func planRoutes(cur, next *config.Config, live Live) []admin.Change {
	var out []admin.Change
	nextRoutes := routesByName(next)
	for i := range cur.Routes {
		r := &cur.Routes[i]
		if nextRoutes[r.Name] != nil {
			continue
		}
		n := live.Route(r.Name)
		effect := fmt.Sprintf("takes no new clients; its %d live sessions are not ended: they finish on the old route (its timeouts, members and filters)", n)
		if len(r.Filters) > 0 {
			effect += "; its filters are closed now, and what they can no longer write is counted as dropped"
		}
		out = append(out, admin.Change{Kind: kindRoute, Action: actionRemove, Route: r.Name, Name: r.Name, LiveSessions: n, Effect: effect})
	}
	curRoutes := routesByName(cur)
	for i := range next.Routes {
		nr := &next.Routes[i]
		cr := curRoutes[nr.Name]
		if cr == nil {
			out = append(out, admin.Change{Kind: kindRoute, Action: actionAdd, Route: nr.Name, Name: nr.Name,
				Effect: "a new route: its filters are in force before its listeners open; it takes new clients once the new table is in force"})
			continue
		}
		fields := routeFields(cr, nr)
		if len(fields) == 0 {
			continue
		}
		n := live.Route(nr.Name)
		out = append(out, admin.Change{Kind: kindRoute, Action: actionChange, Route: nr.Name, Name: nr.Name,
			Fields: fields, LiveSessions: n, Effect: routeEffect(cr, nr, fields, n)})
	}
	return out
}

// routeFields names the route's settings that differ, in the schema's
// order. Members and filters are listed apart.
func routeFields(a, b *config.Route) []string {
	var f fieldNames
	add := f.add
	add("listen", !sameSet(a.Listen, b.Listen))
	add("balance", a.Balance != b.Balance)
	add("health_check", !sameHealthCheck(a.HealthCheck, b.HealthCheck))
	add("passive_check", a.PassiveCheck != b.PassiveCheck)
	add("retries", a.Retries != b.Retries)
	add("connect_timeout", a.ConnectTimeout != b.ConnectTimeout)
	// compile uses the budget in effect, worked out when not written.
	add("connect_budget", a.Budget() != b.Budget())
	add("when_all_down", a.WhenAllDown != b.WhenAllDown)
	add("idle_timeout", a.IdleTimeout != b.IdleTimeout)
	add("half_close_timeout", a.HalfCloseTimeout != b.HalfCloseTimeout)
	add("max_connections", a.MaxConnections != b.MaxConnections)
	add("match", !sameMatch(a.Match, b.Match))
	add("peek_timeout", peekTimeout(a) != peekTimeout(b))
	add("proxy_protocol", !sameProxyProtocol(a.ProxyProtocol, b.ProxyProtocol))
	add("send_proxy", a.SendProxy != b.SendProxy)
	add("allow", !slices.Equal(a.Allow, b.Allow))
	add("deny", !slices.Equal(a.Deny, b.Deny))
	add("limits", !sameLimits(a.Limits, b.Limits))
	return f
}

// fieldNames collects the names of the settings that differ, in the order
// they are added.
type fieldNames []string

func (f *fieldNames) add(name string, differ bool) {
	if differ {
		*f = append(*f, name)
	}
}

// sameMatch compares two matches as written, wherever in the file.
func sameMatch(a, b *config.Match) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.SNI, b.SNI) && slices.Equal(a.ALPN, b.ALPN) && slices.Equal(a.Source, b.Source) && a.Default == b.Default
}

// sameProxyProtocol compares two proxy_protocol settings as compile takes
// them (an absent timeout is the default).
func sameProxyProtocol(a, b *config.ProxyProtocol) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := proxyIn(a), proxyIn(b)
	return x.Accept == y.Accept && x.Required == y.Required && x.Timeout == y.Timeout && slices.Equal(a.Trusted, b.Trusted)
}

// sameLimits compares two limits mappings as compile takes them (absent
// values are their defaults).
func sameLimits(a, b *config.Limits) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameRate(a.AcceptRate, b.AcceptRate) && samePerClient(a.PerClient, b.PerClient)
}

func sameRate(a, b *config.Rate) bool {
	if a == nil || b == nil {
		return a == b
	}
	return resolveRate(*a) == resolveRate(*b)
}

func samePerClient(a, b *config.PerClient) bool {
	if a == nil || b == nil {
		return a == b
	}
	return clientLimits(a) == clientLimits(b)
}

// limitsEffect says what a changed limits mapping does (n < 0: the
// top level's, whose live sessions are every route's): the accept rate's
// bucket and the per-client table carry over (compileLimits), so tokens
// and live counts stand; a table whose grouping or bound changed starts
// over.
func limitsEffect(a, b *config.Limits, n int64) string {
	s := "the new accept rate and per-client limits apply to new clients; live sessions are not ended"
	if n >= 0 {
		s = fmt.Sprintf("the new accept rate and per-client limits apply to new clients; the %d live sessions are not ended", n)
	}
	var was, is *config.PerClient
	if a != nil {
		was = a.PerClient
	}
	if b != nil {
		is = b.PerClient
	}
	switch {
	case was != nil && is != nil:
		x, y := clientLimits(was), clientLimits(is)
		if x.V4Bits != y.V4Bits || x.V6Bits != y.V6Bits || x.MaxTracked != y.MaxTracked {
			s += "; the per-client table starts over (ipv4_prefix, ipv6_prefix or max_tracked changed): live sessions no longer count against max_connections"
		} else {
			s += "; each client keeps its live count and its rate's tokens"
		}
	case is != nil:
		s += "; clients are tracked from the reload on: live sessions do not count against per_client max_connections"
	case was != nil:
		s += "; clients are no longer tracked"
	}
	return s
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// sameHealthCheck compares two checks as written, wherever in the file.
func sameHealthCheck(a, b *config.HealthCheck) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Pos, y.Pos = config.Pos{}, config.Pos{}
	return x == y
}

// routeEffect says what a route's changed settings do: a session reads its
// route once, when it is accepted, and keeps it (proxy.Server.serve), so
// live sessions keep the old timeouts and dial with the old pool; the
// route's admit.Limit carries over, so live sessions count against a new
// max_connections.
func routeEffect(a, b *config.Route, fields []string, n int64) string {
	var kept, parts []string
	for _, f := range fields {
		switch f {
		case "listen":
			parts = append(parts, "its listeners change as listed")
		case "health_check":
			// pool.New keeps verdicts only under the same check; a new
			// verdict starts up.
			parts = append(parts, "the new health_check runs from the reload on, and every member's health verdict starts over, as up")
		case "passive_check":
			// pool.New carries each address's failures and ejection.
			parts = append(parts, "dial failures count under the new passive_check from the reload on; ejections in force stay")
		case "limits":
			parts = append(parts, limitsEffect(a.Limits, b.Limits, n))
		case "max_connections":
			s := fmt.Sprintf("max_connections %s → %s applies to new clients and counts the %d live sessions, which are not ended",
				maxText(a.MaxConnections), maxText(b.MaxConnections), n)
			if m := b.MaxConnections; m > 0 && n >= int64(m) {
				s += fmt.Sprintf("; no new client is admitted until fewer than %d are live", m)
			}
			parts = append(parts, s)
		default:
			kept = append(kept, f)
		}
	}
	if len(kept) > 0 {
		s := fmt.Sprintf("new sessions take the new %s; its %d live sessions keep the old until they end",
			strings.Join(kept, ", "), n)
		parts = append([]string{s}, parts...)
	}
	return strings.Join(parts, "; ")
}

// sendProxyText is a member's send_proxy as a person reads it.
func sendProxyText(s string) string {
	if s == "" {
		return "as the route"
	}
	return s
}

func maxText(m int) string {
	if m == 0 {
		return "none"
	}
	return fmt.Sprint(m)
}

// memberAt is a member of a route by its configured name (pool.Spec.Name,
// the name pool.Status and the access log give it) and which of the
// members of that name it is, for a file that lists one twice.
type memberAt struct {
	name string
	nth  int
}

func memberName(u *config.Upstream) string {
	if u.SRV != "" {
		return u.SRV
	}
	if s, err := pool.ParseAddress(u.Address); err == nil {
		return s.Name()
	}
	return u.Address
}

func members(r *config.Route) ([]memberAt, map[memberAt]*config.Upstream) {
	seen := make(map[string]int)
	keys := make([]memberAt, 0, len(r.Upstreams))
	byKey := make(map[memberAt]*config.Upstream, len(r.Upstreams))
	for i := range r.Upstreams {
		u := &r.Upstreams[i]
		name := memberName(u)
		k := memberAt{name, seen[name]}
		seen[name]++
		keys = append(keys, k)
		byKey[k] = u
	}
	return keys, byKey
}

// planMembers compares a route's members. A reload builds a new pool
// that keeps each address's live count (pool.New copies the health map),
// and live sessions finish on the member they were dialed to, whatever
// the new pool says of it.
func planMembers(cr, nr *config.Route, live Live) []admin.Change {
	curKeys, curBy := members(cr)
	nextKeys, nextBy := members(nr)
	var out []admin.Change
	for _, k := range curKeys {
		if nextBy[k] != nil {
			continue
		}
		n := live.Member(nr.Name, k.name)
		out = append(out, admin.Change{Kind: kindMember, Action: actionRemove, Route: nr.Name, Name: k.name, LiveSessions: n,
			Effect: fmt.Sprintf("takes no new sessions; its %d live sessions continue to their end", n)})
	}
	for _, k := range nextKeys {
		u := nextBy[k]
		old := curBy[k]
		if old == nil {
			effect := "takes new sessions from the reload on"
			switch {
			case u.Drain:
				effect = "joins drained: it takes no new sessions"
			case u.Backup:
				effect = "joins as a backup: it takes new sessions only when no primary member is up"
			}
			out = append(out, admin.Change{Kind: kindMember, Action: actionAdd, Route: nr.Name, Name: k.name, Effect: effect})
			continue
		}
		fields, effect := memberChange(old, u, live.Member(nr.Name, k.name))
		if len(fields) == 0 {
			continue
		}
		out = append(out, admin.Change{Kind: kindMember, Action: actionChange, Route: nr.Name, Name: k.name,
			Fields: fields, LiveSessions: live.Member(nr.Name, k.name), Effect: effect})
	}
	return out
}

func memberChange(a, b *config.Upstream, n int64) ([]string, string) {
	var fields, parts []string
	if a.Weight != b.Weight {
		fields = append(fields, "weight")
		parts = append(parts, fmt.Sprintf("new sessions are shared by weight %d (was %d)", b.Weight, a.Weight))
	}
	if a.Backup != b.Backup {
		fields = append(fields, "backup")
		if b.Backup {
			parts = append(parts, "becomes a backup: new sessions only when no primary member is up")
		} else {
			parts = append(parts, "becomes a primary member")
		}
	}
	if a.Drain != b.Drain {
		fields = append(fields, "drain")
		if b.Drain {
			parts = append(parts, "takes no new sessions")
		} else {
			parts = append(parts, "takes new sessions again")
		}
	}
	if a.SendProxy != b.SendProxy {
		fields = append(fields, "send_proxy")
		parts = append(parts, fmt.Sprintf("new sessions to it send_proxy %s (was %s)", sendProxyText(b.SendProxy), sendProxyText(a.SendProxy)))
	}
	if a.MaxConnections != b.MaxConnections {
		fields = append(fields, "max_connections")
		parts = append(parts, fmt.Sprintf("max_connections %s → %s applies to new sessions and counts its %d live ones",
			maxText(a.MaxConnections), maxText(b.MaxConnections), n))
	}
	if len(fields) == 0 {
		return nil, ""
	}
	parts = append(parts, fmt.Sprintf("its %d live sessions are not ended", n))
	return fields, strings.Join(parts, "; ")
}

// planFilters compares a route's filter lists as compile does: when they
// differ (sameFilters), every entry of the new list takes the first
// unused equal entry of the old one, and keeps its filter (reusable);
// the rest are built new, and the old ones left over are closed. A left
// over and a new entry of one name are a change of its options; a kept
// one out of its old order a move. Each is named "name[i]", i its index in
// the new list (in the old for a removal).
func planFilters(cr, nr *config.Route, live Live) []admin.Change {
	a, b := cr.Filters, nr.Filters
	if sameFilters(a, b) {
		return nil
	}
	n := live.Route(nr.Name)
	// apply stores the new set in the route's InForce and tells the
	// loops (proxy.FiltersChanged): every live session of the route takes
	// it up at once (relay: beginSwitch), and makes new streams of every
	// filter of the set.
	common := fmt.Sprintf("the route's %d live sessions take up the new list at once (a session with bytes in flight, once they have gone out), "+
		"each filter's per-session state starting anew; filters kept stay open, their files too", n)
	from, closed := matchFilters(a, b)
	name := func(fs []config.Filter, i int) string { return fmt.Sprintf("%s[%d]", fs[i].Name, i) }
	var out []admin.Change
	for _, i := range closed {
		out = append(out, admin.Change{Kind: kindFilter, Action: actionRemove, Route: nr.Name, Name: name(a, i),
			LiveSessions: n, Effect: "closed at the reload; " + common})
	}
	for j, m := range from {
		c := admin.Change{Kind: kindFilter, Route: nr.Name, Name: name(b, j), LiveSessions: n}
		switch {
		case m.kept && !m.moved:
			continue
		case m.kept:
			c.Action, c.Fields = actionChange, []string{"index"}
			c.Effect = fmt.Sprintf("moves from index %d to %d, the same filter kept; %s", m.old, j, common)
		case m.old >= 0:
			c.Action, c.Fields = actionChange, optionsDiffer(a[m.old].Options, b[j].Options)
			c.Effect = fmt.Sprintf("built anew with the new options, the old one (index %d) closed at the reload; %s", m.old, common)
		default:
			c.Action = actionAdd
			c.Effect = fmt.Sprintf("built new at index %d; %s", j, common)
		}
		out = append(out, c)
	}
	return out
}

// filterFrom is where an entry of the new filter list comes from.
type filterFrom struct {
	old   int  // index in the old list; -1: none
	kept  bool // the old entry's filter is kept (the same configuration)
	moved bool // kept, out of the order of the other kept ones
}

// matchFilters matches the new list b to the old a as compileFilters
// reuses filters, and returns, for each entry of b, where it comes from,
// and the indexes of a whose filters close (not kept, not changed).
func matchFilters(a, b []config.Filter) (from []filterFrom, closed []int) {
	from = make([]filterFrom, len(b))
	used := make([]bool, len(a))
	for j := range b {
		from[j].old = -1
		for i := range a {
			if !used[i] && sameFilter(&a[i], &b[j]) {
				used[i] = true
				from[j] = filterFrom{old: i, kept: true}
				break
			}
		}
	}
	// The kept entries that stay in order are the longest run whose old
	// indexes increase; the others moved.
	var kept []int // indexes of b
	for j := range from {
		if from[j].kept {
			kept = append(kept, j)
		}
	}
	for _, j := range kept {
		from[j].moved = true
	}
	for _, j := range increasingRun(kept, from) {
		from[j].moved = false
	}
	// A new entry and a left over old one of the same name, in order,
	// are one filter changed.
	for j := range from {
		if from[j].kept {
			continue
		}
		for i := range a {
			if !used[i] && a[i].Name == b[j].Name {
				used[i] = true
				from[j].old = i
				break
			}
		}
	}
	for i := range a {
		if !used[i] {
			closed = append(closed, i)
		}
	}
	return from, closed
}

// increasingRun returns the longest subsequence of js whose from[j].old
// increase (the first such, for a stable answer). Filter lists are short:
// quadratic is fine.
func increasingRun(js []int, from []filterFrom) []int {
	if len(js) == 0 {
		return nil
	}
	length := make([]int, len(js)) // of the longest run ending at k
	prev := make([]int, len(js))
	best := 0
	for k := range js {
		length[k], prev[k] = 1, -1
		for l := range k {
			if from[js[l]].old < from[js[k]].old && length[l]+1 > length[k] {
				length[k], prev[k] = length[l]+1, l
			}
		}
		if length[k] > length[best] {
			best = k
		}
	}
	var run []int
	for k := best; k >= 0; k = prev[k] {
		run = append(run, js[k])
	}
	slices.Reverse(run)
	return run
}

// optionsDiffer names the options given differently, sorted.
func optionsDiffer(a, b map[string]filter.Value) []string {
	var f []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		vb, ok := b[k]
		if va := a[k]; !ok || va.Text != vb.Text || va.IsList != vb.IsList || !slices.Equal(va.List, vb.List) {
			f = append(f, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			f = append(f, k)
		}
	}
	slices.Sort(f)
	return f
}

// planSettings compares the top-level settings.
func planSettings(cur, next *config.Config) []admin.Change {
	var out []admin.Change
	if cur.GracePeriod != next.GracePeriod {
		out = append(out, admin.Change{Kind: kindSetting, Action: actionChange, Name: "grace_period", Fields: []string{"grace_period"},
			Effect: fmt.Sprintf("a stop lets live sessions finish for %s (was %s); no session is touched now",
				next.GracePeriod, cur.GracePeriod)})
	}
	var rf fieldNames
	rf.add("servers", !slices.Equal(cur.Resolver.Servers, next.Resolver.Servers))
	rf.add("interval", cur.Resolver.Interval != next.Resolver.Interval)
	rf.add("timeout", cur.Resolver.Timeout != next.Resolver.Timeout)
	if len(rf) > 0 {
		// compile gives every new pool the new resolver; a pool keeps
		// the addresses its names had until they are looked up again.
		out = append(out, admin.Change{Kind: kindSetting, Action: actionChange, Name: "resolver", Fields: rf,
			Effect: "every route's names are looked up with the new resolver from the reload on, their last addresses serving meanwhile; live sessions keep their upstream connections"})
	}
	var af fieldNames
	af.add("allow", !slices.Equal(cur.Allow, next.Allow))
	af.add("deny", !slices.Equal(cur.Deny, next.Deny))
	if len(af) > 0 {
		// The lists are compiled anew and read by each new client.
		out = append(out, admin.Change{Kind: kindSetting, Action: actionChange, Name: "access", Fields: af,
			Effect: "new clients of every route are checked against the new lists; live sessions are not ended"})
	}
	if !sameLimits(cur.Limits, next.Limits) {
		out = append(out, admin.Change{Kind: kindSetting, Action: actionChange, Name: "limits", Fields: []string{"limits"},
			Effect: limitsEffect(cur.Limits, next.Limits, -1)})
	}
	if c, ok := optionalChange("admin", cur.Admin != nil, next.Admin != nil, adminFields(cur.Admin, next.Admin),
		"the admin server's settings change; no proxied session is touched"); ok {
		out = append(out, c)
	}
	if c, ok := optionalChange("toxiproxy", cur.Toxiproxy != nil, next.Toxiproxy != nil, toxiproxyFields(cur.Toxiproxy, next.Toxiproxy),
		"the Toxiproxy API server's settings change; the file's routes and their sessions are not touched"); ok {
		out = append(out, c)
	}
	return out
}

// optionalChange is the change of a top-level mapping that may be absent.
func optionalChange(name string, was, is bool, fields []string, effect string) (admin.Change, bool) {
	c := admin.Change{Kind: kindSetting, Name: name, Fields: fields, Effect: effect}
	switch {
	case !was && !is:
		return c, false
	case !was:
		c.Action = actionAdd
	case !is:
		c.Action = actionRemove
	case len(fields) == 0:
		return c, false
	default:
		c.Action = actionChange
	}
	return c, true
}

func adminFields(a, b *config.Admin) []string {
	if a == nil || b == nil {
		return nil
	}
	var f fieldNames
	f.add("listen", a.Listen != b.Listen)
	f.add("token_file", a.TokenFile != b.TokenFile)
	return f
}

func toxiproxyFields(a, b *config.Toxiproxy) []string {
	if a == nil || b == nil {
		return nil
	}
	var f fieldNames
	f.add("listen", a.Listen != b.Listen)
	f.add("allow_remote", a.AllowRemote != b.AllowRemote)
	return f
}
