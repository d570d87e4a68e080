package proxy_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	_ "github.com/pierproxy/pier/filter/builtin"
	"github.com/pierproxy/pier/filter/pcap"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/testutil"
)

// These tests put each built-in filter on a route and check, over real
// sockets, that it does what the README's "Filters" section says. Timing
// checks are lower bounds that follow from the filter's promise (a byte
// held for delay cannot arrive sooner), never upper bounds tighter than
// seconds, so a slow machine cannot fail them.

// opts are a filter's options as a config file would give them.
type opts map[string]string

// builtin makes the registered filter name from its options, as the
// config loader does.
func builtin(t testing.TB, name string, o opts) filter.Filter {
	t.Helper()
	spec, ok := filter.Lookup(name)
	if !ok {
		t.Fatalf("no filter %q registered", name)
	}
	vals := make(map[string]filter.Value, len(o))
	for k, v := range o {
		vals[k] = filter.Value{Text: v}
	}
	f, err := spec.New(filter.NewOptions(name, vals, 0, 0))
	if err != nil {
		t.Fatalf("%s %v: %v", name, o, err)
	}
	if c, ok := f.(io.Closer); ok {
		// As a reload or shutdown drops it: its writer stops. Cleanups
		// run last first, so this comes after the server is shut down.
		t.Cleanup(func() { c.Close() })
	}
	return f
}

// payload returns n bytes of seeded noise.
func payload(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed, byte(n), byte(n >> 8), byte(n >> 16)}).Read(b)
	return b
}

// sendAll writes b to c in the background, then half-closes; the test
// waits for it with the returned function.
func sendAll(c *net.TCPConn, b []byte) (waitSent func(t *testing.T)) {
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(b)
		if err == nil {
			err = c.CloseWrite()
		}
		done <- err
	}()
	return func(t *testing.T) {
		t.Helper()
		if err := <-done; err != nil {
			t.Errorf("client write: %v", err)
		}
	}
}

// serveThenHold is an upstream that sends b at once and then reads until
// the peer goes.
func serveThenHold(b []byte) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		c.Write(b)
		io.Copy(io.Discard, c)
	}
}

// latency holds every byte for delay ± jitter each way: a round trip
// through an echo takes at least twice (delay - jitter), and every byte
// comes back.
func TestBuiltinLatencyHoldsEveryByte(t *testing.T) {
	const delay, jitter = 100 * time.Millisecond, 20 * time.Millisecond
	up := testutil.NewUpstream(t, testutil.Echo)
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "latency", opts{
		"delay": delay.String(), "jitter": jitter.String(), "seed": "7", "direction": "both",
	})))
	c := dial(t, srv, "f")
	msg := payload(1, 64<<10)
	begin := time.Now()
	sent := sendAll(c, msg)
	got, err := io.ReadAll(c)
	elapsed := time.Since(begin)
	sent(t)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes (%v), want the %d sent, unchanged", len(got), err, len(msg))
	}
	if least := 2 * (delay - jitter); elapsed < least {
		t.Errorf("round trip took %v; with %v ± %v each way it cannot take less than %v", elapsed, delay, jitter, least)
	}
	if most := 2*(delay+jitter) + 5*time.Second; elapsed > most {
		t.Errorf("round trip took %v, more than %v", elapsed, most)
	}
	wantReason(t, recs.Next(t, wait), "done")
}

// bandwidth is a token bucket that starts full: by any time d after the
// session is taken up, at most burst + rate*d bytes have gone, so size
// bytes take at least (size - burst) / rate.
func TestBuiltinBandwidthCapsRate(t *testing.T) {
	const rate, burst, size = 2 << 20, 16 << 10, 1 << 20
	msg := payload(2, size)
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.Write(msg)
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "bandwidth", opts{
		"rate": "2MiB", "burst": "16KiB",
	})))
	begin := time.Now() // before the session exists, so before the bucket's clock starts
	c := dial(t, srv, "f")
	got, err := io.ReadAll(c)
	elapsed := time.Since(begin)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes (%v), want the %d sent, unchanged", len(got), err, len(msg))
	}
	least := time.Duration(float64(size-burst) / rate * float64(time.Second))
	if elapsed < least {
		t.Errorf("%d bytes came in %v (%.0f B/s); at %d B/s with a %d-byte burst they take at least %v",
			size, elapsed, size/elapsed.Seconds(), rate, burst, least)
	}
	if most := least + 5*time.Second; elapsed > most {
		t.Errorf("%d bytes took %v, more than %v", size, elapsed, most)
	}
	c.CloseWrite()
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if rec["bytes_to_client"] != int64(size) {
		t.Errorf("bytes_to_client %v, want %d", rec["bytes_to_client"], size)
	}
}

