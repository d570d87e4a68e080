// Package proxy wires pier's data path together. A Server owns the
// listeners, the relay loops and the route table in force; serve tells, in
// order, what happens to every client:
//
//	listen → admit → peek → route → admit → pick → dial → relay → finish
//
// Read serve first: every stage is a package of its own under internal/,
// and serve is the only place that knows all of them. A client whose
// route waits for its first bytes (a PROXY header, a TLS ClientHello)
// continues in decide.go, on its session's loop.
//
// A Server never takes a client it cannot serve for lack of descriptors:
// while fewer are free than a session needs, its loops stop accepting and
// clients wait in the listen queue until sessions end. Stats gives its
// totals since start, for the summary line the application logs on exit;
// a route's own counters are its route.Route.Stats, kept by the loops.
// Sessions, EndSession and EndSessions list and end live sessions for the
// admin API, waiting for the loops no longer than their context allows.
// FiltersChanged makes a route's live sessions take up a filter set just
// stored, idle ones included, without waiting for the loops.
//
//	srv, _ := proxy.New(proxy.Options{Log: logger})
//	srv.Apply(table)           // open listeners, start serving
//	...
//	srv.Apply(newTable)        // reload: kept listeners stay open
//	srv.Shutdown(ctx)          // stop accepting, drain, close
//	st := srv.Stats()          // sessions, bytes, refused, failed dials
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/listen"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// drainBound is how long Shutdown waits, once ctx is done, for the loops to
// stop accepting, for the sessions it ended to be recorded and for the
// loops to stop, before it returns anyway; and how long Apply waits for
// the loops to take up or drop a listener. A loop answers in microseconds
// unless it is stuck (an embedding program's log handler that blocks, a
// filter stuck in Process), and a stuck loop must not make pier
// unkillable or its reload hang. A variable only so that a test can
// shorten it.
var drainBound = 5 * time.Second

// localErrorPause is how long a listener stops accepting after a dial
// failed for lack of pier's own resources (ephemeral ports, descriptors):
// accepting more clients would only fail them the same way.
const localErrorPause = 100 * time.Millisecond

// Options configure a Server.
type Options struct {
	// Log receives the server's own events and one line per finished
	// session. Nil means slog.Default().
	Log *slog.Logger
	// Loops is the number of relay event loops. Zero means
	// runtime.GOMAXPROCS(0), which follows a container's CPU limit.
	Loops int
}

// Stats are a Server's totals since it started. Sessions counts every
// session admitted and ended (refused clients are not sessions: they are
// Refused); the byte counts are what was delivered by the sessions that
// have ended (a live session's bytes are added when it ends, so they are
// not in the totals yet); Refused counts the clients turned away before
// they were sessions (every reason of refusal), and
// RefusalLogsSuppressed the access log lines of refusals skipped to keep
// a flood of them from flooding the log; FailedDials counts the
// sessions that ended without an upstream (connect_failed,
// connect_timeout, no_upstream, and local_error while dialing).
type Stats struct {
	Sessions    uint64 // sessions admitted and ended
	ToUpstream  uint64 // bytes delivered to upstreams, by ended sessions
	ToClient    uint64 // bytes delivered to clients, by ended sessions
	Refused     uint64 // clients refused: limit, denied, rate_limit, client_limit, proxy_untrusted, proxy_error, no_route
	FailedDials uint64 // sessions that never got an upstream connection
	// RefusalLogsSuppressed counts refusals' access log lines not
	// written (more than 10 a second, after a burst of 100); the next
	// line written says how many it follows (suppressed=N).
	RefusalLogsSuppressed uint64
}

// loopStats are the Stats one loop's sessions added, bumped once per
// session end on that loop only, and summed by Stats: no two loops write
// the same cache line.
type loopStats struct {
	sessions, toUpstream, toClient, refused, failedDials atomic.Uint64
	_                                                    [64 - 5*8%64]byte
}

