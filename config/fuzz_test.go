package config

import (
	"bytes"
	"errors"
	"net/netip"
	"regexp"
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
		"resolver: {servers: ['10.0.0.2', '[fd00::1]:5353'], interval: 10s, timeout: 1s}\n" +
			"routes:\n  - name: r\n    listen: [':1']\n    balance: least_conn\n" +
			"    upstreams: [{address: 'h:1', weight: 3, max_connections: 9}, {srv: _x._tcp.y, backup: true, drain: true}]\n" +
			"    health_check: {interval: 3s, timeout: 1s, rise: 1, fall: 2, port: 8080, send: \"PING\\r\\n\", expect_regexp: '^\\+PONG'}\n" +
			"    passive_check: {failures: 0, backoff: 1s, max_backoff: 2s}\n" +
			"    retries: 0\n    connect_budget: 9s\n    when_all_down: try_all\n",
		"routes:\n  - name: r\n    listen: [':1']\n    upstreams: [{srv: _a._udp.b., weight: 1000}, {address: '[::1]:1', backup: false}]\n" +
			"    health_check: {send: !!binary AAEC/w==, expect: !!binary /w==}\n    passive_check: {}\n    balance: hash\n",
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
		if !slices.Contains(balances, r.Balance) || !slices.Contains(whenAllDown, r.WhenAllDown) ||
			r.Retries < 0 || r.Retries > maxRetries || r.ConnectBudget <= 0 {
			t.Fatalf("invalid pool settings accepted: %+v", r)
		}
		if pc := r.PassiveCheck; pc.Failures < 0 || pc.Backoff <= 0 || pc.MaxBackoff < pc.Backoff {
			t.Fatalf("invalid passive check accepted: %+v", pc)
		}
		if h := r.HealthCheck; h != nil {
			_, reErr := regexp.Compile(h.ExpectRegexp)
			if h.Interval <= 0 || h.Timeout <= 0 || h.Timeout > h.Interval || h.Rise < 1 || h.Rise > maxRiseFall ||
				h.Fall < 1 || h.Fall > maxRiseFall || len(h.Expect) > maxCheckRead || reErr != nil ||
				h.Expect != "" && h.ExpectRegexp != "" || h.Pos.Line < 1 || h.Pos.Col < 1 {
				t.Fatalf("invalid health check accepted: %+v", h)
			}
		}
		primary := false
		for _, u := range r.Upstreams {
			var err error
			switch {
			case (u.Address == "") == (u.SRV == ""):
				err = errors.New("not exactly one of address and srv")
			case u.Address != "":
				err = checkUpstream(u.Address)
				if u.Weight < 1 {
					err = errors.New("address member without a weight")
				}
			default:
				err = checkSRV(u.SRV)
			}
			if err != nil || u.Weight < 0 || u.Weight > maxWeight || u.MaxConnections < 0 || u.Pos.Line < 1 || u.Pos.Col < 1 {
				t.Fatalf("bad upstream accepted: %+v: %v", u, err)
			}
			primary = primary || !u.Backup
		}
		if !primary {
			t.Fatalf("route with only backups accepted: %+v", r)
		}
	}
	if cfg.Resolver.Interval <= 0 || cfg.Resolver.Timeout <= 0 {
		t.Fatalf("invalid resolver accepted: %+v", cfg.Resolver)
	}
	for _, s := range cfg.Resolver.Servers {
		if ap, err := netip.ParseAddrPort(s); err != nil || ap.Port() == 0 || ap.String() != s {
			t.Fatalf("bad DNS server accepted: %q: %v", s, err)
		}
	}
}

// format writes cfg as a configuration file, every field spelled out.
func format(t *testing.T, cfg *Config) []byte {
	t.Helper()
	type upstream struct {
		Address        string `yaml:"address,omitempty"`
		SRV            string `yaml:"srv,omitempty"`
		Weight         int    `yaml:"weight,omitempty"` // 0: an SRV member's records' weights
		Backup         bool   `yaml:"backup"`
		MaxConnections int    `yaml:"max_connections"`
		Drain          bool   `yaml:"drain"`
	}
	type healthCheck struct {
		Interval     string `yaml:"interval"`
		Timeout      string `yaml:"timeout"`
		Rise         int    `yaml:"rise"`
		Fall         int    `yaml:"fall"`
		Port         uint16 `yaml:"port"`
		Send         string `yaml:"send"`
		Expect       string `yaml:"expect"`
		ExpectRegexp string `yaml:"expect_regexp"`
	}
	type passiveCheck struct {
		Failures   int    `yaml:"failures"`
		Backoff    string `yaml:"backoff"`
		MaxBackoff string `yaml:"max_backoff"`
	}
	type route struct {
		Name             string       `yaml:"name"`
		Listen           []string     `yaml:"listen"`
		Upstreams        []upstream   `yaml:"upstreams"`
		Balance          string       `yaml:"balance"`
		HealthCheck      *healthCheck `yaml:"health_check,omitempty"`
		PassiveCheck     passiveCheck `yaml:"passive_check"`
		Retries          int          `yaml:"retries"`
		ConnectTimeout   string       `yaml:"connect_timeout"`
		ConnectBudget    string       `yaml:"connect_budget"`
		WhenAllDown      string       `yaml:"when_all_down"`
		IdleTimeout      string       `yaml:"idle_timeout"`
		HalfCloseTimeout string       `yaml:"half_close_timeout"`
		MaxConnections   int          `yaml:"max_connections"`
	}
	type resolver struct {
		Servers  []string `yaml:"servers,omitempty"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
	}
	var file struct {
		GracePeriod string   `yaml:"grace_period"`
		Routes      []route  `yaml:"routes"`
		Resolver    resolver `yaml:"resolver"`
	}
	file.GracePeriod = cfg.GracePeriod.String()
	file.Resolver = resolver{cfg.Resolver.Servers, cfg.Resolver.Interval.String(), cfg.Resolver.Timeout.String()}
	for _, r := range cfg.Routes {
		fr := route{
			Name:    r.Name,
			Listen:  r.Listen,
			Balance: r.Balance,
			PassiveCheck: passiveCheck{
				Failures:   r.PassiveCheck.Failures,
				Backoff:    r.PassiveCheck.Backoff.String(),
				MaxBackoff: r.PassiveCheck.MaxBackoff.String(),
			},
			Retries:          r.Retries,
			ConnectTimeout:   r.ConnectTimeout.String(),
			ConnectBudget:    r.ConnectBudget.String(),
			WhenAllDown:      r.WhenAllDown,
			IdleTimeout:      r.IdleTimeout.String(),
			HalfCloseTimeout: r.HalfCloseTimeout.String(),
			MaxConnections:   r.MaxConnections,
		}
		if h := r.HealthCheck; h != nil {
			fr.HealthCheck = &healthCheck{h.Interval.String(), h.Timeout.String(), h.Rise, h.Fall, h.Port, h.Send, h.Expect, h.ExpectRegexp}
		}
		for _, u := range r.Upstreams {
			fr.Upstreams = append(fr.Upstreams, upstream{u.Address, u.SRV, u.Weight, u.Backup, u.MaxConnections, u.Drain})
		}
		file.Routes = append(file.Routes, fr)
	}
	out, err := yaml.Dump(&file)
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	return out
}
