package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait in these tests; it is never slept.
const wait = 10 * time.Second

// newRoute returns a route named name on 127.0.0.1:0 to upstreams.
func newRoute(t testing.TB, name string, upstreams ...string) *route.Route {
	t.Helper()
	var specs []pool.Spec
	for _, u := range upstreams {
		s, err := pool.ParseAddress(u)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
	}
	p, err := pool.New(pool.Config{Route: name, Members: specs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &route.Route{
		Name:             name,
		Listen:           []string{"127.0.0.1:0"},
		Pool:             p,
		Limit:            admit.NewLimit(0),
		ConnectTimeout:   5 * time.Second,
		IdleTimeout:      time.Minute,
		HalfCloseTimeout: time.Minute,
	}
}

func table(t testing.TB, routes ...*route.Route) *route.Table {
	t.Helper()
	tb, err := route.NewTable(routes, route.Global{})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// start runs a server for routes and stops it when the test ends.
func start(t testing.TB, routes ...*route.Route) (*proxy.Server, *testutil.Records) {
	t.Helper()
	recs, log := testutil.NewRecords()
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(table(t, routes...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, recs
}

func dial(t testing.TB, srv *proxy.Server, route string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Addrs(route)[0].String(), wait)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(wait))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func wantReason(t *testing.T, rec map[string]any, reason string) {
	t.Helper()
	if rec["reason"] != reason {
		t.Fatalf("session ended with reason %v (%v), want %s", rec["reason"], rec["error"], reason)
	}
}

// hashEcho is an upstream that echoes what it reads and remembers the
// SHA-256 of every stream it received, so both directions can be checked.
type hashEcho struct {
	mu     sync.Mutex
	hashes map[string]bool
}

// The hash is recorded before the FIN goes back: the client's read of EOF
// comes after it, so a test that has read to EOF finds every hash.
func (h *hashEcho) serve(c *net.TCPConn) {
	sum := sha256.New()
	io.Copy(c, io.TeeReader(c, sum))
	h.mu.Lock()
	h.hashes[fmt.Sprintf("%x", sum.Sum(nil))] = true
	h.mu.Unlock()
	c.CloseWrite()
}

// Every byte arrives, in order, both ways: payloads from empty to 64 MiB,
// many clients at once, SHA-256 compared where they were sent and where
// they arrived.
func TestBytesExactBothWays(t *testing.T) {
	h := &hashEcho{hashes: make(map[string]bool)}
	up := testutil.NewUpstream(t, h.serve)
	srv, recs := start(t, newRoute(t, "echo", up.Addr()))

	sizes := []int{0, 1, 1000, 64<<10 - 1, 64 << 10, 64<<10 + 1, 256<<10 + 7, 1 << 20, 3<<20 + 5, 8 << 20, 64 << 20}
	for range 13 {
		sizes = append(sizes, rand.IntN(2<<20))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(sizes))
	sent := make(chan string, len(sizes))
	for i, size := range sizes {
		c := dial(t, srv, "echo")
		c.SetDeadline(time.Now().Add(2 * wait))
		wg.Go(func() {
			src := rand.NewChaCha8([32]byte{byte(i), byte(size), byte(size >> 8), byte(size >> 16)})
			want := sha256.New()
			go func() {
				io.Copy(c, io.TeeReader(io.LimitReader(src, int64(size)), want))
				c.CloseWrite()
			}()
			got := sha256.New()
			n, err := io.Copy(got, c)
			if err != nil {
				errs <- fmt.Errorf("size %d: read: %v", size, err)
				return
			}
			if n != int64(size) {
				errs <- fmt.Errorf("size %d: got %d bytes back", size, n)
				return
			}
			w := fmt.Sprintf("%x", want.Sum(nil))
			if g := fmt.Sprintf("%x", got.Sum(nil)); g != w {
				errs <- fmt.Errorf("size %d: echo differs from what was sent", size)
				return
			}
			sent <- w
		})
	}
	wg.Wait()
	close(errs)
	close(sent)
	for err := range errs {
		t.Error(err)
	}
	for range sizes {
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if rec["bytes_to_upstream"] != rec["bytes_to_client"] {
			t.Errorf("record counts %v bytes up and %v down for an echo", rec["bytes_to_upstream"], rec["bytes_to_client"])
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range sent {
		if !h.hashes[w] {
			t.Errorf("upstream never received a stream with SHA-256 %s", w)
		}
	}
}

// A client's FIN reaches the upstream as EOF while the other direction
// keeps flowing, and the session ends cleanly when both are done.
func TestHalfCloseFromClient(t *testing.T) {
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		got, _ := io.ReadAll(c) // to the client's FIN
		c.Write([]byte("after your FIN: " + string(got)))
	})
	srv, recs := start(t, newRoute(t, "r", up.Addr()))
	c := dial(t, srv, "r")
	c.Write([]byte("ping"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "after your FIN: ping" {
		t.Fatalf("read %q, %v", got, err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["bytes_to_upstream"] != int64(4) || rec["bytes_to_client"] != int64(20) {
		t.Errorf("bytes %v up, %v down; want 4, 20", rec["bytes_to_upstream"], rec["bytes_to_client"])
	}
}

// The upstream's FIN reaches the client as EOF, and the client can still
// send afterwards.
func TestHalfCloseFromUpstream(t *testing.T) {
	got := make(chan string, 1)
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.Write([]byte("hello"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	srv, recs := start(t, newRoute(t, "r", up.Addr()))
	c := dial(t, srv, "r")
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := c.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if g := <-got; g != "still here" {
		t.Fatalf("upstream got %q after its own FIN", g)
	}
	wantReason(t, recs.Next(t, wait), "done")
}

// An upstream that closes outright: the client reads what it sent, then EOF.
func TestUpstreamClosesFirst(t *testing.T) {
	up := testutil.NewUpstream(t, func(c *net.TCPConn) { c.Write([]byte("bye")) })
	srv, recs := start(t, newRoute(t, "r", up.Addr()))
	c := dial(t, srv, "r")
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "bye" {
		t.Fatalf("read %q, %v", b, err)
	}
	c.Close()
	rec := recs.Next(t, wait)
	if r := rec["reason"]; r != "done" && r != "client_reset" {
		t.Fatalf("reason %v", r)
	}
}

// A client's RST is passed on: the upstream sees its connection reset, not
// a clean FIN that could pass for a complete request.
func TestClientResetReachesUpstream(t *testing.T) {
	upErr := make(chan error, 1)
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(wait))
		buf := make([]byte, 4)
		io.ReadFull(c, buf)
		c.Write([]byte("k"))
		_, err := c.Read(buf)
		upErr <- err
	})
	srv, recs := start(t, newRoute(t, "r", up.Addr()))
	c := dial(t, srv, "r")
	c.Write([]byte("half"))
	// The answer says the session is relaying.
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close()
	err := <-upErr
	if !testutil.IsReset(err) {
		t.Fatalf("upstream read %v, want connection reset", err)
	}
	wantReason(t, recs.Next(t, wait), "client_reset")
}

// An upstream that refuses: the client is closed at once and the record
// says why.
func TestUpstreamRefuses(t *testing.T) {
	srv, recs := start(t, newRoute(t, "r", testutil.RefusedAddr(t)))
	c := dial(t, srv, "r")
	if n, err := c.Read(make([]byte, 1)); n != 0 || (err != io.EOF && !testutil.IsReset(err)) {
		t.Fatalf("read %d, %v; want the client closed", n, err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "connect_failed")
	if !strings.Contains(fmt.Sprint(rec["error"]), "refused") {
		t.Errorf("error %q does not say refused", rec["error"])
	}
}

// unresponsive returns the address of a listener whose accept queue is
// full, so a new connect gets no answer at all.
func unresponsive(t *testing.T) string {
	t.Helper()
	lc := net.ListenConfig{}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// Shrink the backlog to its minimum, then fill it: Linux drops SYNs
	// to a listener whose accept queue is full.
	raw, _ := ln.(*net.TCPListener).SyscallConn()
	raw.Control(func(fd uintptr) { listenBacklog(int(fd), 0) })
	for i := range 8 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond)
		if err != nil {
			if i == 0 {
				t.Fatalf("could not fill the backlog: %v", err)
			}
			return ln.Addr().String()
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("backlog never filled")
	return ""
}

// The connect timeout bounds a dial that gets no answer.
func TestConnectTimeout(t *testing.T) {
	r := newRoute(t, "r", unresponsive(t))
	r.ConnectTimeout = 300 * time.Millisecond
	srv, recs := start(t, r)
	c := dial(t, srv, "r")
	begin := time.Now()
	c.Read(make([]byte, 1))
	if d := time.Since(begin); d < 250*time.Millisecond {
		t.Errorf("client closed after %v, before the connect timeout", d)
	}
	wantReason(t, recs.Next(t, wait), "connect_timeout")
}

// An upstream that accepts and then never answers is the idle timeout's
// business, not the connect timeout's.
func TestIdleTimeout(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Hold)
	r := newRoute(t, "r", up.Addr())
	r.ConnectTimeout = 100 * time.Millisecond
	r.IdleTimeout = 400 * time.Millisecond
	srv, recs := start(t, r)
	c := dial(t, srv, "r")
	c.Write([]byte("anyone?"))
	begin := time.Now()
	c.Read(make([]byte, 1))
	if d := time.Since(begin); d < 350*time.Millisecond {
		t.Errorf("client closed after %v, before the idle timeout", d)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "idle_timeout")
	if rec["bytes_to_upstream"] != int64(7) {
		t.Errorf("bytes_to_upstream %v, want 7", rec["bytes_to_upstream"])
	}
}

// Traffic keeps a session alive past its idle timeout.
func TestActivityResetsIdleTimeout(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	r := newRoute(t, "r", up.Addr())
	r.IdleTimeout = 300 * time.Millisecond
	srv, recs := start(t, r)
	c := dial(t, srv, "r")
	buf := make([]byte, 1)
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("session ended while active: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the client's think time, not a wait for a server
	}
	c.CloseWrite()
	io.ReadAll(c)
	wantReason(t, recs.Next(t, wait), "done")
}

// Once one side has finished, the other has the half-close timeout to do
// the same: half-closed pairs cannot pile up.
func TestHalfCloseTimeout(t *testing.T) {
	hold := make(chan struct{})
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		<-hold // never sends its own FIN
	})
	t.Cleanup(func() { close(hold) })
	r := newRoute(t, "r", up.Addr())
	r.HalfCloseTimeout = 300 * time.Millisecond
	srv, recs := start(t, r)
	c := dial(t, srv, "r")
	c.CloseWrite()
	begin := time.Now()
	io.ReadAll(c)
	if d := time.Since(begin); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the half-close timeout", d)
	}
	wantReason(t, recs.Next(t, wait), "half_close_timeout")
}

// A reader that stops reading slows its writer down: pier buffers no more
// than its pipe and the sockets do.
func TestBackpressure(t *testing.T) {
	wrote := make(chan int64, 1)
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.SetWriteBuffer(64 << 10)
		chunk := make([]byte, 64<<10)
		var n int64
		for n < 256<<20 {
			c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			m, err := c.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		wrote <- n
	})
	srv, _ := start(t, newRoute(t, "r", up.Addr()))
	c := dial(t, srv, "r")
	c.SetReadBuffer(64 << 10)
	n := <-wrote // the upstream's writes stalled, or it wrote everything
	if n >= 256<<20 {
		t.Fatalf("upstream wrote %d bytes to a client that reads nothing", n)
	}
	// Socket buffers on three sockets plus one pipe: a few MiB at most.
	if n > 32<<20 {
		t.Errorf("%d MiB went out before the writer was held back", n>>20)
	}
	t.Logf("writer held back after %d KiB", n>>10)
}

// Beyond max_connections a new client is closed at once; the live ones are
// unaffected.
func TestMaxConnections(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	r := newRoute(t, "r", up.Addr())
	r.Limit = admit.NewLimit(2)
	srv, recs := start(t, r)
	var live []*net.TCPConn
	for range 2 {
		c := dial(t, srv, "r")
		c.Write([]byte("x"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		live = append(live, c)
	}
	extra := dial(t, srv, "r")
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("third client read %d, %v; want closed", n, err)
	}
	if got := r.Limit.Rejected(); got != 1 {
		t.Errorf("rejected %d, want 1", got)
	}
	for _, c := range live {
		c.Write([]byte("y"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("live session hurt by a rejection: %v", err)
		}
		c.CloseWrite()
		io.ReadAll(c)
	}
	recs.Next(t, wait)
	recs.Next(t, wait)
	// A place freed is a place to take.
	c := dial(t, srv, "r")
	c.Write([]byte("z"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("client after the others left: %v", err)
	}
}

// A thousand sessions at once, then all closed: every descriptor and every
// goroutine is given back (goleak checks the latter when the tests end).
func TestThousandSessionsLeaveNothing(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	srv, recs := start(t, newRoute(t, "r", up.Addr()))
	before := testutil.OpenFDs(t)

	const n = 1000
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = dial(t, srv, "r")
	}
	for _, c := range conns {
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Live(); got != n {
		t.Errorf("server holds %d sessions, want %d", got, n)
	}
	for i, c := range conns {
		if i%2 == 0 {
			c.CloseWrite() // half of them end cleanly
			io.ReadAll(c)
		}
		c.Close()
	}
	for range n {
		recs.Next(t, wait)
	}
	if got := srv.Live(); got != 0 {
		t.Errorf("server holds %d sessions after all ended", got)
	}
	// The echo upstream closes its side on its own goroutines; give the
	// count a bounded moment to settle to the baseline.
	deadline := time.Now().Add(wait)
	for testutil.OpenFDs(t) > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := testutil.OpenFDs(t); after > before {
		t.Errorf("%d descriptors open after, %d before", after, before)
	}
}

// Shutdown lets sessions in flight finish, and refuses new clients.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		<-release
		testutil.Echo(c)
	})
	recs, log := testutil.NewRecords()
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(table(t, newRoute(t, "r", up.Addr()))); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addrs("r")[0].String()
	c := dial(t, srv, "r")
	c.Write([]byte("in flight"))
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	// New clients are refused once the listener is closed.
	refused := false
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			refused = true
			break
		}
		nc.Close()
	}
	if !refused {
		t.Fatal("listener still accepting during shutdown")
	}
	close(release)
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "in flight" {
		t.Fatalf("in-flight session got %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// Sessions the dial loop opened before the close may be in the log
	// too; the in-flight one must have ended cleanly.
	for {
		rec := recs.Next(t, wait)
		if rec["bytes_to_upstream"] == int64(9) {
			wantReason(t, rec, "done")
			break
		}
	}
}

// When the grace period runs out, the sessions left are ended.
func TestShutdownCutsShort(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Hold)
	recs, log := testutil.NewRecords()
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(table(t, newRoute(t, "r", up.Addr()))); err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv, "r")
	c.Write([]byte("x"))
	for deadline := time.Now().Add(wait); srv.Live() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no live session within %v", wait)
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want deadline exceeded", err)
	}
	wantReason(t, recs.Next(t, wait), "shutdown")
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("client still connected after shutdown")
	}
}

