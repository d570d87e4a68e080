// Package asynclog is pier's log handler that never blocks its caller. A
// relay loop that finishes a session logs one access log line; if that line
// went to stderr on the loop, a log reader that stops reading (a full pipe, a
// stalled journald, a slow terminal) would stall every session on the loop,
// and shutdown with them. So a record is formatted on the caller into a
// pooled buffer and handed to a bounded queue; one writer goroutine writes
// the queue to the real io.Writer. When the queue is full the record is
// dropped and counted, and the writer says so ("access log: dropped N
// records") as soon as it can write again.
//
// The command line builds one Handler over stderr and closes it at exit:
//
//	h := asynclog.New(os.Stderr, func(w io.Writer) slog.Handler {
//		return slog.NewJSONHandler(w, opts)
//	}, asynclog.Options{})
//	log := slog.New(h)
//	...
//	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
//	defer cancel()
//	h.Close(ctx) // bounded: gives up if the writer is stuck
//
// asynclog imports nothing of pier's.
package asynclog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// AccessMessage is the message of an access log record (one per finished
// session); drops of these are counted apart from drops of other records.
const AccessMessage = "session"

// Default bounds of the queue: 4096 records of a few hundred bytes each is
// about a second of sessions at pier's accept rate, in at most 4 MiB.
const (
	DefaultRecords = 4096
	DefaultBytes   = 4 << 20
)

// maxPooledBuffer keeps an occasional huge record from pinning its buffer
// in the pool.
const maxPooledBuffer = 16 << 10

// Options bound the queue.
type Options struct {
	// Records is the most records the queue holds; zero means
	// DefaultRecords.
	Records int
	// Bytes is the most formatted bytes the queue holds; zero means
	// DefaultBytes. A record larger than Bytes is always dropped.
	Bytes int
	// UnfoldText, for a text (key=value) format, writes a quoted value that
	// holds line breaks (a multi-line error) as a marker "key=|" on the
	// record's line and the value's lines below it, each indented by two
	// spaces, instead of one line with "\n" escapes.
	UnfoldText bool
}

func (o Options) records() int {
	if o.Records <= 0 {
		return DefaultRecords
	}
	return o.Records
}

func (o Options) bytes() int64 {
	if o.Bytes <= 0 {
		return DefaultBytes
	}
	return int64(o.Bytes)
}

// ErrClosed is returned by Handle after Close: the record was not written.
var ErrClosed = errors.New("asynclog: handler closed")

// errFull is what the queue's Write returns to the formatting handler when
// the record does not fit; Handle turns it into a counted drop.
var errFull = errors.New("asynclog: queue full")

// Handler is an slog.Handler whose Handle never waits for the writer. Its
// WithAttrs and WithGroup handlers share its queue and writer.
type Handler struct {
	fmt slog.Handler // formats into the queue
	q   *queue
}

// New returns a Handler that writes to w through a bounded queue. format
// builds the handler that formats records (slog.NewJSONHandler or
// slog.NewTextHandler with the caller's options); it is called twice: once
// over the queue, once over the writer's own buffer for the lines that
// report drops, so those lines have the same format. The writer goroutine
// starts with the first record; Close ends it.
func New(w io.Writer, format func(io.Writer) slog.Handler, opts Options) *Handler {
	q := &queue{
		w:        w,
		unfold:   opts.UnfoldText,
		ch:       make(chan *buffer, opts.records()),
		maxBytes: opts.bytes(),
		wake:     make(chan struct{}, 1),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	q.report = format(&q.scratch)
	return &Handler{fmt: format(q), q: q}
}

// Enabled reports whether the format handler takes records at level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.fmt.Enabled(ctx, level)
}

// Handle formats r on the caller and queues the bytes. It does not wait: if
// the queue is full, r is dropped and counted, and Handle returns nil (a
// logger has no one to return an error to; the drop is reported in the log
// itself).
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	q := h.q
	if q.closed.Load() {
		q.lost.Add(1)
		return ErrClosed
	}
	// Do not spend the caller's time formatting a record that cannot fit.
	if len(q.ch) == cap(q.ch) || q.queuedBytes.Load() >= q.maxBytes {
		q.drop(r.Message)
		return nil
	}
	err := h.fmt.Handle(ctx, r)
	if errors.Is(err, errFull) {
		q.drop(r.Message)
		return nil
	}
	return err
}

// WithAttrs returns a Handler that adds as to every record; it shares h's
// queue.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{fmt: h.fmt.WithAttrs(as), q: h.q}
}

// WithGroup returns a Handler that puts later attributes in group name; it
// shares h's queue.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{fmt: h.fmt.WithGroup(name), q: h.q}
}

// Dropped returns how many records were dropped because the queue was full
// since the Handler was made: access log records and others.
func (h *Handler) Dropped() (access, other uint64) {
	return h.q.accessDropTotal.Load(), h.q.otherDropTotal.Load()
}

// Flush waits until every record queued before it is written, or ctx is
// done. The Handler stays open.
func (h *Handler) Flush(ctx context.Context) error {
	q := h.q
	if !q.started.Load() {
		return nil // nothing was ever queued
	}
	reply := make(chan struct{})
	select {
	case q.flushReq <- reply:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return q.stuck(ctx)
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return q.stuck(ctx)
	}
}