// A Server runs the data path for the routes of its current table.
type Server struct {
	log   *slog.Logger
	loops []*relay.Loop
	wg    sync.WaitGroup // loop goroutines
	ids   atomic.Uint64  // session ids

	table    atomic.Pointer[route.Table]
	sessions liveSessions // for draining

	// applyMu makes Apply and Shutdown take turns; Apply holds it while
	// it waits (boundedly) for the loops. mu guards only the listeners
	// map and stopped, and is never held across a wait for a loop, so
	// Addrs answers even while a loop is stuck.
	applyMu   sync.Mutex
	mu        sync.Mutex
	listeners map[string]*listener // by listen key
	stopped   bool

	localErrors atomic.Uint64 // dials that failed for pier's own lack of resources

	// refusalLog limits refusals' access log lines (see logRefusal);
	// suppressed counts the lines skipped since the last one written,
	// suppressedTotal all of them.
	refusalLog                  *rate.Limiter
	suppressed, suppressedTotal atomic.Uint64

	stats     []loopStats                                            // by loop index
	ends      []endRing                                              // by loop index; each its loop's only
	loopIndex map[*relay.Loop]int                                    // read-only after New
	watch     func(*relay.Loop, int, func(*relay.Loop)) <-chan error // relay.Loop.Watch; a test's seam

	// The descriptor reserve (see haveDescriptors).
	fdLimit atomic.Int64 // RLIMIT_NOFILE's soft limit; 0 when unlimited
	fdBase  atomic.Int64 // descriptors open outside the loops' sessions
	fdShort atomic.Bool  // a loop paused accepting for lack of descriptors
}

// listener is an open listener and the key the table knows it by.
type listener struct {
	*listen.Listener
	key   string
	ready func(*relay.Loop)        // accepts on a loop; see accept
	pause func(*relay.Loop, error) // for relay.Params.LocalError
	// closed is set once every loop has let go of the listener, before
	// its descriptor is closed. Its sessions may outlive it, and with
	// them pause, which finds the watch to pause by descriptor number:
	// once the number may be another listener's, pause leaves it alone.
	closed atomic.Bool
	// backoffUntil is when accepting may go on after a dial failed for
	// pier's own lack of resources (time.Now().UnixNano()). The loop the
	// session ran on pauses its own watch at once; every other loop
	// pauses its watch too when it next wakes for this listener, since
	// it may be the one accepting and handing its clients over.
	backoffUntil atomic.Int64
	// Why accepting paused, for ListenerStats: rare events, so shared
	// atomics cost nothing that matters.
	acceptErrors, descriptorPauses, localErrorPauses atomic.Uint64
	// edge counts what happened before a route took a client: refusals,
	// peeks, PROXY headers, one shard per loop.
	edge *stats.Listener
}

// acceptBatch bounds the clients one loop accepts per turn, so that a
// flood of connections cannot starve the sessions already on it.
const acceptBatch = 32

// descriptorsPerSession is what a session may hold: its two sockets and,
// while bytes are in flight, a splice pipe's two ends for each direction
// (each direction splices through a pipe of its own, and both can hold
// bytes at once): 2 + 2×2 = 6.
const descriptorsPerSession = 6

// descriptorSlack is kept free beyond the sessions' share, for what opens
// descriptors after the baseline was counted at Apply: health checks, log
// and capture files, a reload's new listeners.
const descriptorSlack = 16

// reservePause is how long a loop stops accepting when descriptors run
// short, unless a session on it ends sooner (finish resumes it then).
const reservePause = 10 * time.Millisecond

// accept takes the clients waiting on ln, on loop's goroutine.
func (s *Server) accept(ln *listener, loop *relay.Loop) {
	if until := ln.backoffUntil.Load(); until != 0 { // 0: never backed off, no clock to read
		if d := time.Duration(until - time.Now().UnixNano()); d > 0 {
			loop.PauseWatch(ln.Fd(), d)
			return
		}
	}
	for range acceptBatch {
		if !s.haveDescriptors() {
			// Leave the client in the listen queue, where it waits for
			// a session to end, rather than take it and fail its dial
			// with EMFILE.
			loop.PauseWatch(ln.Fd(), reservePause)
			ln.descriptorPauses.Add(1)
			if s.fdShort.CompareAndSwap(false, true) {
				s.log.Warn("out of descriptors: new clients wait until sessions end",
					"limit", s.fdLimit.Load(), "in_use", s.descriptorsInUse())
			}
			return
		}
		if s.fdShort.Load() {
			s.fdShort.Store(false)
		}
		fd, client, pause, err := ln.Accept()
		if err == nil {
			s.serve(ln, loop, fd, client)
			continue
		}
		if pause > 0 {
			loop.PauseWatch(ln.Fd(), pause)
			ln.acceptErrors.Add(1)
		}
		if err == unix.EAGAIN || pause > 0 {
			return
		}
		// The client gave up before we took it: try the next one.
	}
}

