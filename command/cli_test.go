package command

import (
	"bytes"
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
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
)

// runPier runs pier as a process of its own with args, and returns its
// exit code and what it wrote. It is for commands that end by themselves.
func runPier(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PIER_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String(), errb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String(), errb.String()
	case <-time.After(wait):
		cmd.Process.Kill() // by its own pid
		<-done
		t.Fatalf("pier %q did not exit in %v; stderr: %s", args, wait, errb.String())
		return -1, "", ""
	}
}

// pier forward refuses every value the file refuses, with the file's
// words placed at the flag or argument, a pointer to the help, and exit
// code 2, before it listens anywhere.
func TestForwardRefusesWhatTheFileRefuses(t *testing.T) {
	const see = "see 'pier forward -h'\n"
	long := strings.Repeat("a", 100<<10)
	for _, tc := range []struct {
		name string
		args []string
		want string // all of stderr
	}{
		{"duration without unit", []string{"-idle-timeout", "10", "127.0.0.1:0", "h:1"},
			`flag -idle-timeout: "10" has no unit: write it like 10s or 10ms` + "\n"},
		{"duration in words", []string{"127.0.0.1:0", "h:1", "-half-close-timeout", "soon"},
			`flag -half-close-timeout: "soon" is not a duration (like 300ms, 5s, 1m30s, 2h)` + "\n"},
		{"listen port without host", []string{"9090", "host:80"},
			`argument 1: "9090": missing host: for every address on port 9090, write ":9090"` + "\n"},
		{"listen port too large", []string{":99999", "host:80"},
			`argument 1: ":99999": port "99999" is not a number from 0 to 65535` + "\n"},
		{"negative max connections", []string{"-max-connections", "-5", "127.0.0.1:0", "h:1"},
			`flag -max-connections: "-5" is not a whole number of 0 or more` + "\n"},
		{"retries too many", []string{"-retries", "1000", "127.0.0.1:0", "h:1"},
			`flag -retries: "1000" is not a whole number from 0 to 100` + "\n"},
		{"zero connect timeout", []string{"-connect-timeout", "0s", "127.0.0.1:0", "h:1"},
			"flag -connect-timeout: must be more than 0\n"},
		{"zero grace", []string{"-grace", "0", "127.0.0.1:0", "h:1"},
			"flag -grace: must be more than 0\n"},
		{"bad balance", []string{"-balance", "rr", "127.0.0.1:0", "h:1"},
			`flag -balance: "rr" is not one of round_robin, least_conn, random, hash` + "\n"},
		{"bad host name", []string{"127.0.0.1:0", "bad_host!:80"},
			`argument 2: "bad_host!:80": "bad_host!" is neither an IP address nor a host name` + "\n"},
		{"100 KB host name", []string{"127.0.0.1:0", "h:1", long + ":80"},
			`argument 3: "` + long[:64] + `"...: "` + long[:64] + `"... is neither an IP address nor a host name` + "\n"},
		{"upstream port too large", []string{"127.0.0.1:0", "127.0.0.1:99999"},
			`argument 2: "127.0.0.1:99999": port "99999" is not a number from 1 to 65535` + "\n"},
		{"bad filter option", []string{"127.0.0.1:0", "h:1", "--latency", "soon"},
			`flag -latency: delay: "soon" is not a duration (say 100ms, 2s, 1m)` + "\n"},
		{"every error, in command-line order", []string{"9090", "-retries", "-1", "h:0"},
			`argument 1: "9090": missing host: for every address on port 9090, write ":9090"` + "\n" +
				`flag -retries: "-1" is not a whole number from 0 to 100` + "\n" +
				`argument 2: "h:0": port "0" is not a number from 1 to 65535` + "\n"},
		{"unknown flag", []string{"-bogus", "127.0.0.1:0", "h:1"},
			"pier: forward: flag provided but not defined: -bogus\n"},
		{"flag without its value", []string{"127.0.0.1:0", "h:1", "-idle-timeout"},
			"pier: forward: flag needs an argument: -idle-timeout\n"},
		{"no upstream", []string{"127.0.0.1:0"},
			"pier: forward: need a listen address and at least one upstream\n"},
		{"bad log level", []string{"-log-level", "loud", "127.0.0.1:0", "h:1"},
			`pier: -log-level: "loud" is not debug, info, warn or error` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runPier(t, append([]string{"forward"}, tc.args...)...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if want := tc.want + see; errs != want || out != "" {
				t.Errorf("stderr\n%s\nwant\n%s(stdout %q)", errs, want, out)
			}
		})
	}
}