// Close stops taking records, writes what is queued and ends the writer,
// within ctx: when ctx is done first, Close returns an error that says how
// many records were not written. A writer stuck in w.Write forever stays
// stuck (nothing can interrupt a blocked write(2) on a descriptor pier does
// not own), but Close returns, so the process can exit in its grace period.
func (h *Handler) Close(ctx context.Context) error {
	q := h.q
	q.closed.Store(true)
	q.closeOnce.Do(func() { close(q.stop) })
	q.start.Do(func() { close(q.done) }) // never started: nothing to drain
	select {
	case <-q.done:
		if n := q.records.Load(); n > 0 { // raced in after the last drain
			return fmt.Errorf("asynclog: %d records not written", n)
		}
		return nil
	case <-ctx.Done():
		return q.stuck(ctx)
	}
}

// queue is the bounded queue between the formatting handlers and the one
// writer goroutine; it is the io.Writer the formatting handlers write to.
type queue struct {
	w        io.Writer
	unfold   bool
	ch       chan *buffer
	maxBytes int64

	queuedBytes atomic.Int64 // bytes in ch or being written
	records     atomic.Int64 // records in ch or being written

	accessDrops, otherDrops         atomic.Uint64 // not yet reported
	accessDropTotal, otherDropTotal atomic.Uint64
	lost                            atomic.Uint64 // records handled after Close

	wake     chan struct{}      // a drop happened: report it even if ch stays empty
	flushReq chan chan struct{} // Flush asks the writer to drain
	stop     chan struct{}      // closed by Close
	done     chan struct{}      // closed when the writer has ended

	start     sync.Once
	started   atomic.Bool
	closeOnce sync.Once
	closed    atomic.Bool

	// Owned by the writer goroutine.
	report   slog.Handler // formats drop reports into scratch
	scratch  buffer
	unfolded buffer
}

// buffer is a byte slice that is an io.Writer.
type buffer struct{ b []byte }

func (b *buffer) Write(p []byte) (int, error) {
	b.b = append(b.b, p...)
	return len(p), nil
}

var bufferPool = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, 512)} }}

// Write queues one formatted record without waiting. slog's handlers call
// it once per record, under their mutex, which it holds only for a copy.
func (q *queue) Write(p []byte) (int, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	n := int64(len(p))
	if q.queuedBytes.Add(n) > q.maxBytes {
		q.queuedBytes.Add(-n)
		return 0, errFull
	}
	b := bufferPool.Get().(*buffer)
	b.b = append(b.b[:0], p...)
	q.records.Add(1)
	select {
	case q.ch <- b:
	default:
		q.records.Add(-1)
		q.queuedBytes.Add(-n)
		bufferPool.Put(b)
		return 0, errFull
	}
	if !q.started.Load() {
		q.start.Do(func() {
			q.started.Store(true)
			go q.run()
		})
	}
	return len(p), nil
}

// drop counts a record the queue had no room for and wakes the writer so it
// reports the drop even if nothing else comes.
func (q *queue) drop(msg string) {
	if msg == AccessMessage {
		q.accessDrops.Add(1)
		q.accessDropTotal.Add(1)
	} else {
		q.otherDrops.Add(1)
		q.otherDropTotal.Add(1)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) stuck(ctx context.Context) error {
	n := uint64(q.records.Load()) + q.accessDrops.Load() + q.otherDrops.Load()
	return fmt.Errorf("asynclog: log writer blocked, %d records not written: %w", n, ctx.Err())
}

// run is the writer goroutine: it alone writes to w.
func (q *queue) run() {
	defer close(q.done)
	for {
		select {
		case b := <-q.ch:
			q.write(b)
		case <-q.wake:
			q.reportDrops()
		case reply := <-q.flushReq:
			q.drain()
			close(reply)
		case <-q.stop:
			q.drain()
			return
		}
	}
}

// drain writes every queued record and reports any drops.
func (q *queue) drain() {
	for {
		select {
		case b := <-q.ch:
			q.write(b)
		default:
			q.reportDrops()
			return
		}
	}
}

// write writes one queued record, after reporting the drops that happened
// while the writer could not write.
func (q *queue) write(b *buffer) {
	q.reportDrops()
	out := b.b
	if q.unfold {
		q.unfolded.b = unfoldText(q.unfolded.b[:0], out)
		out = q.unfolded.b
	}
	q.w.Write(out) // a log write error has nowhere to go
	q.records.Add(-1)
	q.queuedBytes.Add(-int64(len(b.b)))
	if cap(b.b) <= maxPooledBuffer {
		bufferPool.Put(b)
	}
}

// reportDrops writes one Warn line per kind of record dropped since the
// last report, through the same format as every other line.
func (q *queue) reportDrops() {
	if n := q.accessDrops.Swap(0); n > 0 {
		q.reportDrop(fmt.Sprintf("access log: dropped %d records", n), n)
	}
	if n := q.otherDrops.Swap(0); n > 0 {
		q.reportDrop(fmt.Sprintf("log: dropped %d records", n), n)
	}
}

func (q *queue) reportDrop(msg string, n uint64) {
	r := slog.NewRecord(time.Now(), slog.LevelWarn, msg, 0)
	r.AddAttrs(slog.Uint64("dropped", n))
	q.scratch.b = q.scratch.b[:0]
	if q.report.Handle(context.Background(), r) != nil {
		return
	}
	out := q.scratch.b
	if q.unfold {
		q.unfolded.b = unfoldText(q.unfolded.b[:0], out)
		out = q.unfolded.b
	}
	q.w.Write(out)
}
