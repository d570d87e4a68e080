package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	yaml "go.yaml.in/yaml/v4"
)

// The parsers of the top level and of the servers beside the routes: the
// admin API and Toxiproxy's API.

// config decodes the file's top-level mapping into cfg, and checks what
// spans its fields: routes may be absent or empty only when toxiproxy is
// set, and the servers' listen addresses must not collide with the
// routes' or each other's.
func (p *parser) config(root *yaml.Node, cfg *Config) {
	vals := decodeMap(p, root, "config", configFields, cfg)
	if vals == nil || p.stop {
		return
	}
	m := p.resolve(root)
	switch routes := vals["routes"]; {
	case vals["toxiproxy"] != nil:
		// A pier serving Toxiproxy's API gets its routes from it.
	case routes == nil && !hasMergeKey(m):
		p.errf(m, "config: missing required field %q", "routes")
	case routes != nil:
		if s := p.resolve(routes); s.Kind == yaml.SequenceNode && len(s.Content) == 0 {
			p.errf(s, "routes: no routes: need at least one")
		}
	}
	for _, s := range p.servers {
		p.claimServer(s)
	}
}

// hasMergeKey reports whether the mapping m has a merge key (<<), which
// decodeMap reported: a required field it may have meant to supply is
// not reported missing as well.
func hasMergeKey(m *yaml.Node) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Tag == "!!merge" {
			return true
		}
	}
	return false
}

// A server is the listen address of the admin or the Toxiproxy server,
// valid and waiting to be claimed.
type server struct {
	what  string     // "admin", "toxiproxy"
	node  *yaml.Node // the address as written (an alias: the alias), or the mapping that took the default
	value string
	addr  listenAddr
}

// claims returns the listen addresses claimed so far.
func (p *parser) claims() binds {
	if p.claimed == nil {
		p.claimed = make(binds)
	}
	return p.claimed
}

// claimServer takes a server's listen address, reporting a route's or an
// earlier server's that it collides with. Both would fail to bind, the
// second only when the server opens, after the routes'.
func (p *parser) claimServer(s server) {
	at := pos(s.node)
	// route -1: not a route; servers are claimed after every route.
	prev := p.claims().take(s.addr, &claim{route: -1, name: s.what, addr: s.value, line: at.Line})
	if prev == nil {
		return
	}
	var whose string
	switch {
	case prev.route < 0:
		whose = prev.name
	case prev.name != "":
		whose = "route " + quote(prev.name)
	default:
		whose = fmt.Sprintf("routes[%d]", prev.route)
	}
	if p.places == nil {
		whose += fmt.Sprintf(" (line %d)", prev.line)
	}
	p.errAt(at.Line, at.Col, "%s: listen: %s overlaps %s of %s", s.what, quote(s.value), quote(prev.addr), whose)
}

// within returns parse with what (the mapping's key) put before the key
// it reports under: a server's listen errors read "admin: listen: ...",
// as the bare "listen: ..." would be taken for a route's.
func within[V any](what string, parse func(*parser, string, *yaml.Node) V) func(*parser, string, *yaml.Node) V {
	return func(p *parser, key string, n *yaml.Node) V { return parse(p, what+": "+key, n) }
}

// listenAddress parses a server's listen address, as a route's.
func (p *parser) listenAddress(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if _, err := parseListen(s.Value); err != nil {
		p.errf(s, "%s: %s: %v", key, quote(s.Value), err)
		return ""
	}
	return s.Value
}

// serverListen records the valid listen address of a server's mapping m,
// written at the node at (nil: the default), to be claimed, and reports
// whether only this host can reach it.
func (p *parser) serverListen(what string, m, at *yaml.Node, addr string) (loopback, ok bool) {
	if addr == "" {
		return false, false // reported
	}
	a, err := parseListen(addr)
	if err != nil {
		return false, false
	}
	p.servers = append(p.servers, server{what: what, node: either(at, m), value: addr, addr: a})
	return a.loopback(), true
}

// loopback reports whether a binds loopback addresses only: not a
// wildcard (every address, loopback or not), every IP a loopback one.
func (a listenAddr) loopback() bool {
	if a.ips == nil {
		return false
	}
	for _, ip := range a.ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// admin parses the admin mapping.
func (p *parser) admin(key string, n *yaml.Node) *Admin {
	a := &Admin{Pos: pos(n)}
	vals := decodeMap(p, n, key, adminFields, a)
	if vals == nil {
		return nil
	}
	loopback, ok := p.serverListen(key, n, vals["listen"], a.Listen)
	// A token_file that is there but wrong was reported: fixing it is
	// the answer, not a loopback address.
	if ok && !loopback && vals["token_file"] == nil {
		hint := "set token_file"
		if p.fromFlags {
			hint = "set a token file"
		}
		p.errf(p.resolve(vals["listen"]), "%s: listen: %s is not a loopback address: %s", key, a.Listen, hint)
	}
	return a
}

// toxiproxy parses the toxiproxy mapping.
func (p *parser) toxiproxy(key string, n *yaml.Node) *Toxiproxy {
	t := &Toxiproxy{Pos: pos(n)}
	vals := decodeMap(p, n, key, toxiproxyFields, t)
	if vals == nil {
		return nil
	}
	loopback, ok := p.serverListen(key, n, vals["listen"], t.Listen)
	if ok && !loopback && !t.AllowRemote {
		p.errf(p.resolve(vals["listen"]), "%s: listen: %s is not a loopback address: Toxiproxy's API has no authentication; set allow_remote: true to serve it to other hosts anyway", key, t.Listen)
	}
	return t
}

// tokenFile parses the admin server's token file: it must hold a token
// now, so a file that would fail the admin server's start fails the load.
func (p *parser) tokenFile(key string, n *yaml.Node) string {
	s, ok := p.scalar(key, n)
	if !ok {
		return ""
	}
	if _, err := readToken(s.Value); err != nil {
		p.errf(s, "%s: %s: %v", key, quote(s.Value), err)
		return ""
	}
	return s.Value
}

// MaxTokenSize bounds an admin token file: a token is a few dozen bytes,
// and a file of more is not one (a key, a log, a device).
const MaxTokenSize = 4 << 10

// ReadToken reads the admin server's bearer token from path, as Load
// checked it: a regular file of at most MaxTokenSize bytes holding
// visible ASCII, its trailing white space (a final newline) not part of
// the token. The application layer calls it at start and on every
// reload, so a token rotated in the file takes effect with the reload.
// The error names the file and says what is wrong with it.
func ReadToken(path string) ([]byte, error) {
	token, err := readToken(path)
	if err != nil {
		return nil, fmt.Errorf("config: token_file %s: %w", quote(path), err)
	}
	return token, nil
}

func readToken(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("no file named")
	}
	// O_NONBLOCK: a FIFO must not hang the load waiting for a writer; it
	// is then refused as not a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxTokenSize+1))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	if len(data) > MaxTokenSize {
		return nil, fmt.Errorf("larger than %d KiB: a token file holds one token", MaxTokenSize>>10)
	}
	token := bytes.TrimRight(data, " \t\r\n")
	if len(token) == 0 {
		return nil, errors.New("empty: write the token in it")
	}
	for i, c := range token {
		if c < 0x21 || c > 0x7e {
			return nil, fmt.Errorf("byte %d of the token is %q: a token is visible ASCII, sent in an HTTP header", i+1, c)
		}
	}
	return token, nil
}