// haveDescriptors reports whether the process has descriptors to spare for
// one more session, with room for every loop to take one at once. The
// count is the loops' own (bumped per socket or pipe, not per byte) plus
// the baseline counted at Apply, so it costs no system call.
func (s *Server) haveDescriptors() bool {
	limit := s.fdLimit.Load()
	if limit <= 0 {
		return true
	}
	reserve := int64(descriptorsPerSession*len(s.loops) + descriptorSlack)
	return limit-s.descriptorsInUse() >= reserve
}

// descriptorsInUse estimates the process's open descriptors.
func (s *Server) descriptorsInUse() int64 {
	n := s.fdBase.Load()
	for _, l := range s.loops {
		n += l.Descriptors()
	}
	return n
}

// countDescriptors reads RLIMIT_NOFILE and counts the descriptors open
// outside the loops' sessions, for haveDescriptors. It reads /proc, so it
// runs at New and Apply, never on a loop.
func (s *Server) countDescriptors() {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > 1<<40 {
		s.fdLimit.Store(0)
		return
	}
	s.fdLimit.Store(int64(rl.Cur))
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return // keep the last count
	}
	var held int64
	for _, l := range s.loops {
		held += l.Descriptors()
	}
	s.fdBase.Store(max(int64(len(ents))-1-held, 0)) // -1: ReadDir's own
}

// New starts a server's relay loops. It serves nothing until Apply.
func New(opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	n := opts.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	s := &Server{log: log, listeners: make(map[string]*listener), loopIndex: make(map[*relay.Loop]int),
		refusalLog: rate.NewLimiter(refusalLogRate, refusalLogBurst)}
	s.watch = (*relay.Loop).Watch
	for range n {
		l, err := relay.New(log)
		if err != nil {
			s.closeLoops()
			return nil, err
		}
		s.loopIndex[l] = len(s.loops)
		s.loops = append(s.loops, l)
		s.wg.Go(func() {
			if err := l.Run(); err != nil {
				log.Error("relay loop stopped", "error", err)
			}
		})
	}
	s.stats = make([]loopStats, len(s.loops))
	s.ends = make([]endRing, len(s.loops))
	s.countDescriptors()
	log.Debug("relay loops started", "loops", n, "gomaxprocs", runtime.GOMAXPROCS(0))
	return s, nil
}

// serve is the data path for one accepted client. It runs on the relay
// loop that accepted the client; the session then runs on the least
// loaded loop (leastLoaded), which peeks if it must, dials, relays and
// finishes it. Nothing in it blocks.
func (s *Server) serve(ln *listener, accepted *relay.Loop, fd int, client netip.AddrPort) {
	// route: the table in force when the client arrived decides everything
	// that follows, even if a reload swaps it a moment later.
	t := s.table.Load()
	g := t.Group(ln.key)
	if g == nil {
		unix.Close(fd) // the listener is closing in a reload
		return
	}
	acceptedIdx := s.loopIndex[accepted] // once per client: the stages below share it
	rec := &session.Record{
		ID:       s.ids.Add(1),
		Client:   client,
		Listener: ln.Addr(),
		Start:    time.Now(),
	}
	if len(g.Routes) == 1 {
		rec.Route = g.Routes[0].Name
	}
	// admit, top level: right after accept, before any upstream work,
	// so that a refused client costs one accept and one close. A trusted
	// balancer's own address is not its clients': theirs is checked
	// once its PROXY header is read.
	trusted := g.Proxy != nil && g.Proxy.Trusted.Contains(client.Addr())
	h, ref := admitTop(t.Global(), rec, true, !trusted)
	if ref != nil {
		s.refuse(ln, acceptedIdx, fd, rec, ref)
		return
	}
	// peek: a PROXY header or a ClientHello decides the client address
	// or the route; the session reads them on its loop before dialing
	// (decide.go). Other listeners never wait for a byte.
	if g.Proxy != nil || g.NeedsHello {
		s.peekFirst(ln, accepted, acceptedIdx, fd, t, g, rec, trusted, h)
		return
	}
	// route: the group's only route, or the one its match chooses by
	// the client's address.
	rt, key := g.Choose(client.Addr(), nil)
	if rt == nil {
		h.Release()
		s.refuse(ln, acceptedIdx, fd, rec, &route.Refusal{Reason: session.NoRoute})
		return
	}
	// admit, route: its allow/deny list, accept rate, per-client table
	// and live-session limit.
	if ref := admitRoute(rt, rec, &h); ref != nil {
		h.Release()
		s.refuse(ln, acceptedIdx, fd, rec, ref)
		return
	}
	s.matched(rt, key, rec, acceptedIdx)
	// pick: the route's pool chooses the member.
	counts := rt.Stats.Shard(acceptedIdx) // nil: the route is not counted
	counts.Start()
	a := rt.Pool.Pick(client.Addr())
	s.sessions.add()
	if a == nil {
		// No member can take it: fail fast rather than make the client
		// wait for a dial that cannot work. The pool logs why.
		unix.Close(fd)
		rec.Reason = session.NoUpstream
		counts.End(rec)
		h.Release()
		s.finish(rt, accepted, acceptedIdx, rec)
		return
	}
	// dial, relay, finish: on the least loaded loop, which connects
	// without blocking, moves the bytes until both sides are done, and
	// calls Done with the record on its own goroutine.
	out := proxyOut(rt, rec, nil, nil)
	if loop, li := s.leastLoaded(accepted, acceptedIdx); loop != accepted && loop.Start(s.params(ln, loop, li, fd, rt, a, rec, h, out)) {
		return
	}
	accepted.Begin(s.params(ln, accepted, acceptedIdx, fd, rt, a, rec, h, out)) // the least loaded, or the others are closing
}

