// Package route holds pier's compiled routing table: which route takes a
// client that arrived on a given listen address, and everything the rest
// of the data path needs to serve it.
//
// Routes may share a listen address when each has a Match: they form a
// Group, which chooses a route for each client from its address and the
// TLS ClientHello it sent (SNI, ALPN), most specific match first.
//
//	g := t.Group(key)
//	rt, i := g.Choose(client, hello) // nil: no route (no_route)
//	rec.Edge.Matched = rt.KeyName(i)
//
// UDP routes (Protocol UDP) sit in the same table: the TCP proxy skips
// their listens and the datagram engine (internal/udp) takes them. A tcp
// and a udp listener on one address are different listeners, with
// different keys (ProtocolKey).
//
// A Table is immutable once built. The proxy keeps the table in force
// behind one atomic pointer; a new session loads it once and keeps what it
// found, and a reload swaps in a whole new table, so live sessions finish
// on the routes they began with.
package route

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/tlsconf"
)

// The protocols a route serves (Route.Protocol).
const (
	TCP = "tcp"
	UDP = "udp"
)

// A Route is one compiled route.
type Route struct {
	Name string
	// Protocol is TCP or UDP; "" means TCP. A UDP route has no Match,
	// Proxy, PeekTimeout, SendProxy, TLS, HalfCloseTimeout or Limit (its
	// cap is MaxFlows); config refuses them.
	Protocol string
	// Responses, on a UDP route, ends a flow as soon as this many
	// datagrams from its member were delivered to the client (one for a
	// DNS query). Zero: no such end; only IdleTimeout ends a flow.
	Responses int
	// MaxFlows, on a UDP route, caps its live flows; a datagram that
	// would open one more is dropped (reason limit). Zero: no cap (config
	// always sets one).
	MaxFlows int
	// Listen holds the addresses clients arrive on, as configured.
	Listen []string
	Pool   *pool.Pool
	// Limit caps the route's live sessions; it carries over reloads.
	Limit *admit.Limit
	// Filters is the route's filter set in force, which its live sessions
	// follow; it carries over reloads. Nil means no filters, ever.
	Filters *chain.InForce
	// Stats counts the route's sessions, one shard per relay loop (made
	// with stats.NewRoute(name, proxy.Server.Loops())); it carries over
	// reloads, like Limit. Nil means not counted.
	Stats *stats.Route
	// Timeouts; zero means no bound. ConnectTimeout bounds one dial,
	// ConnectBudget all of a session's dials together (relay.Params'
	// TryTimeout and ConnectBudget).
	ConnectTimeout   time.Duration
	ConnectBudget    time.Duration
	IdleTimeout      time.Duration
	HalfCloseTimeout time.Duration

	// Match, if set, is what a client must show to take this route on a
	// listen address it shares with other routes. Nil: the route owns
	// its addresses alone.
	Match *Match
	// Proxy is the PROXY protocol accepted from clients; nil: none (a
	// header is plain data). Routes of one group carry equal settings.
	Proxy *ProxyIn
	// PeekTimeout bounds waiting for a ClientHello on a shared address
	// (since accept); routes of one group carry the same. Zero: 5s.
	PeekTimeout time.Duration
	// ACL is the route's allow/deny list, checked after the top level's.
	// Nil: everyone.
	ACL *admit.ACL
	// Rate is the route's accept rate; nil: no bound. It carries over
	// reloads.
	Rate *admit.Rate
	// Clients is the route's per-client table; nil: no per-client
	// limits. It carries over reloads.
	Clients *admit.Clients
	// SendProxy is the PROXY version written to upstreams (peek.V1,
	// peek.V2); 0: none. A member may override it (pool.Spec.SendProxy).
	SendProxy uint8
	// TLS, if set, terminates TLS from the route's clients with its
	// configuration (TLS.Config(), whose certificates follow their
	// files). Nil: the client's bytes pass as they come. On a shared
	// address the route is chosen first (by the ClientHello peeked), so
	// routes of one group may differ here.
	TLS *tlsconf.Server
	// HandshakeTimeout bounds each TLS handshake of the route's sessions,
	// the client's and the upstream's (relay.Params.HandshakeTimeout).
	// Zero: no bound of its own.
	HandshakeTimeout time.Duration
	// Matches counts the route's sessions by the match key that chose
	// them (index i of Choose and KeyName), one shard per loop; made
	// with stats.NewMatches(r.Match.KeyNames(), loops). Nil: not counted.
	Matches *stats.Matches

	keys []string // Match.KeyNames(), for KeyName without allocating
	m    *matcher // Match compiled for Choose; nil: no criterion
}

