// Package udp forwards and balances datagrams: flows keyed by client
// address, each sent to one member of its route's pool from a connected
// socket of its own, with the replies sent back to the client from the
// listener's address. It is pier's UDP engine, beside the TCP relay
// (internal/relay), and takes the routes of a route.Table whose Protocol
// is route.UDP; the TCP proxy skips them.
//
// Each UDP listen address is opened Options.Sockets times with
// SO_REUSEPORT, so the kernel's hash of the 4-tuple keeps each client on
// one socket; each socket has one goroutine of its own, with its own
// epoll instance, flow table and timer heap (socket.go). That goroutine
// blocks only in epoll_wait, bounded by its next timer. It receives
// client datagrams in batches (recvmmsg, 8 × 64 KiB buffers, so a 64 KiB
// datagram passes whole), looks the flow up by client address and sends
// each datagram on the flow's connected upstream socket; replies read
// from those sockets (recvmmsg) go back to their clients in batches from
// the listener socket (sendmmsg, many clients per call). A flow holds no
// goroutine and no buffer: its cost is one small struct, its access log
// record and one descriptor (its upstream socket), which is what lets the
// kernel demultiplex replies and hand ICMP errors to the flow.
//
// The data path of a datagram that opens a flow, in order (open in
// socket.go): the table in force, the top level's and the route's
// allow/deny lists, rates and per-client tables (admit.go), the route's
// max_flows, the pool's pick (hash balancing hashes the client's address),
// the upstream socket, connect. A flow ends after the route's idle
// timeout with no datagram either way (idle_timeout), after its
// Responses replies were delivered (responses), when its member answers
// with ICMP unreachable (upstream_unreachable, which also counts as a
// failed dial for the pool's passive check), or when its listener closes
// (shutdown). A datagram larger than the path allows is counted
// (EMSGSIZE), never truncated.
//
//	srv, _ := udp.New(udp.Options{Log: logger, Finish: logFlow})
//	srv.Apply(table)     // open the table's udp listeners
//	srv.Apply(newTable)  // reload: kept addresses keep their flows
//	srv.Shutdown(ctx)    // end every flow, stop every goroutine
//
// GSO and GRO (UDP_SEGMENT, UDP_GRO) are detected at New and logged, but
// not used: every batch here holds datagrams of many sizes for many
// clients, which GSO cannot send in one segment train, and GRO would hand
// the engine coalesced datagrams to split again.
package udp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
)

// DefaultIdleTimeout ends a flow of a route whose IdleTimeout is zero:
// a UDP flow has no FIN, so without a bound it would live forever.
// Config sets 30s for UDP routes anyway.
const DefaultIdleTimeout = 30 * time.Second

// stopBound is how long Apply waits for the sockets of addresses it
// dropped to end their flows and stop: a socket's goroutine answers at
// its next turn, within microseconds, unless Finish blocks.
var stopBound = 5 * time.Second

// listenRcvBuf is the receive buffer asked for each listener socket:
// the default (208 KiB on Linux) holds only a few hundred small
// datagrams of a burst, each charged about 1 KiB of kernel memory, and
// a burst of 1000 clients lost a third of theirs with it. The kernel
// caps what is asked at net.core.rmem_max (4 MiB here; raise it for
// more).
const listenRcvBuf = 4 << 20

// Refusals' Finish calls: at most 10 a second after a burst of 100, as
// the TCP proxy logs refusals. Each datagram of a refused client is
// refused again, so a flood must not become a flood of log lines.
const (
	refusalLogRate  = 10
	refusalLogBurst = 100
)

// Options configure a Server.
type Options struct {
	// Log receives the server's own events. Nil: slog.Default().
	Log *slog.Logger
	// Sockets is the sockets (and goroutines) per listen address.
	// Zero: runtime.GOMAXPROCS(0). Socket i counts its flows on shard
	// i of a route's Stats (or shard 0 when the route has fewer).
	Sockets int
	// Finish is called once per flow, on the socket's goroutine, with
	// its record, after the flow's socket is closed and its pool
	// attempt is done. It must not block (the app logs through an async
	// handler and counts). It is called for refused clients too
	// (reasons denied, rate_limit, client_limit, limit, no_route), at
	// most 10 a second after a burst of 100 (Record.Edge.Suppressed
	// says how many were skipped before): rt is then the route that
	// refused, or the listener's route for a top-level refusal. Nil:
	// nothing is called.
	Finish func(rt *route.Route, r *session.Record)
	// IDs numbers the flows (Record.ID); shared with the TCP proxy's
	// sessions, ids stay unique in the process. Nil: the server's own
	// counter, from 1.
	IDs *atomic.Uint64
}

