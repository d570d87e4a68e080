package filtertest

import (
	"fmt"
	"slices"
	"time"

	"github.com/pierproxy/pier/filter"
)

// A Datagram is one datagram a chain of DatagramStreams sent: when it is
// due (never before it arrived) and its bytes.
type Datagram struct {
	At   time.Time
	Data []byte
}

// A DatagramDriver feeds one direction of a flow's chain of
// DatagramStreams, as pier's UDP engine does (filter.RunDatagrams), on a
// clock the test controls:
//
//	d := filtertest.NewDatagrams(stream)   // or several: a chain
//	d.Send([]byte("ping"))                 // arrives at d.Now
//	d.Advance(10 * time.Millisecond)
//	got := d.Delivered()                   // in the order a peer gets them
type DatagramDriver struct {
	// Streams is the chain, in order; nil ones are skipped.
	Streams []filter.DatagramStream
	// Now is the driver's clock: a datagram Sent arrives at it.
	Now time.Time
	// Out is every datagram the chain sent, in the order it sent them,
	// each due no earlier than it arrived.
	Out []Datagram
	// Dropped counts datagrams dropped for going past a call's bounds
	// (filter.DatagramQueueLen, filter.DatagramQueueBytes).
	Dropped int
	// Calls counts Sends.
	Calls int

	bufs [2]filter.DatagramOut
}

// Session returns the session New's drivers have: a client at
// 192.0.2.1:40000 sending to 192.0.2.2:9090, forwarded from
// 198.51.100.2:50000 to 198.51.100.1:5432, id 1, route "test", at Epoch.
func Session() *filter.Session {
	return New(nil).Session
}

// NewDatagrams returns a driver for the chain streams, at Epoch.
func NewDatagrams(streams ...filter.DatagramStream) *DatagramDriver {
	return &DatagramDriver{Streams: streams, Now: Epoch}
}

// Send runs p, arriving now, through the chain and records what comes
// out. An error a stream returns is returned after what was sent before
// it is recorded.
func (d *DatagramDriver) Send(p []byte) error {
	d.Calls++
	out, dropped, err := filter.RunDatagrams(d.Streams, d.Now, p, &d.bufs)
	d.Dropped += dropped
	for i := range out.Len() {
		at := out.At(i)
		if at.Before(d.Now) {
			return fmt.Errorf("filtertest: RunDatagrams gave a time %v before the arrival %v", at, d.Now)
		}
		d.Out = append(d.Out, Datagram{At: at, Data: slices.Clone(out.Data(i))})
	}
	return err
}

// Advance moves the clock by dt.
func (d *DatagramDriver) Advance(dt time.Duration) { d.Now = d.Now.Add(dt) }

// Delivered returns Out in the order a peer receives it: by due time,
// datagrams due at the same time in the order sent (as pier's engine
// releases them).
func (d *DatagramDriver) Delivered() []Datagram {
	got := slices.Clone(d.Out)
	slices.SortStableFunc(got, func(a, b Datagram) int { return a.At.Compare(b.At) })
	return got
}

// DueBy returns the datagrams of Delivered due at or before t.
func (d *DatagramDriver) DueBy(t time.Time) []Datagram {
	var got []Datagram
	for _, g := range d.Delivered() {
		if !g.At.After(t) {
			got = append(got, g)
		}
	}
	return got
}

// Close tells each stream of the chain that is a filter.Closer that its
// flow has ended, with err.
func (d *DatagramDriver) Close(err error) {
	for _, s := range d.Streams {
		if c, ok := s.(filter.Closer); ok {
			c.Close(err)
		}
	}
}
