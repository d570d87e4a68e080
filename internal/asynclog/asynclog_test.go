package asynclog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pierproxy/pier/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait in these tests; it is never slept.
const wait = 10 * time.Second

// gate is a log writer that blocks in Write until released: a log reader
// that stopped reading.
type gate struct {
	entered chan struct{} // a Write has started
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	out     bytes.Buffer
}

func newGate(t *testing.T) *gate {
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(g.open) // a test that fails early still ends the writer
	return g
}

func (g *gate) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(p)
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) lines() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Split(strings.TrimSuffix(g.out.String(), "\n"), "\n")
}

func jsonFormat(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }

func closeWithin(t *testing.T, h *Handler, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return h.Close(ctx)
}

// returnsWithin runs f and fails the test if it has not returned within d:
// a Handle that waits for the writer would hang here.
func returnsWithin(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still running after %v: the caller waits for the log writer", d)
	}
}

// A writer that blocks forever costs the caller nothing: Handle returns at
// once, a full queue drops and counts (access log apart from the rest), and
// once the writer can write again the log says what was dropped.
func TestBlockedWriterDropsAndSaysSo(t *testing.T) {
	g := newGate(t)
	h := New(g, jsonFormat, Options{Records: 4})
	log := slog.New(h)
	defer closeWithin(t, h, wait)

	log.Info("first") // the writer takes it and blocks in Write
	select {
	case <-g.entered:
	case <-time.After(wait):
		t.Fatal("the writer never started writing")
	}
	returnsWithin(t, wait, func() {
		for i := range 4 { // fills the queue
			log.Info("queued", "i", i)
		}
		for i := range 10 {
			log.Info(AccessMessage, "id", i)
		}
		for range 3 {
			log.Warn("something else")
		}
	})
	if access, other := h.Dropped(); access != 10 || other != 3 {
		t.Fatalf("dropped %d access and %d other records, want 10 and 3", access, other)
	}

	g.open()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, l := range g.lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		msgs = append(msgs, m["msg"].(string))
		if strings.Contains(m["msg"].(string), "dropped") && m["level"] != "WARN" {
			t.Errorf("drop report at level %v, want WARN: %s", m["level"], l)
		}
	}
	want := []string{"first", "access log: dropped 10 records", "log: dropped 3 records", "queued", "queued", "queued", "queued"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("messages written:\n%q\nwant\n%q", msgs, want)
	}
}

// The byte bound holds even when the record bound does not bite: a record
// larger than the whole queue is dropped, and reported although nothing
// else is logged after it.
func TestByteBound(t *testing.T) {
	var out testutil.Buffer
	h := New(&out, jsonFormat, Options{Bytes: 1000})
	log := slog.New(h)
	log.Info("small")
	log.Info(AccessMessage, "blob", strings.Repeat("x", 2000))
	if access, _ := h.Dropped(); access != 1 {
		t.Fatalf("dropped %d access records, want 1", access)
	}
	if err := closeWithin(t, h, wait); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, `"msg":"access log: dropped 1 records","dropped":1`) || strings.Contains(s, "xxxx") {
		t.Errorf("output:\n%s", s)
	}
}

// Close gives up when its context is done, even if the writer never
// returns, and says how many records were lost.
func TestCloseBoundedByContext(t *testing.T) {
	g := newGate(t)
	h := New(g, jsonFormat, Options{})
	log := slog.New(h)
	for range 5 {
		log.Info("stuck")
	}
	start := time.Now()
	err := closeWithin(t, h, 100*time.Millisecond)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with a 100ms bound", took)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "5 records not written") {
		t.Errorf("Close: %v, want 5 records not written", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.Flush(ctx); err == nil {
		t.Error("Flush returned nil while the writer is stuck")
	}
	// g.open at cleanup lets the writer end; goleak checks that it does.
}

// Close writes everything queued before it; records after it are refused.
func TestCloseDrains(t *testing.T) {
	var out testutil.Buffer
	h := New(&out, jsonFormat, Options{})
	log := slog.New(h)
	for i := range 100 {
		log.Info("line", "i", i)
	}
	if err := closeWithin(t, h, wait); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"msg":"line"`); n != 100 {
		t.Errorf("%d lines written, want 100", n)
	}
	if err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "late", 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Handle after Close: %v, want ErrClosed", err)
	}
	if err := closeWithin(t, h, wait); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A Handler that never logged starts no goroutine and closes at once.
func TestUnusedHandlerCloses(t *testing.T) {
	h := New(io.Discard, jsonFormat, Options{})
	if err := closeWithin(t, h, wait); err != nil {
		t.Fatal(err)
	}
}

// WithAttrs and WithGroup handlers share the queue: one writer, one order.
func TestDerivedHandlersShareTheQueue(t *testing.T) {
	var out testutil.Buffer
	h := New(&out, jsonFormat, Options{})
	base := slog.New(h)
	route := base.With("route", "db")
	grouped := route.WithGroup("g")
	base.Info("one")
	route.Info("two")
	grouped.Info("three", "k", 1)
	if err := closeWithin(t, h, wait); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	for i, want := range []string{`"msg":"one"}`, `"msg":"two","route":"db"}`, `"msg":"three","route":"db","g":{"k":1}}`} {
		if !strings.HasSuffix(lines[i], want) {
			t.Errorf("line %d %s, want it to end %s", i, lines[i], want)
		}
	}
	if !h.Enabled(context.Background(), slog.LevelInfo) || h.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("Enabled does not follow the format handler's level")
	}
}

// Many goroutines logging at once while the writer writes: every record
// accounted for, written or dropped (run with -race).
func TestConcurrentHandle(t *testing.T) {
	var out testutil.Buffer
	h := New(&out, jsonFormat, Options{Records: 64})
	log := slog.New(h)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				log.Info(AccessMessage, "id", 1)
			}
		})
	}
	wg.Wait()
	if err := closeWithin(t, h, wait); err != nil {
		t.Fatal(err)
	}
	access, _ := h.Dropped()
	written := strings.Count(out.String(), `"msg":"session"`)
	if written+int(access) != 8*500 {
		t.Errorf("%d written + %d dropped != %d logged", written, access, 8*500)
	}
}

// A value that may change after Handle returns (a []byte a caller reuses, a
// LogValuer) is logged as it was when logged, although the writer formats
// plain records later.
func TestValuesAreTakenWhenLogged(t *testing.T) {
	g := newGate(t)
	h := New(g, jsonFormat, Options{})
	log := slog.New(h)
	log.Info("first") // the writer takes it and blocks in Write
	<-g.entered
	buf := []byte("before")
	n := &counter{n: 1}
	log.Info("reused", "buf", buf, "n", n, "s", "plain")
	copy(buf, "AFTER!")
	n.n = 2
	g.open()
	if err := closeWithin(t, h, wait); err != nil {
		t.Fatal(err)
	}
	lines := g.lines()
	if want := `"msg":"reused","buf":"YmVmb3Jl","n":1,"s":"plain"}`; len(lines) != 2 || !strings.HasSuffix(lines[1], want) {
		t.Errorf("lines %q, want the second to end %s", lines, want)
	}
}

type counter struct{ n int }

func (c *counter) LogValue() slog.Value { return slog.IntValue(c.n) }
