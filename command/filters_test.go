package command

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/testutil"
)

// filterFlags parses args with nothing but the filter flags, as pier
// forward does, and returns the filters the configuration got, in order.
func filterFlags(args ...string) ([]config.Filter, error) {
	fs := newFlagSet("forward", "", "")
	var s settings
	registerFilterFlags(fs, &s)
	if _, err := fs.parse(args, io.Discard); err != nil {
		return nil, err
	}
	s.add("listen", "", "127.0.0.1:0", "argument 1")
	s.add("upstream", "", "127.0.0.1:1", "argument 2")
	cfg, err := config.FromCommandLine("forward", s.list)
	if err != nil {
		return nil, err
	}
	fl := cfg.Routes[0].Filters
	for i := range fl {
		fl[i].Pos = config.Pos{} // the flag it came from; compared apart
	}
	return fl, nil
}

// parseFilterFlag is one filter flag, --NAME v, through pier forward's
// path.
func parseFilterFlag(spec filter.Spec, v string) (config.Filter, error) {
	fl, err := filterFlags("--"+strings.ReplaceAll(spec.Name, "_", "-"), v)
	if err != nil {
		return config.Filter{}, err
	}
	return fl[0], nil
}

// Every registered filter has a flag, its name with - for _, and the
// name as a file writes it works too; the help shows one.
func TestFilterFlagPerFilter(t *testing.T) {
	fs := newFlagSet("forward", "pier forward", "")
	registerFilterFlags(fs, new(settings))
	fs.parse(nil, io.Discard)
	names := filter.Names()
	for _, want := range []string{"dump", "pcap", "rewrite", "latency", "bandwidth", "slicer", "reset", "timeout", "limit", "slow_close"} {
		if !slices.Contains(names, want) {
			t.Errorf("filter %q is not registered (registered: %v)", want, names)
		}
	}
	for _, name := range names {
		if fs.Lookup(strings.ReplaceAll(name, "_", "-")) == nil || fs.Lookup(name) == nil {
			t.Errorf("no flag for filter %q, or not in both spellings", name)
		}
	}
	var help strings.Builder
	fs.help(&help)
	if !strings.Contains(help.String(), "-slow-close") || strings.Contains(help.String(), "-slow_close") {
		t.Errorf("help should list -slow-close once, and not -slow_close:\n%s", help.String())
	}
	dash, err := filterFlags("--slow-close", "1s")
	if err != nil {
		t.Fatal(err)
	}
	underscore, err := filterFlags("--slow_close", "1s")
	if err != nil || !reflect.DeepEqual(dash, underscore) {
		t.Errorf("--slow_close gives %v, %v; --slow-close %v", underscore, err, dash)
	}
}

// A bare value sets the filter's main option (its FlagKey), as it is.
func TestFilterFlagBareValueSetsFlagKey(t *testing.T) {
	capture := filepath.Join(t.TempDir(), "x.pcapng")
	for _, tc := range []struct {
		name, value, key string
	}{
		{"latency", "100ms", "delay"},
		{"bandwidth", "1MB", "rate"},
		{"slicer", "3", "size"},
		{"reset", "5s", "after"},
		{"timeout", "2s", "after"},
		{"limit", "1KiB", "bytes"},
		{"slow_close", "250ms", "delay"},
		{"dump", "text", "format"},
		{"pcap", capture, "file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, ok := filter.Lookup(tc.name)
			if !ok {
				t.Fatalf("no filter %q", tc.name)
			}
			if spec.FlagKey != tc.key {
				t.Fatalf("FlagKey %q, want %q (README's bold option)", spec.FlagKey, tc.key)
			}
			f, err := parseFilterFlag(spec, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]filter.Value{tc.key: {Text: tc.value}}
			if f.Name != tc.name || !reflect.DeepEqual(f.Options, want) {
				t.Errorf("got %s %v, want %s %v", f.Name, f.Options, tc.name, want)
			}
		})
	}
	// Checking the options does not make the file.
	if _, err := os.Stat(capture); err == nil {
		t.Errorf("checking the pcap flag created %s", capture)
	}
}

