// Package route holds pier's compiled routing table: which route takes a
// client that arrived on a given listen address, and everything the rest
// of the data path needs to serve it.
//
// A Table is immutable once built. The proxy keeps the table in force
// behind one atomic pointer; a new session loads it once and keeps what it
// found, and a reload swaps in a whole new table, so live sessions finish
// on the routes they began with.
package route

import (
	"fmt"
	"net"
	"time"

	"github.com/pierproxy/pier/internal/admit"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/stats"
)

// A Route is one compiled route.
type Route struct {
	Name string
	// Listen holds the addresses clients arrive on, as configured.
	Listen []string
	Pool   *pool.Pool
	// Limit caps the route's live sessions; it carries over reloads.
	Limit *admit.Limit
	// Filters is the route's filter set in force, which its live sessions
	// follow; it carries over reloads. Nil means no filters, ever.
	Filters *chain.InForce
	// Stats counts the route's sessions, one shard per relay loop (made
	// with stats.NewRoute(name, proxy.Server.Loops())); it carries over
	// reloads, like Limit. Nil means not counted.
	Stats *stats.Route
	// Timeouts; zero means no bound. ConnectTimeout bounds one dial,
	// ConnectBudget all of a session's dials together (relay.Params'
	// TryTimeout and ConnectBudget).
	ConnectTimeout   time.Duration
	ConnectBudget    time.Duration
	IdleTimeout      time.Duration
	HalfCloseTimeout time.Duration
}

// A Listen is one listening address and the key the table knows it by.
type Listen struct {
	Key  string // stable across reloads for the same address
	Addr string // host:port to listen on
}

// A Table maps listen keys to routes.
type Table struct {
	routes   []*Route
	listens  []Listen
	byListen map[string]*Route
}

// NewTable builds a table. Two routes may not share a listen address.
func NewTable(routes []*Route) (*Table, error) {
	t := &Table{routes: routes, byListen: make(map[string]*Route)}
	for _, r := range routes {
		for _, addr := range r.Listen {
			key := Key(r.Name, addr)
			if other, ok := t.byListen[key]; ok {
				return nil, fmt.Errorf("route %s: listen %s is taken by route %s", r.Name, addr, other.Name)
			}
			t.byListen[key] = r
			t.listens = append(t.listens, Listen{Key: key, Addr: addr})
		}
	}
	return t, nil
}

// Key names a listen address across reloads. An address is its own key,
// so a listener moves between routes without closing; an address on port
// 0 (any free port, as tests use) gets a fresh port per route, so it is
// keyed by route too.
func Key(route, addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		return route + "|" + addr
	}
	return addr
}

// Lookup returns the route for a listen key, or nil.
func (t *Table) Lookup(key string) *Route { return t.byListen[key] }

// Routes returns the table's routes in configuration order.
func (t *Table) Routes() []*Route { return t.routes }

// Listens returns every listen address of the table.
func (t *Table) Listens() []Listen { return t.listens }

// Route returns the route named name, or nil.
func (t *Table) Route(name string) *Route {
	for _, r := range t.routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}
