package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v4"
)

// parser walks the YAML node tree, building the configuration and
// collecting every error with the position of the node at fault.
type parser struct {
	file string
	// places, for a configuration from a command line, are where its
	// values were given, by line: the nodes FromCommandLine builds carry
	// the index of their place, plus one, as their line. Nil for a file.
	places []place
	errs   Errors
	end    Pos  // just past the file's last character
	left   int  // node visits left before the walk gives up; see aliasAllowance
	stop   bool // left or the error budget ran out: every walker stops where it is
	full   bool // the error budget ran out
	// claimed holds the listen addresses taken so far, by routes and
	// then by the admin and Toxiproxy servers; servers are the
	// servers' listen addresses, claimed once the routes are decoded
	// whatever the order of the file.
	claimed binds
	// claimedUDP holds the listen addresses udp routes took: a udp
	// socket does not collide with a tcp one on the same address.
	claimedUDP binds
	// filterFits records, by a route filter's position, what it can
	// work on, for checkProtocol.
	filterFits map[Pos]filterFit
	servers    []server
	// shared holds, by the address as written, the routes with a match
	// that listen on it, in file order: see checkShared.
	shared map[string][]sharer
	// matchKeys counts the match combinations checkShared has recorded,
	// against maxMatchKeys.
	matchKeys int
	// fromFlags: the configuration is a command line's (FromCommandLine),
	// where a hint names no field of a file.
	fromFlags bool
}

// aliasAllowance is how many node visits a walk may make beyond a few per
// node written in the file. Aliases let a small file name a large tree
// many times over (routes: [*r, *r, ...], each with upstreams: *u), which
// would otherwise make the walk take time quadratic in the file's size. A
// hand-written file needs a few thousand visits.
const aliasAllowance = 1 << 20

// maxErrors is how many errors are reported; the rest are counted in one
// last line. After errorBudget errors the walk stops: the file is not
// worth reading further, and a large broken file must not cost memory in
// proportion to its errors.
const (
	maxErrors   = 100
	errorBudget = 10 * maxErrors
)

// field is one entry of a mapping's schema; see configFields.
type field[T any] struct {
	key      string
	required bool
	// decode parses the value node n of key into *into, reporting what is
	// wrong with it.
	decode func(p *parser, key string, n *yaml.Node, into *T)
	// absent sets the default when key is missing; nil leaves the zero value.
	absent func(into *T)
}

// req is a field that must be present. parse reports what is wrong with
// the value, and returns the zero V if anything is.
func req[T, V any](key string, parse func(*parser, string, *yaml.Node) V, at func(*T) *V) field[T] {
	return field[T]{
		key:      key,
		required: true,
		decode:   func(p *parser, key string, n *yaml.Node, into *T) { *at(into) = parse(p, key, n) },
	}
}

// opt is a field that takes def when absent.
func opt[T, V any](key string, parse func(*parser, string, *yaml.Node) V, at func(*T) *V, def V) field[T] {
	f := req(key, parse, at)
	f.required = false
	f.absent = func(into *T) { *at(into) = def }
	return f
}

// load parses data into a node tree and returns the root value, or nil
// after reporting why there is nothing to walk: with the message empty
// if data holds no value.
func (p *parser) load(data []byte, empty string) *yaml.Node {
	line, col, _ := scan(data, false)
	p.end = Pos{Line: line, Col: col}
	l, err := yaml.NewLoader(bytes.NewReader(data))
	if err != nil {
		p.errAt(1, 1, "yaml: %v", err)
		return nil
	}
	var doc yaml.Node
	if err := l.Load(&doc); errors.Is(err, io.EOF) {
		p.errAt(1, 1, "%s", empty)
		return nil
	} else if err != nil {
		p.yamlError(err, data)
		return nil
	}
	// yaml.Load would refuse a second document too, but without a position.
	var next yaml.Node
	if err := l.Load(&next); err == nil {
		p.errf(&next, "a second YAML document: the file must hold exactly one")
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(err, data)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.errf(&doc, "%s", empty)
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		p.errf(root, "%s", empty)
		return nil
	}
	p.left = 4*p.checkKeys(root) + aliasAllowance
	return root
}

// yamlError reports a parse error from the yaml package.
func (p *parser) yamlError(err error, data []byte) {
	var many *yaml.LoadErrors
	var one *yaml.LoadError
	switch {
	case errors.As(err, &many) && len(many.Errors) > 0:
		for _, e := range many.Errors {
			p.loadError(e, data)
		}
	case errors.As(err, &one):
		p.loadError(one, data)
	default:
		p.errAt(1, 1, "yaml: %v", err)
	}
}

