package dump

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/testutil"
)

// recordingWriter keeps each Write's bytes apart, and fails while fail is
// set.
type recordingWriter struct {
	writes [][]byte
	fail   bool
}

var errDiskFull = errors.New("disk full")

func (r *recordingWriter) Write(p []byte) (int, error) {
	if r.fail {
		return 0, errDiskFull
	}
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

// Small blocks are gathered into one write; none is ever split between
// two writes (a block lands whole in a file others append to), and none
// is lost or reordered; a block too large to gather goes out alone.
func TestGatherWriterWritesWholeBlocksTogether(t *testing.T) {
	var blocks [][]byte
	for i, size := range []int{400, 400, 400, gatherSize - 1000, 3000, gatherSize + 1, 10, 20} {
		blocks = append(blocks, bytes.Repeat([]byte{byte('a' + i)}, size))
	}
	r := &recordingWriter{}
	g := &gatherWriter{w: r}
	for _, b := range blocks[:3] {
		if n, err := g.Write(b); n != len(b) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(r.writes) != 0 {
		t.Fatalf("%d writes before the flush, want 0", len(r.writes))
	}
	must(t, g.Flush())
	if len(r.writes) != 1 {
		t.Fatalf("%d writes for 3 small blocks, want 1", len(r.writes))
	}
	for _, b := range blocks[3:] {
		if n, err := g.Write(b); n != len(b) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	must(t, g.Flush())
	// Every write is whole blocks, in order: each boundary between writes
	// is one between blocks.
	var i int
	for _, w := range r.writes {
		if len(w) > gatherSize && len(w) != len(blocks[i]) {
			t.Errorf("a write of %d bytes holds more than one block past %d", len(w), gatherSize)
		}
		for len(w) > 0 {
			if i == len(blocks) || !bytes.HasPrefix(w, blocks[i]) {
				t.Fatalf("a write splits block %d, or is out of order", i)
			}
			w = w[len(blocks[i]):]
			i++
		}
	}
	if i != len(blocks) {
		t.Errorf("%d blocks written, want %d", i, len(blocks))
	}
}

// After a write fails, blocks go straight through until one is written,
// each reporting its own failure; then they are gathered again.
func TestGatherWriterWritesThroughAfterAFailure(t *testing.T) {
	r := &recordingWriter{}
	g := &gatherWriter{w: r}
	_, err := g.Write([]byte("a"))
	must(t, err)
	r.fail = true
	if err := g.Flush(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Flush = %v, want %v", err, errDiskFull)
	}
	if _, err := g.Write([]byte("b")); !errors.Is(err, errDiskFull) {
		t.Fatalf("Write after a failed flush = %v, want %v", err, errDiskFull)
	}
	r.fail = false
	_, err = g.Write([]byte("c")) // written through: it works again
	must(t, err)
	_, err = g.Write([]byte("d"))
	must(t, err)
	if got := len(r.writes); got != 1 {
		t.Errorf("%d writes, want 1 (c, written through; d held)", got)
	}
	must(t, g.Flush())
	if got := len(r.writes); got != 2 {
		t.Errorf("%d writes after the flush, want 2", got)
	}
}

// A dump file that fails (its descriptor gone) costs the sessions
// nothing and is logged once, not once per batch: gathering blocks does
// not make each batch a success (buffered) and then a failure (flushed).
func TestFailingFileLogsOnce(t *testing.T) {
	var log testutil.Buffer
	vals := map[string]filter.Value{"to": {Text: t.TempDir() + "/dump.log"}}
	f, err := newDump(filter.NewOptions("dump", vals, 0, 0).WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	d := f.(*dump)
	defer d.Close()
	d.file.Close() // every write fails
	for i := range 5 {
		up, down := drivers(d, uint64(i+1))
		must(t, up.Write([]byte("hello")))
		// Each Sync ends a batch: the next block is another.
		if !d.out.Sync(10 * time.Second) {
			t.Fatal("output not written within 10s")
		}
		must(t, down.Write([]byte("world")))
		if !d.out.Sync(10 * time.Second) {
			t.Fatal("output not written within 10s")
		}
	}
	if n := strings.Count(log.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, log.String())
	}
}
