// Package pool chooses the upstream member for each new session of a
// route, and keeps track of which members can take one.
//
// A Pool's members come from its Specs: an IP address is a member as it
// is; a DNS name expands to every address it resolves to, and an SRV name
// to its targets with their ports, weights and priorities, both looked up
// again in the background (package discover). The members form tiers:
// primaries first (an SRV record's priority orders its targets among
// them), backups last; a session goes to the lowest tier with a member
// that can take it, chosen there by the pool's Balance.
//
// A member can take a session unless it drains (by the configuration or
// Steer), is disabled (by Steer), is at its connection cap,
// was found down by the active health check (package health; rise and fall
// thresholds), or is ejected by the passive check: consecutive failed dials
// eject it for a backoff that doubles while it keeps failing, until the
// active check passes or a dial succeeds after the backoff. Failures that
// are pier's own (out of descriptors or ports) are not the member's and
// never count.
//
//	p, _ := pool.New(pool.Config{Route: "db", Members: specs, Log: log}, nil)
//	defer p.Stop()
//	a := p.Pick(client.Addr()) // nil: no member can take a session
//	... dial a.Member().Addr; on failure, a.Retry(err) gives the next ...
//	a.Done()
//
// A pool that originates TLS (Config.UpstreamTLS, or a Spec's TLS) gives
// each member its tls.Config once, from the member's client or the
// route's (Member.TLS); Attempt.UpstreamTLS reports the one of the member
// a session is on, and an active check with CheckTLS handshakes with it.
//
// At run time, Steer drains, disables or reweights a configured member
// (every address its name expands to), and Status reports each member with
// its counters, for the admin API and the metrics:
//
//	err := p.Steer("10.0.0.1:5432", pool.Steering{Drain: new(true)})
//	for _, m := range p.Status() { ... m.Active, m.ConnectFailures ... }
package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pierproxy/pier/internal/dial"
	"github.com/pierproxy/pier/internal/discover"
	"github.com/pierproxy/pier/internal/health"
	"github.com/pierproxy/pier/internal/peek"
	"github.com/pierproxy/pier/internal/tlsconf"
)

// A Spec is one configured member: an address (Host and Port) or an SRV
// name.
type Spec struct {
	Host string // an IP literal or a DNS name
	Port uint16
	SRV  string
	// Weight is the member's share; 0 takes an SRV record's own weight,
	// or 1.
	Weight   int
	Backup   bool
	MaxConns int
	Drain    bool
	// SendProxy is the PROXY protocol version written to this member
	// before any client byte (peek.V1, peek.V2); 0 takes the route's
	// (Config.SendProxy); NoProxy sends none even when the route does.
	SendProxy uint8
	// TLS, if set, is how TLS is originated to this member, replacing the
	// route's (Config.UpstreamTLS). Nil: the route's.
	TLS *tlsconf.Client
}

// NoProxy, as a Spec's SendProxy or a Config's CheckProxy, sends no PROXY
// header whatever the route says.
const NoProxy uint8 = 255

// Name is how logs call the spec: host:port or the SRV name.
func (s *Spec) Name() string { return source(s).String() }

// static returns the address of a spec that names an IP address: one
// member, never looked up.
func (s *Spec) static() (netip.AddrPort, bool) {
	ip, err := netip.ParseAddr(s.Host)
	if err != nil || s.SRV != "" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), s.Port), true
}

// ParseAddress makes the Spec of a host:port address.
func ParseAddress(hostport string) (Spec, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Spec{}, fmt.Errorf("pool: member %q: %w", hostport, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Spec{}, fmt.Errorf("pool: member %q: bad port", hostport)
	}
	return Spec{Host: host, Port: uint16(n)}, nil
}

// Passive is the passive health check: Failures consecutive failed dials
// eject a member for Backoff, doubling up to MaxBackoff while it keeps
// failing. Failures 0 turns it off.
type Passive struct {
	Failures            int
	Backoff, MaxBackoff time.Duration
}

