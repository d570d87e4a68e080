package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/testutil"
)

// echoThrough sends a line through addr and reads it back.
func echoThrough(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through %s: %q, %v", addr, got, err)
	}
}

func ownedRoute(t *testing.T, name, upstream string) config.Route {
	t.Helper()
	cfg := parse(t, fmt.Sprintf("routes:\n  - name: %s\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q}]\n", name, upstream))
	return cfg.Routes[0]
}

// An owner's routes run beside the file's, stay across a reload of the
// file, and close when the owner drops them.
func TestOwnedRoutesBesideTheFile(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	file := fmt.Sprintf("routes:\n  - name: file\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q}]\n", up.Addr())
	d, err := Start(parse(t, file), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())

	if err := d.SetOwnedRoutes("test", []config.Route{ownedRoute(t, "owned.a", up.Addr())}); err != nil {
		t.Fatal(err)
	}
	addrs := d.Addrs("owned.a")
	if len(addrs) != 1 {
		t.Fatalf("owned route's listeners: %v", addrs)
	}
	echoThrough(t, addrs[0].String())

	if err := d.Reload(parse(t, file)); err != nil {
		t.Fatal(err)
	}
	if got := d.Addrs("owned.a"); len(got) != 1 || got[0] != addrs[0] {
		t.Fatalf("after a reload of the file the owned route listens on %v, want %v", got, addrs)
	}
	echoThrough(t, addrs[0].String())
	if n := len(d.Config().Routes); n != 2 {
		t.Errorf("routes in force: %d, want 2", n)
	}

	if err := d.SetOwnedRoutes("test", nil); err != nil {
		t.Fatal(err)
	}
	if got := d.Addrs("owned.a"); len(got) != 0 {
		t.Fatalf("a dropped owned route still listens on %v", got)
	}
	if c, err := net.Dial("tcp", addrs[0].String()); err == nil {
		c.Close()
		t.Fatal("the dropped route's port still accepts")
	}
}

// An owner's route that clashes with the file's is refused whole, and
// what ran stays.
func TestOwnedRouteClashRefused(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	file := fmt.Sprintf("routes:\n  - name: file\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q}]\n", up.Addr())
	d, err := Start(parse(t, file), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	if err := d.SetOwnedRoutes("test", []config.Route{ownedRoute(t, "file", up.Addr())}); err == nil {
		t.Fatal("an owned route with a file route's name was taken")
	}
	if n := len(d.Config().Routes); n != 1 {
		t.Errorf("routes in force after a refused change: %d, want 1", n)
	}
	echoThrough(t, d.Addrs("file")[0].String())
}

// Readiness fails from the moment Stop begins.
func TestReadyUntilStop(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	d, err := Start(parse(t, fmt.Sprintf("routes:\n  - name: r\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q}]\n", up.Addr())), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := d.Ready(); !ok {
		t.Fatalf("not ready after Start: %s", why)
	}
	d.Stop(context.Background())
	if ok, why := d.Ready(); ok || why != "draining" {
		t.Fatalf("Ready after Stop: %v %q", ok, why)
	}
}

// The YAML's toxiproxy: serves Toxiproxy's API beside the file's routes;
// its proxies stay across a reload that keeps it, and go with it.
func TestToxiproxyBesideTheFile(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	route := fmt.Sprintf("routes:\n  - name: file\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q}]\n", up.Addr())
	with := "toxiproxy: {listen: \"127.0.0.1:0\"}\n" + route
	d, err := Start(parse(t, with), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	c := toxiclient.NewClient(d.ToxiproxyAddr().String())
	px, err := c.CreateProxy("db", "127.0.0.1:0", up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, px.Listen)

	if err := d.Reload(parse(t, with)); err != nil {
		t.Fatal(err)
	}
	echoThrough(t, px.Listen)
	if got, err := c.Proxy("db"); err != nil || got.Listen != px.Listen {
		t.Fatalf("after a reload: %+v, %v", got, err)
	}

	// The preview sees the proxies as a reload does: kept beside a file
	// that keeps the API, closed with a file that drops it.
	if p := (control{d}).Check([]byte(with)); !p.OK || len(p.Changes) != 0 {
		t.Fatalf("preview of the same file: %+v", p)
	}
	if p := (control{d}).Check([]byte(route)); !p.OK || !slices.ContainsFunc(p.Changes, func(c admin.Change) bool {
		return c.Kind == "listener" && c.Action == "close" && c.Route == "toxiproxy.db"
	}) {
		t.Fatalf("preview of a file without toxiproxy: %+v", p)
	}

	host := d.ToxiproxyHost()
	if err := d.Reload(parse(t, route)); err != nil {
		t.Fatal(err)
	}
	// A request the removed API was still serving cannot bring its
	// routes back.
	if err := host.SetRoutes([]config.Route{ownedRoute(t, "toxiproxy.late", up.Addr())}); err == nil {
		t.Fatal("the removed Toxiproxy API's host still made routes")
	}
	if d.ToxiproxyAddr() != nil {
		t.Fatal("the Toxiproxy API still serves after a reload without toxiproxy:")
	}
	if c, err := net.Dial("tcp", px.Listen); err == nil {
		c.Close()
		t.Fatal("the Toxiproxy proxy still listens after the API went")
	}
	echoThrough(t, d.Addrs("file")[0].String())
}
