package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// The pcapng blocks and options pier writes (draft-ietf-opsawg-pcapng):
// each file is one section, a Section Header Block and one Interface
// Description Block for raw IP packets with nanosecond timestamps, then an
// Enhanced Packet Block per packet, little-endian.
const (
	blockSHB = 0x0a0d0d0a
	blockIDB = 1
	blockEPB = 6

	byteOrderMagic = 0x1a2b3c4d
	linkTypeRaw    = 101 // LINKTYPE_RAW: the packet starts with its IP header

	// linkTypeUpperPDU is the second interface's: Wireshark's "exported
	// PDU", which carries pier's notes (packets not recorded) as a
	// packet comment that tshark shows as frame.comment, on a packet of
	// no protocol, apart from every TCP stream.
	linkTypeUpperPDU = 252
	noteInterface    = 1

	optEnd      = 0
	optComment  = 1
	optIfName   = 2 // in the IDB
	optUserAppl = 4 // in the SHB: the application that wrote the file
	optTSResol  = 9 // in the IDB: timestamp units, 10^-value seconds
	nanoseconds = 9
)

var le = binary.LittleEndian

// header starts every file pier writes.
var header = appendHeader(nil)

func appendHeader(b []byte) []byte {
	start := len(b)
	b = beginBlock(b, blockSHB)
	b = le.AppendUint32(b, byteOrderMagic)
	b = le.AppendUint16(b, 1) // version 1.0
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, ^uint64(0)) // section length not given
	b = appendOption(b, start, optUserAppl, "pier")
	b = appendOption(b, start, optEnd, "")
	b = endBlock(b, start)

	start = len(b)
	b = beginBlock(b, blockIDB)
	b = le.AppendUint16(b, linkTypeRaw)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0) // no snap length: every packet whole
	b = appendOption(b, start, optTSResol, string([]byte{nanoseconds}))
	b = appendOption(b, start, optEnd, "")
	b = endBlock(b, start)

	start = len(b)
	b = beginBlock(b, blockIDB)
	b = le.AppendUint16(b, linkTypeUpperPDU)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0)
	b = appendOption(b, start, optIfName, "pier notes")
	b = appendOption(b, start, optTSResol, string([]byte{nanoseconds}))
	b = appendOption(b, start, optEnd, "")
	return endBlock(b, start)
}

// notePDU is the packet a note is the comment of: an exported PDU with
// only its tags, "dissect as data" and the end.
var notePDU = []byte{0, 12, 0, 4, 'd', 'a', 't', 'a', 0, 0, 0, 0}

// appendNote appends a packet block on the notes interface with comment
// text, at time t.
func appendNote(b []byte, t time.Time, text string) []byte {
	start := len(b)
	b = beginBlock(b, blockEPB)
	ts := nanos(t)
	b = le.AppendUint32(b, noteInterface)
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(notePDU)))
	b = le.AppendUint32(b, uint32(len(notePDU)))
	b = append(b, notePDU...)
	b = pad(b, start)
	b = appendOption(b, start, optComment, text)
	b = appendOption(b, start, optEnd, "")
	return endBlock(b, start)
}

// appendEPB appends p as an Enhanced Packet Block on interface 0.
func appendEPB(b []byte, p *Packet, id uint16) []byte {
	start := len(b)
	b = beginBlock(b, blockEPB)
	ts := nanos(p.Time)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	lens := len(b)
	b = le.AppendUint64(b, 0) // captured and original length, below
	ip := len(b)
	b = appendIP(b, p, id)
	n := uint32(len(b) - ip)
	le.PutUint32(b[lens:], n)
	le.PutUint32(b[lens+4:], n)
	b = pad(b, start)
	if p.Comment != "" {
		b = appendOption(b, start, optComment, p.Comment)
		b = appendOption(b, start, optEnd, "")
	}
	return endBlock(b, start)
}

// nanos is t in nanoseconds since 1970, the timestamp in a block; times
// before 1970 are written as 1970.
func nanos(t time.Time) uint64 {
	if t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())*1e9 + uint64(t.Nanosecond())
}

func beginBlock(b []byte, typ uint32) []byte {
	b = le.AppendUint32(b, typ)
	return le.AppendUint32(b, 0) // total length, set by endBlock
}

// endBlock ends the block begun at start with its total length, which
// pcapng puts both first and last so that a reader can go either way.
func endBlock(b []byte, start int) []byte {
	n := uint32(len(b) - start + 4)
	le.PutUint32(b[start+4:], n)
	return le.AppendUint32(b, n)
}

// appendOption appends an option to the block begun at start. A value
// longer than an option can say (64 KiB) is cut short.
func appendOption(b []byte, start int, code uint16, v string) []byte {
	v = v[:min(len(v), 0xffff)]
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return pad(b, start)
}

