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

// openServers makes the admin and Toxiproxy servers follow cfg: a server
// whose address changed opens on the new one before the old one closes,
// so a failure leaves the old one serving (and fails the reload). The
// admin token is read again every time.
func (d *Daemon) openServers(cfg *config.Config) error {
	if err := d.openAdmin(cfg.Admin); err != nil {
		return err
	}
	return d.openToxiproxy(cfg.Toxiproxy)
}

func (d *Daemon) openAdmin(a *config.Admin) error {
	s := &d.servers
	if a == nil {
		d.closeAdmin()
		return nil
	}
	var token []byte
	if a.TokenFile != "" {
		t, err := config.ReadToken(a.TokenFile)
		if err != nil {
			return err
		}
		token = t
		if fi, err := os.Stat(a.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			d.log.Warn("the admin token file can be read by others than its owner", "file", a.TokenFile, "mode", fi.Mode().Perm().String())
		}
	}
	if s.admin != nil && s.adminListen == a.Listen {
		s.admin.SetToken(token)
		return nil
	}
	ln, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
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
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "error", err)
		}
	}()
	d.log.Info("admin server listening", "addr", ln.Addr().String(), "token", token != nil)
	return nil
}

// closeAdmin stops the admin server in the background, within
// serverStopBound: the request that asked for the change (a reload through
// the API that moved the server) may be one of those it waits for.
func (d *Daemon) closeAdmin() {
	s := &d.servers
	if s.admin == nil {
		return
	}
	go shutdownBounded(s.admin.Shutdown, nil)
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
}

func (d *Daemon) openToxiproxy(t *config.Toxiproxy) error {
	s := &d.servers
	if t == nil {
		d.closeToxiproxy()
		s.toxiAPI = nil // its proxies are gone with it
		return nil
	}
	if s.toxi != nil && s.toxiListen == t.Listen {
		return nil
	}
	ln, err := net.Listen("tcp", t.Listen)
	if err != nil {
		return fmt.Errorf("toxiproxy: %w", err)
	}
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
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("toxiproxy server stopped", "error", err)
		}
	}()
	d.log.Info("toxiproxy API listening", "addr", ln.Addr().String())
	return nil
}

func (d *Daemon) newToxiproxy() *toxiproxy.Server {
	return toxiproxy.NewServer(toxiHost{d}, toxiproxy.Options{Log: d.log.With("server", "toxiproxy"), Seed: d.opts.ToxiproxySeed})
}

// prepareToxiproxy makes the Toxiproxy API before it listens, and creates
// the proxies of Options.ToxiproxyConfig, as toxiproxy-server does with
// its -config: what fails is logged, and the API serves anyway. d.mu is
// not held: each proxy made takes it.
func (d *Daemon) prepareToxiproxy() {
	api := d.newToxiproxy()
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
	go shutdownBounded(s.toxi.Shutdown, s.toxi.Close)
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
func (d *Daemon) ToxiproxyHost() toxiproxy.Host { return toxiHost{d} }

// toxiproxyOwner owns the Toxiproxy API's routes (SetOwnedRoutes).
const toxiproxyOwner = "toxiproxy"

// toxiHost is the Daemon as the Toxiproxy server's host: its proxies are
// routes the Daemon runs beside the file's.
type toxiHost struct{ d *Daemon }

func (h toxiHost) SetRoutes(routes []config.Route) error {
	err := h.d.SetOwnedRoutes(toxiproxyOwner, routes)
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