// params are the relay's Params of a session admitted to rt, on a
// member a picked, run on loop, whose index is li.
func (s *Server) params(ln *listener, loop *relay.Loop, li int, fd int, rt *route.Route, a *pool.Attempt, rec *session.Record, h *route.Held, out *peek.Out) *relay.Params {
	m := a.Member()
	rec.Upstream = m.Name
	return &relay.Params{
		Client:           fd,
		Target:           m.Addr,
		ConnectBudget:    rt.ConnectBudget,
		TryTimeout:       rt.ConnectTimeout,
		Upstreams:        a,
		IdleTimeout:      rt.IdleTimeout,
		HalfCloseTimeout: rt.HalfCloseTimeout,
		Record:           rec,
		Done: func(r *session.Record) {
			a.Done()
			h.Release()
			s.finish(rt, loop, li, r)
		},
		LocalError: ln.pause,
		Filters:    rt.Filters,
		Stats:      rt.Stats.Shard(li),
		ProxyOut:   out,
		SendProxy:  rt.SendProxy,
		// The member's TLS, if any, comes through a (relay.MemberTLS).
		TLSServer:        serverTLS(rt),
		HandshakeTimeout: rt.HandshakeTimeout,
	}
}

// serverTLS is the TLS configuration a route terminates clients with;
// nil when it does not.
func serverTLS(rt *route.Route) *tls.Config {
	if rt.TLS == nil {
		return nil
	}
	return rt.TLS.Config()
}

// leastLoaded returns the loop a new client's session should run on:
// the loop that accepted it, unless another holds at least two sessions
// fewer. A burst of clients wakes one loop, which accepts them all (up to
// 32 a turn); without this, 16 persistent connections opened at once
// ended up 16 to 0 or 15 to 1 on two loops, and one core did all their
// work. Handing a session over costs the other loop a wake-up, once per
// session: short connections, spread by the kernel's wake-ups, rarely
// need it. The counts are each loop's atomic session count, read without
// a lock: two loops accepting at once may both pick the same one, which
// the next client evens out. acceptedIdx is accepted's index; the index
// of the loop returned comes with it.
func (s *Server) leastLoaded(accepted *relay.Loop, acceptedIdx int) (*relay.Loop, int) {
	best, bestIdx, fewest := accepted, acceptedIdx, accepted.Live()-1
	for i, l := range s.loops {
		if n := l.Live(); n < fewest {
			best, bestIdx, fewest = l, i, n
		}
	}
	return best, bestIdx
}

// finish releases what the session held, counts it and writes its access
// log line. It runs on the relay loop the session ran on, whose index is
// li.
func (s *Server) finish(rt *route.Route, loop *relay.Loop, li int, r *session.Record) {
	st := &s.stats[li]
	rt.Limit.Release()
	st.sessions.Add(1)
	st.toUpstream.Add(uint64(r.ToUpstream))
	st.toClient.Add(uint64(r.ToClient))
	switch r.Reason {
	case session.ConnectFailed, session.ConnectTimeout, session.NoUpstream:
		st.failedDials.Add(1)
	case session.LocalError:
		// Out of ports or descriptors: while dialing, unless bytes had
		// moved already.
		if r.ToUpstream == 0 && r.ToClient == 0 {
			st.failedDials.Add(1)
		}
	}
	s.ends[li].add(r)
	s.logRecord(r)
	if s.fdShort.Load() {
		loop.ResumeWatches() // a session's descriptors are free again
	}
	s.sessions.done()
}

