// Package pcap is the pcap filter: it records the bytes that pass its
// place in a route's filter chain to a capture file that Wireshark and
// tshark open, while passing every byte on unchanged.
//
// pier sees bytes, not packets, so the filter makes up the packets: each
// session becomes one TCP connection from the client's address to the
// upstream's (IPv4 when both are IPv4, IPv6 otherwise, an IPv4 address
// then written IPv4-mapped), with a handshake before the first bytes, the
// bytes in segments of at most 65000-byte packets, an ACK from the other
// side after each batch, a FIN when a direction ends and an RST when the
// session ends otherwise. Sequence numbers, acknowledgements and checksums
// are right, so tools follow the stream without complaint.
//
//	filters:
//	  - pcap: {file: /var/log/pier/db.pcapng, max_size: 100MB}
//
// On a UDP route each datagram is recorded as it is: one UDP packet
// between the same two addresses, with its checksums right (see
// Filter.Datagrams).
//
// The file is pcapng (raw IP, nanosecond timestamps). Each session's first
// packet in a file carries the comment "pier session <id>, route <name>",
// the id being the one in the access log. With per_session, each session
// gets a file of its own, named by the id: db.pcapng → db-<id>.pcapng.
//
// The packets are written on the filter's own goroutine (a
// filter.Output), and per-session files are created and closed there, so
// a slow or failing disk never stalls a session. What cannot wait (more
// than 4 MiB queued) is not recorded, and the file says so: a packet on a
// second interface (Wireshark's "exported PDU") carries the comment
// "pier: session 7: 12 packets (15000 bytes) not recorded", which tshark
// shows as frame.comment, in the place of the missing packets. A file
// that fails (a full disk) stops recording, with one line in the log,
// until a reload whose config writes to it: its next packet starts a new
// file (the failed one kept as .1 unless max_files is 0). A reload never
// waits for the disk, even when a write to the same file is stuck on it.
//
// The package also reads such files back (ReadFile, Reassemble), for
// tests of pier and of filters.
package pcap

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pierproxy/pier/filter"
)

func init() {
	filter.Register(filter.Spec{
		Name:    "pcap",
		New:     New,
		Short:   "record the bytes passing this point to a pcapng file, as TCP packets (UDP ones on udp routes)",
		FlagKey: "file",
		Options: []filter.OptionDoc{
			{Name: "file", Kind: filter.KindString, Required: true, Help: "the capture file; truncated when pier starts"},
			{Name: "per_session", Kind: filter.KindBool, Default: "false", Help: "true: a file per session instead, db.pcapng becoming db-<id>.pcapng"},
			{Name: "max_size", Kind: filter.KindSize, Default: "0", Help: "when a file would grow past this, it moves to .1 (.1 to .2, ...) and a new one starts (0: never)"},
			{Name: "max_files", Kind: filter.KindNumber, Default: "5", Help: "how many rotated files to keep, from 0 to 1000"},
		},
	})
}

// Filter records each session on its route. Its options:
//
//	file: db.pcapng      # required: where to write
//	per_session: false   # true: a file per session, db-<id>.pcapng
//	max_size: 0          # when a file would grow past this, start a new one
//	                     # (db.pcapng moves to db.pcapng.1, .1 to .2, ...); 0: never
//	max_files: 5         # how many such old files to keep
type Filter struct {
	path       string
	perSession bool
	maxSize    int64
	maxFiles   int
	// route is the route's file, shared by its sessions; nil per session.
	route *writer
	// out writes every block, off the relay loops.
	out *filter.Output

	mu     sync.Mutex
	open   map[*sessionFile]struct{} // per-session files open now
	closed bool                      // Close was called: open no more files

	closeOnce sync.Once
	closeErr  error
}

// New makes a pcap Filter from its options. It creates the route's file
// (truncating an old one) or, per session, checks that files can be
// created in its directory, so that a path that cannot work fails the
// config and not, silently, every session.
func New(o *filter.Options) (filter.Filter, error) {
	f := &Filter{
		path:       o.String("file", ""),
		perSession: o.Bool("per_session", false),
		maxSize:    o.Size("max_size", 0, 0, math.MaxInt64),
		maxFiles:   int(o.Int("max_files", 5, 0, 1000)),
	}
	if f.path == "" {
		o.Errorf("file", "required: the capture file to write")
	}
	if err := o.Err(); err != nil {
		return nil, err
	}
	var err error
	switch {
	case o.DryRun():
		// Only checking: nothing is created or truncated.
		if err = filter.CheckWritable(f.path); err == nil {
			return f, nil // never used: no goroutine for it
		}
	case f.perSession:
		err = checkDir(filepath.Dir(f.path))
	default:
		f.route, err = sharedWriter(f.path, f.maxSize, f.maxFiles)
	}
	if err != nil {
		o.Errorf("file", "%v", err)
		return nil, o.Err()
	}
	f.open = map[*sessionFile]struct{}{}
	var w io.Writer
	if f.route != nil {
		w = f.route
	}
	f.out = filter.NewOutput(w, filter.OutputConfig{Name: "pcap " + f.path, Log: o.Logger()})
	return f, nil
}

