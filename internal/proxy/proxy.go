// Package proxy wires pier's data path together. A Server owns the
// listeners, the relay loops and the route table in force; serve tells, in
// order, what happens to every client:
//
//	listen → route → admit → pick → dial → relay → finish
//
// Read serve first: every stage is a package of its own under internal/,
// and serve is the only place that knows all of them.
//
//	srv, _ := proxy.New(proxy.Options{Log: logger})
//	srv.Apply(table)           // open listeners, start serving
//	...
//	srv.Apply(newTable)        // reload: kept listeners stay open
//	srv.Shutdown(ctx)          // stop accepting, drain, close
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/listen"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
)

// localErrorPause is how long a listener stops accepting after a dial
// failed for lack of pier's own resources (ephemeral ports, descriptors):
// accepting more clients would only fail them the same way.
const localErrorPause = 100 * time.Millisecond

// Options configure a Server.
type Options struct {
	// Log receives the server's own events and one line per finished
	// session. Nil means slog.Default().
	Log *slog.Logger
	// Loops is the number of relay event loops. Zero means one per
	// GOMAXPROCS.
	Loops int
}

// A Server runs the data path for the routes of its current table.
type Server struct {
	log   *slog.Logger
	loops []*relay.Loop
	wg    sync.WaitGroup // loop goroutines
	ids   atomic.Uint64  // session ids

	table    atomic.Pointer[route.Table]
	sessions sync.WaitGroup // live sessions, for draining

	mu        sync.Mutex
	listeners map[string]*listener // by listen key
	stopped   bool

	rejected    atomic.Uint64 // clients refused by a route's limit
	localErrors atomic.Uint64 // dials that failed for pier's own lack of resources
}

// listener is an open listener and the key the table knows it by.
type listener struct {
	*listen.Listener
	key   string
	ready func(*relay.Loop)        // accepts on a loop; see accept
	pause func(*relay.Loop, error) // for relay.Params.LocalError
}

// acceptBatch bounds the clients one loop accepts per turn, so that a
// flood of connections cannot starve the sessions already on it.
const acceptBatch = 32

// accept takes the clients waiting on ln, on loop's goroutine.
func (s *Server) accept(ln *listener, loop *relay.Loop) {
	for range acceptBatch {
		fd, client, pause, err := ln.Accept()
		if err == nil {
			s.serve(ln, loop, fd, client)
			continue
		}
		if pause > 0 {
			loop.PauseWatch(ln.Fd(), pause)
		}
		if err == unix.EAGAIN || pause > 0 {
			return
		}
		// The client gave up before we took it: try the next one.
	}
}

// New starts a server's relay loops. It serves nothing until Apply.
func New(opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	n := opts.Loops
	if n <= 0 {
		n = runtime.NumCPU()
	}
	s := &Server{log: log, listeners: make(map[string]*listener)}
	for range n {
		l, err := relay.New(log)
		if err != nil {
			s.closeLoops()
			return nil, err
		}
		s.loops = append(s.loops, l)
		s.wg.Go(func() {
			if err := l.Run(); err != nil {
				log.Error("relay loop stopped", "error", err)
			}
		})
	}
	return s, nil
}

// serve is the data path for one accepted client. It runs on the relay
// loop that accepted the client, which from here on dials, relays and
// finishes the session; nothing in it blocks.
func (s *Server) serve(ln *listener, loop *relay.Loop, fd int, client netip.AddrPort) {
	// route: the table in force when the client arrived decides everything
	// that follows, even if a reload swaps it a moment later.
	rt := s.table.Load().Lookup(ln.key)
	if rt == nil {
		unix.Close(fd) // the listener is closing in a reload
		return
	}
	// admit: a client beyond the route's limit costs one accept and one close.
	if !rt.Limit.Acquire() {
		unix.Close(fd)
		if s.rejected.Add(1)&(1<<10-1) == 1 { // the first, then every 1024th
			s.log.Warn("connection limit reached, closing new clients", "route", rt.Name, "rejected", rt.Limit.Rejected())
		}
		return
	}
	// pick: the route's pool chooses the member.
	a := rt.Pool.Pick(client.Addr())
	rec := &session.Record{
		ID:       s.ids.Add(1),
		Route:    rt.Name,
		Client:   client,
		Listener: ln.Addr(),
		Start:    time.Now(),
	}
	s.sessions.Add(1)
	if a == nil {
		// No member can take it: fail fast rather than make the client
		// wait for a dial that cannot work. The pool logs why.
		unix.Close(fd)
		rec.Reason = session.NoUpstream
		s.finish(rt, rec)
		return
	}
	m := a.Member()
	rec.Upstream = m.Name
	// dial, relay, finish: the relay loop connects without blocking, moves
	// the bytes until both sides are done, and calls Done with the record.
	loop.Begin(&relay.Params{
		Client:           fd,
		Target:           m.Addr,
		ConnectTimeout:   rt.ConnectBudget,
		DialTimeout:      rt.ConnectTimeout,
		Upstreams:        a,
		IdleTimeout:      rt.IdleTimeout,
		HalfCloseTimeout: rt.HalfCloseTimeout,
		Record:           rec,
		Done: func(r *session.Record) {
			a.Done()
			s.finish(rt, r)
		},
		LocalError: ln.pause,
		Filters:    rt.Filters,
	})
}

