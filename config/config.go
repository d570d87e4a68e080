package config

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pierproxy/pier/filter"
)

// Defaults of the optional fields. The loader fills them in, so callers
// see resolved values. They are exported because 'pier forward' offers the
// same settings as flags, with the same defaults.
const (
	DefaultGracePeriod      = 30 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultIdleTimeout      = time.Hour
	DefaultHalfCloseTimeout = time.Minute
)

// Config is a whole configuration file.
type Config struct {
	// GracePeriod is how long live sessions may take to finish after
	// SIGTERM or SIGINT before they are closed. Absent: DefaultGracePeriod.
	// Zero is refused in a file: the application layer reads it as "wait
	// for ever", which is not what "grace_period: 0s" says.
	GracePeriod time.Duration
	// Routes are the routes, in file order; at least one.
	Routes []Route
	// File is the name the configuration was parsed under (Load: its
	// path), for log lines. Empty for a Config built in code.
	File string
}

// Route is one listen-to-upstreams route.
type Route struct {
	// Name names the route in logs and metrics, and carries its connection
	// count across reloads. Required; unique in the file;
	// [a-z0-9][a-z0-9_.-]*, at most 64 characters.
	Name string
	// Listen holds the addresses clients arrive on, as host:port; at least
	// one. The host is empty (every address, IPv4 and IPv6), an IP
	// literal, or "localhost"; port 0 takes any free port, as tests do.
	Listen []string
	// Upstreams are the members sessions are sent to; at least one.
	Upstreams []Upstream
	// ConnectTimeout bounds resolving and dialing one upstream. Absent:
	// DefaultConnectTimeout. Zero is refused: a dial must not wait for
	// ever on a silent upstream.
	ConnectTimeout time.Duration
	// IdleTimeout ends a session in which no byte moved either way for
	// this long. Absent: DefaultIdleTimeout. Zero (written 0 or 0s): no
	// idle timeout, as with 'pier forward -idle-timeout 0'.
	IdleTimeout time.Duration
	// HalfCloseTimeout ends a session this long after one side has sent
	// FIN, if the other has not finished by then. Absent:
	// DefaultHalfCloseTimeout. Zero: no half-close timeout.
	HalfCloseTimeout time.Duration
	// MaxConnections caps the route's live sessions; a client beyond it is
	// closed at once. Absent or 0: no cap.
	MaxConnections int
	// Filters are the route's filters, listed from the client's side
	// toward the upstream's. Each names a filter registered with package
	// filter; its options were checked (filter.Options.DryRun) at load.
	Filters []Filter
	// Pos is where the route is listed in the file (for a YAML alias, the
	// alias). Zero for a Route built in code.
	Pos Pos
}

// Upstream is one member of a route's pool.
type Upstream struct {
	// Address is host:port. Required. The host is a name, resolved for
	// every new session, or an IP literal; the port is 1 to 65535.
	Address string
	// Pos is where the upstream is listed in the file.
	Pos Pos
}

// Filter is one filter of a route, as written: `- dump: {format: hex}`,
// or just `- dump` for its defaults.
type Filter struct {
	Name    string
	Options map[string]filter.Value
	// Pos is where the filter is listed in the file.
	Pos Pos
}

// NewOptions returns the filter's options for its Factory.
func (f *Filter) NewOptions() *filter.Options {
	return filter.NewOptions(f.Name, f.Options, f.Pos.Line, f.Pos.Col)
}

// Pos is a position in the file; both fields count from 1.
type Pos struct{ Line, Col int }

// The schema: one line per field. The order is the order of the README's
// table and of the "known fields" hint in errors.
//
// req fields must be present; opt fields take the given default when
// absent. The parse function checks the value and reports what is wrong
// with it at its position.
var (
	configFields = []field[Config]{
		opt("grace_period", (*parser).duration, func(c *Config) *time.Duration { return &c.GracePeriod }, DefaultGracePeriod),
		req("routes", (*parser).routes, func(c *Config) *[]Route { return &c.Routes }),
	}
	routeFields = []field[Route]{
		req("name", (*parser).name, func(r *Route) *string { return &r.Name }),
		req("listen", (*parser).listens, func(r *Route) *[]string { return &r.Listen }),
		req("upstreams", (*parser).upstreams, func(r *Route) *[]Upstream { return &r.Upstreams }),
		opt("connect_timeout", (*parser).duration, func(r *Route) *time.Duration { return &r.ConnectTimeout }, DefaultConnectTimeout),
		opt("idle_timeout", (*parser).durationOrNever, func(r *Route) *time.Duration { return &r.IdleTimeout }, DefaultIdleTimeout),
		opt("half_close_timeout", (*parser).durationOrNever, func(r *Route) *time.Duration { return &r.HalfCloseTimeout }, DefaultHalfCloseTimeout),
		opt("max_connections", (*parser).count, func(r *Route) *int { return &r.MaxConnections }, 0),
		opt("filters", (*parser).filters, func(r *Route) *[]Filter { return &r.Filters }, nil),
	}
	upstreamFields = []field[Upstream]{
		req("address", (*parser).upstreamAddress, func(u *Upstream) *string { return &u.Address }),
	}
)

// maxFileSize bounds what Load reads. A configuration is kilobytes; 1 MiB
// holds thousands of routes. The YAML parser allocates up to about 100
// times a file's size, so the bound keeps a wrong path (/dev/zero) or a
// runaway generated file from costing a running proxy gigabytes on reload.
const maxFileSize = 1 << 20

// Load reads and validates the configuration file at path. If the file
// cannot be read, the error names it; if its content is at fault, the
// error is Errors. Either way no Config is returned, and a caller that is
// running a configuration should keep it.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s: larger than %d MiB, not a configuration file", path, maxFileSize>>20)
	}
	return Parse(path, data)
}

// Parse validates data as a configuration file; file names it in errors
// and in Config.File. Unlike Load, it does not bound the size of data. It returns the configuration with defaults filled
// in, or nil and Errors listing every problem found, in file order. An
// empty file, or one of only comments, is the error "no routes" at 1:1, so
// every Error has a line and a column.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file}
	root := p.load(data)
	var cfg Config
	if root != nil {
		decodeMap(p, root, "config", configFields, &cfg)
	}
	if len(p.errs) > 0 {
		return nil, p.result()
	}
	cfg.File = file
	return &cfg, nil
}