// logRecord writes a session's access log line: at Warn when pier could
// not serve the client at all, at Info otherwise.
func (s *Server) logRecord(r *session.Record) {
	level := LogLevel(r)
	ctx := context.Background()
	if !s.log.Enabled(ctx, level) {
		return // the record's attributes cost more to build than to skip
	}
	s.log.LogAttrs(ctx, level, "session", r.Attrs()...)
}

// LogLevel is the level of a session's access log line, a TCP session's
// or a UDP flow's: Warn when pier could not serve the client at all (a
// refusal, no member, a member that refused or failed its TLS), Info
// otherwise, Debug for a balancer's health check.
func LogLevel(r *session.Record) slog.Level {
	level := slog.LevelInfo
	switch r.Reason {
	case session.ConnectFailed, session.ConnectTimeout, session.LocalError, session.NoUpstream, session.Limit,
		session.Denied, session.NoRoute, session.ProxyUntrusted, session.ProxyError, session.ClientLimit, session.RateLimit,
		session.Unreachable:
		level = slog.LevelWarn
	}
	if he, ok := errors.AsType[*relay.HandshakeError](r.Err); ok && he.Upstream && r.Reason == session.TLSHandshakeFailed {
		level = slog.LevelWarn // pier's own side: a member's certificate, or its TLS
	}
	if e := r.Edge; level == slog.LevelInfo && e != nil && e.Proxy == "local" && r.ToUpstream == 0 && r.ToClient == 0 {
		// A balancer's health check: a LOCAL header and nothing else,
		// often ended with a reset. Logged every few seconds by every
		// balancer in front, it is noise at info; a refusal stays a
		// warning.
		level = slog.LevelDebug
	}
	return level
}

// Stats returns the server's totals since New, summed over its loops.
// Safe to call from any goroutine.
func (s *Server) Stats() Stats {
	var t Stats
	for i := range s.stats {
		st := &s.stats[i]
		t.Sessions += st.sessions.Load()
		t.ToUpstream += st.toUpstream.Load()
		t.ToClient += st.toClient.Load()
		t.Refused += st.refused.Load()
		t.FailedDials += st.failedDials.Load()
	}
	t.RefusalLogsSuppressed = s.suppressedTotal.Load()
	return t
}

// Apply makes t the table in force. Listeners for new addresses open first;
// if any fails, nothing changes and the error says which. Then the table is
// swapped and every loop watches the new listeners; if a loop cannot, or
// does not answer within drainBound, the new listeners close, the old table
// comes back and the error says so. Last, listeners no longer in t close.
// Listeners kept by t stay open throughout, so no client is refused by a
// reload. Each listener opened is logged "listening", each closed "stopped
// listening"; kept ones are not logged again. Apply never waits longer
// than drainBound for the loops.
func (s *Server) Apply(t *route.Table) error {
	if t == nil {
		return errors.New("proxy: no table to apply")
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return errors.New("proxy: server is shut down")
	}
	// Only Apply and Shutdown change s.listeners, and both hold applyMu:
	// reading it here without mu is safe.
	var opened []*listener
	for _, l := range t.Listens() {
		if l.Protocol == route.UDP {
			continue // package udp's
		}
		if _, ok := s.listeners[l.Key]; ok {
			continue
		}
		ln, err := listen.Open(l.Addr, s.log)
		if err != nil {
			for _, o := range opened {
				o.Close() // no loop watches it yet
			}
			return fmt.Errorf("route %s: %w", t.Lookup(l.Key).Name, err)
		}
		opened = append(opened, s.newListener(ln, l.Key))
	}
	old := s.table.Swap(t)
	// One bound for every wait below; a context, not a timer, because
	// its Done stays closed for each wait after the first that sees it.
	bound, cancel := context.WithTimeout(context.Background(), drainBound)
	defer cancel()
	if err := s.watchAll(opened, bound.Done()); err != nil {
		// Unwatch before the old table returns: no loop may accept on a
		// listener the table in force does not know.
		s.closeListeners(opened, bound.Done(), "reload failed")
		s.table.Store(old)
		return fmt.Errorf("route %s: listen %s: %w", t.Lookup(err.ln.key).Name, err.ln.Addr(), err.err)
	}
	s.mu.Lock()
	for _, ln := range opened {
		s.listeners[ln.key] = ln
	}
	var gone []*listener
	for key, ln := range s.listeners {
		if t.Lookup(key) == nil {
			gone = append(gone, ln)
			delete(s.listeners, key)
		}
	}
	s.mu.Unlock()
	for _, ln := range opened {
		s.log.Info("listening", "route", t.Lookup(ln.key).Name, "addr", ln.Addr().String())
	}
	s.closeListeners(gone, bound.Done(), "reload")
	for _, ln := range gone {
		route := ln.key
		if old != nil {
			if r := old.Lookup(ln.key); r != nil {
				route = r.Name
			}
		}
		s.log.Info("stopped listening", "route", route, "addr", ln.Addr().String())
	}
	s.countDescriptors()
	return nil
}

