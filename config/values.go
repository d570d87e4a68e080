package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"
)

// The value parsers of the schema. Each reports what is wrong with its
// value at the value's position, and returns the zero value if anything
// is.

// routes parses the route list, and checks what no single route shows:
// names used twice, listen addresses that would collide at bind time (a
// tcp route's with tcp routes' and the servers', a udp route's with udp
// routes'), and the rules of routes that share an address (checkShared).
func (p *parser) routes(key string, n *yaml.Node) []Route {
	var out []Route
	type named struct{ line, route int }
	names := make(map[string]named) // name → where it was first given
	claimed := p.claims()
	var vals []map[string]*yaml.Node // of each route in out
	// An empty list is refused by config, unless toxiproxy is set.
	for i, item := range p.list(key, n, "") {
		if p.stop {
			break
		}
		r := Route{Pos: pos(item)}
		v := decodeMap(p, item, "route", routeFields, &r)
		if v == nil {
			continue
		}
		if r.Name != "" {
			at := p.resolve(v["name"])
			switch first, dup := names[r.Name]; {
			case !dup:
				names[r.Name] = named{line: at.Line, route: i}
			case p.places != nil:
				// Lines are place indexes, not lines of a file.
				p.errf(at, "name: route %s is already defined as routes[%d]", quote(r.Name), first.route)
			default:
				p.errf(at, "name: route %s is already defined at line %d", quote(r.Name), first.line)
			}
		}
		routeDefaults(&r, v)
		p.checkProtocol(&r, item, v)
		p.checkTracked(&r, v)
		if r.Protocol == UDP {
			// A udp route has no match (checkProtocol said so if one was
			// written): it never shares, and only collides with udp routes.
			p.claimListens(p.claimsUDP(), i, r.Name, v["listen"], false, len(out), udpShareHint)
		} else {
			p.checkTLSCheck(&r, v)
			p.claimListens(claimed, i, r.Name, v["listen"], v["match"] != nil, len(out), shareHint)
		}
		out = append(out, r)
		vals = append(vals, v)
	}
	if !p.stop {
		p.checkShared(out, vals)
	}
	return out
}

// name parses a route name.
func (p *parser) name(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if !validName(s.Value) {
		p.errf(s, "%s: %s is not a valid route name: use a-z, 0-9, '_', '.' and '-', start with a letter or digit, at most 64 characters", key, quote(s.Value))
		return ""
	}
	return s.Value
}

// validName reports whether s matches [a-z0-9][a-z0-9_.-]{0,63}: safe in
// logs, metric labels and file names.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '_' || c == '.' || c == '-')) {
			return false
		}
	}
	return true
}

// listens parses a route's listen addresses: a list, or one address
// alone (listen: ":9090").
func (p *parser) listens(key string, n *yaml.Node) []string {
	var out []string
	for _, item := range p.oneOrList(key, n, "need at least one address") {
		if p.stop {
			break
		}
		s, ok := p.scalar(key, item)
		if !ok {
			continue
		}
		if _, err := parseListen(s.Value); err != nil {
			p.errf(s, "%s: %s: %v", key, quote(s.Value), err)
			continue
		}
		out = append(out, s.Value)
	}
	return out
}

// upstreamAddress parses an upstream's host:port.
func (p *parser) upstreamAddress(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if err := checkUpstream(s.Value); err != nil {
		p.errf(s, "%s: %s: %v", key, quote(s.Value), err)
		return ""
	}
	return s.Value
}

// duration parses a duration that must be more than zero.
func (p *parser) duration(key string, n *yaml.Node) time.Duration {
	return p.parseDuration(key, n, false)
}

// durationOrNever parses a duration where zero means "never".
func (p *parser) durationOrNever(key string, n *yaml.Node) time.Duration {
	return p.parseDuration(key, n, true)
}

func (p *parser) parseDuration(key string, n *yaml.Node, zeroOK bool) time.Duration {
	s, ok := p.scalar(key, n)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s.Value)
	switch {
	case err != nil && isDigits(s.Value):
		p.errf(s, "%s: %s has no unit: write it like %ss or %sms", key, quote(s.Value), s.Value, s.Value)
	case err != nil:
		p.errf(s, "%s: %s is not a duration (like 300ms, 5s, 1m30s, 2h)", key, quote(s.Value))
	case d < 0:
		p.errf(s, "%s: %s is negative", key, quote(s.Value))
	case d == 0 && !zeroOK:
		p.errf(s, "%s: must be more than 0", key)
	default:
		return d
	}
	return 0
}

