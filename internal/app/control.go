package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v4"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/pool"
)

// control is the Daemon as the admin server sees it (admin.Control).
type control struct{ d *Daemon }

var _ admin.Control = control{}

func (c control) Ready() (bool, string) { return c.d.Ready() }

func (c control) LogLevel() slog.Level {
	if c.d.opts.Level == nil {
		return slog.LevelInfo
	}
	return c.d.opts.Level.Level()
}

func (c control) SetLogLevel(l slog.Level) {
	if c.d.opts.Level == nil {
		return
	}
	old := c.d.opts.Level.Level()
	c.d.opts.Level.Set(l)
	c.d.log.Info("log level changed", "from", old.String(), "to", l.String())
}

// Routes lists every route in force, the file's and its owners', in the
// order they are configured.
func (c control) Routes() []admin.Route {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]admin.Route, 0, len(d.cfg.Routes))
	for i := range d.cfg.Routes {
		out = append(out, d.routeView(&d.cfg.Routes[i]))
	}
	return out
}

// routeView is one route as it runs; d.mu is held.
func (d *Daemon) routeView(rc *config.Route) admin.Route {
	r := admin.Route{
		Name:           rc.Name,
		Protocol:       rc.Protocol,
		Listen:         rc.Listen,
		MaxConnections: rc.MaxConnections,
		Responses:      rc.Responses,
		MaxFlows:       rc.MaxFlows,
		Filters:        d.filterViews(rc),
	}
	if r.Protocol == "" {
		r.Protocol = config.TCP
	}
	for _, a := range d.Addrs(rc.Name) {
		r.Addrs = append(r.Addrs, a.String())
	}
	_, r.Overlay = d.over.filters[rc.Name]
	c := d.routes[rc.Name]
	edgeView(&r, rc, c)
	if c == nil {
		return r
	}
	r.Live = c.limit.Live()
	r.Refused = c.limit.Rejected()
	r.Stats = routeStats(c)
	for _, m := range c.pool.Status() {
		mv := memberView(m)
		r.Members = append(r.Members, mv)
		if mv.Overlay != nil {
			r.Overlay = true
		}
	}
	return r
}

func memberView(m pool.MemberStatus) admin.Member {
	v := admin.Member{
		Name: m.Name, Addr: m.Addr.String(),
		Weight: m.Weight, FileWeight: m.FileWeight, Backup: m.Backup,
		Up: !m.Down, Ejected: m.Ejected, Draining: m.Drain, Disabled: m.Disabled,
		LastCheckError: m.LastCheckError, Live: m.Active, ConnectFailures: m.ConnectFailures,
	}
	if !m.Steering.IsZero() {
		s := admin.Steering(m.Steering)
		v.Overlay = &s
	}
	return v
}

// filterViews is a route's filters in force; d.mu is held.
func (d *Daemon) filterViews(rc *config.Route) []admin.Filter {
	_, overlaid := d.over.filters[rc.Name]
	out := make([]admin.Filter, 0, len(rc.Filters))
	for _, f := range rc.Filters {
		opts := make(map[string]any, len(f.Options))
		for k, v := range f.Options {
			if v.IsList {
				opts[k] = v.List
			} else {
				opts[k] = v.Text
			}
		}
		out = append(out, admin.Filter{Name: f.Name, Options: opts, Overlay: overlaid})
	}
	return out
}

// Steer changes a member's drain, disabled and weight at run time: the
// change joins the member's overlay entry, which a reload keeps.
func (c control) Steer(route, member string, change admin.Steering) (admin.Member, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return admin.Member{}, errStopped
	}
	r := d.routes[route]
	if r == nil {
		return admin.Member{}, fmt.Errorf("route %q: %w", route, admin.ErrNotFound)
	}
	k := memberKey{route, member}
	merged := d.over.members[k].With(pool.Steering(change))
	if err := r.pool.Steer(member, merged); err != nil {
		if errors.Is(err, pool.ErrNoMember) {
			return admin.Member{}, fmt.Errorf("route %q: member %q: %w", route, member, admin.ErrNotFound)
		}
		field := ""
		if change.Weight != nil {
			field = "weight"
		}
		return admin.Member{}, &admin.Error{Status: http.StatusBadRequest, Msg: err.Error(),
			Problems: []admin.Problem{{Field: field, Message: err.Error()}}}
	}
	if d.over.members == nil {
		d.over.members = make(map[memberKey]pool.Steering)
	}
	if merged.IsZero() {
		delete(d.over.members, k)
	} else {
		d.over.members[k] = merged
	}
	d.log.Info("member steered", "route", route, "member", member, "overlay", describeSteering(merged))
	for _, m := range r.pool.Status() {
		if m.Name == member {
			return memberView(m), nil
		}
	}
	// A member whose name resolves to no address yet.
	return admin.Member{Name: member, Overlay: (*admin.Steering)(&merged)}, nil
}

