package filtertest

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/pierproxy/pier/filter"
)

// kindSamples are a valid value of each kind, for an option whose
// Default is empty. A list's is one loopback address: the only lists
// pier's own filters take are of CIDR prefixes or addresses.
var kindSamples = map[string]string{
	filter.KindDuration:  "100ms",
	filter.KindSize:      "64KiB",
	filter.KindNumber:    "1",
	filter.KindBool:      "true",
	filter.KindString:    "x",
	filter.KindList:      "127.0.0.1",
	filter.KindDirection: "both",
}

// wrongValues are values an option of each kind must refuse: what the
// other kinds take, so that a size read as a duration shows. Every kind
// but string and list refuses "?".
var wrongValues = map[string][]string{
	filter.KindDuration:  {"?", "64KiB", "true"},
	filter.KindSize:      {"?", "100ms", "0.5", "true"},
	filter.KindNumber:    {"?", "100ms", "64KiB", "true"},
	filter.KindBool:      {"?", "1", "x"},
	filter.KindEnum:      {"?"},
	filter.KindDirection: {"?"},
}

// CheckOptions reports every way spec.Options and spec.New disagree, as
// one error (nil when they agree). It builds the filter many times, with
// its options only checked (Options.CheckOnly), and finds:
//
//   - an option New reads that Options does not declare, or one declared
//     that New never reads (Options.LookedUp);
//   - a declared option New refuses a valid value of (its Default, else a
//     sample of its Kind; each of an enum's Choices), or takes a value its
//     Kind does not allow ("64KiB" for a duration, a list for a scalar);
//   - a Required option New takes the options without, or an option not
//     Required whose absence New refuses.
//
// The options given are always the Required ones, each at its valid
// value, and at most one more; a rule between options that none of them
// breaks alone (reset's "bytes or after") is an error with no key, which
// CheckOptions leaves alone. samples gives the valid value of an option
// by name where neither its Default nor its kind's sample fits (a file
// path in a directory the test can write to); a list's sample is one
// element. A Spec without Options (nil) is an error: there is nothing to
// check.
func CheckOptions(spec filter.Spec, samples map[string]string) error {
	if spec.Options == nil {
		return fmt.Errorf("filtertest: %s declares no Options", spec.Name)
	}
	c := &optionCheck{spec: spec, samples: samples, read: map[string]bool{}}
	c.run()
	return errors.Join(c.problems...)
}

type optionCheck struct {
	spec     filter.Spec
	samples  map[string]string
	read     map[string]bool // every key New looked up, in any build
	problems []error
}

func (c *optionCheck) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Errorf("filtertest: %s: "+format, append([]any{c.spec.Name}, args...)...))
}

// valid is a value of d that New should take.
func (c *optionCheck) valid(d filter.OptionDoc) string {
	if v, ok := c.samples[d.Name]; ok {
		return v
	}
	if d.Default != "" {
		return d.Default
	}
	if d.Kind == filter.KindEnum && len(d.Choices) > 0 {
		return d.Choices[0]
	}
	return kindSamples[d.Kind]
}

func value(d filter.OptionDoc, v string) filter.Value {
	if d.Kind == filter.KindList {
		return filter.Value{List: []string{v}, IsList: true}
	}
	return filter.Value{Text: v}
}

// build makes the filter from vals, only checking, and returns the
// problems New reported by option key; a failure that is not an
// OptionErrors (a panic, say) is a problem of its own.
func (c *optionCheck) build(vals map[string]filter.Value) map[string][]string {
	o := filter.NewOptions(c.spec.Name, vals, 0, 0).CheckOnly()
	f, err := c.spec.Build(o)
	for _, k := range o.LookedUp() {
		c.read[k] = true
	}
	if cl, ok := f.(io.Closer); ok {
		cl.Close()
	}
	byKey := map[string][]string{}
	var oes filter.OptionErrors
	switch {
	case err == nil:
	case errors.As(err, &oes):
		for _, e := range oes {
			byKey[e.Key] = append(byKey[e.Key], e.Msg)
		}
	default:
		c.problem("with %s: %v", describe(vals), err)
	}
	return byKey
}

func describe(vals map[string]filter.Value) string {
	if len(vals) == 0 {
		return "no options"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		v := vals[k]
		if v.IsList {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v.List))
		} else {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v.Text))
		}
	}
	return strings.Join(parts, ",")
}

func (c *optionCheck) run() {
	declared := map[string]filter.OptionDoc{}
	base := map[string]filter.Value{}
	for _, d := range c.spec.Options {
		declared[d.Name] = d
		if d.Required {
			base[d.Name] = value(d, c.valid(d))
		}
	}
	with := func(name string, v filter.Value) map[string]filter.Value {
		vals := maps.Clone(base)
		vals[name] = v
		return vals
	}

	// The Required options alone: New refuses none of them, and the
	// absence of no other.
	for k, msgs := range c.build(base) {
		switch d, ok := declared[k]; {
		case k == "":
		case !ok:
			c.problem("with %s, refuses %s, which Options does not declare: %s", describe(base), k, msgs[0])
		case d.Required:
			c.problem("refuses %s=%q: %s", k, c.valid(d), msgs[0])
		default:
			c.problem("refuses the options without %s (%s), which is not Required", k, msgs[0])
		}
	}

	for _, d := range c.spec.Options {
		if d.Required {
			vals := maps.Clone(base)
			delete(vals, d.Name)
			if _, refused := c.build(vals)[d.Name]; !refused {
				c.problem("%s is Required, but New takes the options without it", d.Name)
			}
		}
		// Valid values: the sample, and every choice.
		vs := []string{c.valid(d)}
		if d.Kind == filter.KindEnum || d.Kind == filter.KindDirection {
			vs = append(vs, d.Choices...)
		}
		for _, v := range slices.Compact(vs) {
			if msgs := c.build(with(d.Name, value(d, v)))[d.Name]; len(msgs) > 0 {
				c.problem("refuses %s=%q: %s", d.Name, v, msgs[0])
			}
		}
		// Values the kind does not allow.
		for _, v := range wrongValues[d.Kind] {
			if _, refused := c.build(with(d.Name, filter.Value{Text: v}))[d.Name]; !refused {
				c.problem("%s is a %s, but New takes %s=%q", d.Name, d.Kind, d.Name, v)
			}
		}
		if d.Kind != filter.KindList {
			if _, refused := c.build(with(d.Name, filter.Value{List: []string{c.valid(d)}, IsList: true}))[d.Name]; !refused {
				c.problem("%s is a %s, but New takes a list for it", d.Name, d.Kind)
			}
		}
	}

	for _, k := range slices.Sorted(maps.Keys(c.read)) {
		if _, ok := declared[k]; !ok {
			c.problem("New reads option %s, which Options does not declare", k)
		}
	}
	for _, d := range c.spec.Options {
		if !c.read[d.Name] {
			c.problem("Options declares %s, which New never reads", d.Name)
		}
	}
}
