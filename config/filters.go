package config

import (
	"errors"
	"io"
	"runtime/debug"
	"strings"

	yaml "go.yaml.in/yaml/v4"

	"github.com/pierproxy/pier/filter"
)

// ParseFilters parses a list of filters as a route's `filters:` holds it,
// in YAML or JSON (which is YAML), for the admin API, which changes a
// route's filters at run time:
//
//	[{latency: {delay: 100ms, probability: 0.5}}, pass]
//	[{"latency": {"delay": "100ms"}}, "pass"]
//
// or the block list a file writes under filters:, without the key.
// Names, options, targeting and every message are the file's: each
// filter's options are checked by its Factory in dry-run mode. An empty
// list ([]) is no filters; an empty body, or null, is an error, so that a
// request that lost its body does not clear a route's filters. On error
// it returns Errors placed at place:line:col inside data.
func ParseFilters(place string, data []byte) ([]Filter, error) {
	p := &parser{file: place}
	root := p.load(data, "no filters: the body is empty: write a list, like [{latency: {delay: 100ms}}], or [] for none")
	var out []Filter
	if root != nil {
		out = p.filters("filters", root)
	}
	if len(p.errs) > 0 {
		return nil, p.result()
	}
	return out, nil
}

// ParseFilter parses one filter as an item of a route's `filters:` list
// holds it: `{latency: {delay: 100ms}}`, or a name alone (`pass`, in
// JSON "pass"), with ParseFilters' rules and messages.
func ParseFilter(place string, data []byte) (Filter, error) {
	p := &parser{file: place}
	root := p.load(data, "no filter: the body is empty: write one, like {latency: {delay: 100ms}}")
	var f Filter
	if root != nil {
		f, _ = p.filter(root)
	}
	if len(p.errs) > 0 {
		return Filter{}, p.result()
	}
	return f, nil
}

// marshalFilters writes fs as the YAML list ParseFilters reads back.
func marshalFilters(fs []Filter) ([]byte, error) {
	e := &encoder{}
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for i := range fs {
		list.Content = append(list.Content, e.filter(&fs[i], ""))
	}
	return dump(readyForText(list))
}

// filters parses a route's filter list. Each item is a filter's name, or
// a mapping from its name to its options; the options are checked by the
// filter's own Factory, in dry-run mode, and its complaints placed at the
// option they are about.
func (p *parser) filters(key string, n *yaml.Node) []Filter {
	s := p.resolve(n)
	if s.Kind == yaml.ScalarNode && s.Tag == "!!null" {
		return nil
	}
	if s.Kind != yaml.SequenceNode {
		p.errf(s, "%s: want a list, got %s", key, describe(s))
		return nil
	}
	var out []Filter
	for _, item := range s.Content {
		if p.stop {
			break
		}
		if f, ok := p.filter(item); ok {
			out = append(out, f)
		}
	}
	return out
}

func (p *parser) filter(item *yaml.Node) (Filter, bool) {
	n := p.resolve(item)
	var nameNode, optsNode *yaml.Node
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		nameNode = n
	case n.Kind == yaml.MappingNode && len(n.Content) == 2:
		nameNode, optsNode = p.resolve(n.Content[0]), n.Content[1]
	default:
		p.errf(n, "filter: want a filter's name with its options, like {dump: {format: hex}}, got %s", describeFilter(n))
		return Filter{}, false
	}
	if nameNode.Kind != yaml.ScalarNode {
		p.errf(nameNode, "filter: want a filter's name, got %s", describe(nameNode))
		return Filter{}, false
	}
	f := Filter{Name: nameNode.Value, Pos: pos(nameNode), Options: map[string]filter.Value{}}
	spec, ok := filter.Lookup(f.Name)
	if !ok {
		p.errf(nameNode, "filter: unknown filter %s (known: %s)", quote(f.Name), strings.Join(filter.Names(), ", "))
		return Filter{}, false
	}
	if optsNode != nil && !p.filterOptions(&f, optsNode) {
		return Filter{}, false
	}
	checked, err := spec.Build(f.NewOptions().CheckOnly())
	if err != nil {
		p.filterError(&f, err)
		return Filter{}, false
	}
	p.recordFit(&f, spec, checked)
	if err := closeChecked(spec.Name, checked); err != nil {
		p.filterError(&f, err)
		return Filter{}, false
	}
	return f, true
}

