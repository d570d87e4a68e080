package filter

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// An Output writes what a Filter's Streams hand it on a goroutine of its
// own, so that a Stream never waits for a disk, a pipe or a terminal: the
// relay loop a Stream runs on must never block (see Stream). dump and pcap
// write through one; a filter of yours that writes anywhere should too.
//
// Write copies the bytes into a queue bounded in bytes and in writes, and
// returns at once. What does not fit is not written: it is counted against
// the Track it was written for, and the Track's Note stands in for it in
// the output, written in the place of what was lost, once there is room
// again (before the Track's next write, or as soon as the queue has
// drained). So a reader of the output always knows what is missing, and a
// session never waits. Dropped keeps the running total of every refusal,
// for the metrics.
//
//	out := filter.NewOutput(file, filter.OutputConfig{Name: "myfilter"})
//	tr := &filter.Track{Note: func(dst []byte, l filter.Lost) []byte {
//		return fmt.Appendf(dst, "... %d bytes not shown\n", l.Units)
//	}}
//	out.Write(tr, line, int64(len(chunk)))   // in Process: never waits
//	out.Done(tr, nil)                       // in the Stream's Close
//	out.Close()                             // in the Filter's Close
//
// The goroutine takes what is queued in batches: after each, it waits a
// moment (2 ms) for more to gather, and a Write wakes it only when it has
// nothing left to do, so a busy stream costs no wake-up per Write. A
// writer with a method Flush() error (a bufio.Writer) is flushed after
// each batch written to it, so output is at most a few ms late.
//
// A write that fails (a full disk) loses its bytes; the first failure is
// logged, once, and nothing more until a write succeeds again.
type Output struct {
	w   io.Writer
	cfg OutputConfig

	mu       sync.Mutex
	queue    []byte  // bytes waiting, in order
	entries  []entry // what waits, in order, each its part of queue
	inflight int     // bytes taken by the goroutine, not yet written
	owing    []*Track
	closing  bool   // Close was called: nothing more is queued
	abandon  bool   // Close gave up waiting: the goroutine stops at once
	lost     Lost   // what the nil Track lost
	dropped  Lost   // every write refused since NewOutput; never reset
	queued   uint64 // entries ever queued
	written  uint64 // entries ever written (or failed), flushed
	state    runState
	syncing  int // Syncs waiting: the goroutine does not linger for them

	// spare holds the buffers the goroutine last wrote from, to swap in
	// at its next turn: a steady flow of writes allocates nothing.
	spare      []byte
	spareEntry []entry

	kick      chan struct{} // wakes the goroutine; holds at most one
	done      chan struct{} // closed when the goroutine has ended
	stopped   bool          // the goroutine has ended, or is running afterStop
	afterStop []func()      // run by the goroutine as it ends; see AfterStop
	closeOnce sync.Once
	closeErr  error

	// linger is how long the goroutine waits for more after a batch
	// (outputLinger; tests make it longer).
	linger time.Duration
	// failing says the last write failed (and was logged). Only the
	// goroutine touches it, so it takes no lock.
	failing bool
}

// runState is where the Output's goroutine is, for Write to know whether
// it must be woken. Guarded by mu.
type runState int

const (
	running   runState = iota // writing, or about to look at the queue
	lingering                 // waiting outputLinger for more after a batch
	parked                    // the queue was empty: only a kick wakes it
)

// outputLinger is how long the goroutine lets writes gather after a batch
// before it looks again. Waking a parked goroutine costs the Writer a
// futex call (a few µs, more than the rest of Write), and the goroutine
// a wake-up per chunk; while it lingers, Writes only queue. So a busy
// stream pays one wake-up per linger at most, instead of one per chunk,
// and its chunks are taken in batches. 2 ms: a person reading a dump, or
// a capture read live, sees no delay in it; at 2 MiB (half the default
// MaxBytes; Write wakes a lingering goroutine at half the bounds) it takes
// 1 GB/s to fill half the queue within one linger. internal/asynclog lingers
// 5 ms for the same reason; a dump is read more live than a log.
const outputLinger = 2 * time.Millisecond

