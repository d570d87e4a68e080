package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"
)

// The parsers of a route's pool: its members, how one is chosen, how
// they are checked, and how their names are looked up.

var (
	balances    = []string{"round_robin", "least_conn", "random", "hash"}
	whenAllDown = []string{"fail", "try_all"}
)

const (
	maxWeight   = 1000
	maxRiseFall = 100
	// maxRetries bounds retries: each is a dial to another member, and a
	// pool rarely has more members worth trying in one session.
	maxRetries = 100
	// maxCheckRead bounds expect: a check reads at most what it needs, and
	// a reply that must begin with more than 4 KiB is not a health check.
	maxCheckRead = 4 << 10
)

// upstreams parses a route's upstream list, and checks what no single
// member shows: that some member is not a backup.
func (p *parser) upstreams(key string, n *yaml.Node) []Upstream {
	var out []Upstream
	items := p.list(key, n, "need at least one upstream")
	before := len(p.errs)
	for _, item := range items {
		if p.stop {
			break
		}
		m := p.resolve(item)
		if m.Kind == yaml.ScalarNode && m.Tag != "!!null" {
			// The likeliest slip: "- mail:25" for "- address: mail:25".
			p.errf(m, "upstream: want a mapping like {address: %s}, got %s", quote(m.Value), quote(m.Value))
			continue
		}
		u := Upstream{Pos: pos(item)}
		vals := decodeMap(p, item, "upstream", upstreamFields, &u)
		if vals == nil {
			continue
		}
		switch {
		case vals["address"] != nil && vals["srv"] != nil:
			p.errf(m, "upstream: give address or srv, not both")
		case vals["address"] == nil && vals["srv"] == nil:
			p.errf(m, "upstream: needs address or srv")
		}
		if vals["weight"] == nil && vals["srv"] == nil {
			u.Weight = 1 // an SRV member's absent weight, 0, says: the records'
		}
		out = append(out, u)
	}
	// Only a list that parsed whole is judged: a member that failed to
	// parse may have been the primary one.
	if len(out) > 0 && len(p.errs) == before && !slices.ContainsFunc(out, func(u Upstream) bool { return !u.Backup }) {
		p.errf(n, "%s: every upstream is a backup: at least one must not be", key)
	}
	return out
}

// srvName parses an upstream's SRV name.
func (p *parser) srvName(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if err := checkSRV(s.Value); err != nil {
		p.errf(s, "%s: %s: %v", key, quote(s.Value), err)
		return ""
	}
	return s.Value
}

// checkSRV checks an SRV name: _service._proto.name (RFC 2782), each
// label a host name's, with an optional final dot.
func checkSRV(name string) error {
	if strings.Contains(name, ":") {
		return errors.New("an SRV name has no port: its records give the ports")
	}
	labels := strings.Split(strings.TrimSuffix(name, "."), ".")
	srvLabel := func(l string) bool { return len(l) > 1 && l[0] == '_' }
	if !validHostname(name) || len(labels) < 3 || !srvLabel(labels[0]) || !srvLabel(labels[1]) {
		return errors.New("not an SRV name: want _service._proto.name, like _ldap._tcp.example.com")
	}
	return nil
}

// routeDefaults fills in the route's defaults that depend on other
// fields, once the route is decoded.
func routeDefaults(r *Route, vals map[string]*yaml.Node) {
	if vals["connect_budget"] == nil {
		r.ConnectBudget = r.Budget()
	}
}

// Budget is the route's connect budget: ConnectBudget, or for a Route
// built in code without one, connect_timeout × (retries + 1).
func (r *Route) Budget() time.Duration {
	if r.ConnectBudget > 0 {
		return r.ConnectBudget
	}
	return mulDuration(r.ConnectTimeout, r.Retries+1)
}

// mulDuration is d×n, saturated: a connect_timeout of years times
// retries must not wrap around to a negative budget.
func mulDuration(d time.Duration, n int) time.Duration {
	if d > 0 && int64(n) > math.MaxInt64/int64(d) {
		return math.MaxInt64
	}
	return d * time.Duration(n)
}

// healthCheck parses a route's health_check mapping.
func (p *parser) healthCheck(key string, n *yaml.Node) *HealthCheck {
	h := &HealthCheck{Pos: pos(n)}
	vals := decodeMap(p, n, key, healthCheckFields, h)
	if vals == nil {
		return nil
	}
	if h.Interval > 0 && h.Timeout > h.Interval {
		at := either(vals["timeout"], vals["interval"])
		p.errf(at, "%s: timeout %v is longer than interval %v: a check must end before the next one starts", key, h.Timeout, h.Interval)
	}
	if h.Expect != "" && h.ExpectRegexp != "" {
		p.errf(vals["expect_regexp"], "%s: give expect or expect_regexp, not both", key)
	}
	return h
}

