package interop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier"
	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/testutil"
)

// waitBound bounds every wait in these tests: a peer's start, a log
// line, a reply.
const waitBound = 10 * time.Second

// binary finds a peer's executable (PATH, then /usr/sbin, where Debian
// puts haproxy and nginx). Without it the test skips, or fails when the
// environment variable require is "1" (CI installs the peers).
func binary(t *testing.T, name, require string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
		return p
	}
	if os.Getenv(require) == "1" {
		t.Fatalf("%s not found and %s=1: install it (apt-get install %s)", name, require, name)
	}
	t.Skipf("%s not found (set %s=1 to make this a failure)", name, require)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// freePort returns a port on 127.0.0.1 that was free a moment ago, for a
// peer whose configuration must name its port before it starts.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// output is a process's stdout and stderr, safe to read while it runs.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// peer is a running haproxy or nginx.
type peer struct {
	name   string
	cmd    *exec.Cmd
	out    *output
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's, valid after exited
}

// start runs a peer in the foreground; the test's cleanup stops it by its
// pid: SIGTERM, at most waitBound for it to exit, then SIGKILL.
func start(t *testing.T, name, path string, args ...string) *peer {
	t.Helper()
	p := &peer{name: name, out: &output{}, exited: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive a killed test binary
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *peer) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(waitBound):
	}
	t.Errorf("%s (pid %d) ignored SIGTERM for %v: killed", p.name, p.cmd.Process.Pid, waitBound)
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// waitListening polls a connect to addr until it succeeds, the peer
// exits, or waitBound passes.
func (p *peer) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.out)
		case <-time.After(20 * time.Millisecond): // the poll's period
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s within %v: %v\n%s", p.name, addr, waitBound, err, p.out)
		}
	}
}

// waitOutput waits for the peer to write a line containing every part.
func (p *peer) waitOutput(t *testing.T, parts ...string) string {
	t.Helper()
	return waitFor(t, p.out.String, parts...)
}

// waitFor polls text (a log) until a line holds every part, for at most
// waitBound.
func waitFor(t *testing.T, text func() string, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		for _, line := range strings.Split(text(), "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q within %v in:\n%s", parts, waitBound, text())
		}
		time.Sleep(20 * time.Millisecond) // the poll's period
	}
}

func containsAll(line string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(line, p) {
			return false
		}
	}
	return true
}

// startPier runs pier in this process on the YAML config, with its log
// collected; the cleanup shuts it down.
func startPier(t *testing.T, yaml string) (*pier.Proxy, *testutil.Logs) {
	t.Helper()
	cfg, err := config.Parse("interop.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	logs, log := testutil.NewLogs()
	p, err := pier.Start(cfg, pier.Options{Log: log, Loops: 1})
	if err != nil {
		t.Fatalf("start pier: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p, logs
}

// pierAddr is the address pier's route listens on.
func pierAddr(t *testing.T, p *pier.Proxy, route string) string {
	t.Helper()
	addrs := p.Addrs(route)
	if len(addrs) == 0 {
		t.Fatalf("route %q listens nowhere", route)
	}
	return addrs[0].String()
}

// clientIP is the address the tests' clients dial from: another
// loopback address than the peers', so a log line that shows it can only
// have it from a PROXY header.
const clientIP = "127.0.0.2"

// dialFrom connects from clientIP.
func dialFrom(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: waitBound, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitBound))
	return c.(*net.TCPConn)
}

// selfSigned writes a certificate for names and its key, both PEM in one
// file as HAProxy's crt wants, and returns the file's path.
func selfSigned(t *testing.T, dir string, names ...string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&b, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	path := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeFile writes a peer's configuration into dir.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkConfig runs a peer's own syntax check (haproxy -c, nginx -t)
// first, so a bad configuration fails with the peer's words.
func checkConfig(t *testing.T, path string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("%s %s: %v\n%s", path, strings.Join(args, " "), err, out)
		}
		t.Fatal(err)
	}
}

// roundTrip writes msg and reads the same bytes back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("read back %q, %v; want %q", got, err, msg)
	}
}

// opensslBinary finds the openssl command line tool, whose s_client the
// TLS tests use as a client; CI requires it with PIER_REQUIRE_OPENSSL=1.
func opensslBinary(t *testing.T) string {
	t.Helper()
	return binary(t, "openssl", "PIER_REQUIRE_OPENSSL")
}
