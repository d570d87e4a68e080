package app

import (
	"context"

	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/udp"
)

// UDP routes run on package udp's server, beside the TCP proxy: one
// table feeds both (each takes its own protocol's routes), flows are
// numbered from the proxy's session counter, and a flow's access log line
// is a session's, with its datagram counts.

// newUDP starts the UDP server beside the TCP one, with as many sockets
// per address as the proxy has loops (the routes' counters have a shard
// per loop).
func (d *Daemon) newUDP() (*udp.Server, error) {
	return udp.New(udp.Options{
		Log:     d.log,
		Sockets: d.srv.Loops(),
		Finish:  d.finishFlow,
		IDs:     d.srv.IDs(),
	})
}

// finishFlow writes a flow's access log line at a session's level
// (proxy.LogLevel: Warn when pier could not serve the client at all;
// refusals come here already rate-limited). It runs on a socket's goroutine: the log handler
// never blocks.
func (d *Daemon) finishFlow(_ *route.Route, r *session.Record) {
	level := proxy.LogLevel(r)
	ctx := context.Background()
	if !d.log.Enabled(ctx, level) {
		return
	}
	d.log.LogAttrs(ctx, level, "session", r.Attrs()...)
}

// applyUDP puts t's UDP routes in force on the UDP server, before the TCP
// proxy takes t: a UDP address that cannot be opened fails the whole
// apply with nothing changed. restore is what to call if the TCP side
// then fails: it puts the previous table's UDP routes back.
func (d *Daemon) applyUDP(t, prev *route.Table) (restore func(), err error) {
	if err := d.udp.Apply(t); err != nil {
		return nil, err
	}
	return func() {
		if prev == nil {
			prev = emptyTable
		}
		if err := d.udp.Apply(prev); err != nil {
			d.log.Error("udp routes not restored after a failed apply", "error", err)
		}
	}, nil
}

// emptyTable has no routes: what the UDP server goes back to when a first
// apply fails.
var emptyTable, _ = route.NewTable(nil, route.Global{})