var errStopped = &admin.Error{Status: http.StatusServiceUnavailable, Msg: "pier is stopping"}

func (c control) Filters(route string) ([]admin.Filter, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	rc := d.routeConfig(route)
	if rc == nil {
		return nil, fmt.Errorf("route %q: %w", route, admin.ErrNotFound)
	}
	return d.filterViews(rc), nil
}

// routeConfig is the configuration in force of a route; d.mu is held.
func (d *Daemon) routeConfig(name string) *config.Route {
	for i := range d.cfg.Routes {
		if d.cfg.Routes[i].Name == name {
			return &d.cfg.Routes[i]
		}
	}
	return nil
}

// EditFilters changes a route's filter list at run time: the new list is
// checked as a file's would be, put in force as a reload puts it (live
// sessions take it up at their next chunk), and kept in the overlay.
func (c control) EditFilters(route string, e admin.FilterEdit) ([]admin.Filter, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil, errStopped
	}
	rc := d.routeConfig(route)
	if rc == nil {
		return nil, fmt.Errorf("route %q: %w", route, admin.ErrNotFound)
	}
	given, err := parseFilterBody(e)
	if err != nil {
		return nil, filterProblems(err, e, len(rc.Filters))
	}
	list, err := editList(rc.Filters, e, given)
	if err != nil {
		return nil, err
	}
	over := d.over.clone()
	if over.filters == nil {
		over.filters = make(map[string][]config.Filter)
	}
	over.filters[route] = list
	inForce, err := d.merge(d.file, d.owned)
	if err != nil {
		return nil, err
	}
	if err := d.apply(d.file, inForce, over); err != nil {
		return nil, configProblems(err)
	}
	d.log.Info("filters changed", "route", route, "op", e.Op, "filters", len(list))
	return d.filterViews(d.routeConfig(route)), nil
}

// parseFilterBody reads an edit's body: a list of filters, as a route's
// filters: holds; or, to add or set one, that one filter alone.
func parseFilterBody(e admin.FilterEdit) ([]config.Filter, error) {
	switch e.Op {
	case "delete":
		return nil, nil
	case "replace":
		return config.ParseFilters("body", e.Body)
	}
	if b := bytes.TrimSpace(e.Body); len(b) > 0 && (b[0] == '[' || b[0] == '-') {
		return config.ParseFilters("body", e.Body)
	}
	f, err := config.ParseFilter("body", e.Body)
	if err != nil {
		return nil, err
	}
	return []config.Filter{f}, nil
}

// filterProblems is a filter body's errors as the admin API answers them,
// each naming its field as the route's list will have it,
// filters[i].option, where the body lets the error be placed.
func filterProblems(err error, e admin.FilterEdit, n int) error {
	ae, ok := configError(err)
	if !ok {
		return err
	}
	base := 0 // the list's index of the body's first filter
	switch e.Op {
	case "append":
		base = n
	case "insert", "set":
		base = e.Index
	}
	var doc yaml.Node
	if yaml.Unmarshal(e.Body, &doc) != nil || len(doc.Content) == 0 {
		return ae
	}
	items := []*yaml.Node{doc.Content[0]}
	if doc.Content[0].Kind == yaml.SequenceNode {
		items = doc.Content[0].Content
	}
	for i := range ae.Problems {
		pr := &ae.Problems[i]
		at := -1
		for j, it := range items {
			if it.Line < pr.Line || it.Line == pr.Line && it.Column <= pr.Col {
				at = j
			}
		}
		if at < 0 {
			continue
		}
		pr.Field = fmt.Sprintf("filters[%d]", base+at)
		// "latency: delay: ...": the filter's name, then the option.
		it := items[at]
		if it.Kind == yaml.MappingNode && len(it.Content) >= 2 {
			name := it.Content[0].Value
			if rest, ok := strings.CutPrefix(pr.Message, name+": "); ok {
				if key, _, ok := strings.Cut(rest, ": "); ok && !strings.ContainsAny(key, " \"") {
					pr.Field += "." + key
				}
			}
		}
	}
	return ae
}

