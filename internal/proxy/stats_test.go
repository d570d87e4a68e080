package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/testutil"
)

// startCounted runs a server whose routes are counted (route.Route.Stats
// set, one shard per loop) and stops it when the test ends.
func startCounted(t testing.TB, routes ...*route.Route) (*proxy.Server, *testutil.Records) {
	t.Helper()
	recs, log := testutil.NewRecords()
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		rt.Stats = stats.NewRoute(rt.Name, srv.Loops())
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

// waitTotals polls rt's totals until ok says yes, or fails the test after
// wait. The counters are atomics read without waking a loop, so polling
// is how a reader sees them move.
func waitTotals(t *testing.T, rt *route.Route, what string, ok func(stats.Totals) bool) stats.Totals {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		tot := rt.Stats.Totals()
		if ok(tot) {
			return tot
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never true; totals %+v", what, tot)
		}
		time.Sleep(time.Millisecond)
	}
}

// heldUpstream is an upstream whose connections the test drives itself:
// each accepted connection is handed over on conns, and held open until
// the test ends.
type heldUpstream struct {
	*testutil.Upstream
	conns chan *net.TCPConn
}

func newHeldUpstream(t *testing.T) *heldUpstream {
	t.Helper()
	h := &heldUpstream{conns: make(chan *net.TCPConn, 16)}
	done := make(chan struct{})
	h.Upstream = testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(wait))
		h.conns <- c
		<-done
	})
	t.Cleanup(func() { close(done) }) // runs before the Upstream's Close
	return h
}

func (h *heldUpstream) next(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-h.conns:
		return c
	case <-time.After(wait):
		t.Fatal("the upstream never got the session")
		return nil
	}
}

// Every way a session ends is counted once, under its own reason, on
// its route; a client refused by max_connections is refused, not a
// session; a no_upstream one is both.
func TestStatsEveryEndReasonCountedOnce(t *testing.T) {
	hold := testutil.NewUpstream(t, testutil.Hold)
	resetter := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.Read(make([]byte, 1))
		c.SetLinger(0)
	})
	echo := testutil.NewUpstream(t, testutil.Echo)
	silent := newHeldUpstream(t) // never closes: only a timeout ends its sessions

	done := newRoute(t, "done", echo.Addr())
	clientReset := newRoute(t, "client_reset", hold.Addr())
	upstreamReset := newRoute(t, "upstream_reset", resetter.Addr())
	connectFailed := newRoute(t, "connect_failed", testutil.RefusedAddr(t))
	connectTimeout := newRoute(t, "connect_timeout", unresponsive(t))
	connectTimeout.ConnectTimeout = 200 * time.Millisecond
	idle := newRoute(t, "idle_timeout", hold.Addr())
	idle.IdleTimeout = 100 * time.Millisecond
	halfClose := newRoute(t, "half_close_timeout", silent.Addr())
	halfClose.HalfCloseTimeout = 100 * time.Millisecond
	noUpstream := poolRoute(t, "no_upstream", pool.Config{}, hold.Addr())
	spec, _ := pool.ParseAddress(hold.Addr())
	spec.Drain = true
	p, err := pool.New(pool.Config{Route: "no_upstream", Members: []pool.Spec{spec}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	noUpstream.Pool = p
	limited := newRoute(t, "limit", hold.Addr())
	limited.Limit = admit.NewLimit(1)

	routes := []*route.Route{done, clientReset, upstreamReset, connectFailed, connectTimeout, idle, halfClose, noUpstream, limited}
	srv, recs := startCounted(t, routes...)

	// done
	c := dial(t, srv, "done")
	c.Write([]byte("x"))
	c.CloseWrite()
	io.ReadAll(c)
	wantReason(t, recs.Next(t, wait), "done")
	// client_reset, once the session is open
	c = dial(t, srv, "client_reset")
	waitTotals(t, clientReset, "client_reset session open", func(s stats.Totals) bool { return s.States[session.Open] == 1 })
	c.SetLinger(0)
	c.Close()
	wantReason(t, recs.Next(t, wait), "client_reset")
	// upstream_reset
	c = dial(t, srv, "upstream_reset")
	c.Write([]byte("x"))
	wantReason(t, recs.Next(t, wait), "upstream_reset")
	// connect_failed, connect_timeout, idle_timeout
	for _, name := range []string{"connect_failed", "connect_timeout", "idle_timeout"} {
		dial(t, srv, name)
		wantReason(t, recs.Next(t, wait), name)
	}
	// half_close_timeout
	c = dial(t, srv, "half_close_timeout")
	c.CloseWrite()
	wantReason(t, recs.Next(t, wait), "half_close_timeout")
	// no_upstream
	dial(t, srv, "no_upstream")
	wantReason(t, recs.Next(t, wait), "no_upstream")
	// limit: one session held, the next client refused, then the held one ends.
	held := dial(t, srv, "limit")
	waitTotals(t, limited, "limit's first session open", func(s stats.Totals) bool { return s.States[session.Open] == 1 })
	dial(t, srv, "limit")
	wantReason(t, recs.Next(t, wait), "limit")
	held.Close()
	wantReason(t, recs.Next(t, wait), "done")

	for _, rt := range routes {
		tot := rt.Stats.Totals()
		want := map[string]uint64{rt.Name: 1}
		if rt == limited {
			want = map[string]uint64{"done": 1}
		}
		for r := range session.Reason(session.NumReasons) {
			if got := tot.Ended[r]; got != want[r.String()] {
				t.Errorf("route %s: ended %s = %d, want %d", rt.Name, r, got, want[r.String()])
			}
		}
		if tot.Started != 1 {
			t.Errorf("route %s: started %d, want 1", rt.Name, tot.Started)
		}
		wantRefused := [stats.NumRefusals]uint64{}
		switch rt {
		case limited:
			wantRefused[stats.RefusedLimit] = 1
		case noUpstream:
			wantRefused[stats.RefusedNoUpstream] = 1
		}
		if tot.Refused != wantRefused {
			t.Errorf("route %s: refused %v, want %v", rt.Name, tot.Refused, wantRefused)
		}
		if tot.States != [session.NumStates]int64{} {
			t.Errorf("route %s: %v sessions by state after all ended", rt.Name, tot.States)
		}
		if n := tot.Duration.Count(); n != 1 {
			t.Errorf("route %s: %d durations observed, want 1", rt.Name, n)
		}
	}
	if tot := done.Stats.Totals(); tot.ToUpstream != 1 || tot.ToClient != 1 || tot.ConnectTime.Count() != 1 {
		t.Errorf("done: bytes %d/%d, %d connect times; want 1/1 and 1", tot.ToUpstream, tot.ToClient, tot.ConnectTime.Count())
	}
}

// A session's state follows it: connecting while its dial gets no
// answer, open once connected, then half-closed by the side whose FIN
// came first, and nothing once it ends.
func TestStatsStatesFollowSession(t *testing.T) {
	up := newHeldUpstream(t)
	connecting := newRoute(t, "connecting", unresponsive(t))
	connecting.ConnectTimeout = 300 * time.Millisecond
	rt := newRoute(t, "r", up.Addr())
	srv, recs := startCounted(t, connecting, rt)

	dial(t, srv, "connecting")
	waitTotals(t, connecting, "connecting", func(s stats.Totals) bool { return s.States[session.Connecting] == 1 })
	wantReason(t, recs.Next(t, wait), "connect_timeout")
	if tot := connecting.Stats.Totals(); tot.States[session.Connecting] != 0 || tot.ConnectTime.Count() != 0 {
		t.Errorf("after connect_timeout: %v by state, %d connect times; want none", tot.States, tot.ConnectTime.Count())
	}

	for _, first := range []string{"client", "upstream"} {
		c := dial(t, srv, "r")
		u := up.next(t)
		c.Write([]byte("hi"))
		io.ReadFull(u, make([]byte, 2))
		waitTotals(t, rt, "open", func(s stats.Totals) bool {
			return s.States == [session.NumStates]int64{session.Open: 1}
		})
		want := session.HalfClosedClient
		a, b := c, u
		if first == "upstream" {
			want, a, b = session.HalfClosedUpstream, u, c
		}
		a.CloseWrite()
		if n, err := b.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("%s's FIN: the other side read %d, %v", first, n, err)
		}
		waitTotals(t, rt, want.String(), func(s stats.Totals) bool {
			var w [session.NumStates]int64
			w[want] = 1
			return s.States == w
		})
		b.CloseWrite()
		if n, err := a.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("the second FIN: read %d, %v", n, err)
		}
		wantReason(t, recs.Next(t, wait), "done")
		if tot := rt.Stats.Totals(); tot.States != [session.NumStates]int64{} {
			t.Errorf("ended session still counted by state: %v", tot.States)
		}
	}
	if n := rt.Stats.Totals().ConnectTime.Count(); n != 2 {
		t.Errorf("%d connect times observed for 2 sessions", n)
	}
}

