package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"

	"github.com/pierproxy/pier/filter"
)

// Check validates cfg, a Config built in code (or loaded, and changed), with
// the rules and the wording a file gets: it becomes the YAML nodes a file
// with the same values would hold, and goes through the same parser. Each
// error names the field at fault ("route \"db\": idle_timeout"). On
// success Check fills in cfg's defaults.
//
// A field is taken as written where its zero value means something in a
// file (IdleTimeout 0: no idle timeout; Retries 0: no retry;
// PassiveCheck.Failures 0: no passive check). Where a file refuses zero
// (GracePeriod, ConnectTimeout, an Upstream's Weight, the check intervals
// and backoffs), zero stands for the field not written, and takes its
// default. So a Config that Load returned checks as it is, and one built in
// code needs only names, listen addresses and upstreams.
func Check(cfg *Config) error {
	if cfg == nil {
		return Errors{{Place: "the config", Msg: "nil"}}
	}
	e := &encoder{places: []place{{name: "the config"}}}
	top := e.config(cfg)
	p := &parser{file: cfg.File, places: e.places}
	p.end = Pos{Line: len(e.places) + 1, Col: 1}
	p.left = 4*p.checkKeys(top) + aliasAllowance
	var out Config
	p.config(top, &out)
	if len(p.errs) > 0 {
		return p.result()
	}
	clearPositions(&out)
	// Positions stay as cfg had them (a loaded config keeps its file's).
	for i := range out.Routes {
		out.Routes[i].Pos = cfg.Routes[i].Pos
		for j := range out.Routes[i].Upstreams {
			ou, cu := &out.Routes[i].Upstreams[j], &cfg.Routes[i].Upstreams[j]
			ou.Pos = cu.Pos
			if ou.UpstreamTLS != nil && cu.UpstreamTLS != nil {
				ou.UpstreamTLS.Pos = cu.UpstreamTLS.Pos
			}
		}
		for j := range out.Routes[i].Filters {
			out.Routes[i].Filters[j].Pos = cfg.Routes[i].Filters[j].Pos
			out.Routes[i].Filters[j].Options = cfg.Routes[i].Filters[j].Options
		}
		if h, hc := cfg.Routes[i].HealthCheck, out.Routes[i].HealthCheck; h != nil && hc != nil {
			hc.Pos = h.Pos
		}
		r, o := &cfg.Routes[i], &out.Routes[i]
		if r.Match != nil && o.Match != nil {
			o.Match.Pos = r.Match.Pos
		}
		if r.ProxyProtocol != nil && o.ProxyProtocol != nil {
			o.ProxyProtocol.Pos = r.ProxyProtocol.Pos
		}
		keepLimitsPos(o.Limits, r.Limits)
		keepTLSPos(o, r)
	}
	keepLimitsPos(out.Limits, cfg.Limits)
	if cfg.Admin != nil && out.Admin != nil {
		out.Admin.Pos = cfg.Admin.Pos
	}
	if cfg.Toxiproxy != nil && out.Toxiproxy != nil {
		out.Toxiproxy.Pos = cfg.Toxiproxy.Pos
	}
	out.File = cfg.File
	*cfg = out
	return nil
}

// keepTLSPos gives the TLS settings of the route Check read the positions
// of those of the route it was given.
func keepTLSPos(out, in *Route) {
	if out.UpstreamTLS != nil && in.UpstreamTLS != nil {
		out.UpstreamTLS.Pos = in.UpstreamTLS.Pos
	}
	o, t := out.TLS, in.TLS
	if o == nil || t == nil {
		return
	}
	o.Pos = t.Pos
	for k := range min(len(o.Certificates), len(t.Certificates)) {
		o.Certificates[k].Pos = t.Certificates[k].Pos
	}
	if o.ClientAuth != nil && t.ClientAuth != nil {
		o.ClientAuth.Pos = t.ClientAuth.Pos
	}
}

// keepLimitsPos gives the limits Check read the positions of those it
// was given.
func keepLimitsPos(out, in *Limits) {
	if out == nil || in == nil {
		return
	}
	out.Pos = in.Pos
	if out.PerClient != nil && in.PerClient != nil {
		out.PerClient.Pos = in.PerClient.Pos
	}
}

// encoder turns a Config into YAML nodes; every node's line is the index,
// plus one, of its place in places.
type encoder struct {
	places []place
}

// at adds the place of key in where ("route \"db\"", "idle_timeout")
// and returns the line that stands for it.
func (e *encoder) at(where, key string) int {
	name := where
	if key != "" {
		name = where + ": " + key
	}
	e.places = append(e.places, place{name: name, key: key})
	return len(e.places)
}

