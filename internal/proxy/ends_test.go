package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/testutil"
)

// The recent ends are the finished sessions, newest first, filtered by
// route and reason.
func TestRecentEnds(t *testing.T) {
	echo := testutil.NewUpstream(t, testutil.Echo)
	a := newRoute(t, "a", echo.Addr())
	b := newRoute(t, "b", testutil.RefusedAddr(t))
	srv, recs := start(t, a, b)
	for range 3 {
		if _, err := roundTrip(srv.Addrs("a")[0].String()); err != nil {
			t.Fatal(err)
		}
		recs.Next(t, wait)
	}
	for range 2 {
		if _, err := roundTrip(srv.Addrs("b")[0].String()); err == nil {
			t.Fatal("a route to a refused upstream answered")
		}
		recs.Next(t, wait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	all, partial := srv.RecentEnds(ctx, proxy.EndsMatch{}, 100)
	if partial || len(all) != 5 {
		t.Fatalf("all ends: %d (partial %v), want 5", len(all), partial)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Start.Add(all[i].Duration).After(all[i-1].Start.Add(all[i-1].Duration)) {
			t.Fatalf("ends not newest first at %d", i)
		}
	}
	if all[0].Route != "b" || all[len(all)-1].Route != "a" {
		t.Fatalf("newest %s, oldest %s; want b, a", all[0].Route, all[len(all)-1].Route)
	}
	got, _ := srv.RecentEnds(ctx, proxy.EndsMatch{Route: "b", Reason: session.ConnectFailed}, 100)
	if len(got) != 2 {
		t.Fatalf("route b's connect_failed ends: %d, want 2", len(got))
	}
	got, _ = srv.RecentEnds(ctx, proxy.EndsMatch{Route: "a"}, 2)
	if len(got) != 2 || got[0].Reason != session.Done {
		t.Fatalf("route a's last two: %+v", got)
	}
}

// A client refused by max_connections is among the recent ends too, as
// its access log line is.
func TestRecentEndsShowRefusals(t *testing.T) {
	hold := testutil.NewUpstream(t, testutil.Hold)
	r := newRoute(t, "r", hold.Addr())
	r.Limit.SetMax(1)
	srv, recs := start(t, r)
	dial(t, srv, "r") // holds the only place
	deadline := time.Now().Add(wait)
	for srv.Live() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first session never began")
		}
		time.Sleep(time.Millisecond)
	}
	refused := dial(t, srv, "r")
	if n, err := refused.Read(make([]byte, 1)); err == nil {
		t.Fatalf("a client beyond max_connections read %d bytes", n)
	}
	wantReason(t, recs.Next(t, wait), "limit")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, _ := srv.RecentEnds(ctx, proxy.EndsMatch{Reason: session.Limit}, 10)
	if len(got) != 1 || got[0].Route != "r" {
		t.Fatalf("limit ends: %+v", got)
	}
}
