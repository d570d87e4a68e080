// Package health checks upstream members: Probe runs one active check;
// State turns results into up/down with rise/fall thresholds; a Checker
// runs the probes of a changing set of members on staggered schedules.
//
// health stands beside the data path, not on it: a pool owns one Checker
// and one State per member, and Pick skips the members whose State is down.
// Of pier, it imports only dial, for IsLocal.
//
//	check := &health.Check{Timeout: time.Second, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}
//	k := health.NewChecker(check, 2*time.Second, log, func(addr netip.AddrPort, err error) {
//		mu.Lock()
//		defer mu.Unlock()
//		if s := states[addr]; s != nil && s.Observe(err == nil) {
//			log.Info("member changed", "member", addr, "up", s.Up(), "err", err)
//		}
//	})
//	k.Set(addrs) // probes every address at once, then every 2 s
//	defer k.Stop()
//
// A failure that is pier's own (out of descriptors, ports or memory) is
// never held against a member: IsLocal tells it apart, and a Checker logs
// it instead of reporting it.
package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/pierproxy/pier/internal/dial"
)

// DefaultTimeout bounds a probe whose Check has no Timeout. It is HAProxy's
// default check interval, which also bounds its checks when "timeout check"
// is unset.
const DefaultTimeout = 2 * time.Second

// maxReply bounds what an ExpectRE check reads: 4 KiB holds any banner or
// status line worth matching, and a member that talks more without matching
// has failed.
const maxReply = 4 << 10

// quoteMax is how much of a reply an error quotes: enough to read an error
// line in a log, never a whole page.
const quoteMax = 64

// The networks a Check probes over (Check.Network).
const (
	TCP = "tcp"
	UDP = "udp"
)

// A Check is how a pool probes its members. Zero Port: the member's port.
// With neither Expect nor ExpectRE the member is healthy once Send is
// written, or, with no Send either, once it accepts the connection.
//
// Over UDP (Network UDP) there is no connection to accept: the probe
// sends Send as one datagram from a connected socket and reads one
// datagram back, which is the whole reply. Only a reply shows that the
// member is up, so a UDP Check should have Expect or ExpectRE (config
// requires one); a member whose port is closed is found by the ICMP port
// unreachable the kernel turns into ECONNREFUSED on the connected socket
// ("port unreachable"). Preface and TLS are not used over UDP.
type Check struct {
	// Network is TCP or UDP; "" is TCP.
	Network string
	// Timeout bounds the whole probe: connect, send, and reading the
	// reply. Zero: DefaultTimeout.
	Timeout time.Duration
	// Port, if not zero, is probed instead of the member's own port, for a
	// member that answers checks on a port of its own.
	Port uint16
	// Send is written once connected; nil: connect only.
	Send []byte
	// Expect: the reply must begin with these bytes. Only as many bytes are
	// awaited as Expect holds.
	Expect []byte
	// ExpectRE: the reply must match this. The reply is read until it
	// matches, the peer closes, 4 KiB are read, or the timeout. If Expect
	// is set too, the reply must satisfy both.
	ExpectRE *regexp.Regexp
	// Preface, if set, gives the bytes written first on connecting to the
	// member at addr (its own address, before Port replaces the port),
	// before Send: a PROXY protocol header for a member that reads one
	// first. Nil, or nil bytes: nothing. It must not block.
	Preface func(addr netip.AddrPort) []byte
	// TLS, if set, gives the client configuration of the member at addr
	// (its own address, as for Preface): the probe completes a TLS
	// handshake with it, after the Preface and before Send, and sends
	// and reads through TLS. A failed handshake fails the check ("tls
	// handshake: ..."). Nil, or a nil config: plain TCP. It must not
	// block.
	TLS func(addr netip.AddrPort) *tls.Config
}

