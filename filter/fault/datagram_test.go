package fault_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// datagrams returns a driver for the direction dir of flow s through the
// datagram filter f.
func datagrams(t *testing.T, f filter.Filter, s *filter.Session, dir filter.Direction) *filtertest.DatagramDriver {
	t.Helper()
	df, ok := f.(filter.DatagramFilter)
	if !ok {
		t.Fatalf("%T is not a DatagramFilter", f)
	}
	up, down := df.Datagrams(s)
	st := up
	if dir == filter.ToClient {
		st = down
	}
	if st == nil {
		t.Fatalf("no stream for %v", dir)
	}
	return filtertest.NewDatagrams(st)
}

// sendEvery sends n datagrams of size bytes, gap apart, numbered in
// their first bytes.
func sendEvery(t *testing.T, d *filtertest.DatagramDriver, n, size int, gap time.Duration) {
	t.Helper()
	for i := range n {
		p := make([]byte, max(size, 4))[:size]
		copy(p, fmt.Sprintf("%04d", i))
		if err := d.Send(p); err != nil {
			t.Fatal(err)
		}
		d.Advance(gap)
	}
}

// Each datagram leaves exactly delay after it arrived.
func TestLatencyDelaysEachDatagram(t *testing.T) {
	d := datagrams(t, mustFault(t, "latency", "delay=100ms"), filtertest.Session(), filter.ToClient)
	sendEvery(t, d, 5, 10, 7*time.Millisecond)
	for i, g := range d.Out {
		want := filtertest.Epoch.Add(time.Duration(i)*7*time.Millisecond + 100*time.Millisecond)
		if !g.At.Equal(want) {
			t.Errorf("datagram %d due at +%v, want +%v", i, g.At.Sub(filtertest.Epoch), want.Sub(filtertest.Epoch))
		}
	}
}

// With jitter, each datagram leaves within delay ± jitter of its
// arrival (never before it, never before the one ahead of it: order is
// kept), the delays do vary, and a seed gives the same times for the
// same flow every run.
func TestLatencyJitterBoundsAndOrder(t *testing.T) {
	const delay, jitter, gap = 50 * time.Millisecond, 20 * time.Millisecond, time.Millisecond
	run := func(id uint64) []time.Duration {
		s := filtertest.Session()
		s.ID = id
		d := datagrams(t, mustFault(t, "latency", "delay=50ms", "jitter=20ms", "seed=7"), s, filter.ToClient)
		sendEvery(t, d, 1000, 20, gap)
		var delays []time.Duration
		var last time.Time
		for i, g := range d.Out {
			arrived := filtertest.Epoch.Add(time.Duration(i) * gap)
			got := g.At.Sub(arrived)
			if got < delay-jitter || got > delay+jitter {
				t.Fatalf("datagram %d delayed %v, outside %v ± %v", i, got, delay, jitter)
			}
			if g.At.Before(last) {
				t.Fatalf("datagram %d due at %v, before the one ahead of it (%v)", i, g.At, last)
			}
			last = g.At
			delays = append(delays, got)
		}
		return delays
	}
	a, b, other := run(1), run(1), run(2)
	if !slices.Equal(a, b) {
		t.Error("the same seed and flow gave different delays")
	}
	if slices.Equal(a, other) {
		t.Error("two flows gave the same delays: the flow id is not in the draws")
	}
	if slices.Min(a) == slices.Max(a) {
		t.Errorf("no jitter: every delay %v", a[0])
	}
}

