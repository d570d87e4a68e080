package dump

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// ended is the time the test clock gives the line a session's end writes.
var ended = filtertest.Epoch.Add(time.Hour)

// newTestDump makes a dump filter from opts, writing to a new file unless
// opts say where, and returns it with the file's path.
func newTestDump(t testing.TB, opts map[string]string) (*dump, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dump.log")
	vals := map[string]filter.Value{"to": {Text: path}}
	for k, v := range opts {
		vals[k] = filter.Value{Text: v}
	}
	f, err := newDump(filter.NewOptions("dump", vals, 0, 0))
	if err != nil {
		t.Fatalf("newDump(%v): %v", opts, err)
	}
	d := f.(*dump)
	d.now = func() time.Time { return ended }
	t.Cleanup(func() { d.Close() })
	return d, path
}

// readDump waits for d's output to be written, and reads the file at path.
func readDump(t *testing.T, d *dump, path string) string {
	t.Helper()
	if !d.out.Sync(10 * time.Second) {
		t.Fatal("dump output not written within 10s")
	}
	return readFile(t, path)
}

// drivers returns a driver for each direction d dumps of a session with
// id (nil for one it leaves alone).
func drivers(d *dump, id uint64) (up, down *filtertest.Driver) {
	sess := filtertest.New(nil).Session
	sess.ID = id
	u, c := d.Streams(sess)
	mk := func(s filter.Stream, dir filter.Direction) *filtertest.Driver {
		if s == nil {
			return nil
		}
		dr := filtertest.New(s)
		dr.Session, dr.Dir = sess, dir
		return dr
	}
	return mk(u, filter.ToUpstream), mk(c, filter.ToClient)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBlocksHaveHeaderHexEOFAndEnd(t *testing.T) {
	d, path := newTestDump(t, nil)
	up, down := drivers(d, 7)
	up.Now = filtertest.Epoch.Add(123456 * time.Microsecond)
	must(t, up.Write([]byte(request[:17])))
	down.Now = up.Now.Add(time.Millisecond)
	must(t, down.Write([]byte("ok")))
	up.Now = up.Now.Add(2 * time.Millisecond)
	must(t, up.Write([]byte(request[17:]))) // offsets go on from 0x11
	must(t, up.CloseWrite())
	must(t, down.CloseWrite())
	up.Close(nil)
	if strings.Contains(readDump(t, d, path), "ended") {
		t.Fatal("session end written before both streams closed")
	}
	down.Close(nil)

	want := "" +
		"session 7 client→upstream 2026-01-02T03:04:05.123456Z 17 bytes\n" +
		"00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n" +
		"00000010  48                                                |H|\n" +
		"session 7 upstream→client 2026-01-02T03:04:05.124456Z 2 bytes\n" +
		"00000000  6f 6b                                             |ok|\n" +
		"session 7 client→upstream 2026-01-02T03:04:05.125456Z 16 bytes\n" +
		"00000011  6f 73 74 3a 20 70 69 65  72 0d 0a 00 01 7f 80 ff  |ost: pier.......|\n" +
		"session 7 client→upstream 2026-01-02T03:04:05.125456Z EOF after 33 bytes\n" +
		"session 7 upstream→client 2026-01-02T03:04:05.124456Z EOF after 2 bytes\n" +
		"session 7 2026-01-02T04:04:05.000000Z ended\n"
	if diff := cmp.Diff(want, readDump(t, d, path)); diff != "" {
		t.Errorf("dump (-want +got):\n%s", diff)
	}
}

func TestBytesPassUnchangedAndStreamFinishes(t *testing.T) {
	for _, format := range []string{"hex", "text"} {
		t.Run(format, func(t *testing.T) {
			d, _ := newTestDump(t, map[string]string{"format": format, "max_bytes": "3"})
			up, _ := drivers(d, 1)
			var sent []byte
			for i := range 50 {
				p := bytes.Repeat([]byte{byte(i)}, i*37%200+1)
				sent = append(sent, p...)
				must(t, up.Write(p))
				if len(up.In) != 0 {
					t.Fatalf("stream held %d bytes", len(up.In))
				}
			}
			must(t, up.CloseWrite())
			if !bytes.Equal(up.Out, sent) {
				t.Errorf("forwarded %d bytes differing from the %d sent", len(up.Out), len(sent))
			}
			if !up.Finished || !up.Wake.IsZero() {
				t.Errorf("after EOF: finished %v, wake %v; want finished, no wake", up.Finished, up.Wake)
			}
		})
	}
}

func TestEndLineCarriesError(t *testing.T) {
	d, path := newTestDump(t, nil)
	up, down := drivers(d, 3)
	must(t, up.Write([]byte("x")))
	up.Close(errors.New("connection reset by peer"))
	down.Close(nil)
	want := "session 3 2026-01-02T04:04:05.000000Z ended: connection reset by peer\n"
	if got := readDump(t, d, path); !strings.HasSuffix(got, want) || strings.Count(got, "ended") != 1 {
		t.Errorf("dump:\n%s\nwant it to end with one line %q", got, want)
	}
}

func TestDirectionOption(t *testing.T) {
	for _, tt := range []struct {
		dir      string
		up, down bool
	}{{"upstream", true, false}, {"client", false, true}, {"both", true, true}} {
		t.Run(tt.dir, func(t *testing.T) {
			d, path := newTestDump(t, map[string]string{"direction": tt.dir})
			u, c := d.Streams(filtertest.New(nil).Session)
			if (u != nil) != tt.up || (c != nil) != tt.down {
				t.Fatalf("Streams = %v, %v; want upstream %v, client %v", u, c, tt.up, tt.down)
			}
			// The session's end comes when the streams there are have closed.
			for _, s := range []filter.Stream{u, c} {
				if s != nil {
					s.(filter.Closer).Close(nil)
				}
			}
			if got := readDump(t, d, path); strings.Count(got, " ended\n") != 1 {
				t.Errorf("dump %q: want one end line", got)
			}
		})
	}
}

func TestMaxBytes(t *testing.T) {
	d, path := newTestDump(t, map[string]string{"max_bytes": "16"})
	up, _ := drivers(d, 2)
	must(t, up.Write([]byte(request)))
	must(t, up.Write([]byte("x")))
	want := "" +
		"session 2 client→upstream 2026-01-02T03:04:05.000000Z 33 bytes\n" +
		"00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n" +
		"... 17 more bytes\n" +
		"session 2 client→upstream 2026-01-02T03:04:05.000000Z 1 byte\n" +
		"00000021  78                                                |x|\n"
	if diff := cmp.Diff(want, readDump(t, d, path)); diff != "" {
		t.Errorf("dump (-want +got):\n%s", diff)
	}
	if string(up.Out) != request+"x" {
		t.Errorf("forwarded %q, want every byte", up.Out)
	}
}

func TestTextFormat(t *testing.T) {
	d, path := newTestDump(t, map[string]string{"format": "text", "max_bytes": "20"})
	_, down := drivers(d, 4)
	must(t, down.Write([]byte("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n")))
	must(t, down.Write([]byte("héllo\x00")))
	want := "" +
		"session 4 upstream→client 2026-01-02T03:04:05.000000Z 30 bytes\n" +
		"  HTTP/1.1 200 OK\\r\\n\n" +
		"  Ser\n" +
		"... 10 more bytes\n" +
		"session 4 upstream→client 2026-01-02T03:04:05.000000Z 7 bytes\n" +
		"  héllo\\x00\n"
	if diff := cmp.Diff(want, readDump(t, d, path)); diff != "" {
		t.Errorf("dump (-want +got):\n%s", diff)
	}
}

func TestFileIsAppendedTo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.log")
	must(t, os.WriteFile(path, []byte("before\n"), 0o600))
	d, _ := newTestDump(t, map[string]string{"to": path})
	up, _ := drivers(d, 1)
	must(t, up.Write([]byte("a")))
	if got := readDump(t, d, path); !strings.HasPrefix(got, "before\nsession 1 ") {
		t.Errorf("file = %q, want the dump after what was there", got)
	}

	fresh := filepath.Join(t.TempDir(), "new.log")
	newTestDump(t, map[string]string{"to": fresh})
	fi, err := os.Stat(fresh)
	if err != nil {
		t.Fatalf("file not created at config time: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&^0o644 != 0 {
		t.Errorf("mode %v, want at most 0644", perm)
	}
}

func TestStandardStreams(t *testing.T) {
	for _, tt := range []struct {
		to   string
		want *os.File
	}{{"", os.Stdout}, {"stdout", os.Stdout}, {"stderr", os.Stderr}} {
		vals := map[string]filter.Value{}
		if tt.to != "" {
			vals["to"] = filter.Value{Text: tt.to}
		}
		f, err := newDump(filter.NewOptions("dump", vals, 0, 0))
		if err != nil {
			t.Fatalf("to %q: %v", tt.to, err)
		}
		if got := f.(*dump).w; got != tt.want {
			t.Errorf("to %q writes to %v, want %v", tt.to, got, tt.want.Name())
		}
		must(t, f.(*dump).Close())
	}
}

func TestOptionErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		vals map[string]string
		key  string
	}{
		{"bad format", map[string]string{"format": "octal"}, "format"},
		{"bad direction", map[string]string{"direction": "sideways"}, "direction"},
		{"bad max_bytes", map[string]string{"max_bytes": "-1"}, "max_bytes"},
		{"empty to", map[string]string{"to": ""}, "to"},
		{"missing directory", map[string]string{"to": filepath.Join(dir, "no", "dump.log")}, "to"},
		{"to a directory", map[string]string{"to": dir}, "to"},
		{"unknown option", map[string]string{"colour": "yes"}, "colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := map[string]filter.Value{}
			for k, v := range tt.vals {
				vals[k] = filter.Value{Text: v, Line: 3, Col: 5}
			}
			_, err := newDump(filter.NewOptions("dump", vals, 1, 1))
			var errs filter.OptionErrors
			if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != tt.key {
				t.Fatalf("newDump(%v) = %v; want one error about %q", tt.vals, err, tt.key)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	spec, ok := filter.Lookup("dump")
	if !ok || spec.FlagKey != "format" || spec.Short == "" || strings.Contains(spec.Short, "\n") {
		t.Fatalf("Lookup(dump) = %+v, %v; want FlagKey format and a one-line Short", spec, ok)
	}
	// `pier forward --dump text`: the bare value is the format.
	f, err := spec.New(filter.NewOptions("dump", map[string]filter.Value{"format": {Text: "text"}}, 0, 0))
	if err != nil || !f.(*dump).text {
		t.Errorf("New(format=text) = %v, %v; want a text dump", f, err)
	}
}

// Sessions on many goroutines write to one file; every block must come
// out whole, so that parsing the file back gives each direction of each
// session exactly the bytes it carried, with offsets that run on.
func TestConcurrentSessionsWriteWholeBlocks(t *testing.T) {
	d, path := newTestDump(t, nil)
	const sessions, chunks = 8, 40
	sent := make(map[string][]byte)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id := uint64(1); id <= sessions; id++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(id, 0))
			up, down := drivers(d, id)
			var mine [2][]byte
			for range chunks {
				i := rng.IntN(2)
				p := make([]byte, 1+rng.IntN(3000))
				for j := range p {
					p[j] = byte(rng.UintN(256))
				}
				mine[i] = append(mine[i], p...)
				if err := []*filtertest.Driver{up, down}[i].Write(p); err != nil {
					t.Error(err)
					return
				}
			}
			for _, dr := range []*filtertest.Driver{up, down} {
				if err := dr.CloseWrite(); err != nil {
					t.Error(err)
				}
				dr.Close(nil)
			}
			mu.Lock()
			sent[fmt.Sprint(id, " client→upstream")] = mine[0]
			sent[fmt.Sprint(id, " upstream→client")] = mine[1]
			mu.Unlock()
		})
	}
	wg.Wait()

	got, eofs, ends := parseHexDump(t, readDump(t, d, path))
	if diff := cmp.Diff(sent, got, cmp.Comparer(bytes.Equal)); diff != "" {
		t.Errorf("bytes read back from the dump differ from those sent (-sent +dump):\n%s", diff)
	}
	for k, p := range sent {
		if eofs[k] != int64(len(p)) {
			t.Errorf("%s: EOF after %d bytes, want %d", k, eofs[k], len(p))
		}
	}
	for id := uint64(1); id <= sessions; id++ {
		if ends[id] != 1 {
			t.Errorf("session %d: %d end lines, want 1", id, ends[id])
		}
	}
}

