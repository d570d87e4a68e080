package stats

import (
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/session"
)

// TestTotalsExactWithConcurrentWriters pins the single-writer design: one
// goroutine per shard writes (as each relay loop does) while another sums,
// and the final totals are exactly what the writers did. Run with -race.
func TestTotalsExactWithConcurrentWriters(t *testing.T) {
	const loops, perLoop = 4, 5000
	r := NewRoute("db", loops)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var last uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Each count only grows, whatever the writers are doing.
			tot := r.Totals()
			if tot.Started < last {
				t.Errorf("started went back from %d to %d", last, tot.Started)
				return
			}
			last = tot.Started
		}
	}()
	for i := range loops {
		sh := r.Shard(i)
		wg.Go(func() {
			for range perLoop {
				sh.Start()
				sh.Enter(session.Connecting)
				sh.Connected(time.Millisecond)
				sh.Move(session.Connecting, session.Open)
				sh.AddBytes(3, 5)
				sh.Move(session.Open, session.HalfClosedClient)
				sh.AddBytes(1, 2)
				sh.Leave(session.HalfClosedClient)
				sh.End(&session.Record{Reason: session.Done, Tries: 2, Duration: 2 * time.Second, ToUpstream: 4, ToClient: 7})
			}
			sh.Refuse(RefusedLimit)
		})
	}
	wg.Wait()
	close(stop)
	<-readerDone
	tot := r.Totals()
	const n = loops * perLoop
	if tot.Started != n || tot.Ended[session.Done] != n {
		t.Errorf("started %d, ended done %d, want %d each", tot.Started, tot.Ended[session.Done], n)
	}
	if tot.ToUpstream != 4*n || tot.ToClient != 7*n {
		t.Errorf("bytes %d/%d, want %d/%d", tot.ToUpstream, tot.ToClient, 4*n, 7*n)
	}
	if tot.Retries != n {
		t.Errorf("retries %d, want %d", tot.Retries, n)
	}
	if tot.Refused[RefusedLimit] != loops {
		t.Errorf("refused limit %d, want %d", tot.Refused[RefusedLimit], loops)
	}
	for s, v := range tot.States {
		if v != 0 {
			t.Errorf("state %s holds %d after every session ended", session.State(s), v)
		}
	}
	if c := tot.ConnectTime.Count(); c != n {
		t.Errorf("connect observations %d, want %d", c, n)
	}
	if c := tot.Duration.Count(); c != n {
		t.Errorf("duration observations %d, want %d", c, n)
	}
	if want := float64(n) * 2; tot.Duration.Sum != want {
		t.Errorf("duration sum %v, want %v", tot.Duration.Sum, want)
	}
}

// TestHistogramBucketBoundaries pins Prometheus's rule: v lands in the
// first bucket whose upper bound is >= v; above the last bound is the
// last bucket.
func TestHistogramBucketBoundaries(t *testing.T) {
	for _, kind := range []struct {
		name   string
		bounds []float64
		obs    func(*Shard, time.Duration)
		get    func(Totals) HistogramTotals
	}{
		{"connect", connectBounds, (*Shard).Connected, func(t Totals) HistogramTotals { return t.ConnectTime }},
		{"duration", durationBounds, func(s *Shard, d time.Duration) { s.End(&session.Record{Reason: session.Done, Duration: d}) },
			func(t Totals) HistogramTotals { return t.Duration }},
	} {
		t.Run(kind.name, func(t *testing.T) {
			for i, b := range kind.bounds {
				bound := time.Duration(b * float64(time.Second))
				for _, c := range []struct {
					d      time.Duration
					bucket int
				}{{bound, i}, {bound + 1, i + 1}, {bound - 1, i}} {
					if c.d <= 0 || (i > 0 && c.d <= time.Duration(kind.bounds[i-1]*float64(time.Second))) {
						continue
					}
					r := NewRoute("r", 1)
					kind.obs(r.Shard(0), c.d)
					h := kind.get(r.Totals())
					if len(h.Counts) != len(kind.bounds)+1 || len(h.Bounds) != len(kind.bounds) {
						t.Fatalf("%d counts for %d bounds", len(h.Counts), len(h.Bounds))
					}
					for j, n := range h.Counts {
						want := uint64(0)
						if j == c.bucket {
							want = 1
						}
						if n != want {
							t.Errorf("%v (bound %v): bucket %d holds %d, want %d", c.d, bound, j, n, want)
						}
					}
				}
			}
			if first, last := kind.bounds[0], kind.bounds[len(kind.bounds)-1]; kind.name == "connect" && (first != 0.0005 || last != 5) ||
				kind.name == "duration" && (first != 0.001 || last != 3600) {
				t.Errorf("bounds %v..%v", first, last)
			}
		})
	}
}