// watchError is a listener a loop could not watch, and why.
type watchError struct {
	ln  *listener
	err error
}

// errLoopSilent is a loop that did not answer within drainBound.
var errLoopSilent = errors.New("proxy: a relay loop did not answer in time")

// watchAll makes every loop watch every listener in lns, and waits for
// their answers until stop. The first failure, or a silence until stop,
// comes back; the listeners are then the caller's to unwatch.
func (s *Server) watchAll(lns []*listener, stop <-chan struct{}) *watchError {
	type pending struct {
		ln  *listener
		res <-chan error
	}
	var all []pending
	for _, ln := range lns {
		for _, loop := range s.loops {
			all = append(all, pending{ln, s.watch(loop, ln.Fd(), ln.ready)})
		}
	}
	for _, p := range all {
		var err error
		select {
		case err = <-p.res:
		default:
			select {
			case err = <-p.res:
			case <-stop:
				err = fmt.Errorf("%w (%v)", errLoopSilent, drainBound)
			}
		}
		if err != nil {
			return &watchError{p.ln, err}
		}
	}
	return nil
}

// closeListener stops every loop accepting on ln and closes ln once the
// last loop has let go of it, which a stuck loop may delay for as long as
// it is stuck: ln stays open till then, rather than be closed under a
// loop that may still accept on its descriptor number, reused by then for
// another socket. The returned channel closes when ln is closed. Never
// waits.
func (s *Server) closeListener(ln *listener) <-chan struct{} {
	closed := make(chan struct{})
	left := atomic.Int64{}
	left.Store(int64(len(s.loops)))
	dropped := func() {
		if left.Add(-1) == 0 {
			ln.closed.Store(true)
			ln.Close()
			close(closed)
		}
	}
	for _, loop := range s.loops {
		loop.Unwatch(ln.Fd(), dropped)
	}
	return closed
}

// closeListeners closes lns (see closeListener) and waits for them to be
// closed until stop; it reports whether they all were, and logs the ones
// left open, for why.
func (s *Server) closeListeners(lns []*listener, stop <-chan struct{}, why string) bool {
	closed := make([]<-chan struct{}, len(lns))
	for i, ln := range lns {
		closed[i] = s.closeListener(ln)
	}
	return s.waitClosed(lns, closed, stop, why)
}

// waitClosed waits until stop for closed[i], listener lns[i]'s closing,
// and logs the listeners still open then.
func (s *Server) waitClosed(lns []*listener, closed []<-chan struct{}, stop <-chan struct{}, why string) bool {
	all := true
	for i, c := range closed {
		if !waitOrStop(c, stop) {
			all = false
			s.log.Error("listener left open: a relay loop did not let go of it in time; it closes when the loop does",
				"addr", lns[i].Addr().String(), "waited", drainBound, "during", why)
		}
	}
	return all
}

// waitOrStop waits for done to close until stop fires; it reports whether
// done closed. done wins when both are ready.
func waitOrStop(done, stop <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
	}
	select {
	case <-done:
		return true
	case <-stop:
		return false
	}
}

func (s *Server) newListener(ln *listen.Listener, key string) *listener {
	l := &listener{Listener: ln, key: key, edge: stats.NewListener(len(s.loops))}
	l.ready = func(loop *relay.Loop) { s.accept(l, loop) }
	l.pause = func(loop *relay.Loop, err error) {
		// A dial failed for pier's own lack of resources: accepting more
		// would fail them alike.
		s.localErrors.Add(1)
		if l.closed.Load() {
			// No loop accepts on it any more, and its number may be a
			// new listener's by now: pausing would pause that one.
			// Read before the pause, on the loop: a listener opened on
			// the same number is watched by this loop only after this
			// turn.
			return
		}
		l.localErrorPauses.Add(1)
		d := max(ln.Backoff(err), localErrorPause)
		until := time.Now().Add(d).UnixNano()
		for {
			old := l.backoffUntil.Load()
			if old >= until || l.backoffUntil.CompareAndSwap(old, until) {
				break
			}
		}
		loop.PauseWatch(ln.Fd(), d)
	}
	return l
}

