// Package app is pier's application layer: it turns a validated
// configuration into a route table, runs the proxy with it, and reloads it.
// Only app (and the command line above it) imports config; the data path
// sees compiled routes.
//
//	d, err := app.Start(cfg, app.Options{Log: logger})
//	...
//	err = d.Reload(newCfg) // a bad config leaves the running one in force
//	...
//	err = d.Stop(ctx)
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/discover"
	"github.com/pierproxy/pier/internal/health"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/stats"
	"github.com/pierproxy/pier/internal/tlsconf"
	"github.com/pierproxy/pier/internal/udp"
)

// A Daemon is a running proxy and the configuration it was given.
type Daemon struct {
	log  *slog.Logger
	opts Options
	srv  *proxy.Server
	udp  *udp.Server // the udp routes' (udp.go)

	// mu makes Reload and Stop take turns (a program embedding pier may
	// call them from different goroutines), so that Stop sees the last
	// reload's pools and filters whole, and stops them.
	mu      sync.Mutex
	file    *config.Config            // the configuration given (file, flags or code)
	owned   map[string][]config.Route // routes run beside file's, by owner (the Toxiproxy server)
	cfg     *config.Config            // in force: file's routes and every owner's, the overlay's filters
	over    overlay                   // the admin API's changes on top of file
	routes  map[string]*carried       // by route name, carried over reloads
	global  *scopeLimits              // the top level's limits, carried over reloads
	table   *route.Table              // the table in force
	stopped bool

	// tlsFiles re-reads the certificates, keys and CA bundles of the
	// routes in force when their files change; apply gives it each new
	// table's, Stop stops it.
	tlsFiles *tlsconf.Watcher

	// draining is set when Stop begins: readiness probes fail from then
	// on, while live sessions finish.
	draining atomic.Bool

	servers servers  // the admin and Toxiproxy APIs; under mu
	history *history // each route's recent rates, for the dashboard
	toxiGen uint64   // counts the Toxiproxy APIs a reload removed; under mu

	// serving counts the servers' Serve loops and the shutdowns of those a
	// reload closed or moved; stopServers waits for them, so none outlives
	// Stop.
	serving sync.WaitGroup

	// Reloads, for the metrics: Start counts as the first good one.
	reloadsOK, reloadsFailed atomic.Uint64
	lastReloadOK             atomic.Int64 // unix nanoseconds
}

// Options configure a Daemon beyond its configuration.
type Options struct {
	// Log receives every component's events and the access log. It must
	// not block (see pier.Options.Log).
	Log *slog.Logger
	// Loops is the number of relay loops; zero means one per GOMAXPROCS.
	Loops int
	// Level is Log's level, which the admin API may change at run time.
	// Nil: the level is fixed.
	Level *slog.LevelVar
	// LogDropped reports how many log records were dropped because the
	// log's queue was full, for the metrics. Nil: none are counted.
	LogDropped func() (access, other uint64)
	// ToxiproxySeed seeds the Toxiproxy API's random draws (toxicity,
	// jitter); nil: a random seed.
	ToxiproxySeed *uint64
	// ToxiproxyConfig is a JSON file of proxies the Toxiproxy API creates
	// before it listens (toxiproxy-server's -config); a proxy that cannot
	// be made is logged, as toxiproxy-server does, and the rest are.
	ToxiproxyConfig string
	// ConfigFile is the file ReloadFile reads (SIGHUP, the admin API's
	// reload). Empty: the configuration came from flags or code.
	ConfigFile string
}

