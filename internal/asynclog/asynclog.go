// Package asynclog is pier's log handler that never blocks its caller. A
// relay loop that finishes a session logs one access log line; if that line
// went to stderr on the loop, a log reader that stops reading (a full pipe, a
// stalled journald, a slow terminal) would stall every session on the loop,
// and shutdown with them. So a record is handed without waiting to a
// bounded queue (a copy of the record, or its bytes formatted on the caller)
// and one writer goroutine formats and writes the queue to the real
// io.Writer, many records per write. When the queue is full the record is
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

// Default bounds of the queue: 4096 records ride out a reader that stalls
// for 0.4 s while 10,000 sessions a second end; 4 MiB bounds what they hold
// (an access log record is about 300 bytes).
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
	// Bytes is the most bytes the queue holds (of a record queued
	// unformatted, an estimate of its formatted size from its values);
	// zero means DefaultBytes. A record larger than Bytes is always dropped.
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
	onCaller slog.Handler // formats on the caller, into the queue
	onWriter slog.Handler // formats on the writer goroutine
	q        *queue
}

// NewText returns a Handler that writes slog's text format to w, a
// multi-line value's lines each on a line of their own: pier's log on a
// terminal, and the default of a program that embeds pier.
func NewText(w io.Writer, opts *slog.HandlerOptions) *Handler {
	return New(w, func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }, Options{UnfoldText: true})
}

// New returns a Handler that writes to w through a bounded queue. format
// builds the handler that formats records (slog.NewJSONHandler or
// slog.NewTextHandler with the caller's options); New calls it twice, once
// over the queue and once over the writer goroutine's buffer, so every line,
// the drop reports too, has the same format. The writer goroutine starts
// with the first record; Close ends it.
func New(w io.Writer, format func(io.Writer) slog.Handler, opts Options) *Handler {
	q := &queue{
		w:        w,
		unfold:   opts.UnfoldText,
		ch:       make(chan *item, opts.records()),
		maxBytes: opts.bytes(),
		wake:     make(chan struct{}, 1),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	h := &Handler{onCaller: format(q), onWriter: format(&q.scratch), q: q}
	q.report = h.onWriter
	return h
}

// Enabled reports whether the format handler takes records at level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.onCaller.Enabled(ctx, level)
}

// Handle queues r without waiting. If the queue is full, r is dropped and
// counted, and Handle returns nil (a logger has no one to give an error to;
// the writer reports drops in the log itself).
//
// A record whose values are all plain (strings, numbers, bools, times,
// durations; an access log line is) is queued as it is and formatted by the
// writer goroutine: that costs the caller a copy instead of the formatting.
// Any other record is formatted on the caller, because its values (a
// LogValuer, a pointer, a []byte) may change once Handle returns.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	q := h.q
	if q.closed.Load() {
		return ErrClosed
	}
	// Do not spend the caller's time on a record that cannot fit.
	if len(q.ch) == cap(q.ch) || q.queuedBytes.Load() >= q.maxBytes {
		q.drop(r.Message)
		return nil
	}
	size, plain := sizeOf(r)
	if !plain {
		err := h.onCaller.Handle(ctx, r) // calls q.Write
		if errors.Is(err, errFull) {
			q.drop(r.Message)
			return nil
		}
		return err
	}
	if !q.reserve(size) {
		q.drop(r.Message)
		return nil
	}
	it := itemPool.Get().(*item)
	it.format, it.rec, it.size = h.onWriter, r.Clone(), size
	if !q.push(it) {
		q.drop(r.Message)
	}
	return nil
}

// WithAttrs returns a Handler that adds as to every record; it shares h's
// queue.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{onCaller: h.onCaller.WithAttrs(as), onWriter: h.onWriter.WithAttrs(as), q: h.q}
}

// WithGroup returns a Handler that puts later attributes in group name; it
// shares h's queue.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{onCaller: h.onCaller.WithGroup(name), onWriter: h.onWriter.WithGroup(name), q: h.q}
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
// many records were not written. A writer stuck in w.Write stays stuck
// (nothing interrupts a blocked write(2) to a descriptor pier does not
// own), but Close returns, so the process can exit within its grace period.
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

// sizeOf estimates what r will cost the queue in bytes (what its values
// hold, plus the punctuation and numbers around them), and reports whether
// every value is plain: immutable once Handle returns.
func sizeOf(r slog.Record) (size int64, plain bool) {
	size, plain = int64(64+len(r.Message)), true
	r.Attrs(func(a slog.Attr) bool {
		var n int64
		n, plain = valueSize(a.Value)
		size += int64(len(a.Key)) + n
		return plain
	})
	return size, plain
}

// valueSize estimates the bytes v costs the queue, and reports whether it
// is plain.
func valueSize(v slog.Value) (int64, bool) {
	switch v.Kind() {
	case slog.KindString:
		return int64(len(v.String())) + 8, true
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		return 32, true
	case slog.KindGroup:
		var size int64 = 8
		for _, a := range v.Group() {
			n, plain := valueSize(a.Value)
			if !plain {
				return 0, false
			}
			size += int64(len(a.Key)) + n
		}
		return size, true
	}
	return 0, false // KindAny, KindLogValuer
}

// item is one queued record: a record to format on the writer goroutine,
// or the bytes of one formatted on the caller.
type item struct {
	format slog.Handler // formats rec; nil when the record is in buf
	rec    slog.Record
	buf    []byte
	size   int64 // what it counts against the byte bound
}

var itemPool = sync.Pool{New: func() any { return new(item) }}

func (it *item) release() {
	it.format, it.rec = nil, slog.Record{} // keep no caller's strings alive
	if cap(it.buf) > maxPooledBuffer {
		it.buf = nil
	}
	it.buf = it.buf[:0]
	itemPool.Put(it)
}