// Close writes out what is queued (for at most 2s) and closes the
// filter's files, once pier no longer gives it new sessions: the route's
// file, unless a newer Filter shares it, and every session's file still
// open. Sessions still draining go on unrecorded; their packets are
// counted, not written. Close returns within its 2s even on a disk that
// stalls: the files then close when the stalled write returns. Calling it
// again returns the first result.
func (f *Filter) Close() error {
	f.closeOnce.Do(func() { f.closeErr = f.close() })
	return f.closeErr
}

func (f *Filter) close() error {
	if f.out == nil {
		return nil
	}
	err := f.out.Close()
	if errors.Is(err, filter.ErrOutputTimeout) {
		// The Output's goroutine is stuck in a write that holds the
		// file's lock (or f.mu, creating a session's file): closing the
		// files here would wait for the disk. The goroutine closes them
		// when it is free.
		f.out.AfterStop(func() { f.closeFiles() })
		return err
	}
	if cerr := f.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

// Dropped returns what the capture could not record since it was built:
// the blocks its queue had no room for (Units: their packets' payload
// bytes), and any refused after Close.
func (f *Filter) Dropped() filter.Lost {
	if f.out == nil {
		return filter.Lost{} // a dry run's: it never writes
	}
	return f.out.Dropped()
}

// closeFiles closes the session files still open and gives up the
// route's file. No Output write is running: the Output has stopped.
func (f *Filter) closeFiles() error {
	f.mu.Lock()
	f.closed = true
	open := f.open
	f.open = nil
	f.mu.Unlock()
	for sf := range open {
		sf.Close() // a failure was logged by the Output as it happened
	}
	if f.route != nil {
		return releaseWriter(f.route)
	}
	return nil
}

// A sessionFile is a session's own capture file, with per_session. It is
// created at its first Write, on the Output's goroutine.
type sessionFile struct {
	f    *Filter
	path string
	w    *writer
	err  error
}

func (sf *sessionFile) Write(block []byte) (int, error) {
	if sf.w == nil && sf.err == nil {
		sf.f.mu.Lock()
		if sf.f.closed {
			sf.err = errClosed
		} else {
			sf.w, sf.err = create(sf.path, sf.f.maxSize, sf.f.maxFiles)
			if sf.err == nil {
				sf.f.open[sf] = struct{}{}
			}
		}
		sf.f.mu.Unlock()
	}
	if sf.err != nil {
		return 0, sf.err
	}
	return sf.w.Write(block)
}

func (sf *sessionFile) Flush() error {
	if sf.w == nil {
		return sf.err
	}
	return sf.w.Flush()
}

func (sf *sessionFile) Close() error {
	if sf.w == nil {
		return nil
	}
	sf.f.mu.Lock()
	delete(sf.f.open, sf)
	sf.f.mu.Unlock()
	return sf.w.Close()
}

// checkDir reports whether files can be created in dir, by creating one.
func checkDir(dir string) error {
	t, err := os.CreateTemp(dir, ".pier-pcap-*")
	if err != nil {
		return err
	}
	t.Close()
	return os.Remove(t.Name())
}

// sessionPath is the file for session id: the id goes before the
// extension.
func (f *Filter) sessionPath(id uint64) string {
	ext := filepath.Ext(f.path)
	return strings.TrimSuffix(f.path, ext) + "-" + strconv.FormatUint(id, 10) + ext
}

// Streams records both directions of every session.
func (f *Filter) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	c := newCapture(f, s)
	return &stream{c, client}, &stream{c, upstream}
}

// The two sides of a capture, indexes into its per-side arrays.
const (
	client   = 0
	upstream = 1
)

// A stream records one direction: the packets its side sends.
type stream struct {
	c    *capture
	side int
}

func (s *stream) Process(b *filter.Batch) error {
	s.c.record(s.side, b.In, b.EOF, b.Now)
	b.Pass(len(b.In))
	return nil
}

func (s *stream) Close(err error) { s.c.close(s.side, err) }

// A capture is one session's TCP connection, as recorded. Both its
// streams use it, but pier never runs them at once for a session (they
// are on the session's relay loop), so it needs no lock of its own.
type capture struct {
	f       *Filter
	s       *filter.Session
	track   filter.Track // the session's account with the Output
	file    *sessionFile // the session's own file, with per_session
	last    atomic.Int64 // the latest packet's time, for a note
	addr    [2]netip.AddrPort
	next    [2]uint32 // the sequence number each side sends next
	ipID    [2]uint16
	fin     [2]bool
	closed  [2]bool // the side's stream was told the session ended
	mss     int
	started bool
	reset   bool
	now     time.Time // the latest time a stream saw, for Close
	comment string    // for the next packet, then ""
}

func newCapture(f *Filter, s *filter.Session) *capture {
	c := &capture{f: f, s: s, now: s.Start}
	if f.perSession {
		c.file = &sessionFile{f: f, path: f.sessionPath(s.ID)}
		c.track.To = c.file
	}
	c.track.Note = c.note
	c.addr[client], c.addr[upstream] = endpoints(s.Client, s.Upstream)
	c.mss = mss(c.addr[client].Addr(), c.addr[upstream].Addr())
	// Initial sequence numbers from the id: the same session gives the
	// same file, and different sessions different numbers.
	x := mix(s.ID)
	c.next[client], c.next[upstream] = uint32(x), uint32(x>>32)
	return c
}