// slicer forwards in pieces of size ± variation, delay apart, each its
// own write: the client's reads come short, and the pieces cannot all
// have come sooner than (pieces - 1) * delay.
func TestBuiltinSlicerForwardsPieces(t *testing.T) {
	const size, variation, delay = 4, 2, 10 * time.Millisecond
	msg := payload(3, 64)
	up := testutil.NewUpstream(t, serveThenHold(msg))
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "slicer", opts{
		"size": "4", "variation": "2", "delay": delay.String(), "seed": "3",
	})))
	begin := time.Now()
	c := dial(t, srv, "f")
	var got []byte
	reads := 0
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			reads++
			got = append(got, buf[:n]...)
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		if len(got) >= len(msg) {
			break
		}
	}
	elapsed := time.Since(begin)
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %x, want %x", got, msg)
	}
	// At most size+variation bytes a piece.
	pieces := (len(msg) + size + variation - 1) / (size + variation)
	if least := time.Duration(pieces-1) * delay; elapsed < least {
		t.Errorf("%d bytes came in %v; in pieces of at most %d bytes %v apart they take at least %v",
			len(msg), elapsed, size+variation, delay, least)
	}
	// The pieces are at least delay apart and the client always reading,
	// so only a reader stalled for the whole transfer sees one read.
	if reads < 2 {
		t.Errorf("%d bytes came in %d read; want them in pieces", len(msg), reads)
	}
	t.Logf("%d bytes in %d reads (at least %d pieces) in %v", len(msg), reads, pieces, elapsed)
	c.Close()
	recs.Next(t, wait)
}

// answerThenHold is an upstream that reads one byte, answers it with b
// and then reads until the peer goes. Waiting for the client's byte keeps
// the session from ending before the client's dial has returned: a reset
// that quick would fail the dial itself.
func answerThenHold(b []byte) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := io.ReadFull(c, make([]byte, 1)); err == nil {
			c.Write(b)
		}
		io.Copy(io.Discard, c)
	}
}

// reset with bytes forwards exactly that many, then resets both sides.
func TestBuiltinResetAfterBytes(t *testing.T) {
	const n = 1000
	msg := payload(4, 5000)
	up := testutil.NewUpstream(t, answerThenHold(msg))
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "reset", opts{
		"bytes": fmt.Sprint(n), "direction": "client",
	})))
	c := dial(t, srv, "f")
	if _, err := c.Write([]byte("?")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if !bytes.Equal(got, msg[:n]) {
		t.Errorf("client got %d bytes before the end, want exactly the first %d", len(got), n)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read ended with %v, want ECONNRESET", err)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "filter_reset")
	if rec["bytes_to_client"] != int64(n) {
		t.Errorf("bytes_to_client %v, want %d", rec["bytes_to_client"], n)
	}
}

// reset with after resets a session that never sends a byte: its clock
// starts when the filter takes the session up.
func TestBuiltinResetAfterTimeOnIdleSession(t *testing.T) {
	const after = 100 * time.Millisecond
	up := testutil.NewUpstream(t, testutil.Hold)
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "reset", opts{"after": after.String()})))
	begin := time.Now()
	c := dial(t, srv, "f")
	got, err := io.ReadAll(c)
	elapsed := time.Since(begin)
	if len(got) != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("idle client read %q, %v; want nothing, then ECONNRESET", got, err)
	}
	if elapsed < after {
		t.Errorf("reset after %v, before the filter's %v", elapsed, after)
	}
	wantReason(t, recs.Next(t, wait), "filter_reset")
}

// timeout drops every byte both ways and then closes both sides cleanly.
func TestBuiltinTimeoutDropsThenCloses(t *testing.T) {
	const after = 200 * time.Millisecond
	type result struct {
		n   int64
		err error
	}
	upGot := make(chan result, 1)
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.Write([]byte("from the upstream"))
		n, err := io.Copy(io.Discard, c)
		upGot <- result{n, err}
	})
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "timeout", opts{"after": after.String()})))
	begin := time.Now()
	c := dial(t, srv, "f")
	if _, err := c.Write([]byte("anyone there?")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	elapsed := time.Since(begin)
	if len(got) != 0 || err != nil {
		t.Errorf("client read %q, %v; want nothing, then a clean EOF", got, err)
	}
	if elapsed < after {
		t.Errorf("closed after %v, before the filter's %v", elapsed, after)
	}
	select {
	case r := <-upGot:
		if r.n != 0 || r.err != nil {
			t.Errorf("upstream read %d bytes, then %v; want nothing, then a clean EOF", r.n, r.err)
		}
	case <-time.After(wait):
		t.Fatal("upstream never saw the session end")
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "filter_close")
	if rec["bytes_to_upstream"] != int64(0) || rec["bytes_to_client"] != int64(0) {
		t.Errorf("bytes %v up, %v down; want none", rec["bytes_to_upstream"], rec["bytes_to_client"])
	}
}

