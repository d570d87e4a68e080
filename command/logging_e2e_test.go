package command

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/testutil"
)

// fullPipe returns a pipe whose buffer is full: a write to w blocks until
// someone reads r, and in this test no one does, as with a log reader that
// stopped reading.
func fullPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	fd := int(w.Fd()) // Fd puts the file in blocking mode: take it first
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte("#"), 4096)
	filled := 0
	for _, chunk := range [][]byte{page, page[:1]} { // pages, then the last bytes
		for {
			n, err := unix.Write(fd, chunk)
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			filled += n
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("stderr pipe filled with %d bytes", filled)
	return r, w
}

// echoUntilEOF answers every byte back until the client half-closes.
func echoUntilEOF(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// echoRoundTrip sends msg on c and reads it back, within wait.
func echoRoundTrip(c net.Conn, msg []byte) error {
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("sent %q, got back %q", msg, got)
	}
	return nil
}

// A log reader that stops reading must not stop the proxy: with pier's
// stderr a full pipe from the start (its first log line already blocks),
// sessions on every loop keep moving bytes, sessions that end (each one an
// access log line) do not stall their loop, and SIGTERM still ends pier
// within its grace period.
func TestBlockedLogReaderStallsNothing(t *testing.T) {
	up := testutil.NewUpstream(t, echoUntilEOF)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	r, w := fullPipe(t)
	cmd := exec.Command(os.Args[0], "forward", addr, up.Addr(), "-grace", "1s", "-log-format", "json")
	cmd.Env = append(os.Environ(), "PIER_TEST_MAIN=1",
		"GOMAXPROCS=2", // two relay loops
		// A -race binary sleeps 1s at exit by default: not pier's time.
		"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // pier holds the only write end now
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // by its pid; harmless once it has exited
		<-exited
	})

	// pier cannot say where it listens (its log is blocked): dial until it
	// answers. Each try that connects is a session that ends and logs.
	var probe net.Conn
	for deadline := time.Now().Add(wait); probe == nil; {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err == nil {
			if err = echoRoundTrip(c, []byte("probe")); err != nil {
				t.Fatalf("first session: %v", err)
			}
			probe = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pier does not accept on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond) // a poll interval, bounded by the deadline
	}
	probe.Close()

	// Sessions that end: every one logs its access line on its loop. With
	// a log write on the loop, the first would stall its loop for good.
	for i := range 40 {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			t.Fatal(err)
		}
		err = echoRoundTrip(c, fmt.Appendf(nil, "short %d", i))
		c.(*net.TCPConn).CloseWrite()
		if err == nil {
			c.SetDeadline(time.Now().Add(wait))
			_, err = io.Copy(io.Discard, c) // until pier closes: the session ended
		}
		c.Close()
		if err != nil {
			t.Fatalf("short session %d, with the log blocked: %v", i, err)
		}
	}

	// Long sessions, more than loops, so every loop holds some: bytes keep
	// moving both ways on each.
	var long []net.Conn
	defer func() {
		for _, c := range long {
			c.Close()
		}
	}()
	for range 20 {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			t.Fatal(err)
		}
		long = append(long, c)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for round := range 3 {
		for i, c := range long {
			if err := echoRoundTrip(c, chunk); err != nil {
				t.Fatalf("round %d, session %d, with the log blocked: %v", round, i, err)
			}
		}
	}

	// SIGTERM: the long sessions outlive the 1s grace period, so pier must
	// cut them and exit, its log still blocked.
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		took := time.Since(sent)
		t.Logf("pier exited %v after SIGTERM: %v", took.Round(time.Millisecond), err)
		// The grace period, then at most logCloseTimeout for the log's
		// flush, and room for a loaded machine; a stalled log without
		// the bound would hold pier until the test's wait runs out.
		if bound := time.Second + logCloseTimeout + 3*time.Second; took > bound {
			t.Errorf("pier took %v to exit with -grace 1s, more than %v", took, bound)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Errorf("pier died of %v", ws.Signal())
		}
	case <-time.After(wait):
		t.Fatalf("pier still running %v after SIGTERM with -grace 1s and its log blocked", wait)
	}
	// The long sessions were cut, not left hanging.
	for i, c := range long {
		c.SetDeadline(time.Now().Add(wait))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("session %d after pier exited: %v", i, err)
		}
	}
	r.Close() // kept open, and never read, to the end
}
