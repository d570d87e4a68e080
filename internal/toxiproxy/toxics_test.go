package toxiproxy_test

import (
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

// Timing bounds are generous on the slow side: the machine is shared.

// A latency toxic added to a live connection delays it; removed, it no
// longer does.
func TestLatencyOnALiveConnection(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "lat")
	c := dial(t, p.Listen)
	if rtt := roundTrip(t, c, "before"); rtt > 150*time.Millisecond {
		t.Logf("slow machine: %v before any toxic", rtt)
	}
	if _, err := p.AddToxic("", "latency", "downstream", 1, toxiclient.Attributes{"latency": 300}); err != nil {
		t.Fatal(err)
	}
	if rtt := roundTrip(t, c, "during"); rtt < 290*time.Millisecond || rtt > 3*time.Second {
		t.Errorf("round trip with 300ms downstream latency: %v", rtt)
	}
	if err := p.RemoveToxic("latency_downstream"); err != nil {
		t.Fatal(err)
	}
	// The removal reaches the connection at once.
	if rtt := roundTrip(t, c, "after"); rtt > 290*time.Millisecond {
		t.Errorf("round trip after the toxic was removed: %v", rtt)
	}
	// Upstream latency counts too, once per round trip.
	if _, err := p.AddToxic("", "latency", "upstream", 1, toxiclient.Attributes{"latency": 200}); err != nil {
		t.Fatal(err)
	}
	if rtt := roundTrip(t, c, "up"); rtt < 190*time.Millisecond || rtt > 3*time.Second {
		t.Errorf("round trip with 200ms upstream latency: %v", rtt)
	}
}

// toxicity 0 never acts; noop changes nothing.
func TestToxicityZeroAndNoopLeaveBytesAlone(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "calm")
	if _, err := p.AddToxic("", "latency", "", 0, toxiclient.Attributes{"latency": 500}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddToxic("", "noop", "upstream", 1, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if rtt := roundTrip(t, dial(t, p.Listen), strings.Repeat("x", 1000+i)); rtt >= 490*time.Millisecond {
			t.Errorf("connection %d: round trip %v with a toxicity-0 500ms latency", i, rtt)
		}
	}
}

func TestBandwidthLimitsTheRate(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "bw")
	// 100 KB/s: 60 KB take at least 0.5s beyond the 10 KB bucket.
	if _, err := p.AddToxic("", "bandwidth", "", 1, toxiclient.Attributes{"rate": 100}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Listen)
	msg := strings.Repeat("b", 60_000)
	go c.Write([]byte(msg))
	start := time.Now()
	c.SetReadDeadline(start.Add(10 * time.Second))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 5*time.Second {
		t.Errorf("60 KB at 100 KB/s took %v, want about 0.5s", d)
	}
}

func TestSlowCloseHoldsTheEnd(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "sc")
	if _, err := p.AddToxic("", "slow_close", "", 1, toxiclient.Attributes{"delay": 500}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Listen)
	roundTrip(t, c, "bye")
	start := time.Now()
	c.CloseWrite() // the echo upstream finishes in turn; its FIN is held
	c.SetReadDeadline(start.Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("read %d, %v; want EOF", n, err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 5*time.Second {
		t.Errorf("EOF %v after the client's FIN, want about 500ms", d)
	}
}

func TestTimeoutDropsThenCloses(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "to")
	if _, err := p.AddToxic("", "timeout", "upstream", 1, toxiclient.Attributes{"timeout": 500}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Listen)
	start := time.Now()
	c.Write([]byte("lost"))
	c.SetReadDeadline(start.Add(10 * time.Second))
	n, err := c.Read(make([]byte, 8))
	if n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want nothing, then EOF", n, err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 5*time.Second {
		t.Errorf("closed after %v, want about 500ms", d)
	}

	// timeout 0 never closes, until the toxic is removed: that closes.
	if _, err := p.UpdateToxic("timeout_upstream", 1, toxiclient.Attributes{"timeout": 0}); err != nil {
		t.Fatal(err)
	}
	c = dial(t, p.Listen)
	c.Write([]byte("lost"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 8)); !errors.Is(err, syscall.EAGAIN) && !isTimeout(err) {
		t.Fatalf("timeout 0: read %d, %v; want nothing until the deadline", n, err)
	}
	if err := p.RemoveToxic("timeout_upstream"); err != nil {
		t.Fatal(err)
	}
	// The removal reaches the idle connection at once: no byte needs to
	// move for it, and none is left unread, so the end is a clean one.
	start = time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("after the timeout toxic's removal: read %d, %v; want EOF", n, err)
	}
	t.Logf("closed %v after the removal", time.Since(start))
}

// Bytes a bandwidth rate-0 toxic (a stall) holds on an idle connection
// leave as soon as the toxic is removed, as Toxiproxy lets them go, with
// no further byte either way; the connection goes on.
func TestRemovingAStallReleasesItsBytes(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "stall")
	c := dial(t, p.Listen)
	roundTrip(t, c, "before")
	if _, err := p.AddToxic("stall", "bandwidth", "downstream", 1, toxiclient.Attributes{"rate": 0}); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("held"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 8)); !isTimeout(err) {
		t.Fatalf("under the stall: read %d, %v; want nothing until the deadline", n, err)
	}
	if err := p.RemoveToxic("stall"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after the stall's removal: read %q, %v; want the held bytes", buf, err)
	}
	t.Logf("released %v after the removal", time.Since(start))
	roundTrip(t, c, "after")
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func TestResetPeerResets(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "rp")
	if _, err := p.AddToxic("", "reset_peer", "upstream", 1, toxiclient.Attributes{"timeout": 200}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Listen)
	// Nothing happens before the first byte.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("before any byte: %v, want no end yet", err)
	}
	start := time.Now()
	c.Write([]byte("x"))
	c.SetReadDeadline(start.Add(10 * time.Second))
	n, err := c.Read(make([]byte, 8))
	if n != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %d, %v; want connection reset", n, err)
	}
	if d := time.Since(start); d < 190*time.Millisecond || d > 5*time.Second {
		t.Errorf("reset %v after the first byte, want about 200ms", d)
	}
}

func TestSlicerSlices(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "sl")
	if _, err := p.AddToxic("", "slicer", "", 1, toxiclient.Attributes{"average_size": 10, "size_variation": 0, "delay": 20_000}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Listen)
	msg := strings.Repeat("s", 200)
	c.Write([]byte(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1000)
	reads, total := 0, 0
	for total < len(msg) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
		reads++
		total += n
	}
	// 20 slices of 10 bytes, 20ms apart; a busy reader may find two or
	// more together, but not all of them.
	if reads < 8 {
		t.Errorf("200 bytes came in %d reads, want about 20 slices", reads)
	}
}

func TestLimitDataPassesExactlyThenEnds(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "ld")
	if _, err := p.AddToxic("", "limit_data", "", 1, toxiclient.Attributes{"bytes": 6}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Listen)
	roundTrip(t, c, "abcd")
	c.Write([]byte("efgh"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if string(got) != "ef" || err != nil {
		t.Errorf("after 4 of 6 bytes, sent 4 more: read %q, %v; want \"ef\" then EOF", got, err)
	}
}