// limit lets bytes through, then closes cleanly: the client reads them
// and EOF, as from a peer that hung up mid-message.
func TestBuiltinLimitClosesAfterBytes(t *testing.T) {
	const n = 1000
	msg := payload(5, 5000)
	up := testutil.NewUpstream(t, answerThenHold(msg))
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "limit", opts{"bytes": fmt.Sprint(n)})))
	c := dial(t, srv, "f")
	if _, err := c.Write([]byte("?")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg[:n]) {
		t.Errorf("client read %d bytes, then %v; want exactly the first %d, then a clean EOF", len(got), err, n)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "filter_close")
	if rec["bytes_to_client"] != int64(n) {
		t.Errorf("bytes_to_client %v, want %d", rec["bytes_to_client"], n)
	}
}

// slow_close passes the bytes at once and holds the end: the client reads
// EOF no sooner than delay after it had every byte. The upstream closes
// only once the client has the bytes, so the end cannot have reached pier
// before then.
func TestBuiltinSlowCloseHoldsTheEnd(t *testing.T) {
	const delay = 300 * time.Millisecond
	msg := []byte("goodbye")
	read := make(chan struct{})
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		c.Write(msg)
		select {
		case <-read:
		case <-time.After(wait):
		}
	})
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "slow_close", opts{"delay": delay.String()})))
	c := dial(t, srv, "f")
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %q, %v; want %q", got, err, msg)
	}
	haveBytes := time.Now()
	close(read)
	n, err := c.Read(make([]byte, 1))
	gap := time.Since(haveBytes)
	if n != 0 || err != io.EOF {
		t.Fatalf("after the bytes: read %d, %v; want EOF", n, err)
	}
	if gap < delay {
		t.Errorf("EOF came %v after the bytes, before the filter's %v", gap, delay)
	}
	c.Close()
	if r := recs.Next(t, wait)["reason"]; r != "done" && r != "client_reset" {
		t.Errorf("reason %v", r)
	}
}

// sendSlowly writes b one byte per write, with Nagle off, so that the
// bytes reach pier in many reads and a match is split between them.
func sendSlowly(c *net.TCPConn, b []byte) (waitSent func(t *testing.T)) {
	done := make(chan error, 1)
	go func() {
		err := c.SetNoDelay(true)
		for i := 0; i < len(b) && err == nil; i++ {
			_, err = c.Write(b[i : i+1])
		}
		if err == nil {
			err = c.CloseWrite()
		}
		done <- err
	}()
	return func(t *testing.T) {
		t.Helper()
		if err := <-done; err != nil {
			t.Errorf("client write: %v", err)
		}
	}
}

// rewrite replaces a literal in both directions, exactly as replacing
// over each whole stream: through an echo the replacement is applied
// twice, however the bytes were split.
func TestBuiltinRewriteLiteralBothWays(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "rewrite", opts{
		"match": "needle", "replace": "[needle]",
	})))
	in := []byte(strings.Repeat("hay needle nee needleneedle n", 40) + "needl")
	want := bytes.ReplaceAll(bytes.ReplaceAll(in, []byte("needle"), []byte("[needle]")), []byte("needle"), []byte("[needle]"))
	c := dial(t, srv, "f")
	sent := sendSlowly(c, in)
	got, err := io.ReadAll(c)
	sent(t)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %q (%v),\nwant %q", got, err, want)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	if mid := int64(len(in)) + int64(bytes.Count(in, []byte("needle")))*2; rec["bytes_to_upstream"] != mid {
		t.Errorf("bytes_to_upstream %v, want %d", rec["bytes_to_upstream"], mid)
	}
}