// TestNilShardCountsNothing pins that a route without counters (a nil
// *Route, so a nil *Shard) is safe everywhere the data path calls it.
func TestNilShardCountsNothing(t *testing.T) {
	var r *Route
	sh := r.Shard(0)
	if sh != nil {
		t.Fatal("a nil route gave a shard")
	}
	sh.Start()
	sh.Refuse(RefusedLimit)
	sh.Enter(session.Connecting)
	sh.Move(session.Connecting, session.Open)
	sh.Leave(session.Open)
	sh.AddBytes(1, 1)
	sh.Connected(time.Second)
	sh.End(&session.Record{Reason: session.Done})
	if tot := r.Totals(); tot.Started != 0 || len(tot.Duration.Counts) != len(durationBounds)+1 {
		t.Errorf("nil route totals %+v", tot)
	}
	if NewRoute("r", 2).Shard(2) != nil {
		t.Error("a loop beyond the route's gave a shard")
	}
}

func TestRefusalNames(t *testing.T) {
	want := []string{"limit", "no_upstream", "local_error", "denied", "client_limit", "rate_limit"}
	if NumRefusals != len(want) {
		t.Fatalf("NumRefusals = %d, want %d", NumRefusals, len(want))
	}
	for i := range Refusal(NumRefusals) {
		if got := i.String(); got != want[i] {
			t.Errorf("refusal %d = %q, want %q", i, got, want[i])
		}
	}
}

// TestEndCountsRefusals pins which ended sessions count as refused: a
// no_upstream one always, a local_error one only before a byte moved.
func TestEndCountsRefusals(t *testing.T) {
	r := NewRoute("r", 1)
	sh := r.Shard(0)
	sh.End(&session.Record{Reason: session.NoUpstream})
	sh.End(&session.Record{Reason: session.LocalError})
	sh.End(&session.Record{Reason: session.LocalError, ToClient: 1})
	tot := r.Totals()
	if tot.Refused[RefusedNoUpstream] != 1 || tot.Refused[RefusedLocalError] != 1 {
		t.Errorf("refused %v, want no_upstream 1 and local_error 1", tot.Refused)
	}
	if tot.Ended[session.LocalError] != 2 {
		t.Errorf("ended local_error %d, want 2", tot.Ended[session.LocalError])
	}
}

func BenchmarkShardSession(b *testing.B) {
	r := NewRoute("r", 1)
	sh := r.Shard(0)
	rec := &session.Record{Reason: session.Done, Tries: 1, Duration: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		sh.Start()
		sh.Enter(session.Connecting)
		sh.Connected(300 * time.Microsecond)
		sh.Move(session.Connecting, session.Open)
		sh.AddBytes(100, 200)
		sh.Leave(session.Open)
		sh.End(rec)
	}
}

func BenchmarkShardAddBytes(b *testing.B) {
	sh := NewRoute("r", 1).Shard(0)
	b.ReportAllocs()
	for b.Loop() {
		sh.AddBytes(100, 0)
	}
}

func BenchmarkTotals(b *testing.B) {
	r := NewRoute("r", 4)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Totals()
	}
}
