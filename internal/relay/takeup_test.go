package relay

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
)

// stall holds every byte toward the upstream until its input ends, then
// lets them all go: the shape of Toxiproxy's bandwidth-0 toxic.
type stall struct{}

func (stall) Streams(*filter.Session) (toUpstream, toClient filter.Stream) { return stallStream{}, nil }

type stallStream struct{}

func (stallStream) Process(b *filter.Batch) error {
	if b.EOF {
		b.Pass(len(b.In))
	}
	return nil
}

// stalled starts a session on h running the set in force in in, with
// msg read from the client and held by the stall.
func (h *harness) stalled(in *chain.InForce, msg string) *hsession {
	h.t.Helper()
	s := h.session()
	s.c.p.Filters = in
	h.event(s.c, upstreamSide, unix.EPOLLOUT)
	if s.c.filters != in.Load() || s.c.toUpstream.chain == nil {
		h.t.Fatalf("the session did not take up its filters: %+v", s.c.toUpstream)
	}
	if _, err := s.client.Write([]byte(msg)); err != nil {
		h.t.Fatal(err)
	}
	waitReadable(h.t, s.clientFd, len(msg))
	h.event(s.c, clientSide, unix.EPOLLIN|unix.EPOLLOUT)
	if held := s.c.toUpstream.chain.Held(); held != len(msg) {
		h.t.Fatalf("the stall holds %d bytes, want %d", held, len(msg))
	}
	checkFlows(h.t, s.c)
	return s
}

// TakeUpFilters reaches idle sessions of the set's route, walkChunk slots
// per posted turn: a session past the first chunk is reached on the next
// turn, not in the first. Each switches at once: the stall's bytes reach
// the upstream with no event for the session. A session of another route,
// whose set changed too, is left to its next event.
func TestTakeUpFiltersWalksInChunks(t *testing.T) {
	h := newHarness(t)
	in, other := new(chain.InForce), new(chain.InForce)
	held := &chain.Set{Filters: []chain.Named{{Name: "stall", Filter: stall{}}}}
	in.Store(held)
	other.Store(held)

	near := h.stalled(in, "near")
	bystander := h.stalled(other, "other")
	// Empty slots push the next session into the walk's second chunk.
	h.l.slots = append(h.l.slots, make([]*conn, walkChunk)...)
	far := h.stalled(in, "far")
	if far.c.slot < walkChunk {
		t.Fatalf("slot %d is in the first chunk", far.c.slot)
	}

	in.Store(nil)
	other.Store(nil)
	if !h.l.TakeUpFilters(in) {
		t.Fatal("an open loop refused the walk")
	}
	h.l.runPosted() // the first chunk
	if near.c.filters != nil || near.c.toUpstream.chain != nil || near.c.toUpstream.bytes != 4 {
		t.Fatalf("first chunk: the near session did not switch: filters %v, %+v", near.c.filters, near.c.toUpstream)
	}
	if far.c.filters != held {
		t.Fatal("first chunk: the far session switched already")
	}
	h.l.runPosted() // the second
	if far.c.filters != nil || far.c.toUpstream.chain != nil || far.c.toUpstream.bytes != 3 {
		t.Fatalf("second chunk: the far session did not switch: %+v", far.c.toUpstream)
	}
	if bystander.c.filters != held || bystander.c.toUpstream.chain.Held() != len("other") {
		t.Fatal("the other route's session was walked into its change")
	}
	for _, s := range []*hsession{near, bystander, far} {
		checkFlows(t, s.c)
	}
	buf := make([]byte, 8)
	for _, x := range []struct {
		s    *hsession
		want string
	}{{near, "near"}, {far, "far"}} {
		n, err := x.s.upstream.Read(buf)
		if err != nil || string(buf[:n]) != x.want {
			t.Errorf("upstream read %q, %v; want %q", buf[:n], err, x.want)
		}
	}
	// Nothing more to walk.
	h.l.runPosted()
	h.l.mu.Lock()
	left := len(h.l.posted)
	h.l.mu.Unlock()
	if left != 0 {
		t.Errorf("%d posted functions left after the walk", left)
	}
}

// A session mid-switch whose destination is full (the old chain's bytes
// cannot leave yet), walked into another change, keeps its invariants;
// that direction never takes up the set it was switching to, and every
// byte leaves once the destination drains.
func TestTakeUpFiltersMidSwitch(t *testing.T) {
	h := newHarness(t)
	in := new(chain.InForce)
	in.Store(&chain.Set{Filters: []chain.Named{{Name: "stall", Filter: stall{}}}})
	s := h.stalled(in, "abc")
	s.c.upstream.writable = false // as after EAGAIN: the upstream is full

	var seen int
	counting := filter.Filter(countFilter{&seen})
	next := &chain.Set{Filters: []chain.Named{{Name: "count", Filter: counting}}}
	in.Store(next)
	h.l.TakeUpFilters(in)
	h.l.runPosted()
	if !s.c.toUpstream.pending || s.c.toUpstream.next == nil || len(s.c.toUpstream.chain.Out()) != 3 {
		t.Fatalf("want a switch under way with the stall's 3 bytes waiting: %+v", s.c.toUpstream)
	}
	checkFlows(t, s.c)
	in.Store(nil)
	h.l.TakeUpFilters(in)
	h.l.runPosted()
	if !s.c.toUpstream.pending || s.c.toUpstream.next != nil || s.c.filters != nil {
		t.Fatalf("the second change: %+v", s.c.toUpstream)
	}
	checkFlows(t, s.c)
	h.event(s.c, upstreamSide, unix.EPOLLOUT) // the upstream drains
	if s.c.toUpstream.pending || s.c.toUpstream.chain != nil || s.c.toUpstream.bytes != 3 {
		t.Fatalf("after the upstream drained: %+v", s.c.toUpstream)
	}
	checkFlows(t, s.c)
	buf := make([]byte, 8)
	if n, err := s.upstream.Read(buf); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("upstream read %q, %v", buf[:n], err)
	}
	if seen != 0 {
		t.Errorf("the set never taken up saw %d bytes", seen)
	}
}

// countFilter passes every byte both ways and counts them.
type countFilter struct{ n *int }

func (f countFilter) Streams(*filter.Session) (toUpstream, toClient filter.Stream) {
	return countStream(f), countStream(f)
}

type countStream countFilter

func (s countStream) Process(b *filter.Batch) error {
	*s.n += len(b.In)
	b.Pass(len(b.In))
	return nil
}
