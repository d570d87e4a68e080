package config

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	yaml "go.yaml.in/yaml/v4"
)

// FuzzParse: whatever the bytes, Parse does not panic, and returns either
// a configuration that is valid by every rule, or Errors in file order
// whose every entry has a line and column inside the file. An empty file
// is no exception: it is "no routes" at 1:1. A valid configuration
// survives a round trip: format, parse, format gives the same bytes and
// the same Config.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		good,
		"grace_period: 1s\n" + good,
		"routes:\n  - name: r\n    listen: [':1', '[::1]:2', 'localhost:3']\n    upstreams: [{address: 'h:1'}, {address: '10.0.0.1:2'}]\n    max_connections: 5\n    idle_timeout: 0\n",
		"routes:\n  - &r {name: r, listen: [':1'], upstreams: [{address: 'h:1'}]}\n  - *r\n",
		"routes:\n  - {name: a, listen: &l [':0'], upstreams: &u [{address: 'h:1'}]}\n  - {name: b, listen: *l, upstreams: *u}\n",
		"a: &a [*a]\n",
		"routes: {<<: {}}\n",
		"%YAML 1.1\n---\nroutes: []\n",
		"routes: !!str [a]\n",
	} {
		f.Add([]byte(s))
	}
	for _, tc := range errorCases {
		f.Add([]byte(tc.doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f", data)
		if err != nil {
			checkErrors(t, data, cfg, err)
			return
		}
		checkValid(t, cfg)
		text := format(t, cfg)
		again, err := Parse("f", text)
		if err != nil {
			t.Fatalf("formatted config does not parse: %v\n%s", err, text)
		}
		if d := cmp.Diff(cfg, again, cmpopts.IgnoreTypes(Pos{})); d != "" {
			t.Fatalf("round trip changed the config (-first +second):\n%s", d)
		}
		if text2 := format(t, again); !bytes.Equal(text, text2) {
			t.Fatalf("format is not stable:\n%s\n---\n%s", text, text2)
		}
	})
}

func checkErrors(t *testing.T, data []byte, cfg *Config, err error) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error %v is not a non-empty Errors", err)
	}
	if cfg != nil {
		t.Fatal("a config came back with errors")
	}
	if len(errs) > maxErrors+1 {
		t.Fatalf("%d errors, more than the cap", len(errs))
	}
	// A line past the file's end would point nowhere. YAML breaks lines
	// at \n, \r, \r\n, NEL, LS and PS; counting each counts at most one
	// too many.
	lines := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) +
		bytes.Count(data, []byte("\u0085")) + bytes.Count(data, []byte("\u2028")) + bytes.Count(data, []byte("\u2029"))
	for i, e := range errs {
		if e.File != "f" || e.Line < 1 || e.Col < 1 || e.Line > lines || e.Msg == "" {
			t.Fatalf("error %d is badly placed (file has %d lines): %#v", i, lines, e)
		}
		if i > 0 {
			p := errs[i-1]
			if p.Line > e.Line || p.Line == e.Line && p.Col > e.Col {
				t.Fatalf("errors out of order: %v before %v", p, e)
			}
			if *p == *e {
				t.Fatalf("error reported twice: %v", e)
			}
		}
	}
}

// checkValid checks a parsed config against every rule, stated afresh.
func checkValid(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.File != "f" || len(cfg.Routes) == 0 || cfg.GracePeriod <= 0 {
		t.Fatalf("bad config accepted: %+v", cfg)
	}
	var names, listens []string
	for _, r := range cfg.Routes {
		if !validName(r.Name) || slices.Contains(names, r.Name) {
			t.Fatalf("bad or duplicate name accepted: %q", r.Name)
		}
		names = append(names, r.Name)
		if len(r.Listen) == 0 || len(r.Upstreams) == 0 || r.ConnectTimeout <= 0 ||
			r.IdleTimeout < 0 || r.HalfCloseTimeout < 0 || r.MaxConnections < 0 || r.Pos.Line < 1 || r.Pos.Col < 1 {
			t.Fatalf("invalid route accepted: %+v", r)
		}
		for _, l := range r.Listen {
			if _, err := parseListen(l); err != nil {
				t.Fatalf("bad listen address accepted: %q: %v", l, err)
			}
			for _, prev := range listens {
				if overlaps(prev, l) {
					t.Fatalf("colliding listen addresses accepted: %q and %q", prev, l)
				}
			}
			listens = append(listens, l)
		}
		for _, u := range r.Upstreams {
			if err := checkUpstream(u.Address); err != nil || u.Pos.Line < 1 || u.Pos.Col < 1 {
				t.Fatalf("bad upstream accepted: %+v: %v", u, err)
			}
		}
	}
}

// format writes cfg as a configuration file, every field spelled out.
func format(t *testing.T, cfg *Config) []byte {
	t.Helper()
	type upstream struct {
		Address string `yaml:"address"`
	}
	type route struct {
		Name             string     `yaml:"name"`
		Listen           []string   `yaml:"listen"`
		Upstreams        []upstream `yaml:"upstreams"`
		ConnectTimeout   string     `yaml:"connect_timeout"`
		IdleTimeout      string     `yaml:"idle_timeout"`
		HalfCloseTimeout string     `yaml:"half_close_timeout"`
		MaxConnections   int        `yaml:"max_connections"`
	}
	var file struct {
		GracePeriod string  `yaml:"grace_period"`
		Routes      []route `yaml:"routes"`
	}
	file.GracePeriod = cfg.GracePeriod.String()
	for _, r := range cfg.Routes {
		fr := route{
			Name:             r.Name,
			Listen:           r.Listen,
			ConnectTimeout:   r.ConnectTimeout.String(),
			IdleTimeout:      r.IdleTimeout.String(),
			HalfCloseTimeout: r.HalfCloseTimeout.String(),
			MaxConnections:   r.MaxConnections,
		}
		for _, u := range r.Upstreams {
			fr.Upstreams = append(fr.Upstreams, upstream{u.Address})
		}
		file.Routes = append(file.Routes, fr)
	}
	out, err := yaml.Dump(&file)
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	return out
}
