package config

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"
)

// The parsers of the edge: what a client must show to take a route on a
// shared address (match), PROXY protocol headers in and out, address
// lists and limits. The rules across routes that share an address are
// in checkShared.

var (
	proxyAccepts      = []string{"v1", "v2", "any"}
	routeSendProxy    = []string{"v1", "v2"}
	upstreamSendProxy = []string{"v1", "v2", "none"}
	checkSendProxy    = []string{"auto", "none", "v1", "v2"}
)

const (
	// maxRate bounds a rate, per second: a billion new connections a
	// second is no limit at all, and the bound keeps burst's default,
	// ceil(rate), an int everywhere.
	maxRate = 1e9
	// maxBurst bounds a bucket's size for the same reason.
	maxBurst = 1_000_000_000
	// maxALPN is the longest protocol name ALPN carries (RFC 7301, 3.1).
	maxALPN = 255
)

// prefixes parses a list of CIDR prefixes (a bare address is its /32 or
// /128); one alone stands for a list of one. Each is canonical: host bits
// set, an IPv4-mapped IPv6 prefix, a zone or a prefix listed twice is
// refused, so a list says exactly what it matches.
func (p *parser) prefixes(key string, n *yaml.Node) []netip.Prefix {
	return p.prefixList(key, n, "")
}

// trusted parses proxy_protocol's trusted list, which may not be empty.
func (p *parser) trusted(key string, n *yaml.Node) []netip.Prefix {
	return p.prefixList(key, n, "need at least one prefix: a header is believed only from these addresses")
}

func (p *parser) prefixList(key string, n *yaml.Node, empty string) []netip.Prefix {
	return uniqueList(p, key, n, empty, func(s string) (netip.Prefix, string) {
		pfx, err := parsePrefix(s)
		if err != nil {
			return pfx, fmt.Sprintf("%s %v", quote(s), err)
		}
		return pfx, ""
	})
}

// uniqueList parses a list (or one value alone) of key's items with
// parse, which answers an item's value or what is wrong with it (the
// message after key), and refuses an item given twice, naming where it
// was first.
func uniqueList[T comparable](p *parser, key string, n *yaml.Node, empty string, parse func(string) (T, string)) []T {
	var out []T
	first := make(map[T]int) // the value → the line it was first given on
	for _, item := range p.oneOrList(key, n, empty) {
		if p.stop {
			break
		}
		s, ok := p.scalar(key, item)
		if !ok {
			continue
		}
		v, bad := parse(s.Value)
		if bad != "" {
			p.errf(s, "%s: %s", key, bad)
			continue
		}
		if line, dup := first[v]; dup {
			p.errf(s, "%s: %s is listed twice%s", key, quote(s.Value), p.firstAt(line))
			continue
		}
		first[v] = s.Line
		out = append(out, v)
	}
	return out
}

// firstAt is " (first at line N)" in a file, "" where lines are places.
func (p *parser) firstAt(line int) string {
	if p.places != nil {
		return ""
	}
	return fmt.Sprintf(" (first at line %d)", line)
}

// parsePrefix parses a CIDR prefix or a bare IP address. Its error reads
// after the value: `"10.1.2.3/8" has host bits set: ...`.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("has a zone: an address list holds addresses without one")
	}
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("is not a CIDR prefix (like 10.0.0.0/8, 2001:db8::/32) or an IP address")
		}
	} else {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("is not an IP address or a CIDR prefix (like 10.0.0.0/8, 2001:db8::/32)")
		}
		pfx = netip.PrefixFrom(ip, ip.BitLen())
	}
	if ip := pfx.Addr(); ip.Is4In6() {
		if pfx.Bits() >= 96 {
			return netip.Prefix{}, fmt.Errorf("is an IPv4-mapped IPv6 address: write it as IPv4, %s", netip.PrefixFrom(ip.Unmap(), pfx.Bits()-96).Masked())
		}
		return netip.Prefix{}, fmt.Errorf("is an IPv4-mapped IPv6 address: write it as IPv4")
	}
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, fmt.Errorf("has host bits set: did you mean %s", m)
	}
	return pfx, nil
}

