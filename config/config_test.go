package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseFull(t *testing.T) {
	doc := `grace_period: 10s
routes:
  - name: smtp
    listen: [":9090", "[::1]:9091"]
    upstreams:
      - address: mail1.internal:25
      - address: 10.0.0.2:25
    connect_timeout: 2s
    idle_timeout: 1h
    half_close_timeout: 30s
    max_connections: 10000
  - name: db
    listen: ["127.0.0.1:0"]
    upstreams: [{address: "db:5432"}]
`
	cfg, err := Parse("pier.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:        "pier.yaml",
		GracePeriod: 10 * time.Second,
		Routes: []Route{{
			Name:             "smtp",
			Listen:           []string{":9090", "[::1]:9091"},
			Upstreams:        []Upstream{{"mail1.internal:25", Pos{6, 9}}, {"10.0.0.2:25", Pos{7, 9}}},
			ConnectTimeout:   2 * time.Second,
			IdleTimeout:      time.Hour,
			HalfCloseTimeout: 30 * time.Second,
			MaxConnections:   10000,
			Pos:              Pos{3, 5},
		}, {
			Name:             "db",
			Listen:           []string{"127.0.0.1:0"},
			Upstreams:        []Upstream{{"db:5432", Pos{14, 17}}},
			ConnectTimeout:   DefaultConnectTimeout,
			IdleTimeout:      DefaultIdleTimeout,
			HalfCloseTimeout: DefaultHalfCloseTimeout,
			Pos:              Pos{12, 5},
		}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("config differs (-want +got):\n%s", d)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("f", []byte("routes: [{name: r, listen: [':1'], upstreams: [{address: 'h:1'}]}]"))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if cfg.GracePeriod != DefaultGracePeriod || r.ConnectTimeout != DefaultConnectTimeout ||
		r.IdleTimeout != DefaultIdleTimeout || r.HalfCloseTimeout != DefaultHalfCloseTimeout || r.MaxConnections != 0 {
		t.Errorf("defaults not applied: %+v %+v", cfg, r)
	}
}

const good = "routes:\n  - name: r\n    listen: [\"127.0.0.1:1\"]\n    upstreams: [{address: \"h:1\"}]\n"

// Every error kind is reported at the line and column of the node at fault.
func TestErrorPositions(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		line, col int
		msg       string
	}{
		{"syntax", "routes: [\n", 2, 1, "did not find expected"},
		{"tab", "routes:\n\t- name: r\n", 2, 1, "cannot start any token"},
		{"empty", "", 0, 0, "no routes"},
		{"comments only", "# nothing\n", 0, 0, "no routes"},
		{"null document", "~\n", 1, 1, "no routes"},
		{"no routes key", "grace_period: 1s\n", 1, 1, "no routes"},
		{"empty routes", "routes: []\n", 1, 9, "no routes"},
		{"top level list", "- a\n", 1, 1, "want a mapping"},
		{"unknown top field", good + "extra: 1\n", 5, 1, `unknown field "extra"`},
		{"unknown route field", good + "    colour: red\n", 5, 5, `unknown field "colour"`},
		{"unknown upstream field", "routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{address: 'h:1', wieght: 2}]\n", 4, 34, `unknown field "wieght"`},
		{"duplicate top key", good + "routes: []\n", 5, 1, `duplicate key "routes"`},
		{"duplicate route key", good + "    name: s\n", 5, 5, `duplicate key "name" (first at line 2)`},
		{"routes not a list", "routes: {name: r}\n", 1, 9, "want a list"},
		{"listen not a list", "routes:\n  - name: r\n    listen: ':1'\n    upstreams: [{address: 'h:1'}]\n", 3, 13, "want a list"},
		{"listen item a mapping", "routes:\n  - name: r\n    listen: [{a: 1}]\n    upstreams: [{address: 'h:1'}]\n", 3, 14, "want a value"},
		{"listen empty", "routes:\n  - name: r\n    listen: []\n    upstreams: [{address: 'h:1'}]\n", 3, 13, "at least one address"},
		{"upstreams empty", "routes:\n  - name: r\n    listen: [':1']\n    upstreams: []\n", 4, 16, "at least one upstream"},
		{"missing name", "routes:\n  - listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 5, "missing name"},
		{"missing listen", "routes:\n  - name: r\n    upstreams: [{address: 'h:1'}]\n", 2, 5, "missing listen"},
		{"missing upstreams", "routes:\n  - name: r\n    listen: [':1']\n", 2, 5, "missing upstreams"},
		{"missing address", "routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{}]\n", 4, 17, "missing address"},
		{"bad name", "routes:\n  - name: Bad Name\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 2, 11, "lower-case"},
		{"bad duration", good + "    idle_timeout: soon\n", 5, 19, `"soon" is not a positive duration`},
		{"duration with words", good + "    connect_timeout: 5 seconds\n", 5, 22, "not a positive duration"},
		{"negative duration", good + "    half_close_timeout: -1s\n", 5, 25, "not a positive duration"},
		{"zero duration", good + "    idle_timeout: 0s\n", 5, 19, "not a positive duration"},
		{"bad grace", "grace_period: [1]\n" + good, 1, 15, "want a value"},
		{"bad max", good + "    max_connections: lots\n", 5, 22, "not a whole number"},
		{"negative max", good + "    max_connections: -3\n", 5, 22, "not a whole number"},
		{"listen no port", "routes:\n  - name: r\n    listen: ['127.0.0.1']\n    upstreams: [{address: 'h:1'}]\n", 3, 14, "want host:port"},
		{"listen port range", "routes:\n  - name: r\n    listen: [':70000']\n    upstreams: [{address: 'h:1'}]\n", 3, 14, "0 to 65535"},
		{"listen host name", "routes:\n  - name: r\n    listen: ['example.com:1']\n    upstreams: [{address: 'h:1'}]\n", 3, 14, "IP address or localhost"},
		{"upstream no port", "routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{address: 'h'}]\n", 4, 27, "want host:port"},
		{"upstream empty host", "routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{address: ':25'}]\n", 4, 27, "no host"},
		{"upstream port zero", "routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{address: 'h:0'}]\n", 4, 27, "1 to 65535"},
		{"upstream bad host", "routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{address: 'a b:1'}]\n", 4, 27, "neither an IP"},
		{"duplicate route name", good + "  - name: r\n    listen: [':2']\n    upstreams: [{address: 'h:1'}]\n", 5, 5, "already used by the route at line 2"},
		{"same listen twice", good + "  - name: s\n    listen: ['127.0.0.1:1']\n    upstreams: [{address: 'h:1'}]\n", 5, 5, "collides"},
		{"wildcard overlaps", good + "  - name: s\n    listen: [':1']\n    upstreams: [{address: 'h:1'}]\n", 5, 5, "collides"},
		{"localhost overlaps", good + "  - name: s\n    listen: ['localhost:1']\n    upstreams: [{address: 'h:1'}]\n", 5, 5, "collides"},
		{"unknown alias", "routes: *nope\n", 1, 9, "unknown anchor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.doc))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("got %v, want Errors", err)
			}
			e := errs[0]
			if e.Line != tc.line || e.Col != tc.col || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got %v, want f.yaml:%d:%d: ...%s...", e, tc.line, tc.col, tc.msg)
			}
			if e.File != "f.yaml" {
				t.Errorf("file %q", e.File)
			}
		})
	}
}