var (
	headerLine = regexp.MustCompile(`^session (\d+) (client→upstream|upstream→client) \S+ (\d+) bytes?$`)
	eofLine    = regexp.MustCompile(`^session (\d+) (client→upstream|upstream→client) \S+ EOF after (\d+) bytes?$`)
	endLine    = regexp.MustCompile(`^session (\d+) \S+ ended`)
	hexLine    = regexp.MustCompile(`^([0-9a-f]{8,})  (.{49}) \|(.{1,16})\|$`)
)

// parseHexDump reads a hex dump back: the bytes of each direction of each
// session ("7 client→upstream"), the byte count each EOF line gave, and
// how many end lines each session had. It fails the test at any line out
// of place: a hex line outside a block, an offset that does not run on, a
// block shorter or longer than its header says.
func parseHexDump(t *testing.T, dump string) (streams map[string][]byte, eofs map[string]int64, ends map[uint64]int) {
	t.Helper()
	streams, eofs, ends = map[string][]byte{}, map[string]int64{}, map[uint64]int{}
	var key string // the block being read
	left := 0      // its bytes not yet read
	sc := bufio.NewScanner(strings.NewReader(dump))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if left > 0 {
			m := hexLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d: %q: want a hex line, %d bytes of %s to go", n, line, left, key)
			}
			off, _ := strconv.ParseInt(m[1], 16, 64)
			if int(off) != len(streams[key]) {
				t.Fatalf("line %d: offset %#x, want %#x", n, off, len(streams[key]))
			}
			p, err := hex.DecodeString(strings.ReplaceAll(m[2], " ", ""))
			if err != nil || len(p) != len(m[3]) || len(p) > left {
				t.Fatalf("line %d: %q: bad hex (%v) or length", n, line, err)
			}
			for i, c := range p {
				if c < ' ' || c > '~' {
					c = '.'
				}
				if m[3][i] != c {
					t.Fatalf("line %d: ASCII column %q does not match the hex", n, m[3])
				}
			}
			streams[key] = append(streams[key], p...)
			left -= len(p)
			continue
		}
		if m := headerLine.FindStringSubmatch(line); m != nil {
			key = m[1] + " " + m[2]
			left, _ = strconv.Atoi(m[3])
		} else if m := eofLine.FindStringSubmatch(line); m != nil {
			eofs[m[1]+" "+m[2]], _ = strconv.ParseInt(m[3], 10, 64)
		} else if m := endLine.FindStringSubmatch(line); m != nil {
			id, _ := strconv.ParseUint(m[1], 10, 64)
			ends[id]++
		} else {
			t.Fatalf("line %d: %q: want a header, EOF or end line", n, line)
		}
	}
	if left > 0 {
		t.Fatalf("dump ends %d bytes into a block of %s", left, key)
	}
	return streams, eofs, ends
}