// Config is a pool's configuration.
type Config struct {
	Route   string // for logs
	Balance Balance
	Members []Spec
	// Check, if set, is the active health check, run every CheckInterval
	// on every member, which goes down after Fall failures in a row and
	// comes back after Rise successes.
	Check         *health.Check
	CheckInterval time.Duration
	Rise, Fall    int
	Passive       Passive
	// SendProxy is the route's PROXY version for its members (peek.V1,
	// peek.V2; 0 none), which a Spec's own SendProxy overrides. An
	// Attempt reports the result (relay.MemberProxy).
	SendProxy uint8
	// CheckProxy is what the active check writes before Check.Send:
	// 0 (auto) the member's own PROXY version as a LOCAL header
	// (spec §2.1, §2.2.: a balancer's health check), unless Check.Port
	// probes another port; peek.V1 or peek.V2 that version's LOCAL
	// header to every member; NoProxy nothing.
	CheckProxy uint8
	// CheckTLS: the active check handshakes with each member using the
	// member's TLS configuration (Member.TLS), unless Check.TLS is set
	// already. A member without one is checked in plain TCP.
	CheckTLS bool
	// UpstreamTLS, if set, originates TLS to every member whose Spec has
	// no TLS of its own: each member gets its configuration from it
	// (Member.TLS), one per configured host:port, so that sessions resume
	// per member. Nil: plain TCP.
	UpstreamTLS *tlsconf.Client
	// Retries is how many more members a session may try after a dial
	// fails.
	Retries int
	// TryAll: when no member is healthy, try them anyway instead of
	// failing the session at once.
	TryAll bool
	// Resolver looks names up, every ResolveInterval (or sooner, by TTL),
	// each lookup bounded by ResolveTimeout. Nil: the system's.
	Resolver        discover.Resolver
	ResolveInterval time.Duration
	ResolveTimeout  time.Duration
	Log             *slog.Logger
	// Steering holds the run-time overrides of members, by configured
	// name (Spec.Name()), as the pool starts: the ones a reload keeps.
	// Names no member has are ignored. New copies the map.
	Steering map[string]Steering
}

// A Pool is one route's members. It is safe for concurrent use.
type Pool struct {
	cfg Config
	log *slog.Logger
	set atomic.Pointer[set]
	// sendsProxy is SendsProxy's answer, fixed by cfg: made once in New
	// so that a session's question costs no scan of the specs.
	sendsProxy bool

	// setMu orders changes of the members, each made under mu and then
	// passed on to the checker outside it: the checker's Set waits for
	// probes whose reports take mu.
	setMu    sync.Mutex
	mu       sync.Mutex
	sources  [][]discover.Endpoint // per Spec: its addresses now
	health   map[netip.AddrPort]*Health
	verdicts map[netip.AddrPort]*verdict
	watchers []*discover.Watcher
	checker  *health.Checker
	stopped  bool
	steering map[string]Steering // by configured name; see Steer

	refused atomic.Uint64 // sessions failed because no member could take them
	// unix nanos of the last warning that no member is healthy (try_all),
	// and of the last that none can take a session: each is limited on
	// its own, so the second says so even right after the first.
	lastTryAllWarn, lastNoneWarn atomic.Int64
}

