package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
)

// ClientSettings are the TLS settings for dialing upstreams (a route's or
// one member's upstream_tls).
type ClientSettings struct {
	ServerName         string // "": the member's host when it is a DNS name; IP members verify the IP SAN
	CA                 string // PEM bundle; "": system roots
	Cert, Key          string // client certificate, both or neither
	ALPN               []string
	InsecureSkipVerify bool // NewClient logs a loud warning
}

// clientSessionsPerMember bounds each member's session cache: the relay
// resumes to one address, so a few tickets per concurrent dial are plenty.
const clientSessionsPerMember = 64

// A Client hands out one *tls.Config per member, each with its own session
// cache, so a member resumes only sessions it issued itself.
//
// The configs stay the same pointers for the life of the Client (the pool and
// the relay keep them) while the CA bundle and the client certificate may be
// re-read by Refresh. Since a tls.Config must not be changed once used, the
// configs verify the upstream themselves: InsecureSkipVerify is set on them
// only to hand verification to VerifyConnection, which checks the chain
// against the current CA pool and the server name exactly as crypto/tls
// would (unless the settings ask for no verification). VerifiedChains in
// the ConnectionState is therefore empty; PeerCertificates is filled as usual.
type Client struct {
	settings ClientSettings
	log      *slog.Logger
	current  atomic.Pointer[clientState]

	mu      sync.Mutex // guards configs and serialises Refresh
	configs map[string]*tls.Config
	ca      *watched // nil: system roots
	pair    *watched // nil: no client certificate
	errs    errSet
}

// clientState is what a handshake reads.
type clientState struct {
	roots *x509.CertPool   // nil: the system's
	cert  *tls.Certificate // nil: none
}

// NewClient reads the CA bundle and the client certificate now.
func NewClient(s ClientSettings, log *slog.Logger) (*Client, error) {
	if (s.Cert == "") != (s.Key == "") {
		return nil, fmt.Errorf("%w: upstream_tls needs both cert and key, or neither", ErrSettings)
	}
	c := &Client{settings: s, log: log, configs: map[string]*tls.Config{}}
	st := &clientState{}
	if s.CA != "" {
		c.ca = newWatched(s.CA)
		var err error
		if st.roots, err = loadPool(s.CA); err != nil {
			return nil, err
		}
	}
	if s.Cert != "" {
		c.pair = newWatched(s.Cert, s.Key)
		var err error
		if st.cert, err = loadPair(Pair{Cert: s.Cert, Key: s.Key}); err != nil {
			return nil, err
		}
	}
	c.current.Store(st)
	if s.InsecureSkipVerify {
		log.Warn("upstream TLS certificates are NOT verified (insecure_skip_verify): anyone on the path to the upstream can read and change this traffic",
			"server_name", s.ServerName)
	}
	return c, nil
}

// String lists the client's files, for logs.
func (c *Client) String() string {
	var files []string
	for _, f := range []string{c.settings.CA, c.settings.Cert, c.settings.Key} {
		if f != "" {
			files = append(files, f)
		}
	}
	return strings.Join(files, ",")
}

// Config returns the config for dialing member ("host:port" as configured),
// the same pointer for the same member. Its ServerName is the settings' or
// else the member's host; an IP host sends no SNI and is verified against
// the certificate's IP SANs.
func (c *Client) Config(member string) *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg, ok := c.configs[member]; ok {
		return cfg
	}
	serverName := c.settings.ServerName
	if serverName == "" {
		serverName = member
		if host, _, err := net.SplitHostPort(member); err == nil {
			serverName = host
		}
		if i := strings.IndexByte(serverName, '%'); i >= 0 { // an IPv6 zone is no part of a SAN
			serverName = serverName[:i]
		}
	}
	cfg := &tls.Config{
		ServerName:           serverName,
		NextProtos:           c.settings.ALPN,
		MinVersion:           tls.VersionTLS12,
		ClientSessionCache:   tls.NewLRUClientSessionCache(clientSessionsPerMember),
		InsecureSkipVerify:   true, // verified by VerifyConnection against the current roots: see Client
		GetClientCertificate: c.clientCertificate,
	}
	if !c.settings.InsecureSkipVerify {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return c.verify(cs, serverName) }
	}
	c.configs[member] = cfg
	return cfg
}

// ErrNoServerName marks an upstream config with nothing to verify the
// certificate against: set server_name.
var ErrNoServerName = errors.New("tlsconf: no server name to verify the upstream certificate against")

// verify does what crypto/tls does for a client without InsecureSkipVerify,
// with the CA pool of now: the chain up to a root, for server
// authentication, valid for serverName (an IP literal checks IP SANs). It
// runs on resumed sessions too, with the certificates the session began with.
func (c *Client) verify(cs tls.ConnectionState, serverName string) error {
	if serverName == "" {
		return ErrNoServerName
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsconf: the upstream sent no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         c.current.Load().roots,
		DNSName:       serverName,
		Intermediates: x509.NewCertPool(),
	}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("tlsconf: upstream certificate: %w", err)
	}
	return nil
}

// clientCertificate sends the current client certificate, or none.
func (c *Client) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if cert := c.current.Load().cert; cert != nil {
		return cert, nil
	}
	return &tls.Certificate{}, nil
}

// Refresh re-reads the CA bundle and the client certificate when their files
// changed, for every config already handed out; a bad new file keeps the
// old one and err says why (the same error value while it stays as it is).
func (c *Client) Refresh() (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := *c.current.Load()
	var errs []error
	if c.ca != nil {
		ch, err := c.ca.check(func() error {
			pool, err := loadPool(c.settings.CA)
			if err == nil {
				next.roots = pool
			}
			return err
		})
		changed = changed || ch
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.pair != nil {
		ch, err := c.pair.check(func() error {
			cert, err := loadPair(Pair{Cert: c.settings.Cert, Key: c.settings.Key})
			if err == nil {
				next.cert = cert
			}
			return err
		})
		changed = changed || ch
		if err != nil {
			errs = append(errs, err)
		}
	}
	if changed {
		c.current.Store(&next)
	}
	return changed, c.errs.set(errs)
}
