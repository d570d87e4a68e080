package udp

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/session"
)

// A flow's datagram filters: each direction's DatagramStreams, run in
// order on the socket's goroutine (filter.RunDatagrams), and the
// datagrams they delayed, held in a bounded queue per direction until
// their time, which the socket's timer heap keeps (the flow's timer
// comes due at the earliest of its idle deadline and its queues' heads).
// Like chain.Set for TCP, the filters are listed from the client's side:
// datagrams to the upstream meet them in order, replies in reverse.

// flowFilters is what a filtered flow holds; an unfiltered flow holds
// none (nil: 8 bytes of its idle cost).
type flowFilters struct {
	// up and down are the streams of f.set (the flow's), nil when its
	// filters leave that direction alone.
	up, down   []filter.DatagramStream
	upQ, downQ delayQueue
	closers    []filter.Closer
}

// maxDelayedPerSocket bounds the bytes all of a socket's flows hold
// delayed together: a flood of clients on a route with latency would
// otherwise hold up to 2 MiB each (its two queues' bound). Past it a
// delayed datagram is dropped and counted (queue_full), as a full queue's.
const maxDelayedPerSocket = 64 << 20

// A delayQueue holds one direction's delayed datagrams, earliest first
// (a min-heap by time: jitter and reordering send them out of order),
// within filter.DatagramQueueLen datagrams and DatagramQueueBytes bytes.
// Datagrams due at the same time leave in the order they were queued (a
// heap alone would swap them): latency keeps order, duplicates follow
// their original.
type delayQueue struct {
	h     []delayed
	bytes int
	seq   uint64 // numbers the datagrams queued, for the order of equals
}

type delayed struct {
	at  time.Duration // since the socket's start
	seq uint64
	d   []byte
}

// before orders a queue: by time, then by arrival.
func (a *delayed) before(b *delayed) bool {
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

func (q *delayQueue) len() int { return len(q.h) }

// push holds d until at; false (and nothing held) when the queue is full.
func (q *delayQueue) push(at time.Duration, d []byte) bool {
	if len(q.h) >= filter.DatagramQueueLen || q.bytes+len(d) > filter.DatagramQueueBytes {
		return false
	}
	q.seq++
	q.h = append(q.h, delayed{at: at, seq: q.seq, d: slices.Clone(d)})
	q.bytes += len(d)
	for j := len(q.h) - 1; j > 0; {
		i := (j - 1) / 2
		if !q.h[j].before(&q.h[i]) {
			break
		}
		q.h[i], q.h[j] = q.h[j], q.h[i]
		j = i
	}
	return true
}

// head is the earliest datagram's time; ok false when empty.
func (q *delayQueue) head() (time.Duration, bool) {
	if len(q.h) == 0 {
		return 0, false
	}
	return q.h[0].at, true
}

// pop takes the earliest datagram.
func (q *delayQueue) pop() []byte {
	d := q.h[0].d
	last := len(q.h) - 1
	q.h[0] = q.h[last]
	q.h[last] = delayed{}
	q.h = q.h[:last]
	q.bytes -= len(d)
	for i := 0; ; {
		j := 2*i + 1
		if j >= len(q.h) {
			break
		}
		if r := j + 1; r < len(q.h) && q.h[r].before(&q.h[j]) {
			j = r
		}
		if !q.h[j].before(&q.h[i]) {
			break
		}
		q.h[i], q.h[j] = q.h[j], q.h[i]
		i = j
	}
	if len(q.h) == 0 {
		q.h = nil // an idle flow keeps no array
	}
	return d
}

// guarded is a stream whose panic becomes its flow's filter_error, named.
type guarded struct {
	name string
	s    filter.DatagramStream
}

func (g guarded) Process(at time.Time, d []byte, out *filter.DatagramOut) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &filterError{name: g.name, err: fmt.Errorf("panicked: %v\n%s", p, debug.Stack())}
		}
	}()
	err = g.s.Process(at, d, out)
	if err != nil && !errors.Is(err, filter.ErrReset) && !errors.Is(err, filter.ErrClose) {
		err = &filterError{name: g.name, err: err}
	}
	return err
}

// A filterError is a filter's failure, with its name.
type filterError struct {
	name string
	err  error
}

func (e *filterError) Error() string { return fmt.Sprintf("filter %s: %v", e.name, e.err) }
func (e *filterError) Unwrap() error { return e.err }

// filterReason is the reason a filter's error ends its flow with.
func filterReason(err error) session.Reason {
	switch {
	case errors.Is(err, filter.ErrReset):
		return session.FilterReset
	case errors.Is(err, filter.ErrClose):
		return session.FilterClose
	}
	return session.FilterError
}

