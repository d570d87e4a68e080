package config

import (
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v4"

	"github.com/pierproxy/pier/filter"
)

// A Setting is one configuration value given on a command line rather
// than written in a file.
type Setting struct {
	// Key is the field the value sets, by its key in a file:
	// "grace_period", or a route's field such as "idle_timeout". Given
	// twice, the last counts, as with flags. Three keys add to a list
	// instead: "listen" adds a listen address, "upstream" an upstream's
	// address, and "filter" the filter named by Filter. Two set the
	// admin server's fields: "admin" its listen address (admin.listen)
	// and "admin_token_file" its token file (admin.token_file), which
	// needs "admin". "allow" and "deny" add a prefix to the top level's
	// lists, and "accept_proxy" one to the route's
	// proxy_protocol.trusted (accepting headers of either version);
	// "send_proxy" is the route's field. "tls_cert" and "tls_key" are
	// the route's one certificate and its key (tls.certificates), both
	// or neither. "upstream_tls" ("true" or "false") turns upstream TLS
	// on; "upstream_ca", "upstream_server_name" and "upstream_insecure"
	// set upstream_tls's ca, server_name and insecure_skip_verify, and
	// turn it on too.
	Key string
	// Filter, for Key "filter", is the registered filter's name. Text is
	// then the flag's value: the filter's main option (Spec.FlagKey)
	// alone, or option=value,... where an option given twice is a list;
	// empty, the filter with its defaults.
	Filter string
	// Text is the value as given.
	Text string
	// Place is where the value was given, "flag -idle-timeout" or
	// "argument 2": errors name it where a file's would name line:col.
	Place string
}

// commandLine is where a configuration from a command line was given,
// when no single value is at fault.
const commandLine = "the command line"

// A place is where the values of a configuration from a command line were
// given; key is the field's name, which an error's place stands for.
type place struct{ name, key string }