func (e *encoder) config(c *Config) *yaml.Node {
	top := mapping(1)
	if c.GracePeriod != 0 {
		g := e.duration(c.GracePeriod, "the config", "grace_period")
		set(top, "grace_period", g, g.Line)
	}
	routes := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: e.at("the config", "routes"), Column: 1}
	named := make(map[string]bool, len(c.Routes))
	for i := range c.Routes {
		r := &c.Routes[i]
		// A route is named by its name, unless an earlier route has it:
		// then by its index, so its errors are not taken for the first's.
		where := fmt.Sprintf("routes[%d]", i)
		if r.Name != "" && !named[r.Name] {
			where = fmt.Sprintf("route %q", r.Name)
			named[r.Name] = true
		}
		routes.Content = append(routes.Content, e.route(r, where))
	}
	set(top, "routes", routes, routes.Line)
	r := c.Resolver
	if len(r.Servers) > 0 || r.Interval != 0 || r.Timeout != 0 {
		m := mapping(e.at("the config", "resolver"))
		if len(r.Servers) > 0 {
			set(m, "servers", e.strings(r.Servers, "resolver", "servers"), m.Line)
		}
		if r.Interval != 0 {
			set(m, "interval", e.duration(r.Interval, "resolver", "interval"), m.Line)
		}
		if r.Timeout != 0 {
			set(m, "timeout", e.duration(r.Timeout, "resolver", "timeout"), m.Line)
		}
		set(top, "resolver", m, m.Line)
	}
	if a := c.Admin; a != nil {
		m := mapping(e.place("admin", "admin"))
		if a.Listen != "" {
			set(m, "listen", str(a.Listen, e.place("admin: listen", "admin: listen")), m.Line)
		}
		if a.TokenFile != "" {
			set(m, "token_file", str(a.TokenFile, e.place("admin: token_file", "admin: token_file")), m.Line)
		}
		set(top, "admin", m, m.Line)
	}
	if t := c.Toxiproxy; t != nil {
		m := mapping(e.place("toxiproxy", "toxiproxy"))
		if t.Listen != "" {
			set(m, "listen", str(t.Listen, e.place("toxiproxy: listen", "toxiproxy: listen")), m.Line)
		}
		if t.AllowRemote {
			set(m, "allow_remote", tagged("true", "!!bool", e.place("toxiproxy: allow_remote", "toxiproxy: allow_remote")), m.Line)
		}
		set(top, "toxiproxy", m, m.Line)
	}
	e.access(top, c.Allow, c.Deny, c.Limits, "the config")
	return top
}

// access adds allow, deny and limits, the top level's or a route's, to m.
func (e *encoder) access(m *yaml.Node, allow, deny []netip.Prefix, l *Limits, where string) {
	if len(allow) > 0 {
		v := e.prefixes(allow, where, "allow")
		set(m, "allow", v, v.Line)
	}
	if len(deny) > 0 {
		v := e.prefixes(deny, where, "deny")
		set(m, "deny", v, v.Line)
	}
	if l == nil {
		return
	}
	lw := where + ": limits"
	if where == "the config" {
		lw = "limits"
	}
	lm := mapping(e.at(where, "limits"))
	if r := l.AcceptRate; r != nil {
		rw := lw + ": accept_rate"
		rm := mapping(e.at(lw, "accept_rate"))
		e.rate(rm, r, rw)
		set(lm, "accept_rate", rm, rm.Line)
	}
	if c := l.PerClient; c != nil {
		cw := lw + ": per_client"
		cm := mapping(e.at(lw, "per_client"))
		opt := func(key string, v int) {
			if v != 0 {
				n := e.number(v, cw, key)
				set(cm, key, n, n.Line)
			}
		}
		opt("max_connections", c.MaxConnections)
		if c.Rate != nil {
			e.rate(cm, c.Rate, cw)
		}
		opt("ipv4_prefix", c.IPv4Prefix)
		opt("ipv6_prefix", c.IPv6Prefix)
		opt("max_tracked", c.MaxTracked)
		set(lm, "per_client", cm, cm.Line)
	}
	set(m, "limits", lm, lm.Line)
}

// rate adds a Rate's rate and burst to m: its own mapping (accept_rate)
// or per_client, where they stand beside the other keys.
func (e *encoder) rate(m *yaml.Node, r *Rate, where string) {
	v := str(formatRate(r.PerSecond), e.at(where, "rate"))
	set(m, "rate", v, v.Line)
	if r.Burst != 0 {
		b := e.number(r.Burst, where, "burst")
		set(m, "burst", b, b.Line)
	}
}

