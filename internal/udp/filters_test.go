package udp_test

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
)

// lens is a test DatagramFilter: toward the upstream it duplicates each
// datagram, drops "drop" and closes the flow on "close"; toward the client
// it delays each reply by delay. Its streams count their Close calls.
type lens struct {
	delay  time.Duration
	closed atomic.Int32
}

func (l *lens) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }

func (l *lens) Datagrams(*filter.Session) (filter.DatagramStream, filter.DatagramStream) {
	return &lensUp{l}, &lensDown{l}
}

type lensUp struct{ l *lens }

func (s *lensUp) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	switch string(d) {
	case "drop":
		return nil
	case "close":
		return filter.ErrClose
	}
	out.Send(at, d)
	out.Send(at, d)
	return nil
}

func (s *lensUp) Close(error) { s.l.closed.Add(1) }

type lensDown struct{ l *lens }

func (s *lensDown) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at.Add(s.l.delay), d)
	return nil
}

func (s *lensDown) Close(error) { s.l.closed.Add(1) }

func filtered(t *testing.T, rt *route.Route, f filter.Filter) {
	t.Helper()
	rt.Filters = &chain.InForce{}
	rt.Filters.Store(&chain.Set{Filters: []chain.Named{{Name: "lens", Filter: f}}})
}

// Datagram filters run per flow and direction: a duplicate reaches the
// member twice, a delayed reply waits on the socket's timer heap for its
// time (not sooner), a dropped datagram is counted, and a filter's
// ErrClose ends the flow (filter_close) after which its streams are
// closed.
func TestDatagramFilters(t *testing.T) {
	var got atomic.Int32
	m := newMember(t, "udp4", "127.0.0.1:0", func(d []byte) [][]byte {
		got.Add(1)
		return [][]byte{d}
	})
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	l := &lens{delay: 150 * time.Millisecond}
	filtered(t, rt, l)
	s := server(t, recs, rt)
	c := client(t, "", addr(t, s, "r"))
	start := time.Now()
	if _, err := c.Write([]byte("dup")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if d := read(t, c); !bytes.Equal(d, []byte("dup")) {
			t.Fatalf("got %q", d)
		}
	}
	if el := time.Since(start); el < l.delay {
		t.Errorf("delayed replies came after %v, before the filter's %v", el, l.delay)
	}
	if got.Load() != 2 {
		t.Errorf("the member got %d datagrams, want the duplicate too", got.Load())
	}
	if _, err := c.Write([]byte("drop")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dropped datagram counted", func() bool { return s.Stats().Dropped.Filter == 1 })
	if _, err := c.Write([]byte("close")); err != nil {
		t.Fatal(err)
	}
	rec := recs.next(t)
	if rec.Reason != session.FilterClose || rec.UDP.ToUpstream != 2 || rec.UDP.ToClient != 2 || rec.UDP.Dropped != 1 {
		t.Fatalf("record %v %+v", rec.Reason, rec.UDP)
	}
	if l.closed.Load() != 2 {
		t.Errorf("%d streams closed, want both", l.closed.Load())
	}
}

// boom is a DatagramFilter whose stream panics.
type boom struct{}

func (boom) Streams(*filter.Session) (filter.Stream, filter.Stream) { return nil, nil }
func (boom) Datagrams(*filter.Session) (filter.DatagramStream, filter.DatagramStream) {
	return boomStream{}, nil
}

type boomStream struct{}

func (boomStream) Process(time.Time, []byte, *filter.DatagramOut) error { panic("boom") }

// A filter's panic ends only its flow, with filter_error naming it; the
// socket goes on serving.
func TestFilterPanicEndsOnlyItsFlow(t *testing.T) {
	m := newMember(t, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	rt := udpRoute(t, "r", "127.0.0.1:0", pool.RoundRobin, m.addr)
	filtered(t, rt, boom{})
	s := server(t, recs, rt)
	to := addr(t, s, "r")
	for range 2 {
		if _, err := client(t, "", to).Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		rec := recs.next(t)
		if rec.Reason != session.FilterError || rec.Err == nil || !bytes.Contains([]byte(rec.Err.Error()), []byte("filter lens")) {
			t.Fatalf("record %v %v", rec.Reason, rec.Err)
		}
	}
}