// New makes a pool and starts its lookups and health checks. Names are
// looked up once before New returns (bounded by ResolveTimeout); a name
// that fails to resolve starts empty and is retried in the background.
// With prev, the pool before a reload, members that stay keep their
// health, and their live sessions still count; prev is not stopped.
func New(cfg Config, prev *Pool) (*Pool, error) {
	if len(cfg.Members) == 0 {
		return nil, errors.New("pool: no members")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Resolver == nil {
		cfg.Resolver = discover.System()
	}
	if cfg.ResolveTimeout <= 0 {
		cfg.ResolveTimeout = discover.DefaultTimeout // for the first lookups; Watch fills in the rest
	}
	steering, err := steeringFrom(cfg.Steering)
	if err != nil {
		return nil, fmt.Errorf("pool: route %s: %w", cfg.Route, err)
	}
	cfg.Steering = nil // p.steering is the pool's own, changed by Steer
	p := &Pool{
		cfg:      cfg,
		log:      cfg.Log.With("route", cfg.Route),
		sources:  make([][]discover.Endpoint, len(cfg.Members)),
		health:   make(map[netip.AddrPort]*Health),
		verdicts: make(map[netip.AddrPort]*verdict),
		steering: steering,
	}
	p.sendsProxy = sendsProxy(&p.cfg)
	// What a reload keeps: the sessions' view of every address, the
	// check's verdicts if the check is the same, and the addresses names
	// had (a lookup failing during the reload keeps them, as it would
	// have without one). Nothing of prev is changed.
	var prevSources map[discover.Source][]discover.Endpoint
	if prev != nil {
		sameCheck := sameCheck(&prev.cfg, &cfg)
		prev.mu.Lock()
		maps.Copy(p.health, prev.health)
		if sameCheck {
			maps.Copy(p.verdicts, prev.verdicts)
		}
		prevSources = make(map[discover.Source][]discover.Endpoint)
		for j := range prev.cfg.Members {
			prevSources[source(&prev.cfg.Members[j])] = prev.sources[j]
		}
		prev.mu.Unlock()
	}
	// Addresses now; names looked up together, within the timeout, unless
	// the pool before had them: its addresses serve while the watcher
	// looks again.
	var wg sync.WaitGroup
	for i := range cfg.Members {
		s := &cfg.Members[i]
		if addr, ok := s.static(); ok {
			p.sources[i] = []discover.Endpoint{{Addr: addr, Target: s.Host}}
			continue
		}
		if eps := prevSources[source(s)]; len(eps) > 0 {
			p.sources[i] = eps
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ResolveTimeout)
			defer cancel()
			eps, _, err := discover.Lookup(ctx, cfg.Resolver, source(s))
			if err != nil {
				p.log.Warn("upstream lookup failed; it has no members until a lookup succeeds", "member", s.Name(), "error", err)
				return
			}
			p.mu.Lock()
			p.sources[i] = eps
			p.mu.Unlock()
		})
	}
	wg.Wait()
	if cfg.Check != nil {
		// A copy: the Preface is the pool's, and sameCheck compares
		// the configured check without it.
		check := *cfg.Check
		if check.Preface == nil {
			check.Preface = p.checkPreface
		}
		if cfg.CheckTLS && check.TLS == nil {
			check.TLS = p.checkTLS
		}
		p.checker = health.NewChecker(&check, cfg.CheckInterval, p.log, p.report)
	}
	p.setMu.Lock()
	p.mu.Lock()
	addrs := p.rebuild()
	p.mu.Unlock()
	if p.checker != nil {
		p.checker.Set(addrs)
	}
	p.setMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range cfg.Members {
		s := &cfg.Members[i]
		if _, ok := s.static(); ok {
			continue
		}
		p.watchers = append(p.watchers, discover.Watch(cfg.Resolver, source(s), cfg.ResolveInterval, cfg.ResolveTimeout, p.log,
			func(eps []discover.Endpoint) { p.update(i, eps) }))
	}
	return p, nil
}

func source(s *Spec) discover.Source {
	return discover.Source{Host: s.Host, Port: s.Port, SRV: s.SRV}
}

// Stop ends the pool's lookups and health checks and waits for them.
// Sessions may still pick from it, and finish on it.
func (p *Pool) Stop() {
	// Not under setMu: a watcher may be waiting for it in update. Once
	// the watchers have stopped, nothing else calls the checker's Set.
	p.mu.Lock()
	p.stopped = true
	ws, k := p.watchers, p.checker
	p.watchers, p.checker = nil, nil
	p.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
	if k != nil {
		k.Stop()
	}
}

// update takes a new expansion of spec i, from its watcher.
func (p *Pool) update(i int, eps []discover.Endpoint) {
	p.setMu.Lock()
	defer p.setMu.Unlock()
	p.mu.Lock()
	if p.stopped || slices.Equal(p.sources[i], eps) {
		// The watcher's first lookup mostly finds what New did.
		p.mu.Unlock()
		return
	}
	p.sources[i] = eps
	addrs := p.rebuild()
	k := p.checker
	p.mu.Unlock()
	if k != nil {
		k.Set(addrs)
	}
	p.log.Info("upstream members changed", "member", p.cfg.Members[i].Name(), "addresses", len(eps))
}

// rebuild makes the set of members from the sources and the steering,
// and returns the addresses for the checker: every address but those
// only disabled members have. Called with p.mu.
func (p *Pool) rebuild() []netip.AddrPort {
	var members []*Member
	seen := make(map[netip.AddrPort]bool) // true: checked
	for i, eps := range p.sources {
		s := &p.cfg.Members[i]
		name := s.Name()
		st := p.steering[name]
		drain, disabled := s.Drain, false
		if st.Drain != nil {
			drain = *st.Drain
		}
		if st.Disabled != nil {
			disabled = *st.Disabled
		}
		ranks := priorityRanks(eps)
		for _, ep := range eps {
			h := p.health[ep.Addr]
			if h == nil {
				h = &Health{}
				p.health[ep.Addr] = h
			}
			v := p.verdicts[ep.Addr]
			if v == nil {
				v = p.newVerdict()
				p.verdicts[ep.Addr] = v
			}
			// An address another name lists and does not disable is
			// still checked.
			seen[ep.Addr] = seen[ep.Addr] || !disabled
			fw := s.Weight
			if fw == 0 {
				fw = max(ep.Weight, 1)
			}
			w := fw
			if st.Weight != nil {
				w = *st.Weight
			}
			tier := ranks[ep.Priority]
			if s.Backup {
				tier += 1 << 16
			}
			members = append(members, &Member{
				Addr: ep.Addr, Name: name, Weight: w, FileWeight: fw, Tier: tier, Backup: s.Backup,
				MaxConns: s.MaxConns, Drain: drain, Disabled: disabled, SendProxy: p.memberProxy(s), h: h, v: v,
				TLS: p.memberTLS(s, ep),
			})
		}
	}
	for addr := range p.health {
		if _, ok := seen[addr]; !ok {
			delete(p.health, addr)
			delete(p.verdicts, addr)
		}
	}
	p.set.Store(newSet(members))
	addrs := make([]netip.AddrPort, 0, len(seen))
	for addr, checked := range seen {
		if checked {
			addrs = append(addrs, addr)
		}
	}
	return addrs
}

