package command

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/testutil"
)

// wait bounds every wait in these tests; it is never slept.
const wait = 10 * time.Second

// TestMain doubles as pier itself: with PIER_TEST_MAIN set, the test binary
// runs pier's command line, so tests drive the real program, signals and
// exit codes included, without building a binary first.
func TestMain(m *testing.M) {
	if os.Getenv("PIER_TEST_MAIN") == "1" {
		if n := os.Getenv("PIER_TEST_NOFILE"); n != "" {
			lim, _ := strconv.ParseUint(n, 10, 64)
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
				fmt.Fprintln(os.Stderr, "setrlimit:", err)
				os.Exit(3)
			}
		}
		Main()
	}
	os.Exit(m.Run())
}

// pier is a running pier process and what it has logged.
type pier struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	seen  chan struct{} // signalled on every new log line
	exit  chan error
	out   bytes.Buffer // stdout
}

// startPier runs pier with args and waits until it has logged as many
// "listening" lines as listens says.
func startPier(t *testing.T, env []string, listens int, args ...string) *pier {
	t.Helper()
	cmd := exec.Command(os.Args[0], append(args, "-log-format", "json")...)
	cmd.Env = append(append(os.Environ(), "PIER_TEST_MAIN=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &pier{cmd: cmd, seen: make(chan struct{}, 1), exit: make(chan error, 1)}
	cmd.Stdout = &p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": "raw", "line": sc.Text()}
			}
			if testing.Verbose() {
				t.Logf("pier: %s", sc.Text())
			}
			p.mu.Lock()
			p.lines = append(p.lines, m)
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe; read it all first
		p.exit <- cmd.Wait()
		close(p.exit)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // by its own pid; harmless if it has exited
		<-p.exit
	})
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "listening") >= listens })
	return p
}

func count(lines []map[string]any, msg string) int {
	n := 0
	for _, l := range lines {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// waitLog waits until cond holds over the lines logged so far.
func (p *pier) waitLog(t *testing.T, cond func([]map[string]any) bool) []map[string]any {
	t.Helper()
	timeout := time.After(wait)
	for {
		p.mu.Lock()
		ls := append([]map[string]any(nil), p.lines...)
		p.mu.Unlock()
		if cond(ls) {
			return ls
		}
		select {
		case <-p.seen:
		case err := <-p.exit:
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Fatalf("pier exited (%v) before the log said what the test waits for; log: %v", err, p.lines)
		case <-timeout:
			t.Fatalf("pier did not log what the test waits for in %v; log: %v", wait, ls)
		}
	}
}

// addrs returns the addresses route listens on, as pier last logged them.
func (p *pier) addrs(route string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.lines {
		if l["msg"] == "listening" && l["route"] == route {
			out = append(out, l["addr"].(string))
		}
	}
	return out
}

func (p *pier) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait waits for pier to exit and returns its exit code.
func (p *pier) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.exit:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(wait):
		t.Fatal("pier did not exit")
		return -1
	}
}

// exchange sends msg through addr, half-closes, and returns the answer.
func exchange(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// named is an upstream that answers with its name and what it read.
func named(name string) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		io.WriteString(c, name+":"+string(b))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, as editors do, so a reload never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// runCLI runs the command line in-process and returns the exit code and
// what it wrote.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestForwardOneLiner(t *testing.T) {
	a := testutil.NewUpstream(t, named("a"))
	b := testutil.NewUpstream(t, named("b"))
	// Flags may stand after the addresses.
	p := startPier(t, nil, 1, "forward", "127.0.0.1:0", a.Addr(), b.Addr(), "-idle-timeout", "1m")
	addr := p.addrs("forward")[0]
	got := map[string]bool{}
	for i := range 4 {
		ans, err := exchange(addr, fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint(i); !strings.HasSuffix(ans, ":"+want) {
			t.Fatalf("answer %q does not carry request %q", ans, want)
		}
		got[ans[:1]] = true
	}
	if !got["a"] || !got["b"] {
		t.Errorf("upstreams used: %v, want both in turn", got)
	}
	// One access log line per session, with the promised fields.
	ls := p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "session") >= 4 })
	for _, l := range ls {
		if l["msg"] != "session" {
			continue
		}
		for _, k := range []string{"id", "route", "client", "upstream", "bytes_to_upstream", "bytes_to_client", "duration", "reason"} {
			if _, ok := l[k]; !ok {
				t.Errorf("session line lacks %q: %v", k, l)
			}
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"forward without upstream", []string{"forward", ":9090"}, 2, "at least one upstream"},
		{"forward bad address", []string{"forward", ":9090", "nohostport"}, 2, "nohostport"},
		{"forward bad flag", []string{"forward", "-bogus", ":9090", "a:1"}, 2, "bogus"},
		{"forward bad duration", []string{"forward", "-idle-timeout", "soon", ":9090", "a:1"}, 2, "idle-timeout"},
		{"forward help", []string{"forward", "-h"}, 0, "Examples"},
		{"run help", []string{"run", "-h"}, 0, "Examples"},
		{"check help", []string{"check", "-h"}, 0, "Examples"},
		{"run missing file", []string{"run", "-config", "/nonexistent/pier.yaml"}, 2, "nonexistent"},
		{"bad log format", []string{"forward", "-log-format", "xml", ":0", "a:1"}, 2, "log-format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, errs)
			}
			if !strings.Contains(out+errs, tc.want) {
				t.Errorf("output does not mention %q:\n%s%s", tc.want, out, errs)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "pier ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "routes:\n  - name: r\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: \"127.0.0.1:1\"}]\n")
	if code, out, errs := runCLI("check", "-config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("good file: %d %q %q", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "routes:\n  - name: r\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: \"127.0.0.1\"}]\n    idle_timeout: forever\n")
	code, _, errs := runCLI("check", "-config", bad)
	if code != 2 {
		t.Fatalf("bad file: exit %d, want 2", code)
	}
	// Every error, each as file:line:col.
	for _, want := range []string{bad + ":4:", bad + ":5:"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors do not include %q:\n%s", want, errs)
		}
	}
}