// editList applies one edit to a filter list, returning a new list.
func editList(cur []config.Filter, e admin.FilterEdit, given []config.Filter) ([]config.Filter, error) {
	one := func() (config.Filter, error) {
		if len(given) != 1 {
			return config.Filter{}, &admin.Error{Status: http.StatusBadRequest,
				Msg: fmt.Sprintf("filters: the body lists %d filters, not one", len(given))}
		}
		return given[0], nil
	}
	index := func(max int) error {
		if e.Index < 0 || e.Index >= max {
			return fmt.Errorf("filter %d of %d: %w", e.Index, len(cur), admin.ErrNotFound)
		}
		return nil
	}
	switch e.Op {
	case "replace":
		return given, nil
	case "append":
		f, err := one()
		if err != nil {
			return nil, err
		}
		return append(slices.Clone(cur), f), nil
	case "insert":
		f, err := one()
		if err != nil {
			return nil, err
		}
		if err := index(len(cur) + 1); err != nil {
			return nil, err
		}
		return slices.Insert(slices.Clone(cur), e.Index, f), nil
	case "set":
		f, err := one()
		if err != nil {
			return nil, err
		}
		if err := index(len(cur)); err != nil {
			return nil, err
		}
		out := slices.Clone(cur)
		out[e.Index] = f
		return out, nil
	case "delete":
		if err := index(len(cur)); err != nil {
			return nil, err
		}
		return slices.Delete(slices.Clone(cur), e.Index, e.Index+1), nil
	}
	return nil, &admin.Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("filters: unknown edit %q", e.Op)}
}

// configProblems is a configuration error as the admin API answers it
// (see configError), or the error itself if it is not one.
func configProblems(err error) error {
	if ae, ok := configError(err); ok {
		return ae
	}
	return err
}

// configError is a configuration error as the admin API answers it: 400
// with each problem placed; false if err is not one.
func configError(err error) (*admin.Error, bool) {
	es, ok := errors.AsType[config.Errors](err)
	if !ok {
		e, ok := errors.AsType[*config.Error](err)
		if !ok {
			return nil, false
		}
		es = config.Errors{e}
	}
	ae := &admin.Error{Status: http.StatusBadRequest, Msg: es.Error()}
	for _, e := range es {
		ae.Problems = append(ae.Problems, admin.Problem{Message: e.Msg, Line: e.Line, Col: e.Col})
	}
	return ae, true
}

func (c control) Overlay() admin.Overlay {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.over.view()
}

// view is the overlay as the admin API shows it.
func (o *overlay) view() admin.Overlay {
	var v admin.Overlay
	for _, k := range sortedMembers(o.members) {
		v.Members = append(v.Members, admin.OverlayMember{Route: k.route, Member: k.member, Steering: admin.Steering(o.members[k])})
	}
	for r := range o.filters {
		v.Filters = append(v.Filters, r)
	}
	slices.Sort(v.Filters)
	return v
}

// DropOverlay drops every runtime change and puts the configuration given
// back in force.
func (c control) DropOverlay() (admin.Overlay, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return admin.Overlay{}, errStopped
	}
	was := d.over.view()
	inForce, err := d.merge(d.file, d.owned)
	if err != nil {
		return admin.Overlay{}, err
	}
	if err := d.apply(d.file, inForce, overlay{}); err != nil {
		return admin.Overlay{}, err
	}
	d.log.Info("overlay dropped", "members", len(was.Members), "filters", len(was.Filters))
	return was, nil
}

// Reload reads the configuration file again, as SIGHUP does.
func (c control) Reload() admin.ReloadResult {
	d := c.d
	path := d.opts.ConfigFile
	if path == "" {
		return admin.ReloadResult{Errors: []string{ErrNoFile.Error()}, Status: http.StatusConflict}
	}
	cfg, err := config.Load(path)
	if err != nil {
		d.countReload(err)
		d.log.Error("reload failed, keeping the running configuration", "file", path, "error", err)
		return admin.ReloadResult{Errors: errorLines(err)}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return admin.ReloadResult{Errors: []string{"pier is stopping"}, Status: http.StatusServiceUnavailable}
	}
	kept, dropped, err := d.reload(cfg)
	d.countReload(err)
	if err != nil {
		d.log.Error("reload failed, keeping the running configuration", "file", path, "error", err)
		return admin.ReloadResult{Errors: errorLines(err)}
	}
	return admin.ReloadResult{OK: true, Kept: kept, Dropped: dropped}
}