func (p *Pool) newVerdict() *verdict {
	return &verdict{state: health.NewState(p.cfg.Rise, p.cfg.Fall, true)}
}

// priorityRanks numbers the distinct SRV priorities of eps from 0, lowest
// first: the tiers of one SRV name. An address's priority is 0, rank 0.
func priorityRanks(eps []discover.Endpoint) map[int]int {
	var ps []int
	for _, ep := range eps {
		ps = append(ps, ep.Priority)
	}
	slices.Sort(ps)
	ranks := make(map[int]int)
	for _, pr := range slices.Compact(ps) {
		ranks[pr] = len(ranks)
	}
	return ranks
}

// sameCheck reports whether two configurations check members alike.
func sameCheck(a, b *Config) bool {
	if (a.Check == nil) != (b.Check == nil) {
		return false
	}
	if a.Check == nil {
		return true
	}
	if a.CheckProxy != b.CheckProxy || a.SendProxy != b.SendProxy || a.CheckTLS != b.CheckTLS {
		return false
	}
	ca, cb := *a.Check, *b.Check
	reA, reB := ca.ExpectRE, cb.ExpectRE
	ca.ExpectRE, cb.ExpectRE = nil, nil
	// Funcs are never DeepEqual; a caller's own Preface is taken to
	// stay the same.
	ca.Preface, cb.Preface = nil, nil
	ca.TLS, cb.TLS = nil, nil
	if (reA == nil) != (reB == nil) || reA != nil && reA.String() != reB.String() {
		return false
	}
	return reflect.DeepEqual(ca, cb) && a.CheckInterval == b.CheckInterval && a.Rise == b.Rise && a.Fall == b.Fall
}

// report takes one active check result, from the Checker.
func (p *Pool) report(addr netip.AddrPort, err error) {
	p.mu.Lock()
	h, v := p.health[addr], p.verdicts[addr]
	p.mu.Unlock()
	if h == nil || v == nil {
		return
	}
	if err == nil {
		h.checksPassed.Add(1)
	} else {
		h.checksFailed.Add(1)
	}
	v.mu.Lock()
	v.lastErr = ""
	if err != nil {
		v.lastErr = err.Error()
	}
	if v.state.Observe(err == nil) {
		if v.state.Up() {
			v.down.Store(false)
			p.log.Info("upstream member up", "addr", addr.String(), "why", fmt.Sprintf("%d health checks passed", p.cfg.Rise), "was", v.why)
		} else {
			v.down.Store(true)
			v.why = "health check: " + err.Error()
			p.log.Warn("upstream member down", "addr", addr.String(), "why", fmt.Sprintf("%d health checks failed, the last: %v", p.cfg.Fall, err))
		}
	}
	v.mu.Unlock()
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ejected {
		h.ejected, h.fails, h.backoff = false, 0, 0
		h.ejectEnd.Store(0)
		p.log.Info("upstream member up", "addr", addr.String(), "why", "a health check passed after its ejection")
	}
}

// failed records a failed dial to m: counted, and the passive check.
func (p *Pool) failed(m *Member, err error) {
	m.h.connectFailures.Add(1)
	pc := &p.cfg.Passive
	if pc.Failures <= 0 || len(p.set.Load().members) == 1 {
		// A lone member is never ejected, as nginx does: there is no
		// other to send its sessions to, and an ejection would only
		// refuse clients after it has recovered.
		return
	}
	h := m.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fails++
	now := time.Now()
	if h.fails < pc.Failures || now.UnixNano() < h.ejectEnd.Load() {
		return
	}
	if h.backoff == 0 {
		h.backoff = pc.Backoff
	} else {
		h.backoff = min(2*h.backoff, max(pc.MaxBackoff, pc.Backoff))
	}
	h.ejectEnd.Store(now.Add(h.backoff).UnixNano())
	h.ejected = true
	p.log.Warn("upstream member down", "addr", m.Addr.String(), "member", m.Name,
		"why", fmt.Sprintf("%d tries in a row failed, the last: %v", h.fails, err), "for", h.backoff)
}