// A reload under traffic: kept listeners stay open, no client fails, and
// new sessions go where the new table says.
func TestReloadUnderTraffic(t *testing.T) {
	named := func(name string) func(*net.TCPConn) {
		return func(c *net.TCPConn) {
			io.Copy(io.Discard, c)
			c.Write([]byte(name))
		}
	}
	a := testutil.NewUpstream(t, named("a"))
	b := testutil.NewUpstream(t, named("b"))
	addr := testutil.RefusedAddr(t)
	routeTo := func(up string) *route.Route {
		r := newRoute(t, "r", up)
		r.Listen = []string{addr}
		return r
	}
	srv, _ := start(t, routeTo(a.Addr()))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	var failures []error
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := roundTrip(addr)
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					seen[got]++
				}
				mu.Unlock()
			}
		})
	}
	for i := range 20 {
		up := a.Addr()
		if i%2 == 0 {
			up = b.Addr()
		}
		if err := srv.Apply(table(t, routeTo(up))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // let traffic flow between reloads
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d connections failed during reloads, first: %v", len(failures), failures[0])
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("sessions per upstream %v: reloads did not take effect", seen)
	}
	t.Logf("sessions per upstream across 20 reloads: %v", seen)
}

func roundTrip(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("q")); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", errors.New("closed without an answer")
	}
	return string(b), nil
}