// startFilters makes f's streams from its route's filter set in force;
// an error (a Datagrams that panicked) ends the flow before its first
// datagram.
func (k *socket) startFilters(f *flow) (err error) {
	set := f.rt.Filters.Load()
	f.set = set
	if set == nil || len(set.Filters) == 0 {
		return nil
	}
	sess := &filter.Session{ID: f.rec.ID, Route: f.rt.Name, Client: f.rec.Client, Local: k.ln.addr,
		Upstream: f.rec.Dialed, Start: f.rec.Start}
	sess.UpstreamLocal, _ = localAddr(f.fd)
	ff := &flowFilters{}
	var name string
	defer func() {
		if p := recover(); p != nil {
			err = &filterError{name: name, err: fmt.Errorf("Datagrams panicked: %v\n%s", p, debug.Stack())}
		}
		if ff.up != nil || ff.down != nil {
			f.filt = ff // so that the streams made are closed
		}
	}()
	for _, nf := range set.Filters {
		df, ok := nf.Filter.(filter.DatagramFilter)
		if !ok {
			continue // config refuses such a filter on a udp route
		}
		name = nf.Name
		u, d := df.Datagrams(sess)
		if u != nil {
			ff.up = append(ff.up, guarded{nf.Name, u})
			if c, ok := u.(filter.Closer); ok {
				ff.closers = append(ff.closers, c)
			}
		}
		if d != nil {
			ff.down = append(ff.down, guarded{nf.Name, d})
			if c, ok := d.(filter.Closer); ok {
				ff.closers = append(ff.closers, c)
			}
		}
	}
	slices.Reverse(ff.down)
	return nil
}

// filtered runs d, arrived now, through one direction's streams and
// passes on what they send: at once, or into queue q until its time.
// deliver sends one datagram on; it reports false when the flow ended.
func (k *socket) filtered(f *flow, streams []filter.DatagramStream, q *delayQueue, d []byte, deliver func(*socket, *flow, []byte) bool) {
	out, dropped, err := filter.RunDatagrams(streams, k.wall, d, &k.filterBufs)
	if n := int64(dropped); n > 0 {
		k.c.queueFull.Add(uint64(n))
		f.udp.Dropped += n
	}
	if out.Len() == 0 && err == nil && dropped == 0 {
		k.c.filterDrop.Add(1) // a filter's loss
		f.udp.Dropped++
	}
	for i := range out.Len() {
		at := out.At(i).Sub(k.start)
		if at <= k.now {
			if !deliver(k, f, out.Data(i)) {
				return
			}
			continue
		}
		d := out.Data(i)
		if k.delayed+len(d) > maxDelayedPerSocket || !q.push(at, d) {
			k.c.queueFull.Add(1)
			f.udp.Dropped++
			continue
		}
		k.delayed += len(d)
		if at < f.due {
			k.timers.schedule(f, at)
		}
	}
	if err != nil {
		k.end(f, filterReason(err), err)
	}
}

// release passes on f's delayed datagrams whose time has come.
func (k *socket) release(f *flow) {
	ff := f.filt
	if ff == nil {
		return
	}
	for !f.ended {
		at, ok := ff.upQ.head()
		if !ok || at > k.now {
			break
		}
		d := ff.upQ.pop()
		k.delayed -= len(d)
		k.sendUp(f, d)
	}
	for !f.ended {
		at, ok := ff.downQ.head()
		if !ok || at > k.now {
			break
		}
		d := ff.downQ.pop()
		k.delayed -= len(d)
		k.queueReply(f, d)
	}
}

// nextDue is when f's timer should next come: its idle deadline, or its
// earliest delayed datagram. A flow with datagrams held is not idle.
func (f *flow) nextDue() (due time.Duration, idle bool) {
	due, idle = f.last+f.idle, true
	if ff := f.filt; ff != nil {
		for _, q := range []*delayQueue{&ff.upQ, &ff.downQ} {
			if at, ok := q.head(); ok {
				if idle || at < due {
					due = at
				}
				idle = false
			}
		}
	}
	return due, idle
}

// closeFilters tells f's streams that implement filter.Closer that the
// flow ended: err nil for an end of its own (idle_timeout, responses).
// The datagrams its filters were delaying are lost with it: counted.
func (k *socket) closeFilters(f *flow, reason session.Reason, err error) {
	ff := f.filt
	if ff == nil {
		return
	}
	if err == nil && reason != session.IdleTimeout && reason != session.Responses {
		err = errors.New(reason.String())
	}
	ff.close(err)
	k.delayed -= ff.upQ.bytes + ff.downQ.bytes
	if lost := ff.upQ.len() + ff.downQ.len(); lost > 0 {
		f.udp.Dropped += int64(lost)
		k.c.filterDrop.Add(uint64(lost))
	}
	f.filt = nil
}

// close tells the streams that implement filter.Closer that they are
// done, with err.
func (ff *flowFilters) close(err error) {
	for _, c := range ff.closers {
		func() {
			defer func() { recover() }() // its flow is over already
			c.Close(err)
		}()
	}
	ff.closers = nil
}

// takeUpFilters gives f the route's filter set in force when it is not
// the one f's streams came from (a reload, the admin API changed it), as
// a TCP session takes up a new set between chunks: the old streams are
// closed (err nil) and the new ones made. Datagrams the old ones delayed
// keep their times: they were filtered already. It reports false when the
// flow ended (a new filter failed to start).
func (k *socket) takeUpFilters(f *flow) bool {
	if f.rt.Filters == nil || f.rt.Filters.Load() == f.set {
		return true
	}
	old := f.filt
	f.filt = nil
	if old != nil {
		old.close(nil)
	}
	err := k.startFilters(f)
	if old != nil && (old.upQ.len() > 0 || old.downQ.len() > 0) {
		if f.filt == nil {
			f.filt = &flowFilters{}
		}
		f.filt.upQ, f.filt.downQ = old.upQ, old.downQ
	}
	if err != nil {
		k.end(f, session.FilterError, err)
		return false
	}
	return true
}
