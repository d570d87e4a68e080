package netem_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
	_ "github.com/pierproxy/pier/filter/netem"
)

func build(name string, kv ...string) (filter.Filter, error) {
	spec, ok := filter.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%s is not registered", name)
	}
	vals := map[string]filter.Value{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		vals[k] = filter.Value{Text: v}
	}
	return spec.New(filter.NewOptions(name, vals, 0, 0))
}

// flow drives direction dir of flow id through the filter name.
func flow(t *testing.T, id uint64, dir filter.Direction, name string, kv ...string) *filtertest.DatagramDriver {
	t.Helper()
	f, err := build(name, kv...)
	if err != nil {
		t.Fatal(err)
	}
	s := filtertest.Session()
	s.ID = id
	up, down := f.(filter.DatagramFilter).Datagrams(s)
	st := up
	if dir == filter.ToClient {
		st = down
	}
	if st == nil {
		t.Fatalf("%s %v: no stream for %v", name, kv, dir)
	}
	return filtertest.NewDatagrams(st)
}

// send sends n datagrams 1ms apart, each its number in 4 digits.
func send(t *testing.T, d *filtertest.DatagramDriver, n int) {
	t.Helper()
	for i := range n {
		if err := d.Send(fmt.Appendf(nil, "%04d", i)); err != nil {
			t.Fatal(err)
		}
		d.Advance(time.Millisecond)
	}
}

func numbers(ds []filtertest.Datagram) []string {
	var s []string
	for _, d := range ds {
		s = append(s, string(d.Data))
	}
	return s
}

// within reports whether k of n is within 5 standard deviations of n*p:
// a seeded run is fixed, so this only guards against a wrong share.
func within(k, n int, p float64) bool {
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return math.Abs(float64(k)-float64(n)*p) <= 5*sd+1
}

// loss drops its share of datagrams, the others untouched and on time;
// 0 drops none, 1 all; a seed gives the same drops for the same flow
// every run, and other drops for another flow.
func TestLossDropsItsShare(t *testing.T) {
	const n = 10000
	for _, p := range []float64{0, 0.1, 0.5, 1} {
		d := flow(t, 1, filter.ToUpstream, "loss", fmt.Sprintf("probability=%g", p), "seed=3")
		send(t, d, n)
		if lost := n - len(d.Out); !within(lost, n, p) || p == 0 && lost != 0 || p == 1 && lost != n {
			t.Errorf("probability %g: %d of %d lost", p, lost, n)
		}
		for _, g := range d.Out {
			var i int
			fmt.Sscanf(string(g.Data), "%d", &i)
			if want := filtertest.Epoch.Add(time.Duration(i) * time.Millisecond); !g.At.Equal(want) {
				t.Fatalf("datagram %s delayed to %v", g.Data, g.At)
			}
		}
	}
	kept := func(id uint64, dir filter.Direction) []string {
		d := flow(t, id, dir, "loss", "probability=0.3", "seed=3")
		send(t, d, 200)
		return numbers(d.Out)
	}
	if !slices.Equal(kept(5, filter.ToClient), kept(5, filter.ToClient)) {
		t.Error("the same seed and flow lost different datagrams")
	}
	if slices.Equal(kept(5, filter.ToClient), kept(6, filter.ToClient)) || slices.Equal(kept(5, filter.ToClient), kept(5, filter.ToUpstream)) {
		t.Error("another flow, or the other direction, lost the same datagrams")
	}
}

// duplicate sends its share of datagrams twice, both copies at once and
// next to each other; none is lost.
func TestDuplicateSendsItsShareTwice(t *testing.T) {
	const n, p = 10000, 0.2
	d := flow(t, 1, filter.ToClient, "duplicate", "probability=0.2", "seed=9")
	send(t, d, n)
	extra := len(d.Out) - n
	if !within(extra, n, p) {
		t.Errorf("%d of %d duplicated, want about %v", extra, n, n*p)
	}
	got := slices.Compact(numbers(d.Delivered()))
	if len(got) != n {
		t.Errorf("%d distinct datagrams in order, want all %d", len(got), n)
	}
	for i := 1; i < len(d.Out); i++ {
		if string(d.Out[i].Data) == string(d.Out[i-1].Data) && !d.Out[i].At.Equal(d.Out[i-1].At) {
			t.Fatalf("a copy of %s at another time", d.Out[i].Data)
		}
	}
	d = flow(t, 1, filter.ToClient, "duplicate", "probability=1")
	send(t, d, 10)
	if len(d.Out) != 20 {
		t.Errorf("probability 1: %d sent for 10", len(d.Out))
	}
}