func (c *Check) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Probe checks addr once. It returns nil if the member is healthy, else an
// error that says why in words an operator reads in a log line:
//
//	connect: connection refused
//	connect: timeout after 1s
//	tls handshake: tls: failed to verify certificate: x509: certificate signed by unknown authority
//	timeout after 1s waiting for the reply
//	reply "-ERR\r\n" does not begin with "+PONG"
//	reply "554 go away\r\n" does not match ^220
//	connection closed before a reply
//	reading the reply: port unreachable: connection refused (UDP)
//
// Replies are quoted escaped, at most their first 64 bytes. A timeout
// wraps os.ErrDeadlineExceeded. If IsLocal reports true for the error, the
// probe failed for lack of pier's own resources and says nothing about the
// member: the caller must not count it. If ctx ends first, Probe returns an
// error that wraps ctx's error; it says nothing about the member either.
//
// The connection is closed normally (a FIN, not a RST) so that members do
// not log resets; bytes of the reply that were not needed are left unread.
func (c *Check) Probe(ctx context.Context, addr netip.AddrPort) error {
	var preface []byte
	if c.Preface != nil {
		preface = c.Preface(addr)
	}
	var tlsConfig *tls.Config
	if c.TLS != nil {
		tlsConfig = c.TLS(addr)
	}
	if c.Port != 0 {
		addr = netip.AddrPortFrom(addr.Addr(), c.Port)
	}
	pctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if c.Network == UDP {
		return c.probeUDP(ctx, pctx, addr)
	}
	var d net.Dialer
	conn, err := d.DialContext(pctx, "tcp", addr.String())
	if err != nil {
		return c.failed(ctx, "connect", err)
	}
	defer conn.Close()
	deadline, _ := pctx.Deadline()
	conn.SetDeadline(deadline)
	// A canceled ctx must end a read or write at once, not at the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var rw io.ReadWriter = conn
	if tlsConfig != nil {
		// The PROXY header goes first in the clear, as a session's does;
		// then the handshake, within the probe's deadline.
		if len(preface) > 0 {
			if _, err := conn.Write(preface); err != nil {
				return c.failed(ctx, "send", err)
			}
			preface = nil
		}
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(pctx); err != nil {
			return c.failed(ctx, "tls handshake", err)
		}
		// Close sends close_notify, then closes conn (closed again by
		// the deferred Close, harmlessly).
		defer tc.Close()
		rw = tc
	}
	// One write, so that a member reading a PROXY header first finds
	// the check's bytes right behind it, in one segment.
	if out := append(preface[:len(preface):len(preface)], c.Send...); len(out) > 0 {
		if _, err := rw.Write(out); err != nil {
			return c.failed(ctx, "send", err)
		}
	}
	if len(c.Expect) == 0 && c.ExpectRE == nil {
		return nil
	}
	reply, verdict, rerr := c.readReply(rw)
	if verdict != errMore {
		return verdict
	}
	switch {
	case ctx.Err() != nil:
		return canceled(ctx)
	case !errors.Is(rerr, os.ErrDeadlineExceeded):
		return fmt.Errorf("reading the reply: %w", bareError(rerr))
	case len(reply) == 0:
		return timeoutError(fmt.Sprintf("timeout after %v waiting for the reply", c.timeout()))
	default:
		return timeoutError(fmt.Sprintf("timeout after %v waiting for the rest of the reply %s", c.timeout(), quote(reply)))
	}
}

// probeUDP is Probe over UDP, within pctx (ctx with the probe's timeout):
// connect a UDP socket (which sends nothing, but makes the kernel report
// ICMP errors for it), send Send as one datagram, and judge the first
// datagram that comes back as the whole reply.
func (c *Check) probeUDP(ctx, pctx context.Context, addr netip.AddrPort) error {
	var d net.Dialer
	conn, err := d.DialContext(pctx, "udp", addr.String())
	if err != nil {
		return c.failedUDP(ctx, "connect", err)
	}
	defer conn.Close()
	deadline, _ := pctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(c.Send); err != nil {
		return c.failedUDP(ctx, "send", err)
	}
	if len(c.Expect) == 0 && c.ExpectRE == nil {
		return nil
	}
	// A datagram is read whole or cut: the buffer holds what can decide
	// the check, and one byte more than a log line quotes; the rest of a
	// longer reply is dropped by the kernel, and cannot change the verdict.
	buf := make([]byte, max(c.readLimit(), quoteMax+1))
	n, err := conn.Read(buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			return timeoutError(fmt.Sprintf("timeout after %v waiting for the reply", c.timeout()))
		}
		return c.failedUDP(ctx, "reading the reply", err)
	}
	if v := c.judge(buf[:n], true); v != errClosed {
		return v
	}
	return errEmptyDatagram
}

// failedUDP is failed, where ECONNREFUSED, which a connected UDP socket
// gets from an ICMP port unreachable, says so.
func (c *Check) failedUDP(ctx context.Context, step string, err error) error {
	if ctx.Err() == nil && errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: port unreachable: %w", step, syscall.ECONNREFUSED)
	}
	return c.failed(ctx, step, err)
}

var errEmptyDatagram = errors.New("reply is an empty datagram")