// A value with = is a list of option=value; an option given twice is a
// list, in the order given.
func TestFilterFlagOptionLists(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        map[string]filter.Value
	}{
		{"latency", "delay=100ms,jitter=10ms,direction=upstream", map[string]filter.Value{
			"delay": {Text: "100ms"}, "jitter": {Text: "10ms"}, "direction": {Text: "upstream"},
		}},
		{"rewrite", "match=old.example,replace=new.example,direction=upstream", map[string]filter.Value{
			"match": {Text: "old.example"}, "replace": {Text: "new.example"}, "direction": {Text: "upstream"},
		}},
		// An empty value is a value: replace with nothing.
		{"rewrite", "match=secret,replace=", map[string]filter.Value{
			"match": {Text: "secret"}, "replace": {Text: ""},
		}},
		// Only the first = splits.
		{"rewrite", "match=a=b,replace=c", map[string]filter.Value{
			"match": {Text: "a=b"}, "replace": {Text: "c"},
		}},
		{"reset", "after=1s,clients=10.0.0.0/8,clients=192.0.2.1,clients=2001:db8::/32", map[string]filter.Value{
			"after":   {Text: "1s"},
			"clients": {IsList: true, List: []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"}},
		}},
		{"slow_close", " delay=1s", map[string]filter.Value{"delay": {Text: "1s"}}},
	} {
		t.Run(tc.name+" "+tc.value, func(t *testing.T) {
			spec, _ := filter.Lookup(tc.name)
			f, err := parseFilterFlag(spec, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.Options, tc.want) {
				t.Errorf("options %#v,\nwant %#v", f.Options, tc.want)
			}
		})
	}
}

// A flag that cannot work fails when parsed, with an error that says why.
func TestFilterFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        []string // in the error, all of them
	}{
		// rewrite has no main option: a bare value cannot say what it is.
		{"rewrite", "old.example", []string{"option=value"}},
		{"latency", "delay=100ms,bogus=1", []string{"bogus", "unknown option"}},
		{"dump", "format=hex,colour=red", []string{"colour", "unknown option"}},
		{"latency", "soon", []string{"delay", "not a duration"}},
		{"latency", "jitter=10ms", []string{"delay", "missing"}},
		{"bandwidth", "rate=fast", []string{"rate", "fast"}},
		{"dump", "xml", []string{"format", "xml"}},
		{"reset", "direction=sideways,after=1s", []string{"direction", "sideways"}},
		{"reset", "direction=client", []string{"bytes or after"}},
		{"slicer", "size=2,variation=2", []string{"variation"}},
		{"rewrite", "replace=x", []string{"match"}},
		{"rewrite", "regexp=a*", []string{"empty"}},
		{"rewrite", "match=a,regexp=b", []string{"match", "regexp"}},
		// A comma ends a value: a list item without = is refused.
		{"rewrite", "match=a,b,replace=c", []string{`"b"`, "option=value"}},
		{"latency", "=100ms", []string{"option=value"}},
		{"latency", "delay=1s,delay=2s", []string{"delay", "not a list"}},
		{"pcap", "file=" + filepath.Join(t.TempDir(), "no", "such", "dir", "x.pcapng"), []string{"file"}},
	} {
		t.Run(tc.name+" "+tc.value, func(t *testing.T) {
			spec, _ := filter.Lookup(tc.name)
			_, err := parseFilterFlag(spec, tc.value)
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// The error is placed at the flag.
			if flagName := "flag -" + strings.ReplaceAll(tc.name, "_", "-") + ": "; !strings.HasPrefix(err.Error(), flagName) {
				t.Errorf("error %q does not begin with %q", err, flagName)
			}
		})
	}
}

// Filter flags stack in command-line order, the same filter as often as
// given.
func TestFilterFlagsStackInOrder(t *testing.T) {
	fl, err := filterFlags(
		"-rewrite", "match=a,replace=b",
		"--latency", "5ms",
		"-dump", "text",
		"--rewrite", "match=b,replace=c,direction=client",
	)
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Filter{
		{Name: "rewrite", Options: map[string]filter.Value{"match": {Text: "a"}, "replace": {Text: "b"}}},
		{Name: "latency", Options: map[string]filter.Value{"delay": {Text: "5ms"}}},
		{Name: "dump", Options: map[string]filter.Value{"format": {Text: "text"}}},
		{Name: "rewrite", Options: map[string]filter.Value{"match": {Text: "b"}, "replace": {Text: "c"}, "direction": {Text: "client"}}},
	}
	if !reflect.DeepEqual(fl, want) {
		t.Errorf("filters\n%+v,\nwant\n%+v", fl, want)
	}
}