const reloadConfig = `grace_period: 5s
routes:
  - name: main
    listen: ["%s"]
    upstreams: [{address: "%s"}]
`

// SIGHUP reloads the file: new sessions follow it, the kept listener never
// refuses a client, and a bad file leaves the running config in force.
func TestReloadOnSIGHUP(t *testing.T) {
	a := testutil.NewUpstream(t, named("a"))
	b := testutil.NewUpstream(t, named("b"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := filepath.Join(t.TempDir(), "pier.yaml")
	writeFile(t, path, fmt.Sprintf(reloadConfig, addr, a.Addr()))
	p := startPier(t, nil, 1, "run", "-config", path)

	if ans, err := exchange(addr, "1"); err != nil || ans != "a:1" {
		t.Fatalf("before reload: %q, %v", ans, err)
	}
	writeFile(t, path, fmt.Sprintf(reloadConfig, addr, b.Addr()))
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "configuration reloaded") == 1 })
	if ans, err := exchange(addr, "2"); err != nil || ans != "b:2" {
		t.Fatalf("after reload: %q, %v", ans, err)
	}

	writeFile(t, path, "routes: [this is not a route]\n")
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, func(ls []map[string]any) bool {
		return count(ls, "reload failed, keeping the running configuration") == 1
	})
	if ans, err := exchange(addr, "3"); err != nil || ans != "b:3" {
		t.Fatalf("after a bad reload: %q, %v", ans, err)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// SIGTERM drains: the listener closes, a session in flight finishes, and
// pier exits 0.
func TestSIGTERMDrains(t *testing.T) {
	release := make(chan struct{})
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		<-release
		c.Write(b)
	})
	p := startPier(t, nil, 1, "forward", "127.0.0.1:0", up.Addr(), "-grace", "10s")
	addr := p.addrs("forward")[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, "in flight")
	c.(*net.TCPConn).CloseWrite()
	p.signal(t, syscall.SIGTERM)
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "stopping") == 1 })
	// The listener is closed once pier says it is stopping... give the
	// close a bounded moment, then no new client is accepted.
	refused := false
	for deadline := time.Now().Add(wait); time.Now().Before(deadline) && !refused; {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			refused = true
			break
		}
		nc.Close()
	}
	if !refused {
		t.Error("pier still accepts after SIGTERM")
	}
	close(release)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "in flight" {
		t.Fatalf("in-flight session got %q, %v", got, err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// With descriptors exhausted (a child with a low RLIMIT_NOFILE), pier backs
// off instead of spinning, and serves again once descriptors free up.
func TestAcceptUnderDescriptorExhaustion(t *testing.T) {
	hold := make(chan struct{})
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		c.Write(b)
		if b[0] == 'h' { // holders keep their session until released
			<-hold
		}
		io.Copy(io.Discard, c)
	})
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	t.Cleanup(release)
	p := startPier(t, []string{"PIER_TEST_NOFILE=64"}, 1, "forward", "127.0.0.1:0", up.Addr())
	addr := p.addrs("forward")[0]

	// Fill pier's descriptors with sessions that stay open.
	var holders []net.Conn
	defer func() {
		for _, c := range holders {
			c.Close()
		}
	}()
	for i := 0; i < 64; i++ {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, c)
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write([]byte("h"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			break // pier is out of descriptors: this one was not served
		}
	}
	// Out of descriptors, pier stops accepting (its reserve), or fails the
	// accept or the dial that follows it; each must back off.
	p.waitLog(t, func(ls []map[string]any) bool {
		for _, l := range ls {
			if l["msg"] == "out of descriptors: new clients wait until sessions end" ||
				l["msg"] == "accept failing, backing off" || l["reason"] == "local_error" {
				return true
			}
		}
		return false
	})
	// Clients keep arriving while pier is exhausted.
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, c)
		c.Write([]byte("w"))
	}

	// While exhausted, pier must not spin: measure its CPU over a window.
	before := cpuTime(t, p.cmd.Process.Pid)
	window := time.Now()
	time.Sleep(time.Second) // the measurement window, not a wait for a server
	used := cpuTime(t, p.cmd.Process.Pid) - before
	if frac := used.Seconds() / time.Since(window).Seconds(); frac > 0.3 {
		t.Errorf("pier used %.0f%% of a core while out of descriptors", frac*100)
	}

	// Free descriptors: new clients are served again.
	release()
	for _, c := range holders {
		c.Close()
	}
	holders = nil
	ok := false
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		if ans, err := exchange(addr, "x"); err == nil && ans == "x" {
			ok = true
			break
		}
	}
	if !ok {
		t.Fatal("pier did not serve again after descriptors were freed")
	}
}

// cpuTime returns the user+system time a process has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}