// A config file's errors exit 2 from run as from check, each as
// file:line:col, and the help is not pointed at: the file is at fault.
func TestConfigErrorsExit2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pier.yaml")
	writeFile(t, path, "routes:\n  - name: r\n    listen: \"127.0.0.1:0\"\n    upstreams: [{address: \"h:1\"}]\n    health_check: {send: !!bianry UElORw==}\n    idle_timeout: 10\n")
	want := path + ":5:26: tag !!bianry is not supported: a value may be tagged only !!str, !!int, !!bool, !!float, !!null, !!binary, !!map, !!seq\n" +
		path + `:6:19: idle_timeout: "10" has no unit: write it like 10s or 10ms` + "\n"
	for _, args := range [][]string{{"run", path}, {"run", "-config", path}, {"check", path}} {
		code, out, errs := runPier(t, args...)
		if code != exitUsage || errs != want || out != "" {
			t.Errorf("pier %q: exit %d, stderr\n%s\nwant 2 and\n%s", args, code, errs, want)
		}
	}
	if code, _, errs := runPier(t, "run", filepath.Join(t.TempDir(), "none.yaml")); code != exitUsage || !strings.Contains(errs, "none.yaml") {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
}

// The habits users bring: a file as an argument, help as a command, -h
// everywhere, --version.
func TestCommandLineHabits(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "routes:\n  - name: r\n    listen: \"127.0.0.1:0\"\n    upstreams: [{address: \"127.0.0.1:1\"}]\n")
	other := filepath.Join(dir, "other.yaml")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string // each in stdout
		stderr string   // in stderr
	}{
		{"check a file argument", []string{"check", good}, 0, []string{good + ": ok, 1 routes"}, ""},
		{"check -config", []string{"check", "-config", good}, 0, []string{good + ": ok, 1 routes"}, ""},
		{"file given twice", []string{"check", "-config", good, other}, 2, nil, "the config file is given twice, as -config " + good + " and as " + other + ": give it once"},
		{"two files", []string{"run", good, other}, 2, nil, "run: want one config file, got 2 arguments"},
		{"help", []string{"help"}, 0, []string{"Usage:", "pier help [COMMAND]"}, ""},
		{"-h", []string{"-h"}, 0, []string{"Usage:", "pier forward"}, ""},
		{"help forward", []string{"help", "forward"}, 0, []string{"Usage: pier forward", "-pidfile", "-idle-timeout", "-slow-close", "Examples:"}, ""},
		{"help run", []string{"help", "run"}, 0, []string{"Usage: pier run", "-pidfile", "kill -HUP $(cat /run/pier.pid)"}, ""},
		{"help check", []string{"help", "check"}, 0, []string{"Usage: pier check"}, ""},
		{"help version", []string{"help", "version"}, 0, []string{"Usage: pier version", "Examples:"}, ""},
		{"help unknown", []string{"help", "frobnicate"}, 2, nil, `help: unknown command "frobnicate"`},
		{"version -h", []string{"version", "-h"}, 0, []string{"Usage: pier version"}, ""},
		{"-h before the command", []string{"-h", "check"}, 0, []string{"Usage: pier check"}, ""},
		{"version", []string{"version"}, 0, []string{"pier dev"}, ""},
		{"--version", []string{"--version"}, 0, []string{"pier dev"}, ""},
		{"version with an argument", []string{"version", "x"}, 2, nil, "version: unexpected argument \"x\"\nsee 'pier version -h'"},
		{"flags and no command", []string{"-log-level", "debug"}, 2, nil, "no command after the flags -log-level debug"},
		{"unknown command", []string{"frobnicate"}, 2, nil, `unknown command "frobnicate"`},
		{"global flag reaches the command", []string{"-config", good, "check"}, 0, []string{good + ": ok"}, ""},
		{"global flag checked by the command", []string{"-idle-timeout", "10", "forward", "127.0.0.1:0", "h:1"}, 2, nil, `flag -idle-timeout: "10" has no unit`},
		{"global flag unknown to the command", []string{"-pidfile", "x", "check", good}, 2, nil, "check: flag provided but not defined: -pidfile"},
		{"flag spelled with _", []string{"forward", "-idle_timeout", "10", "127.0.0.1:0", "h:1"}, 2, nil, `flag -idle-timeout: "10" has no unit`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, errs)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errs, tc.stderr) || tc.stderr == "" && errs != "" {
				t.Errorf("stderr %q, want %q in it", errs, tc.stderr)
			}
			// Help is asked for once and printed once; an error never
			// brings the whole usage with it.
			if n := strings.Count(out+errs, "Examples:"); n > 1 || tc.code != 0 && n > 0 {
				t.Errorf("help printed %d times:\n%s%s", n, out, errs)
			}
		})
	}
	if _, _, errs := runCLI("help", "forward"); strings.Contains(errs, "-slow_close") {
		t.Error("help lists the _ spelling too")
	}
	if _, out, _ := runCLI("help", "forward"); strings.Contains(out, "-slow_close") || strings.Contains(out, "-idle_timeout") {
		t.Errorf("help lists the _ spellings:\n%s", out)
	}
}

