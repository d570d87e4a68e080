package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"
)

// parser walks the node tree, building the configuration and collecting
// errors with the position of the node at fault.
type parser struct {
	file string
	errs Errors
}

func (p *parser) errAt(line, col int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	p.errAt(n.Line, n.Column, format, args...)
}

func (p *parser) sort() {
	slices.SortStableFunc(p.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
}

// deref follows aliases; the YAML library has already bounded their
// expansion.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// fields walks a mapping: every key must be a known, unique scalar, and
// each value goes to its handler.
func (p *parser) fields(n *yaml.Node, what string, handlers map[string]func(*yaml.Node)) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, "%s: want a mapping, got %s", what, kindName(n))
		return
	}
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errf(k, "%s: keys must be plain names", what)
			continue
		}
		if first, ok := seen[k.Value]; ok {
			p.errf(k, "%s: duplicate key %q (first at line %d)", what, k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		h, ok := handlers[k.Value]
		if !ok {
			p.errf(k, "%s: unknown field %q", what, k.Value)
			continue
		}
		h(v)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// scalar returns n's value if n is a non-null scalar, or reports an error.
func (p *parser) scalar(n *yaml.Node, field string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errf(n, "%s: want a value, got %s", field, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) duration(n *yaml.Node, field string, out *time.Duration) {
	s, ok := p.scalar(n, field)
	if !ok {
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.errf(deref(n), "%s: %q is not a positive duration (like 300ms, 5s, 1m30s)", field, s)
		return
	}
	*out = d
}

func (p *parser) count(n *yaml.Node, field string, out *int) {
	s, ok := p.scalar(n, field)
	if !ok {
		return
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		p.errf(deref(n), "%s: %q is not a whole number of at least 0", field, s)
		return
	}
	*out = v
}

// list calls each for every item of a sequence.
func (p *parser) list(n *yaml.Node, field string, each func(*yaml.Node)) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "%s: want a list, got %s", field, kindName(n))
		return
	}
	for _, item := range n.Content {
		each(item)
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

func (p *parser) config(doc *yaml.Node) *Config {
	cfg := &Config{GracePeriod: DefaultGracePeriod}
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			p.errAt(1, 1, "no routes: the file is empty")
			return nil
		}
		root = doc.Content[0]
	}
	if r := deref(root); r.Kind == yaml.ScalarNode && r.Tag == "!!null" {
		p.errAt(r.Line, r.Column, "no routes: the file is empty")
		return nil
	}
	var routesNode *yaml.Node
	p.fields(root, "config", map[string]func(*yaml.Node){
		"grace_period": func(n *yaml.Node) { p.duration(n, "grace_period", &cfg.GracePeriod) },
		"routes": func(n *yaml.Node) {
			routesNode = n
			p.list(n, "routes", func(n *yaml.Node) { cfg.Routes = append(cfg.Routes, p.route(n)) })
		},
	})
	if routesNode == nil {
		if r := deref(root); r.Kind == yaml.MappingNode {
			p.errf(r, "no routes: the file needs a routes list")
		}
		return cfg
	}
	if len(cfg.Routes) == 0 && deref(routesNode).Kind == yaml.SequenceNode {
		p.errf(routesNode, "routes: no routes")
	}
	p.crossCheck(cfg)
	return cfg
}

