package filter

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A Value is one option as written: a scalar, or a list of scalars, with
// where it was written (line and column 0 when it came from a flag).
type Value struct {
	Text      string
	List      []string
	IsList    bool
	Line, Col int
}

// Options are a filter's settings as the user wrote them, from a config
// file, a command-line flag or a Config built in code. A Factory reads them with the
// typed getters, each of which takes a default for an option not given;
// a value that does not parse is recorded and the default returned, so a
// Factory reads every option and then returns Err, and the user sees every
// mistake at once. An option the Factory never read is reported as unknown.
type Options struct {
	name   string
	vals   map[string]Value
	used   map[string]bool
	errs   []*OptionError
	filter struct{ line, col int }
	dryRun bool
	log    *slog.Logger
}

// An OptionError is a problem with one option (Key), or with the filter's
// options as a whole (Key empty), at Line:Col (0 when unknown).
type OptionError struct {
	Filter, Key string
	Line, Col   int
	Msg         string
}

func (e *OptionError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", e.Filter, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Filter, e.Key, e.Msg)
}

// OptionErrors is every problem found in one filter's options.
type OptionErrors []*OptionError

func (es OptionErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// NewOptions holds the options vals for the filter name, written at
// line:col (0:0 when not from a file).
func NewOptions(name string, vals map[string]Value, line, col int) *Options {
	if vals == nil {
		vals = map[string]Value{}
	}
	o := &Options{name: name, vals: vals, used: map[string]bool{}}
	o.filter.line, o.filter.col = line, col
	return o
}

// CheckOnly returns options that are only being checked (by `pier check`
// and the config loader): see DryRun.
func (o *Options) CheckOnly() *Options {
	o.dryRun = true
	return o
}

// WithLogger sets the logger the Filter is to log to (Logger), and
// returns o. pier gives each filter its own.
func (o *Options) WithLogger(l *slog.Logger) *Options {
	o.log = l
	return o
}

// Logger returns the logger the Filter logs to: the one set by
// WithLogger, or slog.Default(). Log from a Filter's own goroutines
// (an Output's, say), never from Process: a log write may block.
func (o *Options) Logger() *slog.Logger {
	if o.log == nil {
		return slog.Default()
	}
	return o.log
}

// DryRun reports that the options are only being checked. The Factory
// must then check everything it can without touching the system (opening
// files, say); the Filter it returns is not used.
func (o *Options) DryRun() bool { return o.dryRun }

// Name returns the filter's name.
func (o *Options) Name() string { return o.name }

// Has reports whether key was given.
func (o *Options) Has(key string) bool {
	_, ok := o.vals[key]
	o.used[key] = true
	return ok
}

// LookedUp returns, sorted, every key the Factory has asked for so far,
// given or not. Tests compare it with Spec.Options (see
// filtertest.CheckOptions), so an option read but not documented shows.
func (o *Options) LookedUp() []string {
	keys := make([]string, 0, len(o.used))
	for k := range o.used {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Errorf records a problem with key ("" for the options as a whole).
func (o *Options) Errorf(key, format string, args ...any) {
	e := &OptionError{Filter: o.name, Key: key, Msg: fmt.Sprintf(format, args...), Line: o.filter.line, Col: o.filter.col}
	if v, ok := o.vals[key]; ok && v.Line > 0 {
		e.Line, e.Col = v.Line, v.Col
	}
	o.errs = append(o.errs, e)
}

// Err reports every problem recorded, and every option given that no
// getter asked for, or nil.
func (o *Options) Err() error {
	var unknown []string
	for k := range o.vals {
		if !o.used[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		o.Errorf(k, "unknown option")
	}
	if len(o.errs) == 0 {
		return nil
	}
	sort.SliceStable(o.errs, func(i, j int) bool {
		a, b := o.errs[i], o.errs[j]
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	return OptionErrors(o.errs)
}

func (o *Options) scalar(key string) (string, bool) {
	o.used[key] = true
	v, ok := o.vals[key]
	if !ok {
		return "", false
	}
	if v.IsList {
		o.Errorf(key, "want a single value, not a list")
		return "", false
	}
	return v.Text, true
}

// String returns key's value, or def.
func (o *Options) String(key, def string) string {
	if s, ok := o.scalar(key); ok {
		return s
	}
	return def
}

// Enum returns key's value, which must be one of allowed, or def.
func (o *Options) Enum(key, def string, allowed ...string) string {
	s, ok := o.scalar(key)
	if !ok {
		return def
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	o.Errorf(key, "%q is not one of %s", s, strings.Join(allowed, ", "))
	return def
}

// Duration returns key's value as a duration (Go syntax: "150ms", "2s"),
// which must not be negative, or def.
func (o *Options) Duration(key string, def time.Duration) time.Duration {
	s, ok := o.scalar(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if n, err2 := strconv.ParseInt(s, 10, 64); err2 == nil && n == 0 {
			return 0
		}
		o.Errorf(key, "%q is not a duration (say 100ms, 2s, 1m)", s)
		return def
	}
	if d < 0 {
		o.Errorf(key, "%s is negative", s)
		return def
	}
	return d
}

// Int returns key's value as an integer in [min, max], or def.
func (o *Options) Int(key string, def, min, max int64) int64 {
	s, ok := o.scalar(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < min || n > max {
		o.Errorf(key, "%q is not a whole number from %d to %d", s, min, max)
		return def
	}
	return n
}

// Size returns key's value as a byte count: a whole number with an
// optional unit (B, KB, MB, GB in powers of 1000; KiB, MiB, GiB in
// powers of 1024), in [min, max], or def.
func (o *Options) Size(key string, def, min, max int64) int64 {
	s, ok := o.scalar(key)
	if !ok {
		return def
	}
	n, err := ParseSize(s)
	if err != nil || n < min || n > max {
		o.Errorf(key, "%q is not a size from %d to %d bytes (say 4096, 64KiB, 10MB)", s, min, max)
		return def
	}
	return n
}

// ParseSize parses a byte count as Options.Size does.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
	}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("filter: bad size %q", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("filter: size %q too large", s)
	}
	return n * mult, nil
}

// Float returns key's value as a number in [min, max], or def.
func (o *Options) Float(key string, def, min, max float64) float64 {
	s, ok := o.scalar(key)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < min || f > max {
		o.Errorf(key, "%q is not a number from %g to %g", s, min, max)
		return def
	}
	return f
}

// Bool returns key's value as true or false, or def.
func (o *Options) Bool(key string, def bool) bool {
	s, ok := o.scalar(key)
	if !ok {
		return def
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	o.Errorf(key, "%q is not true or false", s)
	return def
}

// Strings returns key's value as a list; a single value is a list of one.
func (o *Options) Strings(key string) []string {
	o.used[key] = true
	v, ok := o.vals[key]
	if !ok {
		return nil
	}
	if v.IsList {
		return v.List
	}
	return []string{v.Text}
}

// Prefixes returns key's value as a list of CIDR prefixes ("10.0.0.0/8",
// or a bare address for just that address).
func (o *Options) Prefixes(key string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range o.Strings(key) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, err2 := netip.ParseAddr(s)
			if err2 != nil {
				o.Errorf(key, "%q is not a CIDR prefix or an address", s)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		ps = append(ps, p.Masked())
	}
	return ps
}

// Direction returns key's value as a direction: "upstream" (the bytes the
// client sends), "client" (the bytes the upstream sends) or "both".
func (o *Options) Direction(key string, def Direction) Direction {
	switch o.Enum(key, "", "upstream", "client", "both") {
	case "upstream":
		return ToUpstream
	case "client":
		return ToClient
	case "both":
		return Both
	}
	return def
}
