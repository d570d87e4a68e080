package toxiproxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/app"
	"github.com/pierproxy/pier/internal/toxiproxy"
)

// newHost is the one place the tests choose their Host: the application's
// Daemon with a base route, to which SetRoutes adds the Toxiproxy routes,
// as 'pier toxiproxy' runs it.
func newHost(t *testing.T) toxiproxy.Host {
	t.Helper()
	base, err := config.Parse("base", []byte(`routes: [{name: base, listen: ["127.0.0.1:0"], upstreams: [{address: "127.0.0.1:9"}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Start(base, app.Options{Log: slog.New(slog.DiscardHandler), Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Stop(ctx)
	})
	return d.ToxiproxyHost()
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
