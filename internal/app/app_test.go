package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	_ "github.com/pierproxy/pier/filter/builtin"
	"github.com/pierproxy/pier/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 10 * time.Second

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A reload that changes a pool keeps the health of the members that stay:
// a member found down is still down in the new pool at once, before any
// check of the new pool could have found it; and the old pool's checks
// stop.
func TestReloadKeepsHealth(t *testing.T) {
	dead := testutil.RefusedAddr(t)
	live := testutil.NewUpstream(t, testutil.Echo)
	other := testutil.NewUpstream(t, testutil.Echo)
	doc := func(extra string) string {
		return fmt.Sprintf(`routes:
  - name: r
    listen: ["127.0.0.1:0"]
    upstreams:
      - address: %q
      - address: %q
%s    health_check: {interval: 50ms, timeout: 40ms, rise: 2, fall: 3}
`, dead, live.Addr(), extra)
	}
	logs, log := testutil.NewLogs()
	d, err := Start(parse(t, doc("")), Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	logs.WaitFor(t, wait, "upstream member down", "addr="+dead, "3 health checks failed")

	// Another member joins; the check stays the same.
	if err := d.Reload(parse(t, doc(fmt.Sprintf("      - address: %q\n", other.Addr())))); err != nil {
		t.Fatal(err)
	}
	// The new pool's checks have had no time to fail three times (the
	// first runs within 100ms, the next about 50ms later): only the
	// carried state can say down.
	p := d.routes["r"].pool
	found := 0
	for _, m := range p.Members() {
		switch m.Addr.String() {
		case dead:
			found++
			for range 20 {
				a := p.Pick(m.Addr.Addr())
				if a.Member() == m {
					t.Fatal("the member found down before the reload was picked after it")
				}
				a.Done()
			}
		case other.Addr():
			found++
		}
	}
	if found != 2 {
		t.Fatalf("members after the reload: %d of the 2 expected", found)
	}
	if n := logs.Count("upstream member up", "addr="+dead); n != 0 {
		t.Errorf("the dead member was logged up %d times", n)
	}
}

// Two routes that name the same member with different checks keep
// separate health: one finds it down, the other up.
func TestSameMemberSeparateHealth(t *testing.T) {
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.Write([]byte("+PONG\r\n"))
		io.Copy(io.Discard, c)
	})
	logs, log := testutil.NewLogs()
	d, err := Start(parse(t, fmt.Sprintf(`routes:
  - name: good
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %[1]q}]
    health_check: {interval: 30ms, timeout: 25ms, rise: 1, fall: 1, expect: "+PONG"}
  - name: bad
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %[1]q}]
    health_check: {interval: 30ms, timeout: 25ms, rise: 1, fall: 1, expect: "+OK"}
`, up.Addr())), Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	logs.WaitFor(t, wait, "upstream member down", "route=bad", "addr="+up.Addr(), `does not begin with "+OK"`)
	// Several more checks of each route run meanwhile.
	for range 3 {
		logs.WaitFor(t, wait, "route=bad") // any line
	}
	if line := logs.Find("upstream member down", "route=good"); line != "" {
		t.Errorf("the route whose check passes logged its member down: %s", line)
	}
	if d.routes["good"].pool.Pick(netip.Addr{}) == nil {
		t.Error("the route whose check passes has no member")
	}
	if d.routes["bad"].pool.Pick(netip.Addr{}) != nil {
		t.Error("the route whose check fails picked its member")
	}
}

// openFiles returns how many of this process's descriptors are open on
// files under dir.
func openFiles(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}

// Filters that hold files close them when a reload or a stop drops them,
// and a reload that fails leaks nothing either: 50 reloads, good and bad,
// leave the process with exactly the descriptors the filters in force
// hold.
func TestReloadsLeakNoFilterFiles(t *testing.T) {
	dir := t.TempDir()
	up := testutil.NewUpstream(t, testutil.Echo)
	doc := func(name string, broken bool) string {
		pcap := filepath.Join(dir, name+".pcap")
		if broken {
			pcap = filepath.Join(dir, "gone", "x.pcap")
		}
		return fmt.Sprintf(`routes:
  - name: r
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    filters:
      - dump: {to: %q}
      - pcap: {file: %q}
`, up.Addr(), filepath.Join(dir, name+".dump"), pcap)
	}
	d, err := Start(parse(t, doc("a", false)), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			d.Stop(context.Background())
		}
	}()
	held := openFiles(t, dir)
	if held == 0 {
		t.Fatal("the filters hold no file: the test would prove nothing")
	}
	total := testutil.OpenFDs(t)
	for i := range 50 {
		name := fmt.Sprintf("f%d", i)
		if i%5 == 4 {
			// The loader checks that the pcap file can be written; the
			// directory is gone by the time the filter is made, after dump
			// has opened its file.
			gone := filepath.Join(dir, "gone")
			if err := os.Mkdir(gone, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := parse(t, doc(name, true))
			os.Remove(gone)
			if err := d.Reload(cfg); err == nil {
				t.Fatal("a reload with a pcap file in a missing directory succeeded")
			}
		} else if err := d.Reload(parse(t, doc(name, false))); err != nil {
			t.Fatal(err)
		}
		if n := openFiles(t, dir); n != held {
			t.Fatalf("reload %d: %d files open under the filters' directory, want %d", i, n, held)
		}
	}
	// Nothing else leaked either: sockets, pipes, epoll or event fds. (Other
	// tests' connections may still be closing: fewer is fine.)
	if n := testutil.OpenFDs(t); n > total {
		t.Errorf("%d descriptors open after 50 reloads, %d before", n, total)
	}
	stopped = true
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := openFiles(t, dir); n != 0 {
		t.Fatalf("%d filter files still open after Stop", n)
	}
}

