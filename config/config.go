// Package config loads and validates pier's YAML configuration file.
//
// It stands at the edge of the system: the application layer (internal/app)
// loads a file with Load, compiles the result into the route table the data
// path uses, and swaps it in. Loading validates the whole file first and
// reports every problem it finds as file:line:col: message, so a bad file
// never replaces a good running configuration.
//
//	cfg, err := config.Load("pier.yaml")
//	var errs config.Errors
//	if errors.As(err, &errs) {
//		for _, e := range errs {
//			fmt.Println(e) // pier.yaml:4:15: idle_timeout: "soon" is not a duration
//		}
//	}
//
// The file is walked as a YAML node tree rather than decoded into structs,
// so that unknown fields, duplicate keys, wrong types and semantic errors
// all carry the position of the node at fault, and all are reported, not
// just the first.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"
)

// Defaults for optional fields; Load fills them in, so callers see resolved
// values.
const (
	DefaultGracePeriod      = 30 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultIdleTimeout      = time.Hour
	DefaultHalfCloseTimeout = time.Minute
)

// maxFileSize bounds what Load reads: a config file is kilobytes; anything
// near this is a mistake, not a config.
const maxFileSize = 16 << 20

// Config is a whole configuration file.
type Config struct {
	// GracePeriod is how long live sessions may take to finish after
	// SIGTERM before they are closed. Absent: DefaultGracePeriod.
	GracePeriod time.Duration
	// Routes are the routes, in file order; at least one.
	Routes []Route
	// File is the path the configuration was loaded from, if any.
	File string
}

// Route is one listen-to-upstreams route.
type Route struct {
	// Name names the route in logs; unique, [a-z0-9][a-z0-9_.-]*, at most
	// 64 characters.
	Name string
	// Listen holds host:port addresses; at least one. An empty host
	// listens on every address; port 0 takes any free port.
	Listen []string
	// Upstreams are the members sessions go to; at least one.
	Upstreams []Upstream
	// ConnectTimeout bounds resolving and dialing one upstream. Absent:
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout ends a session in which no byte moved either way for
	// this long. Absent: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// HalfCloseTimeout ends a session this long after one side finished
	// sending, if the other has not. Absent: DefaultHalfCloseTimeout.
	HalfCloseTimeout time.Duration
	// MaxConnections caps the route's live sessions. Absent or 0: no cap.
	MaxConnections int
	// Pos is where the route starts in the file.
	Pos Pos
}

// Upstream is one member of a route's pool.
type Upstream struct {
	// Address is host:port; the host is a name or an IP literal.
	Address string
	Pos     Pos
}

// Pos is a position in the file, 1-based.
type Pos struct{ Line, Col int }

// Error is one problem in a configuration file.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in a file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads and validates the configuration file at path.
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
		return nil, Errors{{File: path, Msg: fmt.Sprintf("file is larger than %d MiB", maxFileSize>>20)}}
	}
	return Parse(path, data)
}

// Parse validates data as a configuration file named file (used in error
// positions). It returns the configuration with defaults filled in, or
// Errors listing every problem.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file}
	var doc yaml.Node
	if err := yaml.Load(data, &doc); err != nil {
		if strings.Contains(err.Error(), "no documents") {
			return nil, Errors{{File: file, Msg: "no routes: the file is empty"}}
		}
		var le *yaml.LoadError
		if errors.As(err, &le) {
			p.errAt(le.Mark.Line, le.Mark.Column, "%s", le.Message)
			return nil, p.errs
		}
		return nil, Errors{{File: file, Msg: err.Error()}}
	}
	cfg := p.config(&doc)
	if len(p.errs) > 0 {
		p.sort()
		return nil, p.errs
	}
	cfg.File = file
	return cfg, nil
}