// carried is what a route keeps across reloads while its name stays: its
// connection count, and its filters, which live sessions follow.
type carried struct {
	pool    *pool.Pool // its members' health and live sessions carry over
	limit   *admit.Limit
	stats   *stats.Route // the data path's counters
	filters *chain.InForce
	cfg     []config.Filter // the configuration of the set in filters
	set     *chain.Set      // the set compiled from cfg
	udp     bool            // set was compiled for a udp route
	// limits are the route's accept rate and per-client table, which
	// keep their tokens and live counts while the route's name stays;
	// matches its sessions by match key, while its keys stay.
	limits  *scopeLimits
	matches *stats.Matches
	// tls are the route's TLS server and clients, made by the last
	// compile (each compile reads the files afresh), for the Watcher.
	tls []tlsconf.Refresher
}

// Start compiles cfg and starts serving it.
func Start(cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	srv, err := proxy.New(proxy.Options{Log: opts.Log, Loops: opts.Loops})
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: opts.Log, opts: opts, srv: srv, routes: make(map[string]*carried), owned: make(map[string][]config.Route),
		history: newHistory(), tlsFiles: tlsconf.NewWatcher(0, opts.Log)}
	if d.udp, err = d.newUDP(); err != nil {
		srv.Shutdown(context.Background())
		return nil, err
	}
	d.mu.Lock()
	err = d.apply(cfg, cfg, overlay{})
	d.mu.Unlock()
	if err != nil {
		d.tlsFiles.Stop()
		d.udp.Shutdown(context.Background())
		srv.Shutdown(context.Background())
		return nil, err
	}
	if cfg.Toxiproxy != nil {
		d.prepareToxiproxy()
	}
	d.mu.Lock()
	err = d.openServers(cfg)
	d.mu.Unlock()
	if err != nil {
		d.Stop(context.Background())
		return nil, err
	}
	d.countReload(nil)
	d.history.start(d.sampleRoutes)
	return d, nil
}

// Reload makes cfg the configuration in force, beside the routes owners
// added (SetOwnedRoutes). On error the running one stays, untouched.
func (d *Daemon) Reload(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errors.New("app: stopped: no reload")
	}
	_, _, err := d.reload(cfg)
	d.countReload(err)
	return err
}

// countReload counts a reload's result for the metrics.
func (d *Daemon) countReload(err error) {
	if err != nil {
		d.reloadsFailed.Add(1)
		return
	}
	d.reloadsOK.Add(1)
	d.lastReloadOK.Store(time.Now().UnixNano())
}

// reload is Reload under mu; it says which overlay entries it kept and
// dropped.
func (d *Daemon) reload(cfg *config.Config) (kept, dropped []string, err error) {
	owned := d.owned
	if cfg.Toxiproxy == nil && owned[toxiproxyOwner] != nil {
		// The Toxiproxy API goes, and its proxies with it.
		owned = maps.Clone(owned)
		delete(owned, toxiproxyOwner)
	}
	inForce, err := d.merge(cfg, owned)
	if err != nil {
		return nil, nil, err
	}
	over := d.over.clone()
	kept, dropped = over.prune(inForce)
	// The servers' new listeners open first: a reload that cannot open
	// them changes nothing.
	servers, err := d.prepareServers(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := d.apply(cfg, inForce, over); err != nil {
		servers.abort()
		return nil, nil, err
	}
	d.owned = owned
	d.commitServers(cfg, servers)
	d.log.Info("configuration reloaded", "file", cfg.File, "routes", len(cfg.Routes))
	if len(kept)+len(dropped) > 0 {
		d.log.Info("overlay kept on reload", "kept", len(kept), "dropped", len(dropped),
			"kept_entries", strings.Join(kept, ", "), "dropped_entries", strings.Join(dropped, ", "))
	}
	return kept, dropped, nil
}

// ErrNoFile is ReloadFile's answer when the configuration came from flags
// or code: there is no file to read again.
var ErrNoFile = errors.New("no config file to reload")

// ReloadFile reads the configuration's file again and reloads it, as
// SIGHUP does.
func (d *Daemon) ReloadFile() error {
	path := d.opts.ConfigFile
	if path == "" {
		return ErrNoFile
	}
	cfg, err := config.Load(path)
	if err != nil {
		d.countReload(err)
		return err
	}
	return d.Reload(cfg)
}

// ConfigFile is the file ReloadFile reads; empty when there is none.
func (d *Daemon) ConfigFile() string { return d.opts.ConfigFile }

// SetOwnedRoutes makes routes the whole set of routes owner runs beside
// the file's (the Toxiproxy server's proxies), and puts them in force as a
// reload does: on error nothing changes.
func (d *Daemon) SetOwnedRoutes(owner string, routes []config.Route) error {
	d.mu.Lock()
	gen := d.toxiGen
	d.mu.Unlock()
	return d.setOwnedRoutes(owner, routes, gen)
}

// setOwnedRoutes is SetOwnedRoutes for an owner made when toxiGen was gen:
// the Toxiproxy API's routes are refused once a reload removed that API.
func (d *Daemon) setOwnedRoutes(owner string, routes []config.Route, gen uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errors.New("app: stopped")
	}
	if owner == toxiproxyOwner && gen != d.toxiGen {
		return errors.New("app: the Toxiproxy API was removed by a reload")
	}
	owned := maps.Clone(d.owned)
	if len(routes) == 0 {
		delete(owned, owner)
	} else {
		owned[owner] = slices.Clone(routes)
	}
	inForce, err := d.merge(d.file, owned)
	if err != nil {
		return err
	}
	over := d.over.clone()
	over.prune(inForce)
	if err := d.apply(d.file, inForce, over); err != nil {
		return err
	}
	d.owned = owned
	return nil
}

