package tlsconf

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServerSettings are a route's terminating TLS settings.
type ServerSettings struct {
	Certificates       []Pair   // at least one; the first is the default for no/unknown SNI
	MinVersion         uint16   // 0: tls.VersionTLS12
	CipherSuites       []uint16 // TLS 1.2 suites; nil: Go's defaults
	ALPN               []string
	ClientCA           string // PEM bundle file; "": no client certificate asked for
	ClientAuthRequired bool   // with ClientCA: a client without a valid cert is refused
}

// Session-ticket keys: a new one every hour and the last three kept, so a
// ticket resumes for two to three hours and a stolen key opens at most three
// hours of recorded sessions (Go's own automatic keys live a week).
const (
	ticketKeyPeriod = time.Hour
	ticketKeysKept  = 3
)

// A Server hands out one *tls.Config for a terminating route. Its
// certificates are chosen per handshake by SNI from a store that Refresh
// replaces atomically, so a handshake never waits for a reload and live
// sessions keep the certificate they began with.
type Server struct {
	settings ServerSettings
	log      *slog.Logger
	config   *tls.Config // the stable one Config returns
	current  atomic.Pointer[serverState]

	// now and ticketPeriod are the clock and the key period; tests replace them.
	now          func() time.Time
	ticketPeriod time.Duration

	mu         sync.Mutex // serialises Refresh; guards the fields below
	pairs      []*pairSlot
	clientCA   *watched // nil: no client certificates asked for
	errs       errSet
	ticketKeys [][32]byte // newest first
	rotated    time.Time  // when ticketKeys[0] was made
}

type pairSlot struct {
	pair  Pair
	files *watched
	cert  *tls.Certificate // as last loaded
}

// serverState is what a handshake reads: the certificate store, and the
// config GetConfigForClient returns (the stable config with the current
// client CA pool: ClientCAs cannot change on a config in use).
type serverState struct {
	certs  *certStore
	config *tls.Config
}

// NewServer loads every certificate, key and the client CA bundle now; an
// error names the file and says why.
func NewServer(s ServerSettings, log *slog.Logger) (*Server, error) {
	if len(s.Certificates) == 0 {
		return nil, fmt.Errorf("%w: tls needs at least one certificate", ErrSettings)
	}
	for i, p := range s.Certificates {
		if p.Cert == "" || p.Key == "" {
			return nil, fmt.Errorf("%w: certificate %d needs both cert and key", ErrSettings, i+1)
		}
	}
	if s.ClientAuthRequired && s.ClientCA == "" {
		return nil, fmt.Errorf("%w: client_auth required needs a ca", ErrSettings)
	}
	if s.MinVersion == 0 {
		s.MinVersion = tls.VersionTLS12
	}
	if s.MinVersion < tls.VersionTLS10 || s.MinVersion > tls.VersionTLS13 {
		return nil, fmt.Errorf("%w: unknown TLS version %#04x", ErrSettings, s.MinVersion)
	}
	srv := &Server{settings: s, log: log, now: time.Now, ticketPeriod: ticketKeyPeriod}
	certs := make([]*tls.Certificate, len(s.Certificates))
	for i, p := range s.Certificates {
		slot := &pairSlot{pair: p, files: newWatched(p.Cert, p.Key)}
		c, err := loadPair(p)
		if err != nil {
			return nil, err
		}
		slot.cert, certs[i] = c, c
		srv.pairs = append(srv.pairs, slot)
	}
	var pool *x509.CertPool
	if s.ClientCA != "" {
		srv.clientCA = newWatched(s.ClientCA)
		var err error
		if pool, err = loadPool(s.ClientCA); err != nil {
			return nil, err
		}
	}
	key, err := newTicketKey()
	if err != nil {
		return nil, err
	}
	srv.ticketKeys, srv.rotated = [][32]byte{key}, srv.now()

	srv.config = &tls.Config{
		MinVersion:         s.MinVersion,
		CipherSuites:       s.CipherSuites,
		NextProtos:         s.ALPN,
		ClientCAs:          pool,
		ClientAuth:         clientAuth(s),
		GetCertificate:     srv.getCertificate,
		GetConfigForClient: srv.getConfigForClient,
	}
	srv.config.SetSessionTicketKeys(srv.ticketKeys)
	srv.current.Store(&serverState{certs: newCertStore(certs), config: srv.handshakeConfig(pool)})
	return srv, nil
}