// OutputConfig tunes an Output. The zero value is usable.
type OutputConfig struct {
	// Name is the filter's name, for the log line a failed write makes.
	Name string
	// MaxBytes bounds the bytes queued and being written; 0 means 4 MiB.
	MaxBytes int
	// MaxWrites bounds the writes queued; 0 means 16384.
	MaxWrites int
	// CloseTimeout bounds how long Close waits for what is queued to be
	// written; 0 means 2s.
	CloseTimeout time.Duration
	// Log takes the line a failed write makes; nil means slog.Default().
	Log *slog.Logger
}

const (
	defaultOutputBytes   = 4 << 20
	defaultOutputWrites  = 16384
	defaultOutputTimeout = 2 * time.Second
)

// A Track is one writer's account with an Output, such as one direction
// of one session: where its bytes go and what it has lost. Its fields are
// set before its first write and not changed after. A Track is used with
// one Output.
type Track struct {
	// To is where the Track's bytes go; nil means the Output's writer.
	// An Output never writes to one To from two goroutines at once.
	To io.Writer
	// Note appends to dst what stands in the output for what the Track
	// lost: a line "... 1234 bytes not shown", a pcapng comment. It is
	// called on the Output's goroutine or in Write, with the Output's
	// lock held, so it must only format. Nil: the loss is only counted.
	Note func(dst []byte, l Lost) []byte

	lost   Lost // not yet noted; guarded by the Output's mu
	listed bool // in the Output's owing list
}

// Lost is what a Track could not hand over since its last Note.
type Lost struct {
	// Writes is how many Writes were refused, Bytes their length.
	Writes, Bytes int64
	// Units is the sum of the units those Writes stood for (see Write):
	// the session bytes a dump block shows, the payload of a packet.
	Units int64
}

func (l *Lost) add(p []byte, units int64) {
	l.Writes++
	l.Bytes += int64(len(p))
	l.Units += units
}

// An entry is one thing waiting: n bytes of queue for a Track's To, or
// a closing.
type entry struct {
	to     io.Writer
	n      int
	closer io.Closer
}

// NewOutput returns an Output writing to w (for Tracks with no To of
// their own; nil if every Track has one), and starts its goroutine, which
// runs until Close.
func NewOutput(w io.Writer, cfg OutputConfig) *Output {
	return newOutput(w, cfg, outputLinger)
}

func newOutput(w io.Writer, cfg OutputConfig, linger time.Duration) *Output {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = defaultOutputBytes
	}
	if cfg.MaxWrites <= 0 {
		cfg.MaxWrites = defaultOutputWrites
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = defaultOutputTimeout
	}
	o := &Output{w: w, cfg: cfg, kick: make(chan struct{}, 1), done: make(chan struct{}), linger: linger}
	go o.run()
	return o
}

// Write hands p over to be written to t's To, and returns at once: true if
// p was queued (it is copied; the caller may reuse it), false if it was
// not, for want of room or because the Output is closed. A refused p
// counts against t (nil t: against the Output), as one write of len(p)
// bytes standing for units (Lost.Units), and t's Note says so later.
func (o *Output) Write(t *Track, p []byte, units int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		o.lossOf(t).add(p, units)
		o.dropped.add(p, units)
		return false
	}
	if len(o.entries) >= o.cfg.MaxWrites || len(o.queue)+o.inflight+len(p) > o.cfg.MaxBytes {
		o.lossOf(t).add(p, units)
		o.dropped.add(p, units)
		if t != nil && !t.listed {
			t.listed = true
			o.owing = append(o.owing, t)
		}
		return false
	}
	o.note(t)
	o.put(t, p)
	o.wakeIdle()
	return true
}

// Done says that t will write no more: what it lost and has not yet
// noted is noted, even past the queue's bounds (a note is small, and each
// Track has one at most), and then c, if not nil, is closed, in order
// after everything t queued. After Close, c is not closed: the Filter
// that owns the Output closes what is still open when it is closed.
func (o *Output) Done(t *Track, c io.Closer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return
	}
	o.note(t)
	if c != nil {
		o.entries = append(o.entries, entry{closer: c})
		o.queued++
	}
	o.wakeIdle()
}

