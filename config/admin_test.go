package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The admin server listens on loopback only unless it has a token: a
// wildcard, an outside IP or a host name without token_file is an error at
// admin.listen's line and column; with a token file any address is fine.
// routes may be empty or absent only beside toxiproxy.
func TestAdminAndToxiproxyYAML(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		want      string // "" accepted; else the whole first error
	}{
		{"loopback v4", good + "admin: {listen: \"127.0.0.1:9901\"}\n", ""},
		{"loopback v4 elsewhere in 127/8", good + "admin: {listen: \"127.1.2.3:9901\"}\n", ""},
		{"loopback v6", good + "admin: {listen: \"[::1]:9901\"}\n", ""},
		{"localhost", good + "admin: {listen: \"localhost:9901\"}\n", ""},
		{"v4-mapped loopback", good + "admin: {listen: \"[::ffff:127.0.0.1]:9901\"}\n", ""},
		{"every address v4", good + "admin:\n  listen: 0.0.0.0:9901\n", "f:6:11: admin: listen: 0.0.0.0:9901 is not a loopback address: set token_file"},
		{"every address, empty host", good + "admin: {listen: \":9901\"}\n", "f:5:17: admin: listen: :9901 is not a loopback address: set token_file"},
		{"every address v6", good + "admin: {listen: \"[::]:9901\"}\n", "f:5:17: admin: listen: [::]:9901 is not a loopback address: set token_file"},
		{"outside IP", good + "admin: {listen: \"192.0.2.1:9901\"}\n", "f:5:17: admin: listen: 192.0.2.1:9901 is not a loopback address: set token_file"},
		{"host name", good + "admin: {listen: \"admin.example:9901\"}\n", `f:5:17: admin: listen: "admin.example:9901": the host must be empty (every address), an IP address or localhost`},
		{"every address with a token", good + "admin: {listen: \"0.0.0.0:9901\", token_file: testdata/admin-token}\n", ""},
		{"bad token file: no loopback error too", good + "admin: {listen: \"0.0.0.0:9901\", token_file: testdata/nope}\n", `f:5:45: admin: token_file: "testdata/nope": no such file or directory`},
		{"empty token file", good + "admin: {listen: \"127.0.0.1:2\", token_file: testdata/admin-token-empty}\n", `f:5:44: admin: token_file: "testdata/admin-token-empty": empty: write the token in it`},
		{"token file is a directory", good + "admin: {listen: \"127.0.0.1:2\", token_file: testdata}\n", `f:5:44: admin: token_file: "testdata": not a regular file`},
		{"missing listen", good + "admin: {token_file: testdata/admin-token}\n", `f:5:8: admin: missing required field "listen"`},
		{"unknown admin field", good + "admin: {listen: \"127.0.0.1:2\", token: x}\n", `f:5:32: admin: unknown field "token" (known: listen, token_file)`},
		{"admin is a string", good + "admin: \"127.0.0.1:1\"\n", `f:5:8: admin: want a mapping, got "127.0.0.1:1"`},
		{"admin listen without port", good + "admin: {listen: \"127.0.0.1\"}\n", `f:5:17: admin: listen: "127.0.0.1": missing port: want host:port`},
		{"admin collides with a route", good + "admin: {listen: \":1\", token_file: testdata/admin-token}\n", `f:5:17: admin: listen: ":1" overlaps "127.0.0.1:1" of route "r" (line 3)`},
		{"admin written before the routes collides too", "admin: {listen: \"127.0.0.1:1\"}\n" + good, `f:1:17: admin: listen: "127.0.0.1:1" overlaps "127.0.0.1:1" of route "r" (line 4)`},
		{"port 0 collides with nothing", route(`["127.0.0.1:0"]`, `[{address: "h:1"}]`) + "admin: {listen: \"127.0.0.1:0\"}\ntoxiproxy: {listen: \"127.0.0.1:0\"}\n", ""},

		{"toxiproxy beside routes", good + "toxiproxy: {listen: \"127.0.0.1:8474\"}\n", ""},
		{"toxiproxy alone", "toxiproxy: {listen: \"localhost:8474\"}\n", ""},
		{"toxiproxy with empty routes", "routes: []\ntoxiproxy: {}\n", ""},
		{"toxiproxy remote refused", "toxiproxy: {listen: \"0.0.0.0:8474\"}\n", "f:1:21: toxiproxy: listen: 0.0.0.0:8474 is not a loopback address: Toxiproxy's API has no authentication; set allow_remote: true to serve it to other hosts anyway"},
		{"toxiproxy remote allowed", "toxiproxy: {listen: \":8474\", allow_remote: true}\n", ""},
		{"toxiproxy allow_remote not a bool", "toxiproxy: {allow_remote: yes}\n", `f:1:27: toxiproxy: allow_remote: "yes" is not true or false`},
		{"toxiproxy collides with admin", "admin: {listen: \"127.0.0.1:8474\"}\ntoxiproxy: {}\n", `f:2:12: toxiproxy: listen: "127.0.0.1:8474" overlaps "127.0.0.1:8474" of admin (line 1)`},
		{"toxiproxy's default collides with a route", "routes:\n  - {name: r, listen: \":8474\", upstreams: [{address: \"h:1\"}]}\ntoxiproxy: {}\n", `f:3:12: toxiproxy: listen: "127.0.0.1:8474" overlaps ":8474" of route "r" (line 2)`},
		{"toxiproxy null", "toxiproxy:\n", "f:1:11: toxiproxy: want a mapping, got nothing"},
		{"no routes without toxiproxy", "admin: {listen: \"127.0.0.1:1\"}\n", `f:1:1: config: missing required field "routes"`},
		{"empty routes without toxiproxy", "routes: []\nadmin: {listen: \"127.0.0.1:1\"}\n", "f:1:9: routes: no routes: need at least one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("f", []byte(c.doc))
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				checkServers(t, cfg, true)
				return
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want Errors", err)
			}
			if got := errs[0].Error(); got != c.want || len(errs) > 1 {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

// checkServers checks what a config's servers must be; parsed, they have
// positions.
func checkServers(t *testing.T, cfg *Config, parsed bool) {
	t.Helper()
	if a := cfg.Admin; a != nil {
		l, err := parseListen(a.Listen)
		if err != nil || !l.loopback() && a.TokenFile == "" || parsed && a.Pos.Line < 1 {
			t.Errorf("admin accepted: %+v (%v)", a, err)
		}
	}
	if x := cfg.Toxiproxy; x != nil {
		l, err := parseListen(x.Listen)
		if err != nil || !l.loopback() && !x.AllowRemote || parsed && x.Pos.Line < 1 {
			t.Errorf("toxiproxy accepted: %+v (%v)", x, err)
		}
	}
	if len(cfg.Routes) == 0 && cfg.Toxiproxy == nil {
		t.Errorf("no routes and no toxiproxy accepted")
	}
}

// The servers' fields are read as written, with their defaults.
func TestAdminAndToxiproxyValues(t *testing.T) {
	cfg, err := Parse("f", []byte(good+"admin:\n  listen: \"[::1]:9901\"\n  token_file: testdata/admin-token\ntoxiproxy: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Admin:     &Admin{Listen: "[::1]:9901", TokenFile: "testdata/admin-token", Pos: Pos{Line: 6, Col: 3}},
		Toxiproxy: &Toxiproxy{Listen: DefaultToxiproxyListen, Pos: Pos{Line: 8, Col: 12}},
	}
	if d := cmp.Diff(want, cfg, cmpopts.IgnoreFields(Config{}, "GracePeriod", "Routes", "Resolver", "File")); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	noServers, err := Parse("f", []byte(good))
	if err != nil || noServers.Admin != nil || noServers.Toxiproxy != nil {
		t.Errorf("servers without their fields: %+v %v", noServers, err)
	}
}

// The token is the file's first line without its line break, and the
// rules Load applies are ReadToken's, each failure naming the file.
func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, want, err string
	}{
		{"line", write("a", "s3cret\n"), "s3cret", ""},
		{"crlf and spaces", write("b", "s3cret \r\n\r\n"), "s3cret", ""},
		{"exactly 4 KiB", write("c", strings.Repeat("x", MaxTokenSize)), strings.Repeat("x", MaxTokenSize), ""},
		{"too large", write("d", strings.Repeat("x", MaxTokenSize+1)), "", "larger than 4 KiB: a token file holds one token"},
		{"empty", write("e", ""), "", "empty: write the token in it"},
		{"only a newline", write("f", "\n"), "", "empty: write the token in it"},
		{"a space inside", write("g", "two words\n"), "", `byte 4 of the token is ' ': a token is visible ASCII, sent in an HTTP header`},
		{"two lines", write("h", "a\nb\n"), "", `byte 2 of the token is '\n'`},
		{"missing", filepath.Join(dir, "nope"), "", "no such file or directory"},
		{"directory", dir, "", "not a regular file"},
		{"fifo, not waited on", fifo, "", "not a regular file"},
		{"device", "/dev/zero", "", "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadToken(c.path)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "config: token_file "+quote(c.path)+": ") {
					t.Errorf("got %q, %v; want an error naming the file with %q", got, err, c.err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Errorf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// A Config built in code is checked by the same rules, each error naming
// its field; Check keeps the servers as given, filling in Toxiproxy's
// default listen address.
func TestCheckServers(t *testing.T) {
	r := Route{Name: "db", Listen: []string{"127.0.0.1:9090"}, Upstreams: []Upstream{{Address: "127.0.0.1:5432"}}}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"loopback admin", Config{Routes: []Route{r}, Admin: &Admin{Listen: "127.0.0.1:9901"}}, ""},
		{"remote admin", Config{Routes: []Route{r}, Admin: &Admin{Listen: ":9901"}}, "admin: listen: :9901 is not a loopback address: set token_file"},
		{"admin without listen", Config{Routes: []Route{r}, Admin: &Admin{}}, `admin: missing required field "listen"`},
		{"bad token file", Config{Routes: []Route{r}, Admin: &Admin{Listen: ":9901", TokenFile: "testdata/nope"}}, `admin: token_file: "testdata/nope": no such file or directory`},
		{"admin collides", Config{Routes: []Route{r}, Admin: &Admin{Listen: "127.0.0.1:9090"}}, `admin: listen: "127.0.0.1:9090" overlaps "127.0.0.1:9090" of route "db"`},
		{"toxiproxy alone", Config{Toxiproxy: &Toxiproxy{}}, ""},
		{"remote toxiproxy", Config{Toxiproxy: &Toxiproxy{Listen: "0.0.0.0:8474"}}, "toxiproxy: listen: 0.0.0.0:8474 is not a loopback address: Toxiproxy's API has no authentication; set allow_remote: true to serve it to other hosts anyway"},
		{"remote toxiproxy allowed", Config{Toxiproxy: &Toxiproxy{Listen: "0.0.0.0:8474", AllowRemote: true}}, ""},
		{"no routes, no toxiproxy", Config{Admin: &Admin{Listen: "127.0.0.1:9901"}}, "the config: routes: no routes: need at least one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			err := Check(&cfg)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				checkServers(t, &cfg, false)
				if cfg.Toxiproxy != nil && cfg.Toxiproxy.Listen == "" {
					t.Error("toxiproxy's default listen address not filled in")
				}
				return
			}
			if err == nil || err.Error() != c.want {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

// pier forward -admin ADDR [-admin-token-file FILE] builds the admin
// mapping a file would hold; errors name the flag.
func TestFromCommandLineAdmin(t *testing.T) {
	base := []Setting{
		{Key: "listen", Text: "127.0.0.1:9090", Place: "argument 1"},
		{Key: "upstream", Text: "127.0.0.1:80", Place: "argument 2"},
	}
	admin := Setting{Key: "admin", Text: "127.0.0.1:9901", Place: "flag -admin"}
	token := Setting{Key: "admin_token_file", Text: "testdata/admin-token", Place: "flag -admin-token-file"}
	for _, c := range []struct {
		name string
		more []Setting
		want *Admin // nil with an error
		err  string
	}{
		{"none", nil, nil, ""},
		{"loopback", []Setting{admin}, &Admin{Listen: "127.0.0.1:9901"}, ""},
		{"token first", []Setting{token, {Key: "admin", Text: ":9901", Place: "flag -admin"}}, &Admin{Listen: ":9901", TokenFile: "testdata/admin-token"}, ""},
		{"remote without token", []Setting{{Key: "admin", Text: "0.0.0.0:9901", Place: "flag -admin"}}, nil, "flag -admin: 0.0.0.0:9901 is not a loopback address: set a token file"},
		{"bad address", []Setting{{Key: "admin", Text: "9901", Place: "flag -admin"}}, nil, `flag -admin: "9901": missing host: for every address on port 9901, write ":9901"`},
		{"token without admin", []Setting{token}, nil, "flag -admin-token-file: needs the admin server's listen address as well"},
		{"bad token file", []Setting{admin, {Key: "admin_token_file", Text: "testdata/nope", Place: "flag -admin-token-file"}}, nil, `flag -admin-token-file: "testdata/nope": no such file or directory`},
		{"collides with the route", []Setting{{Key: "admin", Text: ":9090", Place: "flag -admin"}, token}, nil, `flag -admin: ":9090" overlaps "127.0.0.1:9090" of route "forward"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := FromCommandLine("forward", append(append([]Setting(nil), base...), c.more...))
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Errorf("got  %v\nwant %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, cfg.Admin); d != "" {
				t.Errorf("admin (-want +got):\n%s", d)
			}
		})
	}
}
