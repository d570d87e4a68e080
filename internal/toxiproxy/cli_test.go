package toxiproxy_test

import (
	"errors"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cliTarget is one server toxiproxy-cli drives, and what the steps
// learnt of it.
type cliTarget struct {
	name, url string
	listen    string   // p1's address, read from `list`
	live      net.Conn // a connection opened before any toxic
}

// A cliStep is one toxiproxy-cli run: its arguments, the output it must
// print (ports normalized: ECHO is the upstream's address, LISTEN any
// other 127.0.0.1 port), and what the bytes through the proxy must then
// do.
type cliStep struct {
	args           []string
	stdout, stderr string
	code           int
	check          func(t *testing.T, tg *cliTarget)
}

var cliAddr = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

// The real toxiproxy-cli v2.12.0 drives pier as it drives
// toxiproxy-server: the same commands print the same words, byte for
// byte, to both, and the toxics it adds act on the bytes through the
// proxy it created.
func TestToxiproxyCLIDrivesPier(t *testing.T) {
	cli := toxiproxyBinary(t, envToxiproxyCLI)
	realURL := startToxiproxyServer(t)
	e := newEnv(t)
	echo := e.echo

	// fast is a round trip that no toxic slowed; slow one held at least d.
	fast := func(t *testing.T, c net.Conn) {
		t.Helper()
		if rt := roundTrip(t, c, "fast"); rt >= 250*time.Millisecond {
			t.Errorf("round trip %v with no latency toxic", rt)
		}
	}
	slow := func(t *testing.T, c net.Conn, d time.Duration) {
		t.Helper()
		if rt := roundTrip(t, c, "slow"); rt < d {
			t.Errorf("round trip %v under a %v latency toxic", rt, d)
		}
	}
	refused := func(t *testing.T, addr string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s: %v, want connection refused", addr, err)
		}
	}
	listed := func(t *testing.T, out string) string {
		t.Helper()
		f := strings.Split(out, "\t")
		if len(f) < 2 || !strings.HasPrefix(f[0], "p1") {
			t.Fatalf("list: %q", out)
		}
		return f[1]
	}

	steps := []cliStep{
		{args: []string{"list"}},
		{args: []string{"create", "-l", "127.0.0.1:0", "-u", echo, "p1"}, stdout: "Created new proxy p1\n"},
		{args: []string{"create", "-l", "127.0.0.1:0", "-u", echo, "p1"}, code: 1,
			stderr: "Failed to create proxy: Create: HTTP 409: proxy already exists\n\n"},
		{args: []string{"list"}, stdout: "p1\t127.0.0.1:LISTEN\tECHO\tenabled\t0\n"},
		{args: []string{"inspect", "p1"}, check: func(t *testing.T, tg *cliTarget) {
			tg.live = dial(t, tg.listen)
			fast(t, tg.live)
			fast(t, dial(t, tg.listen))
		}},
		{args: []string{"toxic", "add", "-t", "latency", "-a", "latency=300", "p1"},
			stdout: "Added downstream latency toxic 'latency_downstream' on proxy 'p1'\n",
			check: func(t *testing.T, tg *cliTarget) {
				slow(t, dial(t, tg.listen), 300*time.Millisecond)
				slow(t, tg.live, 300*time.Millisecond) // toxics reach live connections
			}},
		{args: []string{"toxic", "add", "-t", "latency", "-u", "-n", "up", "--tox", "0.5", "-a", "latency=1", "-a", "jitter=0", "p1"},
			stdout: "Added upstream latency toxic 'up' on proxy 'p1'\n"},
		{args: []string{"toxic", "add", "-t", "latency", "-n", "up", "p1"}, code: 1,
			stderr: "Failed to add toxic: failed to add toxic to proxy p1: AddToxic: HTTP 409: toxic already exists\n\n"},
		{args: []string{"toxic", "add", "-t", "nope", "p1"}, code: 1,
			stderr: "Failed to add toxic: failed to add toxic to proxy p1: AddToxic: HTTP 400: invalid toxic type\n\n"},
		{args: []string{"inspect", "p1"}, stdout: "up\ttype=latency\tstream=upstream\ttoxicity=0.50\tattributes=[\tjitter=0\tlatency=1\t]\n" +
			"latency_downstream\ttype=latency\tstream=downstream\ttoxicity=1.00\tattributes=[\tjitter=0\tlatency=300\t]\n"},
		{args: []string{"toxic", "update", "-n", "latency_downstream", "-a", "latency=600", "p1"},
			stdout: "Updated toxic 'latency_downstream' on proxy 'p1'\n",
			check:  func(t *testing.T, tg *cliTarget) { slow(t, dial(t, tg.listen), 600*time.Millisecond) }},
		{args: []string{"inspect", "p1"}, stdout: "up\ttype=latency\tstream=upstream\ttoxicity=0.50\tattributes=[\tjitter=0\tlatency=1\t]\n" +
			"latency_downstream\ttype=latency\tstream=downstream\ttoxicity=1.00\tattributes=[\tjitter=0\tlatency=600\t]\n"},
		{args: []string{"toggle", "p1"}, stdout: "Proxy p1 is now disabled\n",
			check: func(t *testing.T, tg *cliTarget) { refused(t, tg.listen) }},
		{args: []string{"list"}, stdout: "p1\t127.0.0.1:LISTEN\tECHO\tdisabled\t2\n"},
		{args: []string{"toggle", "p1"}, stdout: "Proxy p1 is now enabled\n",
			check: func(t *testing.T, tg *cliTarget) { slow(t, dial(t, tg.listen), 600*time.Millisecond) }},
		{args: []string{"toxic", "remove", "-n", "latency_downstream", "p1"},
			stdout: "Removed toxic 'latency_downstream' on proxy 'p1'\n",
			check:  func(t *testing.T, tg *cliTarget) { fast(t, dial(t, tg.listen)) }},
		{args: []string{"toxic", "remove", "-n", "nope", "p1"}, code: 1,
			stderr: "Failed to remove toxic: failed to remove toxic 'nope' from proxy 'p1': HTTP 404: toxic not found\n\n"},
		{args: []string{"inspect", "nope"}, code: 1, stderr: "Failed to retrieve proxy nope: HTTP 404: proxy not found\n\n"},
		{args: []string{"list"}, stdout: "p1\t127.0.0.1:LISTEN\tECHO\tenabled\t1\n"},
		{args: []string{"delete", "p1"}, stdout: "Deleted proxy p1\n",
			check: func(t *testing.T, tg *cliTarget) { refused(t, tg.listen) }},
		{args: []string{"delete", "p1"}, code: 1, stderr: "Failed to retrieve proxy p1: HTTP 404: proxy not found\n\n"},
		{args: []string{"list"}},
	}

	for _, tg := range []*cliTarget{{name: "toxiproxy-server", url: realURL}, {name: "pier", url: e.url}} {
		t.Run(tg.name, func(t *testing.T) {
			for i, s := range steps {
				stdout, stderr, code := runCLI(t, cli, tg.url, s.args...)
				if strings.HasPrefix(stdout, "p1\t") {
					addr := listed(t, stdout)
					if tg.listen != "" && addr != tg.listen {
						t.Errorf("step %d: p1 listens on %s, was %s", i, addr, tg.listen)
					}
					tg.listen = addr
				}
				norm := func(s string) string {
					s = strings.ReplaceAll(s, echo, "ECHO")
					return cliAddr.ReplaceAllString(s, "127.0.0.1:LISTEN")
				}
				if norm(stdout) != s.stdout || norm(stderr) != s.stderr || code != s.code {
					t.Fatalf("step %d: toxiproxy-cli %s:\n\tgot  %d %q %q\n\twant %d %q %q",
						i, strings.Join(s.args, " "), code, norm(stdout), norm(stderr), s.code, s.stdout, s.stderr)
				}
				if s.check != nil {
					s.check(t, tg)
				}
			}
		})
	}
}