// connected records a dial to m that succeeded.
func (p *Pool) connected(m *Member) {
	h := m.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fails == 0 && !h.ejected {
		return
	}
	if h.ejected {
		p.log.Info("upstream member up", "addr", m.Addr.String(), "member", m.Name, "why", "a connect succeeded after its ejection")
	}
	h.fails, h.backoff, h.ejected = 0, 0, false
	h.ejectEnd.Store(0)
}

// Members returns the pool's members now. The caller must not change
// them.
func (p *Pool) Members() []*Member { return p.set.Load().members }

// Refused returns how many sessions failed because no member could take
// them.
func (p *Pool) Refused() uint64 { return p.refused.Load() }

// An Attempt is one session's use of the pool: the member it is on, the
// ones it tried, and its live-session count.
type Attempt struct {
	p      *Pool
	s      *set
	m      *Member
	tried  []*Member
	triedA [4]*Member
	key    uint64
	left   int
	all    bool // when_all_down try_all is in effect for this session
}

// Pick chooses a member for a new session from client, or returns nil
// when no member can take one (logged, at most once a second, with why).
func (p *Pool) Pick(client netip.Addr) *Attempt {
	a := &Attempt{p: p, s: p.set.Load(), left: p.cfg.Retries}
	a.tried = a.triedA[:0]
	if p.cfg.Balance == Hash {
		a.key = ClientKey(client)
	}
	if a.next() {
		return a
	}
	if p.cfg.TryAll {
		a.all = true
		p.warnNone(&p.lastTryAllWarn, "no upstream member is healthy; trying them anyway (when_all_down: try_all)")
		if a.next() {
			return a
		}
	}
	p.refused.Add(1)
	p.warnNone(&p.lastNoneWarn, "no upstream member can take a session; closing new clients at once")
	return nil
}

// next picks a member not tried yet and counts the session on it.
func (a *Attempt) next() bool {
	c := choice{now: time.Now().UnixNano(), anyHealth: a.all, tried: a.tried, key: a.key}
	for {
		m := a.s.pick(a.p.cfg.Balance, &c)
		if m == nil {
			a.m = nil
			return false
		}
		if take(m) {
			a.m = m
			a.tried = append(a.tried, m)
			return true
		}
		// Full since the pick looked: pass it over.
		c.tried = append(c.tried[:len(c.tried):len(c.tried)], m)
	}
}