// Lost returns what was lost by writes with no Track, and, if the Output
// is closed, by every write refused since.
func (o *Output) Lost() Lost {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lost
}

// Dropped returns every write the Output refused since it was made, for
// want of room or after Close, whatever Track it was for: a running total
// that Notes do not reset, for the metrics. A write the writer failed is
// logged, not counted here.
func (o *Output) Dropped() Lost {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

func (o *Output) lossOf(t *Track) *Lost {
	if t == nil || o.closing {
		return &o.lost
	}
	return &t.lost
}

// note queues t's Note for what it lost, if anything. o.mu is held.
func (o *Output) note(t *Track) {
	if t == nil || t.lost.Writes == 0 {
		return
	}
	if t.Note != nil {
		start := len(o.queue)
		o.queue = t.Note(o.queue, t.lost)
		if n := len(o.queue) - start; n > 0 {
			o.entries = append(o.entries, entry{to: o.dest(t), n: n})
			o.queued++
		}
	}
	t.lost = Lost{}
}

// put queues p for t. o.mu is held.
func (o *Output) put(t *Track, p []byte) {
	if len(p) == 0 {
		return
	}
	o.queue = append(o.queue, p...)
	o.entries = append(o.entries, entry{to: o.dest(t), n: len(p)})
	o.queued++
}

func (o *Output) dest(t *Track) io.Writer {
	if t != nil && t.To != nil {
		return t.To
	}
	return o.w
}

func (o *Output) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// wakeIdle wakes the goroutine if it is parked, or if it is lingering and
// the queue has reached half its bounds (it must start writing before
// Writes are refused), and otherwise leaves it be: a goroutine that is
// writing looks at the queue again when it is done, and a lingering one
// within outputLinger. So a busy stream's Writes make no wake-ups. o.mu is
// held.
func (o *Output) wakeIdle() {
	if o.state == running || o.state == lingering && !o.halfFull() {
		return
	}
	o.state = running // one kick is enough
	o.wake()
}

// halfFull says the queue holds half of what its bounds allow. o.mu is
// held.
func (o *Output) halfFull() bool {
	return 2*(len(o.queue)+o.inflight) >= o.cfg.MaxBytes || 2*len(o.entries) >= o.cfg.MaxWrites
}

// run is the Output's goroutine: it takes everything queued at once,
// writes it, flushes what it wrote to, and waits outputLinger for more to
// gather.
func (o *Output) run() {
	defer close(o.done)
	defer o.runAfterStop()
	var dirty []io.Writer // written to since their last flush
	pause := time.NewTimer(o.linger)
	pause.Stop()
	for {
		o.mu.Lock()
		o.state = running
		if len(o.entries) == 0 {
			// Drained: the Tracks that lost bytes while the queue was
			// full have their Notes written now, not at their next write,
			// which may never come.
			for _, t := range o.owing {
				t.listed = false
				o.note(t)
			}
			clear(o.owing)
			o.owing = o.owing[:0]
		}
		queue, entries := o.queue, o.entries
		if len(entries) > 0 {
			// Writers go on into the spare buffers meanwhile.
			o.queue, o.entries = o.spare[:0], o.spareEntry[:0]
			o.spare, o.spareEntry = nil, nil
			o.inflight = len(queue)
		}
		took := o.queued
		stop := o.closing && len(entries) == 0 || o.abandon
		if len(entries) == 0 && !stop {
			// From here on a Write kicks: one that comes before the
			// goroutine waits finds the kick when it does.
			o.state = parked
		}
		o.mu.Unlock()

		if len(entries) == 0 {
			o.mu.Lock()
			o.written = took
			o.mu.Unlock()
			if stop {
				return
			}
			<-o.kick
			continue
		}
		off := 0
		for _, e := range entries {
			if e.closer != nil {
				// A closing that works says nothing of whether writes
				// work again: only a failure counts.
				if err := e.closer.Close(); err != nil {
					o.result(err)
				}
				continue
			}
			p := queue[off : off+e.n]
			off += e.n
			if e.to == nil {
				continue
			}
			_, err := e.to.Write(p)
			o.result(err)
			if !containsWriter(dirty, e.to) {
				dirty = append(dirty, e.to)
			}
		}
		o.mu.Lock()
		o.inflight = 0
		clear(entries) // let closers and writers go
		o.spare, o.spareEntry = queue[:0], entries[:0]
		abandon := o.abandon
		// Close and Sync are waiting, and a queue half full must not wait
		// to be refused: no linger for them.
		hurry := o.closing || o.syncing > 0 || o.halfFull()
		if !hurry {
			o.state = lingering
		}
		o.mu.Unlock()
		if abandon {
			return
		}
		// Flushed after every batch, not only once the queue is empty:
		// a writer that gathers a batch's blocks into one write (dump's)
		// then writes at least every outputLinger while a stream is busy.
		for _, w := range dirty {
			if f, ok := w.(interface{ Flush() error }); ok {
				// Like a closing, a flush that works (perhaps of nothing)
				// says nothing of whether writes work again.
				if err := f.Flush(); err != nil {
					o.result(err)
				}
			}
		}
		clear(dirty)
		dirty = dirty[:0]
		if !hurry {
			pause.Reset(o.linger)
			select {
			case <-pause.C:
			case <-o.kick:
				pause.Stop()
			}
		}
	}
}

func containsWriter(ws []io.Writer, w io.Writer) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}