// pad pads the block begun at start to a multiple of 4 bytes.
func pad(b []byte, start int) []byte {
	for (len(b)-start)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// bufSize is how much a file's writer holds before it writes. The
// filter's Output flushes it whenever it has written all it was given.
const bufSize = 64 << 10

// errClosed stops writes to a session's file after the session ended.
var errClosed = errors.New("pcap: file closed")

// A writer appends blocks to one capture file, each Write one block
// whole, and rotates the file when it would grow past its maxSize. It is
// called from filters' Output goroutines only, never from a relay loop.
// The first error stops it (the Output logs it, once): a capture with a
// hole is worse than one that stops.
//
// mu is held through disk I/O, for as long as a stalled disk takes, so
// what a new Filter sharing the writer changes (sharedWriter, on a
// reload) is kept outside it: the limits are swapped whole, a restart
// after an error is asked for and done by the next Write.
type writer struct {
	mu   sync.Mutex
	path string
	file *os.File
	buf  *bufio.Writer
	size int64 // bytes in the current file, buffered or not
	err  error
	refs int // Filters sharing it (see sharedWriter); guarded by sharedMu

	limits atomic.Pointer[limits] // read by Write, swapped by sharedWriter
	// failed is set while err holds a failure (not errClosed), so that
	// sharedWriter can see it without mu; restartAsked is sharedWriter's
	// request to start a new file, which the next Write carries out.
	failed       atomic.Bool
	restartAsked atomic.Bool
}

// limits are a writer's rotation settings, the latest Filter's.
type limits struct {
	maxSize  int64 // 0: no rotation
	maxFiles int   // rotated files kept: path.1 ... path.<maxFiles>
}

// create creates (or truncates) the file at path and writes its header
// through, so that a file that takes no bytes is found at once.
func create(path string, maxSize int64, maxFiles int) (*writer, error) {
	w := &writer{path: path}
	w.limits.Store(&limits{maxSize: maxSize, maxFiles: maxFiles})
	if err := w.open(); err != nil {
		return nil, err
	}
	if err := w.buf.Flush(); err != nil {
		w.file.Close()
		return nil, err
	}
	return w, nil
}

// open starts a new file, discarding anything buffered for the old one.
func (w *writer) open() error {
	// 0600: a capture holds whatever the sessions carried.
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w.file, w.size = f, 0
	if w.buf == nil {
		w.buf = bufio.NewWriterSize(f, bufSize)
	} else {
		w.buf.Reset(f)
	}
	return w.put(header)
}

func (w *writer) put(p []byte) error {
	n, err := w.buf.Write(p)
	w.size += int64(n)
	return err
}

// Write appends one block, rotating first if the block would take the
// file past maxSize (a file always takes at least one block). A writer
// stopped by an error starts again on a new file first if a new Filter
// asked it to (sharedWriter).
func (w *writer) Write(block []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.restartAsked.Swap(false) && w.failed.Load() {
		w.file.Close() // it failed already: its error says nothing new
		w.setErr(w.restart(w.limits.Load().maxFiles))
	}
	if w.err != nil {
		return 0, w.err
	}
	l := w.limits.Load()
	if l.maxSize > 0 && w.size > int64(len(header)) && w.size+int64(len(block)) > l.maxSize {
		if w.setErr(w.rotate(l.maxFiles)); w.err != nil {
			return 0, w.err
		}
	}
	if w.setErr(w.put(block)); w.err != nil {
		return 0, w.err
	}
	return len(block), nil
}

// setErr makes err (nil or a failure) the writer's state. mu is held.
func (w *writer) setErr(err error) {
	w.err = err
	w.failed.Store(err != nil)
}

// Flush writes out what is buffered.
func (w *writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.setErr(w.buf.Flush())
	}
	if errors.Is(w.err, errClosed) {
		return nil
	}
	return w.err
}

// Close flushes and closes the file; nothing more is written.
func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(w.err, errClosed) {
		return nil
	}
	err := w.err
	if err == nil {
		err = w.buf.Flush()
	}
	if cerr := w.file.Close(); err == nil {
		err = cerr
	}
	w.err = errClosed
	w.failed.Store(false) // closed, not failed: nothing starts it again
	return err
}

// rotate ends the current file and starts a new one, keeping maxFiles
// old ones.
func (w *writer) rotate(maxFiles int) error {
	err := w.buf.Flush()
	if cerr := w.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return w.restart(maxFiles)
}

// restart shifts the rotated files up (path.1 to path.2, ...; the one
// past maxFiles is overwritten), moves path to path.1, and opens a new
// path.
func (w *writer) restart(maxFiles int) error {
	for i := maxFiles; i >= 1; i-- {
		from := w.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", w.path, i-1)
		}
		err := os.Rename(from, fmt.Sprintf("%s.%d", w.path, i))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return w.open()
}

// Filters writing to the same file (a route's old and new filters across
// a config reload, or two routes) share its writer, so that neither
// truncates the file under the other. The file closes when the last of
// them is closed (releaseWriter): a reload, which makes the new Filter
// before it closes the old, keeps it open and appends to it.
var (
	sharedMu sync.Mutex
	shared   = map[string]*writer{}
)

// sharedWriter returns the writer for path, creating the file if no
// Filter writes to it yet. The latest Filter's maxSize and maxFiles win;
// a writer stopped by an error starts again on a new file, at its next
// Write. It never takes a shared writer's mu: an old Filter's write may
// hold it for as long as a stalled disk takes, and a reload must not
// wait for that.
func sharedWriter(path string, maxSize int64, maxFiles int) (*writer, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	w := shared[abs]
	if w == nil {
		w, err = create(abs, maxSize, maxFiles)
		if err != nil {
			return nil, err
		}
		w.refs = 1
		shared[abs] = w
		return w, nil
	}
	w.limits.Store(&limits{maxSize: maxSize, maxFiles: maxFiles})
	if w.failed.Load() {
		w.restartAsked.Store(true)
	}
	w.refs++
	return w, nil
}

// releaseWriter gives up one Filter's share of w, closing its file when
// no Filter writes to it any more.
func releaseWriter(w *writer) error {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	// refs is sharedMu's, not w.mu's: another Filter sharing w may be
	// stuck in a write, holding w.mu. Only the last one out takes w.mu,
	// when no Output writes to w any more; it closes w before a new
	// Filter may create the file again.
	w.refs--
	if w.refs > 0 {
		return nil
	}
	for k, v := range shared {
		if v == w {
			delete(shared, k)
		}
	}
	return w.Close()
}
