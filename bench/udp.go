package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// The UDP half of the bench (bench/udp): a UDP echo upstream and three
// loads, each returning Results like the TCP ones:
//
//	UDPRate   datagrams echoed per second over F flows (sockets), a window
//	          of datagrams in flight (closed loop), or paced at a fixed rate
//	          (open loop, for loss); loss = sent - received after a drain
//	UDPRR     a query per new socket (DNS-like): queries/s, p50, p99
//	UDPIdle   N flows opened (one datagram echoed each), then held idle:
//	          what the proxy process holds for them (KB, fds)

// udpEchoBatch is how many datagrams an echo socket reads (recvmmsg) and
// writes back (sendmmsg) per system call at most.
const udpEchoBatch = 32

// udpMaxDatagram is the largest UDP payload over IPv4.
const udpMaxDatagram = 65507

// udpEchoRcvBuf is the receive buffer the echo asks for on each socket
// (the kernel caps it at net.core.rmem_max): a burst from a proxy's many
// flow sockets lands on it, and the echo must not be where datagrams are
// lost.
const udpEchoRcvBuf = 4 << 20

// ListenUDPEcho opens n UDP sockets on addr with SO_REUSEPORT (the kernel
// spreads senders over them by their addresses), for UDPEcho. n <= 0
// means one per CPU. Port 0 picks a free port for the first and binds the
// rest to it.
func ListenUDPEcho(addr string, n int) ([]*net.UDPConn, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	var conns []*net.UDPConn
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		c := pc.(*net.UDPConn)
		c.SetReadBuffer(udpEchoRcvBuf)
		conns = append(conns, c)
		addr = c.LocalAddr().String() // the rest join the first's port
	}
	return conns, nil
}

// UDPEcho serves conns until ctx is done: every datagram goes back to its
// sender unchanged, read and written in batches (recvmmsg, sendmmsg) by a
// goroutine per socket. It is the upstream of every bench/udp column.
// It closes conns when it returns.
func UDPEcho(ctx context.Context, conns []*net.UDPConn) error {
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i, c := range conns {
		wg.Go(func() { errs[i] = echoDatagrams(ctx, c) })
	}
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.Close()
		}
	})
	wg.Wait()
	if stop() { // returned on its own: an error, not ctx
		for _, c := range conns {
			c.Close()
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// echoDatagrams is one echo socket's goroutine.
func echoDatagrams(ctx context.Context, c *net.UDPConn) error {
	pc := ipv4.NewPacketConn(c)
	ms := make([]ipv4.Message, udpEchoBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, udpMaxDatagram)}
	}
	for {
		n, err := pc.ReadBatch(ms, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bench: udp echo: %w", err)
		}
		out := ms[:n]
		for i := range out {
			out[i].Buffers[0] = out[i].Buffers[0][:out[i].N]
		}
		for len(out) > 0 {
			k, err := pc.WriteBatch(out, 0)
			if err != nil {
				// A sender gone (ICMP) fails only its datagram: skip it.
				if ctx.Err() != nil {
					return nil
				}
				k = 1
			}
			out = out[k:]
		}
		for i := range ms[:n] {
			ms[i].Buffers[0] = ms[i].Buffers[0][:cap(ms[i].Buffers[0])]
		}
	}
}

// UDPRateConfig says how UDPRate runs. Zero fields take the defaults.
type UDPRateConfig struct {
	Test     string        // result test name: "udp" (default) or "udploss" for a paced run
	Size     int           // datagram payload bytes, 16 to 65507; 0 means 64
	Flows    int           // client sockets, each a flow at the proxy; 0 means 1
	Window   int           // closed loop: datagrams in flight over all flows; 0 means 64
	Pace     float64       // datagrams/s over all flows, open loop; 0: closed loop with Window
	Duration time.Duration // per target, over all rounds; 0 means 10s
	Rounds   int           // turns each target takes (see interleave); 0 means 1
	// Timeout is how long a closed-loop flow waits for any echo before it
	// counts what it has in flight as lost and sends again; 0 means 100ms.
	Timeout time.Duration
	// Drain is how long, after a round's window, late echoes are still
	// counted as received (not in the rate); 0 means 300ms.
	Drain time.Duration
}