// Stats are a Server's totals since New. Datagrams and bytes are counted
// as delivered (bytes are payload bytes), as they move; Flows counts
// flows ended.
type Stats struct {
	Flows                                  uint64 // flows ended, those that could not begin (no member, no socket) included
	DatagramsToUpstream, DatagramsToClient uint64
	BytesToUpstream, BytesToClient         uint64
	Dropped                                Dropped
	Refused                                uint64 // datagrams that could not open a flow: denied, rate_limit, client_limit, limit, no_route
	NoUpstream                             uint64 // flows that found no member to take them (no_upstream)
	RefusalLogsSuppressed                  uint64 // refusals not passed to Finish (see Options.Finish)
}

// Dropped counts datagrams not delivered, by why.
type Dropped struct {
	// TooBig: larger than the path allows (EMSGSIZE), or than 64 KiB.
	TooBig uint64
	// QueueFull: a full socket buffer (EAGAIN, ENOBUFS) or filter queue.
	QueueFull uint64
	// Filter: dropped by a filter (loss) or with a flow a filter ended.
	Filter uint64
	// Other: the kernel refused the send for another reason (EPERM from
	// a firewall rule, say), or the datagram's flow could not be opened
	// (no member, out of descriptors).
	Other uint64
}

// counters are one socket's Stats, written only by its goroutine.
type counters struct {
	flows, dgUp, dgDown, bytesUp, bytesDown  atomic.Uint64
	tooBig, queueFull, filterDrop, otherDrop atomic.Uint64
	refused, noUpstream                      atomic.Uint64
	_                                        [64]byte
}

// applied is the table in force and the routes' flow counts, swapped
// together.
type applied struct {
	t      *route.Table
	counts map[string]*flowCount // by route name
}

// A Server runs the UDP routes of its current table.
type Server struct {
	log     *slog.Logger
	sockets int
	finish  func(*route.Route, *session.Record)
	ids     *atomic.Uint64
	live    atomic.Int64
	wg      sync.WaitGroup // socket goroutines

	cur atomic.Pointer[applied]

	// applyMu makes Apply and Shutdown take turns; mu guards listeners,
	// all and stopped, and is never held across a wait.
	applyMu   sync.Mutex
	mu        sync.Mutex
	listeners map[string]*listener // by listen key
	all       []*counters          // every socket's, ever
	stopped   bool

	refusalLog                  *rate.Limiter
	suppressed, suppressedTotal atomic.Uint64
}

// A listener is one UDP listen address: its sockets.
type listener struct {
	key   string
	addr  netip.AddrPort
	socks []*socket
}

// New makes a server. It serves nothing until Apply.
func New(opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	n := opts.Sockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	ids := opts.IDs
	if ids == nil {
		ids = new(atomic.Uint64)
	}
	gso, gro := gsoSupported()
	log.Debug("udp engine", "sockets_per_address", n, "gso_available", gso, "gro_available", gro, "gso_gro_used", false)
	return &Server{log: log, sockets: n, finish: opts.Finish, ids: ids,
		listeners: make(map[string]*listener), refusalLog: rate.NewLimiter(refusalLogRate, refusalLogBurst)}, nil
}

