// Package toxiproxy serves Toxiproxy's HTTP API (v2, as of Toxiproxy
// 2.12.0) on top of pier's data path, so that test suites written against
// Toxiproxy's client libraries and toxiproxy-cli run against pier
// unchanged.
//
// It stands in the application layer, beside the admin API: it imports
// config, and reaches the running proxy only through a Host (the
// application's Daemon). Each Toxiproxy proxy becomes a pier route named
// "toxiproxy.<name>", listening where the proxy listens and sending to its
// upstream, whose filters are the proxy's toxics turned into pier's fault
// filters (latency → latency, reset_peer → reset, ...; docs/toxiproxy.md
// has the table). Every change to a proxy or a toxic builds the whole set
// of these routes as YAML, reads it with config.Parse (the one way a
// configuration enters pier) and hands it to Host.SetRoutes, which puts it
// in force as a reload does: toxics reach live connections between chunks.
//
//	srv := toxiproxy.NewServer(host, toxiproxy.Options{Log: log})
//	if err := srv.Populate(file); err != nil { ... } // toxiproxy-server -config FILE
//	http.Serve(ln, srv.Handler())
//
// The API answers as Toxiproxy does, byte for byte where clients look:
// the same paths, JSON shapes, status codes and error messages.
package toxiproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pierproxy/pier/config"
	// The toxics are built-in filters (latency, bandwidth, reset, ...),
	// which the routes' configuration names.
	_ "github.com/pierproxy/pier/filter/builtin"
)

// A Host runs the routes the server makes: the application's Daemon.
type Host interface {
	// SetRoutes makes routes the whole set of routes the Toxiproxy server
	// owns (each named "toxiproxy.<...>"), beside the file's; it validates
	// and applies them as a reload does (a listener that cannot open fails
	// it, the rest untouched).
	SetRoutes(routes []config.Route) error
	// Addrs returns the addresses a route's listeners are bound to.
	Addrs(route string) []netip.AddrPort
	// EndSessions ends the route's live sessions (reason=admin),
	// resetting them if reset.
	EndSessions(ctx context.Context, route string, reset bool) (int, error)
}

// Options configure a Server.
type Options struct {
	// Log receives a line per change and per failure. Nil: slog.Default().
	Log *slog.Logger
	// Seed, if set, seeds every toxic's choice of connections (toxicity)
	// and its randomness (jitter), as toxiproxy-server's -seed says it
	// does: the same seed gives the same choices for the same session ids.
	// Nil: random.
	Seed *uint64
	// Version is pier's version, shown by /version after Toxiproxy's
	// ("2.12.0-pier VERSION"). Empty: "2.12.0-pier".
	Version string
}

// A Server is the Toxiproxy API's state: the proxies and their toxics. Its
// methods may be called from several goroutines.
type Server struct {
	host    Host
	log     *slog.Logger
	seed    *uint64
	version string

	mu      sync.Mutex // held across each change, Host calls included, so changes apply in order
	proxies map[string]*proxy
}

// NewServer returns a Server with no proxies, whose routes h runs.
func NewServer(h Host, o Options) *Server {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	v := "2.12.0-pier"
	if o.Version != "" {
		v += " " + o.Version
	}
	return &Server{host: h, log: o.Log, seed: o.Seed, version: v, proxies: make(map[string]*proxy)}
}

// Proxy is a proxy as the API reads it (create, update, populate). Its
// name is Toxiproxy's, for the errors encoding/json words with it.
type Proxy struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  bool   `json:"enabled"`
}

// proxy is a proxy's state.
type proxy struct {
	Proxy        // Listen: once started, the address bound, as Toxiproxy shows it
	route string // the pier route's name
	bind  string // the listen address the route has while enabled
	// toxics in creation order; names are unique across both streams.
	toxics []*toxic
}

