package pier_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pierproxy/pier"
	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/testutil"
)

// A Config built in code runs: Start checks it (filling defaults), Addrs
// finds the port the kernel chose, Apply swaps in another that keeps the
// listener, Stats counts what passed, and Shutdown stops.
func TestEmbed(t *testing.T) {
	a := testutil.NewUpstream(t, testutil.Echo)
	b := testutil.NewUpstream(t, func(c *net.TCPConn) { io.WriteString(c, "b") })
	cfg := func(up string) *config.Config {
		return &config.Config{Routes: []config.Route{{
			Name:      "r",
			Listen:    []string{"127.0.0.1:0"},
			Upstreams: []config.Upstream{{Address: up}},
		}}}
	}
	p, err := pier.Start(cfg(a.Addr()), pier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addrs("r")[0].String()
	if got := exchange(t, addr, "hi"); got != "hi" {
		t.Fatalf("through the first config: %q", got)
	}
	// A session in progress is counted: its echo proves pier took it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "y")
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if n := p.Sessions(); n != 1 {
		t.Errorf("%d sessions in progress, want the one open", n)
	}
	c.Close()
	if g := p.Config().GracePeriod; g != config.DefaultGracePeriod {
		t.Errorf("grace period %v, want the default filled in", g)
	}
	// The same listen address, "127.0.0.1:0", keeps its listener, port and all.
	if err := p.Apply(cfg(b.Addr())); err != nil {
		t.Fatal(err)
	}
	if got := exchange(t, addr, ""); got != "b" {
		t.Fatalf("after Apply: %q, want the new upstream's", got)
	}
	bad := cfg(b.Addr())
	bad.Routes[0].Retries = -1
	if err := p.Apply(bad); err == nil {
		t.Fatal("Apply took retries -1")
	}
	if got := exchange(t, addr, ""); got != "b" {
		t.Fatalf("after a refused Apply: %q, want the running config", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Sessions != 4 || st.ToUpstream != 3 || st.ToClient != 5 {
		t.Errorf("stats %+v, want 4 sessions, 3 bytes up, 5 down", st)
	}
	if _, err := pier.Start(&config.Config{}, pier.Options{}); err == nil {
		t.Error("Start took a config without routes")
	}
}

// exchange sends msg, half-closes, and returns all the reply.
func exchange(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, msg)
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Without a logger of the caller's, pier logs through its own, which never
// blocks a relay loop: with stderr a full pipe nobody reads, sessions go on
// and Shutdown returns.
func TestDefaultLoggerNeverBlocks(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// Fill the pipe: the next write would wait for ever.
	junk := make([]byte, 64<<10)
	for {
		w.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := w.Write(junk); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
	}
	w.SetWriteDeadline(time.Time{})
	stderr := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = stderr }()

	up := testutil.NewUpstream(t, testutil.Echo)
	p, err := pier.Start(&config.Config{Routes: []config.Route{{
		Name:      "r",
		Listen:    []string{"127.0.0.1:0"},
		Upstreams: []config.Upstream{{Address: up.Addr()}},
	}}}, pier.Options{})
	os.Stderr = stderr
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addrs("r")[0].String()
	for i := range 5000 { // more access log records than the queue holds
		if got := exchange(t, addr, "x"); got != "x" {
			t.Fatalf("session %d: %q", i, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
