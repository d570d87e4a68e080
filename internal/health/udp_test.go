package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// udpMember starts a UDP member on 127.0.0.1:0 that answers each datagram
// it gets with reply(datagram) (nil: no answer), and records what it got.
// It stops when the test ends.
func udpMember(t *testing.T, reply func([]byte) []byte) (netip.AddrPort, <-chan []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed by the cleanup
			}
			d := append([]byte(nil), buf[:n]...)
			select {
			case got <- d:
			default:
			}
			if r := reply(d); r != nil {
				pc.WriteTo(r, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), got
}

// closedUDPPort returns a loopback UDP port where nothing listens: the
// kernel answers a datagram to it with ICMP port unreachable.
func closedUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return addr
}

func echo(d []byte) []byte { return d }

// A UDP probe sends Send as one datagram and judges the one that comes
// back, in the TCP probe's words; a closed port is "port unreachable"
// (ECONNREFUSED from the ICMP error), a silent member a timeout.
func TestProbeUDPVerdicts(t *testing.T) {
	query := []byte("\x12\x34 query")
	echoAddr, got := udpMember(t, echo)
	fixed := func(s string) func([]byte) []byte { return func([]byte) []byte { return []byte(s) } }
	pong, _ := udpMember(t, fixed("+PONG extra"))
	empty, _ := udpMember(t, fixed(""))
	long, _ := udpMember(t, fixed(strings.Repeat("x", 9000)))
	silent, _ := udpMember(t, func([]byte) []byte { return nil })
	closed := closedUDPPort(t)

	for _, tc := range []struct {
		name  string
		check Check
		addr  netip.AddrPort
		want  string // "" healthy; else the error's text
	}{
		{"echo expect", Check{Send: query, Expect: query}, echoAddr, ""},
		{"expect prefix", Check{Send: ping, Expect: []byte("+PONG")}, pong, ""},
		{"expect regexp", Check{Send: ping, ExpectRE: regexp.MustCompile(`^\+PONG e`)}, pong, ""},
		{"wrong reply", Check{Send: ping, Expect: []byte("+OK")}, pong, `reply "+PONG extra" does not begin with "+OK"`},
		{"regexp no match", Check{Send: ping, ExpectRE: regexp.MustCompile(`^-ERR`)}, pong, `reply "+PONG extra" does not match ^-ERR`},
		{"reply shorter than expect", Check{Send: ping, Expect: []byte("+PONG extra and more")}, pong, `reply "+PONG extra" does not begin with "+PONG extra and more": connection closed`},
		{"empty reply", Check{Send: ping, Expect: []byte("+PONG")}, empty, "reply is an empty datagram"},
		{"long reply cut to what decides", Check{Send: ping, Expect: []byte("xxx")}, long, ""},
		{"closed port", Check{Send: ping, Expect: []byte("+PONG")}, closed, "reading the reply: port unreachable: connection refused"},
		{"silent", Check{Send: ping, Expect: []byte("+PONG"), Timeout: 200 * time.Millisecond}, silent, "timeout after 200ms waiting for the reply"},
		{"port override", Check{Send: ping, Expect: []byte("+PONG"), Port: pong.Port()}, silent, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check.Network = UDP
			if tc.check.Timeout == 0 {
				tc.check.Timeout = 5 * time.Second
			}
			err := tc.check.Probe(context.Background(), tc.addr)
			if errText(err) != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(tc.want, "timeout") && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("timeout %v does not wrap os.ErrDeadlineExceeded", err)
			}
			if strings.Contains(tc.want, "unreachable") && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("%v does not wrap ECONNREFUSED", err)
			}
			if IsLocal(err) {
				t.Errorf("%v counted as pier's own shortage", err)
			}
		})
	}
	// The probe's datagram arrived whole, as one.
	select {
	case d := <-got:
		if string(d) != string(query) {
			t.Errorf("member got %q, want %q", d, query)
		}
	default:
		t.Error("the echo member got nothing")
	}
}

// Over UDP the probe reads a datagram: without Network UDP, the same
// Check against a UDP member fails to connect over TCP, so the network
// is what made the verdicts above.
func TestProbeUDPNeedsNetwork(t *testing.T) {
	addr, _ := udpMember(t, echo)
	c := &Check{Send: ping, Expect: ping, Timeout: time.Second}
	if err := c.Probe(context.Background(), addr); err == nil {
		t.Fatal("a TCP probe of a UDP-only member passed")
	}
	c.Network = UDP
	if err := c.Probe(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
}

// A canceled ctx ends a UDP probe waiting for its reply at once, saying
// nothing about the member.
func TestProbeUDPEndsWithCtx(t *testing.T) {
	silent, got := udpMember(t, func([]byte) []byte { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Check{Network: UDP, Send: ping, Expect: ping, Timeout: time.Minute}).Probe(ctx, silent)
	}()
	select {
	case <-got: // the probe is waiting for its reply
	case <-time.After(10 * time.Second):
		t.Fatal("the probe sent nothing")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want it to wrap context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the probe did not end with its ctx")
	}
}
