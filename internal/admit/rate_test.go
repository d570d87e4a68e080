package admit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRateBurstThenRate pins the accept rate: burst at once, then
// perSecond a second; Set keeps the tokens; nil allows all.
func TestRateBurstThenRate(t *testing.T) {
	t0 := time.Now() // Set retunes at the clock's now
	r := NewRate(10, 3)
	for i := range 3 {
		if !r.Allow(t0) {
			t.Fatalf("accept %d of the burst refused", i+1)
		}
	}
	if r.Allow(t0) {
		t.Fatal("past the burst: allowed")
	}
	if !r.Allow(t0.Add(100 * time.Millisecond)) {
		t.Error("a token 100 ms later at 10/s: refused")
	}
	r.Set(1, 5) // empty bucket kept: refill at 1/s now
	if r.Allow(t0.Add(900 * time.Millisecond)) {
		t.Error("Set refilled the bucket")
	}
	if !r.Allow(t0.Add(1100 * time.Millisecond)) {
		t.Error("one token a second after Set: refused")
	}
	var none *Rate
	none.Set(1, 1)
	if !none.Allow(t0) {
		t.Error("nil Rate refused")
	}
}

// TestRateConcurrent takes tokens from several goroutines (the loops
// share one Rate): exactly the burst is granted at one instant.
func TestRateConcurrent(t *testing.T) {
	r := NewRate(1e-9, 1000)
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				if r.Allow(t0) {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := granted.Load(); n != 1000 {
		t.Errorf("%d granted of a 1000 burst", n)
	}
}

// BenchmarkRateAllow is one accept-rate check (a shared bucket).
func BenchmarkRateAllow(b *testing.B) {
	r := NewRate(1e12, 1<<30)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r.Allow(now)
	}
}