// finish releases what the session held and writes its access log line.
// It runs on a relay loop.
func (s *Server) finish(rt *route.Route, r *session.Record) {
	rt.Limit.Release()
	level := slog.LevelInfo
	switch r.Reason {
	case session.ConnectFailed, session.ConnectTimeout, session.LocalError, session.NoUpstream:
		level = slog.LevelWarn
	}
	s.log.LogAttrs(context.Background(), level, "session", r.Attrs()...)
	s.sessions.Done()
}

// Apply makes t the table in force. Listeners for new addresses open first;
// if any fails, nothing changes and the error says which. Then the table is
// swapped, and listeners no longer in it close. Listeners kept by t stay
// open throughout, so no client is refused by a reload.
func (s *Server) Apply(t *route.Table) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("proxy: server is shut down")
	}
	opened := make(map[string]*listener)
	for _, l := range t.Listens() {
		if _, ok := s.listeners[l.Key]; ok {
			continue
		}
		ln, err := listen.Open(l.Addr, s.log)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return fmt.Errorf("route %s: %w", t.Lookup(l.Key).Name, err)
		}
		opened[l.Key] = s.newListener(ln, l.Key)
	}
	s.table.Store(t)
	for key, ln := range opened {
		s.listeners[key] = ln
		for _, loop := range s.loops {
			if err := loop.Watch(ln.Fd(), ln.ready); err != nil {
				s.log.Error("cannot accept on a loop", "listen", ln.Addr().String(), "error", err)
			}
		}
	}
	for key, ln := range s.listeners {
		if t.Lookup(key) == nil {
			s.closeListener(ln)
			delete(s.listeners, key)
		}
	}
	return nil
}

// closeListener stops every loop accepting on ln, then closes it.
func (s *Server) closeListener(ln *listener) {
	for _, loop := range s.loops {
		loop.Unwatch(ln.Fd())
	}
	ln.Close()
}

func (s *Server) newListener(ln *listen.Listener, key string) *listener {
	l := &listener{Listener: ln, key: key}
	l.ready = func(loop *relay.Loop) { s.accept(l, loop) }
	l.pause = func(loop *relay.Loop, err error) {
		s.localErrors.Add(1)
		loop.PauseWatch(ln.Fd(), max(ln.Backoff(err), localErrorPause))
	}
	return l
}

// Addrs returns the addresses route's listeners are bound to, with the real
// port where the configured one was 0.
func (s *Server) Addrs(route string) []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	if t == nil {
		return nil
	}
	var addrs []netip.AddrPort
	for _, l := range t.Listens() {
		if t.Lookup(l.Key).Name != route {
			continue
		}
		if ln, ok := s.listeners[l.Key]; ok {
			addrs = append(addrs, ln.Addr())
		}
	}
	return addrs
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
// It returns ctx's error if sessions had to be cut short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	// Once no loop accepts on a listener, every session it took has been
	// counted, and the wait for sessions can begin.
	for key, ln := range s.listeners {
		s.closeListener(ln)
		delete(s.listeners, key)
	}
	s.mu.Unlock()

	drained := make(chan struct{})
	go func() {
		s.sessions.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		for _, l := range s.loops {
			l.CloseAll(session.Shutdown)
		}
		<-drained // CloseAll ends every session on the loop's next turn
	}
	s.closeLoops()
	s.wg.Wait()
	return err
}

func (s *Server) closeLoops() {
	for _, l := range s.loops {
		l.Close()
	}
}
