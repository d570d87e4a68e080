package config

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pierproxy/pier/filter"
)

// sameConfig compares configs positions aside: a round trip through text
// moves every node.
var sameConfig = cmp.Options{
	cmpopts.IgnoreTypes(Pos{}),
	cmpopts.IgnoreFields(filter.Value{}, "Line", "Col"),
	cmpopts.IgnoreFields(Config{}, "File"),
	cmpopts.EquateComparable(netip.Prefix{}),
}

// full is a file that sets every field the schema has.
const full = `grace_period: 10s
resolver: {servers: ["127.0.0.1:5353", "[fd00::1]:53"], interval: 10s, timeout: 2s}
routes:
  - name: "2024"
    listen: [":9090", "[::1]:9091"]
    upstreams:
      - address: mail1.internal:25
        weight: 3
        max_connections: 10
      - {address: 10.0.0.2:25, backup: true, drain: true}
      - srv: _smtp._tcp.example.com
    balance: least_conn
    health_check: {interval: 3s, timeout: 1s, rise: 1, fall: 2, port: 26, send: !!binary AAEC/w==, expect: "250 \x01\t~\u0085"}
    passive_check: {failures: 0, backoff: 1s, max_backoff: 5s}
    retries: 0
    connect_timeout: 2s
    connect_budget: 3s
    when_all_down: try_all
    idle_timeout: 0s
    half_close_timeout: 0
    max_connections: 10000
    filters:
      - latency: {delay: 100ms, probability: 0.5}
      - reset: {after: 1s, clients: [10.0.0.0/8, 192.0.2.1]}
      - pass
  - name: "null"
    listen: "localhost:9092"
    upstreams:
      - {address: "h:1"}
      - address: "10.0.0.9:443"
        upstream_tls: {server_name: 10.0.0.9, insecure_skip_verify: true}
    health_check: {expect_regexp: '^\+OK\s', tls: true}
    tls:
      certificates:
        - {cert: testdata/tls/server.pem, key: testdata/tls/server.key}
      min_version: "1.2"
      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
      alpn: [h2, http/1.1]
      client_auth: {ca: testdata/tls/ca.pem, required: true}
    upstream_tls:
      server_name: db.internal
      ca: testdata/tls/ca.pem
      cert: testdata/tls/server.pem
      key: testdata/tls/server.key
      alpn: [postgresql]
    handshake_timeout: 3s
admin: {listen: "localhost:9901", token_file: testdata/admin-token}
toxiproxy: {listen: "[::1]:8474", allow_remote: false}
`

// repoConfigs returns every configuration file the repository holds: the
// YAML examples of README.md and docs/, and the fuzz corpus's inputs.
func repoConfigs(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{"full": []byte(full), "good": []byte(good)}
	docs, _ := filepath.Glob("../docs/*.md")
	for _, md := range append([]string{"../README.md"}, docs...) {
		text, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range yamlBlocks(string(text)) {
			out[md+" example "+strconv.Itoa(i+1)] = []byte(b)
		}
	}
	corpus, _ := filepath.Glob("testdata/fuzz/FuzzParse/*")
	for _, path := range corpus {
		data, ok := corpusInput(t, path)
		if ok {
			out[path] = data
		}
	}
	for _, tc := range errorCases {
		out["error case "+tc.name] = []byte(tc.doc) // they do not parse: skipped
	}
	return out
}

// corpusInput reads a one-value []byte fuzz corpus file.
func corpusInput(t *testing.T, path string) ([]byte, bool) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, v, ok := strings.Cut(string(text), "\n")
	v, ok2 := strings.CutPrefix(strings.TrimSpace(v), "[]byte(")
	v, ok3 := strings.CutSuffix(v, ")")
	s, err := strconv.Unquote(v)
	if !ok || !ok2 || !ok3 || err != nil {
		t.Fatalf("%s: not a []byte corpus file", path)
	}
	return []byte(s), true
}

// Parse(Marshal(cfg)) is cfg, positions aside, for every configuration in
// the repository that parses, and Marshal is stable: the config read back
// marshals to the same bytes. JSON reads back to the same config too.
func TestMarshalRoundTrip(t *testing.T) {
	parsed := 0
	for name, data := range repoConfigs(t) {
		cfg, err := Parse(name, data)
		if err != nil {
			continue
		}
		parsed++
		t.Run(name, func(t *testing.T) { checkRoundTrip(t, cfg) })
	}
	if parsed < 5 {
		t.Errorf("only %d configurations parsed: the sources moved?", parsed)
	}
}

func checkRoundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	text, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again", text)
	if err != nil {
		t.Fatalf("Marshal's output does not parse: %v\n%s", err, text)
	}
	if d := cmp.Diff(cfg, again, sameConfig); d != "" {
		t.Fatalf("round trip changed the config (-before +after):\n%s\n%s", d, text)
	}
	if text2, err := Marshal(again); err != nil || !bytes.Equal(text, text2) {
		t.Fatalf("Marshal is not stable (%v):\n%s\n---\n%s", err, text, text2)
	}
	js, err := MarshalJSON(cfg)
	if err != nil || !json.Valid(js) {
		t.Fatalf("MarshalJSON: %v\n%s", err, js)
	}
	if hasBinary(cfg) {
		return // JSON has no bytes
	}
	fromJSON, err := Parse("json", js)
	if err != nil {
		t.Fatalf("MarshalJSON's output does not parse: %v\n%s", err, js)
	}
	if d := cmp.Diff(cfg, fromJSON, sameConfig); d != "" {
		t.Fatalf("JSON round trip changed the config (-before +after):\n%s\n%s", d, js)
	}
}