// take counts a new session on m, within its cap.
func take(m *Member) bool {
	for {
		n := m.h.active.Load()
		if m.MaxConns > 0 && n >= int64(m.MaxConns) {
			return false
		}
		if m.h.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Member returns the member the session is on.
func (a *Attempt) Member() *Member { return a.m }

// SendProxy returns the PROXY version to write to the member the session
// is on (peek.V1, peek.V2; 0 none): relay.MemberProxy, so that a retry
// to another member writes that member's.
func (a *Attempt) SendProxy() uint8 {
	if a.m == nil {
		return 0
	}
	return a.m.SendProxy
}

// UpstreamTLS returns the TLS configuration of the member the session is
// on (nil: plain TCP): relay.MemberTLS, so that a retry to another member
// handshakes with that member's.
func (a *Attempt) UpstreamTLS() *tls.Config {
	if a.m == nil {
		return nil
	}
	return a.m.TLS
}

// memberTLS is the TLS configuration of the member ep of spec s: from the
// spec's client, or else the route's; nil for plain TCP. The client
// keeps one configuration per name it is given, so every address of one
// host:port shares a session cache; an SRV member is named by its
// target and port, which its certificate is for.
func (p *Pool) memberTLS(s *Spec, ep discover.Endpoint) *tls.Config {
	c := s.TLS
	if c == nil {
		c = p.cfg.UpstreamTLS
	}
	if c == nil {
		return nil
	}
	host := ep.Target
	if host == "" {
		host = ep.Addr.Addr().String()
	}
	return c.Config(net.JoinHostPort(host, strconv.Itoa(int(ep.Addr.Port()))))
}

// checkTLS is the health.Check.TLS of the pool's active check: the
// configuration of the member at addr, nil if it has none (or is gone).
func (p *Pool) checkTLS(addr netip.AddrPort) *tls.Config {
	for _, m := range p.set.Load().members {
		if m.Addr == addr {
			return m.TLS
		}
	}
	return nil
}

// memberProxy resolves a spec's PROXY version against the route's.
func (p *Pool) memberProxy(s *Spec) uint8 {
	switch s.SendProxy {
	case 0:
		return p.cfg.SendProxy
	case NoProxy:
		return 0
	}
	return s.SendProxy
}

// SendsProxy reports whether some member may be sent a PROXY header, so
// that a session needs one built (relay.Params.ProxyOut). It is asked
// for every session: it reads a flag New set.
func (p *Pool) SendsProxy() bool { return p.sendsProxy }

// sendsProxy reports whether cfg sends some member a PROXY header: the
// route does, or a spec does on its own.
func sendsProxy(cfg *Config) bool {
	if cfg.SendProxy != 0 {
		return true
	}
	for i := range cfg.Members {
		if v := cfg.Members[i].SendProxy; v != 0 && v != NoProxy {
			return true
		}
	}
	return false
}

// checkPreface is the health.Check.Preface of the pool's active check: a
// PROXY LOCAL header of the version CheckProxy says, or nil. A member
// that reads a PROXY header first must get one from its checks too, or it
// would take their bytes for a malformed header; LOCAL says "not a
// client: use the connection's own endpoints", as HAProxy's checks do.
func (p *Pool) checkPreface(addr netip.AddrPort) []byte {
	v := p.cfg.CheckProxy
	switch v {
	case NoProxy:
		return nil
	case 0:
		if p.cfg.Check != nil && p.cfg.Check.Port != 0 {
			return nil // another port: not the one that reads headers
		}
		for _, m := range p.set.Load().members {
			if m.Addr == addr {
				v = m.SendProxy
				break
			}
		}
	}
	if v == 0 || v == NoProxy {
		return nil
	}
	return peek.AppendLocal(nil, v)
}

// Retry records that the dial to the current member failed with err and
// returns the address and name of the next member to try, if the session
// has a try left and another member can take it. A failure that is
// pier's own does not count against the member, and is not retried:
// another member would fail alike.
func (a *Attempt) Retry(err error) (netip.AddrPort, string, bool) {
	if a.m == nil {
		return netip.AddrPort{}, "", false
	}
	local := dial.IsLocal(err)
	if !local {
		a.p.failed(a.m, err)
	}
	if local || a.left <= 0 {
		return netip.AddrPort{}, "", false
	}
	a.left--
	a.m.h.active.Add(-1)
	a.m = nil
	ok := a.next()
	if !ok && a.p.cfg.TryAll && !a.all {
		a.all = true
		ok = a.next()
	}
	if !ok {
		return netip.AddrPort{}, "", false
	}
	return a.m.Addr, a.m.Name, true
}

// Failed records that the dial to the current member failed with err,
// when the session may not try another.
func (a *Attempt) Failed(err error) {
	if a.m != nil && !dial.IsLocal(err) {
		a.p.failed(a.m, err)
	}
}

// Connected records that the dial to the current member succeeded.
func (a *Attempt) Connected() {
	if a.m != nil {
		a.p.connected(a.m)
	}
}

// Done ends the session's use of the pool.
func (a *Attempt) Done() {
	if a.m != nil {
		a.m.h.active.Add(-1)
		a.m = nil
	}
}

// warnNone logs msg and why no member can take a session, at most once a
// second for each lastWarn.
func (p *Pool) warnNone(lastWarn *atomic.Int64, msg string) {
	now := time.Now().UnixNano()
	last := lastWarn.Load()
	if now-last < int64(time.Second) || !lastWarn.CompareAndSwap(last, now) {
		return
	}
	var down, ejected, draining, disabled, full int
	members := p.set.Load().members
	for _, m := range members {
		switch {
		case m.Disabled:
			disabled++
		case m.Drain:
			draining++
		case m.v.down.Load():
			down++
		case now < m.h.ejectEnd.Load():
			ejected++
		case m.MaxConns > 0 && m.h.active.Load() >= int64(m.MaxConns):
			full++
		}
	}
	p.log.Warn(msg, "members", len(members), "down", down, "ejected", ejected, "draining", draining, "disabled", disabled, "full", full, "refused", p.refused.Load())
}