// rewrite with a regexp expands its groups, and matches whole across
// reads.
func TestBuiltinRewriteRegexpGroups(t *testing.T) {
	const expr, repl = `id=(\d{1,8});`, "ID<${1}>;"
	up := testutil.NewUpstream(t, testutil.Echo)
	srv, recs := start(t, filtered(t, "f", up.Addr(), builtin(t, "rewrite", opts{
		"regexp": expr, "replace": repl, "direction": "client",
	})))
	in := []byte(strings.Repeat("id=1;id=22;x id=;id=12345678;id=123456789;idid=7;", 20) + "id=9")
	want := regexp.MustCompile(expr).ReplaceAll(in, []byte(repl))
	c := dial(t, srv, "f")
	sent := sendSlowly(c, in)
	got, err := io.ReadAll(c)
	sent(t)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %q (%v),\nwant %q", got, err, want)
	}
	wantReason(t, recs.Next(t, wait), "done")
}

// echoSession sends msg through route f and checks it comes back whole; it
// returns the session's record.
func echoSession(t *testing.T, srv *proxy.Server, recs *testutil.Records, msg []byte) map[string]any {
	t.Helper()
	c := dial(t, srv, "f")
	sent := sendAll(c, msg)
	got, err := io.ReadAll(c)
	sent(t)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
	}
	rec := recs.Next(t, wait)
	wantReason(t, rec, "done")
	return rec
}

