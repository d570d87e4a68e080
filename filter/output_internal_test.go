package filter

import (
	"strings"
	"testing"
	"time"
)

// chanWriter hands each Write's bytes to got.
type chanWriter struct{ got chan string }

func (c chanWriter) Write(p []byte) (int, error) {
	c.got <- string(p)
	return len(p), nil
}

// receive waits, at most 10s, for the next write to w.
func receive(t *testing.T, w chanWriter) string {
	t.Helper()
	select {
	case s := <-w.got:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing written within 10s")
		return ""
	}
}

// waitState waits, at most 10s, for o's goroutine to be in state.
func waitState(t *testing.T, o *Output, state runState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		s := o.state
		o.mu.Unlock()
		if s == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %d, want %d after 10s", s, state)
		}
		time.Sleep(time.Millisecond)
	}
}

// A Write to a parked goroutine wakes it; Writes while it lingers after a
// batch only queue, with no wake-up (no kick), and are written in one
// batch when it looks again. Sync and Close cut a linger short: with a
// linger of an hour they still return at once.
func TestWriteWakesOnlyAParkedGoroutine(t *testing.T) {
	w := chanWriter{got: make(chan string, 16)}
	o := newOutput(w, OutputConfig{Name: "test"}, time.Hour)
	waitState(t, o, parked)
	o.Write(nil, []byte("a"), 1)
	if got := receive(t, w); got != "a" {
		t.Fatalf("wrote %q, want a", got)
	}
	waitState(t, o, lingering)
	for _, p := range []string{"b", "c", "d"} {
		o.Write(nil, []byte(p), 1)
	}
	if n := len(o.kick); n != 0 {
		t.Errorf("Writes to a lingering goroutine left %d kicks, want 0", n)
	}
	select {
	case got := <-w.got:
		t.Fatalf("wrote %q while lingering", got)
	default:
	}
	if !o.Sync(10 * time.Second) {
		t.Fatal("Sync did not end an hour's linger within 10s")
	}
	for _, want := range []string{"b", "c", "d"} {
		if got := receive(t, w); got != want {
			t.Fatalf("wrote %q, want %q", got, want)
		}
	}
	waitState(t, o, parked) // Sync asked for no linger: drained, it parks

	o.Write(nil, []byte("e"), 1)
	receive(t, w)
	waitState(t, o, lingering)
	o.Write(nil, []byte("f"), 1)
	done := make(chan error, 1)
	go func() { done <- o.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end an hour's linger within 10s")
	}
	if got := receive(t, w); got != "f" {
		t.Errorf("Close wrote %q, want f", got)
	}
}

// A queue that reaches half its bounds while the goroutine lingers wakes
// it, so a burst is written rather than refused: with a linger of an
// hour, four times MaxBytes in chunks of an eighth are all taken.
func TestHalfFullQueueEndsTheLinger(t *testing.T) {
	const maxBytes = 4 << 10
	for _, bound := range []struct {
		name string
		cfg  OutputConfig
		size int
	}{
		{"bytes", OutputConfig{Name: "test", MaxBytes: maxBytes}, maxBytes / 8},
		{"writes", OutputConfig{Name: "test", MaxWrites: 8}, 1},
	} {
		t.Run(bound.name, func(t *testing.T) {
			w := chanWriter{got: make(chan string, 64)}
			o := newOutput(w, bound.cfg, time.Hour)
			defer o.Close()
			o.Write(nil, []byte("x"), 1)
			receive(t, w)
			waitState(t, o, lingering)
			chunk := make([]byte, bound.size)
			for i := range 32 {
				// Each Write waits for room, as a relay loop's next chunk
				// comes later; at most 10s.
				deadline := time.Now().Add(10 * time.Second)
				for !o.Write(nil, chunk, 1) {
					if time.Now().After(deadline) {
						t.Fatalf("write %d refused for 10s: the lingering goroutine was not woken", i)
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
}

// flushWriter hands each Write's bytes, and "flush" for each Flush, to
// got.
type flushWriter struct{ chanWriter }

func (f flushWriter) Flush() error {
	f.got <- "flush"
	return nil
}

// A writer is flushed after every batch, not only once the queue is
// empty: a stream that keeps the goroutine busy has its output flushed at
// least every linger. With a linger of an hour, the flush comes still.
func TestFlushedAfterEveryBatch(t *testing.T) {
	w := flushWriter{chanWriter{got: make(chan string, 16)}}
	o := newOutput(w, OutputConfig{Name: "test"}, time.Hour)
	defer o.Close()
	o.Write(nil, []byte("a"), 1)
	o.Write(nil, []byte("b"), 1)
	var got []string
	for len(got) == 0 || got[len(got)-1] != "flush" {
		got = append(got, receive(t, w.chanWriter))
	}
	if s := strings.Join(got, " "); s != "a b flush" && s != "a flush" {
		t.Errorf("wrote %q, want a, perhaps b, and a flush", s)
	}
}