// Flags before the command reach it in a real run: pier -pidfile F
// -log-level debug forward ... writes F and logs at debug.
func TestFlagsBeforeTheCommand(t *testing.T) {
	up := testutil.NewUpstream(t, named("a"))
	pidfile := filepath.Join(t.TempDir(), "pier.pid")
	p := startPier(t, nil, 1, "-pidfile", pidfile, "-log-level=debug", "forward", "127.0.0.1:0", up.Addr())
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "pid file written") == 1 })
	if got := readPid(t, pidfile); got != p.cmd.Process.Pid {
		t.Errorf("pid file says %d, pier is %d", got, p.cmd.Process.Pid)
	}
	if ans, err := exchange(p.addrs("forward")[0], "x"); err != nil || ans != "a:x" {
		t.Fatalf("through pier: %q, %v", ans, err)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("pid file %q does not end in a newline", b)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// -pidfile: written once pier listens, naming it, so that kill -HUP
// $(cat FILE) reloads it; removed when it exits. A second pier with the
// same file while the first runs refuses to start (exit 1) and leaves the
// file alone; a file left by a dead process is taken over.
func TestPidfile(t *testing.T) {
	a := testutil.NewUpstream(t, named("a"))
	b := testutil.NewUpstream(t, named("b"))
	dir := t.TempDir()
	path := filepath.Join(dir, "pier.yaml")
	addr := testutil.RefusedAddr(t)
	writeFile(t, path, fmt.Sprintf(reloadConfig, addr, a.Addr()))
	pidfile := filepath.Join(dir, "pier.pid")

	// A pid file left by a process that is gone.
	dead := exec.Command(os.Args[0], "-test.run=^$")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, pidfile, fmt.Sprintf("%d\n", dead.Process.Pid))

	p := startPier(t, nil, 1, "run", path, "-pidfile", pidfile)
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "pid file written") == 1 })
	pid := readPid(t, pidfile)
	if pid != p.cmd.Process.Pid {
		t.Fatalf("pid file says %d, pier is %d", pid, p.cmd.Process.Pid)
	}
	// Reload through the pid file, as the README says.
	writeFile(t, path, fmt.Sprintf(reloadConfig, addr, b.Addr()))
	if err := syscall.Kill(readPid(t, pidfile), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "configuration reloaded") == 1 })
	if ans, err := exchange(addr, "1"); err != nil || ans != "b:1" {
		t.Fatalf("after reload: %q, %v", ans, err)
	}

	// A second pier with the same pid file.
	code, _, errs := runPier(t, "forward", "127.0.0.1:0", a.Addr(), "-pidfile", pidfile)
	want := fmt.Sprintf("pier: -pidfile %s: process %d, which it names, is running: stop that pier first, or remove the file if the process is not pier\n", pidfile, pid)
	if code != exitRuntime || errs != want {
		t.Errorf("second pier: exit %d, stderr %q; want 1 and %q", code, errs, want)
	}
	if got := readPid(t, pidfile); got != pid {
		t.Errorf("the second pier changed the pid file to %d", got)
	}

	if err := syscall.Kill(readPid(t, pidfile), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if _, err := os.Stat(pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file still there after exit: %v", err)
	}
	if _, err := os.Stat(pidfile + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary pid file left: %v", err)
	}
}