func (p *parser) loadError(e *yaml.LoadError, data []byte) {
	line, col := e.Mark.Line, e.Mark.Column
	if line == 0 {
		// The reader stage (bad UTF-8, control characters) gives no
		// position; find the character it refused.
		if l, c, found := scan(data, true); found {
			line, col = l, c
		}
	}
	p.errAt(line, col, "yaml: %s", e.Message)
}

// scan walks data counting lines and columns as the yaml package does
// (columns count characters; \r\n, \r, \n, NEL, LS and PS break lines).
// With stopAtBad, it stops at the first character YAML does not allow in
// a stream (YAML 1.2, section 5.1) and reports found. Otherwise it returns
// the position just past the end.
func scan(data []byte, stopAtBad bool) (line, col int, found bool) {
	line, col = 1, 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		data = data[size:]
		ok := r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e || r == 0x85 ||
			r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
		if stopAtBad && (!ok || r == utf8.RuneError && size == 1) {
			return line, col, true
		}
		switch {
		case r == '\r' && len(data) > 0 && data[0] == '\n':
			// One break, counted at the \n.
		case r == '\r' || r == '\n' || r == 0x85 || r == 0x2028 || r == 0x2029:
			line, col = line+1, 1
		default:
			col++
		}
	}
	return line, col, false
}

// checkKeys reports duplicate keys in every mapping of the tree, also in
// parts the schema does not walk, and returns how many nodes the tree has.
// Aliases are not followed, so each mapping is checked once, where it is
// written.
func (p *parser) checkKeys(n *yaml.Node) int {
	count := 1
	if n.Kind == yaml.MappingNode {
		seen := make(map[string]*yaml.Node)
		for i := 0; i+1 < len(n.Content) && !p.stop; i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode {
				continue
			}
			if first, dup := seen[k.Value]; dup {
				p.errf(n.Content[i], "duplicate key %s (first at line %d)", quote(k.Value), first.Line)
				continue
			}
			seen[k.Value] = n.Content[i]
		}
	}
	for _, c := range n.Content {
		count += p.checkKeys(c)
	}
	return count
}

// resolve returns the node n stands for, following an alias, and reports a
// tag pier does not know. Every walker reaches nodes through it, so it
// also counts the visit.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	p.left--
	if p.left < 0 && !p.stop {
		p.errf(n, "the file, with its aliases expanded, is too large to check")
		p.stop = true
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if !allowedTag(n) {
		p.errf(n, "tag %s is not supported: a value may be tagged only %s", n.Tag, strings.Join(coreTags, ", "))
	}
	return n
}

// coreTags are the tags a file may write out: YAML's core schema, which
// says no more than the parser infers ("!!str 5" is the text 5), and
// !!binary for bytes (see bytes). Any other tag asks for processing pier
// does not do, so it must not pass silently: a custom one ("!env IDLE"),
// a language's ("!!python/object:..."), or a typo: "!!bianry UElORw=="
// would send its base64 text as it is.
var coreTags = []string{"!!str", "!!int", "!!bool", "!!float", "!!null", "!!binary", "!!map", "!!seq"}

// allowedTag reports whether n's tag, if written out, is a core tag. A tag
// the parser inferred (!!timestamp for a plain 2001-12-14, !!merge for
// <<) is not written: the value is read as its text, as any other.
func allowedTag(n *yaml.Node) bool {
	return n.Style&yaml.TaggedStyle == 0 || slices.Contains(coreTags, n.Tag)
}

// decodeMap decodes the mapping n into *into by fields, in file order. It
// reports a node that is not a mapping, keys that are not names, merge
// keys, unknown keys, and missing required fields (at the mapping).
// Duplicate keys were reported by checkKeys; the first one counts. It
// returns the value node of each field present, for checks across fields,
// or nil if n is not a mapping.
func decodeMap[T any](p *parser, n *yaml.Node, what string, fields []field[T], into *T) map[string]*yaml.Node {
	m := p.resolve(n)
	if m.Kind != yaml.MappingNode {
		p.errf(m, "%s: want a mapping, got %s", what, describe(m))
		return nil
	}
	vals := make(map[string]*yaml.Node, len(fields))
	seen := make(map[string]bool, len(m.Content)/2)
	merges := false
	for i := 0; i+1 < len(m.Content) && !p.stop; i += 2 {
		k, v := p.resolve(m.Content[i]), m.Content[i+1]
		switch {
		case k.Tag == "!!merge":
			p.errf(k, "%s: merge keys (<<) are not supported; write the fields out", what)
			merges = true
		case k.Kind != yaml.ScalarNode || k.Tag == "!!null":
			p.errf(k, "%s: want a field name, got %s", what, describe(k))
		case seen[k.Value]:
		default:
			seen[k.Value] = true
			j := slices.IndexFunc(fields, func(f field[T]) bool { return f.key == k.Value })
			if j < 0 {
				p.errf(k, "%s: unknown field %s (known: %s)", what, quote(k.Value), keys(fields))
				continue
			}
			vals[k.Value] = v
			fields[j].decode(p, k.Value, v, into)
		}
	}
	for _, f := range fields {
		switch {
		case vals[f.key] != nil || p.stop:
		case f.required && merges:
			// The merge may have meant to supply it; one error is enough.
		case f.required:
			p.errf(m, "%s: missing required field %q", what, f.key)
		case f.absent != nil:
			f.absent(into)
		}
	}
	return vals
}