// Apply makes t the table in force for UDP. It opens sockets for the UDP
// listen addresses t adds (all-or-nothing: if one fails, what this call
// opened closes and nothing changes), keeps those that stay (their live
// flows keep their route, member and filters; new flows take t's route),
// and closes those t no longer lists (their flows end, reason shutdown).
// Logs "listening" and "stopped listening" with route, addr and
// protocol=udp.
func (s *Server) Apply(t *route.Table) error {
	if t == nil {
		return errors.New("udp: no table to apply")
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return errors.New("udp: server is shut down")
	}
	var opened []*listener
	for _, l := range t.Listens() {
		if l.Protocol != route.UDP {
			continue
		}
		if _, ok := s.listeners[l.Key]; ok {
			continue
		}
		ln, err := s.open(l)
		if err != nil {
			for _, o := range opened {
				for _, k := range o.socks {
					k.closeUnstarted()
				}
			}
			return fmt.Errorf("route %s: %w", t.Lookup(l.Key).Name, err)
		}
		opened = append(opened, ln)
	}
	old := s.cur.Load()
	next := &applied{t: t, counts: make(map[string]*flowCount)}
	for _, rt := range t.Routes() {
		if !rt.IsUDP() {
			continue
		}
		c := (*flowCount)(nil)
		if old != nil {
			c = old.counts[rt.Name]
		}
		if c == nil {
			c = new(flowCount)
		}
		c.max.Store(int64(rt.MaxFlows))
		next.counts[rt.Name] = c
	}
	s.cur.Store(next)

	s.mu.Lock()
	for _, ln := range opened {
		s.listeners[ln.key] = ln
		for _, k := range ln.socks {
			s.all = append(s.all, k.c)
		}
	}
	var gone []*listener
	for key, ln := range s.listeners {
		if g := t.Group(key); g == nil || g.Protocol != route.UDP {
			gone = append(gone, ln)
			delete(s.listeners, key)
		}
	}
	s.mu.Unlock()
	for _, ln := range opened {
		for _, k := range ln.socks {
			s.wg.Go(k.run)
		}
		s.log.Info("listening", "route", t.Lookup(ln.key).Name, "addr", ln.addr.String(), "protocol", "udp", "sockets", len(ln.socks))
	}
	bound, cancel := context.WithTimeout(context.Background(), stopBound)
	defer cancel()
	for _, ln := range gone {
		name := ln.key
		if old != nil {
			if r := old.t.Lookup(ln.key); r != nil {
				name = r.Name
			}
		}
		if !s.stopListener(ln, bound.Done()) {
			s.log.Error("udp: a socket did not stop in time; it stops when its goroutine returns", "route", name, "addr", ln.addr.String(), "waited", stopBound)
		}
		s.log.Info("stopped listening", "route", name, "addr", ln.addr.String(), "protocol", "udp")
	}
	return nil
}

// stopListener stops ln's sockets (their flows end, reason shutdown) and
// waits for them until stop; it reports whether they all stopped.
func (s *Server) stopListener(ln *listener, stop <-chan struct{}) bool {
	for _, k := range ln.socks {
		k.stop()
	}
	for _, k := range ln.socks {
		select {
		case <-k.done:
		case <-stop:
			return false
		}
	}
	return true
}

// open opens s.sockets sockets on l's address with SO_REUSEPORT: the
// first binds (port 0 gets a free port), the others join it on the
// port it got.
func (s *Server) open(l route.Listen) (*listener, error) {
	host, _, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Addr, err)
	}
	ln := &listener{key: l.Key}
	addr := l.Addr
	for i := range s.sockets {
		fd, local, err := bind(addr)
		if err == nil {
			var k *socket
			k, err = newSocket(s, ln, i, fd)
			if err == nil {
				ln.socks = append(ln.socks, k)
			} else {
				unix.Close(fd)
			}
		}
		if err != nil {
			for _, k := range ln.socks {
				k.closeUnstarted()
			}
			return nil, err
		}
		if i == 0 {
			ln.addr = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
			addr = net.JoinHostPort(host, strconv.Itoa(int(local.Port())))
		}
	}
	return ln, nil
}

// bind opens one non-blocking UDP socket on addr with SO_REUSEPORT, as
// net.ListenPacket resolves and binds it (an empty host: every address,
// IPv4 and IPv6, on one dual-stack socket). The descriptor returned is a
// duplicate that Go's poller does not know.
func bind(addr string) (int, netip.AddrPort, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			// Best effort: the kernel caps it at net.core.rmem_max.
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, listenRcvBuf)
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return -1, netip.AddrPort{}, bindError(addr, err)
	}
	defer pc.Close()
	raw, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("listen %s: %w", addr, err)
	}
	fd := -1
	cerr := raw.Control(func(orig uintptr) {
		fd, err = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("listen %s: %w", addr, err)
	}
	// The duplicate shares the original's open file, O_NONBLOCK included.
	local, err := localAddr(fd)
	if err != nil {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("listen %s: %w", addr, err)
	}
	return fd, local, nil
}

// bindError says what to do about the bind failures a user can fix, as
// package listen does for TCP. The errno stays in the chain.
func bindError(addr string, err error) error {
	_, port, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, unix.EACCES):
		if p, perr := strconv.Atoi(port); perr == nil && p > 0 && p < 1024 {
			return fmt.Errorf("listen udp %s: %w: ports below 1024 need root or CAP_NET_BIND_SERVICE "+
				"(setcap cap_net_bind_service=+ep $(which pier))", addr, unix.EACCES)
		}
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("listen udp %s: %w: another process holds the port; see which with ss -lunp 'sport = :%s'",
			addr, unix.EADDRINUSE, port)
	}
	return fmt.Errorf("listen udp: %w", err)
}

