package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/testutil"
)

// These tests pin Server.FiltersChanged: a filter set stored for a route
// reaches its idle sessions at once, where without the call an idle
// session takes it up only when a byte next moves. "At once" is checked
// against a bound of seconds (a loaded machine). The first two cannot
// pass without the call (each first shows the old set still holding);
// the mid-switch and half-closed ones are safety checks of a change
// under way, which the sessions' own turns also reach.

// promptly bounds how long an idle session may take to act on a change.
const promptly = 3 * time.Second

// setOf is a filter set of the named filters, in order.
func setOf(fs ...chain.Named) *chain.Set { return &chain.Set{Filters: fs} }

// waitFilters waits until route has one live session, open or
// half-closed, running the filters named want (nil: none), and returns
// it. The listing is posted to the loops after any earlier
// FiltersChanged, so it also says that those walks are done.
func waitFilters(t *testing.T, srv *proxy.Server, route string, want []string) relay.SessionInfo {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		page, _, _ := srv.Sessions(ctx, relay.Match{Route: route}, 0, 10)
		cancel()
		if len(page) == 1 && slices.Equal(page[0].Filters, want) {
			return page[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("route %s: sessions %+v, want one running filters %v", route, page, want)
		}
		time.Sleep(time.Millisecond) // polling the loops, not waiting for a server
	}
}

// stillOpen checks that c neither ends nor receives within d.
func stillOpen(t *testing.T, c *net.TCPConn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: read %d, %v; want nothing before the deadline", what, n, err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
}

// An idle session whose timeout {close_at_end} filter is removed ends at
// once, cleanly (Toxiproxy closes a connection when its timeout toxic is
// removed), with no byte written by either side. An idle session of
// another route, whose set changed without a FiltersChanged for it, is
// not touched: it takes its change up at its next byte, as before.
func TestFilterRemovalEndsIdleSessionAtOnce(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Hold)
	timeout := func() chain.Named {
		return chain.Named{Name: "timeout", Filter: builtin(t, "timeout", opts{"after": "0", "close_at_end": "true"})}
	}
	idle := newRoute(t, "idle", up.Addr())
	idle.Filters = new(chain.InForce)
	idle.Filters.Store(setOf(timeout()))
	other := newRoute(t, "other", up.Addr())
	other.Filters = new(chain.InForce)
	other.Filters.Store(setOf(timeout()))
	srv, recs := start(t, idle, other)

	ci, co := dial(t, srv, "idle"), dial(t, srv, "other")
	waitFilters(t, srv, "idle", []string{"timeout"})
	waitFilters(t, srv, "other", []string{"timeout"})
	stillOpen(t, ci, 100*time.Millisecond, "idle, before the change")

	other.Filters.Store(setOf())
	idle.Filters.Store(setOf())
	srv.FiltersChanged(idle.Filters)
	start := time.Now()
	ci.SetReadDeadline(start.Add(promptly))
	if n, err := ci.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("idle session after its timeout filter was removed: read %d, %v; want EOF", n, err)
	}
	t.Logf("ended %v after FiltersChanged", time.Since(start))
	rec := recs.Next(t, wait)
	if rec["route"] != "idle" {
		t.Fatalf("first session to end: %v", rec)
	}
	wantReason(t, rec, "filter_close")

	// The other route's session is idle too, and was not walked into its
	// change: still open, still on its old set.
	stillOpen(t, co, 200*time.Millisecond, "the other route's session")
	waitFilters(t, srv, "other", []string{"timeout"})
	// Its next byte takes the change up, as it always did.
	co.Write([]byte("x"))
	co.SetReadDeadline(time.Now().Add(wait))
	if _, err := co.Read(make([]byte, 16)); err != io.EOF && !testutil.IsReset(err) {
		t.Fatalf("other session after its next byte: %v, want its end", err)
	}
	wantReason(t, recs.Next(t, wait), "filter_close")
}