// serverNames parses match.sni: host names, or wildcards whose first
// label is *, each lowercased and without its final dot.
func (p *parser) serverNames(key string, n *yaml.Node) []string {
	return uniqueList(p, key, n, "", func(s string) (string, string) {
		name, err := serverName(s)
		if err != nil {
			return "", fmt.Sprintf("%s %v", quote(s), err)
		}
		return name, ""
	})
}

// serverName checks an SNI pattern and returns it as a ClientHello's
// server name is compared: lowercase, no final dot. A wildcard is "*."
// and a name: it matches one or more labels before that name, never the
// name itself (as Envoy and nginx do).
func serverName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	switch {
	case name == "":
		return "", fmt.Errorf("is empty: want a server name, like db.example.com")
	case name == "*":
		return "", fmt.Errorf("would match every name: use default: true for the route that takes the rest")
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return "", fmt.Errorf("is not ASCII: write the name's A-label form (xn--...), as clients send it")
		}
	}
	rest, wild := strings.CutPrefix(name, "*.")
	if strings.Contains(rest, "*") {
		return "", fmt.Errorf("has a * that is not the whole first label: a wildcard is written like *.example.com")
	}
	if _, err := netip.ParseAddr(rest); err == nil && !wild {
		return "", fmt.Errorf("is an IP address: clients send no server name for an address")
	}
	if len(name) > 253 || !ldhName(rest) {
		return "", fmt.Errorf("is not a host name: labels of letters, digits and '-' (not first or last), at most 63 characters each, 253 in all")
	}
	return name, nil
}

