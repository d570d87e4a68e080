// Package app is pier's application layer: it turns a validated
// configuration into a route table, runs the proxy with it, and reloads it.
// Only app (and the command line above it) imports config; the data path
// sees compiled routes.
//
//	d, err := app.Start(cfg, logger)
//	...
//	err = d.Reload(newCfg) // a bad config leaves the running one in force
//	...
//	err = d.Stop(ctx)
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/proxy"
)

// A Daemon is a running proxy and the configuration it was given.
type Daemon struct {
	log    *slog.Logger
	srv    *proxy.Server
	cfg    *config.Config
	limits map[string]*admit.Limit // by route name, carried over reloads
}

// Start compiles cfg and starts serving it.
func Start(cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, srv: srv, limits: make(map[string]*admit.Limit)}
	if err := d.apply(cfg); err != nil {
		srv.Shutdown(context.Background())
		return nil, err
	}
	return d, nil
}

// Reload makes cfg the configuration in force. On error the running one
// stays, untouched.
func (d *Daemon) Reload(cfg *config.Config) error {
	if err := d.apply(cfg); err != nil {
		return err
	}
	d.log.Info("configuration reloaded", "file", cfg.File, "routes", len(cfg.Routes))
	return nil
}

func (d *Daemon) apply(cfg *config.Config) error {
	t, limits, err := compile(cfg, d.limits)
	if err != nil {
		return err
	}
	if err := d.srv.Apply(t); err != nil {
		return err
	}
	// Only now, with the new table in force, may limits change.
	for i := range cfg.Routes {
		limits[cfg.Routes[i].Name].SetMax(cfg.Routes[i].MaxConnections)
	}
	d.cfg, d.limits = cfg, limits
	return nil
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config { return d.cfg }

// Addrs returns the bound addresses of a route's listeners.
func (d *Daemon) Addrs(route string) []netip.AddrPort { return d.srv.Addrs(route) }

// Live returns the number of sessions in progress.
func (d *Daemon) Live() int64 { return d.srv.Live() }

// Stop stops accepting and lets live sessions finish for the configured
// grace period, or until ctx is done, whichever comes first; then it ends
// the rest.
func (d *Daemon) Stop(ctx context.Context) error {
	if g := d.cfg.GracePeriod; g > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g)
		defer cancel()
	}
	start := time.Now()
	live := d.srv.Live()
	err := d.srv.Shutdown(ctx)
	d.log.Info("stopped", "sessions_at_stop", live, "drain", time.Since(start).Round(time.Millisecond), "cut_short", err != nil)
	return nil
}

// compile turns a validated configuration into a route table. Limits of
// routes that keep their name are reused so that live sessions keep
// counting; their maximum takes the new value.
func compile(cfg *config.Config, prev map[string]*admit.Limit) (*route.Table, map[string]*admit.Limit, error) {
	limits := make(map[string]*admit.Limit, len(cfg.Routes))
	routes := make([]*route.Route, 0, len(cfg.Routes))
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		addrs := make([]string, len(rc.Upstreams))
		for j, u := range rc.Upstreams {
			addrs[j] = u.Address
		}
		p, err := pool.New(addrs)
		if err != nil {
			return nil, nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		lim := prev[rc.Name]
		if lim == nil {
			lim = admit.NewLimit(rc.MaxConnections)
		}
		limits[rc.Name] = lim
		routes = append(routes, &route.Route{
			Name:             rc.Name,
			Listen:           rc.Listen,
			Pool:             p,
			Limit:            lim,
			ConnectTimeout:   rc.ConnectTimeout,
			IdleTimeout:      rc.IdleTimeout,
			HalfCloseTimeout: rc.HalfCloseTimeout,
		})
	}
	t, err := route.NewTable(routes)
	if err != nil {
		return nil, nil, err
	}
	return t, limits, nil
}
