// Package filtertest drives a filter.Stream the way pier's relay does, on
// a clock the test controls, so a Stream's behaviour can be checked byte
// for byte and tick for tick without sockets:
//
//	d := filtertest.New(stream)
//	d.Start()                    // the Stream takes up its session; Process runs
//	d.Write([]byte("hello"))     // bytes arrive; Process runs
//	d.Advance(100 * time.Millisecond) // time passes; Process runs if it asked
//	d.CloseWrite()               // the source ends
//	d.Drain(time.Minute)         // run the clock until the Stream finishes
//	got := d.Out                 // everything forwarded, in order
//
// A DatagramDriver does the same for a chain of filter.DatagramStreams,
// one direction of a UDP flow: Send datagrams at its clock's time, Advance
// it, and read what came out, each datagram with the time it is due:
//
//	d := filtertest.NewDatagrams(up)     // up from a DatagramFilter's Datagrams(filtertest.Session())
//	d.Send([]byte("ping"))
//	got := d.Delivered()                 // []Datagram{{At, Data}}, by due time
//
// CheckOptions, in a test, checks a Spec's declared Options against what
// its Factory really reads.
package filtertest

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/pierproxy/pier/filter"
)

// A Driver feeds one Stream.
type Driver struct {
	Stream filter.Stream
	// Session and Dir are what Process sees in its Batch.
	Session *filter.Session
	Dir     filter.Direction
	// Now is the driver's clock; Advance moves it.
	Now time.Time
	// In holds the bytes the Stream has not taken; Out everything it
	// forwarded, in order.
	In, Out []byte
	// EOF is set by CloseWrite; Finished once the Stream has finished.
	EOF, Finished bool
	// Wake is the time the Stream last asked for, or zero.
	Wake time.Time
	// Calls counts calls to Process.
	Calls int

	started bool
	batch   filter.Batch
}

// maxCallsAtOnce bounds the calls Advance makes without the clock moving
// (pier's chain calls a stage at most once per run for a wake time).
const maxCallsAtOnce = 1 << 16

// Epoch is the driver's starting time.
var Epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// New returns a driver for s, on a session from 192.0.2.1:40000 to
// 198.51.100.1:5432, in direction ToUpstream, at Epoch.
func New(s filter.Stream) *Driver {
	return &Driver{
		Stream: s,
		Session: &filter.Session{
			ID:            1,
			Route:         "test",
			Client:        netip.MustParseAddrPort("192.0.2.1:40000"),
			Local:         netip.MustParseAddrPort("192.0.2.2:9090"),
			Upstream:      netip.MustParseAddrPort("198.51.100.1:5432"),
			UpstreamLocal: netip.MustParseAddrPort("198.51.100.2:50000"),
			Start:         Epoch,
		},
		Dir: filter.ToUpstream,
		Now: Epoch,
	}
}

// Start calls Process once with no bytes, as pier does when a Stream
// takes up its session. Write, CloseWrite and Advance call it first if
// the test has not.
func (d *Driver) Start() error {
	if d.started {
		return nil
	}
	d.started = true
	return d.call()
}

// Write appends p to the bytes waiting for the Stream and calls Process.
func (d *Driver) Write(p []byte) error {
	if d.EOF {
		return fmt.Errorf("filtertest: Write after CloseWrite")
	}
	if err := d.Start(); err != nil {
		return err
	}
	d.In = append(d.In, p...)
	return d.call()
}

// CloseWrite marks the source finished and calls Process.
func (d *Driver) CloseWrite() error {
	if err := d.Start(); err != nil {
		return err
	}
	d.EOF = true
	return d.call()
}

// Advance moves the clock by dt, calling Process at every time the Stream
// asked for on the way (as often as it keeps asking), and once more at
// the end if it asked for that time.
func (d *Driver) Advance(dt time.Duration) error {
	if err := d.Start(); err != nil {
		return err
	}
	end := d.Now.Add(dt)
	same := 0 // calls at this d.Now: a Stream that keeps asking for now never lets time pass
	for !d.Finished && !d.Wake.IsZero() && !d.Wake.After(end) {
		if d.Wake.After(d.Now) {
			d.Now, same = d.Wake, 0
		}
		if same++; same > maxCallsAtOnce {
			return fmt.Errorf("filtertest: stream asked %d times to be called again at %v", same-1, d.Now)
		}
		if err := d.call(); err != nil {
			return err
		}
	}
	d.Now = end
	return nil
}

// Drain advances the clock to each time the Stream asks for until it has
// finished, at most limit in all. It fails if the Stream stops asking
// without finishing.
func (d *Driver) Drain(limit time.Duration) error {
	end := d.Now.Add(limit)
	for !d.Finished {
		if d.Wake.IsZero() {
			return fmt.Errorf("filtertest: stream neither finished nor asked to wake (%d bytes held, EOF %v)", len(d.In), d.EOF)
		}
		if d.Wake.After(end) {
			return fmt.Errorf("filtertest: stream not finished within %v", limit)
		}
		if err := d.Advance(d.Wake.Sub(d.Now)); err != nil {
			return err
		}
	}
	return nil
}

// call runs Process once, as the relay does, and applies what it did.
func (d *Driver) call() error {
	if d.Finished {
		return nil
	}
	d.Calls++
	in := d.In
	d.batch.Session, d.batch.Dir = d.Session, d.Dir
	d.batch.Reset(in, d.Out, d.EOF, d.Now)
	err := d.Stream.Process(&d.batch)
	d.Out = d.batch.Out()
	d.In = append(d.In[:0:0], in[d.batch.Taken(in):]...)
	d.Wake = d.batch.Wake()
	if d.batch.Finished() {
		d.Finished = true
	}
	return err
}

// Close tells the Stream its session has ended, with err (nil for both
// sides finishing), if it is a filter.Closer.
func (d *Driver) Close(err error) {
	if c, ok := d.Stream.(filter.Closer); ok {
		c.Close(err)
	}
}