// reorder holds its share back by delay, and the datagrams after it
// overtake it: the peer gets every datagram once, some behind later
// ones, each held one exactly delay late.
func TestReorderMovesDatagramsBehindLaterOnes(t *testing.T) {
	const n = 2000
	d := flow(t, 1, filter.ToUpstream, "reorder", "probability=0.25", "delay=5ms", "seed=1")
	send(t, d, n) // 1ms apart: a held datagram falls behind the next four
	held, behind := 0, 0
	for i, g := range d.Out {
		late := g.At.Sub(filtertest.Epoch.Add(time.Duration(i) * time.Millisecond))
		switch late {
		case 0:
		case 5 * time.Millisecond:
			held++
		default:
			t.Fatalf("datagram %d late by %v", i, late)
		}
	}
	if !within(held, n, 0.25) {
		t.Errorf("%d of %d held back, want about %d", held, n, n/4)
	}
	got := numbers(d.Delivered())
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			behind++
		}
	}
	if behind == 0 {
		t.Error("every datagram delivered in order")
	}
	sorted := slices.Sorted(slices.Values(got))
	if len(got) != n || len(slices.Compact(sorted)) != n {
		t.Errorf("%d delivered, want each of %d once", len(got), n)
	}
	d = flow(t, 1, filter.ToUpstream, "reorder", "probability=1", "delay=0")
	send(t, d, 10)
	if !slices.IsSorted(numbers(d.Delivered())) {
		t.Error("delay 0 reordered")
	}
}

// The netem filters are datagram-only: registered as such, their byte
// Streams are nil both ways, and direction picks their datagram streams.
func TestDatagramOnlyAndDirections(t *testing.T) {
	for _, name := range []string{"loss", "duplicate", "reorder"} {
		spec, ok := filter.Lookup(name)
		if !ok || !spec.DatagramOnly || spec.FlagKey != "probability" {
			t.Errorf("%s: registered %v, DatagramOnly %v, FlagKey %q", name, ok, spec.DatagramOnly, spec.FlagKey)
			continue
		}
		for dir, want := range map[string][2]bool{"upstream": {true, false}, "client": {false, true}, "both": {true, true}, "": {true, true}} {
			kv := []string{"probability=0.5"}
			if dir != "" {
				kv = append(kv, "direction="+dir)
			}
			f, err := build(name, kv...)
			if err != nil {
				t.Fatal(err)
			}
			if up, down := f.Streams(filtertest.Session()); up != nil || down != nil {
				t.Errorf("%s: byte streams %v, %v", name, up, down)
			}
			up, down := f.(filter.DatagramFilter).Datagrams(filtertest.Session())
			if (up != nil) != want[0] || (down != nil) != want[1] {
				t.Errorf("%s direction %q: streams %v, %v", name, dir, up != nil, down != nil)
			}
		}
	}
}

// Mistakes are refused with a message that says what to write.
func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   []string
		want string
	}{
		{"loss", nil, "loss: probability: missing: the share of datagrams to act on, from 0 to 1"},
		{"loss", []string{"probability=1.5"}, `loss: probability: "1.5" is not a number from 0 to 1`},
		{"duplicate", []string{"probability=0.1", "seed=-1"}, `duplicate: seed: "-1" is not a whole number`},
		{"reorder", []string{"probability=0.1", "delay=48h"}, "reorder: delay: 48h0m0s is more than 24h0m0s"},
		{"reorder", []string{"probability=0.1", "delay=fast"}, `reorder: delay: "fast" is not a duration`},
		{"loss", []string{"probability=0.1", "clients=10.0.0.0/8"}, "loss: clients: unknown option"},
	} {
		_, err := build(tc.name, tc.kv...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want it to say %q", tc.name, tc.kv, err, tc.want)
		}
	}
}

// Every netem filter declares exactly the options it reads.
func TestOptionsDeclared(t *testing.T) {
	for _, name := range []string{"loss", "duplicate", "reorder"} {
		spec, _ := filter.Lookup(name)
		if err := filtertest.CheckOptions(spec, nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzOptions: any options a user can write give a filter or a clear
// error, never a panic, and a filter given runs datagrams.
func FuzzOptions(f *testing.F) {
	for _, s := range []string{"loss;probability=0.5;seed=1", "duplicate;probability=1;direction=client",
		"reorder;probability=0.3;delay=1ms;seed=9", "reorder;probability=2", "loss", "loss;probability=0.1|0.2",
		"reorder;probability=1;delay=-1s", "duplicate;probability=NaN", "loss;probability=0.1;seed=99999999999999999999"} {
		f.Add(s, []byte("datagram"))
	}
	f.Fuzz(func(t *testing.T, in string, data []byte) {
		parts := strings.Split(in, ";")
		spec, ok := filter.Lookup(parts[0])
		if !ok || !spec.DatagramOnly {
			return
		}
		vals := map[string]filter.Value{}
		for _, kv := range parts[1:] {
			k, v, _ := strings.Cut(kv, "=")
			if strings.Contains(v, "|") {
				vals[k] = filter.Value{IsList: true, List: strings.Split(v, "|")}
			} else {
				vals[k] = filter.Value{Text: v}
			}
		}
		flt, err := spec.New(filter.NewOptions(parts[0], vals, 1, 1))
		if (flt == nil) == (err == nil) {
			t.Fatalf("%q: filter %v and error %v", in, flt, err)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), parts[0]+": ") {
				t.Fatalf("%q: error %q does not name the filter", in, err)
			}
			return
		}
		up, down := flt.(filter.DatagramFilter).Datagrams(filtertest.Session())
		d := filtertest.NewDatagrams(up, down)
		for range 10 {
			if err := d.Send(data); err != nil {
				t.Fatal(err)
			}
		}
	})
}