// A pid file that cannot be written stops pier: exit 1, nothing left
// listening.
func TestPidfileUnwritable(t *testing.T) {
	up := testutil.NewUpstream(t, named("a"))
	addr := testutil.RefusedAddr(t)
	code, _, errs := runPier(t, "forward", addr, up.Addr(), "-pidfile", filepath.Join(t.TempDir(), "no", "such", "dir", "pier.pid"))
	if code != exitRuntime || !strings.Contains(errs, "pier: -pidfile: open ") {
		t.Errorf("exit %d, stderr %q; want 1 and the -pidfile error", code, errs)
	}
	if c, err := net.DialTimeout("tcp", addr, wait); err == nil {
		c.Close()
		t.Error("pier left its listener open")
	}
}

// --reset 100 is 100 bytes: the session is reset once 100 bytes have
// gone to the upstream, and no sooner.
func TestForwardResetFlagCountsBytes(t *testing.T) {
	up := testutil.NewUpstream(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	p := startPier(t, nil, 1, "forward", "127.0.0.1:0", up.Addr(), "--reset", "100")
	c, err := net.DialTimeout("tcp", p.addrs("forward")[0], wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	c.Write(make([]byte, 300))
	io.Copy(io.Discard, c) // until pier resets it
	ls := p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "session") >= 1 })
	for _, l := range ls {
		if l["msg"] == "session" && (l["reason"] != "filter_reset" || l["bytes_to_upstream"] != 100.0) {
			t.Errorf("session ended %v after %v bytes to the upstream; want filter_reset after 100", l["reason"], l["bytes_to_upstream"])
		}
	}
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}

// A dump goes to stdout and the logs to stderr, so that '2>log' parts
// them: every stderr line is a JSON log line, and the dump is on stdout.
func TestForwardDumpOnStdoutLogsOnStderr(t *testing.T) {
	up := testutil.NewUpstream(t, named("up"))
	p := startPier(t, nil, 1, "forward", "127.0.0.1:0", up.Addr(), "--dump", "text")
	if ans, err := exchange(p.addrs("forward")[0], "hello"); err != nil || ans != "up:hello" {
		t.Fatalf("through pier: %q, %v", ans, err)
	}
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "session") >= 1 })
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	// pier has exited: its stdout is complete.
	if out := p.out.String(); !strings.Contains(out, "hello") || !strings.Contains(out, "up:hello") {
		t.Errorf("stdout lacks the dump:\n%s", out)
	}
	for _, l := range p.lines {
		if l["msg"] == "raw" {
			t.Errorf("a line on stderr is not a log line: %q", l["line"])
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(p.out.String()), "\n") {
		if json.Valid([]byte(line)) && strings.HasPrefix(line, "{") {
			t.Errorf("a log line on stdout: %s", line)
		}
	}
}

// A configuration error that only starting can find (a dump file that
// cannot be created, though its directory looked writable) is a config
// error too: exit 2, named at its line or flag, worded as the loader words
// it.
func TestStartErrorsInTheConfigExit2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pier.yaml")
	writeFile(t, path, "routes:\n  - name: r\n    listen: \"127.0.0.1:0\"\n    upstreams: [{address: \"127.0.0.1:1\"}]\n    filters:\n      - dump: {to: /proc/pier-test-nope}\n")
	code, _, errs := runPier(t, "run", path)
	if code != exitUsage || !strings.HasPrefix(errs, path+":6:") || !strings.Contains(errs, "to: ") {
		t.Errorf("run: exit %d, stderr %q; want 2 and the error at line 6", code, errs)
	}
	code, _, errs = runPier(t, "forward", "127.0.0.1:0", "127.0.0.1:1", "--dump", "to=/proc/pier-test-nope")
	if code != exitUsage || !strings.Contains(errs, "flag -dump: to: ") || strings.Contains(errs, "dump: dump") {
		t.Errorf("forward: exit %d, stderr %q; want 2 and the flag named once", code, errs)
	}
}