// raceEnabled is set under the race detector (race_test.go).
var raceEnabled bool

// A steady stream of chunks allocates nothing: the block is formatted
// into a pooled buffer and copied into the output's queue.
func TestSteadyStateDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random")
	}
	for _, format := range []string{"hex", "text"} {
		d, _ := newTestDump(t, map[string]string{"format": format, "to": os.DevNull})
		up, _ := d.Streams(filtertest.New(nil).Session)
		chunk := bytes.Repeat([]byte("0123456789\n\x00é"), 1000)
		var b filter.Batch
		out := make([]byte, 0, len(chunk))
		run := func() {
			b.Reset(chunk, out[:0], false, filtertest.Epoch)
			if err := up.Process(&b); err != nil {
				t.Fatal(err)
			}
		}
		run() // grows the pooled buffer
		// The output's queue may grow while its writer lags (it is bounded
		// by bytes, 4 MiB, so it grows a few dozen times at most): over
		// 200 chunks that rounds to nothing, where one allocation per chunk
		// would not.
		if n := testing.AllocsPerRun(200, run); n != 0 {
			t.Errorf("%s: %v allocations per chunk, want 0", format, n)
		}
	}
}

func BenchmarkDump32KiB(b *testing.B) {
	chunk := make([]byte, 32<<10)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range chunk {
		chunk[i] = byte(rng.UintN(256))
	}
	for _, format := range []string{"hex", "text"} {
		b.Run(format, func(b *testing.B) {
			d, _ := newTestDump(b, map[string]string{"format": format, "to": os.DevNull})
			up, _ := d.Streams(filtertest.New(nil).Session)
			var batch filter.Batch
			out := make([]byte, 0, len(chunk))
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				batch.Reset(chunk, out[:0], false, filtertest.Epoch)
				if err := up.Process(&batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Checking a config (pier check) finds a path that cannot be written, and
// creates no file.
func TestDryRunCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dump.log")
	spec, _ := filter.Lookup("dump")
	if _, err := spec.New(filter.NewOptions("dump", map[string]filter.Value{"to": {Text: path}}, 0, 0).CheckOnly()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a dry run made %s (%v)", path, err)
	}
	bad := filepath.Join(dir, "missing", "dump.log")
	if _, err := spec.New(filter.NewOptions("dump", map[string]filter.Value{"to": {Text: bad}}, 0, 0).CheckOnly()); err == nil {
		t.Errorf("a dry run accepted %s, in a directory that does not exist", bad)
	}
}

// blockedWriter blocks every Write until release is closed, then keeps
// what it is given.
type blockedWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// An output that stops taking bytes (a pipe nobody reads) stalls no
// session: Process returns at once while the writer is stuck, and once it
// is unstuck every direction's dump says how many bytes it could not show,
// in their place, so that shown and not shown add up to what was sent.
func TestStuckOutputStallsNoSession(t *testing.T) {
	d, _ := newTestDump(t, nil)
	d.out.Close()
	w := &blockedWriter{release: make(chan struct{})}
	d.out = filter.NewOutput(w, filter.OutputConfig{Name: "dump", MaxBytes: 64 << 10})
	const sessions, chunks, size = 4, 100, 1000
	var drs [sessions][2]*filtertest.Driver
	for i := range drs {
		up, down := drivers(d, uint64(i+1))
		drs[i] = [2]*filtertest.Driver{up, down}
	}
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		var wg sync.WaitGroup
		for i := range drs {
			for _, dr := range drs[i] {
				wg.Go(func() {
					for range chunks {
						if err := dr.Write(bytes.Repeat([]byte{'x'}, size)); err != nil {
							t.Error(err)
						}
					}
				})
			}
		}
		wg.Wait()
	}()
	select {
	case <-moved:
	case <-time.After(10 * time.Second):
		close(w.release)
		t.Fatal("Process waited for a stuck output")
	}
	close(w.release)
	if !d.out.Sync(10 * time.Second) { // room again for the ends
		t.Fatal("output not written after the writer was unstuck")
	}
	for i := range drs {
		for _, dr := range drs[i] {
			must(t, dr.CloseWrite())
		}
		for _, dr := range drs[i] {
			dr.Close(nil)
		}
	}
	if !d.out.Sync(10 * time.Second) {
		t.Fatal("output not written after the writer was unstuck")
	}
	w.mu.Lock()
	out := w.buf.String()
	w.mu.Unlock()
	shown, notShown := map[string]int{}, map[string]int{}
	var notShownBytes, droppedBlocks int64
	lost := regexp.MustCompile(`^(session \d+ \S+) … (\d+) bytes not shown \((\d+) blocks? dropped: the output fell behind\)$`)
	header := regexp.MustCompile(`^(session \d+ \S+) \S+ (\d+) bytes?$`)
	for _, line := range strings.Split(out, "\n") {
		if m := lost.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[2])
			notShown[m[1]] += n
			notShownBytes += int64(n)
			b, _ := strconv.Atoi(m[3])
			droppedBlocks += int64(b)
		} else if m := header.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[2])
			shown[m[1]] += n
		}
	}
	if len(notShown) == 0 {
		t.Fatalf("no line says what was not shown:\n%.2000s", out)
	}
	// The filter's running total (the metrics') says as much as the lines.
	if got := d.Dropped(); got.Units != notShownBytes || got.Writes != droppedBlocks {
		t.Errorf("Dropped = %+v, want %d blocks of %d session bytes, as the dump says", got, droppedBlocks, notShownBytes)
	}
	for i := range sessions {
		for _, dir := range []string{"client→upstream", "upstream→client"} {
			key := fmt.Sprintf("session %d %s", i+1, dir)
			if got := shown[key] + notShown[key]; got != chunks*size {
				t.Errorf("%s: %d shown + %d not shown, want %d sent", key, shown[key], notShown[key], chunks*size)
			}
		}
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^session %d \S+ ended$`, i+1)).MatchString(out) {
			t.Errorf("session %d: no end line", i+1)
		}
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(fds)
}

// Close writes out what is queued and closes the file: no descriptor is
// left behind, however many times the filter is made and dropped, and a
// stream used after Close passes its bytes and writes nothing.
func TestCloseFlushesAndLeavesNoDescriptor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.log")
	before := openFDs(t)
	for i := range 20 {
		f, err := newDump(filter.NewOptions("dump", map[string]filter.Value{"to": {Text: path}}, 0, 0))
		must(t, err)
		up, _ := drivers(f.(*dump), uint64(i))
		must(t, up.Write([]byte("hello")))
		must(t, f.(io.Closer).Close())
		must(t, up.Write([]byte("after close")))
		if string(up.Out) != "helloafter close" {
			t.Fatalf("stream after Close forwarded %q", up.Out)
		}
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after 20 filters came and went, %d before", after, before)
	}
	got := readFile(t, path)
	if n := strings.Count(got, " 5 bytes\n"); n != 20 {
		t.Errorf("%d blocks of 5 bytes written before Close, want 20:\n%s", n, got)
	}
	if strings.Contains(got, "after") {
		t.Errorf("a block written after Close:\n%s", got)
	}
}

// Close is idempotent: a second Close (a second Shutdown) returns nil
// again rather than "file already closed".
func TestCloseTwice(t *testing.T) {
	d, _ := newTestDump(t, nil)
	up, _ := drivers(d, 1)
	must(t, up.Write([]byte("a")))
	if err := d.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