// edge adds a route's match, PROXY and peek settings to m.
func (e *encoder) edge(m *yaml.Node, r *Route, where string) {
	field := func(key string, v *yaml.Node) { set(m, key, v, v.Line) }
	if mt := r.Match; mt != nil {
		mw := where + ": match"
		mm := mapping(e.at(where, "match"))
		if len(mt.SNI) > 0 {
			set(mm, "sni", e.strings(mt.SNI, mw, "sni"), mm.Line)
		}
		if len(mt.ALPN) > 0 {
			set(mm, "alpn", e.strings(mt.ALPN, mw, "alpn"), mm.Line)
		}
		if len(mt.Source) > 0 {
			set(mm, "source", e.prefixes(mt.Source, mw, "source"), mm.Line)
		}
		if mt.Default {
			set(mm, "default", e.boolean(mw, "default"), mm.Line)
		}
		field("match", mm)
	}
	if r.PeekTimeout != 0 {
		field("peek_timeout", e.duration(r.PeekTimeout, where, "peek_timeout"))
	}
	if pp := r.ProxyProtocol; pp != nil {
		pw := where + ": proxy_protocol"
		pm := mapping(e.at(where, "proxy_protocol"))
		opt := func(key string, v *yaml.Node) { set(pm, key, v, v.Line) }
		if pp.Accept != "" {
			opt("accept", e.scalar(pp.Accept, pw, "accept"))
		}
		opt("trusted", e.prefixes(pp.Trusted, pw, "trusted"))
		if pp.Required {
			opt("required", e.boolean(pw, "required"))
		}
		if pp.Timeout != 0 {
			opt("timeout", e.duration(pp.Timeout, pw, "timeout"))
		}
		field("proxy_protocol", pm)
	}
	if r.SendProxy != "" {
		field("send_proxy", e.scalar(r.SendProxy, where, "send_proxy"))
	}
	e.access(m, r.Allow, r.Deny, r.Limits, where)
}

func (e *encoder) prefixes(ps []netip.Prefix, where, key string) *yaml.Node {
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = p.String()
	}
	return e.strings(ss, where, key)
}

// place adds a place named name whose errors begin with key (the servers'
// fields' do with their mapping's name: "admin: listen: ...").
func (e *encoder) place(name, key string) int {
	e.places = append(e.places, place{name: name, key: key})
	return len(e.places)
}