// KeyName names the match key i that chose the route (as Group.Choose
// returned it): "sni:*.example.com", "alpn:h2", "source:10.0.0.0/8" or
// "default". "" for i < 0 (the route has no Match).
func (r *Route) KeyName(i int) string {
	if i < 0 || i >= len(r.keys) {
		return ""
	}
	return r.keys[i]
}

// Match is what a client must show to take a route on a shared address.
// Within one criterion any entry matches; a criterion left empty matches
// everyone.
type Match struct {
	// SNI: server names, lowercase, exact ("db.example.com") or wildcard
	// ("*.example.com": one or more labels before example.com, never
	// example.com itself).
	SNI []string
	// ALPN: protocols the client offers (any of them).
	ALPN []string
	// Source: the client's address (after a PROXY header) is in one.
	Source []netip.Prefix
	// Default: the route takes every client no other route matches.
	Default bool
}

// KeyNames lists the match's keys in the order Choose indexes them: each
// SNI pattern ("sni:…"), each ALPN protocol ("alpn:…"), each source
// prefix ("source:…"), then "default" if set. Nil m: none.
func (m *Match) KeyNames() []string {
	if m == nil {
		return nil
	}
	var keys []string
	for _, s := range m.SNI {
		keys = append(keys, "sni:"+s)
	}
	for _, a := range m.ALPN {
		keys = append(keys, "alpn:"+a)
	}
	for _, p := range m.Source {
		keys = append(keys, "source:"+p.String())
	}
	if m.Default {
		keys = append(keys, "default")
	}
	return keys
}

// ProxyIn is the PROXY protocol a listener accepts from its clients.
type ProxyIn struct {
	// Accept is the versions believed: peek.V1, peek.V2 or peek.Any.
	Accept uint8
	// Trusted is the socket addresses a header is believed from; from
	// any other a PROXY signature ends the session (proxy_untrusted).
	Trusted *admit.ACL
	// Required: a trusted client without a header is refused.
	Required bool
	// Timeout bounds waiting for the header, since accept. Zero: 3s.
	Timeout time.Duration
}

// A Group is the routes on one listen key: one route, as always, or
// several that each carry a Match.
type Group struct {
	Key, Addr string
	Routes    []*Route
	// Proxy is the PROXY protocol accepted on the address (the routes'
	// common setting); nil: none.
	Proxy *ProxyIn
	// Protocol is the routes' protocol: TCP ("" read as TCP) or UDP.
	Protocol string
	// PeekTimeout bounds waiting for a ClientHello (the routes' common
	// setting).
	PeekTimeout time.Duration
	// NeedsHello: some route matches on SNI or ALPN, so a client's
	// ClientHello must be peeked before a route is chosen.
	NeedsHello bool

	def *Route // the route with Match.Default, or nil
	// Choose's tiers, in configuration order: the routes naming a server
	// exactly, by name; those with a wildcard, by its suffix
	// (".example.com"); those with criteria but no SNI.
	exact, wild map[string][]*Route
	noSNI       []*Route
}

// index files r under Choose's tiers.
func (g *Group) index(r *Route) {
	if r.m == nil {
		return
	}
	if len(r.m.sni) == 0 {
		g.noSNI = append(g.noSNI, r)
		return
	}
	if g.exact == nil {
		g.exact, g.wild = make(map[string][]*Route), make(map[string][]*Route)
	}
	for _, p := range r.m.sni {
		tier := g.exact
		if p.wildcard {
			tier = g.wild
		}
		if !slices.Contains(tier[p.name], r) {
			tier[p.name] = append(tier[p.name], r)
		}
	}
}

// Choose returns the route for a client at address client that sent the
// ClientHello h (nil: none was peeked, or it was not TLS), and the index
// of the route's match key that chose it (Route.KeyName; -1 when the
// route has no Match). Nil: no route matches and none is the default.
//
// A route matches when each criterion it sets holds (any entry of it).
// Among the routes that match, the most specific wins, criterion by
// criterion in this order: SNI exact, then the longest wildcard, then no
// SNI criterion; then ALPN, by the client's order of preference (the
// route listing the client's first offered protocol wins), then no ALPN
// criterion; then the longest source prefix, then no source criterion.
// Config check refuses two routes that could tie; if some still do, the
// first in configuration order wins. When no route matches, the default
// route takes the client. Choose allocates nothing: a pass over the
// group's routes, for tens of routes well under a microsecond.
func (g *Group) Choose(client netip.Addr, h *peek.Hello) (*Route, int) {
	if len(g.Routes) == 1 && g.Routes[0].Match == nil {
		return g.Routes[0], -1
	}
	client = client.Unmap().WithZone("")
	// The SNI rank dominates, so the routes are tried by tiers: those
	// naming the server exactly, then those whose wildcard has the
	// longest suffix of it, then those with no SNI criterion; the first
	// tier with a match decides.
	if h != nil && h.ServerName != "" {
		name := h.ServerName
		if r, key := best(g.exact[name], client, h); r != nil {
			return r, key
		}
		for i := 1; i < len(name); i++ {
			if name[i] != '.' {
				continue
			}
			if r, key := best(g.wild[name[i:]], client, h); r != nil {
				return r, key
			}
		}
	}
	if r, key := best(g.noSNI, client, h); r != nil {
		return r, key
	}
	if g.def != nil {
		return g.def, len(g.def.keys) - 1
	}
	return nil, -1
}