// result logs the first of a run of failures, once. Only the goroutine
// calls it.
func (o *Output) result(err error) {
	first := err != nil && !o.failing
	o.failing = err != nil
	if first {
		log := o.cfg.Log
		if log == nil {
			log = slog.Default()
		}
		log.Error(o.cfg.Name+": write failed; output is lost until a write succeeds", "error", err.Error())
	}
}

// Sync waits, at most timeout, until everything queued before it was
// called has been written and flushed, and reports whether it was. It is
// for tests, and for a Filter's own goroutines: never call it from
// Process.
func (o *Output) Sync(timeout time.Duration) bool {
	o.mu.Lock()
	want := o.queued
	o.syncing++
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.syncing--
		o.mu.Unlock()
	}()
	o.wake() // parked or lingering, it looks at the queue now
	deadline := time.Now().Add(timeout)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		o.mu.Lock()
		done := o.written >= want
		o.mu.Unlock()
		if done {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-o.done:
			o.mu.Lock()
			defer o.mu.Unlock()
			return o.written >= want
		case <-time.After(wait):
		}
	}
}

// AfterStop has fn run once the Output's goroutine has stopped writing:
// on that goroutine as it ends, or at once, on the caller's, if it has
// ended already. It is for a Filter whose Close got ErrOutputTimeout: the
// goroutine is then stuck in a write, which may hold locks of the file it
// writes to (a disk that stalls), so closing the file now would wait as
// long; handed to AfterStop, it closes when that write returns, and the
// Filter's Close returns at once.
func (o *Output) AfterStop(fn func()) {
	o.mu.Lock()
	if !o.stopped {
		o.afterStop = append(o.afterStop, fn)
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	fn()
}

func (o *Output) runAfterStop() {
	o.mu.Lock()
	o.stopped = true
	fns := o.afterStop
	o.afterStop = nil
	o.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// ErrOutputTimeout is returned by Output.Close when what was queued could
// not all be written within the CloseTimeout; the rest is lost.
var ErrOutputTimeout = errors.New("filter: output not written in time")

// Close writes what is queued, waiting at most the CloseTimeout, and ends
// the Output's goroutine. Writes after Close are refused and counted
// (Lost). It does not close the Output's writer. Calling it again returns
// the first result.
func (o *Output) Close() error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closing = true
		o.mu.Unlock()
		o.wake()
		t := time.NewTimer(o.cfg.CloseTimeout)
		defer t.Stop()
		select {
		case <-o.done:
		case <-t.C:
			o.mu.Lock()
			o.abandon = true
			n := len(o.queue) + o.inflight
			o.mu.Unlock()
			o.wake()
			// The goroutine stops when its current write returns, which
			// a writer that never returns (a pipe nobody reads) prevents.
			o.closeErr = fmt.Errorf("%w: %s: %d bytes in %v", ErrOutputTimeout, o.cfg.Name, n, o.cfg.CloseTimeout)
		}
	})
	return o.closeErr
}
