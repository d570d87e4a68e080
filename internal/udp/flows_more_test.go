package udp_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/pool"
	"net/netip"
)

// responses counts replies per datagram the client sent, as nginx's
// proxy_responses does (the flow ends after responses × requests): a
// resolver that sends two queries from one socket before the first answer
// (glibc sends A and AAAA this way) gets both answers. Counted per flow,
// the second was never read, nor counted anywhere.
func TestResponsesCountPerQuery(t *testing.T) {
	var mu sync.Mutex
	var held [][]byte
	// The member answers only once it has both queries, so both are
	// certainly sent on the same flow.
	m := newMember(t, "udp4", "127.0.0.1:0", func(d []byte) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, append([]byte("answer "), d...))
		if len(held) < 2 {
			return nil
		}
		out := held
		held = nil
		return out
	})
	recs := newRecords()
	rt := udpRoute(t, "dns", "127.0.0.1:0", pool.RoundRobin, m.addr)
	rt.Responses = 1
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "dns"))
	for _, q := range []string{"A?", "AAAA?"} {
		if _, err := c.Write([]byte(q)); err != nil {
			t.Fatal(err)
		}
	}
	got := []string{string(read(t, c))}
	if !silent(c, 300*time.Millisecond) {
		got = append(got, "second")
	}
	rec := recs.next(t)
	if len(got) != 2 {
		t.Errorf("client got %d of 2 answers to 2 queries (responses: 1); record: reason %v, to_upstream %d, to_client %d, dropped %d (the lost answer is not even counted)",
			len(got), rec.Reason, rec.UDP.ToUpstream, rec.UDP.ToClient, rec.UDP.Dropped)
	}
}

// delayAll delays every datagram toward the upstream by d.
type delayAll struct{ d time.Duration }

func (delayAll) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }
func (f delayAll) Datagrams(*filter.Session) (filter.DatagramStream, filter.DatagramStream) {
	return delayStream(f), nil
}

type delayStream struct{ d time.Duration }

func (s delayStream) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at.Add(s.d), d)
	return nil
}

// A datagram a filter delayed, still queued when its flow ends (shutdown
// here; also responses, filter_close, unreachable), is lost with the
// queue, and counted: in Stats().Dropped and the flow's record
// (datagrams_dropped).
func TestDelayedDatagramsLostAtFlowEndAreCounted(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	filtered(t, rt, delayAll{d: time.Hour})
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "r"))
	if _, err := c.Write([]byte("held for an hour")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the flow opened", func() bool { return s.Live() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rec := recs.next(t)
	st := s.Stats()
	d := st.Dropped
	if st.DatagramsToUpstream+d.TooBig+d.QueueFull+d.Filter+d.Other != 1 || rec.UDP.Dropped != 1 {
		t.Errorf("1 datagram received, delivered %d, dropped %+v, record dropped %d: the queued one vanished uncounted",
			st.DatagramsToUpstream, d, rec.UDP.Dropped)
	}
}

// With no member to take a flow (all draining, down or full), every
// datagram of a client opens, fails and finishes a "flow" of its own;
// their records go to Finish rate-limited as refusals' do (10/s after a
// burst of 100), not one Warn line each: a statsd client at 10k
// datagrams/s while its member is down would write 10k lines/s.
func TestNoUpstreamFloodIsNotALogFlood(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	p, err := pool.New(pool.Config{Route: "r", Members: []pool.Spec{{Host: "127.0.0.1", Port: m.addr.Port(), Drain: true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	rt.Pool = p
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "r"))
	const sent = 400
	for range sent {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every datagram counted", func() bool {
		st := s.Stats()
		return st.NoUpstream+st.Refused >= sent
	})
	if n := len(recs.ch); n > 150 {
		t.Errorf("%d datagrams from one client with no member up gave %d Finish calls (access log lines); refusals are held to ~100", sent, n)
	}
}

// dropAll drops every datagram toward the upstream.
type dropAll struct{}

func (dropAll) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }
func (dropAll) Datagrams(*filter.Session) (filter.DatagramStream, filter.DatagramStream) {
	return dropStream{}, nil
}

type dropStream struct{}

func (dropStream) Process(time.Time, []byte, *filter.DatagramOut) error { return nil }

// A change of a route's filters (a reload, an admin API edit) reaches its
// live flows at their next datagram, as it reaches TCP sessions: a flow
// kept busy (statsd, a game) sees a loss filter added, or a pcap added to
// debug it. A flow used to take its filters once, at its first datagram.
func TestFilterChangeReachesLiveFlow(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	filtered(t, rt, delayAll{}) // a set in force, as the app keeps one
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "r"))
	exchange(t, c, []byte("before"))
	rt.Filters.Store(&chain.Set{Filters: []chain.Named{{Name: "drop", Filter: dropAll{}}}})
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if !silent(c, 200*time.Millisecond) {
		t.Error("the live flow still runs the filters it started with: the edit did not reach it")
	}
}

// A dual-stack listener serves IPv4 and IPv6 clients.
func TestDualStackListener(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "[::]:0", pool.RoundRobin, m.addr)
	s := server(t, recs, rt)
	port := addr(t, s, "r").Port()
	for _, a := range []string{"127.0.0.1", "::1"} {
		c := client(t, "", netip.AddrPortFrom(netip.MustParseAddr(a), port))
		if got := string(exchange(t, c, []byte(a))); got != a {
			t.Errorf("%s: got %q", a, got)
		}
	}
}
