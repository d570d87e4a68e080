package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/metrics"
	"github.com/pierproxy/pier/internal/toxiproxy"
)

// serverStopBound is how long Stop waits for the admin and Toxiproxy
// servers' requests under way; the rest are cut.
const serverStopBound = time.Second

// servers are the HTTP servers beside the data path: the admin API and
// the Toxiproxy API, each opened, moved and closed by the configuration.
// Only the Daemon's mu holder changes them.
type servers struct {
	admin       *admin.Server
	adminListen string // as configured; "" when not served
	adminAddr   net.Addr

	toxi       *http.Server
	toxiAPI    *toxiproxy.Server
	toxiListen string
	toxiAddr   net.Addr
}

// openServers makes the admin and Toxiproxy servers follow cfg, as one
// step that fails whole: prepareServers, then commit.
func (d *Daemon) openServers(cfg *config.Config) error {
	next, err := d.prepareServers(cfg)
	if err != nil {
		return err
	}
	d.commitServers(cfg, next)
	return nil
}

// serversNext is what cfg's servers need that may fail: the admin token,
// read again every time, and the listeners of servers that open or move.
// A reload prepares it before it changes anything, and commits it once
// its routes are in force, or aborts it.
type serversNext struct {
	token           []byte
	adminLn, toxiLn net.Listener // nil: none, or the running one stays
}

func (n *serversNext) abort() {
	for _, ln := range []net.Listener{n.adminLn, n.toxiLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// prepareServers reads the token and opens the listeners of servers that
// open or move (the old ones keep serving meanwhile); d.mu is held.
func (d *Daemon) prepareServers(cfg *config.Config) (*serversNext, error) {
	s := &d.servers
	next := &serversNext{}
	if a := cfg.Admin; a != nil {
		if a.TokenFile != "" {
			t, err := config.ReadToken(a.TokenFile)
			if err != nil {
				return nil, err
			}
			next.token = t
			if fi, err := os.Stat(a.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
				d.log.Warn("the admin token file can be read by others than its owner", "file", a.TokenFile, "mode", fi.Mode().Perm().String())
			}
		}
		if s.admin == nil || s.adminListen != a.Listen {
			ln, err := net.Listen("tcp", a.Listen)
			if err != nil {
				return nil, fmt.Errorf("admin: %w", err)
			}
			next.adminLn = ln
		}
	}
	if t := cfg.Toxiproxy; t != nil && (s.toxi == nil || s.toxiListen != t.Listen) {
		ln, err := net.Listen("tcp", t.Listen)
		if err != nil {
			next.abort()
			return nil, fmt.Errorf("toxiproxy: %w", err)
		}
		next.toxiLn = ln
	}
	return next, nil
}

// commitServers puts what prepareServers made in force; d.mu is held.
func (d *Daemon) commitServers(cfg *config.Config, next *serversNext) {
	s := &d.servers
	switch a := cfg.Admin; {
	case a == nil:
		d.closeAdmin()
	case next.adminLn == nil:
		s.admin.SetToken(next.token)
	default:
		d.serveAdmin(a, next.token, next.adminLn)
	}
	switch t := cfg.Toxiproxy; {
	case t == nil:
		if s.toxiAPI != nil || s.toxi != nil {
			d.closeToxiproxy()
			s.toxiAPI = nil // its proxies are gone with it
			d.toxiGen++     // and its host with them
		}
	case next.toxiLn != nil:
		d.serveToxiproxy(t, next.toxiLn)
	}
}

func (d *Daemon) serveAdmin(a *config.Admin, token []byte, ln net.Listener) {
	s := &d.servers
	log := d.log.With("server", "admin")
	srv := admin.New(admin.Options{
		Control:    control{d},
		Metrics:    metrics.LoggingHandler(metrics.NewRegistry(source{d}), log),
		Log:        log,
		ListenAddr: a.Listen,
	})
	srv.SetToken(token)
	d.closeAdmin()
	s.admin, s.adminListen, s.adminAddr = srv, a.Listen, ln.Addr()
	d.serving.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "error", err)
		}
	})
	d.log.Info("admin server listening", "addr", ln.Addr().String(), "token", token != nil)
}

// closeAdmin stops the admin server in the background, within
// serverStopBound: the request that asked for the change (a reload through
// the API that moved the server) may be one of those it waits for.
func (d *Daemon) closeAdmin() {
	s := &d.servers
	if s.admin == nil {
		return
	}
	shutdown := s.admin.Shutdown
	d.serving.Go(func() { shutdownBounded(shutdown, nil) })
	s.admin, s.adminListen, s.adminAddr = nil, "", nil
}

