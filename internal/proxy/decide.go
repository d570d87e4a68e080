package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// Bounds of a peek when the routes leave them zero (route.Route's
// PeekTimeout and ProxyIn.Timeout say so): HAProxy's and caddy-l4's
// figures for a client that has not said who it is yet.
const (
	defaultPeekTimeout  = 5 * time.Second
	defaultProxyTimeout = 3 * time.Second
)

// Refusals' access log lines: at most 10 a second after a burst of 100.
// A flood of denied clients must cost pier an accept and a close each,
// not a log write each; every refusal is still counted.
const (
	refusalLogRate  = 10
	refusalLogBurst = 100
)

// admitTop applies the top level to a client at accept (serve), when its
// accept time is the time of the decision (route.Global.Admit).
func admitTop(g route.Global, rec *session.Record, accepting, addr bool) (*route.Held, *route.Refusal) {
	return g.Admit(rec.Client.Addr(), rec.Start, accepting, addr)
}

// admitRoute applies rt's own rules to a client at accept (serve): its
// live sessions against max_connections (rt.Limit) last.
func admitRoute(rt *route.Route, rec *session.Record, h **route.Held) *route.Refusal {
	return rt.Admit(rec.Client.Addr(), rec.Start, h, rt.Limit)
}

// edge returns rec's edge facts, made on first use: plain sessions carry
// none.
func edge(rec *session.Record) *session.Edge {
	if rec.Edge == nil {
		rec.Edge = &session.Edge{}
	}
	return rec.Edge
}

// count counts a refusal, on the route that refused or the listener, on
// loop li's shards, and notes it in rec.
func (s *Server) count(ln *listener, li int, rec *session.Record, r *route.Refusal) {
	rec.Reason = r.Reason
	if r.Limit != "" {
		edge(rec).Limit = r.Limit
	}
	s.stats[li].refused.Add(1)
	if r.Route != nil {
		r.Route.Stats.Shard(li).Refuse(routeRefusal[r.Reason])
		return
	}
	ln.edge.Shard(li).Refuse(listenerRefusal[r.Reason])
}

// The counters of each reason of refusal.
var (
	routeRefusal = map[session.Reason]stats.Refusal{
		session.Limit:       stats.RefusedLimit,
		session.Denied:      stats.RefusedDenied,
		session.ClientLimit: stats.RefusedClientLimit,
		session.RateLimit:   stats.RefusedRateLimit,
	}
	listenerRefusal = map[session.Reason]stats.ListenerRefusal{
		session.Denied:         stats.ListenerDenied,
		session.NoRoute:        stats.ListenerNoRoute,
		session.ProxyUntrusted: stats.ListenerProxyUntrusted,
		session.ProxyError:     stats.ListenerProxyError,
		session.RateLimit:      stats.ListenerRateLimit,
		session.ClientLimit:    stats.ListenerClientLimit,
	}
)

// refuse turns a client away on the loop that accepted it, before any
// session: one close, counted on loop li, and an access log line
// (rate-limited).
func (s *Server) refuse(ln *listener, li int, fd int, rec *session.Record, r *route.Refusal) {
	// Counted before the close: whoever sees the client closed sees it
	// counted too.
	s.count(ln, li, rec, r)
	unix.Close(fd)
	s.ends[li].add(rec) // a burst of refusals shows among the recent ends
	s.logRefusal(rec)
}

// logRefusal writes a refused client's access log line, unless refusals
// come faster than refusalLogRate: then it only counts the line, and the
// next one written says how many it follows. A route's max_connections
// refusals (limit) are logged every one, as before the edge rules came.
func (s *Server) logRefusal(rec *session.Record) {
	if rec.Reason == session.Limit {
		s.logRecord(rec)
		return
	}
	if !s.log.Enabled(context.Background(), slog.LevelWarn) {
		return // no line to write: no token to spend (the limiter's mutex is shared)
	}
	if !s.refusalLog.Allow() {
		s.suppressed.Add(1)
		s.suppressedTotal.Add(1)
		return
	}
	if n := s.suppressed.Swap(0); n > 0 {
		edge(rec).Suppressed = n
	}
	s.logRecord(rec)
}