func (p *parser) route(n *yaml.Node) Route {
	d := deref(n)
	r := Route{
		ConnectTimeout:   DefaultConnectTimeout,
		IdleTimeout:      DefaultIdleTimeout,
		HalfCloseTimeout: DefaultHalfCloseTimeout,
		Pos:              Pos{d.Line, d.Column},
	}
	var hasName, hasListen, hasUpstreams bool
	p.fields(n, "route", map[string]func(*yaml.Node){
		"name": func(n *yaml.Node) {
			hasName = true
			if s, ok := p.scalar(n, "name"); ok {
				if !nameRE.MatchString(s) {
					p.errf(deref(n), "name: %q must be lower-case letters, digits, '_', '.' or '-', start with a letter or digit, and be at most 64 long", s)
				}
				r.Name = s
			}
		},
		"listen": func(n *yaml.Node) {
			hasListen = true
			p.list(n, "listen", func(n *yaml.Node) {
				if s, ok := p.scalar(n, "listen"); ok {
					if err := checkListen(s); err != nil {
						p.errf(deref(n), "listen: %q: %v", s, err)
					}
					r.Listen = append(r.Listen, s)
				}
			})
			if d := deref(n); d.Kind == yaml.SequenceNode && len(d.Content) == 0 {
				p.errf(deref(n), "listen: need at least one address")
			}
		},
		"upstreams": func(n *yaml.Node) {
			hasUpstreams = true
			p.list(n, "upstreams", func(n *yaml.Node) { r.Upstreams = append(r.Upstreams, p.upstream(n)) })
			if d := deref(n); d.Kind == yaml.SequenceNode && len(d.Content) == 0 {
				p.errf(deref(n), "upstreams: need at least one upstream")
			}
		},
		"connect_timeout":    func(n *yaml.Node) { p.duration(n, "connect_timeout", &r.ConnectTimeout) },
		"idle_timeout":       func(n *yaml.Node) { p.duration(n, "idle_timeout", &r.IdleTimeout) },
		"half_close_timeout": func(n *yaml.Node) { p.duration(n, "half_close_timeout", &r.HalfCloseTimeout) },
		"max_connections":    func(n *yaml.Node) { p.count(n, "max_connections", &r.MaxConnections) },
	})
	if d.Kind == yaml.MappingNode {
		for _, f := range []struct {
			name string
			ok   bool
		}{{"name", hasName}, {"listen", hasListen}, {"upstreams", hasUpstreams}} {
			if !f.ok {
				p.errf(d, "route: missing %s", f.name)
			}
		}
	}
	return r
}

func (p *parser) upstream(n *yaml.Node) Upstream {
	d := deref(n)
	u := Upstream{Pos: Pos{d.Line, d.Column}}
	has := false
	p.fields(n, "upstream", map[string]func(*yaml.Node){
		"address": func(n *yaml.Node) {
			has = true
			if s, ok := p.scalar(n, "address"); ok {
				if err := checkUpstream(s); err != nil {
					p.errf(deref(n), "address: %q: %v", s, err)
				}
				u.Address = s
			}
		},
	})
	if !has && d.Kind == yaml.MappingNode {
		p.errf(d, "upstream: missing address")
	}
	return u
}

// crossCheck finds what no single field shows: duplicate route names and
// listen addresses that would collide at bind time.
func (p *parser) crossCheck(cfg *Config) {
	names := make(map[string]Pos)
	for _, r := range cfg.Routes {
		if r.Name == "" {
			continue
		}
		if first, ok := names[r.Name]; ok {
			p.errAt(r.Pos.Line, r.Pos.Col, "route %q: name already used by the route at line %d", r.Name, first.Line)
			continue
		}
		names[r.Name] = r.Pos
	}
	type bound struct {
		route string
		addr  string
		pos   Pos
	}
	var seen []bound
	for _, r := range cfg.Routes {
		for _, a := range r.Listen {
			for _, b := range seen {
				if overlaps(a, b.addr) {
					p.errAt(r.Pos.Line, r.Pos.Col, "route %q: listen %q collides with %q of route %q (line %d)", r.Name, a, b.addr, b.route, b.pos.Line)
				}
			}
			seen = append(seen, bound{r.Name, a, r.Pos})
		}
	}
}

func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port")
	}
	if _, err := parsePort(port, true); err != nil {
		return err
	}
	if host == "" || host == "localhost" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("listen host must be empty, an IP address or localhost")
	}
	return nil
}

func checkUpstream(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port")
	}
	if host == "" {
		return fmt.Errorf("no host")
	}
	if _, err := parsePort(port, false); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return nil
}

func parsePort(s string, zeroOK bool) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !zeroOK) {
		if zeroOK {
			return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
		}
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return n, nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// overlaps reports whether two listen addresses would collide at bind time
// on Linux. Port 0 never collides; a wildcard host collides with any host
// on its port; localhost is 127.0.0.1 and ::1.
func overlaps(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil {
		return false
	}
	na, err1 := strconv.Atoi(pa)
	nb, err2 := strconv.Atoi(pb)
	if err1 != nil || err2 != nil || na == 0 || na != nb {
		return false
	}
	ea, eb := hostSet(ha), hostSet(hb)
	if ea == nil || eb == nil {
		return true // a wildcard
	}
	for _, x := range ea {
		if slices.Contains(eb, x) {
			return true
		}
	}
	return false
}

// hostSet returns the addresses a listen host binds, or nil for every
// address.
func hostSet(h string) []netip.Addr {
	if h == "" {
		return nil
	}
	if h == "localhost" {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return []netip.Addr{}
	}
	if ip.Unmap().IsUnspecified() {
		return nil
	}
	return []netip.Addr{ip.Unmap()}
}