func (e *encoder) route(r *Route, where string) *yaml.Node {
	m := mapping(e.at(where, ""))
	field := func(key string, v *yaml.Node) { set(m, key, v, v.Line) }
	field("name", e.scalar(r.Name, where, "name"))
	field("listen", e.strings(r.Listen, where, "listen"))
	if r.Protocol != "" {
		field("protocol", e.scalar(r.Protocol, where, "protocol"))
	}
	udp := r.Protocol == UDP
	ups := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: e.at(where, "upstreams"), Column: 1}
	for j := range r.Upstreams {
		ups.Content = append(ups.Content, e.upstream(&r.Upstreams[j], fmt.Sprintf("%s: upstreams[%d]", where, j)))
	}
	field("upstreams", ups)
	if r.Balance != "" {
		field("balance", e.scalar(r.Balance, where, "balance"))
	}
	if h := r.HealthCheck; h != nil {
		hw := where + ": health_check"
		hm := mapping(e.at(where, "health_check"))
		opt := func(key string, v *yaml.Node) { set(hm, key, v, v.Line) }
		if h.Interval != 0 {
			opt("interval", e.duration(h.Interval, hw, "interval"))
		}
		if h.Timeout != 0 {
			opt("timeout", e.duration(h.Timeout, hw, "timeout"))
		}
		if h.Rise != 0 {
			opt("rise", e.number(h.Rise, hw, "rise"))
		}
		if h.Fall != 0 {
			opt("fall", e.number(h.Fall, hw, "fall"))
		}
		if h.Port != 0 {
			opt("port", e.number(int(h.Port), hw, "port"))
		}
		if h.Send != "" {
			opt("send", e.scalar(h.Send, hw, "send"))
		}
		if h.Expect != "" {
			opt("expect", e.scalar(h.Expect, hw, "expect"))
		}
		if h.ExpectRegexp != "" {
			opt("expect_regexp", e.scalar(h.ExpectRegexp, hw, "expect_regexp"))
		}
		if h.SendProxy != "" {
			opt("send_proxy", e.scalar(h.SendProxy, hw, "send_proxy"))
		}
		if h.TLS {
			opt("tls", e.boolean(hw, "tls"))
		}
		field("health_check", hm)
	}
	pc := r.PassiveCheck
	pw := where + ": passive_check"
	pm := mapping(e.at(where, "passive_check"))
	set(pm, "failures", e.number(pc.Failures, pw, "failures"), pm.Line)
	if pc.Backoff != 0 {
		set(pm, "backoff", e.duration(pc.Backoff, pw, "backoff"), pm.Line)
	}
	if pc.MaxBackoff != 0 {
		set(pm, "max_backoff", e.duration(pc.MaxBackoff, pw, "max_backoff"), pm.Line)
	}
	field("passive_check", pm)
	// A udp route has no retries, half-close or max_connections (and
	// refuses a zero idle_timeout, so zero there is "not written"): they
	// are written only when set, for the parser to refuse.
	if !udp || r.Retries != 0 {
		field("retries", e.number(r.Retries, where, "retries"))
	}
	if r.ConnectTimeout != 0 {
		field("connect_timeout", e.duration(r.ConnectTimeout, where, "connect_timeout"))
	}
	if r.ConnectBudget != 0 {
		field("connect_budget", e.duration(r.ConnectBudget, where, "connect_budget"))
	}
	if r.WhenAllDown != "" {
		field("when_all_down", e.scalar(r.WhenAllDown, where, "when_all_down"))
	}
	if !udp || r.IdleTimeout != 0 {
		field("idle_timeout", e.duration(r.IdleTimeout, where, "idle_timeout"))
	}
	if !udp || r.HalfCloseTimeout != 0 {
		field("half_close_timeout", e.duration(r.HalfCloseTimeout, where, "half_close_timeout"))
	}
	if !udp || r.MaxConnections != 0 {
		field("max_connections", e.number(r.MaxConnections, where, "max_connections"))
	}
	if r.Responses != 0 {
		field("responses", e.number(r.Responses, where, "responses"))
	}
	if r.MaxFlows != 0 {
		field("max_flows", e.number(r.MaxFlows, where, "max_flows"))
	}
	if len(r.Filters) > 0 {
		fs := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: e.at(where, "filters"), Column: 1}
		for j := range r.Filters {
			fs.Content = append(fs.Content, e.filter(&r.Filters[j], fmt.Sprintf("%s: filters[%d]", where, j)))
		}
		field("filters", fs)
	}
	e.edge(m, r, where)
	e.tls(m, r, where)
	return m
}

// tls adds a route's tls, upstream_tls and handshake_timeout to m.
func (e *encoder) tls(m *yaml.Node, r *Route, where string) {
	field := func(key string, v *yaml.Node) { set(m, key, v, v.Line) }
	if t := r.TLS; t != nil {
		tw := where + ": tls"
		tm := mapping(e.at(where, "tls"))
		opt := func(key string, v *yaml.Node) { set(tm, key, v, v.Line) }
		certs := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: e.at(tw, "certificates"), Column: 1}
		for i, c := range t.Certificates {
			cw := fmt.Sprintf("%s: certificates[%d]", tw, i)
			cm := mapping(e.at(cw, ""))
			if c.Cert != "" {
				v := e.scalar(c.Cert, cw, "cert")
				set(cm, "cert", v, v.Line)
			}
			if c.Key != "" {
				v := e.scalar(c.Key, cw, "key")
				set(cm, "key", v, v.Line)
			}
			certs.Content = append(certs.Content, cm)
		}
		opt("certificates", certs)
		if t.MinVersion != "" {
			opt("min_version", e.scalar(t.MinVersion, tw, "min_version"))
		}
		if len(t.CipherSuites) > 0 {
			opt("cipher_suites", e.strings(t.CipherSuites, tw, "cipher_suites"))
		}
		if len(t.ALPN) > 0 {
			opt("alpn", e.strings(t.ALPN, tw, "alpn"))
		}
		if ca := t.ClientAuth; ca != nil {
			aw := tw + ": client_auth"
			am := mapping(e.at(tw, "client_auth"))
			if ca.CA != "" {
				v := e.scalar(ca.CA, aw, "ca")
				set(am, "ca", v, v.Line)
			}
			if ca.Required {
				v := e.boolean(aw, "required")
				set(am, "required", v, v.Line)
			}
			opt("client_auth", am)
		}
		field("tls", tm)
	}
	if u := r.UpstreamTLS; u != nil {
		field("upstream_tls", e.upstreamTLS(u, where))
	}
	if r.HandshakeTimeout != 0 {
		field("handshake_timeout", e.duration(r.HandshakeTimeout, where, "handshake_timeout"))
	}
}