// Addrs returns the addresses route's UDP listeners are bound to, with the
// real port where the configured one was 0.
func (s *Server) Addrs(name string) []netip.AddrPort {
	cur := s.cur.Load()
	if cur == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var addrs []netip.AddrPort
	for _, l := range cur.t.Listens() {
		if l.Protocol != route.UDP {
			continue
		}
		if rt := cur.t.Lookup(l.Key); rt == nil || rt.Name != name {
			continue
		}
		if ln, ok := s.listeners[l.Key]; ok {
			addrs = append(addrs, ln.addr)
		}
	}
	return addrs
}

// Live returns the flows live now.
func (s *Server) Live() int64 { return s.live.Load() }

// Stats returns the server's totals since New. Safe from any goroutine;
// it never waits for a socket.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	all := s.all
	s.mu.Unlock()
	var t Stats
	for _, c := range all {
		t.Flows += c.flows.Load()
		t.DatagramsToUpstream += c.dgUp.Load()
		t.DatagramsToClient += c.dgDown.Load()
		t.BytesToUpstream += c.bytesUp.Load()
		t.BytesToClient += c.bytesDown.Load()
		t.Dropped.TooBig += c.tooBig.Load()
		t.Dropped.QueueFull += c.queueFull.Load()
		t.Dropped.Filter += c.filterDrop.Load()
		t.Dropped.Other += c.otherDrop.Load()
		t.Refused += c.refused.Load()
		t.NoUpstream += c.noUpstream.Load()
	}
	t.RefusalLogsSuppressed = s.suppressedTotal.Load()
	return t
}

// Shutdown stops receiving, ends every flow (reason shutdown) and waits
// for the sockets' goroutines until ctx is done; then it returns ctx's
// error, and the goroutines still stop as soon as they next run (only a
// Finish that blocks holds one up).
func (s *Server) Shutdown(ctx context.Context) error {
	s.applyMu.Lock()
	s.mu.Lock()
	s.stopped = true
	lns := make([]*listener, 0, len(s.listeners))
	for key, ln := range s.listeners {
		lns = append(lns, ln)
		delete(s.listeners, key)
	}
	s.mu.Unlock()
	s.applyMu.Unlock()
	for _, ln := range lns {
		for _, k := range ln.socks {
			k.stop()
		}
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Error("udp shutdown: sockets still ending their flows; giving up on them", "live", s.Live())
		return ctx.Err()
	}
	for _, ln := range lns {
		name := ln.key
		if cur := s.cur.Load(); cur != nil {
			if rt := cur.t.Lookup(ln.key); rt != nil {
				name = rt.Name
			}
		}
		s.log.Info("stopped listening", "route", name, "addr", ln.addr.String(), "protocol", "udp")
	}
	return nil
}

// finishFlow hands a flow's record to Options.Finish.
func (s *Server) finishFlow(rt *route.Route, r *session.Record) {
	if s.finish != nil {
		s.finish(rt, r)
	}
}

// finishRefusal hands a refused client's record to Options.Finish, unless
// refusals come faster than refusalLogRate: then it only counts it, and
// the next one passed says how many it follows.
func (s *Server) finishRefusal(rt *route.Route, r *session.Record) {
	suppressed, ok := s.refusalLogged()
	if !ok {
		return
	}
	if suppressed > 0 {
		edge(r).Suppressed = suppressed
	}
	s.finish(rt, r)
}

// refusalLogged reports whether a refusal's record goes to Finish now
// (the log's rate allows it), with how many were skipped before it; a
// skipped one is counted.
func (s *Server) refusalLogged() (suppressed uint64, ok bool) {
	if s.finish == nil {
		return 0, false
	}
	if !s.refusalLog.Allow() {
		s.suppressed.Add(1)
		s.suppressedTotal.Add(1)
		return 0, false
	}
	return s.suppressed.Swap(0), true
}

// edge returns r's edge facts, made on first use.
func edge(r *session.Record) *session.Edge {
	if r.Edge == nil {
		r.Edge = &session.Edge{}
	}
	return r.Edge
}
