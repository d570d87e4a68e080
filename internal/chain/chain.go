// Package chain runs one direction of a session through its filters: the
// read-filter-write path the relay takes when a route has filters.
//
// A Chain is a row of stages, one per filter Stream, each with a queue of
// the bytes waiting for it; the last queue holds what waits for the
// destination socket. The relay reads from the source into the first queue
// (ReadSpace, Fill), runs the stages (Run), writes the last queue out (Out,
// Sent) and arms a timer for the earliest time a stage asked for (Wake).
// Queues take buffers from a shared pool only while they hold bytes, so an
// idle filtered session holds none, and a stage is not run while the queue
// after it is full, so every queue is bounded and a slow reader slows the
// writer through every filter.
//
// A Chain is used by one goroutine at a time.
package chain

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/pierproxy/pier/filter"
)

// bufSize is the size of a pooled queue buffer, and the most a queue holds
// before the stage in front of it waits (unless the stage after it may
// hold more: see filter.Holder).
const bufSize = 256 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}

// A queue is bytes waiting, b[r:]. While b is a pooled buffer, pb is the
// pool's handle on it, kept so that giving it back allocates nothing.
type queue struct {
	b     []byte
	r     int
	limit int // how much may wait before the producer stops
	pb    *[]byte
}

func (q *queue) len() int     { return len(q.b) - q.r }
func (q *queue) data() []byte { return q.b[q.r:] }
func (q *queue) full() bool   { return q.len() >= q.limit }

// take removes n bytes from the front, and gives the buffer back to the
// pool once it is empty.
func (q *queue) take(n int) {
	q.r += n
	if q.r == len(q.b) {
		q.release()
	}
}

// buf returns the queue's buffer for appending, from the pool if it has
// none. The bytes already taken are dropped from its front when that
// copies no more than was taken, or when the room behind is short: a stage
// that holds megabytes (latency) does not have them all moved for every
// read.
func (q *queue) buf() []byte {
	if q.b == nil {
		q.pb = pool.Get().(*[]byte)
		q.b = (*q.pb)[:0]
	} else if q.r > 0 && (q.r >= q.len() || cap(q.b)-len(q.b) < bufSize/2) {
		n := copy(q.b, q.b[q.r:])
		q.b, q.r = q.b[:n], 0
	}
	return q.b
}

func (q *queue) release() {
	if q.pb != nil && cap(q.b) == bufSize && &q.b[:1][0] == &(*q.pb)[:1][0] {
		*q.pb = q.b[:0]
		pool.Put(q.pb)
	}
	q.b, q.r, q.pb = nil, 0, nil
}

// A stage is one Stream and the queue in front of it.
type stage struct {
	name   string
	s      filter.Stream
	in     queue
	eof    bool      // the stage before has finished: in is all there is
	done   bool      // finished: its end has passed on
	dirty  bool      // something changed since the last call
	wake   time.Time // when it asked to be called, or zero
	woken  uint64    // the last Run that called it: its wake time waits for the next
	closed bool      // Close has been called
}

// A Stage names a Stream for New.
type Stage struct {
	Name   string
	Stream filter.Stream
}

// A Chain is one direction's filters.
type Chain struct {
	stages []stage
	out    queue
	batch  filter.Batch
	runs   uint64
}

// An Error is a stage's failure: the filter's name, and what it returned
// or how it panicked.
type Error struct {
	Filter string
	Err    error
	Panic  any
	Stack  []byte
}