// merge is file's configuration with every owner's routes after its own,
// checked whole (a route of an owner may not take a file route's name or
// listen address).
func (d *Daemon) merge(file *config.Config, owned map[string][]config.Route) (*config.Config, error) {
	if len(owned) == 0 {
		return file, nil
	}
	cfg := *file
	cfg.Routes = slices.Clone(file.Routes)
	for _, owner := range slices.Sorted(maps.Keys(owned)) {
		cfg.Routes = append(cfg.Routes, owned[owner]...)
	}
	if err := config.Check(&cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Ready reports whether the daemon serves its configuration: false, and
// why, once it began to stop.
func (d *Daemon) Ready() (bool, string) {
	if d.draining.Load() {
		return false, "draining"
	}
	return true, ""
}

// apply puts cfg, with over on top, in force; file is the configuration
// it came from, before owners' routes were added.
func (d *Daemon) apply(file, cfg *config.Config, over overlay) error {
	cfg = over.apply(cfg)
	t, routes, global, made, err := compile(cfg, d.routes, d.global, over.steering, d.srv.Loops(), d.log)
	if err != nil {
		return err
	}
	restoreUDP, err := d.applyUDP(t, d.table)
	if err != nil {
		stopPools(routes)
		closeSets(made, d.log)
		return err
	}
	if err := d.srv.Apply(t); err != nil {
		restoreUDP()
		stopPools(routes)
		closeSets(made, d.log)
		return err
	}
	d.table = t
	// The old pools' checks and lookups stop; their sessions finish.
	stopPools(d.routes)
	// Only now, with the new table in force, may limits and filters
	// change. A changed filter set reaches the route's live sessions at
	// once, idle ones too (FiltersChanged); a session with bytes in flight
	// takes it up once they have gone out.
	for i := range cfg.Routes {
		c := routes[cfg.Routes[i].Name]
		c.limit.SetMax(cfg.Routes[i].MaxConnections)
		c.limits.retune(cfg.Routes[i].Name, d.log)
		if c.filters.Load() != c.set {
			c.filters.Store(c.set)
			d.srv.FiltersChanged(c.filters)
		}
	}
	// Filters no route holds any more close (files flush and close now,
	// not when the collector finds them). Sessions still draining an old
	// set's streams finish harmlessly: a closed filter's streams count
	// what they can no longer write.
	global.retune("global", d.log)
	closeSets(droppedSets(d.routes, routes), d.log)
	d.file, d.cfg, d.over, d.routes, d.global = file, cfg, over, routes, global
	d.tlsFiles.Set(tlsRefreshers(routes))
	return nil
}

// tlsRefreshers is every TLS server and client of routes, for the
// Watcher, in a stable order (by route name).
func tlsRefreshers(routes map[string]*carried) []tlsconf.Refresher {
	var rs []tlsconf.Refresher
	for _, name := range slices.Sorted(maps.Keys(routes)) {
		rs = append(rs, routes[name].tls...)
	}
	return rs
}

// droppedSets is the filters of before's sets that no set of after holds,
// as sets for closeSets. A filter an edit kept (compileFilters reuses
// unchanged entries) is held by the new set and stays open.
func droppedSets(before, after map[string]*carried) []*chain.Set {
	held := make(map[any]bool)
	for _, c := range after {
		if c.set == nil {
			continue
		}
		for _, f := range c.set.Filters {
			if k, ok := identity(f.Filter); ok {
				held[k] = true
			}
		}
	}
	var gone chain.Set
	for _, c := range before {
		if c.set == nil {
			continue
		}
		for _, f := range c.set.Filters {
			if k, ok := identity(f.Filter); ok && !held[k] {
				held[k] = true // closed once
				gone.Filters = append(gone.Filters, f)
			}
		}
	}
	if len(gone.Filters) == 0 {
		return nil
	}
	return []*chain.Set{&gone}
}

// identity is a filter as a map key: only a Closer needs closing, and only
// a comparable value (in practice a pointer) can be told apart from
// another; a filter that is neither is never closed here.
func identity(f filter.Filter) (any, bool) {
	if _, ok := f.(io.Closer); !ok {
		return nil, false
	}
	if t := reflect.TypeOf(f); t == nil || !t.Comparable() {
		return nil, false
	}
	return f, true
}

// closeSets closes the filters of sets that implement io.Closer, each
// once, all at the same time, so that a stop waits for the slowest one
// rather than for their sum; and it logs what fails. It waits at most
// filterCloseBound: a Close that takes longer (a filter stuck on a dead
// disk) is logged and left to finish on its own.
func closeSets(sets []*chain.Set, log *slog.Logger) {
	var closing []chain.Named
	for _, set := range sets {
		for _, f := range set.Filters {
			if _, ok := f.Filter.(io.Closer); ok {
				closing = append(closing, f)
			}
		}
	}
	if len(closing) == 0 {
		return
	}
	done := make(chan struct{}, len(closing))
	for _, f := range closing {
		go func() {
			if err := f.Filter.(io.Closer).Close(); err != nil {
				log.Error("closing a filter", "filter", f.Name, "error", err)
			}
			done <- struct{}{}
		}()
	}
	bound := time.NewTimer(filterCloseBound)
	defer bound.Stop()
	for left := len(closing); left > 0; left-- {
		select {
		case <-done:
		case <-bound.C:
			log.Error("closing filters: some did not return; not waiting for them", "waited", filterCloseBound, "left", left)
			return
		}
	}
}

// filterCloseBound is how long closing filters may take. The built-in
// ones flush for at most 2s each.
const filterCloseBound = 5 * time.Second

// stopPools stops the pools of routes. Every compile makes new pools
// (which carry what they keep from the old), so a reload stops every old
// one.
func stopPools(routes map[string]*carried) {
	for _, c := range routes {
		c.pool.Stop()
	}
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Addrs returns the bound addresses of a route's listeners.
func (d *Daemon) Addrs(route string) []netip.AddrPort {
	return append(d.srv.Addrs(route), d.udp.Addrs(route)...)
}

// Live returns the number of sessions in progress.
func (d *Daemon) Live() int64 { return d.srv.Live() }

// Stats returns the proxy's totals since Start.
func (d *Daemon) Stats() proxy.Stats { return d.srv.Stats() }

// Stop stops accepting and lets live sessions finish for the configured
// grace period, or until ctx is done, whichever comes first; then it ends
// the rest and closes the filters. It returns the context's error
// (context.DeadlineExceeded when the grace period ran out) if sessions were
// cut short.
func (d *Daemon) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	d.draining.Store(true)
	cfg, routes := d.cfg, d.routes
	d.mu.Unlock()
	// The admin server stops last, so that readiness probes see the drain;
	// the Toxiproxy API with it.
	defer d.stopServers()
	defer d.history.close()
	if cfg != nil && cfg.GracePeriod > 0 {
		g := cfg.GracePeriod
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g)
		defer cancel()
	}
	start := time.Now()
	live := d.srv.Live()
	flows := d.udp.Live()
	// A UDP flow has no end to wait for: its datagrams are single, so
	// flows end at once, and TCP sessions drain meanwhile.
	d.udp.Shutdown(ctx)
	err := d.srv.Shutdown(ctx)
	d.tlsFiles.Stop()
	stopPools(routes)
	sets := make([]*chain.Set, 0, len(routes))
	for _, c := range routes {
		if c.set != nil {
			sets = append(sets, c.set)
		}
	}
	closeSets(sets, d.log)
	st, ust := d.srv.Stats(), d.udp.Stats()
	d.log.Info("stopped", "sessions_at_stop", live, "drain", time.Since(start).Round(time.Millisecond), "cut_short", err != nil,
		"sessions", st.Sessions, "bytes_to_upstream", st.ToUpstream, "bytes_to_client", st.ToClient,
		"refused", st.Refused, "failed_dials", st.FailedDials,
		"udp_flows_at_stop", flows, "udp_flows", ust.Flows, "udp_datagrams_to_upstream", ust.DatagramsToUpstream,
		"udp_datagrams_to_client", ust.DatagramsToClient, "udp_dropped", ust.Dropped.TooBig+ust.Dropped.QueueFull+ust.Dropped.Filter+ust.Dropped.Other)
	return err
}

// compile turns a validated configuration into a route table. Routes that
// keep their name keep their limit (so live sessions keep counting; the
// maximum takes the new value) and their filters' Live; filters whose
// configuration did not change keep their compiled set, so live sessions
// are not disturbed.
//
// made lists the filter sets compiled here, which the caller closes if the
// table is not put in force. On error, compile closes them itself.
//
// The route's and the top level's accept rates and per-client tables
// carry over the same way (prev, prevGlobal): compile reuses them, and
// the caller retunes them once the table is in force.
func compile(cfg *config.Config, prev map[string]*carried, prevGlobal *scopeLimits, steering func(route string) map[string]pool.Steering, loops int, log *slog.Logger) (_ *route.Table, _ map[string]*carried, global *scopeLimits, made []*chain.Set, err error) {
	next := make(map[string]*carried, len(cfg.Routes))
	defer func() {
		if err != nil {
			stopPools(next) // the pools made here
			closeSets(made, log)
		}
	}()
	routes := make([]*route.Route, 0, len(cfg.Routes))
	var errs config.Errors
	resolver := discover.System()
	if len(cfg.Resolver.Servers) > 0 {
		resolver = discover.Servers(cfg.Resolver.Servers)
	}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		old := prev[rc.Name]
		var oldPool *pool.Pool
		if old != nil {
			oldPool = old.pool
		}
		pc, clients, err := poolConfig(cfg, rc, resolver, log)
		if err != nil {
			return nil, nil, nil, made, err
		}
		var server *tlsconf.Server
		if rc.TLS != nil {
			if server, err = tlsServer(cfg.File, rc, log); err != nil {
				return nil, nil, nil, made, err
			}
		}
		pc.Steering = steering(rc.Name)
		p, err := pool.New(pc, oldPool)
		if err != nil {
			return nil, nil, nil, made, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		c := &carried{}
		if old != nil {
			*c = *old
		} else {
			c.limit = admit.NewLimit(rc.MaxConnections)
			c.stats = stats.NewRoute(rc.Name, loops)
			c.filters = new(chain.InForce)
		}
		udp := rc.Protocol == config.UDP
		if c.set == nil || !sameFilters(c.cfg, rc.Filters) || c.udp != udp {
			// A route that changed protocol checks its filters again
			// (the admin API's list came through no loader).
			prevCfg, prevSet := c.cfg, c.set
			if c.udp != udp {
				prevCfg, prevSet = nil, nil
			}
			set, fresh, ferrs := compileFilters(cfg.File, udp, rc.Filters, prevCfg, prevSet, log)
			errs = append(errs, ferrs...)
			if fresh != nil {
				made = append(made, fresh)
			}
			c.set, c.cfg, c.udp = set, rc.Filters, udp
		}
		if old == nil {
			// A new route's filters are in force before its listener
			// opens: its first client must not be relayed without them.
			// A route that stays shares its InForce with live sessions,
			// and takes a new set only once the new table is in force.
			c.filters.Store(c.set)
		}
		c.pool = p
		c.tls = clients
		if server != nil {
			c.tls = append(c.tls, server)
		}
		next[rc.Name] = c
		rt := &route.Route{
			Name:             rc.Name,
			Listen:           rc.Listen,
			Protocol:         rc.Protocol,
			Responses:        rc.Responses,
			MaxFlows:         rc.MaxFlows,
			Pool:             p,
			Limit:            c.limit,
			Stats:            c.stats,
			Filters:          c.filters,
			ConnectTimeout:   rc.ConnectTimeout,
			ConnectBudget:    rc.Budget(),
			IdleTimeout:      rc.IdleTimeout,
			HalfCloseTimeout: rc.HalfCloseTimeout,
			TLS:              server,
			HandshakeTimeout: rc.HandshakeTimeout,
		}
		edgeRoute(rt, rc, c, loops)
		routes = append(routes, rt)
	}
	if len(errs) > 0 {
		return nil, nil, nil, made, errs
	}
	g, global := edgeGlobal(cfg, prevGlobal)
	t, err := route.NewTable(routes, g)
	if err != nil {
		return nil, nil, nil, made, err
	}
	return t, next, global, made, nil
}

// poolConfig is the pool of a route's configuration, and the TLS clients
// it made for the route's members (their files read now).
func poolConfig(cfg *config.Config, rc *config.Route, r discover.Resolver, log *slog.Logger) (pool.Config, []tlsconf.Refresher, error) {
	bal, err := pool.ParseBalance(rc.Balance)
	if err != nil {
		return pool.Config{}, nil, fmt.Errorf("route %s: %w", rc.Name, err)
	}
	var clients []tlsconf.Refresher
	upstreamTLS := func(u *config.UpstreamTLS) (*tlsconf.Client, error) {
		if u == nil {
			return nil, nil
		}
		c, err := tlsconf.NewClient(tlsconf.ClientSettings{
			ServerName: u.ServerName, CA: u.CA, Cert: u.Cert, Key: u.Key, ALPN: u.ALPN, InsecureSkipVerify: u.InsecureSkipVerify,
		}, log.With("route", rc.Name))
		if err != nil {
			return nil, tlsError(cfg.File, rc, u.Pos, "upstream_tls", err)
		}
		clients = append(clients, c)
		return c, nil
	}
	pc := pool.Config{
		Route:   rc.Name,
		Balance: bal,
		Passive: pool.Passive{
			Failures:   rc.PassiveCheck.Failures,
			Backoff:    rc.PassiveCheck.Backoff,
			MaxBackoff: rc.PassiveCheck.MaxBackoff,
		},
		Retries:         rc.Retries,
		TryAll:          rc.WhenAllDown == "try_all",
		SendProxy:       proxyVersion(rc.SendProxy),
		Resolver:        r,
		ResolveInterval: cfg.Resolver.Interval,
		ResolveTimeout:  cfg.Resolver.Timeout,
		Log:             log,
	}
	if hc := rc.HealthCheck; hc != nil {
		pc.Check = &health.Check{Network: rc.Protocol, Timeout: hc.Timeout, Port: hc.Port}
		if hc.Send != "" {
			pc.Check.Send = []byte(hc.Send)
		}
		if hc.Expect != "" {
			pc.Check.Expect = []byte(hc.Expect)
		}
		if hc.ExpectRegexp != "" {
			re, err := regexp.Compile(hc.ExpectRegexp)
			if err != nil {
				return pool.Config{}, nil, fmt.Errorf("route %s: health_check: expect_regexp: %w", rc.Name, err)
			}
			pc.Check.ExpectRE = re
		}
		pc.CheckInterval, pc.Rise, pc.Fall = hc.Interval, hc.Rise, hc.Fall
		pc.CheckProxy = checkProxy(hc.SendProxy)
		pc.CheckTLS = hc.TLS
	}
	if pc.UpstreamTLS, err = upstreamTLS(rc.UpstreamTLS); err != nil {
		return pool.Config{}, nil, err
	}
	for _, u := range rc.Upstreams {
		spec := pool.Spec{SRV: u.SRV, Weight: u.Weight, Backup: u.Backup, MaxConns: u.MaxConnections, Drain: u.Drain,
			SendProxy: memberProxy(u.SendProxy)}
		if u.Address != "" {
			a, err := pool.ParseAddress(u.Address)
			if err != nil {
				return pool.Config{}, nil, fmt.Errorf("route %s: %w", rc.Name, err)
			}
			spec.Host, spec.Port = a.Host, a.Port
		}
		if spec.TLS, err = upstreamTLS(u.UpstreamTLS); err != nil {
			return pool.Config{}, nil, err
		}
		pc.Members = append(pc.Members, spec)
	}
	return pc, clients, nil
}

// tlsServer makes the TLS server of a route that terminates, reading its
// files.
func tlsServer(file string, rc *config.Route, log *slog.Logger) (*tlsconf.Server, error) {
	t := rc.TLS
	s := tlsconf.ServerSettings{MinVersion: config.TLSVersion(t.MinVersion), ALPN: t.ALPN}
	for _, c := range t.Certificates {
		s.Certificates = append(s.Certificates, tlsconf.Pair{Cert: c.Cert, Key: c.Key})
	}
	for _, name := range t.CipherSuites {
		id, ok := config.CipherSuiteID(name)
		if !ok {
			return nil, tlsError(file, rc, t.Pos, "tls", fmt.Errorf("cipher_suites: %q is not a cipher suite Go offers", name))
		}
		s.CipherSuites = append(s.CipherSuites, id)
	}
	if ca := t.ClientAuth; ca != nil {
		s.ClientCA, s.ClientAuthRequired = ca.CA, ca.Required
	}
	srv, err := tlsconf.NewServer(s, log.With("route", rc.Name))
	if err != nil {
		return nil, tlsError(file, rc, t.Pos, "tls", err)
	}
	return srv, nil
}

// tlsError is a TLS setting of rc that could not be put in force (a file
// changed since the check, or a Config built in code): at the setting's
// place in the file, or naming the route.
func tlsError(file string, rc *config.Route, at config.Pos, key string, err error) error {
	msg := fmt.Sprintf("route %s: %s: %v", rc.Name, key, err)
	if at.Line == 0 && at.Place == "" {
		return errors.New(msg)
	}
	return config.Errors{config.ErrorAt(file, at, msg)}
}

// compileFilters makes a route's filters. The loader checked their
// options already; what can fail here is what a check cannot see, such as
// a file that cannot be opened. An empty list compiles to no set at all,
// so the route's sessions splice without a look at filters.
//
// An entry whose configuration prevCfg holds unchanged takes prev's filter
// (the first unused one equal to it), so that an edit of one filter does
// not reopen (and truncate) another's dump or capture file.
//
// fresh holds only the filters built here, which the caller closes if the
// set is not put in force (a reused one stays in force in prev).
//
// A factory that panics fails the configuration like one that returns an
// error; its stack is logged.
func compileFilters(file string, datagrams bool, fs []config.Filter, prevCfg []config.Filter, prev *chain.Set, log *slog.Logger) (set, fresh *chain.Set, _ config.Errors) {
	if len(fs) == 0 {
		return nil, nil, nil
	}
	set, fresh = &chain.Set{}, &chain.Set{}
	var errs config.Errors
	used := make([]bool, len(prevCfg))
	for i := range fs {
		f := &fs[i]
		if j := reusable(f, prevCfg, prev, used); j >= 0 {
			used[j] = true
			set.Filters = append(set.Filters, prev.Filters[j])
			continue
		}
		spec, ok := filter.Lookup(f.Name)
		if !ok {
			errs = append(errs, config.ErrorAt(file, f.Pos, fmt.Sprintf("filter: unknown filter %q", f.Name)))
			continue
		}
		if spec.DatagramOnly && !datagrams {
			// The loader says so too; a filter list the admin API edits
			// comes here without it.
			errs = append(errs, config.ErrorAt(file, f.Pos, fmt.Sprintf("filter %q works only on udp routes", f.Name)))
			continue
		}
		flt, err := spec.Build(f.NewOptions().WithLogger(log.With("filter", f.Name)))
		if pe, ok := errors.AsType[*filter.PanicError](err); ok {
			log.Error("filter factory panicked", "filter", f.Name, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
		}
		if err != nil {
			msg := err.Error()
			if f.Pos.Place != "" {
				// "flag -dump: to: ...", as the command line words the
				// errors the loader finds, not "flag -dump: dump: to: ...".
				msg = strings.TrimPrefix(msg, f.Name+": ")
			}
			errs = append(errs, config.ErrorAt(file, f.Pos, msg))
			continue
		}
		if _, ok := flt.(filter.DatagramFilter); datagrams && !ok {
			errs = append(errs, config.ErrorAt(file, f.Pos, fmt.Sprintf("filter %q does not work on datagrams (udp routes)", f.Name)))
			if c, ok := flt.(interface{ Close() error }); ok {
				c.Close() // built for nothing: its files go now
			}
			continue
		}
		set.Filters = append(set.Filters, chain.Named{Name: f.Name, Filter: flt})
		fresh.Filters = append(fresh.Filters, chain.Named{Name: f.Name, Filter: flt})
	}
	return set, fresh, errs
}

// reusable is the index of the first entry of prevCfg not used yet that
// says the same as f, or -1.
func reusable(f *config.Filter, prevCfg []config.Filter, prev *chain.Set, used []bool) int {
	if prev == nil || len(prev.Filters) != len(prevCfg) {
		return -1
	}
	for j := range prevCfg {
		if !used[j] && sameFilter(f, &prevCfg[j]) {
			return j
		}
	}
	return -1
}

// sameFilters reports whether two filter lists say the same, wherever in
// the file they are written.
func sameFilters(a, b []config.Filter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameFilter(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

// sameFilter reports whether two filter entries say the same.
func sameFilter(a, b *config.Filter) bool {
	if a.Name != b.Name || len(a.Options) != len(b.Options) {
		return false
	}
	for k, va := range a.Options {
		vb, ok := b.Options[k]
		if !ok || va.Text != vb.Text || va.IsList != vb.IsList || !slices.Equal(va.List, vb.List) {
			return false
		}
	}
	return true
}