// endpoints puts both addresses in one family: IPv4 if both are,
// otherwise IPv6 with IPv4 addresses mapped. An address pier did not
// know is written as unspecified.
func endpoints(a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	if !x.IsValid() {
		x = netip.IPv4Unspecified()
	}
	if !y.IsValid() {
		y = netip.IPv4Unspecified()
	}
	if !x.Is4() || !y.Is4() {
		x, y = netip.AddrFrom16(x.As16()), netip.AddrFrom16(y.As16())
	}
	return netip.AddrPortFrom(x, a.Port()), netip.AddrPortFrom(y, b.Port())
}

// mix is SplitMix64's finalizer: it spreads an id's bits over all 64.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// start writes the handshake, once, before anything else of the session.
func (c *capture) start() {
	if c.started {
		return
	}
	c.started = true
	c.comment = fmt.Sprintf("pier session %d, route %s", c.s.ID, c.s.Route)
	opts := synOptions(c.mss)
	c.send(client, SYN, opts, nil)
	c.send(upstream, SYN|ACK, opts, nil)
	c.send(client, ACK, nil, nil)
}

// record writes the packets for bytes side sent, then the end of its
// stream if eof, and the other side's acknowledgement.
func (c *capture) record(side int, data []byte, eof bool, now time.Time) {
	c.now = now
	c.start()
	if c.reset || c.fin[side] || len(data) == 0 && !eof {
		return
	}
	for len(data) > 0 {
		n := min(len(data), c.mss)
		flags := ACK
		if n == len(data) {
			flags |= PSH // the end of what arrived together
		}
		c.send(side, flags, nil, data[:n])
		data = data[n:]
	}
	if eof {
		c.send(side, FIN|ACK, nil, nil)
		c.fin[side] = true
	}
	c.send(1-side, ACK, nil, nil)
}

// close ends the connection when the session ends with err: an RST for
// an error (ErrClose ends it with FINs, as pier does), nothing more if
// both sides have sent their FIN. The file is flushed, or closed if the
// session's own, once both streams are closed.
func (c *capture) close(side int, err error) {
	if c.closed[side] {
		return
	}
	c.closed[side] = true
	c.start()
	switch {
	case err == nil || c.reset || c.fin[client] && c.fin[upstream]:
	case errors.Is(err, filter.ErrClose):
		for _, s := range [...]int{client, upstream} {
			if !c.fin[s] {
				c.record(s, nil, true, c.now)
			}
		}
	default:
		s := client
		if c.fin[client] {
			s = upstream
		}
		c.send(s, RST|ACK, nil, nil)
		c.reset = true
	}
	if !c.closed[1-side] || c.f.out == nil {
		return
	}
	// What the session lost and has not yet said is said; its own file
	// is closed after its last packet. (A file that cannot be created
	// fails its writes: the session goes on unrecorded.)
	var file io.Closer
	if c.file != nil {
		file = c.file
	}
	c.f.out.Done(&c.track, file)
}

// note is the block that stands for the packets the session lost: a
// packet of its own, on the notes interface, with a comment.
func (c *capture) note(dst []byte, l filter.Lost) []byte {
	text := fmt.Sprintf("pier: session %d: %d packets (%d bytes) not recorded", c.s.ID, l.Writes, l.Units)
	return appendNote(dst, time.Unix(0, c.last.Load()), text)
}

// send writes one packet from side to the other, and moves side's
// sequence number past it.
func (c *capture) send(side int, flags Flags, opts, payload []byte) {
	p := Packet{
		Time:    c.now,
		Comment: c.comment,
		Src:     c.addr[side],
		Dst:     c.addr[1-side],
		Seq:     c.next[side],
		Flags:   flags,
		Window:  0xffff,
		Options: opts,
		Payload: payload,
	}
	if flags&ACK != 0 {
		p.Ack = c.next[1-side]
	}
	c.comment = ""
	c.next[side] += uint32(len(payload))
	if flags&(SYN|FIN) != 0 {
		c.next[side]++ // SYN and FIN each take a sequence number
	}
	c.ipID[side]++
	if c.f.out != nil {
		b := blocks.Get().(*[]byte)
		*b = appendEPB((*b)[:0], &p, c.ipID[side])
		c.last.Store(c.now.UnixNano())
		c.f.out.Write(&c.track, *b, int64(len(payload)))
		blocks.Put(b)
	}
}

// blocks holds buffers for building blocks in: a block is up to 64 KiB,
// too much for each of thousands of sessions to keep.
var blocks = sync.Pool{New: func() any { return new([]byte) }}

var (
	_ filter.Filter  = (*Filter)(nil)
	_ io.Closer      = (*Filter)(nil)
	_ filter.Dropper = (*Filter)(nil)
	_ filter.Stream  = (*stream)(nil)
	_ filter.Closer  = (*stream)(nil)
)
