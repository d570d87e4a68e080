package app

import (
	"slices"
	"testing"
	"time"
)

// The history turns totals into rates per second, keeps historyLength
// samples, starts a new route's rows with zeros, and forgets a route gone.
func TestHistoryRatesAndBounds(t *testing.T) {
	h := newHistory()
	t0 := time.Unix(1000, 0)
	h.add(t0, []routeTotals{{name: "a", started: 10, up: 100, down: 50, live: 1}})
	h.add(t0.Add(time.Second), []routeTotals{{name: "a", started: 13, up: 400, down: 50, live: 2}, {name: "b", started: 5}})
	times, routes := h.snapshot()
	if !slices.Equal(times, []int64{1000, 1001}) {
		t.Fatalf("times %v", times)
	}
	a := routes["a"]
	if !slices.Equal(a.sessions, []float64{0, 3}) || !slices.Equal(a.up, []float64{0, 300}) || !slices.Equal(a.live, []int64{1, 2}) {
		t.Fatalf("route a: %+v", a)
	}
	if b := routes["b"]; !slices.Equal(b.sessions, []float64{0, 0}) {
		t.Fatalf("route b, new at the second sample: %+v", b)
	}
	// Counting afresh (a route removed and added again) gives no rate,
	// not a wrapped one.
	h.add(t0.Add(2*time.Second), []routeTotals{{name: "a", started: 1}, {name: "b", started: 6}})
	_, routes = h.snapshot()
	if got := routes["a"].sessions[2]; got != 0 {
		t.Fatalf("rate after the totals went back: %v", got)
	}
	// A tick two seconds late: the rate is over the time that passed.
	h.add(t0.Add(4*time.Second), []routeTotals{{name: "b", started: 10}})
	_, routes = h.snapshot()
	if got := routes["b"].sessions[len(routes["b"].sessions)-1]; got != 2 {
		t.Fatalf("4 sessions over 2 s: %v a second, want 2", got)
	}
	for i := 5; i < historyLength+20; i++ {
		h.add(t0.Add(time.Duration(i)*time.Second), []routeTotals{{name: "b", started: uint64(6 + i)}})
	}
	times, routes = h.snapshot()
	if len(times) != historyLength || len(routes["b"].sessions) != historyLength || len(routes["b"].live) != historyLength {
		t.Fatalf("kept %d times, %d samples of b; want %d", len(times), len(routes["b"].sessions), historyLength)
	}
	if _, ok := routes["a"]; ok {
		t.Fatal("route a, gone, is still in the history")
	}
}