// dump as text writes each chunk under a header with the session id of
// the access log line, the bytes as they are, and the session's end.
func TestBuiltinDumpText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.txt")
	up := testutil.NewUpstream(t, testutil.Echo)
	dumpf := builtin(t, "dump", opts{"format": "text", "to": path})
	srv, recs := start(t, filtered(t, "f", up.Addr(), dumpf))
	// Two sessions, so that the ids tell them apart.
	msgs := []string{"hello, pier", "second session"}
	var ids []uint64
	for _, m := range msgs {
		rec := echoSession(t, srv, recs, []byte(m))
		id, ok := rec["id"].(uint64)
		if !ok {
			t.Fatalf("record id %v (%T), want a uint64", rec["id"], rec["id"])
		}
		ids = append(ids, id)
	}
	// The dump writes off the loop: closing the filter, as a reload that
	// drops it does, writes what it has queued.
	if err := dumpf.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dump := string(b)
	// The text under each header, by header: "session 1 client→upstream".
	shown := map[string]string{}
	var block string
	for _, line := range strings.Split(dump, "\n") {
		if text, ok := strings.CutPrefix(line, "  "); ok {
			shown[block] += text
			continue
		}
		f := strings.Fields(line)
		block = ""
		if len(f) >= 3 && f[0] == "session" {
			block = strings.Join(f[:3], " ")
		}
	}
	for i, id := range ids {
		for _, dir := range []string{"client→upstream", "upstream→client"} {
			h := fmt.Sprintf("session %d %s", id, dir)
			if got := shown[h]; got != msgs[i] {
				t.Errorf("under %q the dump shows %q, want %q", h, got, msgs[i])
			}
			eof := fmt.Sprintf(`(?m)^%s \S+ EOF after %d bytes$`, h, len(msgs[i]))
			if !regexp.MustCompile(eof).MatchString(dump) {
				t.Errorf("dump lacks the end of %q", h)
			}
		}
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^session %d \S+ ended$`, id)).MatchString(dump) {
			t.Errorf("dump lacks the end of session %d", id)
		}
	}
	if t.Failed() {
		t.Logf("dump:\n%s", dump)
	}
}

// dump as hex writes the lines `hexdump -C` would (encoding/hex.Dump
// makes the same).
func TestBuiltinDumpHex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.hex")
	up := testutil.NewUpstream(t, testutil.Echo)
	dumpf := builtin(t, "dump", opts{"format": "hex", "to": path, "direction": "upstream"})
	srv, recs := start(t, filtered(t, "f", up.Addr(), dumpf))
	// One write: it reaches pier as one chunk, so one block from offset 0.
	msg := []byte("GET / HTTP/1.1\r\nHost: pier\r\n\r\n\x00\x01\x7f\xfe\xff")
	rec := echoSession(t, srv, recs, msg)
	if err := dumpf.(io.Closer).Close(); err != nil { // writes what is queued
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dump := string(b)
	if want := fmt.Sprintf("session %d client→upstream ", rec["id"]); !strings.Contains(dump, want) {
		t.Errorf("dump lacks %q:\n%s", want, dump)
	}
	if strings.Contains(dump, "upstream→client") {
		t.Errorf("dump shows the direction it was told to leave alone:\n%s", dump)
	}
	lines := strings.Split(strings.TrimSuffix(hex.Dump(msg), "\n"), "\n")
	for _, l := range lines {
		if !strings.Contains(dump, "\n"+l+"\n") {
			t.Errorf("dump lacks the line\n%s\nin:\n%s", l, dump)
		}
	}
}

// pcap records each session as one TCP stream from the real client
// address to the real upstream address, with every byte each way, as pier's
// reader and tshark both read it back.
func TestBuiltinPcapRecordsSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "route.pcapng")
	// The upstream answers what it read with bytes derived from it, of
	// another length, so the two directions differ.
	answer := func(req []byte) []byte {
		sum := sha256.Sum256(req)
		b := make([]byte, len(req)/2+7)
		rand.NewChaCha8(sum).Read(b)
		return b
	}
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		req, err := io.ReadAll(c)
		if err == nil {
			c.Write(answer(req))
		}
	})
	pcapf := builtin(t, "pcap", opts{"file": path})
	srv, recs := start(t, filtered(t, "f", up.Addr(), pcapf))
	upstream := netip.MustParseAddrPort(up.Addr())

	type sent struct{ req, resp []byte }
	reqs := [][]byte{payload(10, 150<<10+3), payload(11, 70<<10)}
	byClient := map[netip.AddrPort]sent{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, req := range reqs {
		c := dial(t, srv, "f")
		wg.Go(func() {
			s := sendAll(c, req)
			got, err := io.ReadAll(c)
			s(t)
			if want := answer(req); err != nil || !bytes.Equal(got, want) {
				t.Errorf("answer: %d bytes (%v), want %d", len(got), err, len(want))
			}
			mu.Lock()
			byClient[c.LocalAddr().(*net.TCPAddr).AddrPort()] = sent{req, answer(req)}
			mu.Unlock()
		})
	}
	wg.Wait()
	ids := map[netip.AddrPort]any{}
	for range reqs {
		rec := recs.Next(t, wait)
		wantReason(t, rec, "done")
		ids[netip.MustParseAddrPort(rec["client"].(string))] = rec["id"]
	}
	if t.Failed() {
		return
	}

	// The capture is written off the loop: closing the filter, as a
	// reload that drops it does, writes what it has queued.
	if c, ok := pcapf.(io.Closer); ok {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	pkts, err := pcap.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conns, err := pcap.Reassemble(pkts)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != len(reqs) {
		t.Fatalf("capture holds %d connections, want %d", len(conns), len(reqs))
	}
	for _, cn := range conns {
		s, ok := byClient[cn.Client]
		if !ok {
			t.Errorf("capture has a connection from %v, not a client's address (clients: %v)", cn.Client, byClient)
			continue
		}
		if cn.Server != upstream {
			t.Errorf("%v: connection to %v, want the upstream %v", cn.Client, cn.Server, upstream)
		}
		if want := fmt.Sprintf("pier session %d, route f", ids[cn.Client]); cn.Comment != want {
			t.Errorf("%v: comment %q, want %q", cn.Client, cn.Comment, want)
		}
		if !bytes.Equal(cn.ToServer, s.req) || !bytes.Equal(cn.ToClient, s.resp) {
			t.Errorf("%v: captured %d and %d bytes, want %d and %d, unchanged",
				cn.Client, len(cn.ToServer), len(cn.ToClient), len(s.req), len(s.resp))
		}
		if !cn.ClientFIN || !cn.ServerFIN || cn.Reset {
			t.Errorf("%v: FIN from client %v, from server %v, reset %v; want both FINs, no reset",
				cn.Client, cn.ClientFIN, cn.ServerFIN, cn.Reset)
		}
	}

	if _, err := exec.LookPath("tshark"); err != nil && os.Getenv("PIER_REQUIRE_TSHARK") == "" {
		t.Log("tshark not installed: capture not checked with it")
		return
	}
	followed := testutil.TsharkFollow(t, path, len(reqs))
	if len(followed) != len(reqs) {
		t.Fatalf("tshark follows %d streams, want %d", len(followed), len(reqs))
	}
	for client, s := range byClient {
		got, ok := followed[client.String()]
		if !ok {
			t.Errorf("tshark did not follow %v (followed: %d streams)", client, len(followed))
			continue
		}
		if !bytes.Equal(got[0], s.req) || !bytes.Equal(got[1], s.resp) {
			t.Errorf("tshark follows %v: %d and %d bytes, want %d and %d, unchanged",
				client, len(got[0]), len(got[1]), len(s.req), len(s.resp))
		}
	}
}