// proxyJSON is a proxy as the API shows it, fields in Toxiproxy's order
// (its "Logger":{} included: an exported field it never meant to show).
type proxyJSON struct {
	Name     string   `json:"name"`
	Listen   string   `json:"listen"`
	Upstream string   `json:"upstream"`
	Enabled  bool     `json:"enabled"`
	Logger   struct{} `json:"Logger"`
	Toxics   []*toxic `json:"toxics"`
}

func (p *proxy) json() proxyJSON {
	return proxyJSON{Name: p.Name, Listen: p.Listen, Upstream: p.Upstream, Enabled: p.Enabled, Toxics: p.toxicList()}
}

// toxicList is the toxics as Toxiproxy lists them: upstream ones first,
// then downstream, each in creation order; never nil.
func (p *proxy) toxicList() []*toxic {
	l := make([]*toxic, 0, len(p.toxics))
	for _, up := range []bool{true, false} {
		for _, t := range p.toxics {
			if t.upstream == up {
				l = append(l, t)
			}
		}
	}
	return l
}

func (p *proxy) toxic(name string) (int, *toxic) {
	for i, t := range p.toxics {
		if t.Name == name {
			return i, t
		}
	}
	return -1, nil
}

// RoutePrefix begins the name of every route the server makes.
const RoutePrefix = "toxiproxy."

// routeName is the pier route for a Toxiproxy proxy name: "toxiproxy."
// and the name when that makes a valid route name (a-z, 0-9, _ . -, at
// most 64 characters), else the name made valid and cut short, with a
// hash of the whole name to keep it apart from others.
func routeName(name string) string {
	valid := len(RoutePrefix)+len(name) <= 64
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			valid = false
		}
	}
	if valid {
		return RoutePrefix + name
	}
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		if b.Len() == 45 { // 10 + 45 + 1 + 8 = 64
			break
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s%s-%08x", RoutePrefix, b.String(), h.Sum32())
}

// routes returns the pier routes of the enabled proxies, made through
// config.Parse.
func (s *Server) routes() ([]config.Route, error) {
	var b strings.Builder
	b.WriteString("routes:\n")
	n := 0
	for _, name := range slices.Sorted(maps.Keys(s.proxies)) {
		p := s.proxies[name]
		if !p.Enabled {
			continue
		}
		n++
		fmt.Fprintf(&b, "  - name: %q\n", p.route)
		fmt.Fprintf(&b, "    listen: [%q]\n", p.bind)
		fmt.Fprintf(&b, "    upstreams: [{address: %q}]\n", p.Upstream)
		// Toxiproxy dials once, never ejects, and times nothing out; it
		// dials with no timeout at all, where pier gives up after 5s.
		b.WriteString("    retries: 0\n    passive_check: {failures: 0}\n    idle_timeout: 0s\n    half_close_timeout: 0s\n    connect_timeout: 5s\n")
		var fs []string
		// A route's filters meet the bytes to the upstream in order and the
		// bytes to the client in reverse: upstream toxics in creation order,
		// then downstream toxics backwards, as each Toxiproxy chain runs.
		for _, t := range p.toxics {
			if f := t.filter(s.seed); t.upstream && f != "" {
				fs = append(fs, f)
			}
		}
		for _, t := range slices.Backward(p.toxics) {
			if f := t.filter(s.seed); !t.upstream && f != "" {
				fs = append(fs, f)
			}
		}
		if len(fs) > 0 {
			b.WriteString("    filters:\n")
			for _, f := range fs {
				fmt.Fprintf(&b, "      - %s\n", f)
			}
		}
	}
	if n == 0 {
		return nil, nil
	}
	cfg, err := config.Parse("toxiproxy", []byte(b.String()))
	if err != nil {
		return nil, proxyError(err)
	}
	return cfg.Routes, nil
}