// A table whose listener cannot open changes nothing: the old one serves on.
func TestBadApplyKeepsServing(t *testing.T) {
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		c.Write([]byte("old"))
	})
	srv, _ := start(t, newRoute(t, "r", up.Addr()))
	addr := srv.Addrs("r")[0].String()

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := newRoute(t, "r2", up.Addr())
	bad.Listen = []string{taken.Addr().String()}
	if err := srv.Apply(table(t, newRoute(t, "other", up.Addr()), bad)); err == nil {
		t.Fatal("apply with a taken address succeeded")
	}
	got, err := roundTrip(addr)
	if err != nil || got != "old" {
		t.Fatalf("after a failed apply: %q, %v", got, err)
	}
}

// Reading a session's bytes through pier must give what the upstream sent
// even when the client reads them one small piece at a time.
func TestSlowReader(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	up := testutil.NewUpstream(t, func(c *net.TCPConn) { c.Write(payload) })
	srv, _ := start(t, newRoute(t, "r", up.Addr()))
	c := dial(t, srv, "r")
	var got bytes.Buffer
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !bytes.Equal(got.Bytes(), payload) {
		t.Fatalf("got %d bytes, want %d identical", got.Len(), len(payload))
	}
}

// An upstream given by name is resolved for the session, and IPv6 works
// on both legs.
func TestNamesAndIPv6(t *testing.T) {
	ln6, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln6.Close()
	up := testutil.NewUpstream(t, testutil.Echo)
	_, port, _ := net.SplitHostPort(up.Addr())
	byName := newRoute(t, "name", net.JoinHostPort("localhost", port))
	v6 := newRoute(t, "v6", up.Addr())
	v6.Listen = []string{"[::1]:0"}
	srv, recs := start(t, byName, v6)
	for _, name := range []string{"name", "v6"} {
		got, err := roundTrip(srv.Addrs(name)[0].String())
		if err != nil || got != "q" {
			t.Fatalf("route %s: %q, %v", name, got, err)
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		if name == "v6" && !strings.HasPrefix(fmt.Sprint(rec["client"]), "[::1]") {
			t.Errorf("client %v, want an IPv6 address", rec["client"])
		}
	}
}

// A name that does not resolve leaves the pool without members: a
// session ends at once with no_upstream.
func TestResolveFails(t *testing.T) {
	srv, recs := start(t, newRoute(t, "r", "no-such-host.invalid:80"))
	c := dial(t, srv, "r")
	c.Read(make([]byte, 1))
	wantReason(t, recs.Next(t, wait), "no_upstream")
}

// A request and its FIN that arrive together, before the upstream is even
// connected, are both delivered: the FIN is not lost behind the data.
func TestDataAndFINTogether(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	srv, _ := start(t, newRoute(t, "r", up.Addr()))
	addr := srv.Addrs("r")[0].String()
	for i := range 200 {
		got, err := roundTrip(addr)
		if err != nil || got != "q" {
			t.Fatalf("exchange %d: %q, %v", i, got, err)
		}
	}
}

// A UDP route in the table is not the TCP server's: it opens no TCP
// listener for it (package udp serves it), while a TCP route on the same
// address is served.
func TestUDPRoutesAreNotServed(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	tcp := newRoute(t, "tcp", up.Addr())
	udp := newRoute(t, "udp", up.Addr())
	udp.Protocol = route.UDP
	srv, _ := start(t, tcp, udp)
	if got := srv.Addrs("udp"); len(got) != 0 {
		t.Errorf("the TCP server listens for a udp route on %v", got)
	}
	if got := srv.Addrs("tcp"); len(got) != 1 {
		t.Errorf("the tcp route listens on %v", got)
	}
}
