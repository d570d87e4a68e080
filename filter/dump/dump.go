// Package dump is pier's `print data`: the line the original port forwarder
// used to show what passed through it, made readable. It registers the
// filter "dump", which forwards every byte unchanged and writes each chunk
// it sees, as it passes, as one block: a header line with the session id
// (the id of the session's access log line), the direction, the time and
// the size, then the bytes, as `hexdump -C` shows them or as escaped text:
//
//	session 7 client→upstream 2026-11-25T06:30:00.123456Z 18 bytes
//	00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|
//	00000010  0d 0a                                             |..|
//	session 7 client→upstream 2026-11-25T06:30:00.125000Z EOF after 18 bytes
//	session 7 2026-11-25T06:30:00.127311Z ended
//
// On a route:
//
//	filters:
//	  - dump: {format: text, to: /var/log/pier/dump.log, max_bytes: 256}
//
// or from the command line, `pier forward --dump hex :9090 db:5432`.
//
// Hex offsets count from the start of the direction's stream, so they run
// on from one chunk to the next. In text format printable ASCII and
// printable UTF-8 are shown as they are, `\n` `\r` `\t` `\\` as escapes
// (`\n` then a real line break) and every other byte as `\xHH`; the text
// is indented by two spaces, so that no byte sent can pass for a header.
//
// Blocks from many sessions go to one writer; each is written whole, in
// one Write (with the others of the same moment, up to 64 KiB), so they
// never interleave. They are written on the filter's own goroutine (a
// filter.Output), never on the relay loop, at most a few ms after they
// pass: a terminal or pipe that stops reading does not stall a session. What the output has
// no room for (4 MiB waiting) is left out and said, in its place:
//
//	session 7 client→upstream … 18000 bytes not shown (9 blocks dropped: the output fell behind)
package dump

import (
	"errors"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"github.com/pierproxy/pier/filter"
)

func init() {
	filter.Register(filter.Spec{Name: "dump", New: newDump, FlagKey: "format",
		Short: "write the bytes each way as a hex dump or escaped text",
		Options: []filter.OptionDoc{
			{Name: "format", Kind: filter.KindEnum, Default: "hex", Choices: []string{"hex", "text"},
				Help: "hex: offset, hex and ASCII, like hexdump -C; text: the bytes as text, with escapes"},
			{Name: "to", Kind: filter.KindString, Default: "stdout", Help: "stdout, stderr or a file path (appended to)"},
			filter.DirectionOption(filter.Both, "which bytes to dump"),
			{Name: "max_bytes", Kind: filter.KindSize, Default: "0", Help: "dump at most this much of each chunk (0: all)"},
		}})
}

// dump is one configured dump filter.
type dump struct {
	out  *filter.Output
	w    io.Writer        // where blocks go: stdout, stderr or file
	file *os.File         // the file, nil for stdout and stderr
	text bool             // format: text, not hex
	dir  filter.Direction // the directions dumped
	max  int64            // the most bytes of a chunk dumped; 0 means all
	// now is the clock for the line written when a session ends, which is
	// outside any Process call and so has no Batch.Now; tests replace it.
	now func() time.Time

	closeOnce sync.Once
	closeErr  error // Close's result, for every call
}

// newDump reads the options:
//
//	format     hex (default) or text
//	to         stdout (default), stderr, or a file path, appended to
//	direction  upstream, client or both (default)
//	max_bytes  the most bytes of each chunk to show (default 0: all)
func newDump(o *filter.Options) (filter.Filter, error) {
	d := &dump{
		text: o.Enum("format", "hex", "hex", "text") == "text",
		dir:  o.Direction("direction", filter.Both),
		max:  o.Size("max_bytes", 0, 0, math.MaxInt64),
		now:  time.Now,
	}
	var file *os.File
	w := os.Stdout // pier logs to stderr: a dump on stdout can be kept apart
	switch to := o.String("to", "stdout"); to {
	case "stdout":
	case "stderr":
		w = os.Stderr
	case "":
		o.Errorf("to", "want stdout, stderr or a file path")
	default:
		if o.DryRun() {
			// Only checking: see that the file could be made, without
			// making it.
			if err := filter.CheckWritable(to); err != nil {
				o.Errorf("to", "cannot open %q for writing: %v", to, err)
			}
			break
		}
		// Opened now, so that a path pier cannot write to is a config
		// error rather than a silent loss at the first byte. O_APPEND
		// makes every Write land whole at the end of the file even while
		// another filter (on another route, or the one a reload replaced)
		// writes to the same file.
		f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			o.Errorf("to", "cannot open %q for writing: %v", to, err)
			break
		}
		file, w = f, f
	}
	if err := o.Err(); err != nil {
		if file != nil {
			file.Close()
		}
		return nil, err
	}
	if o.DryRun() {
		return d, nil // never used: no goroutine for it
	}
	d.w, d.file = w, file
	d.out = filter.NewOutput(&gatherWriter{w: w}, filter.OutputConfig{Name: "dump", Log: o.Logger()})
	return d, nil
}