func keys[T any](fields []field[T]) string {
	s := make([]string, len(fields))
	for i, f := range fields {
		s[i] = f.key
	}
	return strings.Join(s, ", ")
}

// list returns the items of the sequence n. It reports n if it is not a
// sequence, or, with the message empty, if it has no items (an empty
// message: an empty list is fine here).
func (p *parser) list(key string, n *yaml.Node, empty string) []*yaml.Node {
	s := p.resolve(n)
	if s.Kind != yaml.SequenceNode {
		p.errf(s, "%s: want a list, got %s", key, describe(s))
		return nil
	}
	if len(s.Content) == 0 && empty != "" {
		p.errf(s, "%s: %s", key, empty)
	}
	return s.Content
}

// oneOrList is list, where one value may also stand alone for a list of
// one.
func (p *parser) oneOrList(key string, n *yaml.Node, empty string) []*yaml.Node {
	if s := p.resolve(n); s.Kind == yaml.ScalarNode && s.Tag != "!!null" {
		return []*yaml.Node{n}
	}
	return p.list(key, n, empty)
}

// scalar returns the scalar n stands for, or reports that n is a list, a
// mapping, missing, or bytes (!!binary) where text is wanted.
func (p *parser) scalar(key string, n *yaml.Node) (*yaml.Node, bool) {
	s, ok := p.scalarOrBytes(key, n)
	if ok && s.Tag == "!!binary" {
		p.errf(s, "%s: !!binary is only for bytes (health_check send and expect)", key)
		return s, false
	}
	return s, ok
}

// scalarOrBytes is scalar where a !!binary value is welcome.
func (p *parser) scalarOrBytes(key string, n *yaml.Node) (*yaml.Node, bool) {
	s := p.resolve(n)
	if s.Kind != yaml.ScalarNode || s.Tag == "!!null" {
		p.errf(s, "%s: want a value, got %s", key, describe(s))
		return s, false
	}
	return s, allowedTag(s) // resolve reported any other
}

func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return "nothing"
	case n.Kind == yaml.ScalarNode:
		return quote(n.Value)
	}
	return "an alias to nothing"
}

// quote quotes a value from the file for a message, cut to a readable
// length.
func quote(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// errAt reports an error at line:col. The yaml package places an error
// or an empty value at the end of a file without a final newline on the
// line after it; such a position moves back to the end of the last line,
// which exists.
func (p *parser) errAt(line, col int, format string, args ...any) {
	if p.full {
		return
	}
	line, col = max(line, 1), max(col, 1)
	if line > p.end.Line || line == p.end.Line && col > p.end.Col {
		line, col = p.end.Line, p.end.Col
	}
	e := &Error{File: p.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
	if p.places != nil {
		// The place stands for the field's name, which the message
		// begins with as it would in a file. Line is kept until result
		// has put the errors in command-line order.
		pl := p.places[min(line, len(p.places))-1]
		e.Place, e.Msg = pl.name, strings.TrimPrefix(e.Msg, pl.key+": ")
	}
	p.errs = append(p.errs, e)
	if len(p.errs) == errorBudget {
		p.full, p.stop = true, true
	}
}

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	p.errAt(n.Line, n.Column, format, args...)
}

func pos(n *yaml.Node) Pos { return Pos{Line: max(n.Line, 1), Col: max(n.Column, 1)} }

// result returns the errors in file order, each once (a node reached
// through several aliases is reported once), at most maxErrors of them.
func (p *parser) result() Errors {
	slices.SortStableFunc(p.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	seen := make(map[Error]bool, len(p.errs))
	out := p.errs[:0]
	for _, e := range p.errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	if n := len(out) - maxErrors; n > 0 || p.full {
		// The last line stands where the first error not shown would.
		more := *out[min(maxErrors, len(out)-1)]
		more.Msg = fmt.Sprintf("too many errors: %d more not shown", n)
		if p.full {
			more.Msg = "too many errors: the rest of the file was not checked"
		}
		out = append(out[:min(maxErrors, len(out))], &more)
	}
	if p.places != nil {
		for _, e := range out {
			e.Line, e.Col = 0, 0
		}
	}
	return out
}