// ldhName reports whether s is dot-separated LDH labels (RFC 5890, 2.3.1).
func ldhName(s string) bool {
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// protocols parses match.alpn: protocol names as a ClientHello carries
// them, 1 to 255 bytes, compared exactly ("h2", "postgresql").
func (p *parser) protocols(key string, n *yaml.Node) []string {
	return uniqueList(p, key, n, "", func(s string) (string, string) {
		if s == "" || len(s) > maxALPN {
			return "", fmt.Sprintf("%s is %d bytes: a protocol name is 1 to %d", quote(s), len(s), maxALPN)
		}
		return s, ""
	})
}

// match parses a route's match mapping, which must say something.
func (p *parser) match(key string, n *yaml.Node) *Match {
	m := &Match{Pos: pos(n)}
	before := len(p.errs)
	if decodeMap(p, n, key, matchFields, m) == nil {
		return nil
	}
	if !m.criteria() && !m.Default && len(p.errs) == before {
		p.errf(p.resolve(n), "%s: matches nothing: give sni, alpn or source, or default: true", key)
	}
	return m
}

// follow is the node n stands for, through an alias, without counting a
// visit: for looking again at nodes the walk has been through.
func follow(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// valueOf is the value node of key in the mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	n = follow(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := follow(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// proxyProtocol parses a route's proxy_protocol mapping.
func (p *parser) proxyProtocol(key string, n *yaml.Node) *ProxyProtocol {
	pp := &ProxyProtocol{Pos: pos(n)}
	if decodeMap(p, n, key, proxyProtocolFields, pp) == nil {
		return nil
	}
	return pp
}

// edgeTimeout parses peek_timeout and proxy_protocol.timeout: more than
// 0, at most MaxEdgeTimeout. A client's first bytes arrive within a
// round trip or two; a longer wait only holds a silent client's socket.
func (p *parser) edgeTimeout(key string, n *yaml.Node) time.Duration {
	d := p.duration(key, n)
	if d > MaxEdgeTimeout {
		p.errf(p.resolve(n), "%s: %s is more than %s, the longest a client's first bytes are waited for", key, quote(p.resolve(n).Value), formatDuration(MaxEdgeTimeout))
		return 0
	}
	return d
}

// limits parses a limits mapping, the top level's or a route's.
func (p *parser) limits(key string, n *yaml.Node) *Limits {
	l := &Limits{Pos: pos(n)}
	before := len(p.errs)
	vals := decodeMap(p, n, key, limitsFields, l)
	if vals == nil {
		return nil
	}
	if len(vals) == 0 && len(p.errs) == before {
		p.errf(p.resolve(n), "%s: limits nothing: give accept_rate or per_client", key)
	}
	return l
}

// acceptRate parses an accept_rate mapping: {rate: 5000/s, burst: 10000}.
func (p *parser) acceptRate(key string, n *yaml.Node) *Rate {
	r := &Rate{}
	vals := decodeMap(p, n, key, rateFields, r)
	if vals == nil {
		return nil
	}
	r.defaultBurst()
	return r
}

// perClient parses a per_client mapping, whose rate and burst are
// written beside its other keys.
func (p *parser) perClient(key string, n *yaml.Node) *PerClient {
	c := &PerClient{Pos: pos(n)}
	before := len(p.errs)
	vals := decodeMap(p, n, key, perClientFields, c)
	if vals == nil {
		return nil
	}
	switch {
	case vals["burst"] != nil && vals["rate"] == nil:
		p.errf(p.resolve(vals["burst"]), "%s: burst needs a rate beside it (like rate: 20/s, burst: 40)", key)
	case c.Rate != nil:
		c.Rate.defaultBurst()
	}
	if c.MaxConnections == 0 && c.Rate == nil && len(p.errs) == before {
		at := either(vals["max_connections"], p.resolve(n))
		p.errf(p.resolve(at), "%s: limits nothing: give max_connections (more than 0), rate, or both", key)
	}
	return c
}

// defaultBurst sets an absent burst to one second's worth, at least 1.
func (r *Rate) defaultBurst() {
	if r.Burst == 0 && r.PerSecond > 0 {
		r.Burst = max(1, int(math.Ceil(r.PerSecond)))
	}
}

// perClientRate and perClientBurst are per_client's flat rate and burst,
// which fill PerClient.Rate.
func perClientRate(p *parser, key string, n *yaml.Node, c *PerClient) {
	if v := p.rate(key, n); v > 0 {
		c.ensureRate().PerSecond = v
	}
}

func perClientBurst(p *parser, key string, n *yaml.Node, c *PerClient) {
	if b := intRange(1, maxBurst)(p, key, n); b > 0 {
		c.ensureRate().Burst = b
	}
}

func (c *PerClient) ensureRate() *Rate {
	if c.Rate == nil {
		c.Rate = &Rate{}
	}
	return c.Rate
}

// rateText is a rate as a file writes it: a number and a unit.
var rateText = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)/(s|m|h)$`)

var rateUnits = map[string]float64{"s": 1, "m": 60, "h": 3600}

// rate parses "20/s", "1200/m" or "10/h" to events per second, more than 0.
func (p *parser) rate(key string, n *yaml.Node) float64 {
	s, ok := p.scalar(key, n)
	if !ok {
		return 0
	}
	m := rateText.FindStringSubmatch(s.Value)
	if m == nil {
		if _, err := strconv.ParseFloat(s.Value, 64); err == nil {
			p.errf(s, "%s: %s has no unit: write it like %s/s, %s/m or %s/h", key, quote(s.Value), s.Value, s.Value, s.Value)
		} else {
			p.errf(s, "%s: %s is not a rate (like 20/s, 1200/m, 10/h)", key, quote(s.Value))
		}
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	perSecond := v / rateUnits[m[2]]
	switch {
	case err != nil || perSecond > maxRate:
		p.errf(s, "%s: %s is more than %d/s", key, quote(s.Value), int(maxRate))
	case perSecond == 0:
		p.errf(s, "%s: %s must be more than 0", key, quote(s.Value))
	default:
		return perSecond
	}
	return 0
}

// formatRate is a rate as a file would write it: in the first of
// seconds, minutes and hours that shows it as a whole number (0.5/s is
// 30/m), and such that parsing it gives perSecond back exactly.
func formatRate(perSecond float64) string {
	for _, u := range []string{"s", "m", "h"} {
		k := rateUnits[u]
		if x := perSecond * k; x == math.Trunc(x) && x/k == perSecond && x < 1e15 {
			return strconv.FormatFloat(x, 'f', -1, 64) + "/" + u
		}
	}
	return strconv.FormatFloat(perSecond, 'f', -1, 64) + "/s"
}

// checkTracked checks a route's per-client table against the route's
// max_connections: an entry with a live session is never dropped, so a
// table that holds more clients than the route has sessions always has
// one to drop.
//
// On a udp route the table must hold max_flows clients: a full table of
// clients with live flows then means a full route, which takes no new
// client anyway.
func (p *parser) checkTracked(r *Route, vals map[string]*yaml.Node) {
	if r.Protocol == UDP && r.Limits != nil && r.Limits.PerClient != nil && r.MaxFlows > 0 {
		c := r.Limits.PerClient
		if c.MaxTracked == 0 || c.MaxTracked >= r.MaxFlows {
			return
		}
		pcNode := valueOf(vals["limits"], "per_client")
		if at := either(valueOf(pcNode, "max_tracked"), either(vals["max_flows"], pcNode)); at != nil {
			p.errf(follow(at), "max_tracked: %d is less than the route's max_flows, %d: clients with live flows are never dropped from the table, so it must hold as many clients as the route may have flows", c.MaxTracked, r.MaxFlows)
		}
		return
	}
	if r.Limits == nil || r.Limits.PerClient == nil || r.MaxConnections == 0 {
		return
	}
	c := r.Limits.PerClient
	if c.MaxTracked == 0 || c.MaxTracked > r.MaxConnections {
		return
	}
	pcNode := valueOf(vals["limits"], "per_client")
	at := either(valueOf(pcNode, "max_tracked"), pcNode)
	if at == nil {
		return
	}
	p.errf(follow(at), "max_tracked: %d is not more than the route's max_connections, %d: clients with live sessions are never dropped from the table, so it must hold more of them than the route has sessions", c.MaxTracked, r.MaxConnections)
}

// A sharer is a route with a match on a listen address it shares.
type sharer struct {
	route int        // index in the route list
	out   int        // index among the routes decoded
	item  *yaml.Node // the listen item
}

// checkShared checks the routes that share each listen address: at most
// one default, no two that a client could fit equally, and one PROXY
// and peek setting, as the header and the ClientHello are read before the
// route is known. Each fault between two routes is reported once, at the
// later one.
func (p *parser) checkShared(routes []Route, vals []map[string]*yaml.Node) {
	type pair struct {
		a, b int
		what string
	}
	told := make(map[pair]bool)
	tell := func(a, b int, what string) bool {
		k := pair{a, b, what}
		if told[k] {
			return false
		}
		told[k] = true
		return true
	}
	addrs := make([]string, 0, len(p.shared))
	for a := range p.shared {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for _, addr := range addrs {
		group := p.shared[addr]
		if len(group) < 2 {
			continue
		}
		first := group[0]
		fr, fv := &routes[first.out], vals[first.out]
		keys := make(map[matchKey]int) // → the index in group of the route that named it first
		var def *sharer
		for gi := range group {
			s := &group[gi]
			r, v := &routes[s.out], vals[s.out]
			if r.Match != nil && r.Match.Default {
				if def == nil {
					def = s
				} else if tell(def.out, s.out, "default") {
					dr := &routes[def.out]
					at := follow(valueOf(v["match"], "default"))
					p.errf(at, "default: %s is already the default for listen %s%s", p.routeName(def.route, dr.Name), quote(addr),
						p.lineOf(valueOf(vals[def.out]["match"], "default")))
				}
			}
			if !p.claimKeys(keys, gi, r.Match, func(k matchKey, owner int) {
				e := group[owner]
				if tell(e.out, s.out, "tie") {
					er := &routes[e.out]
					p.errf(follow(v["match"]), "match: %s is also %s's%s on listen %s: the client could go to either",
						k, p.routeName(e.route, er.Name), p.lineOf(vals[e.out]["match"]), quote(addr))
				}
			}) {
				p.errf(follow(v["match"]), "match: sni, alpn and source make more combinations than pier checks (%d in all shared addresses): split the route", maxMatchKeys)
				return
			}
			if gi == 0 {
				continue
			}
			if !sameProxy(fr.ProxyProtocol, r.ProxyProtocol) && tell(first.out, s.out, "proxy") {
				at, key := v["proxy_protocol"], "proxy_protocol"
				if at == nil {
					at, key = s.item, "listen"
				}
				p.errf(follow(at), "%s: proxy_protocol differs from %s's%s, which shares listen %s: the header is read before the route is known, so routes on one address must agree",
					key, p.routeName(first.route, fr.Name), p.lineOf(either(fv["proxy_protocol"], first.item)), quote(addr))
			}
			if fr.PeekTimeout != r.PeekTimeout && tell(first.out, s.out, "peek") {
				at, key := v["peek_timeout"], "peek_timeout"
				if at == nil {
					at, key = s.item, "listen"
				}
				p.errf(follow(at), "%s: peek_timeout %s differs from %s's %s%s, which shares listen %s: the ClientHello is waited for before the route is known, so routes on one address must agree",
					key, formatDuration(r.PeekTimeout), p.routeName(first.route, fr.Name), formatDuration(fr.PeekTimeout),
					p.lineOf(either(fv["peek_timeout"], first.item)), quote(addr))
			}
		}
	}
}

// routeName names route i for a message: by its name, or its index.
func (p *parser) routeName(i int, name string) string {
	if name != "" {
		return "route " + quote(name)
	}
	return fmt.Sprintf("routes[%d]", i)
}

// lineOf is " (line N)" of the node n in a file; "" where lines are
// places or n is nil.
func (p *parser) lineOf(n *yaml.Node) string {
	if p.places != nil || n == nil {
		return ""
	}
	return fmt.Sprintf(" (line %d)", n.Line)
}

// A matchKey is one combination a match names: a server name, a
// protocol and a source prefix; "" and the zero Prefix stand for a
// criterion left open. Two routes that name one key tie: a client that
// fits it fits both equally.
type matchKey struct {
	sni, alpn string
	source    netip.Prefix
}

func (k matchKey) String() string {
	q := func(s string) string {
		if s == "" {
			return "ANY"
		}
		return quote(s)
	}
	src := "ANY"
	if k.source.IsValid() {
		src = quote(k.source.String())
	}
	return "sni " + q(k.sni) + " alpn " + q(k.alpn) + " source " + src
}

// maxMatchKeys bounds the combinations checkShared looks at, over every
// shared address: each costs a map entry, and a route's lists multiply
// (100 names × 3 protocols × 10 sources is 3000).
const maxMatchKeys = 1 << 20

// claimKeys records the keys of m, route gi of its group, in keys,
// calling tied with each key an earlier route named first. A match that
// is only the default names none. It reports false, having recorded
// nothing, if the keys would pass maxMatchKeys.
func (p *parser) claimKeys(keys map[matchKey]int, gi int, m *Match, tied func(matchKey, int)) bool {
	if m == nil || !m.criteria() {
		return true
	}
	n := max(1, len(m.SNI)) * max(1, len(m.ALPN)) * max(1, len(m.Source))
	if p.matchKeys+n > maxMatchKeys {
		return false
	}
	p.matchKeys += n
	snis, alpns, sources := orOpen(m.SNI), orOpen(m.ALPN), orOpen(m.Source)
	for _, sni := range snis {
		for _, alpn := range alpns {
			for _, src := range sources {
				k := matchKey{sni, alpn, src}
				if owner, ok := keys[k]; ok && owner != gi {
					tied(k, owner)
				} else if !ok {
					keys[k] = gi
				}
			}
		}
	}
	return true
}

// criteria reports whether the match names any sni, alpn or source: a
// route that is only the default competes with no other.
func (m *Match) criteria() bool {
	return len(m.SNI)+len(m.ALPN)+len(m.Source) > 0
}

// orOpen is the list, or for an empty one the zero value that stands
// for a criterion left open.
func orOpen[T any](list []T) []T {
	if len(list) == 0 {
		return make([]T, 1)
	}
	return list
}

// sameProxy reports whether two routes accept PROXY headers alike.
func sameProxy(a, b *ProxyProtocol) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Accept != b.Accept || a.Required != b.Required || a.Timeout != b.Timeout || len(a.Trusted) != len(b.Trusted) {
		return false
	}
	// Each list has no duplicates, so equal sizes and a in b is a == b.
	in := make(map[netip.Prefix]bool, len(b.Trusted))
	for _, t := range b.Trusted {
		in[t] = true
	}
	for _, t := range a.Trusted {
		if !in[t] {
			return false
		}
	}
	return true
}