// Datagrams sent at once leave len/rate apart, as from a link of that
// speed; a later one that finds the link free leaves at once.
func TestBandwidthSpacesDatagrams(t *testing.T) {
	d := datagrams(t, mustFault(t, "bandwidth", "rate=1000"), filtertest.Session(), filter.ToClient)
	for range 5 {
		d.Send(make([]byte, 100)) // 100 ms each at 1000 B/s
	}
	for i, g := range d.Out {
		if want := time.Duration(i) * 100 * time.Millisecond; g.At.Sub(filtertest.Epoch) != want {
			t.Errorf("datagram %d at +%v, want +%v", i, g.At.Sub(filtertest.Epoch), want)
		}
	}
	d.Advance(10 * time.Second)
	d.Send(make([]byte, 100))
	if got := d.Out[5].At; !got.Equal(d.Now) {
		t.Errorf("on a free link: due at %v, want now (%v)", got, d.Now)
	}
	// Small datagrams add up to exactly the rate: at 7 B/s a byte takes
	// 1/7 s, which no count of nanoseconds says, yet 7 of them take 1s.
	d = datagrams(t, mustFault(t, "bandwidth", "rate=7"), filtertest.Session(), filter.ToClient)
	for range 7 {
		d.Send([]byte("x"))
	}
	d.Send([]byte("x"))
	if got := d.Out[7].At.Sub(filtertest.Epoch); got != time.Second {
		t.Errorf("the eighth 1-byte datagram at 7 B/s at +%v, want +1s", got)
	}
}

// A sender faster than the rate meets loss, not an ever longer delay:
// what would wait behind more than DatagramQueueBytes is dropped, and
// takes no time on the link.
func TestBandwidthDropsPastTheQueue(t *testing.T) {
	d := datagrams(t, mustFault(t, "bandwidth", "rate=1MiB"), filtertest.Session(), filter.ToClient)
	const size = 1000
	for range 3 * filter.DatagramQueueBytes / size {
		d.Send(make([]byte, size))
	}
	kept := len(d.Out)
	if want := filter.DatagramQueueBytes/size + 1; kept < want-2 || kept > want+2 {
		t.Errorf("%d datagrams kept of %d sent at once, want about %d", kept, 3*filter.DatagramQueueBytes/size, want)
	}
	last := d.Out[kept-1].At.Sub(filtertest.Epoch)
	if last > time.Second+10*time.Millisecond {
		t.Errorf("the last kept leaves at +%v: the queue holds more than a second at the rate", last)
	}
	// Once the link has caught up, datagrams pass again.
	d.Advance(2 * time.Second)
	d.Send(make([]byte, size))
	if len(d.Out) != kept+1 || !d.Out[kept].At.Equal(d.Now) {
		t.Errorf("after the queue drained, a datagram was not sent at once")
	}
}

// rate 0 is a dead link on datagrams: every one is dropped.
func TestBandwidthRateZeroDropsDatagrams(t *testing.T) {
	d := datagrams(t, mustFault(t, "bandwidth", "rate=0"), filtertest.Session(), filter.ToClient)
	sendEvery(t, d, 10, 10, time.Millisecond)
	if len(d.Out) != 0 {
		t.Errorf("%d datagrams sent at rate 0", len(d.Out))
	}
}

// direction and the targeting options choose datagram streams as they
// choose byte streams.
func TestDatagramDirectionAndTarget(t *testing.T) {
	for _, tc := range []struct {
		kv   []string
		want filter.Direction
	}{
		{[]string{"delay=1s"}, filter.ToClient},
		{[]string{"delay=1s", "direction=upstream"}, filter.ToUpstream},
		{[]string{"delay=1s", "direction=both"}, filter.Both},
		{[]string{"delay=1s", "direction=both", "probability=0"}, 0},
		{[]string{"delay=1s", "direction=both", "clients=10.0.0.0/8"}, 0},
	} {
		up, down := mustFault(t, "latency", tc.kv...).(filter.DatagramFilter).Datagrams(filtertest.Session())
		var got filter.Direction
		if up != nil {
			got |= filter.ToUpstream
		}
		if down != nil {
			got |= filter.ToClient
		}
		if got != tc.want {
			t.Errorf("latency %v: streams for %v, want %v", tc.kv, got, tc.want)
		}
	}
}