// Port 0 and different ports never collide; neither do different hosts.
func TestListenWithoutCollision(t *testing.T) {
	doc := "routes:\n" +
		"  - {name: a, listen: ['127.0.0.1:0', '127.0.0.1:5'], upstreams: [{address: 'h:1'}]}\n" +
		"  - {name: b, listen: ['127.0.0.1:0', '127.0.0.2:5', ':6'], upstreams: [{address: 'h:1'}]}\n"
	if _, err := Parse("f", []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// All errors in a file are reported, in file order.
func TestAllErrorsReported(t *testing.T) {
	doc := "routes:\n  - name: r\n    listen: [':x']\n    upstreams: [{address: 'h'}]\n    idle_timeout: never\n    bogus: 1\n"
	_, err := Parse("f", []byte(doc))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatal(err)
	}
	var lines []int
	for _, e := range errs {
		lines = append(lines, e.Line)
	}
	if d := cmp.Diff([]int{3, 4, 5, 6}, lines); d != "" {
		t.Errorf("error lines (-want +got):\n%s\n%v", d, err)
	}
	if got := strings.Count(err.Error(), "\n") + 1; got != 4 {
		t.Errorf("Error() has %d lines, want one per error", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pier.yaml")
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil || cfg.File != path {
		t.Fatalf("%v %v", cfg, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte("routes: [\n"), 0o644)
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":2:1:") {
		t.Errorf("bad file: %v", err)
	}
}

// Every YAML example in the README is a configuration pier loads.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(string(readme))
	if len(blocks) == 0 {
		t.Fatal("README has no yaml examples")
	}
	for i, b := range blocks {
		if _, err := Parse("README.md example "+string(rune('1'+i)), []byte(b)); err != nil {
			t.Errorf("README example %d does not load:\n%v\n%s", i+1, err, b)
		}
	}
}

func yamlBlocks(md string) []string {
	var out []string
	for {
		i := strings.Index(md, "```yaml\n")
		if i < 0 {
			return out
		}
		md = md[i+len("```yaml\n"):]
		j := strings.Index(md, "```")
		if j < 0 {
			return out
		}
		out = append(out, md[:j])
		md = md[j+3:]
	}
}