func hasBinary(cfg *Config) bool {
	for _, r := range cfg.Routes {
		if h := r.HealthCheck; h != nil && (!utf8.ValidString(h.Send) || !utf8.ValidString(h.Expect)) {
			return true
		}
	}
	return false
}

// A Config built in code marshals to what Check made of it.
func TestMarshalBuiltInCode(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"minimal", Config{Routes: []Route{{Name: "db", Listen: []string{"127.0.0.1:0"}, Upstreams: []Upstream{{Address: "127.0.0.1:5432"}}}}}},
		{"toxiproxy only", Config{Toxiproxy: &Toxiproxy{}}},
		{"everything", Config{
			GracePeriod: 90 * time.Second,
			Resolver:    Resolver{Servers: []string{"10.0.0.2:53"}, Interval: time.Minute, Timeout: time.Second},
			Routes: []Route{{
				Name:             "web",
				Listen:           []string{":8080", "[::1]:8081"},
				Upstreams:        []Upstream{{Address: "a.internal:80", Weight: 5, MaxConnections: 3}, {SRV: "_http._tcp.b.internal", Backup: true, Drain: true}},
				Balance:          "hash",
				HealthCheck:      &HealthCheck{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 3, Fall: 4, Port: 81, Send: "GET / HTTP/1.0\r\n\r\n", ExpectRegexp: `^HTTP/1\.[01] 200`},
				PassiveCheck:     PassiveCheck{Failures: 5, Backoff: time.Second, MaxBackoff: time.Hour},
				Retries:          1,
				ConnectTimeout:   time.Second,
				ConnectBudget:    1500 * time.Millisecond,
				WhenAllDown:      "try_all",
				IdleTimeout:      0,
				HalfCloseTimeout: 2 * time.Hour,
				MaxConnections:   7,
				Filters: []Filter{
					{Name: "latency", Options: map[string]filter.Value{"delay": {Text: "10ms"}, "jitter": {Text: "1ms"}}},
					{Name: "reset", Options: map[string]filter.Value{"after": {Text: "1s"}, "clients": {IsList: true, List: []string{"10.0.0.0/8"}}}},
					{Name: "pass"},
				},
			}},
			Admin:     &Admin{Listen: "[::]:9901", TokenFile: "testdata/admin-token"},
			Toxiproxy: &Toxiproxy{Listen: ":8474", AllowRemote: true},
		}},
		{"the edge", Config{
			Allow:  []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
			Deny:   []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")},
			Limits: &Limits{AcceptRate: &Rate{PerSecond: 0.25}, PerClient: &PerClient{Rate: &Rate{PerSecond: 20, Burst: 40}, IPv6Prefix: 48}},
			Routes: []Route{{
				Name:           "db",
				Listen:         []string{"127.0.0.1:0"},
				Upstreams:      []Upstream{{Address: "127.0.0.1:5432", SendProxy: "none"}, {Address: "127.0.0.1:5433", SendProxy: "v1"}},
				HealthCheck:    &HealthCheck{SendProxy: "v2"},
				MaxConnections: 10,
				Match:          &Match{SNI: []string{"db.example.com", "*.db.example.com"}, ALPN: []string{"postgresql"}, Source: []netip.Prefix{netip.MustParsePrefix("::1/128")}},
				PeekTimeout:    time.Second,
				ProxyProtocol:  &ProxyProtocol{Accept: "v1", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Required: true, Timeout: 500 * time.Millisecond},
				SendProxy:      "v2",
				Allow:          []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
				Deny:           []netip.Prefix{netip.MustParsePrefix("fd00::/8")},
				Limits:         &Limits{PerClient: &PerClient{MaxConnections: 2, MaxTracked: 11}},
			}, {
				Name:          "rest",
				Listen:        []string{"127.0.0.1:0"},
				Upstreams:     []Upstream{{Address: "127.0.0.1:80"}},
				Match:         &Match{Default: true},
				PeekTimeout:   time.Second,
				ProxyProtocol: &ProxyProtocol{Accept: "v1", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Required: true, Timeout: 500 * time.Millisecond},
			}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if err := Check(&cfg); err != nil {
				t.Fatal(err)
			}
			text, err := Marshal(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse("again", text)
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if d := cmp.Diff(&cfg, again, sameConfig, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("(-built +read back):\n%s\n%s", d, text)
			}
			if c.name == "the edge" {
				for _, want := range []string{"rate: 15/m", "rate: 20/s, burst: 40", `sni: [db.example.com, '*.db.example.com']`, "source: ['::1/128']",
					"send_proxy: none", "peek_timeout: 1s", "trusted: [127.0.0.0/8]", "required: true", "timeout: 500ms", "max_tracked: 11"} {
					if !strings.Contains(string(text), want) {
						t.Errorf("Marshal lacks %q:\n%s", want, text)
					}
				}
			}
		})
	}
}

// The JSON form keeps the schema's order and types: numbers and booleans
// are JSON's, durations and addresses text.
func TestMarshalJSONShape(t *testing.T) {
	cfg, err := Parse("f", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	js, err := MarshalJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"grace_period": "10s"`, `"retries": 0`, `"backup": true`, `"weight": 3`, `"name": "2024"`,
		`"probability": 0.5`, `"clients": [`, `"pass"`, `"token_file": "testdata/admin-token"`, `"allow_remote"`,
	} {
		if want == `"allow_remote"` {
			if strings.Contains(string(js), want) {
				t.Errorf("allow_remote false is written: %s", js)
			}
			continue
		}
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js)
		}
	}
	order := []string{`"grace_period"`, `"routes"`, `"resolver"`, `"admin"`, `"toxiproxy"`}
	last := -1
	for _, k := range order {
		i := strings.Index(string(js), k)
		if i < last {
			t.Errorf("%s out of the schema's order:\n%s", k, js)
		}
		last = i
	}
}