// errorLines is an error as lines, one per configuration problem.
func errorLines(err error) []string {
	return strings.Split(err.Error(), "\n")
}

// Check answers what loading yaml would change, or its errors.
func (c control) Check(data []byte) admin.Preview {
	next, err := config.Parse("body", data)
	if err != nil {
		return refused(err)
	}
	return c.preview(next)
}

// PreviewReload answers what a reload of the configuration file (SIGHUP,
// POST /api/v1/reload) would change now, or the file's errors, placed in
// it; without a file, an error that says so.
func (c control) PreviewReload() admin.Preview {
	path := c.d.opts.ConfigFile
	if path == "" {
		return admin.Preview{Problems: []admin.Problem{{Message: ErrNoFile.Error()}}}
	}
	next, err := config.Load(path)
	if err != nil {
		return refused(err)
	}
	return c.preview(next)
}

// preview plans next against the configuration in force.
func (c control) preview(next *config.Config) admin.Preview {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	// Both sides as a reload would put them in force: the owners' routes
	// beside the file's (the Toxiproxy API's only if next keeps it), the
	// overlay's filter lists in place of the files', the entries next
	// keeps.
	owned := d.owned
	if next.Toxiproxy == nil && owned[toxiproxyOwner] != nil {
		owned = maps.Clone(owned)
		delete(owned, toxiproxyOwner)
	}
	cur, err := d.merge(d.file, d.owned)
	if err == nil {
		next, err = d.merge(next, owned)
	}
	if err != nil {
		return refused(err)
	}
	over := d.over.clone()
	over.prune(next)
	return admin.Preview{OK: true, Changes: Plan(d.over.apply(cur), over.apply(next), liveCounts{d})}
}

// refused is the preview of a configuration with mistakes: each placed.
func refused(err error) admin.Preview {
	if ae, ok := configError(err); ok {
		return admin.Preview{Problems: ae.Problems}
	}
	return admin.Preview{Problems: []admin.Problem{{Message: err.Error()}}}
}

// liveCounts counts live sessions for Plan; d.mu is held.
type liveCounts struct{ d *Daemon }

func (l liveCounts) Route(name string) int64 {
	if c := l.d.routes[name]; c != nil {
		return c.limit.Live()
	}
	return 0
}

func (l liveCounts) Member(route, member string) int64 {
	c := l.d.routes[route]
	if c == nil {
		return 0
	}
	var n int64
	for _, m := range c.pool.Status() {
		if m.Name == member {
			n += m.Active
		}
	}
	return n
}

// Config is the configuration in force (the overlay's filter lists in it),
// as YAML or JSON; the overlay's entries are listed after it.
func (c control) Config(format string) ([]byte, error) {
	d := c.d
	d.mu.Lock()
	cfg, over := d.cfg, d.over.view()
	d.mu.Unlock()
	if format == "json" {
		body, err := config.MarshalJSON(cfg)
		if err != nil {
			return nil, err
		}
		ov, err := json.Marshal(over)
		if err != nil {
			return nil, err
		}
		return fmt.Appendf(nil, "{\"config\":%s,\"overlay\":%s}\n", bytes.TrimSpace(body), ov), nil
	}
	body, err := config.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if len(over.Members)+len(over.Filters) > 0 {
		var b bytes.Buffer
		b.Write(body)
		b.WriteString("# overlay: changed through the admin API, not in the file\n")
		for _, m := range over.Members {
			fmt.Fprintf(&b, "#   route %s, member %s: %s\n", m.Route, m.Member, describeSteering(pool.Steering(m.Steering)))
		}
		for _, r := range over.Filters {
			fmt.Fprintf(&b, "#   route %s: filters\n", r)
		}
		body = b.Bytes()
	}
	return body, nil
}

func sortedMembers(m map[memberKey]pool.Steering) []memberKey {
	return slices.SortedFunc(maps.Keys(m), func(a, b memberKey) int { return strings.Compare(a.String(), b.String()) })
}