// best returns the most specific of routes that matches, the first of
// equals, or nil.
func best(routes []*Route, client netip.Addr, h *peek.Hello) (*Route, int) {
	var (
		top     *Route
		topKey  = -1
		topRank rank
	)
	for _, r := range routes {
		rk, key, ok := r.m.rank(client, h)
		if ok && (top == nil || topRank.less(rk)) {
			top, topKey, topRank = r, key, rk
		}
	}
	return top, topKey
}

// rank is how specifically a route matched a client, criterion by
// criterion; 0: the route does not set the criterion.
type rank struct {
	sni  int // exactSNI for an exact name, else the wildcard's suffix length
	alpn int // len(client's list) - the index of the protocol that matched
	src  int // the prefix's length + 1
}

// exactSNI ranks an exact server name above every wildcard.
const exactSNI = 1 << 30

func (a rank) less(b rank) bool {
	if a.sni != b.sni {
		return a.sni < b.sni
	}
	if a.alpn != b.alpn {
		return a.alpn < b.alpn
	}
	return a.src < b.src
}

// matcher is a Match compiled for Choose: names lowercased without a
// trailing dot, wildcards as their suffix, prefixes masked and IPv4
// prefixes in the IPv4 form.
type matcher struct {
	sni    []sniPattern
	alpn   []string
	source []netip.Prefix
	// alpn0, source0: where the ALPN and source keys start in KeyNames.
	alpn0, source0 int
}

type sniPattern struct {
	name     string // exact name, or the suffix ".example.com" of "*.example.com"
	wildcard bool
}

// newMatcher compiles m; nil when m sets no criterion (a default-only
// route, taken only when no other route matches).
func newMatcher(m *Match) *matcher {
	if m == nil || len(m.SNI)+len(m.ALPN)+len(m.Source) == 0 {
		return nil
	}
	c := &matcher{alpn: m.ALPN, alpn0: len(m.SNI), source0: len(m.SNI) + len(m.ALPN)}
	for _, s := range m.SNI {
		s = strings.TrimSuffix(strings.ToLower(s), ".")
		if rest, ok := strings.CutPrefix(s, "*."); ok {
			c.sni = append(c.sni, sniPattern{name: "." + rest, wildcard: true})
		} else {
			c.sni = append(c.sni, sniPattern{name: s})
		}
	}
	for _, p := range m.Source {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		c.source = append(c.source, p.Masked())
	}
	return c
}

// rank tells whether the client matches every criterion set, how
// specifically, and the index (in KeyNames) of the key that decided it:
// the SNI pattern if SNI is set, else the ALPN protocol, else the prefix.
func (c *matcher) rank(client netip.Addr, h *peek.Hello) (rk rank, key int, ok bool) {
	key = -1
	if len(c.sni) > 0 {
		if h == nil || h.ServerName == "" {
			return rk, -1, false
		}
		name := h.ServerName
		for i, p := range c.sni {
			switch {
			case !p.wildcard && name == p.name:
				rk.sni, key = exactSNI, i
			case p.wildcard && len(name) > len(p.name) && strings.HasSuffix(name, p.name) && len(p.name) > rk.sni:
				rk.sni, key = len(p.name), i
			}
			if rk.sni == exactSNI {
				break
			}
		}
		if rk.sni == 0 {
			return rk, -1, false
		}
	}
	if len(c.alpn) > 0 {
		if h == nil {
			return rk, -1, false
		}
	offered:
		for i, a := range h.ALPN {
			for j, p := range c.alpn {
				if a == p {
					rk.alpn = len(h.ALPN) - i
					if key < 0 {
						key = c.alpn0 + j
					}
					break offered
				}
			}
		}
		if rk.alpn == 0 {
			return rk, -1, false
		}
	}
	if len(c.source) > 0 {
		j := -1
		for i, p := range c.source {
			if p.Bits() >= rk.src && p.Contains(client) {
				rk.src, j = p.Bits()+1, i
			}
		}
		if j < 0 {
			return rk, -1, false
		}
		if key < 0 {
			key = c.source0 + j
		}
	}
	return rk, key, true
}