// queue is the bounded queue between the handlers and the one writer
// goroutine; it is the io.Writer the caller-side format handlers write to.
type queue struct {
	w        io.Writer
	unfold   bool
	ch       chan *item
	maxBytes int64

	queuedBytes atomic.Int64 // bytes queued or being written
	records     atomic.Int64 // records queued or being written

	accessDrops, otherDrops         atomic.Uint64 // not yet reported
	accessDropTotal, otherDropTotal atomic.Uint64

	wake     chan struct{}      // a drop happened: report it even if ch stays empty
	flushReq chan chan struct{} // Flush asks the writer to drain
	stop     chan struct{}      // closed by Close
	done     chan struct{}      // closed when the writer has ended

	start     sync.Once
	started   atomic.Bool
	closeOnce sync.Once
	closed    atomic.Bool

	// Owned by the writer goroutine.
	report  slog.Handler // formats drop reports into scratch
	scratch buffer       // one record formatted by the writer
	batch   []byte       // what the next write(2) writes
}

// maxBatch bounds one write: a pipe's default capacity.
const maxBatch = 64 << 10

// buffer is a byte slice that is an io.Writer.
type buffer struct{ b []byte }

func (b *buffer) Write(p []byte) (int, error) {
	b.b = append(b.b, p...)
	return len(p), nil
}

// reserve counts size against the byte bound, if it fits.
func (q *queue) reserve(size int64) bool {
	if q.queuedBytes.Add(size) > q.maxBytes {
		q.queuedBytes.Add(-size)
		return false
	}
	return true
}

// push queues it, whose size is reserved, without waiting; if the queue is
// full it releases it and returns false.
func (q *queue) push(it *item) bool {
	q.records.Add(1)
	select {
	case q.ch <- it:
	default:
		q.records.Add(-1)
		q.queuedBytes.Add(-it.size)
		it.release()
		return false
	}
	if !q.started.Load() {
		q.start.Do(func() {
			q.started.Store(true)
			go q.run()
		})
	}
	return true
}

// Write queues one record formatted on the caller, without waiting.
// slog's handlers call it once per record, under their mutex, which it
// holds only for a copy.
func (q *queue) Write(p []byte) (int, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	if !q.reserve(int64(len(p))) {
		return 0, errFull
	}
	it := itemPool.Get().(*item)
	it.buf, it.size = append(it.buf[:0], p...), int64(len(p))
	if !q.push(it) {
		return 0, errFull
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

// linger is how long the writer lets records gather after a write before
// it writes again. A writer parked on the queue is woken by each record,
// and that wake-up (a futex call to start a thread) costs the logging loop
// more than the rest of Handle; while it lingers, records only queue. So a
// busy pier pays at most one wake-up per linger, and an idle one none; a
// line reaches the log at most this late.
const linger = 5 * time.Millisecond

// run is the writer goroutine: it alone writes to w.
func (q *queue) run() {
	defer close(q.done)
	pause := time.NewTimer(linger)
	for {
		select {
		case it := <-q.ch:
			q.writeBatch(it)
		case <-q.wake:
			q.writeBatch(nil)
		case reply := <-q.flushReq:
			q.drain()
			close(reply)
		case <-q.stop:
			q.drain()
			return
		}
		pause.Reset(linger)
		select {
		case <-pause.C:
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
		case it := <-q.ch:
			q.writeBatch(it)
		default:
			q.writeBatch(nil)
			return
		}
	}
}

// writeBatch writes, in one write, the drops not yet reported (they
// happened while the writer could not write, so they come first), first
// if not nil, and whatever else is queued, up to maxBatch bytes.
func (q *queue) writeBatch(first *item) {
	q.batch = q.batch[:0]
	q.appendDrops()
	var records, size int64
	for it := first; it != nil; it = q.next() {
		q.appendItem(it)
		records++
		size += it.size
		it.release()
	}
	if len(q.batch) > 0 {
		q.w.Write(q.batch) // a log write error has nowhere to go
	}
	q.records.Add(-records)
	q.queuedBytes.Add(-size)
	if cap(q.batch) > 2*maxBatch {
		q.batch = nil
	}
}

// next takes another queued item for the batch, if any and if it has room.
func (q *queue) next() *item {
	if len(q.batch) >= maxBatch {
		return nil
	}
	select {
	case it := <-q.ch:
		return it
	default:
		return nil
	}
}

func (q *queue) appendItem(it *item) {
	line := it.buf
	if it.format != nil {
		q.scratch.b = q.scratch.b[:0]
		if it.format.Handle(context.Background(), it.rec) != nil {
			return
		}
		line = q.scratch.b
	}
	q.appendLine(line)
}

func (q *queue) appendLine(line []byte) {
	if q.unfold {
		q.batch = unfoldText(q.batch, line)
	} else {
		q.batch = append(q.batch, line...)
	}
}

// appendDrops adds one Warn line per kind of record dropped since the last
// report, in the same format as every other line.
func (q *queue) appendDrops() {
	if n := q.accessDrops.Swap(0); n > 0 {
		q.appendDrop(fmt.Sprintf("access log: dropped %d records", n), n)
	}
	if n := q.otherDrops.Swap(0); n > 0 {
		q.appendDrop(fmt.Sprintf("log: dropped %d records", n), n)
	}
}

func (q *queue) appendDrop(msg string, n uint64) {
	r := slog.NewRecord(time.Now(), slog.LevelWarn, msg, 0)
	r.AddAttrs(slog.Uint64("dropped", n))
	q.scratch.b = q.scratch.b[:0]
	if q.report.Handle(context.Background(), r) == nil {
		q.appendLine(q.scratch.b)
	}
}
