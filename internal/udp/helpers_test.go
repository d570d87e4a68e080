package udp_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/udp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait in these tests; it is never slept.
const wait = 10 * time.Second

// member is a UDP server on loopback that answers each datagram with
// reply(d) (nil: no answer), from a goroutine that stops with the test.
type member struct {
	conn *net.UDPConn
	addr netip.AddrPort
	wg   sync.WaitGroup
}

func newMember(t testing.TB, network, addr string, reply func(d []byte) [][]byte) *member {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(4 << 20) // a burst of 1000 clients' datagrams
	m := &member{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	m.wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			for _, r := range reply(buf[:n]) {
				c.WriteToUDPAddrPort(r, from)
			}
		}
	})
	t.Cleanup(m.close)
	return m
}

func (m *member) close() {
	m.conn.Close()
	m.wg.Wait()
}

// echo answers each datagram with itself.
func echo(d []byte) [][]byte { return [][]byte{d} }

// tagged answers each datagram with tag, then the datagram.
func tagged(tag string) func([]byte) [][]byte {
	return func(d []byte) [][]byte { return [][]byte{append([]byte(tag), d...)} }
}

// records collects the records Finish is given, in order.
type records struct{ ch chan session.Record }

func newRecords() *records { return &records{ch: make(chan session.Record, 1<<16)} }

// finish is Options.Finish: it copies the record (and its UDP counts).
func (r *records) finish(_ *route.Route, rec *session.Record) {
	c := *rec
	if rec.UDP != nil {
		u := *rec.UDP
		c.UDP = &u
	}
	r.ch <- c
}

// next waits for the next record.
func (r *records) next(t testing.TB) session.Record {
	t.Helper()
	select {
	case rec := <-r.ch:
		return rec
	case <-time.After(wait):
		t.Fatal("no flow record within", wait)
	}
	return session.Record{}
}

// none reports whether no record is waiting.
func (r *records) none() bool { return len(r.ch) == 0 }

// udpRoute is a udp route named name on listen to members.
func udpRoute(t testing.TB, name, listen string, balance pool.Balance, members ...netip.AddrPort) *route.Route {
	t.Helper()
	var specs []pool.Spec
	for _, m := range members {
		s, err := pool.ParseAddress(m.String())
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
	}
	p, err := pool.New(pool.Config{Route: name, Balance: balance, Members: specs,
		Passive: pool.Passive{Failures: 1, Backoff: time.Minute, MaxBackoff: time.Minute}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &route.Route{Name: name, Protocol: route.UDP, Listen: []string{listen}, Pool: p,
		IdleTimeout: time.Minute, Stats: stats.NewRoute(name, 2)}
}

// server starts a udp.Server on routes, shut down with the test.
func server(t testing.TB, recs *records, routes ...*route.Route) *udp.Server {
	t.Helper()
	s, err := udp.New(udp.Options{Sockets: 2, Finish: recs.finish, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, routes...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

func apply(t testing.TB, s *udp.Server, routes ...*route.Route) {
	t.Helper()
	tab, err := route.NewTable(routes, route.Global{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(tab); err != nil {
		t.Fatal(err)
	}
}

// addr is route name's one address on s.
func addr(t testing.TB, s *udp.Server, name string) netip.AddrPort {
	t.Helper()
	a := s.Addrs(name)
	if len(a) != 1 {
		t.Fatalf("Addrs(%q) = %v, want one", name, a)
	}
	return a[0]
}

// client is a connected UDP socket to to, from local ("" any loopback
// port of to's family).
func client(t testing.TB, local string, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	var laddr *net.UDPAddr
	if local != "" {
		laddr = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local))
	}
	c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends d on c and returns the datagram that comes back.
func exchange(t testing.TB, c *net.UDPConn, d []byte) []byte {
	t.Helper()
	if _, err := c.Write(d); err != nil {
		t.Fatal(err)
	}
	return read(t, c)
}

// read returns the next datagram on c, within wait.
func read(t testing.TB, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 70000)
	c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// silent reports whether nothing arrives on c within d: for a reply
// that must not come, where no event could say so sooner.
func silent(c *net.UDPConn, d time.Duration) bool {
	buf := make([]byte, 70000)
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(buf)
	return err != nil
}

// eventually polls cond until it holds, within wait: for counters a
// socket's goroutine bumps right after the datagram that a test saw.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
		time.Sleep(time.Millisecond)
	}
}