// proxyError words config.Parse's errors for the API's user, who never
// sees the YAML made from the proxies: no line and column in it, and
// the proxy's own field names ("upstream: ...", "listen: ...").
func proxyError(err error) error {
	var es config.Errors
	if !errors.As(err, &es) {
		return err
	}
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Msg
		if rest, ok := strings.CutPrefix(e.Msg, "address: "); ok {
			msgs[i] = "upstream: " + rest // the route's member is the proxy's upstream
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

// apply puts the proxies' routes in force.
func (s *Server) apply() error {
	rs, err := s.routes()
	if err != nil {
		return err
	}
	return s.host.SetRoutes(rs)
}

// endSessionsBound bounds the wait for a route's sessions to end.
const endSessionsBound = 5 * time.Second

// start opens p's listener: its route is added with p.Listen. On failure
// p stays disabled.
func (s *Server) start(p *proxy) *apiError {
	if p.Enabled {
		return nil
	}
	bind := p.Listen
	if bind == "" {
		bind = ":0" // Toxiproxy: any port, every address
	}
	if _, _, err := net.SplitHostPort(bind); err != nil {
		// Worded as net.Listen words it, which is what Toxiproxy answers.
		return internal(&net.OpError{Op: "listen", Net: "tcp", Err: err})
	}
	p.Enabled, p.bind = true, bind
	if err := s.apply(); err != nil {
		p.Enabled, p.bind = false, ""
		return listenError(bind, err)
	}
	p.Listen = s.shown(p)
	return nil
}

// shown is the address p listens on, as Toxiproxy shows it: the one
// bound (IPv4 first), "[::]:PORT" for every address.
func (s *Server) shown(p *proxy) string {
	addrs := s.host.Addrs(p.route)
	if len(addrs) == 0 {
		return p.bind
	}
	a := addrs[0]
	for _, x := range addrs {
		if x.Addr().Unmap().Is4() {
			a = x
			break
		}
	}
	if host, _, _ := net.SplitHostPort(p.bind); host == "" {
		return net.JoinHostPort("::", fmt.Sprint(a.Port()))
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String()
}

// stop closes p's listener and ends its live connections, as Toxiproxy's
// stop closes every one.
func (s *Server) stop(p *proxy) *apiError {
	if !p.Enabled {
		return nil
	}
	p.Enabled = false
	if err := s.apply(); err != nil {
		p.Enabled = true
		return internal(err)
	}
	p.bind = ""
	s.endSessions(p)
	return nil
}

func (s *Server) endSessions(p *proxy) {
	ctx, cancel := context.WithTimeout(context.Background(), endSessionsBound)
	defer cancel()
	if _, err := s.host.EndSessions(ctx, p.route, false); err != nil {
		s.log.Warn("toxiproxy: live connections not ended", "proxy", p.Name, "route", p.route, "err", err)
	}
}

// applyToxics puts p's toxics in force, if p runs.
func (s *Server) applyToxics(p *proxy) *apiError {
	if !p.Enabled {
		return nil
	}
	if err := s.apply(); err != nil {
		return internal(err)
	}
	return nil
}

// create adds a proxy, started if enabled.
func (s *Server) create(in Proxy) (*proxy, *apiError) {
	if in.Name == "" {
		return nil, join(errors.New("name"), errMissingField)
	}
	if in.Upstream == "" {
		return nil, join(errors.New("upstream"), errMissingField)
	}
	if _, ok := s.proxies[in.Name]; ok {
		return nil, errProxyExists
	}
	p := &proxy{Proxy: in, route: routeName(in.Name)}
	p.Enabled = false
	s.proxies[in.Name] = p
	if in.Enabled {
		if err := s.start(p); err != nil {
			delete(s.proxies, in.Name)
			return nil, err
		}
	}
	s.log.Info("toxiproxy: proxy created", "proxy", p.Name, "route", p.route, "listen", p.Listen, "upstream", p.Upstream, "enabled", p.Enabled)
	return p, nil
}

// update changes a proxy as Toxiproxy's Update does: a new listen or
// upstream stops it (ending its connections) and starts it again; then
// enabled is applied.
func (s *Server) update(p *proxy, body io.Reader) *apiError {
	in := Proxy{Listen: p.Listen, Upstream: p.Upstream, Enabled: p.Enabled}
	if err := json.NewDecoder(body).Decode(&in); err != nil {
		return badBody(err)
	}
	resolved, err := net.ResolveTCPAddr("tcp", in.Listen)
	if err != nil {
		return internal(err)
	}
	if p.Listen != resolved.String() || p.Upstream != in.Upstream {
		if err := s.stop(p); err != nil {
			return err
		}
		p.Listen, p.Upstream = in.Listen, in.Upstream
	}
	if in.Enabled != p.Enabled {
		if in.Enabled {
			if err := s.start(p); err != nil {
				return err
			}
		} else if err := s.stop(p); err != nil {
			return err
		}
	}
	s.log.Info("toxiproxy: proxy updated", "proxy", p.Name, "listen", p.Listen, "upstream", p.Upstream, "enabled", p.Enabled)
	return nil
}

func (s *Server) remove(p *proxy) *apiError {
	if err := s.stop(p); err != nil {
		return err
	}
	delete(s.proxies, p.Name)
	s.log.Info("toxiproxy: proxy deleted", "proxy", p.Name)
	return nil
}

// reset removes every toxic and starts every proxy, as Toxiproxy's
// /reset does; the first proxy that cannot start ends it.
func (s *Server) reset() *apiError {
	for _, p := range s.proxies {
		p.toxics = nil
	}
	if err := s.apply(); err != nil {
		return internal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(s.proxies)) {
		if err := s.start(s.proxies[name]); err != nil {
			return err
		}
	}
	s.log.Info("toxiproxy: reset")
	return nil
}

// populateItem is one proxy of a /populate body: enabled absent is true.
// The anonymous struct type is Toxiproxy's, for encoding/json's errors.
type populateItem = struct {
	Proxy
	Enabled *bool `json:"enabled"`
}

// populate creates or replaces the proxies listed, as Toxiproxy's does:
// one the same (listen, upstream) is left as it is, toxics and enabled
// included; one that differs is stopped and replaced; the first failure
// ends it, the proxies before it staying. It returns the proxies, in the
// body's order.
func (s *Server) populate(body io.Reader) ([]proxyJSON, *apiError) {
	var in []populateItem
	if err := json.NewDecoder(body).Decode(&in); err != nil {
		return nil, badBody(err)
	}
	for i, it := range in {
		if it.Name == "" {
			return nil, join(fmt.Errorf("name at proxy %d", i+1), errMissingField)
		}
		if it.Upstream == "" {
			return nil, join(fmt.Errorf("upstream at proxy %d", i+1), errMissingField)
		}
	}
	var out []proxyJSON
	for _, it := range in {
		it.Proxy.Enabled = it.Enabled == nil || *it.Enabled
		if old, ok := s.proxies[it.Name]; ok {
			resolved, err := net.ResolveTCPAddr("tcp", it.Listen)
			if err != nil {
				return out, internal(err)
			}
			if old.Listen == resolved.String() && old.Upstream == it.Upstream {
				out = append(out, old.json())
				continue
			}
			if err := s.remove(old); err != nil {
				return out, err
			}
		}
		p, err := s.create(it.Proxy)
		if err != nil {
			return out, err
		}
		out = append(out, p.json())
	}
	return out, nil
}

// Populate creates the proxies a Toxiproxy config file lists (the
// /populate body: a JSON array of {name, listen, upstream, enabled}), as
// toxiproxy-server -config does. On error, the proxies before the one
// that failed stay.
func (s *Server) Populate(r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, err := s.populate(r)
	if err != nil {
		return fmt.Errorf("toxiproxy: populate: %s", err.Message)
	}
	s.log.Info("toxiproxy: populated proxies", "proxies", len(ps))
	return nil
}