// Addrs returns the addresses route's listeners are bound to, with the real
// port where the configured one was 0. It never waits for a relay loop.
func (s *Server) Addrs(route string) []netip.AddrPort {
	t := s.table.Load()
	if t == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var addrs []netip.AddrPort
	for _, l := range t.Listens() {
		if !groupHas(t.Group(l.Key), route) {
			continue // an address routes share is every one's
		}
		if ln, ok := s.listeners[l.Key]; ok {
			addrs = append(addrs, ln.Addr())
		}
	}
	return addrs
}

// groupHas reports whether a route named name is in g.
func groupHas(g *route.Group, name string) bool {
	for _, r := range g.Routes {
		if r.Name == name {
			return true
		}
	}
	return false
}

// FiltersChanged tells every relay loop that a new set was stored in
// filters (a route's route.Route.Filters), so that the route's live
// sessions take it up on the loop's next turn, idle ones included:
// without it, a session takes a new set up only when a byte next moves or
// a timer of its own comes (relay.Loop.TakeUpFilters says how). Call it
// after every filters.Store that may change a set live sessions run. It
// never waits for a loop: a loop takes it up in turn, a closed one not
// at all.
func (s *Server) FiltersChanged(filters *chain.InForce) {
	for _, l := range s.loops {
		l.TakeUpFilters(filters)
	}
}

// IDs is the counter the server numbers its sessions from, for another
// server (package udp's flows) to share: ids stay unique in the process.
func (s *Server) IDs() *atomic.Uint64 { return &s.ids }

// Loops returns the number of relay loops, for stats.NewRoute: a route's
// counters have one shard per loop.
func (s *Server) Loops() int { return len(s.loops) }

// ListenerStats are one open listener's counts since it opened: why it
// stopped accepting for a while, and what happened to clients before a
// route took them.
type ListenerStats struct {
	// Route names the listener: its route, or the first of the routes
	// that share its address.
	Route string
	Addr  netip.AddrPort
	// AcceptErrors counts accepts that failed for lack of resources (out
	// of descriptors or memory) or unexpectedly, each pausing accepting.
	AcceptErrors uint64
	// DescriptorPauses counts the times a loop left clients in the listen
	// queue because too few descriptors were free for another session.
	DescriptorPauses uint64
	// LocalErrorPauses counts the times a session's dial failed for pier's
	// own lack of resources (ephemeral ports, descriptors) and accepting
	// paused.
	LocalErrorPauses uint64
	// Refused counts clients refused before a route took them, by why
	// (stats.ListenerRefusal): the top level's allow/deny list, accept
	// rate and per-client table, PROXY header errors, no route.
	Refused [stats.NumListenerRefusals]uint64
	// Peeks counts ClientHellos peeked, by result (stats.PeekResult);
	// ProxyHeaders PROXY headers read, by result (stats.HeaderResult).
	Peeks        [stats.NumPeekResults]uint64
	ProxyHeaders [stats.NumHeaderResults]uint64
	// Peeking is the sessions reading their first bytes now.
	Peeking int64
}