// matched notes the match key that chose rt, in the record and rt's
// counts on loop li.
func (s *Server) matched(rt *route.Route, key int, rec *session.Record, li int) {
	rec.Route = rt.Name
	if key < 0 {
		return
	}
	edge(rec).Matched = rt.KeyName(key)
	rt.Matches.Shard(li).Add(key)
}

// proxyOut is the PROXY header a session of rt sends its upstream, or nil
// when no member of rt is sent one. h is the header the client's balancer
// sent (nil: none), hello the client's ClientHello (nil: none).
func proxyOut(rt *route.Route, rec *session.Record, h *peek.Header, hello *peek.Hello) *peek.Out {
	if rt.SendProxy == 0 && !rt.Pool.SendsProxy() {
		return nil
	}
	o := &peek.Out{Src: rec.Client, UniqueID: rec.ID}
	if h != nil && !h.Local {
		// Behind a balancer, the address the client dialed is the
		// balancer's, not pier's listener: pass on what it said.
		o.Dst, o.Authority, o.ALPN = h.Dst, h.Authority, h.ALPN
	}
	if hello != nil && hello.ServerName != "" {
		o.Authority = hello.ServerName
	}
	return o
}

// peekFirst starts a session that reads its first bytes before a route is
// chosen: the PROXY header its listener accepts, the ClientHello its
// routes match on. An early decides what follows on the session's loop.
func (s *Server) peekFirst(ln *listener, accepted *relay.Loop, acceptedIdx int, fd int, t *route.Table, g *route.Group, rec *session.Record, trusted bool, h *route.Held) {
	rec.Edge = &session.Edge{}
	s.sessions.add()
	p := func(loop *relay.Loop, li int) *relay.Params {
		e := &early{s: s, ln: ln, loop: loop, li: li, t: t, g: g, rec: rec, trusted: trusted, h: h}
		e.peeking = ln.edge.Shard(e.li)
		e.peeking.EnterPeeking()
		first := peekTimeout(g)
		if g.Proxy != nil {
			e.want = peek.Want{Proxy: g.Proxy.Accept, Hello: g.NeedsHello}
			if e.want.Proxy == 0 {
				e.want.Proxy = peek.Any
			}
			first = proxyTimeout(g)
		}
		return &relay.Params{
			Client:     fd,
			Record:     rec,
			Peek:       &relay.Peek{Max: peek.Max, Timeout: first, Peeked: e.peeked},
			Done:       e.done,
			LocalError: ln.pause,
		}
	}
	if loop, li := s.leastLoaded(accepted, acceptedIdx); loop != accepted {
		if p := p(loop, li); loop.Start(p) {
			return
		}
		ln.edge.Shard(li).LeavePeeking() // not started: the loop is closing
	}
	accepted.Begin(p(accepted, acceptedIdx))
}

func peekTimeout(g *route.Group) time.Duration {
	if g.PeekTimeout > 0 {
		return g.PeekTimeout
	}
	return defaultPeekTimeout
}

func proxyTimeout(g *route.Group) time.Duration {
	if g.Proxy != nil && g.Proxy.Timeout > 0 {
		return g.Proxy.Timeout
	}
	return defaultProxyTimeout
}

// An early is a session reading its first bytes on its loop, and what
// serve knew of it. Its methods run on that loop.
type early struct {
	s       *Server
	ln      *listener
	loop    *relay.Loop
	li      int // loop's index
	t       *route.Table
	g       *route.Group
	rec     *session.Record
	trusted bool // the socket peer may send a PROXY header
	want    peek.Want
	h       *route.Held
	peeking *stats.ListenerShard // counts the session as peeking until it decides

	rt      *route.Route // admitted to it; nil until then
	refused bool         // ended by a refusal (rate-limited log line)
}

