package proxy_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/testutil"
)

// funcFilter makes streams from a function, for both directions.
type funcFilter struct {
	up, down func() filter.Stream
}

func (f funcFilter) Streams(*filter.Session) (filter.Stream, filter.Stream) {
	var u, d filter.Stream
	if f.up != nil {
		u = f.up()
	}
	if f.down != nil {
		d = f.down()
	}
	return u, d
}

type streamFunc func(b *filter.Batch) error

func (f streamFunc) Process(b *filter.Batch) error { return f(b) }

// pass forwards everything, counting it.
func pass(n *atomic.Int64) func() filter.Stream {
	return func() filter.Stream {
		return streamFunc(func(b *filter.Batch) error {
			n.Add(int64(len(b.In)))
			b.Pass(len(b.In))
			return nil
		})
	}
}

func filtered(t testing.TB, name string, up string, fs ...filter.Filter) *route.Route {
	rt := newRoute(t, name, up)
	set := &chain.Set{}
	for i, f := range fs {
		set.Filters = append(set.Filters, chain.Named{Name: fmt.Sprintf("f%d", i), Filter: f})
	}
	rt.Filters = new(chain.InForce)
	rt.Filters.Store(set)
	return rt
}

// Bytes go through a chain of filters exact, both ways, with half-close
// kept, whatever the sizes, and with a slow reader.
func TestFilteredBytesExact(t *testing.T) {
	h := &hashEcho{hashes: make(map[string]bool)}
	up := testutil.NewUpstream(t, h.serve)
	var n1, n2, n3 atomic.Int64
	srv, recs := start(t, filtered(t, "f", up.Addr(),
		funcFilter{up: pass(&n1), down: pass(&n2)},
		funcFilter{up: pass(&n3)},
	))
	sizes := []int{0, 1, 1000, 64<<10 + 1, 1 << 20, 16<<20 + 3}
	var total int64
	var wg sync.WaitGroup
	for i, size := range sizes {
		total += int64(size)
		c := dial(t, srv, "f")
		c.SetDeadline(time.Now().Add(3 * wait))
		wg.Go(func() {
			src := rand.NewChaCha8([32]byte{byte(i), byte(size)})
			want := sha256.New()
			go func() {
				io.Copy(c, io.TeeReader(io.LimitReader(src, int64(size)), want))
				c.CloseWrite()
			}()
			got := sha256.New()
			// Read in small pieces, so the filtered path meets backpressure.
			n, err := io.CopyBuffer(got, c, make([]byte, 1000))
			if err != nil || n != int64(size) || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Errorf("size %d: got %d bytes (%v), want the same bytes back", size, n, err)
			}
		})
	}
	wg.Wait()
	for range sizes {
		wantReason(t, recs.Next(t, wait), "done")
	}
	if n1.Load() != total || n3.Load() != total || n2.Load() != total {
		t.Errorf("filters saw %d, %d (upstream) and %d (client) bytes, want %d each", n1.Load(), n3.Load(), n2.Load(), total)
	}
}