// String lists the server's files, for logs.
func (s *Server) String() string {
	var files []string
	for _, p := range s.settings.Certificates {
		files = append(files, p.Cert, p.Key)
	}
	if s.settings.ClientCA != "" {
		files = append(files, s.settings.ClientCA)
	}
	return strings.Join(files, ",")
}

func clientAuth(s ServerSettings) tls.ClientAuthType {
	switch {
	case s.ClientCA == "":
		return tls.NoClientCert
	case s.ClientAuthRequired:
		return tls.RequireAndVerifyClientCert
	default:
		return tls.VerifyClientCertIfGiven
	}
}

// Config returns the route's server config, the same pointer every time.
// Every handshake goes through GetConfigForClient to the config of the
// current client CA pool and through GetCertificate to the current store.
func (s *Server) Config() *tls.Config { return s.config }

func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return forHandshake(s.current.Load().certs.choose(hello), hello.Context()), nil
}

func (s *Server) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return s.current.Load().config, nil
}

// handshakeConfig is the stable config with a client CA pool of its own.
// Called with s.mu held or before s is shared.
func (s *Server) handshakeConfig(pool *x509.CertPool) *tls.Config {
	c := s.config.Clone()
	c.GetConfigForClient = nil
	c.ClientCAs = pool
	c.SetSessionTicketKeys(s.ticketKeys)
	return c
}

// Refresh stats the certificate, key and client CA files and reloads those
// that changed; a bad new file keeps the old one in use and err says why,
// naming the file. While the failing files stay as they are, Refresh returns
// the same error value without parsing them again. changed reports that a
// reload took effect. It also rotates the session-ticket keys when one is
// due (that alone is no change).
func (s *Server) Refresh() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	certsChanged := false
	for _, slot := range s.pairs {
		ch, err := slot.files.check(func() error {
			c, err := loadPair(slot.pair)
			if err != nil {
				return err
			}
			if now := s.now(); now.After(c.Leaf.NotAfter) || now.Before(c.Leaf.NotBefore) {
				return fmt.Errorf("tlsconf: certificate %s is valid only from %s to %s",
					slot.pair.Cert, c.Leaf.NotBefore.Format(time.RFC3339), c.Leaf.NotAfter.Format(time.RFC3339))
			}
			slot.cert = c
			return nil
		})
		certsChanged = certsChanged || ch
		if err != nil {
			errs = append(errs, err)
		}
	}
	old := s.current.Load()
	next := *old
	if certsChanged {
		certs := make([]*tls.Certificate, len(s.pairs))
		for i, slot := range s.pairs {
			certs[i] = slot.cert
		}
		next.certs = newCertStore(certs)
	}
	caChanged := false
	if s.clientCA != nil {
		var err error
		caChanged, err = s.clientCA.check(func() error {
			pool, err := loadPool(s.settings.ClientCA)
			if err != nil {
				return err
			}
			next.config = s.handshakeConfig(pool)
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if certsChanged || caChanged {
		s.current.Store(&next)
	}
	if err := s.rotateTicketKeys(); err != nil {
		errs = append(errs, err)
	}
	return certsChanged || caChanged, s.errs.set(errs)
}

// rotateTicketKeys puts a new key first when the newest is a period old.
// Called with s.mu held.
func (s *Server) rotateTicketKeys() error {
	now := s.now()
	if now.Sub(s.rotated) < s.ticketPeriod {
		return nil
	}
	key, err := newTicketKey()
	if err != nil {
		return err
	}
	keys := append([][32]byte{key}, s.ticketKeys...)
	if len(keys) > ticketKeysKept {
		keys = keys[:ticketKeysKept]
	}
	s.ticketKeys, s.rotated = keys, now
	// Handshakes use the config GetConfigForClient returns; the stable one
	// gets the keys too for anyone who handshakes with a Clone of it.
	s.config.SetSessionTicketKeys(keys)
	s.current.Load().config.SetSessionTicketKeys(keys)
	return nil
}

func newTicketKey() ([32]byte, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("tlsconf: session ticket key: %w", err)
	}
	return k, nil
}

// loadPair reads a certificate and its key; the error names the file at
// fault (both when they do not match).
func loadPair(p Pair) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.Cert)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.Key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: key: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	switch {
	case err == nil:
	case strings.Contains(err.Error(), "certificate input"), strings.HasPrefix(err.Error(), "x509:"):
		return nil, fileErr("certificate", p.Cert, err)
	case strings.Contains(err.Error(), "key input"), strings.Contains(err.Error(), "parse private key"):
		return nil, fileErr("key", p.Key, err)
	default:
		return nil, fmt.Errorf("tlsconf: certificate %s with key %s: %w", p.Cert, p.Key, err)
	}
	if c.Leaf == nil { // X509KeyPair fills it in since Go 1.23; keep the store's reads simple
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fileErr("certificate", p.Cert, err)
		}
	}
	c.PrivateKey = bounded(c.PrivateKey)
	return &c, nil
}