// closeChecked closes the Filter a Factory made only to check its options,
// if it is an io.Closer: a Factory that opens files or starts goroutines
// even in DryRun must not leak them on every load and reload. Close's own
// error is not the config's fault and is dropped; a panic in it is, like
// one in the Factory, and comes back as a *filter.PanicError.
func closeChecked(name string, f filter.Filter) (err error) {
	c, ok := f.(io.Closer)
	if !ok {
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			err = &filter.PanicError{Filter: name, Value: v, Stack: debug.Stack()}
		}
	}()
	_ = c.Close()
	return nil
}

// filterOptions reads a filter's option mapping: each value a scalar or a
// list of scalars.
func (p *parser) filterOptions(f *Filter, n *yaml.Node) bool {
	m := p.resolve(n)
	if m.Kind == yaml.ScalarNode && m.Tag == "!!null" {
		return true
	}
	if m.Kind != yaml.MappingNode {
		p.errf(m, "%s: want a mapping of options, got %s", f.Name, describe(m))
		return false
	}
	ok := true
	for i := 0; i+1 < len(m.Content) && !p.stop; i += 2 {
		k, v := p.resolve(m.Content[i]), p.resolve(m.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.Tag == "!!null" || k.Tag == "!!merge" {
			p.errf(k, "%s: want an option name, got %s", f.Name, describe(k))
			ok = false
			continue
		}
		if _, dup := f.Options[k.Value]; dup {
			continue // reported by checkKeys
		}
		val := filter.Value{Line: v.Line, Col: v.Column}
		switch {
		case v.Tag == "!!binary":
			p.errf(v, "%s: %s: !!binary is only for bytes (health_check send and expect)", f.Name, k.Value)
			ok = false
			continue
		case v.Kind == yaml.ScalarNode && v.Tag != "!!null":
			val.Text = v.Value
		case v.Kind == yaml.SequenceNode:
			val.IsList = true
			for _, e := range v.Content {
				e = p.resolve(e)
				if e.Kind != yaml.ScalarNode || e.Tag == "!!null" || e.Tag == "!!binary" {
					p.errf(e, "%s: %s: want a value, got %s", f.Name, k.Value, describe(e))
					ok = false
					continue
				}
				val.List = append(val.List, e.Value)
			}
		default:
			p.errf(v, "%s: %s: want a value or a list of values, got %s", f.Name, k.Value, describe(v))
			ok = false
			continue
		}
		f.Options[k.Value] = val
	}
	return ok
}

// filterError places a Factory's complaints. A panic is placed at the
// filter, in one line: config has no logger for its stack.
func (p *parser) filterError(f *Filter, err error) {
	var pe *filter.PanicError
	if errors.As(err, &pe) {
		p.errAt(f.Pos.Line, f.Pos.Col, "%s", pe.Error())
		return
	}
	var oes filter.OptionErrors
	if errors.As(err, &oes) {
		for _, e := range oes {
			p.errAt(e.Line, e.Col, "%s", e.Error())
		}
		return
	}
	var oe *filter.OptionError
	if errors.As(err, &oe) {
		p.errAt(oe.Line, oe.Col, "%s", oe.Error())
		return
	}
	p.errAt(f.Pos.Line, f.Pos.Col, "%s: %v", f.Name, err)
}

func describeFilter(n *yaml.Node) string {
	if n.Kind == yaml.MappingNode {
		return "a mapping of several keys (one filter per list item)"
	}
	return describe(n)
}