// A filter transforms, and the access log counts what was delivered.
func TestFilterRewritesBytes(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	upper := func() filter.Stream {
		return streamFunc(func(b *filter.Batch) error {
			b.Emit(bytes.ToUpper(b.In))
			b.Drop(len(b.In))
			if b.EOF {
				b.Emit([]byte("!"))
			}
			return nil
		})
	}
	srv, recs := start(t, filtered(t, "f", up.Addr(), funcFilter{up: upper}))
	c := dial(t, srv, "f")
	c.Write([]byte("hello"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "HELLO!" {
		t.Fatalf("got %q, %v; want HELLO!", got, err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["bytes_to_upstream"] != int64(6) {
		t.Errorf("bytes_to_upstream %v, want 6", rec["bytes_to_upstream"])
	}
}

// A filter that panics, and one that fails, end only their own session,
// with the filter's name in the record; others on the route go on.
func TestFilterPanicAndErrorEndOnlyTheirSession(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	bomb := func() filter.Stream {
		return streamFunc(func(b *filter.Batch) error {
			switch {
			case bytes.Contains(b.In, []byte("panic")):
				panic("boom")
			case bytes.Contains(b.In, []byte("fail")):
				return errors.New("bad bytes")
			}
			b.Pass(len(b.In))
			return nil
		})
	}
	srv, recs := start(t, filtered(t, "f", up.Addr(), funcFilter{up: bomb}))

	good := dial(t, srv, "f")
	echo := func() {
		t.Helper()
		good.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(good, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("healthy session: got %q, %v", buf, err)
		}
	}
	echo()
	for _, word := range []string{"panic", "fail"} {
		c := dial(t, srv, "f")
		c.Write([]byte(word))
		if _, err := io.ReadAll(c); !testutil.IsReset(err) {
			t.Errorf("%s: client read %v, want a reset", word, err)
		}
		rec := recs.Next(t, wait)
		wantReason(t, rec, "filter_error")
		if msg := fmt.Sprint(rec["error"]); !bytes.Contains([]byte(msg), []byte("filter f0")) {
			t.Errorf("%s: error %q does not name the filter", word, msg)
		}
		echo()
	}
}

// Changing a route's filters reaches its live sessions: a spliced session
// moves to the filtered path between chunks, and back.
func TestFilterChangeReachesLiveSessions(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	rt := newRoute(t, "f", up.Addr())
	rt.Filters = new(chain.InForce)
	srv, _ := start(t, rt)
	c := dial(t, srv, "f")
	round := func(msg string) {
		t.Helper()
		c.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("got %q, %v; want %q", buf, err, msg)
		}
	}
	round("spliced")
	var seen atomic.Int64
	rt.Filters.Store(&chain.Set{Filters: []chain.Named{{Name: "count", Filter: funcFilter{up: pass(&seen), down: pass(&seen)}}}})
	round("filtered")
	if got := seen.Load(); got != 2*int64(len("filtered")) {
		t.Fatalf("filter saw %d bytes after it was added, want %d", got, 2*len("filtered"))
	}
	rt.Filters.Store(nil)
	round("spliced again")
	if got := seen.Load(); got != 2*int64(len("filtered")) {
		t.Fatalf("filter saw %d bytes after it was removed, want %d", got, 2*len("filtered"))
	}
}

// delay holds every chunk until d after it arrived, and asks to be woken.
type delay struct {
	d      time.Duration
	due    time.Time
	queued int
}

func (s *delay) Process(b *filter.Batch) error {
	if len(b.In) > s.queued {
		if s.queued == 0 {
			s.due = b.Now.Add(s.d)
		}
		s.queued = len(b.In)
	}
	if s.queued > 0 && !b.Now.Before(s.due) {
		b.Pass(s.queued)
		s.queued = 0
	} else if s.queued > 0 {
		b.WakeAt(s.due)
	}
	return nil
}

// A filter that holds bytes is woken at the time it asked for, and the
// session's end waits for it.
func TestFilterWakeUp(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	const d = 50 * time.Millisecond
	srv, recs := start(t, filtered(t, "f", up.Addr(), funcFilter{up: func() filter.Stream { return &delay{d: d} }}))
	c := dial(t, srv, "f")
	start := time.Now()
	c.Write([]byte("late"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "late" {
		t.Fatalf("got %q, %v", got, err)
	}
	if el := time.Since(start); el < d {
		t.Errorf("echo came back after %v, before the filter's %v", el, d)
	}
	wantReason(t, recs.Next(t, wait), "done")
}

var _ net.Conn = (*net.TCPConn)(nil)

// Filter sets that change while bulk flows, between the spliced and the
// filtered path, lose, repeat and reorder nothing.
func TestFilterSwitchesUnderBulk(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	rt := newRoute(t, "f", up.Addr())
	rt.Filters = new(chain.InForce)
	srv, recs := start(t, rt)
	var seen atomic.Int64
	sets := []*chain.Set{
		{Filters: []chain.Named{{Name: "count", Filter: funcFilter{up: pass(&seen)}}}},
		nil,
		{Filters: []chain.Named{{Name: "pass", Filter: funcFilter{up: pass(&seen), down: pass(&seen)}}}},
	}
	c := dial(t, srv, "f")
	c.SetDeadline(time.Now().Add(3 * wait))
	const size = 48 << 20
	src := make([]byte, size)
	rand.NewChaCha8([32]byte{9}).Read(src)
	want := sha256.Sum256(src)
	done := make(chan struct{})
	go func() {
		defer close(done)
		got := sha256.New()
		n, err := io.Copy(got, c)
		if err != nil || n != size || !bytes.Equal(got.Sum(nil), want[:]) {
			t.Errorf("got %d bytes (%v), want the %d sent, exact", n, err, size)
		}
	}()
	go func() {
		for off := 0; off < size; off += 1 << 20 {
			c.Write(src[off : off+1<<20])
		}
		c.CloseWrite()
	}()
	switches := 0
	for i := 0; ; i++ {
		select {
		case <-done:
			wantReason(t, recs.Next(t, wait), "done")
			if switches < 3 || seen.Load() == 0 {
				t.Errorf("%d switches, filters saw %d bytes: the test did not switch under load", switches, seen.Load())
			}
			return
		default:
		}
		rt.Filters.Store(sets[i%len(sets)])
		switches++
		runtime.Gosched()
	}
}
