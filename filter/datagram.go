package filter

import "time"

// A DatagramFilter is a Filter that can work on a UDP route's flows too.
// On a udp route every filter must be one (the config refuses others).
// Datagrams is called once per flow, when the flow is made, from the
// goroutine of the socket the flow arrived on; like Streams, it may
// return nil for a direction it leaves alone, or for a flow it does not
// target. A flow's Session is what a TCP session's is: ID (the flow's
// access log line), Route, Client and Local (the address the client sent
// to), Upstream and UpstreamLocal (pier's end of the flow's connected
// upstream socket), Start.
type DatagramFilter interface {
	Datagrams(s *Session) (toUpstream, toClient DatagramStream)
}

// A DatagramStream is one filter's work on one direction of one UDP flow.
//
// Process is given one datagram d (valid only during the call) due at
// time at: the time it reached this filter, which is its arrival, or later
// if a filter before it delayed it. It decides d's fate through out:
// out.Send(at2, d2) passes a datagram on (d itself or another; copied), to
// be sent at at2 (at2 at or before at: at once); any number of Sends (0
// drops d, 2 duplicate it). What a stream sends is the input of the next
// stream in the chain, each datagram with its own time; what the last
// sends is sent at its time, or held until then (see the package doc).
//
// A DatagramStream never reads the wall clock, never blocks and never
// waits: it delays a datagram by sending it with a later time. Process
// is called from one goroutine at a time (the flow's socket's), so the
// stream's own state needs no lock.
//
// An error ends the flow: ErrReset and ErrClose as the flow's reasons
// filter_reset and filter_close, any other error as a filter failure
// (filter_error, logged with the filter's name). Datagrams sent in the
// same call are sent first. A panic in Process ends only its flow.
//
// A DatagramStream that implements Closer is told when its flow ends,
// once, after its last Process.
type DatagramStream interface {
	Process(at time.Time, d []byte, out *DatagramOut) error
}

// The bounds on what is held for one direction of one flow: the datagrams
// filters delayed, waiting for their time, and what one Process call may
// send. Past either, datagrams are dropped at the tail, and counted.
const (
	// DatagramQueueLen is the most datagrams held.
	DatagramQueueLen = 1024
	// DatagramQueueBytes is the most payload bytes held.
	DatagramQueueBytes = 1 << 20
)

// datagramArenaKeep is the most arena a DatagramOut keeps across Resets:
// enough for a burst of the largest datagrams, duplicated, without
// holding on to what one odd call needed.
const datagramArenaKeep = 256 << 10

// A DatagramOut collects the datagrams one DatagramStream.Process call
// sends. A stream only calls Send; the code that drives streams (pier's
// UDP engine, filtertest) Resets it before each call and reads what was
// sent with Len, At and Data.
//
// Send copies each datagram into an arena the DatagramOut keeps between
// calls, so in steady state no call allocates. One call may send at most
// DatagramQueueLen datagrams and DatagramQueueBytes bytes: more is
// dropped, and counted by Dropped.
type DatagramOut struct {
	arena   []byte
	sent    []sentDatagram
	dropped int
}

// A sentDatagram is one Send: its time, and where its bytes are in the
// arena (offsets, not slices, so the arena may grow under them).
type sentDatagram struct {
	at       time.Time
	off, end int
}

// Send passes d on, to be sent at at: a time at or before the at Process
// was given means at once. d is copied; the stream may reuse it.
func (o *DatagramOut) Send(at time.Time, d []byte) {
	if len(o.sent) >= DatagramQueueLen || len(o.arena)+len(d) > DatagramQueueBytes {
		o.dropped++
		return
	}
	off := len(o.arena)
	o.arena = append(o.arena, d...)
	o.sent = append(o.sent, sentDatagram{at: at, off: off, end: len(o.arena)})
}

// Reset empties o for the next call. The slices Data returned before it
// are no longer valid.
func (o *DatagramOut) Reset() {
	if cap(o.arena) > datagramArenaKeep {
		o.arena = nil
	}
	o.arena = o.arena[:0]
	clear(o.sent) // no time.Time keeps a Location alive
	o.sent = o.sent[:0]
	o.dropped = 0
}

// Len returns how many datagrams were sent since the last Reset.
func (o *DatagramOut) Len() int { return len(o.sent) }

// At returns the time the i-th datagram sent is due.
func (o *DatagramOut) At(i int) time.Time { return o.sent[i].at }

// Data returns the i-th datagram sent, valid until the next Reset.
func (o *DatagramOut) Data(i int) []byte {
	s := o.sent[i]
	return o.arena[s.off:s.end:s.end]
}

// Dropped returns how many Sends since the last Reset were dropped for
// going past the bounds of one call.
func (o *DatagramOut) Dropped() int { return o.dropped }

// RunDatagrams runs datagram d, arrived at at, through streams in order,
// as pier's UDP engine does: every datagram stream i sends is given, with
// its own time, to stream i+1 (a time earlier than the one stream i was
// given counts as that one: a datagram never goes back in time); nil
// streams are skipped. bufs are the two DatagramOuts it alternates
// between; it returns the one holding what the last stream sent (with no
// stream, d itself at at), and how many datagrams were dropped for going
// past a call's bounds on the way. d is not kept.
//
// A stream's error is returned after what that stream sent before it (in
// the same call) has been through the rest of the chain: the caller sends
// out, then ends the flow. The failing stream is given nothing more; of
// several errors, the first is returned.
func RunDatagrams(streams []DatagramStream, at time.Time, d []byte, bufs *[2]DatagramOut) (out *DatagramOut, dropped int, err error) {
	in, out := &bufs[0], &bufs[1]
	in.Reset()
	in.Send(at, d)
	dropped = in.Dropped()
	for _, s := range streams {
		if s == nil {
			continue
		}
		out.Reset()
		for i := range in.Len() {
			t, first := in.At(i), out.Len()
			if t.Before(at) {
				t = at
			}
			perr := s.Process(t, in.Data(i), out)
			for j := first; j < out.Len(); j++ {
				if out.sent[j].at.Before(t) {
					out.sent[j].at = t
				}
			}
			if perr != nil {
				if err == nil {
					err = perr
				}
				break
			}
		}
		dropped += out.Dropped()
		in, out = out, in
	}
	return in, dropped, err
}