// passiveCheck parses a route's passive_check mapping.
func (p *parser) passiveCheck(key string, n *yaml.Node) PassiveCheck {
	var c PassiveCheck
	vals := decodeMap(p, n, key, passiveCheckFields, &c)
	if vals == nil {
		return c
	}
	if c.Backoff > 0 && c.MaxBackoff > 0 && c.MaxBackoff < c.Backoff {
		at := either(vals["max_backoff"], vals["backoff"])
		p.errf(at, "%s: max_backoff %v is shorter than backoff %v", key, c.MaxBackoff, c.Backoff)
	}
	return c
}

// either returns a if it is there, else b: a cross-field error is placed
// at the field that was written, not at one that took its default.
func either(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

// checkPort parses a health check's port: 0 is the member's own.
func (p *parser) checkPort(key string, n *yaml.Node) uint16 {
	s, ok := p.scalar(key, n)
	if !ok {
		return 0
	}
	port, err := parsePort(s.Value, 0)
	if err != nil {
		p.errf(s, "%s: %s is not a number from 0 to 65535 (0: the member's own port)", key, quote(s.Value))
		return 0
	}
	return port
}

// bytes parses bytes to send or expect: the string as YAML gives it
// (escapes in double quotes already undone), or a !!binary value decoded
// from base64, the only way YAML writes bytes that are not UTF-8.
func (p *parser) bytes(key string, n *yaml.Node) string {
	s, ok := p.scalarOrBytes(key, n)
	if !ok {
		return ""
	}
	if s.Tag != "!!binary" {
		return s.Value
	}
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s.Value), ""))
	if err != nil {
		p.errf(s, "%s: !!binary value is not base64", key)
		return ""
	}
	return string(b)
}

// expect parses the bytes a reply must start with.
func (p *parser) expect(key string, n *yaml.Node) string {
	b := p.bytes(key, n)
	if len(b) > maxCheckRead {
		p.errf(p.resolve(n), "%s: %d bytes, more than the %d a check reads", key, len(b), maxCheckRead)
		return ""
	}
	return b
}

// expectRegexp parses the regexp a reply must match.
func (p *parser) expectRegexp(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if _, err := regexp.Compile(s.Value); err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			p.errf(s, "%s: %s is not a Go regexp: %s: %s", key, quote(s.Value), se.Code, quote(se.Expr))
		} else {
			p.errf(s, "%s: %s is not a Go regexp: %v", key, quote(s.Value), err)
		}
		return ""
	}
	return s.Value
}

// resolver parses the resolver mapping.
func (p *parser) resolver(key string, n *yaml.Node) Resolver {
	var r Resolver
	decodeMap(p, n, key, resolverFields, &r)
	return r
}

// dnsServers parses the resolver's servers; an empty list is the
// system's resolver, as no list is.
func (p *parser) dnsServers(key string, n *yaml.Node) []string {
	s := p.resolve(n)
	if s.Kind != yaml.SequenceNode {
		p.errf(s, "%s: want a list, got %s", key, describe(s))
		return nil
	}
	var out []string
	for _, item := range s.Content {
		if p.stop {
			break
		}
		v, ok := p.scalar(key, item)
		if !ok {
			continue
		}
		addr, err := dnsServer(v.Value)
		if err != nil {
			p.errf(v, "%s: %s: %v", key, quote(v.Value), err)
			continue
		}
		out = append(out, addr)
	}
	return out
}

// dnsServer checks a DNS server's address, IP or IP:port, and returns it
// as IP:port. A name is refused: it would need a resolver to find the
// resolver.
func dnsServer(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		// An IPv6 address in brackets, without a port.
		if a, err := netip.ParseAddr(inner[:len(inner)-1]); err == nil {
			if !a.Is6() {
				return "", errors.New("brackets are only for IPv6 addresses")
			}
			return netip.AddrPortFrom(a, 53).String(), nil
		}
	}
	notIP := func(host string) error {
		return fmt.Errorf("%s is not an IP address: a DNS server is given by its address, with an optional port", quote(host))
	}
	if !strings.Contains(s, ":") {
		return "", notIP(s)
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", notIP(host)
	}
	n, err := parsePort(port, 1)
	if err != nil {
		return "", err
	}
	return netip.AddrPortFrom(a, n).String(), nil
}