// On stop, one line sums up the run: sessions, bytes each way, clients
// refused by a route's limit, and sessions that found no upstream.
func TestStopSummarizes(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	dead := testutil.RefusedAddr(t)
	logs, log := testutil.NewLogs()
	d, err := Start(parse(t, fmt.Sprintf(`routes:
  - name: ok
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
  - name: dead
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    retries: 0
`, up.Addr(), dead)), Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c, err := net.Dial("tcp", d.Addrs("ok")[0].String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(wait))
		io.WriteString(c, "hello")
		c.(*net.TCPConn).CloseWrite()
		if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
			t.Fatalf("echo %q, %v", b, err)
		}
		c.Close()
	}
	c, err := net.Dial("tcp", d.Addrs("dead")[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(wait))
	io.ReadAll(c) // closed once the dial fails
	c.Close()
	// Stop waits for the sessions to end: every one is in the sums.
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs.WaitFor(t, wait, "stopped", "sessions=3", "bytes_to_upstream=10", "bytes_to_client=10", "refused=0", "failed_dials=1")
}

// A new route's filters are in force before its listener opens: a client
// accepted the moment the listener is up (its "listening" line logged) is
// relayed through them, never around them. compile is where the table
// that opens the listener is made, so the set must be in force by then.
func TestNewRouteFiltersInForceBeforeListening(t *testing.T) {
	cfg := parse(t, `routes:
  - name: r
    listen: ["127.0.0.1:0"]
    upstreams: [{address: "127.0.0.1:1"}]
    filters:
      - reset: {bytes: 100}
`)
	log := slog.New(slog.DiscardHandler)
	_, routes, _, made, err := compile(cfg, nil, nil, (&overlay{}).steering, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSets(made, log)
	defer stopPools(routes)
	c := routes["r"]
	if c.set == nil {
		t.Fatal("the route has no filter set: the test would prove nothing")
	}
	if got := c.filters.Load(); got != c.set {
		t.Fatalf("new route's filters in force before the table is applied: %p, want its set %p", got, c.set)
	}
}

// barrierFilter's Close returns once every barrierFilter being closed has
// started closing, or fails after a while: closed one after another, the
// first would wait for the second for ever.
type barrierFilter struct{ wg *sync.WaitGroup }

func (barrierFilter) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }

func (b barrierFilter) Close() error {
	b.wg.Done()
	waited := make(chan struct{})
	go func() { b.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-time.After(wait):
		return errors.New("closed alone: filters are closed one after another")
	}
}

var closeBarrier sync.WaitGroup

type noFilter struct{}

func (noFilter) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }

func init() {
	filter.Register(filter.Spec{Name: "test_barrier", New: func(o *filter.Options) (filter.Filter, error) {
		if o.DryRun() {
			return noFilter{}, o.Err() // the loader's check: nothing to close
		}
		return barrierFilter{wg: &closeBarrier}, o.Err()
	}})
}

// Filters close all at once, so that a stop waits for the slowest, not for
// their sum.
func TestFiltersCloseTogether(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	closeBarrier.Add(3)
	logs, log := testutil.NewLogs()
	d, err := Start(parse(t, fmt.Sprintf(`routes:
  - name: a
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    filters: [test_barrier, test_barrier]
  - name: b
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    filters: [test_barrier]
`, up.Addr(), up.Addr())), Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if line := logs.Find("closing a filter"); line != "" {
		t.Fatal(line)
	}
}

// Reload and Stop may be called at once (a program embedding pier may):
// they take turns, a reload after the stop fails, and the stop stops the
// pools and filters of whichever reload came last (goleak, in TestMain,
// finds any health checker left running).
func TestReloadAndStopTakeTurns(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	doc := func(i int) string {
		return fmt.Sprintf(`routes:
  - name: r
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    health_check: {interval: %dms, timeout: 5ms}
    filters: [pass]
`, up.Addr(), 10+i)
	}
	d, err := Start(parse(t, doc(0)), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 1; ; i++ {
				if err := d.Reload(parse(t, doc(g*1000+i))); err != nil {
					if !strings.Contains(err.Error(), "stopped") {
						t.Error(err)
					}
					return
				}
			}
		})
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := d.Stop(context.Background()); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}
