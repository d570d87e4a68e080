package relay

import (
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/session"
)

// tinyRecordHello is a ClientHello for name whose handshake message rides
// in 1-byte TLS records (RFC 8446 §5.1 allows it), and how many records.
func tinyRecordHello(t *testing.T, name string) ([]byte, int) {
	t.Helper()
	sni := append([]byte{0, byte(len(name))}, name...)     // host_name length, host_name
	sni = append([]byte{0, byte(len(sni) + 1), 0}, sni...) // server_name_list length, host_name type
	ext := append([]byte{0, 0, 0, byte(len(sni))}, sni...) // server_name, its length
	body := []byte{3, 3}                                   // legacy_version
	body = append(body, make([]byte, 32)...)               // random
	body = append(body, 0, 0, 2, 0x13, 0x01, 1, 0)         // session id, one suite, null compression
	body = append(body, 0, byte(len(ext)))
	body = append(body, ext...)
	msg := append([]byte{1, 0, 0, byte(len(body))}, body...)
	var b []byte
	for _, x := range msg {
		b = append(b, 22, 3, 1, 0, 1, x)
	}
	if h, st := peek.ParseClientHello(b); st != peek.Complete || h.ServerName != name {
		t.Fatalf("the test's hello parses as %+v, %s", h, st)
	}
	return b, len(msg)
}

// A hello in 1-byte records, each its own read, is not parsed again
// after every read: Peeked, passing the parser's Need on, is called about
// once per record (six bytes), not once per byte, and still decides at
// the hello's last byte.
func TestPeekSkipsUntilNeed(t *testing.T) {
	h := newHarness(t)
	hello, records := tinyRecordHello(t, "db.example.com")
	fp := &fakePeek{decide: func(buf []byte, eof bool, _ time.Duration) Decision {
		_, st, need := peek.ParseClientHelloNeed(buf)
		if st == peek.NeedMore && !eof {
			return Decision{Wait: 10 * time.Second, Need: need}
		}
		return Decision{End: session.NoRoute}
	}}
	ps := h.beginPeeking(&Peek{Timeout: 10 * time.Second, Peeked: fp.peeked}, "")
	for i := range hello {
		if ps.c.state != peeking {
			t.Fatalf("decided after %d of %d bytes", i, len(hello))
		}
		h.send(ps, string(hello[i:i+1])) // one read each: the loop reads what is queued
	}
	if r := ps.record(t); r.Reason != session.NoRoute {
		t.Fatalf("ended %v", r.Reason)
	}
	if last := fp.calls[len(fp.calls)-1]; last.buf != string(hello) {
		t.Fatalf("the last call saw %d bytes, want the whole hello's %d", len(last.buf), len(hello))
	}
	t.Logf("%d calls of Peeked for %d bytes in %d records", len(fp.calls), len(hello), records)
	if len(fp.calls) > records+3 {
		t.Errorf("%d calls of Peeked for %d bytes in %d records", len(fp.calls), len(hello), records)
	}
	idleLoop(t, h.l)
}

// Bytes short of Need still reach Peeked at the deadline, and at the
// client's EOF: skipping never leaves a session waiting past them.
func TestPeekNeedDeadlineAndEOF(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		h := newHarness(t)
		fp := &fakePeek{decide: func(buf []byte, _ bool, elapsed time.Duration) Decision {
			if elapsed < 50*time.Millisecond {
				return Decision{Wait: 50 * time.Millisecond, Need: 1000}
			}
			return Decision{End: session.NoRoute}
		}}
		ps := h.beginPeeking(&Peek{Timeout: time.Hour, Peeked: fp.peeked}, "a")
		h.send(ps, "b")
		if len(fp.calls) != 1 {
			t.Fatalf("%d calls before Need", len(fp.calls))
		}
		start := time.Now()
		for ps.c.state != closed {
			if time.Since(start) > 5*time.Second {
				t.Fatal("the deadline never ended the session")
			}
			time.Sleep(5 * time.Millisecond) // the loop's clock is waited for
			h.turn()
		}
		if last := fp.calls[len(fp.calls)-1]; last.buf != "ab" || len(fp.calls) != 2 {
			t.Fatalf("calls %+v, want the deadline's with %q", fp.calls, "ab")
		}
		ps.record(t)
		idleLoop(t, h.l)
	})
	t.Run("eof", func(t *testing.T) {
		h := newHarness(t)
		fp := &fakePeek{decide: func(buf []byte, eof bool, _ time.Duration) Decision {
			if !eof {
				return Decision{Wait: time.Hour, Need: 1000}
			}
			return Decision{End: session.NoRoute}
		}}
		ps := h.beginPeeking(&Peek{Timeout: time.Hour, Peeked: fp.peeked}, "a")
		h.send(ps, "b")
		ps.client.Close()
		h.clientEdge(ps)
		if last := fp.calls[len(fp.calls)-1]; len(fp.calls) != 2 || last.buf != "ab" || !last.eof {
			t.Fatalf("calls %+v, want a second with %q and eof", fp.calls, "ab")
		}
		ps.record(t)
		idleLoop(t, h.l)
	})
}