// count parses a whole number of 0 or more.
func (p *parser) count(key string, n *yaml.Node) int {
	s, ok := p.scalar(key, n)
	if !ok {
		return 0
	}
	if !isDigits(s.Value) {
		p.errf(s, "%s: %s is not a whole number of 0 or more", key, quote(s.Value))
		return 0
	}
	v, err := strconv.Atoi(s.Value)
	if err != nil {
		p.errf(s, "%s: %s is too large", key, quote(s.Value))
		return 0
	}
	return v
}

// intRange returns a parser of a whole number from lo to hi.
func intRange(lo, hi int) func(*parser, string, *yaml.Node) int {
	return func(p *parser, key string, n *yaml.Node) int {
		s, ok := p.scalar(key, n)
		if !ok {
			return 0
		}
		v, err := strconv.Atoi(s.Value)
		if !isDigits(s.Value) || err != nil || v < lo || v > hi {
			p.errf(s, "%s: %s is not a whole number from %d to %d", key, quote(s.Value), lo, hi)
			return 0
		}
		return v
	}
}

// oneOf returns a parser of a word from choices.
func oneOf(choices ...string) func(*parser, string, *yaml.Node) string {
	return func(p *parser, key string, n *yaml.Node) string {
		s, ok := p.scalar(key, n)
		if !ok {
			return ""
		}
		if !slices.Contains(choices, s.Value) {
			p.errf(s, "%s: %s is not one of %s", key, quote(s.Value), strings.Join(choices, ", "))
			return ""
		}
		return s.Value
	}
}

// boolean parses true or false, as YAML 1.2 writes them. The other
// spellings YAML has allowed (yes, on, True) are refused rather than
// guessed at.
func (p *parser) boolean(key string, n *yaml.Node) bool {
	s, ok := p.scalar(key, n)
	if !ok {
		return false
	}
	switch s.Value {
	case "true":
		return true
	case "false":
		return false
	}
	p.errf(s, "%s: %s is not true or false", key, quote(s.Value))
	return false
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkUpstream checks an upstream address: host:port, the host a name or
// an IP literal, the port 1 to 65535.
func checkUpstream(s string) error {
	host, port, err := splitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("missing host: an upstream needs a name or an IP address")
	}
	if _, err := parsePort(port, 1); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if strings.Trim(host, "0123456789.") == "" {
		return fmt.Errorf("%s is not a valid IP address", quote(host))
	}
	if !validHostname(host) {
		return fmt.Errorf("%s is neither an IP address nor a host name", quote(host))
	}
	return nil
}

// splitHostPort is net.SplitHostPort with messages that say how to fix
// the address.
func splitHostPort(s string) (host, port string, err error) {
	if i := strings.LastIndexByte(s, ':'); i < 0 || i < strings.LastIndexByte(s, ']') {
		return "", "", errors.New("missing port: want host:port")
	}
	host, port, err = net.SplitHostPort(s)
	switch {
	case err != nil && !strings.HasPrefix(s, "[") && strings.Count(s, ":") > 1:
		return "", "", errors.New("an IPv6 address goes in brackets, like [::1]:9090")
	case err != nil:
		return "", "", errors.New("want host:port")
	case strings.HasPrefix(s, "[") && !strings.Contains(host, ":"):
		return "", "", errors.New("brackets are only for IPv6 addresses")
	}
	return host, port, nil
}

// parsePort parses a decimal port number from min to 65535.
func parsePort(s string, min int) (uint16, error) {
	if !isDigits(s) {
		return 0, fmt.Errorf("port %s is not a number from %d to 65535", quote(s), min)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || int(n) < min {
		return 0, fmt.Errorf("port %s is not a number from %d to 65535", quote(s), min)
	}
	return uint16(n), nil
}

// validHostname reports whether h is a DNS name: dot-separated labels of
// letters, digits, '-' and '_' (common in internal names), with an
// optional final dot.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