// shutdownBounded shuts a server down, waiting serverStopBound at most
// for requests under way; then close (if any) cuts them.
func shutdownBounded(shutdown func(context.Context) error, close func() error) {
	ctx, cancel := context.WithTimeout(context.Background(), serverStopBound)
	defer cancel()
	if shutdown(ctx) != nil && close != nil {
		close()
	}
}

// stopServers stops both servers and waits for them, within
// serverStopBound; Stop calls it last, so that readiness probes see the
// drain.
func (d *Daemon) stopServers() {
	d.mu.Lock()
	s := d.servers
	d.servers = servers{}
	d.mu.Unlock()
	if s.admin != nil {
		shutdownBounded(s.admin.Shutdown, nil)
	}
	if s.toxi != nil {
		shutdownBounded(s.toxi.Shutdown, s.toxi.Close)
	}
	d.serving.Wait()
}

func (d *Daemon) serveToxiproxy(t *config.Toxiproxy, ln net.Listener) {
	s := &d.servers
	log := d.log.With("server", "toxiproxy")
	api := s.toxiAPI
	if api == nil {
		api = d.newToxiproxy()
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	d.closeToxiproxy()
	s.toxi, s.toxiAPI, s.toxiListen, s.toxiAddr = srv, api, t.Listen, ln.Addr()
	d.serving.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("toxiproxy server stopped", "error", err)
		}
	})
	d.log.Info("toxiproxy API listening", "addr", ln.Addr().String())
}

// newToxiproxy makes a Toxiproxy API whose host is the Daemon as it is
// now; d.mu is held.
func (d *Daemon) newToxiproxy() *toxiproxy.Server {
	return toxiproxy.NewServer(toxiHost{d, d.toxiGen}, toxiproxy.Options{Log: d.log.With("server", "toxiproxy"), Seed: d.opts.ToxiproxySeed})
}

// prepareToxiproxy makes the Toxiproxy API before it listens, and creates
// the proxies of Options.ToxiproxyConfig, as toxiproxy-server does with
// its -config: what fails is logged, and the API serves anyway. d.mu is
// not held: each proxy made takes it.
func (d *Daemon) prepareToxiproxy() {
	d.mu.Lock()
	api := d.newToxiproxy()
	d.mu.Unlock()
	if path := d.opts.ToxiproxyConfig; path != "" {
		if f, err := os.Open(path); err != nil {
			d.log.Error("toxiproxy: reading the proxies to create", "error", err)
		} else {
			if err := api.Populate(f); err != nil {
				d.log.Error("toxiproxy: creating the proxies of the config file", "file", path, "error", err)
			} else {
				d.log.Info("toxiproxy: proxies created from the config file", "file", path)
			}
			f.Close()
		}
	}
	d.mu.Lock()
	d.servers.toxiAPI = api
	d.mu.Unlock()
}

func (d *Daemon) closeToxiproxy() {
	s := &d.servers
	if s.toxi == nil {
		return
	}
	shutdown, closeNow := s.toxi.Shutdown, s.toxi.Close
	d.serving.Go(func() { shutdownBounded(shutdown, closeNow) })
	s.toxi, s.toxiListen, s.toxiAddr = nil, "", nil
}

// AdminAddr is the admin server's bound address; nil when none runs.
func (d *Daemon) AdminAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.servers.adminAddr
}

// ToxiproxyAddr is the Toxiproxy API's bound address; nil when none runs.
func (d *Daemon) ToxiproxyAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.servers.toxiAddr
}

// ToxiproxyHost is the Daemon as a Toxiproxy API server's host, for a
// server run outside the Daemon (a test's).
func (d *Daemon) ToxiproxyHost() toxiproxy.Host {
	d.mu.Lock()
	defer d.mu.Unlock()
	return toxiHost{d, d.toxiGen}
}

// toxiproxyOwner owns the Toxiproxy API's routes (SetOwnedRoutes).
const toxiproxyOwner = "toxiproxy"

// toxiHost is the Daemon as the Toxiproxy server's host: its proxies are
// routes the Daemon runs beside the file's. gen is the Daemon's toxiGen
// when the host was made: once a reload removed the API, a request it was
// still serving cannot bring its routes back.
type toxiHost struct {
	d   *Daemon
	gen uint64
}

func (h toxiHost) SetRoutes(routes []config.Route) error {
	err := h.d.setOwnedRoutes(toxiproxyOwner, routes, h.gen)
	if err != nil {
		// Toxiproxy answers a listener that cannot open with the
		// system's words ("listen tcp ...: bind: address already in
		// use"), not pier's place in a file.
		var ne *net.OpError
		if errors.As(err, &ne) {
			return ne
		}
	}
	return err
}

func (h toxiHost) Addrs(route string) []netip.AddrPort { return h.d.Addrs(route) }

func (h toxiHost) EndSessions(ctx context.Context, route string, reset bool) (int, error) {
	return h.d.endRoute(ctx, route, reset)
}