// FromCommandLine builds the configuration of one route, named route,
// from settings, as 'pier forward' does. It is Parse for a command line:
// the settings become the YAML nodes a file with the same values would
// hold, and the same parser checks them and fills in the same defaults,
// so a value is accepted, refused and worded exactly as in a file. Each
// error is placed at the setting at fault (Error.Place). Settings come in
// command-line order, which the errors follow.
func FromCommandLine(route string, settings []Setting) (*Config, error) {
	p := &parser{places: []place{{name: commandLine}}, fromFlags: true}
	p.end = Pos{Line: len(settings) + 2, Col: 1}
	at := func(s Setting, key string) int {
		p.places = append(p.places, place{name: s.Place, key: key})
		return len(p.places)
	}
	top := mapping(1)
	r := mapping(1)
	listen := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: 1, Column: 1}
	upstreams := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: 1, Column: 1}
	filters := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: 1, Column: 1}
	var filterPlaces []string            // of each filter node, in order
	var admin *yaml.Node                 // the admin mapping, once a setting names it
	lists := make(map[string]*yaml.Node) // allow, deny, trusted: once a setting names them
	var pair *yaml.Node                  // tls.certificates[0], once a setting names it
	var upTLS *yaml.Node                 // upstream_tls, once a setting turns it on
	upstreamTLS := func(line int) *yaml.Node {
		if upTLS == nil {
			upTLS = mapping(line)
			set(r, "upstream_tls", upTLS, line)
		}
		return upTLS
	}
	set(r, "name", str(route, 1), 1)
	set(r, "listen", listen, 1)
	set(r, "upstreams", upstreams, 1)
	for _, s := range settings {
		switch {
		case s.Key == "listen":
			listen.Content = append(listen.Content, str(s.Text, at(s, "listen")))
		case s.Key == "upstream":
			line := at(s, "address")
			u := mapping(line)
			set(u, "address", str(s.Text, line), line)
			upstreams.Content = append(upstreams.Content, u)
		case s.Key == "admin" || s.Key == "admin_token_file":
			key := "listen"
			if s.Key == "admin_token_file" {
				key = "token_file"
			}
			line := at(s, "admin: "+key)
			if admin == nil {
				admin = mapping(line)
				set(top, "admin", admin, line)
			}
			set(admin, key, str(s.Text, line), line)
		case s.Key == "allow" || s.Key == "deny" || s.Key == "accept_proxy":
			key, in := s.Key, top
			if key == "accept_proxy" {
				key = "trusted"
			}
			line := at(s, key)
			list := lists[key]
			if list == nil {
				list = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line, Column: 1}
				lists[key] = list
				if key == "trusted" {
					in = mapping(line)
					set(r, "proxy_protocol", in, line)
				}
				set(in, key, list, line)
			}
			list.Content = append(list.Content, str(s.Text, line))
		case s.Key == "tls_cert" || s.Key == "tls_key":
			key := strings.TrimPrefix(s.Key, "tls_")
			line := at(s, key)
			if pair == nil {
				pair = mapping(line)
				certs := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line, Column: 1, Content: []*yaml.Node{pair}}
				t := mapping(line)
				set(t, "certificates", certs, line)
				set(r, "tls", t, line)
			}
			set(pair, key, str(s.Text, line), line)
		case s.Key == "upstream_tls" || s.Key == "upstream_insecure":
			line := at(s, s.Key)
			on := s.Text == "true"
			switch {
			case !on && s.Text != "false":
				p.errAt(line, 1, "%s: %s is not true or false", s.Key, quote(s.Text))
			case s.Key == "upstream_insecure" && (on || upTLS != nil):
				set(upstreamTLS(line), "insecure_skip_verify", str(s.Text, line), line)
			case on:
				upstreamTLS(line)
			}
		case s.Key == "upstream_ca" || s.Key == "upstream_server_name":
			key := strings.TrimPrefix(s.Key, "upstream_")
			line := at(s, key)
			set(upstreamTLS(line), key, str(s.Text, line), line)
		case s.Key == "filter":
			if f := p.filterFlag(s, at(s, s.Filter)); f != nil {
				filters.Content = append(filters.Content, f)
				filterPlaces = append(filterPlaces, s.Place)
			}
		case slices.ContainsFunc(configFields, func(f field[Config]) bool { return f.key == s.Key && f.key != "routes" }):
			set(top, s.Key, str(s.Text, at(s, s.Key)), len(p.places))
		default:
			set(r, s.Key, str(s.Text, at(s, s.Key)), len(p.places))
		}
	}
	if len(filters.Content) > 0 {
		set(r, "filters", filters, 1)
	}
	if admin != nil && len(admin.Content) == 2 && admin.Content[0].Value == "token_file" {
		// Said at the token file's setting: a missing admin.listen would
		// name no setting the user gave.
		p.errAt(admin.Line, 1, "admin: token_file: needs the admin server's listen address as well")
		for i := 0; i+1 < len(top.Content); i += 2 {
			if top.Content[i].Value == "admin" {
				top.Content = slices.Delete(top.Content, i, i+2)
				break
			}
		}
	}
	if pair != nil && len(pair.Content) == 2 {
		// One of the two: said at the flag given, as a file's missing
		// field would be at a mapping no flag wrote.
		missing := "key"
		if pair.Content[0].Value == "key" {
			missing = "cert"
		}
		p.errAt(pair.Content[0].Line, 1, "a certificate needs its %s as well", missing)
		for i := 0; i+1 < len(r.Content); i += 2 {
			if r.Content[i].Value == "tls" {
				r.Content = slices.Delete(r.Content, i, i+2)
				break
			}
		}
	}
	set(top, "routes", &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: 1, Column: 1, Content: []*yaml.Node{r}}, 1)
	p.left = 4*p.checkKeys(top) + aliasAllowance
	var cfg Config
	p.config(top, &cfg)
	if len(p.errs) > 0 {
		return nil, p.result()
	}
	// Lines and columns mean nothing here: they are cleared, and a
	// filter keeps its flag, for errors found when it is made.
	clearPositions(&cfg)
	for i := range cfg.Routes {
		for j := range cfg.Routes[i].Filters {
			f := &cfg.Routes[i].Filters[j]
			f.Pos.Place = filterPlaces[j]
		}
	}
	return &cfg, nil
}