func (c UDPRateConfig) test() string {
	if c.Test == "" {
		return "udp"
	}
	return c.Test
}

func (c UDPRateConfig) size() int {
	if c.Size <= 0 {
		return 64
	}
	return min(max(c.Size, udpHeader), udpMaxDatagram)
}

func (c UDPRateConfig) flows() int             { return max(c.Flows, 1) }
func (c UDPRateConfig) rounds() int            { return max(c.Rounds, 1) }
func (c UDPRateConfig) window() int            { return cmpOr(c.Window, 64) }
func (c UDPRateConfig) timeout() time.Duration { return cmpOr(c.Timeout, 100*time.Millisecond) }
func (c UDPRateConfig) drain() time.Duration   { return cmpOr(c.Drain, 300*time.Millisecond) }

func (c UDPRateConfig) duration() time.Duration {
	return cmpOr(c.Duration, 10*time.Second)
}

// cmpOr returns v if it is positive, else def.
func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// udpHeader is the bytes at the start of every load datagram: the flow's
// number and the datagram's sequence number, so a datagram that comes back
// to the wrong flow, or changed, is caught. The rest is a fixed pattern.
const udpHeader = 16

// udpPattern is the filler of every datagram after its header.
var udpPattern = func() []byte {
	b := make([]byte, udpMaxDatagram)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

// udpCount is what a round of UDPRate counted.
type udpCount struct {
	sent, received, inWindow, wrong, stalls, refused atomic.Int64
}

// UDPRate sends datagrams of cfg.Size bytes through each target from
// cfg.Flows sockets and counts their echoes. Closed loop (no Pace): at
// most cfg.Window datagrams are in flight over all flows (at most
// ceil(Window/Flows) per flow), each echo lets another go, and a flow that
// hears nothing for cfg.Timeout counts its in-flight ones as gone and
// sends again: the most the column carries. Paced: cfg.Pace datagrams/s
// over the flows, round robin, whatever comes back.
//
// PerSec is the datagrams echoed within the rounds' windows per second;
// after each window the load waits cfg.Drain for late echoes, and Lost is
// sent − received (late ones included). Wrong counts datagrams that came
// back changed, to another flow, or more often than sent: not received.
// Ops is every datagram received, for the CPU cost per datagram.
func UDPRate(ctx context.Context, cfg UDPRateConfig, targets []Target) []Result {
	rounds := cfg.rounds()
	results := newResults(targets, Result{
		Test: cfg.test(), Size: cfg.size(), Flows: cfg.flows(), Seconds: cfg.duration().Seconds(),
		Window: cfg.window(), Pace: cfg.Pace,
	})
	if cfg.Pace > 0 {
		for i := range results {
			results[i].Window = 0
		}
	}
	var inWindow = make([]int64, len(targets))
	interleave(ctx, results, rounds, func(i int) error {
		r := &results[i]
		conns, err := dialFlows(targets[i].Addr, cfg.flows())
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		if err != nil {
			return err
		}
		var n udpCount
		cpu := startCPU(targets[i].PID)
		elapsed, err := udpRateRound(ctx, cfg, conns, perRound(cfg.duration(), rounds), &n)
		cpu.end(r)
		r.Elapsed += elapsed.Seconds()
		r.Sent += n.sent.Load()
		r.Ops += n.received.Load()
		r.Wrong += n.wrong.Load()
		r.Stalls += n.stalls.Load()
		if k := n.refused.Load(); k > 0 {
			r.Errors += k
			if r.FirstError == "" {
				r.FirstError = "ICMP port unreachable (ECONNREFUSED): nothing listened for a moment"
			}
		}
		inWindow[i] += n.inWindow.Load()
		if err != nil {
			return err
		}
		if n.inWindow.Load() == 0 {
			return fmt.Errorf("no datagram came back (%d sent)", n.sent.Load())
		}
		return nil
	})
	for i := range results {
		r := &results[i]
		r.Lost = r.Sent - r.Ops
		if r.Error != "" || r.Elapsed == 0 {
			continue
		}
		r.PerSec = float64(inWindow[i]) / r.Elapsed
		finishCPU(r)
	}
	return results
}

// dialFlows opens n UDP sockets connected to addr: n flows at the proxy.
func dialFlows(addr string, n int) ([]*net.UDPConn, error) {
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	conns := make([]*net.UDPConn, 0, n)
	for range n {
		c, err := net.DialUDP("udp4", nil, raddr)
		if err != nil {
			return conns, fmt.Errorf("after %d of %d flows: %w", len(conns), n, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// udpRateRound runs one round on conns for dur, then drains; it returns
// the window's length.
func udpRateRound(ctx context.Context, cfg UDPRateConfig, conns []*net.UDPConn, dur time.Duration, n *udpCount) (time.Duration, error) {
	start := time.Now()
	end := start.Add(dur)
	drainEnd := end.Add(cfg.drain())
	window, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	if cfg.Pace > 0 {
		for f, c := range conns {
			wg.Go(func() { errs[f] = receiveFlow(c, f, cfg.size(), end, drainEnd, n) })
		}
		err := paceFlows(window, conns, cfg.size(), cfg.Pace, n)
		wg.Wait()
		return dur, errors.Join(append(errs, err)...)
	}
	credits := make(chan struct{}, cfg.window())
	for range cfg.window() {
		credits <- struct{}{}
	}
	perFlow := (cfg.window() + len(conns) - 1) / len(conns)
	for f, c := range conns {
		wg.Go(func() {
			errs[f] = loopFlow(window, c, f, cfg.size(), perFlow, credits, cfg.timeout(), n)
			if errs[f] == nil {
				errs[f] = receiveFlow(c, f, cfg.size(), end, drainEnd, n)
			}
		})
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		if err != nil {
			first = err
			break
		}
	}
	if ctx.Err() != nil {
		return dur, ctx.Err()
	}
	return dur, first
}

// loopFlow is one flow of the closed loop until ctx's deadline: it keeps
// up to perFlow datagrams in flight, each holding a credit of the load's
// window, and sends another as each comes back.
func loopFlow(ctx context.Context, c *net.UDPConn, flow, size, perFlow int, credits chan struct{}, timeout time.Duration, n *udpCount) error {
	end, _ := ctx.Deadline()
	out := make([]byte, size)
	copy(out, udpPattern[:size])
	binary.LittleEndian.PutUint64(out, uint64(flow))
	in := make([]byte, size+1) // one more: a longer datagram shows
	inFlight := 0
	var seq, sent, received int64
	defer func() {
		for range inFlight {
			credits <- struct{}{}
		}
	}()
	// The loop ends at the window's end by the clock, not by ctx alone,
	// whose timer may fire a little late: a read deadline already past
	// would time out at once and send the window again and again.
	for ctx.Err() == nil && time.Now().Before(end) {
	fill:
		for inFlight < perFlow {
			if inFlight == 0 {
				select {
				case <-credits:
				case <-ctx.Done():
					return nil
				}
			} else {
				select {
				case <-credits:
				default:
					break fill // the window is full
				}
			}
			binary.LittleEndian.PutUint64(out[8:], uint64(seq))
			seq++
			if _, err := c.Write(out); err != nil {
				credits <- struct{}{}
				if isRefused(err) {
					n.refused.Add(1)
					break fill
				}
				return err
			}
			inFlight++
			sent++
			n.sent.Add(1)
		}
		deadline := time.Now().Add(timeout)
		if deadline.After(end) {
			deadline = end
		}
		c.SetReadDeadline(deadline)
		k, err := c.Read(in)
		if err != nil {
			if isTimeout(err) {
				if !time.Now().Before(end) {
					return nil
				}
				// Nothing for a while: what is in flight is lost (or
				// late: counted if it comes); send afresh.
				if inFlight > 0 {
					n.stalls.Add(1)
				}
				for ; inFlight > 0; inFlight-- {
					credits <- struct{}{}
				}
				continue
			}
			if isRefused(err) {
				// An ICMP port unreachable (socat between two forks):
				// counted; the datagrams in flight may still come.
				n.refused.Add(1)
				continue
			}
			return err
		}
		if !udpEchoOK(in[:k], flow, size) || received >= sent {
			n.wrong.Add(1)
			continue
		}
		received++
		n.received.Add(1)
		if time.Now().Before(end) {
			n.inWindow.Add(1)
		}
		if inFlight > 0 {
			inFlight--
			credits <- struct{}{}
		}
	}
	return nil
}

// paceFlows sends rate datagrams/s over conns, round robin, until ctx's
// deadline, in bursts of whatever fell due since the last one.
func paceFlows(ctx context.Context, conns []*net.UDPConn, size int, rate float64, n *udpCount) error {
	outs := make([][]byte, len(conns))
	for f := range conns {
		outs[f] = make([]byte, size)
		copy(outs[f], udpPattern[:size])
		binary.LittleEndian.PutUint64(outs[f], uint64(f))
	}
	start := time.Now()
	var sent int64
	f := 0
	for ctx.Err() == nil {
		due := int64(rate * time.Since(start).Seconds())
		for ; sent < due; sent++ {
			binary.LittleEndian.PutUint64(outs[f][8:], uint64(sent))
			if _, err := conns[f].Write(outs[f]); err != nil {
				if !isRefused(err) {
					return err
				}
				n.refused.Add(1)
			}
			n.sent.Add(1)
			f = (f + 1) % len(conns)
		}
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
		}
	}
	return nil
}

// receiveFlow counts the echoes a flow receives until drainEnd: those
// before end count in the rate too.
func receiveFlow(c *net.UDPConn, flow, size int, end, drainEnd time.Time, n *udpCount) error {
	in := make([]byte, size+1)
	c.SetReadDeadline(drainEnd)
	for {
		k, err := c.Read(in)
		if err != nil {
			if isTimeout(err) {
				return nil
			}
			if isRefused(err) {
				n.refused.Add(1)
				continue
			}
			return err
		}
		if !udpEchoOK(in[:k], flow, size) {
			n.wrong.Add(1)
			continue
		}
		n.received.Add(1)
		if time.Now().Before(end) {
			n.inWindow.Add(1)
		}
	}
}

// udpEchoOK reports whether d is an echo of a datagram flow sent: its
// size, its flow's number and the pattern after the header.
func udpEchoOK(d []byte, flow, size int) bool {
	return len(d) == size && binary.LittleEndian.Uint64(d) == uint64(flow) &&
		string(d[udpHeader:]) == string(udpPattern[udpHeader:size])
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// isRefused reports an ICMP port unreachable on a connected UDP socket.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// UDPRRConfig says how UDPRR runs. Zero fields take the defaults.
type UDPRRConfig struct {
	Clients  int           // concurrent clients, a query in flight each; 0 means 1
	Size     int           // query (and reply) bytes; 0 means 64
	Duration time.Duration // per target, over all rounds; 0 means 10s
	Rounds   int           // turns each target takes; 0 means 1
	Timeout  time.Duration // a query with no answer by then is lost; 0 means 1s
}

// UDPRR runs DNS-like queries through each target: every query from a
// new socket (a new flow at the proxy, which a proxy told "one response"
// ends with its answer), one in flight per client. PerSec is answered
// queries per second; P50us and P99us are from the query's write to its
// answer (the socket's creation is not timed); Lost counts queries with
// no answer within cfg.Timeout; Errors counts failed system calls, and
// Wrong answers that differ from their query.
func UDPRR(ctx context.Context, cfg UDPRRConfig, targets []Target) []Result {
	size := UDPRateConfig{Size: cfg.Size}.size()
	rounds := max(cfg.Rounds, 1)
	dur := cmpOr(cfg.Duration, 10*time.Second)
	timeout := cmpOr(cfg.Timeout, time.Second)
	clients := max(cfg.Clients, 1)
	results := newResults(targets, Result{Test: "udprr", Workers: clients, Size: size, Seconds: dur.Seconds()})
	lats := make([][]time.Duration, len(targets))
	interleave(ctx, results, rounds, func(i int) error {
		r := &results[i]
		raddr, err := net.ResolveUDPAddr("udp4", targets[i].Addr)
		if err != nil {
			return err
		}
		cpu := startCPU(targets[i].PID)
		start := time.Now()
		end := start.Add(perRound(dur, rounds))
		per := make([]udpRRClient, clients)
		var wg sync.WaitGroup
		for c := range per {
			wg.Go(func() { per[c].run(ctx, raddr, c, size, end, timeout) })
		}
		wg.Wait()
		r.Elapsed += time.Since(start).Seconds()
		cpu.end(r)
		var done int64
		for _, p := range per {
			lats[i] = append(lats[i], p.lats...)
			done += int64(len(p.lats))
			r.Sent += p.sent
			r.Lost += p.lost
			r.Wrong += p.wrong
			r.Errors += p.errors
			if r.FirstError == "" && p.firstErr != nil {
				r.FirstError = p.firstErr.Error()
			}
		}
		if done == 0 {
			return fmt.Errorf("no query answered (%d sent, %d lost): %s", r.Sent, r.Lost, r.FirstError)
		}
		return nil
	})
	for i := range results {
		r := &results[i]
		r.Ops = int64(len(lats[i]))
		if r.Error != "" {
			continue
		}
		slices.Sort(lats[i])
		r.PerSec = float64(r.Ops) / r.Elapsed
		r.P50us = percentile(lats[i], 0.50)
		r.P99us = percentile(lats[i], 0.99)
		finishCPU(r)
	}
	return results
}

// udpRRClient is one client of UDPRR and what it counted.
type udpRRClient struct {
	lats                      []time.Duration
	sent, lost, wrong, errors int64
	firstErr                  error
}

func (p *udpRRClient) fail(err error) {
	p.errors++
	if p.firstErr == nil {
		p.firstErr = err
	}
}

func (p *udpRRClient) run(ctx context.Context, raddr *net.UDPAddr, id, size int, end time.Time, timeout time.Duration) {
	p.lats = make([]time.Duration, 0, 1<<12)
	q := make([]byte, size)
	copy(q, udpPattern[:size])
	binary.LittleEndian.PutUint64(q, uint64(id))
	in := make([]byte, size+1)
	for seq := uint64(0); ctx.Err() == nil && time.Now().Before(end); seq++ {
		c, err := net.DialUDP("udp4", nil, raddr)
		if err != nil {
			p.fail(err)
			// A socket that cannot be had now (descriptors, ports) is not
			// the proxy's doing: back off a little rather than spin.
			time.Sleep(time.Millisecond)
			continue
		}
		binary.LittleEndian.PutUint64(q[8:], seq)
		t0 := time.Now()
		c.SetDeadline(t0.Add(timeout))
		if _, err := c.Write(q); err != nil {
			p.fail(err)
			c.Close()
			continue
		}
		p.sent++
		for {
			k, err := c.Read(in)
			if err != nil {
				if isTimeout(err) {
					p.lost++
				} else {
					p.fail(err)
				}
				break
			}
			if k != size || string(in[:k]) != string(q) {
				p.wrong++
				continue // keep waiting for the right one
			}
			p.lats = append(p.lats, time.Since(t0))
			break
		}
		c.Close()
	}
}

// UDPIdleConfig says how many flows UDPIdle holds and on which process it
// measures their cost. Zero fields take the defaults.
type UDPIdleConfig struct {
	Addr   string
	Flows  int           // flows held at once; 0 means 3000
	PID    int           // the proxy: this process and all its descendants are measured
	Settle time.Duration // wait after the last echo before measuring; 0 means 500ms
	// Dialers is how many flows are opened at once; 0 means 32. socat
	// needs 1: a datagram that comes while it forks for another client
	// lands in that child's socket and is lost to its own flow.
	Dialers int
}

// udpIdleTries is how often a flow of UDPIdle sends its datagram before
// it gives up: a datagram may be lost, a flow must exist.
const udpIdleTries = 10

// UDPIdle measures what an idle flow costs the proxy: it reads the
// resident memory and open descriptors of cfg.PID and its children, opens
// cfg.Flows sockets that each send one byte and read its echo (so the
// proxy holds the flow and its upstream side), measures again, and
// closes them all. KBPerConn and FDPerConn are per flow.
func UDPIdle(ctx context.Context, cfg UDPIdleConfig) (Result, error) {
	n := cmpOr(cfg.Flows, 3000)
	res := Result{Test: "udpidle", Conns: n}
	if cfg.PID <= 0 {
		return res, errors.New("udp idle: no proxy process to measure")
	}
	raddr, err := net.ResolveUDPAddr("udp4", cfg.Addr)
	if err != nil {
		return res, err
	}
	before, err := measureTree(cfg.PID)
	if err != nil {
		return res, err
	}
	start := time.Now()
	conns := make([]*net.UDPConn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	errs := make([]error, cmpOr(cfg.Dialers, idleDialers))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if conns[i], errs[w] = udpIdleFlow(raddr); errs[w] != nil {
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(start).Seconds()
	select {
	case <-time.After(cmpOr(cfg.Settle, 500*time.Millisecond)):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	after, err := measureTree(cfg.PID)
	if err != nil {
		return res, err
	}
	res.Procs = after.procs
	res.RSSBefore, res.RSSAfter = before.rssKB, after.rssKB
	res.FDBefore, res.FDAfter = before.fds, after.fds
	res.KBPerConn = float64(after.rssKB-before.rssKB) / float64(n)
	res.FDPerConn = float64(after.fds-before.fds) / float64(n)
	return res, nil
}

// udpIdleFlow opens one flow through the proxy: a socket that has sent a
// byte and had it back.
func udpIdleFlow(raddr *net.UDPAddr) (*net.UDPConn, error) {
	c, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 2)
	for range udpIdleTries {
		c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err = c.Write([]byte{'i'}); err != nil {
			break
		}
		var k int
		if k, err = c.Read(b); err == nil && k == 1 && b[0] == 'i' {
			c.SetDeadline(time.Time{})
			return c, nil
		}
		if err != nil && !isTimeout(err) && !isRefused(err) {
			break
		}
	}
	c.Close()
	return nil, fmt.Errorf("no echo of a flow's datagram after %d tries: %v", udpIdleTries, err)
}

// WaitUDP sends a datagram to addr every 50 ms until one comes back or
// ctx is done: a UDP column is up when it forwards.
func WaitUDP(ctx context.Context, addr string) error {
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err
	}
	c, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		return err
	}
	defer c.Close()
	b := make([]byte, 8)
	var last error
	for ctx.Err() == nil {
		c.SetDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Write([]byte("wait")); err != nil {
			last = err
			// ECONNREFUSED: nothing listens yet; try again after a pause.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		k, err := c.Read(b)
		if err == nil && string(b[:k]) == "wait" {
			return nil
		}
		if err != nil {
			last = err
			if !isTimeout(err) {
				select {
				case <-time.After(50 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		}
	}
	return fmt.Errorf("%s echoed no datagram: %v", addr, last)
}