// Global is what applies to every client before any route: the top
// level's allow/deny list, accept rate and per-client table. Nil fields
// apply nothing.
type Global struct {
	ACL     *admit.ACL
	Rate    *admit.Rate
	Clients *admit.Clients
}

// A Listen is one listening address and the key the table knows it by.
type Listen struct {
	Key  string // stable across reloads for the same address and protocol
	Addr string // host:port to listen on
	// Protocol is TCP or UDP (never ""): what to open on Addr.
	Protocol string
}

// IsUDP reports whether the route serves datagrams.
func (r *Route) IsUDP() bool { return r.Protocol == UDP }

// A Table maps listen keys to groups of routes.
type Table struct {
	routes  []*Route
	listens []Listen
	groups  map[string]*Group
	global  Global
}

// NewTable builds a table of routes under the top level's g. Routes of
// one protocol share a listen address only when every one of them has a
// Match, and a UDP route has none (config's check refuses the rest;
// NewTable refuses them again, as a defence). A TCP and a UDP route may
// listen on one address: they are different listeners.
func NewTable(routes []*Route, g Global) (*Table, error) {
	t := &Table{routes: routes, groups: make(map[string]*Group), global: g}
	for _, r := range routes {
		proto := r.Protocol
		switch proto {
		case "":
			proto = TCP
		case TCP:
		case UDP:
			if r.Match != nil {
				return nil, fmt.Errorf("route %s: a udp route has no match", r.Name)
			}
		default:
			return nil, fmt.Errorf("route %s: unknown protocol %q (tcp or udp)", r.Name, r.Protocol)
		}
		r.keys, r.m = r.Match.KeyNames(), newMatcher(r.Match)
		for _, addr := range r.Listen {
			key := ProtocolKey(proto, r.Name, r.Match != nil, addr)
			grp, ok := t.groups[key]
			if !ok {
				grp = &Group{Key: key, Addr: addr, Proxy: r.Proxy, PeekTimeout: r.PeekTimeout, Protocol: proto}
				t.groups[key] = grp
				t.listens = append(t.listens, Listen{Key: key, Addr: addr, Protocol: proto})
			} else if other := grp.Routes[0]; r.Match == nil || other.Match == nil {
				return nil, fmt.Errorf("route %s: listen %s is taken by route %s", r.Name, addr, other.Name)
			}
			grp.Routes = append(grp.Routes, r)
			grp.index(r)
			if r.Match != nil && r.Match.Default {
				if grp.def != nil {
					return nil, fmt.Errorf("route %s: listen %s already has a default route, %s", r.Name, addr, grp.def.Name)
				}
				grp.def = r
			}
			if m := r.Match; m != nil && (len(m.SNI) > 0 || len(m.ALPN) > 0) {
				grp.NeedsHello = true
			}
		}
	}
	return t, nil
}

// Key names a listen address across reloads. An address is its own key,
// so a listener moves between routes without closing; an address on port
// 0 (any free port, as tests use) gets a fresh port per route, so it is
// keyed by route too ("route|addr"), unless the route shares it (shared:
// it has a Match), when every sharing route writes it the same and the
// key is "*|addr": one listener for the group.
func Key(route string, shared bool, addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		if shared {
			return "*|" + addr
		}
		return route + "|" + addr
	}
	return addr
}

// ProtocolKey is Key for a listener of protocol (TCP, UDP; "" is TCP):
// a TCP key is Key's, unchanged, so TCP listeners keep their keys across
// the upgrade; a UDP key is Key's with "udp:" before it, so a TCP and a
// UDP listener on one address never share a key.
func ProtocolKey(protocol, route string, shared bool, addr string) string {
	if protocol == UDP {
		return "udp:" + Key(route, shared, addr)
	}
	return Key(route, shared, addr)
}

// Group returns the routes on a listen key, or nil.
func (t *Table) Group(key string) *Group { return t.groups[key] }

// Global returns what applies to every client before any route.
func (t *Table) Global() Global { return t.global }

// Lookup returns the (first) route on a listen key, or nil: the one that
// names the listener in log lines.
func (t *Table) Lookup(key string) *Route {
	if g := t.groups[key]; g != nil {
		return g.Routes[0]
	}
	return nil
}

// Routes returns the table's routes in configuration order.
func (t *Table) Routes() []*Route { return t.routes }

// Listens returns every listen address of the table.
func (t *Table) Listens() []Listen { return t.listens }

// Route returns the route named name, or nil.
func (t *Table) Route(name string) *Route {
	for _, r := range t.routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}
