package pcap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/testutil"
)

// A capture file that fails (its descriptor gone, its directory gone)
// costs the sessions nothing, every byte still passes, and the failure is
// logged once, not once per packet.
func TestFailingFileLogsOnceAndSessionsGoOn(t *testing.T) {
	for _, perSession := range []bool{false, true} {
		t.Run(map[bool]string{false: "route file", true: "per session"}[perSession], func(t *testing.T) {
			dir := t.TempDir()
			var log testutil.Buffer
			vals := map[string]filter.Value{"file": {Text: filepath.Join(dir, "db.pcapng")}}
			if perSession {
				vals["per_session"] = filter.Value{Text: "true"}
			}
			o := filter.NewOptions("pcap", vals, 0, 0).WithLogger(slog.New(slog.NewTextHandler(&log, nil)))
			ff, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			f := ff.(*Filter)
			defer f.Close()
			if perSession {
				must(t, os.RemoveAll(dir)) // no session's file can be created
			} else {
				f.route.file.Close() // every write fails
			}
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range 5 {
				c := converse(t, f, session(uint64(i), "192.0.2.1:40000", "198.51.100.1:5432"), uint64(i))
				c.send(random(rng, 50_000), random(rng, 50_000)) // checks every byte passed
				c.end(client, upstream)
				c.close(nil)
			}
			if n := strings.Count(log.String(), "level=ERROR"); n != 1 {
				t.Errorf("%d error lines, want 1:\n%s", n, log.String())
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// stuckWriter blocks every Write until release is closed, then passes it
// on.
type stuckWriter struct {
	release chan struct{}
	w       io.Writer
}

func (s *stuckWriter) Write(p []byte) (int, error) {
	<-s.release
	return s.w.Write(p)
}

func (s *stuckWriter) Flush() error { return s.w.(interface{ Flush() error }).Flush() }

// A disk that stops taking bytes stalls no session, and the packets the
// queue had no room for are said in the capture, as a comment tshark
// shows (frame.comment), with the session and the count.
func TestStuckFileStallsNoSessionAndSaysWhatIsMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	f.out.Close()
	w := &stuckWriter{release: make(chan struct{}), w: f.route}
	f.out = filter.NewOutput(w, filter.OutputConfig{Name: "pcap", MaxBytes: 64 << 10})
	convs := make([]*conversation, 3)
	rng := rand.New(rand.NewPCG(2, 2))
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		for i := range convs {
			convs[i] = converse(t, f, session(uint64(i), "192.0.2.1:40000", "198.51.100.1:5432"), uint64(i))
			convs[i].send(random(rng, 100_000), random(rng, 100_000))
		}
	}()
	select {
	case <-moved:
	case <-time.After(10 * time.Second):
		close(w.release)
		t.Fatal("Process waited for a stuck file")
	}
	close(w.release)
	for _, c := range convs {
		c.end(client, upstream)
		c.close(nil)
	}
	data, err := os.ReadFile(path)
	must(t, err)
	if !bytes.Contains(data, []byte("packets (")) || !bytes.Contains(data, []byte("bytes) not recorded")) {
		t.Fatal("no note of the packets not recorded in the capture")
	}
	// The filter's running total (the metrics') says as much as the notes.
	var packets, payload int64
	for _, m := range regexp.MustCompile(`pier: session \d+: (\d+) packets \((\d+) bytes\) not recorded`).FindAllSubmatch(data, -1) {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		b, _ := strconv.ParseInt(string(m[2]), 10, 64)
		packets, payload = packets+n, payload+b
	}
	if got := f.Dropped(); got.Writes != packets || got.Units != payload || got.Writes == 0 {
		t.Errorf("Dropped = %+v, want %d packets of %d payload bytes, as the notes say", got, packets, payload)
	}
	testutil.NeedTshark(t)
	out, warnings := testutil.Tshark(t, path, "-Y", "frame.comment contains \"not recorded\"", "-T", "fields", "-e", "frame.comment")
	if warnings != "" {
		t.Errorf("tshark warns: %s", warnings)
	}
	if !strings.Contains(out, "pier: session ") || !strings.Contains(out, "bytes) not recorded") {
		t.Errorf("tshark shows no note as frame.comment:\n%s", out)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(fds)
}

// Close closes every file the filter opened, the route's and the
// sessions', so that filters made and dropped (reloads) leave no
// descriptor behind; a session that goes on after Close passes its bytes.
func TestCloseLeavesNoDescriptor(t *testing.T) {
	for _, perSession := range []string{"false", "true"} {
		t.Run("per_session="+perSession, func(t *testing.T) {
			dir := t.TempDir()
			before := openFDs(t)
			for i := range 20 {
				vals := map[string]filter.Value{"file": {Text: filepath.Join(dir, "db.pcapng")}, "per_session": {Text: perSession}}
				ff, err := New(filter.NewOptions("pcap", vals, 0, 0))
				must(t, err)
				c := converse(t, ff, session(uint64(i), "192.0.2.1:40000", "198.51.100.1:5432"), uint64(i))
				c.send([]byte("hello"), []byte("world")) // the session's file is open now
				if !ff.(*Filter).out.Sync(10 * time.Second) {
					t.Fatal("not written in 10s")
				}
				must(t, ff.(io.Closer).Close())
				c.d[0].Out, c.d[1].Out = nil, nil
				c.send([]byte("after"), []byte("close"))
				c.end(client, upstream)
				c.d[0].Close(nil)
				c.d[1].Close(nil)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open after 20 filters came and went, %d before", after, before)
			}
		})
	}
}

// stalledDisk stands for a disk that stops taking bytes: a Write blocks,
// with whatever locks its caller holds, until release is closed.
type stalledDisk struct {
	entered     chan struct{} // closed at the first Write
	enteredOnce sync.Once
	release     chan struct{}
	w           io.Writer
}

func (s *stalledDisk) Write(p []byte) (int, error) {
	s.enteredOnce.Do(func() { close(s.entered) })
	<-s.release
	return s.w.Write(p)
}

// Close returns within its bound even when the Output's goroutine is
// stuck in a write that holds the file's lock (a stalled disk), so a
// reload or a stop does not wait for the disk; the file is closed, and
// the Filter's share of it given up, once that write returns.
func TestCloseReturnsOnAStalledDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	disk := &stalledDisk{entered: make(chan struct{}), release: make(chan struct{}), w: f.route.file}
	f.route.mu.Lock()
	f.route.buf.Reset(disk) // writer.Flush now blocks in disk.Write, holding f.route.mu
	f.route.mu.Unlock()
	released := false
	release := func() {
		if !released {
			released = true
			close(disk.release)
		}
	}
	defer release()

	c := converse(t, f, session(1, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
	c.send([]byte("hello"), []byte("world"))
	select {
	case <-disk.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the Output never wrote to the file")
	}

	const bound = 2*time.Second + time.Second // the Output's CloseTimeout, and slack
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, filter.ErrOutputTimeout) {
			t.Errorf("Close = %v, want ErrOutputTimeout", err)
		}
		t.Logf("Close returned in %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(bound):
		release()
		<-closed
		t.Fatalf("Close waited past %v for a stalled disk", bound)
	}

	// The stalled write returns: the Output's goroutine closes the file.
	release()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sharedMu.Lock()
		_, stillShared := shared[path]
		sharedMu.Unlock()
		f.route.mu.Lock()
		fileClosed := errors.Is(f.route.err, errClosed)
		f.route.mu.Unlock()
		if fileClosed && !stillShared {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file not closed (%v) or still shared (%v) 10s after the disk came back", fileClosed, stillShared)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.end(client, upstream)
	c.d[0].Close(nil)
	c.d[1].Close(nil)
}

// Close is idempotent: a second Close (a second Shutdown) returns nil
// again and closes nothing twice.
func TestCloseTwice(t *testing.T) {
	for _, perSession := range []string{"false", "true"} {
		t.Run("per_session="+perSession, func(t *testing.T) {
			f := newFilter(t, map[string]string{"file": filepath.Join(t.TempDir(), "db.pcapng"), "per_session": perSession})
			c := converse(t, f, session(1, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
			c.send([]byte("hello"), []byte("world"))
			if !f.out.Sync(10 * time.Second) {
				t.Fatal("not written in 10s")
			}
			if err := f.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// A new Filter on the file of one whose write is stuck on a stalled disk
// (a reload) is made without waiting for that write: New takes the new
// max_size and max_files, and asks a writer stopped by an error to start
// again, without the file's lock, so a reload never hangs behind a dead
// disk. Once the disk is back, the new Filter records.
func TestNewDoesNotWaitForAStalledDisk(t *testing.T) {
	for _, stoppedByAnError := range []bool{false, true} {
		t.Run(fmt.Sprintf("stopped_by_an_error=%v", stoppedByAnError), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "db.pcapng")
			old := newFilter(t, map[string]string{"file": path})
			var (
				releaseOnce sync.Once
				release     func()
			)
			if stoppedByAnError {
				// The file fails its writes; then a goroutine sits in the
				// file's lock as a write on a stalled disk would.
				old.route.file.Close()
				c := converse(t, old, session(1, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
				c.send([]byte("hello"), []byte("world"))
				c.end(client, upstream)
				c.close(nil)
				if !errors.Is(old.route.err, os.ErrClosed) {
					t.Fatalf("writer error %v, want %v", old.route.err, os.ErrClosed)
				}
				old.route.mu.Lock()
				release = func() { releaseOnce.Do(old.route.mu.Unlock) }
			} else {
				disk := &stalledDisk{entered: make(chan struct{}), release: make(chan struct{}), w: old.route.file}
				old.route.mu.Lock()
				old.route.buf.Reset(disk) // writer.Flush now blocks in disk.Write, holding old.route.mu
				old.route.mu.Unlock()
				release = func() { releaseOnce.Do(func() { close(disk.release) }) }
				c := converse(t, old, session(1, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
				c.send([]byte("hello"), []byte("world"))
				select {
				case <-disk.entered:
				case <-time.After(10 * time.Second):
					t.Fatal("the Output never wrote to the file")
				}
				defer func() {
					c.end(client, upstream)
					c.d[0].Close(nil)
					c.d[1].Close(nil)
				}()
			}
			defer release()

			type made struct {
				f   filter.Filter
				err error
			}
			done := make(chan made, 1)
			go func() {
				vals := map[string]filter.Value{"file": {Text: path}, "max_size": {Text: "1MB"}, "max_files": {Text: "2"}}
				f, err := New(filter.NewOptions("pcap", vals, 0, 0))
				done <- made{f, err}
			}()
			const bound = 2 * time.Second
			var m made
			select {
			case m = <-done:
			case <-time.After(bound):
				release()
				m = <-done
				if m.err == nil {
					m.f.(*Filter).Close()
				}
				t.Fatalf("New waited past %v for a write stuck on the disk", bound)
			}
			if m.err != nil {
				t.Fatalf("New: %v", m.err)
			}
			f := m.f.(*Filter)
			t.Cleanup(func() { f.Close() })
			if f.route != old.route {
				t.Fatal("the new Filter does not share the file")
			}
			if l := f.route.limits.Load(); l.maxSize != 1_000_000 || l.maxFiles != 2 {
				t.Errorf("limits %+v, want the new Filter's, max_size 1MB, max_files 2", *l)
			}

			release()
			up, down := sessionData(2)
			c := converse(t, f, session(2, "192.0.2.1:40002", "198.51.100.1:5432"), 2)
			c.send(up, down)
			c.end(client, upstream)
			c.close(nil)
			must(t, old.Close())
			must(t, f.Close())
			_, cs := conns(t, path)
			var found bool
			for _, cn := range cs {
				if cn.Client.Port() == 40002 {
					found = true
					checkConn(t, cn, up, down)
				}
			}
			if !found {
				t.Errorf("the new Filter's session is not in the file (%d connections)", len(cs))
			}
			if stoppedByAnError {
				if len(cs) != 1 {
					t.Errorf("%d connections in the restarted file, want 1", len(cs))
				}
				if _, err := os.Stat(path + ".1"); err != nil {
					t.Errorf("the failed file was not kept as %s.1: %v", path, err)
				}
			}
		})
	}
}