// readReply reads the reply from r until judge decides, and returns what it
// read and the verdict. If a read failed first it returns errMore and the
// read's error; the peer's close is no failure but a verdict.
func (c *Check) readReply(r io.Reader) (reply []byte, verdict, rerr error) {
	// One byte more than a log line quotes, so that the quote of a long
	// wrong reply shows it was cut. judge decides by readLimit bytes, so
	// the buffer never fills undecided.
	buf := make([]byte, max(c.readLimit(), quoteMax+1))
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		if v := c.judge(buf[:n], false); v != errMore {
			return buf[:n], v, nil
		}
		if err == io.EOF {
			return buf[:n], c.judge(buf[:n], true), nil
		}
		if err != nil {
			return buf[:n], errMore, err
		}
	}
}

// failed words an error of the connect or send step.
func (c *Check) failed(ctx context.Context, step string, err error) error {
	if ctx.Err() != nil {
		return canceled(ctx)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return timeoutError(fmt.Sprintf("%s: timeout after %v", step, c.timeout()))
	}
	return fmt.Errorf("%s: %w", step, bareError(err))
}

// timeoutError is a probe that ran out of time. It wraps
// os.ErrDeadlineExceeded without adding the "i/o timeout" its text already
// says.
type timeoutError string

func (e timeoutError) Error() string { return string(e) }
func (e timeoutError) Unwrap() error { return os.ErrDeadlineExceeded }
func (e timeoutError) Timeout() bool { return true }

func canceled(ctx context.Context) error {
	return fmt.Errorf("health: probe canceled: %w", context.Cause(ctx))
}

// bareError strips what the log line already says (the operation, the
// address) from a net error and keeps the errno, so that
// "dial tcp 10.0.0.1:25: connect: connection refused" reads
// "connection refused" after the step's name, and errors.Is still finds
// the errno. A failing system call other than the step's own keeps its name
// ("socket: too many open files").
func bareError(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		switch se.Syscall {
		case "connect", "write", "read":
			return se.Err
		}
		return se
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// IsLocal reports whether err is pier's own shortage rather than the
// member's fault: out of descriptors (EMFILE, ENFILE), ephemeral ports or
// local addresses (EADDRNOTAVAIL), or kernel memory (ENOBUFS, ENOMEM). Skip
// such a result: it must never mark a member down. It is dial.IsLocal, so
// the active and the passive checks blame alike.
func IsLocal(err error) bool { return dial.IsLocal(err) }

// errMore is judge's "undecided: read on".
var errMore = errors.New("health: reply incomplete")

// readLimit is how many reply bytes can decide the check: len(Expect), or
// 4 KiB (more if Expect is longer) when ExpectRE is set.
func (c *Check) readLimit() int {
	if c.ExpectRE != nil {
		return max(maxReply, len(c.Expect))
	}
	return len(c.Expect)
}

// judge says what the reply read so far means for the member: nil for
// healthy, an error for unhealthy, or errMore while the verdict depends on
// bytes yet to come. closed says none will come (the peer closed), and then
// judge always decides; so it does once the reply holds readLimit bytes.
// A verdict once given does not change with more bytes, except that an
// ExpectRE match may be found on a partial reply that the whole reply would
// not match (as with ^OK$ and "OK\r\n"): the check tests after each read.
func (c *Check) judge(reply []byte, closed bool) error {
	if e := c.Expect; len(e) > 0 {
		switch {
		case len(reply) >= len(e):
			if !bytes.HasPrefix(reply, e) {
				return fmt.Errorf("reply %s does not begin with %s", quote(reply), quote(e))
			}
		case len(reply) == 0 && closed:
			return errClosed
		case !bytes.HasPrefix(e, reply):
			// No more bytes can mend a prefix that is already wrong.
			return fmt.Errorf("reply %s does not begin with %s", quote(reply), quote(e))
		case closed:
			return fmt.Errorf("reply %s does not begin with %s: connection closed", quote(reply), quote(e))
		default:
			return errMore
		}
	}
	if re := c.ExpectRE; re != nil {
		switch {
		case re.Match(reply):
		case len(reply) == 0 && closed:
			return errClosed
		case closed || len(reply) >= c.readLimit():
			return fmt.Errorf("reply %s does not match %s", quote(reply), re)
		default:
			return errMore
		}
	}
	return nil
}

var errClosed = errors.New("connection closed before a reply")

// quote escapes at most the first 64 bytes of b for a log line.
func quote(b []byte) string {
	if len(b) > quoteMax {
		return strconv.Quote(string(b[:quoteMax])) + "..."
	}
	return strconv.Quote(string(b))
}