// peeked decides, from the bytes a client sent first, what becomes of it
// (relay.Peek.Peeked): wait for more, end it, or dial. In order: the
// PROXY header (believed only from a trusted peer), the top level's rules
// for the address it carries, the ClientHello, the route, the route's
// rules, the member.
func (e *early) peeked(buf []byte, eof bool, elapsed time.Duration) relay.Decision {
	g, rec := e.g, e.rec
	var r peek.Result
	var more bool
	if g.Proxy != nil {
		r, more = peek.Scan(buf, e.want, e.trusted, eof)
	} else {
		// No PROXY header is accepted here: one is plain data, and
		// is not TLS.
		r.ProxyStatus = peek.Absent
		r.Hello, r.HelloStatus, r.HelloNeed = peek.ParseClientHelloNeed(buf)
		more = r.HelloStatus == peek.NeedMore && !eof && len(buf) < peek.Max
	}
	bound := peekTimeout(g)
	if g.Proxy != nil && r.ProxyStatus == peek.NeedMore {
		bound = proxyTimeout(g)
	}
	if more && elapsed < bound {
		// Need: a hello that comes in tiny records is parsed again
		// only once it could be whole, not after every read.
		return relay.Decision{Wait: bound, Need: r.HelloNeed}
	}

	// The PROXY header.
	var hdr *peek.Header
	skip := 0
	if g.Proxy != nil {
		status := r.ProxyStatus
		if status == peek.NeedMore && (len(buf) == 0 || !e.trusted) {
			// Nothing came, or an untrusted peer's bytes only began
			// like a signature: they are its data.
			status = peek.Absent
			r.Hello, r.HelloStatus = peek.ParseClientHello(buf)
		}
		switch status {
		case peek.Complete:
			hdr, skip = &r.Proxy, r.ProxyLen
			e.header(hdr)
		case peek.Absent:
			e.peeking.Header(stats.HeaderAbsent)
			if e.trusted && g.Proxy.Required {
				return e.refuse(&route.Refusal{Reason: session.ProxyError}, peek.ErrMissing)
			}
		case peek.NeedMore:
			return e.refuse(&route.Refusal{Reason: session.ProxyError},
				fmt.Errorf("%w: incomplete after %v", peek.ErrMalformed, elapsed.Round(time.Millisecond)))
		default: // Malformed, TooLarge
			err := r.ProxyErr
			if err == nil {
				err = peek.ErrMalformed
			}
			if errors.Is(err, peek.ErrUntrusted) {
				return e.refuse(&route.Refusal{Reason: session.ProxyUntrusted}, err)
			}
			return e.refuse(&route.Refusal{Reason: session.ProxyError}, err)
		}
		if e.trusted {
			// The balancer's address passed at accept; its client's
			// (or, with LOCAL or no header, its own) is checked now.
			h, ref := e.t.Global().Admit(rec.Client.Addr(), time.Now(), false, true)
			if ref != nil {
				return e.refuse(ref, nil)
			}
			e.h = h
		}
	}

	// The ClientHello.
	var hello *peek.Hello
	if g.NeedsHello {
		switch r.HelloStatus {
		case peek.Complete:
			hello = &r.Hello
			rec.Edge.SNI, rec.Edge.ALPN = r.Hello.ServerName, r.Hello.ALPN
			e.peeking.Peek(stats.PeekTLS)
		case peek.TooLarge:
			e.peeking.Peek(stats.PeekTooLarge)
		case peek.NeedMore:
			if eof {
				e.peeking.Peek(stats.PeekClosed)
			} else {
				e.peeking.Peek(stats.PeekTimeout)
			}
		default: // Absent, Malformed
			e.peeking.Peek(stats.PeekNotTLS)
		}
	}

	// route, admit, pick.
	rt, key := g.Choose(rec.Client.Addr(), hello)
	if rt == nil {
		return e.refuse(&route.Refusal{Reason: session.NoRoute}, nil)
	}
	rec.Route = rt.Name
	// Decided now, up to the peek's timeout after accept: the rates
	// see this time, not the accept time.
	if ref := rt.Admit(rec.Client.Addr(), time.Now(), &e.h, rt.Limit); ref != nil {
		return e.refuse(ref, nil)
	}
	e.s.matched(rt, key, rec, e.li)
	e.rt = rt
	rt.Stats.Shard(e.li).Start()
	a := rt.Pool.Pick(rec.Client.Addr()) // hash balancing sees the client behind a balancer
	if a == nil {
		rec.Reason = session.NoUpstream
		return relay.Decision{End: session.NoUpstream} // done counts it as finish would
	}
	e.peeking.LeavePeeking()
	next := e.s.params(e.ln, e.loop, e.li, -1, rt, a, rec, e.h, proxyOut(rt, rec, hdr, hello))
	return relay.Decision{Next: next, Skip: skip}
}

