package pier_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
)

// The example module in examples/custom (its own go.mod, pier replaced by
// this checkout) is what docs/filters.md tells a user to write: a filter in
// a package of their own, the pier command with it (cmd/mypier), and pier
// embedded in a program (cmd/embedded). This test builds both with the go
// command and runs them, so the docs cannot rot.
func TestExampleModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go command is needed to build the example module:", err)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, gocmd, "build", "-o", bin+"/", "./cmd/mypier", "./cmd/embedded")
	build.Dir = "examples/custom"
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in examples/custom: %v\n%s", err, out)
	}
	up := testutil.NewUpstream(t, testutil.Echo)

	t.Run("mypier forward --mask", func(t *testing.T) {
		p := startExample(t, filepath.Join(bin, "mypier"), "forward", "127.0.0.1:0", up.Addr(), "--mask", "*", "-log-format", "json")
		addr := p.waitJSON(t, "listening", "addr")
		roundTrip(t, addr, "card 4111 1111\n", "card **** ****\n")
		p.stop(t)
	})
	t.Run("mypier check with mask in YAML", func(t *testing.T) {
		dir := t.TempDir()
		good := filepath.Join(dir, "good.yaml")
		bad := filepath.Join(dir, "bad.yaml")
		doc := "routes:\n  - name: r\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: \"127.0.0.1:1\"}]\n    filters:\n      - mask: {char: %s}\n"
		os.WriteFile(good, []byte(strings.Replace(doc, "%s", `"x"`, 1)), 0o644)
		os.WriteFile(bad, []byte(strings.Replace(doc, "%s", `"xy"`, 1)), 0o644)
		if out, err := exec.CommandContext(ctx, filepath.Join(bin, "mypier"), "check", "-config", good).CombinedOutput(); err != nil {
			t.Fatalf("check of a good file: %v\n%s", err, out)
		}
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "mypier"), "check", "-config", bad).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("check of a bad file: %v, want exit 2\n%s", err, out)
		}
		if !strings.Contains(string(out), "bad.yaml:6:") || !strings.Contains(string(out), "one ASCII character") {
			t.Errorf("check of a bad file says %q, want the mask filter's error at its line", out)
		}
	})
	t.Run("embedded", func(t *testing.T) {
		p := startExample(t, filepath.Join(bin, "embedded"), up.Addr())
		line := p.waitStdout(t, "listening on ")
		roundTrip(t, strings.TrimPrefix(line, "listening on "), "pin 0000\n", "pin ****\n")
		p.stop(t)
	})
}

// roundTrip sends msg through addr to the echo upstream and wants back.
func roundTrip(t *testing.T, addr, msg, want string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got %q back, want %q", got, want)
	}
}

// example is a running example program: its stdout and stderr lines.
type example struct {
	cmd    *exec.Cmd
	stdout chan string
	stderr chan string
	exit   chan error
}

func startExample(t *testing.T, path string, args ...string) *example {
	t.Helper()
	cmd := exec.Command(path, args...)
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &example{cmd: cmd, stdout: make(chan string, 1000), stderr: make(chan string, 1000), exit: make(chan error, 1)}
	lines := func(r io.Reader, into chan<- string, done chan<- struct{}) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			t.Logf("%s: %s", filepath.Base(path), sc.Text())
			select {
			case into <- sc.Text():
			default: // the test reads only the first lines
			}
		}
		close(done)
	}
	outDone, errDone := make(chan struct{}), make(chan struct{})
	go lines(outPipe, e.stdout, outDone)
	go lines(errPipe, e.stderr, errDone)
	go func() {
		<-outDone
		<-errDone
		e.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // by its own pid; harmless once it has exited
		<-e.exit
	})
	return e
}

// waitJSON waits for a JSON log line with msg and returns its key.
func (e *example) waitJSON(t *testing.T, msg, key string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-e.stderr:
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
				if v, ok := m[key].(string); ok {
					return v
				}
			}
		case <-deadline:
			t.Fatalf("no %q log line with %s in 10s", msg, key)
		}
	}
}

// waitStdout waits for a line on stdout that starts with prefix.
func (e *example) waitStdout(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-e.stdout:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("no line starting %q on stdout in 10s", prefix)
		}
	}
}

// stop sends SIGTERM and wants a clean exit.
func (e *example) stop(t *testing.T) {
	t.Helper()
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.exit:
		e.exit <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10s after SIGTERM")
	}
}

// docs/filters.md shows the example module's files as they are.
func TestDocShowsExampleModule(t *testing.T) {
	doc, err := os.ReadFile("docs/filters.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"mask/mask.go", "cmd/mypier/main.go", "cmd/embedded/main.go"} {
		code, err := os.ReadFile(filepath.Join("examples/custom", f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "```go\n"+string(code)+"```") {
			t.Errorf("docs/filters.md does not show examples/custom/%s as it is; copy it over", f)
		}
	}
}
