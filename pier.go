// Package pier embeds the pier proxy in a Go program: the same data path,
// pools, health checks and filters as the pier command, driven by a
// config.Config value (the type the YAML loader fills) instead of a file.
//
//	cfg, err := config.Parse("inline", []byte(`
//	routes:
//	  - name: db
//	    listen: ["127.0.0.1:0"]
//	    upstreams: [{address: "127.0.0.1:5432"}]
//	`))
//	...
//	p, err := pier.Start(cfg, pier.Options{Log: logger})
//	...
//	addr := p.Addrs("db")[0]       // the port the kernel chose
//	err = p.Apply(newCfg)          // a reload: a bad config leaves the running one
//	err = p.Shutdown(ctx)          // stop accepting, drain until ctx is done
//
// A Config built in code goes through config.Check, the validation a file
// gets, before it is used. Filters of a program's own are registered with
// filter.Register before Start, as for the pier command (package command),
// which is what a program that wants pier's whole command line embeds
// instead.
package pier

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pierproxy/pier/config"
	_ "github.com/pierproxy/pier/filter/builtin" // the built-in filters, by name
	"github.com/pierproxy/pier/internal/app"
	"github.com/pierproxy/pier/internal/asynclog"
)

// Options configure a Proxy beyond its Config.
type Options struct {
	// Log receives the proxy's events and one access-log record per
	// finished session. Its handler must not block: pier calls it from its
	// relay loops, and a handler that waits (on a full pipe, a slow disk)
	// stalls every session on the loop. Nil means pier's own: text to
	// stderr through a bounded queue and a writer of its own, which drops
	// (and counts, and says so) what does not fit rather than wait, as the
	// pier command's does (which writes JSON unless stderr is a terminal).
	// Shutdown flushes it, for at most a second.
	Log *slog.Logger
	// Loops is how many relay event loops serve the sessions, each on a
	// thread of its own. Zero means runtime.GOMAXPROCS(0). The pier
	// command runs one per P that Go would give it (the CPUs, or a
	// container's CPU limit) and sets GOMAXPROCS one higher, so that the
	// rest of the program never waits for a loop; a program that embeds
	// pier may do the same.
	Loops int
}

// A Proxy is a running pier. Its methods may be called from several
// goroutines at once: Apply and Shutdown take turns, and an Apply after
// Shutdown fails.
type Proxy struct {
	d        *app.Daemon
	own      *asynclog.Handler // the logger made when Options.Log was nil
	ownClose sync.Once
}

// Start checks cfg and starts serving it: its listeners are open when Start
// returns.
func Start(cfg *config.Config, opts Options) (*Proxy, error) {
	if err := config.Check(cfg); err != nil {
		return nil, err
	}
	p := &Proxy{}
	log := opts.Log
	if log == nil {
		p.own = asynclog.NewText(os.Stderr, nil)
		log = slog.New(p.own)
	}
	d, err := app.Start(cfg, app.Options{Log: log, Loops: opts.Loops})
	if err != nil {
		p.closeLog()
		return nil, err
	}
	p.d = d
	return p, nil
}

// Apply checks cfg and makes it the configuration in force, as a reload
// does: new sessions use it, listeners it keeps stay open, live sessions
// finish on the routes they began with (filter changes reach them between
// chunks). On error the running configuration stays, untouched.
func (p *Proxy) Apply(cfg *config.Config) error {
	if err := config.Check(cfg); err != nil {
		return err
	}
	return p.d.Reload(cfg)
}

// Config returns the configuration in force.
func (p *Proxy) Config() *config.Config { return p.d.Config() }

// Addrs returns the addresses a route's listeners are bound to, with the
// port the kernel chose where the configured one was 0.
func (p *Proxy) Addrs(route string) []netip.AddrPort { return p.d.Addrs(route) }

// Sessions returns the number of sessions in progress.
func (p *Proxy) Sessions() int64 { return p.d.Live() }

// Stats are a Proxy's totals since Start.
type Stats struct {
	// Sessions counts the sessions that ended (clients refused by a
	// route's max_connections are Refused, not sessions).
	Sessions uint64
	// ToUpstream and ToClient are the bytes delivered each way.
	ToUpstream, ToClient uint64
	// Refused counts clients closed at once by a route's max_connections.
	Refused uint64
	// FailedDials counts sessions that ended without an upstream
	// connection (connect_failed, connect_timeout, no_upstream, and
	// local_error while dialing).
	FailedDials uint64
}

// Stats returns the totals since Start.
func (p *Proxy) Stats() Stats {
	st := p.d.Stats()
	return Stats{Sessions: st.Sessions, ToUpstream: st.ToUpstream, ToClient: st.ToClient, Refused: st.Refused, FailedDials: st.FailedDials}
}

// Shutdown stops accepting, lets live sessions finish for the configured
// grace period or until ctx is done, whichever comes first, then ends the
// rest. It returns ctx's error (or context.DeadlineExceeded for the grace
// period) if sessions had to be cut short.
func (p *Proxy) Shutdown(ctx context.Context) error {
	err := p.d.Stop(ctx)
	p.closeLog()
	return err
}

// logFlushBound is how long Shutdown waits for pier's own logger to write
// what it has queued.
const logFlushBound = time.Second

func (p *Proxy) closeLog() {
	if p.own == nil {
		return
	}
	p.ownClose.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), logFlushBound)
		defer cancel()
		p.own.Close(ctx)
	})
}
