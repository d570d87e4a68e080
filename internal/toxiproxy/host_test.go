package toxiproxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/pierproxy/pier"
	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/toxiproxy"
)

// newHost is the one place the tests choose their Host: a pier.Proxy
// with a base route, to which SetRoutes adds the Toxiproxy routes. When
// the application's Daemon implements Host (EndSessions included), this
// function is what changes.
func newHost(t *testing.T) toxiproxy.Host {
	t.Helper()
	base, err := config.Parse("base", []byte(`routes: [{name: base, listen: ["127.0.0.1:0"], upstreams: [{address: "127.0.0.1:9"}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pier.Start(base, pier.Options{Log: slog.New(slog.DiscardHandler), Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return &pierHost{p: p, base: base}
}

// errNoEndSessions is pierHost's EndSessions: package pier cannot end a
// route's sessions (yet).
var errNoEndSessions = errors.New("pierHost: EndSessions: not yet")

type pierHost struct {
	mu   sync.Mutex
	p    *pier.Proxy
	base *config.Config
}

func (h *pierHost) SetRoutes(routes []config.Route) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg := *h.base
	cfg.Routes = append(slices.Clone(h.base.Routes), routes...)
	return h.p.Apply(&cfg)
}

func (h *pierHost) Addrs(route string) []netip.AddrPort { return h.p.Addrs(route) }

func (h *pierHost) EndSessions(context.Context, string, bool) (int, error) {
	return 0, errNoEndSessions
}

// canEndSessions reports whether h ends sessions; tests of what needs it
// skip otherwise.
func canEndSessions(h toxiproxy.Host) bool {
	_, err := h.EndSessions(context.Background(), "toxiproxy.none", false)
	return !errors.Is(err, errNoEndSessions)
}

// env is a Toxiproxy API served by pier, an echo upstream, and
// Toxiproxy's own client.
type env struct {
	host   toxiproxy.Host
	srv    *toxiproxy.Server
	url    string
	client *toxiclient.Client
	echo   string // the upstream's address
}

func newEnv(t *testing.T) *env {
	t.Helper()
	h := newHost(t)
	seed := uint64(7)
	s := toxiproxy.NewServer(h, toxiproxy.Options{Log: slog.New(slog.DiscardHandler), Seed: &seed})
	ts := httptest.NewServer(s.Handler()) // on 127.0.0.1:0
	t.Cleanup(ts.Close)
	return &env{host: h, srv: s, url: ts.URL, client: toxiclient.NewClient(ts.URL), echo: echoServer(t)}
}

// echoServer serves an upstream that sends back what it reads, and
// finishes its side when the client finishes its own.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, c) // until pier closes
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial connects to a proxy, closed at the test's end.
func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back, returning how long that took.
func roundTrip(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetDeadline(start.Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading back %q: %v", msg, err)
	}
	if string(buf) != msg {
		t.Fatalf("read back %q, want %q", buf, msg)
	}
	return time.Since(start)
}

// createProxy makes a proxy to the echo upstream on 127.0.0.1:0 and waits
// for nothing: its listener is open when the call returns.
func (e *env) createProxy(t *testing.T, name string) *toxiclient.Proxy {
	t.Helper()
	p, err := e.client.CreateProxy(name, "127.0.0.1:0", e.echo)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