// filterFlag returns the node of a filter given on the command line, as
// a file would write it ({latency: {delay: 100ms}}), or nil after
// reporting a value that is not option=value,...
func (p *parser) filterFlag(s Setting, line int) *yaml.Node {
	name := str(s.Filter, line)
	if s.Text == "" {
		return name
	}
	opts := mapping(line)
	if !strings.Contains(s.Text, "=") {
		spec, _ := filter.Lookup(s.Filter)
		if spec.FlagKey == "" {
			p.errAt(line, 1, "%s: want option=value,... (the filter has no main option to take a value alone)", s.Filter)
			return nil
		}
		set(opts, spec.FlagKey, str(s.Text, line), line)
	} else {
		for _, kv := range strings.Split(s.Text, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				p.errAt(line, 1, "%s: %s: want option=value", s.Filter, quote(kv))
				return nil
			}
			i := 0
			for i < len(opts.Content) && opts.Content[i].Value != k {
				i += 2
			}
			switch {
			case i == len(opts.Content):
				set(opts, k, str(v, line), line)
			case opts.Content[i+1].Kind == yaml.SequenceNode:
				list := opts.Content[i+1]
				list.Content = append(list.Content, str(v, line))
			default:
				// An option given twice is a list, in the order given.
				opts.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line, Column: 1,
					Content: []*yaml.Node{opts.Content[i+1], str(v, line)}}
			}
		}
	}
	m := mapping(line)
	set(m, s.Filter, opts, line)
	return m
}

func mapping(line int) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line, Column: 1}
}

func str(s string, line int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Line: line, Column: 1}
}

// set sets key in the mapping m, replacing an earlier value: the last
// given counts.
func set(m *yaml.Node, key string, v *yaml.Node, line int) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i].Line, m.Content[i+1] = line, v
			return
		}
	}
	m.Content = append(m.Content, str(key, line), v)
}

func clearPositions(cfg *Config) {
	if cfg.Admin != nil {
		cfg.Admin.Pos = Pos{}
	}
	clearLimitsPos(cfg.Limits)
	if cfg.Toxiproxy != nil {
		cfg.Toxiproxy.Pos = Pos{}
	}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		r.Pos = Pos{}
		if r.HealthCheck != nil {
			r.HealthCheck.Pos = Pos{}
		}
		if r.Match != nil {
			r.Match.Pos = Pos{}
		}
		if r.ProxyProtocol != nil {
			r.ProxyProtocol.Pos = Pos{}
		}
		clearLimitsPos(r.Limits)
		for j := range r.Upstreams {
			r.Upstreams[j].Pos = Pos{}
			if u := r.Upstreams[j].UpstreamTLS; u != nil {
				u.Pos = Pos{}
			}
		}
		if u := r.UpstreamTLS; u != nil {
			u.Pos = Pos{}
		}
		if t := r.TLS; t != nil {
			t.Pos = Pos{}
			for k := range t.Certificates {
				t.Certificates[k].Pos = Pos{}
			}
			if t.ClientAuth != nil {
				t.ClientAuth.Pos = Pos{}
			}
		}
		for j := range r.Filters {
			f := &r.Filters[j]
			f.Pos = Pos{}
			for k, v := range f.Options {
				v.Line, v.Col = 0, 0
				f.Options[k] = v
			}
		}
	}
}

func clearLimitsPos(l *Limits) {
	if l == nil {
		return
	}
	l.Pos = Pos{}
	if l.PerClient != nil {
		l.PerClient.Pos = Pos{}
	}
}