// A live session's bytes show in the route's totals while it lives, and
// are not counted again when it ends.
func TestStatsLiveBytes(t *testing.T) {
	up := newHeldUpstream(t)
	rt := newRoute(t, "r", up.Addr())
	srv, recs := startCounted(t, rt)
	c := dial(t, srv, "r")
	u := up.next(t)
	sent := bytes.Repeat([]byte("u"), 1000)
	c.Write(sent)
	if _, err := io.ReadFull(u, make([]byte, len(sent))); err != nil {
		t.Fatal(err)
	}
	waitTotals(t, rt, "1000 bytes to the upstream while live", func(s stats.Totals) bool { return s.ToUpstream == 1000 })
	u.Write(bytes.Repeat([]byte("c"), 500))
	if _, err := io.ReadFull(c, make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	tot := waitTotals(t, rt, "500 bytes to the client while live", func(s stats.Totals) bool { return s.ToClient == 500 })
	if tot.Started != 1 || tot.Ended != [session.NumReasons]uint64{} {
		t.Fatalf("the session is not live: started %d, ended %v", tot.Started, tot.Ended)
	}
	c.CloseWrite()
	io.ReadAll(u)
	u.CloseWrite()
	io.ReadAll(c)
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["bytes_to_upstream"] != int64(1000) || rec["bytes_to_client"] != int64(500) {
		t.Errorf("record bytes %v/%v, want 1000/500", rec["bytes_to_upstream"], rec["bytes_to_client"])
	}
	if tot := rt.Stats.Totals(); tot.ToUpstream != 1000 || tot.ToClient != 500 {
		t.Errorf("after the end: %d/%d bytes, want 1000/500", tot.ToUpstream, tot.ToClient)
	}
}

// A dial beyond the first is a retry.
func TestStatsCountRetries(t *testing.T) {
	echo := testutil.NewUpstream(t, testutil.Echo)
	rt := poolRoute(t, "r", pool.Config{Retries: 1}, testutil.RefusedAddr(t), echo.Addr())
	srv, recs := startCounted(t, rt)
	tries := 0
	for range 2 {
		c := dial(t, srv, "r")
		c.CloseWrite()
		io.ReadAll(c)
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		tries++
		if n, ok := rec["tries"].(int64); ok {
			tries += int(n) - 1
		}
	}
	if tot := rt.Stats.Totals(); tot.Retries != uint64(tries-2) || tot.Retries != 1 {
		t.Errorf("retries %d, want %d (1 of 2 sessions tried the refused member first)", tot.Retries, tries-2)
	}
}