// pier forward with filter flags, end to end: --dump listed first sees
// what the client sent and what it receives, with --rewrite between it
// and the upstream changing both ways.
func TestForwardWithFilterFlags(t *testing.T) {
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		io.WriteString(c, "ping back: "+string(b))
	})
	dump := filepath.Join(t.TempDir(), "dump.txt")
	p := startPier(t, nil, 1, "forward", "127.0.0.1:0", up.Addr(),
		"--dump", "format=text,to="+dump,
		"--rewrite", "match=ping,replace=pong",
	)
	ans, err := exchange(p.addrs("forward")[0], "ping ping")
	if err != nil {
		t.Fatal(err)
	}
	if want := "pong back: pong pong"; ans != want {
		t.Errorf("client got %q, want %q", ans, want)
	}
	ls := p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "session") >= 1 })
	var id any
	for _, l := range ls {
		if l["msg"] == "session" {
			id = l["id"]
			if l["reason"] != "done" {
				t.Errorf("session ended %v (%v), want done", l["reason"], l["error"])
			}
		}
	}
	// The dump is written by its own goroutine, after the session's bytes:
	// read it once pier has stopped, which flushes it.
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	// The text under each header, by header ("session 1 client→upstream"):
	// a direction may come in several chunks.
	shown := map[string]string{}
	var block string
	for _, line := range strings.Split(string(b), "\n") {
		if text, ok := strings.CutPrefix(line, "  "); ok {
			shown[block] += text
			continue
		}
		f := strings.Fields(line)
		block = ""
		if len(f) >= 3 && f[0] == "session" {
			block = strings.Join(f[:3], " ")
		}
	}
	for dir, want := range map[string]string{
		"client→upstream": "ping ping",
		"upstream→client": "pong back: pong pong",
	} {
		if h := fmt.Sprintf("session %v %s", id, dir); shown[h] != want {
			t.Errorf("dump shows %q under %q, want %q:\n%s", shown[h], h, want, b)
		}
	}
	if end := fmt.Sprintf(`(?m)^session %v \S+ ended$`, id); !regexp.MustCompile(end).Match(b) {
		t.Errorf("dump lacks the session's end:\n%s", b)
	}
}

// A bad filter flag is a usage error: exit code 2, nothing started, the
// error and where to look.
func TestForwardBadFilterFlag(t *testing.T) {
	code, out, errs := runCLI("forward", "127.0.0.1:0", "127.0.0.1:1", "--rewrite", "old")
	want := "flag -rewrite: want option=value,... (the filter has no main option to take a value alone)\nsee 'pier forward -h'\n"
	if code != exitUsage || errs != want || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errs, want)
	}
}

// A filter flag's value, whatever it is, gives a filter's configuration
// or a clear error, never a panic.
func FuzzFilterFlag(f *testing.F) {
	for _, seed := range []string{"hex", "format=text,to=stdout", "100ms", "delay=1s,jitter=2s",
		"match=a,replace=b", "regexp=(", "=,=", "a=b,a=c,a=d", ",", "bytes=1KiB,direction=both"} {
		f.Add("latency", seed)
		f.Add("rewrite", seed)
		f.Add("dump", seed)
	}
	f.Fuzz(func(t *testing.T, name, v string) {
		spec, ok := filter.Lookup(name)
		if !ok || name == "pcap" && !strings.Contains(v, "=") {
			return // a pcap file path would be checked against the disk
		}
		cfg, err := parseFilterFlag(spec, v)
		if err != nil {
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("%s %q: error %v is not config.Errors", name, v, err)
			}
			for _, e := range errs {
				if e.Place != "flag -"+strings.ReplaceAll(name, "_", "-") || e.Msg == "" {
					t.Fatalf("%s %q: error %#v is not placed at the flag", name, v, e)
				}
			}
			return
		}
		if cfg.Name != name {
			t.Fatalf("%s %q: configured %q", name, v, cfg.Name)
		}
	})
}

// An empty value gives the filter its defaults, or the factory's error
// for an option it needs.
func TestFilterFlagEmptyValue(t *testing.T) {
	pass, _ := filter.Lookup("pass")
	if f, err := parseFilterFlag(pass, ""); err != nil || len(f.Options) != 0 {
		t.Errorf("--pass '': %v, %v; want the filter with no options", f, err)
	}
	latency, _ := filter.Lookup("latency")
	if _, err := parseFilterFlag(latency, ""); err == nil || !strings.Contains(err.Error(), "delay") {
		t.Errorf("--latency '': %v, want an error about delay", err)
	}
}
