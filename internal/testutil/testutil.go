// Package testutil holds the test servers and helpers pier's tests share:
// upstreams on 127.0.0.1:0 that echo, sink, hold or refuse, a logger that
// hands finished session records to the test, and descriptor counting.
// Only tests import it.
package testutil

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Upstream is a TCP server on 127.0.0.1:0 that runs handle for every
// connection, and closes everything when the test ends.
type Upstream struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewUpstream starts a server whose connections are served by handle.
func NewUpstream(t testing.TB, handle func(*net.TCPConn)) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Upstream{ln: ln, conns: make(map[net.Conn]struct{})}
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			if u.closed {
				u.mu.Unlock()
				c.Close()
				return
			}
			u.conns[c] = struct{}{}
			u.mu.Unlock()
			u.wg.Go(func() {
				defer func() {
					c.Close()
					u.mu.Lock()
					delete(u.conns, c)
					u.mu.Unlock()
				}()
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(u.Close)
	return u
}

// Addr returns the server's address.
func (u *Upstream) Addr() string { return u.ln.Addr().String() }

// Close stops the server and closes its connections.
func (u *Upstream) Close() {
	u.mu.Lock()
	u.closed = true
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.ln.Close()
	u.wg.Wait()
}

// Echo writes back what it reads, passes the client's FIN on, and closes.
func Echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// Hold reads and discards until the peer closes, and never writes.
func Hold(c *net.TCPConn) { io.Copy(io.Discard, c) }

// RefusedAddr returns a loopback address where nothing listens.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Records is a slog.Handler that collects the attributes of every "session"
// line, so tests can wait for a session's record and check it.
type Records struct {
	ch    chan map[string]any
	attrs []slog.Attr
	tee   slog.Handler
}

// NewRecords returns a collecting logger; with -v it also prints to stderr.
func NewRecords() (*Records, *slog.Logger) {
	r := &Records{ch: make(chan map[string]any, 1<<16)}
	if testing.Verbose() {
		r.tee = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	return r, slog.New(r)
}

func (r *Records) Enabled(context.Context, slog.Level) bool { return true }

func (r *Records) Handle(ctx context.Context, rec slog.Record) error {
	if r.tee != nil {
		r.tee.Handle(ctx, rec)
	}
	if rec.Message != "session" {
		return nil
	}
	m := map[string]any{"level": rec.Level.String()}
	for _, a := range r.attrs {
		m[a.Key] = a.Value.Any()
	}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	r.ch <- m
	return nil
}

func (r *Records) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *r
	n.attrs = append(append([]slog.Attr{}, r.attrs...), attrs...)
	return &n
}

func (r *Records) WithGroup(string) slog.Handler { return r }

// Next waits up to timeout for the next session record.
func (r *Records) Next(t testing.TB, timeout time.Duration) map[string]any {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-time.After(timeout):
		t.Fatalf("no session record within %v", timeout)
		return nil
	}
}

// OpenFDs returns the number of descriptors the process has open.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// IsReset reports whether err is the peer's RST as a reader or writer sees it.
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
