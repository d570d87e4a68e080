package toxiproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The real Toxiproxy's binaries, v2.12.0, which .ci/run builds with go
// install and names in these variables. Without them the tests that
// compare pier with the real thing skip, unless PIER_REQUIRE_TOXIPROXY=1
// says they must run.
const (
	envToxiproxyServer  = "PIER_TOXIPROXY_SERVER"
	envToxiproxyCLI     = "PIER_TOXIPROXY_CLI"
	envRequireToxiproxy = "PIER_REQUIRE_TOXIPROXY"
)

// toxiproxyBinary returns the path the variable env names, skipping the
// test when it is unset (failing it when PIER_REQUIRE_TOXIPROXY=1).
func toxiproxyBinary(t *testing.T, env string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		msg := fmt.Sprintf("%s is not set: it names Toxiproxy v2.12.0's binary, built by .ci/run with "+
			"GOBIN=DIR go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0 github.com/Shopify/toxiproxy/v2/cmd/cli@v2.12.0", env)
		if os.Getenv(envRequireToxiproxy) == "1" {
			t.Fatal(msg + " (and " + envRequireToxiproxy + "=1 requires it)")
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return path
}

// boundedBuffer keeps the first bytes a process writes (its log, shown
// when it fails), safe for the process's two pipes at once.
type boundedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const boundedBufferSize = 64 << 10

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := boundedBufferSize - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a port the kernel had free a moment ago: a process
// given it may still find it taken, and retries.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startToxiproxyServer runs the real toxiproxy-server on 127.0.0.1 and a
// free port, and returns its API's URL once /version answers. It is
// killed at the test's end.
func startToxiproxyServer(t *testing.T) string {
	t.Helper()
	bin := toxiproxyBinary(t, envToxiproxyServer)
	const attempts = 5
	for range attempts {
		port := freePort(t)
		url := "http://127.0.0.1:" + port
		var out boundedBuffer
		cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", port)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
		})
		err := waitVersion(url, exited)
		if err == nil {
			return url
		}
		if !errors.Is(err, errServerExited) || !strings.Contains(out.String(), "address already in use") {
			t.Fatalf("toxiproxy-server on port %s: %v\n%s", port, err, out.String())
		}
		// Another process took the port between freePort and the bind.
	}
	t.Fatalf("toxiproxy-server: no free port in %d attempts", attempts)
	return ""
}

var errServerExited = errors.New("the server exited")

// waitVersion polls url's /version until it answers as Toxiproxy does,
// the server exits, or 10s pass.
func waitVersion(url string, exited <-chan error) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(url + "/version")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"version"`)) {
				return nil
			}
			err = fmt.Errorf("/version: %d %q", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after 10s: %v", err)
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("%w (%v) before answering /version", errServerExited, werr)
		case <-tick.C:
		}
	}
}

// runCLI runs toxiproxy-cli against the API at url, returning its
// standard output, its standard error and its exit code.
func runCLI(t *testing.T, bin, url string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--host", url}, args...)...)
	cmd.Env = append(os.Environ(), "TOXIPROXY_URL=") // the flag, not the caller's environment, names the server
	var out, errOut boundedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("toxiproxy-cli %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}
