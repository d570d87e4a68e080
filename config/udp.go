package config

import (
	"time"

	yaml "go.yaml.in/yaml/v4"

	"github.com/pierproxy/pier/filter"
)

// The rules of a route's protocol: what a udp route refuses because it
// has no meaning for datagrams, its defaults, and which filters work on
// which protocol.

// udpRefused are the route fields a udp route refuses, in the schema's
// order, each with the reason given after "not on a udp route: ".
var udpRefused = []struct{ key, why string }{
	{"retries", "a flow's member is chosen once, at its first datagram, and connecting a datagram socket sends nothing that could fail; an unreachable member ends the flow and counts against passive_check"},
	{"connect_timeout", "connecting a datagram socket sends nothing, so there is no dial to time out"},
	{"connect_budget", "connecting a datagram socket sends nothing, so there is no dial to time out"},
	{"half_close_timeout", "a flow has no half-close: it ends after idle_timeout, or after responses"},
	{"max_connections", "use max_flows to cap the route's flows"},
	{"match", "a datagram shows no ClientHello to choose a route by, so udp routes cannot share an address"},
	{"peek_timeout", "a datagram shows no ClientHello to wait for"},
	{"proxy_protocol", "a PROXY header is read from the start of a TCP stream"},
	{"send_proxy", "a PROXY header is written at the start of a TCP stream"},
	{"tls", "pier terminates TLS over TCP only (no DTLS)"},
	{"upstream_tls", "pier originates TLS over TCP only (no DTLS)"},
	{"handshake_timeout", "it bounds TLS handshakes, and a udp route has none"},
}

// udpMemberRefused are an upstream's fields a udp route refuses.
var udpMemberRefused = []struct{ key, why string }{
	{"send_proxy", "a PROXY header is written at the start of a TCP stream"},
	{"upstream_tls", "pier originates TLS over TCP only (no DTLS)"},
}

// udpCheckNeeds is what a udp route's health check must be given: with
// no connection to open, only a reply shows that a member is up.
const udpCheckNeeds = "a udp health check needs send and expect (or expect_regexp): with no connection to open, only a reply shows that a member is up"

// A filterFit is what a route's filter works on.
type filterFit struct {
	datagrams    bool // the Filter it builds is a filter.DatagramFilter
	datagramOnly bool // its Spec is DatagramOnly
}

// recordFit notes what the filter f, which spec built as checked, works
// on, for checkProtocol.
func (p *parser) recordFit(f *Filter, spec filter.Spec, checked filter.Filter) {
	if p.filterFits == nil {
		p.filterFits = make(map[Pos]filterFit)
	}
	_, dg := checked.(filter.DatagramFilter)
	p.filterFits[f.Pos] = filterFit{datagrams: dg, datagramOnly: spec.DatagramOnly}
}

// claimsUDP returns the listen addresses udp routes claimed so far.
func (p *parser) claimsUDP() binds {
	if p.claimedUDP == nil {
		p.claimedUDP = make(binds)
	}
	return p.claimedUDP
}

// checkProtocol checks the route r (decoded from item, its fields' value
// nodes vals) against its protocol, and fills in a udp route's defaults.
// A tcp route refuses responses, max_flows and datagram-only filters. A
// udp route refuses the fields in udpRefused and udpMemberRefused, each
// at its key, a health check without send and expect or with send_proxy
// or tls, a zero idle_timeout (flows end only when idle, or after
// responses), and filters that do not work on datagrams; it takes
// DefaultUDPIdleTimeout and DefaultMaxFlows when they are absent, and
// leaves the refused fields, which took their tcp defaults, zero.
func (p *parser) checkProtocol(r *Route, item *yaml.Node, vals map[string]*yaml.Node) {
	m := follow(item)
	if r.Protocol != UDP {
		if r.Protocol == "" {
			return // the protocol was wrong, and said so
		}
		for _, key := range []string{"responses", "max_flows"} {
			if vals[key] != nil {
				p.errf(either(keyOf(m, key), vals[key]), "%s: only on a udp route (protocol: udp)", key)
			}
		}
		for _, f := range r.Filters {
			if fit, ok := p.filterFits[f.Pos]; ok && fit.datagramOnly {
				p.errAt(f.Pos.Line, f.Pos.Col, "filter %s works only on udp routes", quote(f.Name))
			}
		}
		return
	}
	for _, f := range udpRefused {
		if vals[f.key] != nil {
			p.errf(either(keyOf(m, f.key), vals[f.key]), "%s: not on a udp route: %s", f.key, f.why)
		}
	}
	if ups := follow(vals["upstreams"]); ups != nil && ups.Kind == yaml.SequenceNode {
		for _, u := range ups.Content {
			for _, f := range udpMemberRefused {
				if k := keyOf(follow(u), f.key); k != nil {
					p.errf(k, "%s: not on a udp route's upstream: %s", f.key, f.why)
				}
			}
		}
	}
	if h := r.HealthCheck; h != nil {
		hm := follow(vals["health_check"])
		for _, key := range []string{"send_proxy", "tls"} {
			if k := keyOf(hm, key); k != nil {
				p.errf(k, "%s: not in a udp route's health_check: a udp check sends one datagram and reads one", key)
			}
		}
		if h.Send == "" || h.Expect == "" && h.ExpectRegexp == "" {
			p.errf(hm, "health_check: %s", udpCheckNeeds)
		}
		h.SendProxy, h.TLS = "", false
	}
	if n := vals["idle_timeout"]; n == nil {
		r.IdleTimeout = DefaultUDPIdleTimeout
	} else if s := follow(n); s.Kind == yaml.ScalarNode {
		if d, err := time.ParseDuration(s.Value); err == nil && d == 0 {
			p.errf(s, "idle_timeout: 0 (never) is refused on a udp route: a flow ends only when idle (or after responses), and flows that never end would fill max_flows")
		}
	}
	if vals["max_flows"] == nil {
		r.MaxFlows = DefaultMaxFlows
	}
	for _, f := range r.Filters {
		if fit, ok := p.filterFits[f.Pos]; ok && !fit.datagrams {
			p.errAt(f.Pos.Line, f.Pos.Col, "filter %s does not work on datagrams (udp routes)", quote(f.Name))
		}
	}
	// What a udp route refuses took its tcp default, or was refused.
	r.Retries, r.ConnectTimeout, r.ConnectBudget = 0, 0, 0
	r.HalfCloseTimeout, r.PeekTimeout, r.HandshakeTimeout = 0, 0, 0
}

// keyOf is the key node of key in the mapping m, or nil: an error about a
// field that should not be there stands at its name.
func keyOf(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := follow(m.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return m.Content[i]
		}
	}
	return nil
}
