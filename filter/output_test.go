package filter_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct {
	entered chan struct{} // gets one value per Write begun
	release chan struct{}
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	b.entered <- struct{}{}
	<-b.release
	return len(p), nil
}

// AfterStop runs its function on the Output's goroutine once a write
// stuck past Close's bound returns, not before; on an Output already
// stopped, at once.
func TestAfterStop(t *testing.T) {
	w := &blockedWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	out := filter.NewOutput(w, filter.OutputConfig{Name: "test", CloseTimeout: 50 * time.Millisecond})
	out.Write(nil, []byte("x"), 1)
	<-w.entered
	if err := out.Close(); !errors.Is(err, filter.ErrOutputTimeout) {
		t.Fatalf("Close = %v, want ErrOutputTimeout", err)
	}
	ran := make(chan struct{})
	out.AfterStop(func() { close(ran) })
	select {
	case <-ran:
		t.Fatal("ran while the write was still stuck")
	default:
	}
	close(w.release)
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("did not run 10s after the write returned")
	}

	done := filter.NewOutput(io.Discard, filter.OutputConfig{})
	if err := done.Close(); err != nil {
		t.Fatal(err)
	}
	now := false
	done.AfterStop(func() { now = true })
	if !now {
		t.Error("did not run at once on a stopped Output")
	}
}