// upstreamTLS is an upstream_tls mapping, a route's or a member's.
func (e *encoder) upstreamTLS(u *UpstreamTLS, where string) *yaml.Node {
	uw := where + ": upstream_tls"
	m := mapping(e.at(where, "upstream_tls"))
	opt := func(key string, v *yaml.Node) { set(m, key, v, v.Line) }
	if u.ServerName != "" {
		opt("server_name", e.scalar(u.ServerName, uw, "server_name"))
	}
	if u.CA != "" {
		opt("ca", e.scalar(u.CA, uw, "ca"))
	}
	if u.Cert != "" {
		opt("cert", e.scalar(u.Cert, uw, "cert"))
	}
	if u.Key != "" {
		opt("key", e.scalar(u.Key, uw, "key"))
	}
	if len(u.ALPN) > 0 {
		opt("alpn", e.strings(u.ALPN, uw, "alpn"))
	}
	if u.InsecureSkipVerify {
		opt("insecure_skip_verify", e.boolean(uw, "insecure_skip_verify"))
	}
	return m
}

func (e *encoder) upstream(u *Upstream, where string) *yaml.Node {
	m := mapping(e.at(where, ""))
	field := func(key string, v *yaml.Node) { set(m, key, v, v.Line) }
	if u.Address != "" {
		field("address", e.scalar(u.Address, where, "address"))
	}
	if u.SRV != "" {
		field("srv", e.scalar(u.SRV, where, "srv"))
	}
	if u.Weight != 0 {
		field("weight", e.number(u.Weight, where, "weight"))
	}
	if u.Backup {
		field("backup", e.boolean(where, "backup"))
	}
	if u.MaxConnections != 0 {
		field("max_connections", e.number(u.MaxConnections, where, "max_connections"))
	}
	if u.Drain {
		field("drain", e.boolean(where, "drain"))
	}
	if u.SendProxy != "" {
		field("send_proxy", e.scalar(u.SendProxy, where, "send_proxy"))
	}
	if u.UpstreamTLS != nil {
		field("upstream_tls", e.upstreamTLS(u.UpstreamTLS, where))
	}
	return m
}

// filter is `- name` for a filter with no options, `- name: {options}`
// otherwise, as a file writes it.
func (e *encoder) filter(f *Filter, where string) *yaml.Node {
	fw := where
	line := e.at(where, "")
	if len(f.Options) == 0 {
		return str(f.Name, line)
	}
	opts := mapping(line)
	for _, k := range sortedKeys(f.Options) {
		v := f.Options[k]
		if v.IsList {
			opts.Content = append(opts.Content, str(k, line), e.strings(v.List, fw, k))
			continue
		}
		opts.Content = append(opts.Content, str(k, line), optionValue(v.Text, line))
	}
	m := mapping(line)
	m.Content = append(m.Content, str(f.Name, line), opts)
	return m
}

func (e *encoder) scalar(s, where, key string) *yaml.Node {
	return str(s, e.at(where, key))
}

// number and boolean tag their nodes, so that Marshal writes them plain
// (retries: 2, not retries: "2"); the parser reads any scalar's text.
func (e *encoder) number(v int, where, key string) *yaml.Node {
	return tagged(strconv.Itoa(v), "!!int", e.at(where, key))
}

func (e *encoder) boolean(where, key string) *yaml.Node {
	return tagged("true", "!!bool", e.at(where, key))
}

func (e *encoder) duration(d time.Duration, where, key string) *yaml.Node {
	return str(formatDuration(d), e.at(where, key))
}

// formatDuration is d as a file would write it: 1h, 1m30s, not
// time.Duration's 1h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func tagged(s, tag string, line int) *yaml.Node {
	n := str(s, line)
	n.Tag = tag
	return n
}

// optionValue is a filter option's value: options are text to config,
// typed only by their filter, so a value that reads as a number or a
// boolean is tagged as one (Marshal writes probability: 0.5, and JSON a
// number), any other as text.
func optionValue(s string, line int) *yaml.Node {
	switch {
	case s == "true" || s == "false":
		return tagged(s, "!!bool", line)
	case jsonNumber.MatchString(s) && strings.ContainsAny(s, ".eE"):
		return tagged(s, "!!float", line)
	case jsonNumber.MatchString(s):
		return tagged(s, "!!int", line)
	}
	return str(s, line)
}

// jsonNumber is JSON's number grammar (RFC 8259, section 6), which YAML's
// core schema reads as a number too.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

func (e *encoder) strings(ss []string, where, key string) *yaml.Node {
	line := e.at(where, key)
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line, Column: 1}
	for _, s := range ss {
		n.Content = append(n.Content, str(s, line))
	}
	return n
}

func sortedKeys(m map[string]filter.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