// ListenerStats returns the open listeners' counts, by route and address.
// It never waits for a relay loop.
func (s *Server) ListenerStats() []ListenerStats {
	t := s.table.Load()
	s.mu.Lock()
	out := make([]ListenerStats, 0, len(s.listeners))
	for key, ln := range s.listeners {
		name := key
		if t != nil {
			if rt := t.Lookup(key); rt != nil {
				name = rt.Name
			}
		}
		edge := ln.edge.Totals()
		out = append(out, ListenerStats{
			Route:            name,
			Addr:             ln.Addr(),
			AcceptErrors:     ln.acceptErrors.Load(),
			DescriptorPauses: ln.descriptorPauses.Load(),
			LocalErrorPauses: ln.localErrorPauses.Load(),
			Refused:          edge.Refused,
			Peeks:            edge.Peeks,
			ProxyHeaders:     edge.Headers,
			Peeking:          edge.Peeking,
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b ListenerStats) int {
		if c := strings.Compare(a.Route, b.Route); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	return out
}

// Live returns the number of sessions in progress.
func (s *Server) Live() int64 {
	var n int64
	for _, l := range s.loops {
		n += l.Live()
	}
	return n
}

// Shutdown stops accepting, waits for live sessions to finish until ctx is
// done, then ends the rest (reason "shutdown") and stops the relay loops.
// It returns ctx's error if sessions had to be cut short. Once ctx is done
// it waits no more than drainBound for the loops to stop accepting, for
// the sessions' ends to be recorded and for the loops to stop, then
// returns anyway, saying so in the log: a loop stuck in a log handler that
// blocks must not make pier unkillable. The listeners close as soon as no
// loop accepts on them; one that a stuck loop still holds stays open until
// that loop lets go (see closeListener).
func (s *Server) Shutdown(ctx context.Context) error {
	// Apply waits for the loops no longer than drainBound, so neither does
	// this. mu is held only to take the listeners.
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

	closed := make([]<-chan struct{}, len(lns))
	for i, ln := range lns {
		closed[i] = s.closeListener(ln)
	}
	// Until ctx is done: once no loop accepts on a listener (it is
	// closed), every session it took has been counted, and the wait for
	// sessions can begin.
	allClosed := func(stop <-chan struct{}) bool {
		for _, c := range closed {
			if !waitOrStop(c, stop) {
				return false
			}
		}
		return true
	}
	if allClosed(ctx.Done()) && waitOrStop(s.sessions.drained(), ctx.Done()) {
		return s.stopLoops()
	}
	// ctx is done, and either a loop has not let go of a listener yet or
	// sessions are live. The loops get drainBound to answer.
	bound, cancel := context.WithTimeout(context.Background(), drainBound)
	defer cancel()
	listening := !s.waitClosed(lns, closed, bound.Done(), "shutdown")
	// Checked without waiting: when ctx was already done and no session
	// is live, nothing is cut short.
	if waitOrStop(s.sessions.drained(), closedChan) {
		if listening {
			s.closeLoops()
			return nil
		}
		return s.stopLoops()
	}
	err := ctx.Err()
	for _, l := range s.loops {
		l.CloseAll(session.Shutdown)
	}
	// CloseAll ends every session on the loop's next turn, unless the
	// loop is stuck (in a log write that does not return).
	if listening || !waitOrStop(s.sessions.drained(), bound.Done()) {
		s.log.Error("shutdown: sessions still not ended; giving up on them", "waited", drainBound, "live", s.Live())
		s.closeLoops()
		return err
	}
	s.stopLoops()
	return err
}

// closedChan is a channel that is always ready, for a wait that must not
// wait.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// stopLoops closes the loops and waits for them to stop, at most
// drainBound. It returns nil, for Shutdown's tail.
func (s *Server) stopLoops() error {
	s.closeLoops()
	stopped := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(stopped)
	}()
	bound, cancel := context.WithTimeout(context.Background(), drainBound)
	defer cancel()
	if !waitOrStop(stopped, bound.Done()) {
		s.log.Error("shutdown: relay loops did not stop; giving up on them", "waited", drainBound)
	}
	return nil
}

// liveSessions counts the sessions admitted and not yet finished. Unlike a
// WaitGroup it may be added to while Shutdown waits (a stuck loop that
// Shutdown gave up on may still accept when it comes back), and drained
// can be checked without waiting. Every loop counts every session in and
// out, so the count is an atomic; the mutex is taken only by drained and
// by the done that brings the count to zero.
type liveSessions struct {
	n    atomic.Int64
	mu   sync.Mutex
	zero chan struct{} // closed when n drops to 0; nil until drained asks
}

func (c *liveSessions) add() { c.n.Add(1) }

func (c *liveSessions) done() {
	if c.n.Add(-1) != 0 {
		return
	}
	c.mu.Lock()
	// A session admitted since may have made it 1 again: its own done
	// will close zero.
	if c.n.Load() == 0 && c.zero != nil {
		close(c.zero)
		c.zero = nil
	}
	c.mu.Unlock()
}

// drained returns a channel that is closed once no session is live: at
// once if none is now.
func (c *liveSessions) drained() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n.Load() == 0 {
		return closedChan
	}
	if c.zero == nil {
		c.zero = make(chan struct{})
	}
	return c.zero
}

func (s *Server) closeLoops() {
	for _, l := range s.loops {
		l.Close()
	}
}