func (e *Error) Error() string {
	if e.Panic != nil {
		return fmt.Sprintf("filter %s panicked: %v", e.Filter, e.Panic)
	}
	return fmt.Sprintf("filter %s: %v", e.Filter, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns a chain of the stages, in order, for one direction of s.
func New(s *filter.Session, dir filter.Direction, stages []Stage) *Chain {
	c := &Chain{stages: make([]stage, len(stages))}
	for i, st := range stages {
		// dirty: every stage is called once at take-up (filter.Stream).
		c.stages[i] = stage{name: st.Name, s: st.Stream, dirty: true}
		c.stages[i].in.limit = filter.DefaultHold
		if h, ok := st.Stream.(filter.Holder); ok {
			c.stages[i].in.limit = max(h.HoldLimit(), 1)
		}
	}
	c.out.limit = bufSize
	c.batch.Session, c.batch.Dir = s, dir
	return c
}

// ReadSpace returns where the next bytes from the source may be read to,
// or nil while the first stage holds as much as it may.
func (c *Chain) ReadSpace() []byte {
	q := c.first()
	free := q.limit - q.len()
	if free <= 0 {
		return nil
	}
	b := q.buf()
	if cap(b)-len(b) < min(free, bufSize/2) {
		// The queue's buffer is full but the stage may hold more:
		// grow it, doubling, to at most its limit.
		nb := make([]byte, len(b), len(b)+min(free, max(cap(b), bufSize)))
		copy(nb, b)
		q.release()
		q.b = nb
		b = nb
	}
	return b[len(b):min(cap(b), len(b)+free)]
}

// Fill records that n bytes were read into the space ReadSpace returned.
func (c *Chain) Fill(n int) {
	q := c.first()
	q.b = q.b[:len(q.b)+n]
	if len(c.stages) > 0 {
		c.stages[0].dirty = true
	}
	if q.len() == 0 {
		q.release()
	}
}

// CloseInput records that the source has finished.
func (c *Chain) CloseInput() {
	if len(c.stages) > 0 {
		c.stages[0].eof = true
		c.stages[0].dirty = true
	}
}

func (c *Chain) first() *queue {
	if len(c.stages) == 0 {
		return &c.out
	}
	return &c.stages[0].in
}

// Out returns the bytes waiting for the destination.
func (c *Chain) Out() []byte { return c.out.data() }

// Sent records that the first n bytes of Out were written.
func (c *Chain) Sent(n int) {
	wasFull := c.out.full()
	c.out.take(n)
	if wasFull && !c.out.full() && len(c.stages) > 0 {
		c.stages[len(c.stages)-1].dirty = true
	}
}

// Done reports whether the end of the source has passed through every
// stage and every byte has been sent: the destination may be shut down.
func (c *Chain) Done() bool {
	if len(c.stages) == 0 {
		return false // the relay tracks the end itself for an empty chain
	}
	return c.stages[len(c.stages)-1].done && c.out.len() == 0
}

// Held returns how many bytes wait in the chain's queues.
func (c *Chain) Held() int {
	n := c.out.len()
	for i := range c.stages {
		n += c.stages[i].in.len()
	}
	return n
}

// Wake returns the earliest time a stage asked to be called, or zero.
func (c *Chain) Wake() time.Time {
	var t time.Time
	for i := range c.stages {
		w := c.stages[i].wake
		if !w.IsZero() && (t.IsZero() || w.Before(t)) {
			t = w
		}
	}
	return t
}

// Run calls every stage that has something to do (new bytes, its time
// come, the end, or room after a full queue), front to back and again,
// until none has. It reports whether any byte moved or stage finished.
//
// A wake time a stage asks for is honoured from the next Run on, so that
// what it forwards before it is written out first (the slicer's pieces go
// out as separate writes).
func (c *Chain) Run(now time.Time) (progress bool, err error) {
	c.runs++
	for {
		moved := false
		for i := range c.stages {
			st := &c.stages[i]
			next := &c.out
			if i+1 < len(c.stages) {
				next = &c.stages[i+1].in
			}
			if st.done || next.full() {
				continue
			}
			due := !st.wake.IsZero() && !now.Before(st.wake) && st.woken != c.runs
			if !st.dirty && !due {
				continue
			}
			m, err := c.call(st, next, now)
			if err != nil {
				return true, err
			}
			if m {
				moved = true
				if i+1 < len(c.stages) {
					c.stages[i+1].dirty = true
				}
			}
			if st.done {
				if i+1 < len(c.stages) {
					c.stages[i+1].eof = true
					c.stages[i+1].dirty = true
				}
				moved = true
			}
		}
		if !moved {
			return progress, nil
		}
		progress = true
	}
}

// call runs one stage's Process. It reports whether bytes were taken or
// forwarded.
func (c *Chain) call(st *stage, next *queue, now time.Time) (moved bool, err error) {
	in := st.in.data()
	out := next.buf()
	before := len(out)
	b := &c.batch
	b.Reset(in, out, st.eof, now)
	perr := c.process(st)
	// What the stream forwarded goes out even when it failed.
	next.b = b.Out()
	if len(next.b) == 0 {
		next.release()
	}
	taken := b.Taken(in)
	if taken > 0 {
		st.in.take(taken)
	} else if st.in.len() == 0 {
		st.in.release()
	}
	st.dirty = false
	st.wake = b.Wake()
	st.woken = c.runs // a time asked for now is honoured from the next Run
	if perr != nil {
		return true, perr
	}
	if b.Finished() {
		st.done = true
	} else if st.eof && st.wake.IsZero() && taken == 0 && len(next.b) == before {
		return false, &Error{Filter: st.name, Err: fmt.Errorf("holds %d bytes at the end of the stream and asked for no wake-up", st.in.len())}
	}
	return taken > 0 || len(next.b) != before, nil
}

// process calls Process, turning a panic into an Error. A sentinel error
// (ErrReset, ErrClose) is kept as is inside the Error, for the relay to
// act on.
func (c *Chain) process(st *stage) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Filter: st.name, Panic: p, Stack: debug.Stack()}
		}
	}()
	if e := st.s.Process(&c.batch); e != nil {
		if fs, ok := st.s.(failedStream); ok {
			return fs.err // already an Error, from Set.Chains
		}
		return &Error{Filter: st.name, Err: e}
	}
	return nil
}

// Close tells every stream the session has ended, with err, and returns
// the chain's buffers to the pool. A panic in a stream's Close is
// recovered and returned.
func (c *Chain) Close(err error) (perr error) {
	for i := range c.stages {
		st := &c.stages[i]
		st.in.release()
		if st.closed {
			continue
		}
		st.closed = true
		if cl, ok := st.s.(filter.Closer); ok {
			func() {
				defer func() {
					if p := recover(); p != nil && perr == nil {
						perr = &Error{Filter: st.name, Panic: p, Stack: debug.Stack()}
					}
				}()
				cl.Close(err)
			}()
		}
	}
	c.out.release()
	return perr
}

// IsReset and IsClose tell whether err asks for the session to end with a
// reset, or cleanly.
func IsReset(err error) bool { return errors.Is(err, filter.ErrReset) }
func IsClose(err error) bool { return errors.Is(err, filter.ErrClose) }