// header takes a PROXY header in: the address it carries becomes the
// client's everywhere (access log, balancing, access control, limits,
// metrics, dumps), the socket's is kept as the peer. A LOCAL header (a
// balancer's own health check) leaves the connection's endpoints, as the
// spec says (§2.1 UNKNOWN, §2.2 LOCAL).
func (e *early) header(h *peek.Header) {
	ed := e.rec.Edge
	ed.ProxyVersion = h.Version
	if h.Local {
		ed.Proxy = "local"
		e.peeking.Header(stats.HeaderLocal)
		return
	}
	ed.Peer = e.rec.Client
	e.rec.Client = h.Src
	if h.Version == peek.V1 {
		ed.Proxy = "v1"
		e.peeking.Header(stats.HeaderV1)
	} else {
		ed.Proxy = "v2"
		e.peeking.Header(stats.HeaderV2)
	}
	ed.Authority, ed.ProxyALPN = h.Authority, h.ALPN
	ed.UniqueID = printable(h.UniqueID)
	if h.SSL != nil {
		ed.SSL = true
		ed.SSLVersion, ed.SSLCN = h.SSL.Version, h.SSL.CN
		ed.SSLCipher, ed.SSLVerified = h.SSL.Cipher, h.SSL.Verified
	}
}

// printable returns b as text when it is printable ASCII (HAProxy's
// unique-id-format makes such ids), else as hex. It copies: b may be the
// peek buffer, valid only during the call.
func printable(b []byte) string {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return hex.EncodeToString(b)
		}
	}
	return string(b)
}

// refuse ends the session for a refusal, counted now; done logs it.
func (e *early) refuse(r *route.Refusal, err error) relay.Decision {
	e.s.count(e.ln, e.li, e.rec, r)
	e.refused = true
	e.rec.Err = err
	return relay.Decision{End: r.Reason, Err: err}
}

// done is the peeking session's end (relay.Params.Done of its first
// Params): refused, admitted with no member to take it, or ended while
// it peeked (shutdown, the admin API).
func (e *early) done(rec *session.Record) {
	e.peeking.LeavePeeking()
	if e.rt != nil {
		e.rt.Stats.Shard(e.li).End(rec)
		e.h.Release()
		e.s.finish(e.rt, e.loop, e.li, rec)
		return
	}
	e.h.Release()
	e.s.ends[e.li].add(rec)
	if e.refused {
		e.s.logRefusal(rec)
	} else {
		// Ended while it peeked (the client reset or went silent past
		// every bound, the admin API, shutdown): admitted at accept, so
		// a session, though it had no route yet.
		e.s.stats[e.li].sessions.Add(1)
		e.s.logRecord(rec)
	}
	e.s.sessions.done()
}
