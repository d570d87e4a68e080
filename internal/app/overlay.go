package app

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/pool"
)

// overlay is what the admin API changed at run time, on top of the
// configuration given: members' drain, disabled and weight, and whole
// filter lists of routes. A reload keeps the entries whose route and
// member still exist; DropOverlay clears it. Only the Daemon's mu holder
// reads or changes it.
type overlay struct {
	members map[memberKey]pool.Steering
	filters map[string][]config.Filter // by route name
}

// memberKey is a member of a route, by the member's configured name.
type memberKey struct{ route, member string }

func (k memberKey) String() string { return k.route + "/" + k.member }

func (o *overlay) empty() bool { return len(o.members) == 0 && len(o.filters) == 0 }

func (o *overlay) clone() overlay {
	return overlay{members: maps.Clone(o.members), filters: maps.Clone(o.filters)}
}

// steering is the overrides of route's members, for pool.Config.
func (o *overlay) steering(route string) map[string]pool.Steering {
	var out map[string]pool.Steering
	for k, s := range o.members {
		if k.route == route {
			if out == nil {
				out = make(map[string]pool.Steering)
			}
			out[k.member] = s
		}
	}
	return out
}

// prune drops the entries cfg has no route or member for, and says what
// it kept and dropped, in words for the log and the reload's answer.
func (o *overlay) prune(cfg *config.Config) (kept, dropped []string) {
	members := make(map[memberKey]bool)
	routes := make(map[string]bool, len(cfg.Routes))
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		routes[rc.Name] = true
		for _, name := range memberNames(rc) {
			members[memberKey{rc.Name, name}] = true
		}
	}
	for _, k := range sortedMembers(o.members) {
		words := k.String() + " " + describeSteering(o.members[k])
		if members[k] {
			kept = append(kept, words)
		} else {
			dropped = append(dropped, words)
			delete(o.members, k)
		}
	}
	for _, r := range slices.Sorted(maps.Keys(o.filters)) {
		words := r + " filters"
		if routes[r] {
			kept = append(kept, words)
		} else {
			dropped = append(dropped, words)
			delete(o.filters, r)
		}
	}
	return kept, dropped
}

// apply returns cfg with the overlay's filter lists in place of the
// file's; cfg itself is not changed.
func (o *overlay) apply(cfg *config.Config) *config.Config {
	if len(o.filters) == 0 {
		return cfg
	}
	out := *cfg
	out.Routes = slices.Clone(cfg.Routes)
	for i := range out.Routes {
		if fs, ok := o.filters[out.Routes[i].Name]; ok {
			out.Routes[i].Filters = fs
		}
	}
	return &out
}

// memberNames are the configured names of a route's members, as the pool
// knows them (pool.Spec.Name).
func memberNames(rc *config.Route) []string {
	names := make([]string, 0, len(rc.Upstreams))
	for _, u := range rc.Upstreams {
		spec := pool.Spec{SRV: u.SRV}
		if u.Address != "" {
			a, err := pool.ParseAddress(u.Address)
			if err != nil {
				continue
			}
			spec.Host, spec.Port = a.Host, a.Port
		}
		names = append(names, spec.Name())
	}
	return names
}

func describeSteering(s pool.Steering) string {
	var parts []string
	if s.Drain != nil {
		parts = append(parts, fmt.Sprintf("drain=%t", *s.Drain))
	}
	if s.Disabled != nil {
		parts = append(parts, fmt.Sprintf("disabled=%t", *s.Disabled))
	}
	if s.Weight != nil {
		parts = append(parts, fmt.Sprintf("weight=%d", *s.Weight))
	}
	return strings.Join(parts, " ")
}
