package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
)

// served sends first through c and reports whether it came back (the
// upstream echoes: the client was admitted) or c was closed (refused).
func served(t *testing.T, c *net.TCPConn, first []byte) bool {
	t.Helper()
	defer c.Close()
	if _, err := c.Write(first); err != nil {
		return false // a refusal may reset before the write
	}
	c.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, len(first))
	_, err := io.ReadFull(c, got)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("neither served nor refused within the wait")
	}
	return err == nil
}

// TestSlowHelloBuysNoRate: a route's accept rate on an SNI listener is
// taken when the route is decided, after the hello, not at accept. Clients
// that connect, wait, then send their hello each once came with their
// accept time, which took the rate's bucket back to it and refilled it
// for the next client: each slow hello bought a full burst. Over real
// sockets, no more pass than the burst and the rate over the decisions'
// span allow.
func TestSlowHelloBuysNoRate(t *testing.T) {
	const (
		perSecond = 10
		burst     = 5
		slow      = 3
		hold      = 700 * time.Millisecond // × perSecond ≥ burst: a refill, were it credited twice
	)
	rt, _ := sniRoute(t, "db", &route.Match{SNI: []string{"db.example.com"}})
	rt.Rate = admit.NewRate(perSecond, burst)
	srv, _ := start(t, rt)
	hello := clientHello(t, "db.example.com")

	var held []*net.TCPConn
	for range slow {
		held = append(held, dial(t, srv, "db"))
	}
	time.Sleep(hold) // the slow clients' hellos come this long after their accept

	passed := 0
	first := time.Now()
	for _, c := range held {
		if served(t, c, hello) {
			passed++
		}
		for range burst - 1 {
			if served(t, dial(t, srv, "db"), hello) {
				passed++
			}
		}
	}
	span := time.Since(first)
	if most := burst + int(perSecond*span.Seconds()) + 1; passed > most {
		t.Errorf("%d clients passed in %v at %d/s, burst %d: at most %d may", passed, span, perSecond, burst, most)
	}
	if passed < burst {
		t.Errorf("only %d passed: the burst is %d", passed, burst)
	}
}

// TestRefusalLogOffSpendsNothing: with Warn off, refusals' log lines are
// not written, so none is counted as suppressed either: logRefusal asks
// the logger before it takes from the limiter shared by every loop.
func TestRefusalLogOffSpendsNothing(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
	})
	rt := newRoute(t, "deny", "127.0.0.1:9") // never dialed: every client is denied
	rt.ACL = admit.NewACL(nil, prefixes("127.0.0.0/8"))
	tb, err := route.NewTable([]*route.Route{rt}, route.Global{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(tb); err != nil {
		t.Fatal(err)
	}
	const clients = 150 // past the log limiter's burst of 100
	for range clients {
		c := dial(t, srv, "deny")
		refusedNow(t, c)
		c.Close()
	}
	st := srv.Stats()
	if st.Refused != clients {
		t.Fatalf("%d refused, want %d", st.Refused, clients)
	}
	if st.RefusalLogsSuppressed != 0 {
		t.Errorf("%d refusal lines counted as suppressed with Warn off: the limiter was spent", st.RefusalLogsSuppressed)
	}
}