// loadPool reads a PEM bundle of CA certificates.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fileErr("ca", path, fmt.Errorf("no PEM certificate in it"))
	}
	return pool, nil
}

// A certStore picks a certificate for a ClientHello. It is never changed
// once built; Refresh builds a new one.
type certStore struct {
	exact    map[string][]*tls.Certificate // lowercased SAN DNS name
	wildcard map[string][]*tls.Certificate // "example.com" for "*.example.com"
	defaults []*tls.Certificate            // the first pair and the others for its first name
	first    *tls.Certificate
}

// newCertStore indexes certs (the pairs in configured order) by their SAN
// DNS names; every list is ordered ECDSA first, then configured order.
func newCertStore(certs []*tls.Certificate) *certStore {
	st := &certStore{
		exact:    map[string][]*tls.Certificate{},
		wildcard: map[string][]*tls.Certificate{},
		first:    certs[0],
	}
	for _, c := range certs {
		seen := map[string]bool{}
		for _, n := range c.Leaf.DNSNames {
			n = normalName(n)
			if n == "" || seen[n] {
				continue
			}
			seen[n] = true
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				st.wildcard[parent] = append(st.wildcard[parent], c)
			} else {
				st.exact[n] = append(st.exact[n], c)
			}
		}
	}
	st.defaults = []*tls.Certificate{certs[0]}
	if names := certs[0].Leaf.DNSNames; len(names) > 0 {
		// An RSA twin of an ECDSA default (or the other way round) serves
		// clients without SNI that support only the twin.
		name := normalName(names[0])
		for _, c := range certs[1:] {
			if slices.ContainsFunc(c.Leaf.DNSNames, func(n string) bool { return normalName(n) == name }) {
				st.defaults = append(st.defaults, c)
			}
		}
	}
	for _, list := range st.exact {
		sortByKey(list)
	}
	for _, list := range st.wildcard {
		sortByKey(list)
	}
	sortByKey(st.defaults)
	return st
}

// sortByKey puts ECDSA first and RSA last, keeping the configured order
// among equals: ECDSA handshakes cost the server far less.
func sortByKey(list []*tls.Certificate) {
	rank := func(c *tls.Certificate) int {
		switch c.Leaf.PublicKeyAlgorithm {
		case x509.ECDSA:
			return 0
		case x509.RSA:
			return 2
		default:
			return 1
		}
	}
	slices.SortStableFunc(list, func(a, b *tls.Certificate) int { return rank(a) - rank(b) })
}

func normalName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

// choose returns the certificate for hello: an exact SAN match, else a
// one-label wildcard, else the default; among several, the first the client
// supports. When it supports none, the first candidate, so the handshake
// fails with the client's own reason.
func (st *certStore) choose(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := normalName(hello.ServerName)
	if name != "" {
		if list := st.exact[name]; len(list) > 0 {
			return pick(hello, list)
		}
		if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
			if list := st.wildcard[parent]; len(list) > 0 {
				return pick(hello, list)
			}
		}
	}
	for _, c := range st.defaults {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return st.first
}

func pick(hello *tls.ClientHelloInfo, list []*tls.Certificate) *tls.Certificate {
	for _, c := range list {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return list[0]
}