// Close writes out what is queued (for at most 2s) and closes the file,
// once pier no longer gives the filter new sessions. Streams of sessions
// still draining keep passing their bytes; what they dump from now on is
// counted, not written. Calling it again (a second Shutdown) returns the
// first result and closes nothing twice.
func (d *dump) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.close() })
	return d.closeErr
}

func (d *dump) close() error {
	if d.out == nil {
		return nil
	}
	err := d.out.Close()
	if d.file != nil {
		// An Output stuck in a write to the file does not hold this
		// Close up: os.File.Close of a regular file does not wait for
		// a write in progress.
		if cerr := d.file.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Dropped returns what the dump could not write since it was built: the
// blocks its queue had no room for (Units: their session bytes), and any
// refused after Close.
func (d *dump) Dropped() filter.Lost {
	if d.out == nil {
		return filter.Lost{} // a dry run's: it never writes
	}
	return d.out.Dropped()
}

// Streams dumps the directions asked for. The two Streams share the
// session's end, so that it is written once, after both have closed.
func (d *dump) Streams(s *filter.Session) (toUpstream, toClient filter.Stream) {
	end := &sessionEnd{d: d, id: s.ID}
	if d.dir&filter.ToUpstream != 0 {
		end.open++
		toUpstream = d.newStream(end, filter.ToUpstream)
	}
	if d.dir&filter.ToClient != 0 {
		end.open++
		toClient = d.newStream(end, filter.ToClient)
	}
	return toUpstream, toClient
}

func (d *dump) newStream(end *sessionEnd, dir filter.Direction) *stream {
	s := &stream{d: d, end: end, prefix: appendPrefix(nil, end.id, dir)}
	s.track.Note = func(dst []byte, l filter.Lost) []byte { return appendLost(dst, s.prefix, l) }
	end.tracks = append(end.tracks, &s.track)
	return s
}

// A stream dumps one direction of one session.
type stream struct {
	d      *dump
	end    *sessionEnd
	prefix []byte       // "session 7 client→upstream ", the start of every line
	off    int64        // bytes of this direction seen so far
	track  filter.Track // the direction's account with the output
}

// blocks holds the buffers blocks are formatted in. A block is about five
// times its chunk in hex (max_bytes bounds it), over 1 MiB for a 256 KiB
// chunk: too much for each direction of thousands of mostly idle sessions
// to keep, and Output.Write copies it, so a buffer is needed only during
// one Process. Shared, a few buffers serve every stream, and a steady
// stream of chunks allocates nothing.
var blocks = sync.Pool{New: func() any { return new([]byte) }}

// Process passes every byte on and dumps it. It leaves nothing in b.In, so
// each call's b.In is exactly the bytes that arrived since the last one.
func (s *stream) Process(b *filter.Batch) error {
	n := len(b.In)
	if n == 0 && !b.EOF {
		return nil // called after room freed up downstream: nothing new
	}
	pooled := blocks.Get().(*[]byte)
	buf := (*pooled)[:0]
	if n > 0 {
		shown := b.In
		if s.d.max > 0 && int64(n) > s.d.max {
			shown = shown[:s.d.max]
		}
		buf = appendHeader(buf, s.prefix, b.Now, n)
		if s.d.text {
			buf = appendText(buf, shown)
		} else {
			buf = appendHex(buf, shown, s.off)
		}
		if more := n - len(shown); more > 0 {
			buf = appendMore(buf, more)
		}
		s.off += int64(n)
	}
	if b.EOF {
		buf = appendEOF(buf, s.prefix, b.Now, s.off)
	}
	b.Pass(n)
	s.d.out.Write(&s.track, buf, int64(n))
	*pooled = buf
	blocks.Put(pooled)
	return nil
}

// Close writes the session's end once both its streams have closed.
func (s *stream) Close(err error) { s.end.close(err) }

// A sessionEnd is what a session's streams share to write its end once.
type sessionEnd struct {
	d      *dump
	id     uint64
	tracks []*filter.Track // the streams'

	mu   sync.Mutex // pier closes the streams one after the other; this is for any other caller
	open int        // streams not yet closed
	err  error      // the first error a Close was given
}

func (e *sessionEnd) close(err error) {
	e.mu.Lock()
	e.open--
	if e.err == nil {
		e.err = err
	}
	last, err := e.open == 0, e.err
	e.mu.Unlock()
	if !last {
		return
	}
	// What the streams lost and have not yet said goes before the end.
	for _, t := range e.tracks {
		e.d.out.Done(t, nil)
	}
	e.d.out.Write(e.tracks[len(e.tracks)-1], appendEnd(nil, e.id, e.d.now(), err), 0)
	e.d.out.Done(e.tracks[len(e.tracks)-1], nil)
}

var (
	_ filter.Filter  = (*dump)(nil)
	_ io.Closer      = (*dump)(nil)
	_ filter.Dropper = (*dump)(nil)
	_ filter.Stream  = (*stream)(nil)
	_ filter.Closer  = (*stream)(nil)
)