// Bytes a stall (bandwidth rate 0) holds in an idle session leave as soon
// as the stall is removed, with no further traffic: Toxiproxy lets a
// removed toxic's bytes go. The session goes on, spliced.
func TestFilterRemovalReleasesHeldBytesAtOnce(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	rt := newRoute(t, "stall", up.Addr())
	rt.Filters = new(chain.InForce)
	rt.Filters.Store(setOf(chain.Named{Name: "stall", Filter: builtin(t, "bandwidth", opts{"rate": "0", "direction": "both"})}))
	srv, recs := start(t, rt)
	c := dial(t, srv, "stall")
	waitFilters(t, srv, "stall", []string{"stall"})
	c.Write([]byte("held"))
	stillOpen(t, c, 200*time.Millisecond, "stalled")
	if info := waitFilters(t, srv, "stall", []string{"stall"}); info.ToUpstream != 0 {
		t.Fatalf("the stall let %d bytes through", info.ToUpstream)
	}

	rt.Filters.Store(nil)
	srv.FiltersChanged(rt.Filters)
	c.SetReadDeadline(time.Now().Add(promptly))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after the stall was removed: read %q, %v; want the held bytes", buf, err)
	}
	waitFilters(t, srv, "stall", nil)
	c.SetReadDeadline(time.Now().Add(wait))
	c.Write([]byte("after"))
	buf = make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "after" {
		t.Fatalf("spliced afterwards: read %q, %v", buf, err)
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("end: %q, %v; want EOF", rest, err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["bytes_to_upstream"] != int64(9) || rec["bytes_to_client"] != int64(9) {
		t.Errorf("bytes %v up, %v down; want 9 each", rec["bytes_to_upstream"], rec["bytes_to_client"])
	}
}

// counted forwards everything and counts it, per direction.
func counted(name string, up, down *atomic.Int64) chain.Named {
	return chain.Named{Name: name, Filter: funcFilter{up: pass(up), down: pass(down)}}
}

// gate holds every byte until open, looking every few milliseconds; held
// says how many it holds.
type gate struct {
	open *atomic.Bool
	held *atomic.Int64
}

func (g gate) Process(b *filter.Batch) error {
	g.held.Store(int64(len(b.In)))
	if g.open.Load() {
		b.Pass(len(b.In))
	} else if len(b.In) > 0 {
		b.WakeAt(b.Now.Add(5 * time.Millisecond))
	}
	return nil
}

// A session mid-switch (its old chain still holds bytes it must forward
// first) that is walked into a second change takes up the newest set once
// the old one has drained; the set it was switching to is never taken
// up on that direction; nothing is lost, repeated or reordered.
func TestFilterChangeMidSwitch(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	rt := newRoute(t, "mid", up.Addr())
	rt.Filters = new(chain.InForce)
	var open atomic.Bool
	var held atomic.Int64
	rt.Filters.Store(setOf(chain.Named{Name: "gate", Filter: funcFilter{up: func() filter.Stream { return gate{&open, &held} }}}))
	srv, recs := start(t, rt)
	c := dial(t, srv, "mid")
	waitFilters(t, srv, "mid", []string{"gate"})
	c.Write([]byte("abc")) // held by the gate until it opens
	for deadline := time.Now().Add(wait); held.Load() != 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the gate holds %d bytes, want 3", held.Load())
		}
	}

	var bUp, bDown, cUp, cDown atomic.Int64
	rt.Filters.Store(setOf(counted("b", &bUp, &bDown)))
	srv.FiltersChanged(rt.Filters)
	if info := waitFilters(t, srv, "mid", []string{"b"}); info.ToUpstream != 0 {
		t.Fatalf("the gate let %d bytes through", info.ToUpstream)
	}
	rt.Filters.Store(setOf(counted("c", &cUp, &cDown)))
	srv.FiltersChanged(rt.Filters)
	waitFilters(t, srv, "mid", []string{"c"})
	open.Store(true)

	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "abc" {
		t.Fatalf("held bytes: %q, %v", buf, err)
	}
	c.Write([]byte("def"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "def" {
		t.Fatalf("after the switch: %q, %v", buf, err)
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("end: %q, %v", rest, err)
	}
	wantReason(t, recs.Next(t, wait), "done")
	if bUp.Load() != 0 {
		t.Errorf("the set the upstream direction was switching to saw %d bytes", bUp.Load())
	}
	// "abc" came back through c on its way down (the client's direction
	// had switched, the upstream's was still draining the gate), "def"
	// both ways.
	if cUp.Load() != 3 || cDown.Load() != 6 {
		t.Errorf("the newest set saw %d bytes up and %d down, want 3 and 6", cUp.Load(), cDown.Load())
	}
}

// A half-closed idle session (the client has sent its FIN, the upstream
// has not answered yet) walked into a change keeps its half-close: the
// direction that ended keeps its end, the other takes up the new set, and
// the upstream's late answer and FIN still reach the client.
func TestFilterChangeHalfClosed(t *testing.T) {
	answer := make(chan struct{})
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(wait))
		if _, err := io.ReadAll(c); err != nil {
			return
		}
		select {
		case <-answer:
		case <-time.After(wait):
			return
		}
		c.Write([]byte("late"))
		c.CloseWrite()
	})
	var aUp, aDown, bUp, bDown atomic.Int64
	rt := newRoute(t, "half", up.Addr())
	rt.Filters = new(chain.InForce)
	rt.Filters.Store(setOf(counted("a", &aUp, &aDown)))
	srv, recs := start(t, rt)
	c := dial(t, srv, "half")
	c.Write([]byte("question"))
	c.CloseWrite()
	deadline := time.Now().Add(wait)
	for waitFilters(t, srv, "half", []string{"a"}).State != session.HalfClosedClient {
		if time.Now().After(deadline) {
			t.Fatal("the session never became half-closed")
		}
		time.Sleep(time.Millisecond)
	}

	rt.Filters.Store(setOf(counted("b", &bUp, &bDown)))
	srv.FiltersChanged(rt.Filters)
	waitFilters(t, srv, "half", []string{"b"})
	close(answer)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "late" {
		t.Fatalf("the upstream's answer after the change: %q, %v", got, err)
	}
	wantReason(t, recs.Next(t, wait), "done")
	if aUp.Load() != 8 || aDown.Load() != 0 || bUp.Load() != 0 || bDown.Load() != 4 {
		t.Errorf("filters saw a %d/%d, b %d/%d (up/down); want a 8/0, b 0/4", aUp.Load(), aDown.Load(), bUp.Load(), bDown.Load())
	}
}
