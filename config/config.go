package config

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/pierproxy/pier/filter"
)

// Defaults of the optional fields. The loader fills them in, so callers
// see resolved values. They are exported because 'pier forward' offers the
// same settings as flags, with the same defaults.
const (
	DefaultGracePeriod      = 30 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultIdleTimeout      = time.Hour
	DefaultHalfCloseTimeout = time.Minute

	DefaultRetries         = 2
	DefaultResolveInterval = 30 * time.Second
	DefaultResolveTimeout  = 5 * time.Second

	// Active health checks.
	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = time.Second
	DefaultRise          = 2
	DefaultFall          = 3

	// Passive checks: ejection on consecutive dial failures.
	DefaultPassiveFailures = 3
	DefaultBackoff         = 2 * time.Second
	DefaultMaxBackoff      = time.Minute

	// The edge: peeking at a client's first bytes, PROXY headers,
	// per-client tracking.
	DefaultPeekTimeout  = 5 * time.Second
	DefaultProxyTimeout = 3 * time.Second
	MaxEdgeTimeout      = time.Minute // peek_timeout and proxy_protocol.timeout are (0, MaxEdgeTimeout]
	DefaultIPv4Prefix   = 32
	DefaultIPv6Prefix   = 64 // one IPv6 subscriber owns a /64 and picks any address in it
	DefaultMaxTracked   = 65536
	MaxMaxTracked       = 10_000_000

	// TLS: a handshake that takes longer than handshake_timeout fails
	// the session; handshake_timeout is (0, MaxHandshakeTimeout].
	DefaultHandshakeTimeout = 10 * time.Second
	MaxHandshakeTimeout     = 5 * time.Minute
	DefaultTLSMinVersion    = "1.2"

	// UDP routes (protocol: udp). A flow ends when no datagram moved
	// either way for idle_timeout: DefaultUDPIdleTimeout when absent,
	// as nginx's proxy_timeout (10m) is far too long for DNS or statsd
	// clients that each use a fresh port. Each live flow holds one
	// connected socket (a descriptor) toward its member, so the flow
	// table is bounded: max_flows is 1..MaxMaxFlows, DefaultMaxFlows
	// when absent.
	DefaultUDPIdleTimeout = 30 * time.Second
	DefaultMaxFlows       = 65536
	MaxMaxFlows           = 1 << 20
)

// The protocols a route serves (Route.Protocol).
const (
	TCP = "tcp"
	UDP = "udp"
)

// Config is a whole configuration file.
type Config struct {
	// GracePeriod is how long live sessions may take to finish after
	// SIGTERM or SIGINT before they are closed. Absent: DefaultGracePeriod.
	// Zero is refused, in a file as from 'pier forward -grace 0': the
	// application layer would read it as "wait for ever", which is not
	// what "grace_period: 0s" says.
	GracePeriod time.Duration
	// Routes are the routes, in file order; at least one, unless
	// Toxiproxy is set: a pier that only serves Toxiproxy's API starts
	// with none, and its proxies become routes at run time.
	Routes []Route
	// Resolver is how upstream names are looked up. Zero value: the
	// system's resolver.
	Resolver Resolver
	// Admin, if set, serves the admin API (package internal/admin). Nil:
	// no admin server.
	Admin *Admin
	// Toxiproxy, if set, serves Toxiproxy's HTTP API beside the routes.
	// Nil: not served.
	Toxiproxy *Toxiproxy
	// Allow and Deny are the top level's address lists, checked for
	// every client of every route before the route's own: a client in
	// Deny is refused; with Allow non-empty, so is one outside it. Empty:
	// everyone. Prefixes are canonical (no host bits), never IPv4-mapped.
	Allow, Deny []netip.Prefix
	// Limits are the top level's: an accept rate over every route, and
	// per-client limits counted across every route. Nil: none.
	Limits *Limits
	// File is the name the configuration was parsed under (Load: its
	// path), for log lines. Empty for a Config built in code.
	File string
}

// Admin is the admin server: `admin: {listen: "127.0.0.1:9901", token_file: FILE}`.
type Admin struct {
	// Listen is the address the admin server binds, host:port as a
	// route's listen address. Required. Without TokenFile the host must
	// be a loopback IP literal or "localhost": anyone who can reach the
	// server can steer the proxy, so an address others can reach needs
	// a token. An empty host (every address) is not loopback.
	Listen string
	// TokenFile, if set, holds the bearer token every request must carry
	// (Authorization: Bearer TOKEN): visible ASCII, at most MaxTokenSize
	// bytes, trailing white space ignored. Load checks that it holds
	// one; the application layer reads it with ReadToken at start and on
	// every reload. A relative path is relative to the working directory.
	TokenFile string
	// Pos is where the admin mapping is written.
	Pos Pos
}

// DefaultToxiproxyListen is where toxiproxy-server listens by default,
// and where `toxiproxy: {}` listens.
const DefaultToxiproxyListen = "127.0.0.1:8474"

// Toxiproxy serves Toxiproxy's HTTP API: `toxiproxy: {listen: "127.0.0.1:8474"}`.
type Toxiproxy struct {
	// Listen is the API's address, host:port. Absent:
	// DefaultToxiproxyListen. Toxiproxy's API has no authentication and
	// opens listeners on request, so the host must be a loopback IP
	// literal or "localhost" unless AllowRemote is set.
	Listen string
	// AllowRemote lets Listen be an address other hosts can reach
	// (written `allow_remote: true`), for a test rig whose clients run
	// elsewhere on a trusted network.
	AllowRemote bool
	// Pos is where the toxiproxy mapping is written.
	Pos Pos
}

// Resolver is how upstream names (Upstream.Address host names and SRV
// names) are looked up, for every route.
type Resolver struct {
	// Servers are DNS servers as IP:port (port default 53 if omitted:
	// "10.0.0.2" → "10.0.0.2:53"; the loader stores the IP:port form);
	// empty: the system's resolver (/etc/hosts, /etc/resolv.conf).
	Servers []string
	// Interval is how often names are looked up again. Absent:
	// DefaultResolveInterval (30s). Must be > 0.
	Interval time.Duration
	// Timeout bounds one lookup. Absent: DefaultResolveTimeout (5s). > 0.
	Timeout time.Duration
}

// Route is one listen-to-upstreams route.
type Route struct {
	// Name names the route in logs, and carries its connection
	// count across reloads. Required; unique in the file;
	// [a-z0-9][a-z0-9_.-]*, at most 64 characters.
	Name string
	// Listen holds the addresses clients arrive on, as host:port; at least
	// one. A file may write one address alone (listen: ":9090") for a
	// list of one. The host is empty (every address, IPv4 and IPv6), an IP
	// literal, or "localhost"; port 0 takes any free port, as tests do.
	Listen []string
	// Protocol is what the route forwards: TCP (streams, the default) or
	// UDP (datagrams, in flows keyed by client address). Absent: TCP;
	// a Config from Load or Check has one of the two. A udp route
	// refuses what has no meaning for datagrams (see checkUDP): tls,
	// upstream_tls, handshake_timeout, proxy_protocol, send_proxy (the
	// route's and its members'), match, peek_timeout,
	// half_close_timeout, max_connections (max_flows is its cap),
	// connect_timeout, connect_budget and retries; Load leaves them
	// zero on it. A tcp and a udp route may listen on one address.
	Protocol string
	// Upstreams are the members sessions are sent to; at least one, and
	// not every one a backup.
	Upstreams []Upstream
	// Balance is how a member is chosen: "round_robin" (default),
	// "least_conn", "random", "hash".
	Balance string
	// HealthCheck, if set, actively checks every member. Nil: no active
	// checks.
	HealthCheck *HealthCheck
	// PassiveCheck ejects members on consecutive dial failures.
	PassiveCheck PassiveCheck
	// Retries is how many other members a session may try after a failed
	// or timed-out dial. Absent: DefaultRetries (2). 0 allowed; at most
	// 100.
	Retries int
	// ConnectTimeout bounds one dial to a member. Absent:
	// DefaultConnectTimeout. Zero is refused: a dial must not wait for
	// ever on a silent upstream.
	ConnectTimeout time.Duration
	// ConnectBudget bounds all of a session's dials together. Absent:
	// ConnectTimeout × (Retries+1). Must be > 0 when given.
	ConnectBudget time.Duration
	// WhenAllDown is what a new session does when no member is healthy:
	// "fail" (default: close the client at once) or "try_all" (try
	// members anyway).
	WhenAllDown string
	// IdleTimeout ends a session in which no byte moved either way for
	// this long. Absent: DefaultIdleTimeout. Zero (written 0 or 0s): no
	// idle timeout, as with 'pier forward -idle-timeout 0'. On a udp
	// route it ends a flow with no datagram either way; absent:
	// DefaultUDPIdleTimeout; zero is refused (flows must end), and a
	// udp Route built in code with zero takes the default.
	IdleTimeout time.Duration
	// HalfCloseTimeout ends a session this long after one side has sent
	// FIN, if the other has not finished by then. Absent:
	// DefaultHalfCloseTimeout. Zero: no half-close timeout.
	HalfCloseTimeout time.Duration
	// MaxConnections caps the route's live sessions; a client beyond it is
	// closed at once. Absent or 0: no cap.
	MaxConnections int
	// Responses, on a udp route, is the replies each datagram from the
	// client is owed, as nginx's proxy_responses: a flow ends as soon as
	// every datagram it sent got them (1 for DNS: one answer per query).
	// Absent or 0: no such end.
	// Refused on a tcp route.
	Responses int
	// MaxFlows, on a udp route, caps its live flows: a datagram that
	// would open one more is dropped (reason limit). Absent:
	// DefaultMaxFlows; 1..MaxMaxFlows. Refused on a tcp route; zero on
	// one after Load.
	MaxFlows int
	// Filters are the route's filters, listed from the client's side
	// toward the upstream's. Each names a filter registered with package
	// filter; its options were checked (filter.Options.DryRun) at load.
	Filters []Filter
	// Match, if set, lets the route share its listen addresses with other
	// routes that have one: a client takes the route whose Match fits it
	// best. Nil: the route owns its addresses alone.
	Match *Match
	// PeekTimeout bounds waiting for a client's TLS ClientHello on a
	// shared address, since accept. Absent: DefaultPeekTimeout; (0,
	// MaxEdgeTimeout]. Routes sharing an address must agree.
	PeekTimeout time.Duration
	// ProxyProtocol, if set, accepts a PROXY protocol header from trusted
	// clients. Nil: none is accepted (one is plain data). Routes sharing
	// an address must agree.
	ProxyProtocol *ProxyProtocol
	// SendProxy is the PROXY header written to every upstream before any
	// client byte: "v1", "v2"; "" none. A member may override it.
	SendProxy string
	// Allow and Deny are the route's address lists, checked after the top
	// level's (a top-level deny wins over a route's allow). Empty:
	// everyone the top level lets in.
	Allow, Deny []netip.Prefix
	// Limits are the route's accept rate and per-client limits. Nil: none.
	Limits *Limits
	// TLS, if set, terminates TLS: the route's clients handshake with
	// pier, and its filters and upstreams see plaintext. Nil: the
	// client's bytes pass as they come. On a shared address, the route
	// is chosen (by SNI) before it terminates, so routes sharing an
	// address may differ here: terminate one name, pass another through.
	TLS *TLSServer
	// UpstreamTLS, if set, originates TLS to every member (a member's
	// own UpstreamTLS replaces it). Nil: plain TCP to the members.
	UpstreamTLS *UpstreamTLS
	// HandshakeTimeout bounds each TLS handshake of the route, with the
	// client and with a member, since it began. Absent:
	// DefaultHandshakeTimeout; (0, MaxHandshakeTimeout]. Unused by a
	// route without TLS or UpstreamTLS.
	HandshakeTimeout time.Duration
	// Pos is where the route is listed in the file (for a YAML alias, the
	// alias). Zero for a Route built in code.
	Pos Pos
}

// TLSServer is how a route terminates TLS: `tls: {certificates: [{cert:
// FILE, key: FILE}], min_version: "1.2", cipher_suites: [...], alpn:
// [...], client_auth: {ca: FILE, required: true}}`.
type TLSServer struct {
	// Certificates are the route's certificates and their keys, at least
	// one; each pair loaded at check time. A client's SNI chooses among
	// them (an exact name, then a wildcard); the first serves a client
	// that sent none, or one that no certificate names.
	Certificates []CertPair
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	// Absent: DefaultTLSMinVersion.
	MinVersion string
	// CipherSuites are the TLS 1.2 suites offered, by their IANA names
	// (as Go's tls.CipherSuites lists them); empty: Go's defaults. TLS
	// 1.3's suites are not configurable, and the insecure ones are
	// refused.
	CipherSuites []string
	// ALPN are the protocols offered, in order of preference; empty:
	// none (the client's offer is ignored).
	ALPN []string
	// ClientAuth, if set, asks clients for a certificate. Nil: none
	// asked for.
	ClientAuth *ClientAuth
	// Pos is where the tls mapping is written.
	Pos Pos
}

// CertPair is a certificate chain and its private key, PEM files. A
// relative path is relative to the working directory.
type CertPair struct {
	Cert, Key string
	// Pos is where the pair is listed.
	Pos Pos
}

// ClientAuth asks a terminating route's clients for a certificate:
// `client_auth: {ca: FILE, required: true}`.
type ClientAuth struct {
	// CA is the PEM bundle of the authorities a client certificate must
	// chain to. Required.
	CA string
	// Required: a client without a valid certificate is refused. False:
	// one without a certificate is let in; one with a bad certificate is
	// still refused.
	Required bool
	// Pos is where the client_auth mapping is written.
	Pos Pos
}

// UpstreamTLS is how TLS is originated to members: `upstream_tls:
// {server_name, ca: FILE, cert: FILE, key: FILE, alpn: [...],
// insecure_skip_verify: false}`. Every field may be absent
// (`upstream_tls: {}`: verify against the system's roots, for the
// member's host name).
type UpstreamTLS struct {
	// ServerName is sent as SNI and verified in the member's
	// certificate. Empty: the member's host when it is a DNS name (an
	// SRV member: its target); an IP member verifies its IP address.
	ServerName string
	// CA is the PEM bundle of the authorities the member's certificate
	// must chain to. Empty: the system's roots.
	CA string
	// Cert and Key are a client certificate and its key, both or
	// neither.
	Cert, Key string
	// ALPN are the protocols offered to the member.
	ALPN []string
	// InsecureSkipVerify accepts any certificate the member shows (pier
	// warns loudly when it starts). Not with CA.
	InsecureSkipVerify bool
	// Pos is where the upstream_tls mapping is written.
	Pos Pos
}

// Upstream is one member of a route's pool, as written: an address or
// an SRV name, which may stand for several addresses.
type Upstream struct {
	// Address is host:port (an IP literal or a DNS name, re-resolved every
	// Resolver.Interval, expanding to every A/AAAA address); the port is 1
	// to 65535. Exactly one of Address and SRV.
	Address string
	// SRV is a DNS SRV name (_service._proto.name), expanding to its
	// targets with their ports, weights and priorities.
	SRV string
	// Weight is the member's share, 1..1000. Absent: 1 for an address
	// member; 0 for an SRV member, meaning: use each SRV record's weight
	// (given, it overrides them).
	Weight int
	// Backup members get sessions only when no primary member is healthy.
	Backup bool
	// MaxConnections caps the member's live sessions; 0 no cap.
	MaxConnections int
	// Drain: the member gets no new sessions; live ones finish.
	Drain bool
	// SendProxy overrides the route's SendProxy for this member: "v1",
	// "v2", or "none"; "" the route's.
	SendProxy string
	// UpstreamTLS, if set, replaces the route's UpstreamTLS for this
	// member. Nil: the route's.
	UpstreamTLS *UpstreamTLS
	// Pos is where the upstream is listed in the file.
	Pos Pos
}

// HealthCheck is a route's active check of its members: connect, send
// Send, read the reply and match it.
type HealthCheck struct {
	// Interval is the time between checks of a member. Absent:
	// DefaultCheckInterval. > 0.
	Interval time.Duration
	// Timeout bounds one check. Absent: DefaultCheckTimeout. > 0 and not
	// more than Interval.
	Timeout time.Duration
	// Rise is how many checks in a row must pass for an unhealthy member
	// to become healthy; Fall how many must fail for a healthy one to
	// become unhealthy. Absent: DefaultRise, DefaultFall. 1..100.
	Rise int
	Fall int
	// Port is the port checked. 0 (absent): the member's own port.
	Port uint16
	// Send is the bytes sent after connecting; "" none. The YAML parser
	// has already unescaped a double-quoted string ("PING\r\n"); a
	// !!binary value is decoded from base64.
	Send string
	// Expect: the reply must start with these bytes; "" none. Read like
	// Send.
	Expect string
	// ExpectRegexp: or, the reply (its first read or reads, up to 4 KiB)
	// must match this Go regexp; "" none. It compiled at load. At most one
	// of Expect and ExpectRegexp is set.
	ExpectRegexp string
	// SendProxy is the PROXY header a check writes first: "auto" (or "",
	// absent: a LOCAL header of the member's version when the member is
	// sent one and Port is 0, else none), "none", "v1", "v2".
	SendProxy string
	// TLS: the check handshakes (and verifies) with the member's
	// UpstreamTLS, after any PROXY header and before Send. The route, or
	// else every member, must have an UpstreamTLS.
	TLS bool
	// Pos is where the health_check mapping is written.
	Pos Pos
}

// Match is what a client must show to take a route on a shared listen
// address: `match: {sni: [...], alpn: [...], source: [...], default: true}`.
// Within one criterion any entry fits; an empty criterion fits everyone.
// At least one criterion or Default is set.
type Match struct {
	// SNI: server names from the TLS ClientHello, lowercase LDH, no
	// trailing dot: exact ("db.example.com") or a wildcard
	// ("*.example.com": one or more labels, never example.com itself).
	SNI []string
	// ALPN: protocols the client offers in its ClientHello (1..255 bytes).
	ALPN []string
	// Source: the client's address (after a PROXY header) is in one.
	Source []netip.Prefix
	// Default: the route takes the clients no other route of its address
	// fits; at most one per address.
	Default bool
	// Pos is where the match mapping is written.
	Pos Pos
}

// ProxyProtocol accepts PROXY protocol headers from trusted clients:
// `proxy_protocol: {accept: v2, trusted: [CIDR...], required: true, timeout: 3s}`.
type ProxyProtocol struct {
	// Accept is the version believed: "v1", "v2" or "any". Absent: "any".
	Accept string
	// Trusted are the socket addresses a header is believed from; at
	// least one. From any other, a header ends the session
	// (proxy_untrusted).
	Trusted []netip.Prefix
	// Required: a trusted client that sends no header is refused.
	Required bool
	// Timeout bounds waiting for the header, since accept. Absent:
	// DefaultProxyTimeout; (0, MaxEdgeTimeout].
	Timeout time.Duration
	// Pos is where the proxy_protocol mapping is written.
	Pos Pos
}

// Limits are a scope's (the top level's or a route's) accept rate and
// per-client limits: `limits: {accept_rate: {...}, per_client: {...}}`.
type Limits struct {
	// AcceptRate bounds how fast the scope accepts clients. Nil: no bound.
	AcceptRate *Rate
	// PerClient bounds each client (address or prefix). Nil: none.
	PerClient *PerClient
	// Pos is where the limits mapping is written.
	Pos Pos
}

// Rate is a token bucket: `rate: 20/s, burst: 40` ("20/s", "1200/m",
// "10/h").
type Rate struct {
	// PerSecond is the refill rate, > 0.
	PerSecond float64
	// Burst is the bucket's size, ≥ 1. Absent: ceil(PerSecond), at least 1.
	Burst int
}

// PerClient limits each client of a scope, clients being grouped by
// address prefix: `per_client: {max_connections: 200, rate: 50/s,
// burst: 100, ipv4_prefix: 32, ipv6_prefix: 64, max_tracked: 65536}`.
type PerClient struct {
	// MaxConnections caps a client's live sessions; 0 (absent): no cap.
	MaxConnections int
	// Rate bounds a client's new connections (written flat: rate and
	// burst beside the other keys). Nil: no rate.
	Rate *Rate
	// IPv4Prefix and IPv6Prefix group clients: 1..32 (absent:
	// DefaultIPv4Prefix) and 1..128 (absent: DefaultIPv6Prefix).
	IPv4Prefix, IPv6Prefix int
	// MaxTracked bounds the clients tracked at once (the least recently
	// seen without a live session is dropped first): 1..MaxMaxTracked,
	// absent DefaultMaxTracked; more than a route's MaxConnections.
	MaxTracked int
	// Pos is where the per_client mapping is written.
	Pos Pos
}

// PassiveCheck ejects a member after consecutive failed dials, for a
// backoff that doubles with each ejection in a row.
type PassiveCheck struct {
	// Failures is how many dial failures in a row eject a member. Absent:
	// DefaultPassiveFailures. 0 disables passive checks.
	Failures int
	// Backoff is the first ejection's length. Absent: DefaultBackoff. > 0.
	Backoff time.Duration
	// MaxBackoff caps the doubling. Absent: DefaultMaxBackoff. >= Backoff.
	MaxBackoff time.Duration
}

// Filter is one filter of a route, as written: `- dump: {format: hex}`,
// or just `- dump` for its defaults.
type Filter struct {
	Name    string
	Options map[string]filter.Value
	// Pos is where the filter is listed in the file.
	Pos Pos
}

// NewOptions returns the filter's options for its Factory.
func (f *Filter) NewOptions() *filter.Options {
	return filter.NewOptions(f.Name, f.Options, f.Pos.Line, f.Pos.Col)
}

// Pos is a position in the file; both fields count from 1. For a
// configuration from a command line (FromCommandLine), Line and Col are
// zero and Place, if set, names the flag or argument that gave the value.
type Pos struct {
	Line, Col int
	Place     string
}

// ErrorAt returns an Error about the value at at, in the configuration
// from file: placed at its line and column, or at its flag.
func ErrorAt(file string, at Pos, msg string) *Error {
	if at.Place != "" {
		return &Error{Place: at.Place, Msg: msg}
	}
	return &Error{File: file, Line: max(at.Line, 1), Col: max(at.Col, 1), Msg: msg}
}

// The schema: one line per field. The order is the order of the README's
// table and of the "known fields" hint in errors. Checks across fields
// (address or srv, timeout within interval, ...) follow decodeMap in the
// field's parse function; see pool.go.
//
// req fields must be present; opt fields take the given default when
// absent. The parse function checks the value and reports what is wrong
// with it at its position.
var (
	configFields = []field[Config]{
		opt("grace_period", (*parser).duration, func(c *Config) *time.Duration { return &c.GracePeriod }, DefaultGracePeriod),
		// Required unless toxiproxy is set: see (*parser).config.
		opt("routes", (*parser).routes, func(c *Config) *[]Route { return &c.Routes }, nil),
		opt("resolver", (*parser).resolver, func(c *Config) *Resolver { return &c.Resolver }, Resolver{
			Interval: DefaultResolveInterval,
			Timeout:  DefaultResolveTimeout,
		}),
		opt("admin", (*parser).admin, func(c *Config) **Admin { return &c.Admin }, nil),
		opt("toxiproxy", (*parser).toxiproxy, func(c *Config) **Toxiproxy { return &c.Toxiproxy }, nil),
		opt("allow", (*parser).prefixes, func(c *Config) *[]netip.Prefix { return &c.Allow }, nil),
		opt("deny", (*parser).prefixes, func(c *Config) *[]netip.Prefix { return &c.Deny }, nil),
		opt("limits", (*parser).limits, func(c *Config) **Limits { return &c.Limits }, nil),
	}
	adminFields = []field[Admin]{
		req("listen", within("admin", (*parser).listenAddress), func(a *Admin) *string { return &a.Listen }),
		opt("token_file", within("admin", (*parser).tokenFile), func(a *Admin) *string { return &a.TokenFile }, ""),
	}
	toxiproxyFields = []field[Toxiproxy]{
		opt("listen", within("toxiproxy", (*parser).listenAddress), func(t *Toxiproxy) *string { return &t.Listen }, DefaultToxiproxyListen),
		opt("allow_remote", within("toxiproxy", (*parser).boolean), func(t *Toxiproxy) *bool { return &t.AllowRemote }, false),
	}
	resolverFields = []field[Resolver]{
		opt("servers", (*parser).dnsServers, func(r *Resolver) *[]string { return &r.Servers }, nil),
		opt("interval", (*parser).duration, func(r *Resolver) *time.Duration { return &r.Interval }, DefaultResolveInterval),
		opt("timeout", (*parser).duration, func(r *Resolver) *time.Duration { return &r.Timeout }, DefaultResolveTimeout),
	}
	routeFields = []field[Route]{
		req("name", (*parser).name, func(r *Route) *string { return &r.Name }),
		req("listen", (*parser).listens, func(r *Route) *[]string { return &r.Listen }),
		// What a udp route refuses, and its defaults, follow the route
		// list: see checkUDP.
		opt("protocol", oneOf(TCP, UDP), func(r *Route) *string { return &r.Protocol }, TCP),
		req("upstreams", (*parser).upstreams, func(r *Route) *[]Upstream { return &r.Upstreams }),
		opt("balance", oneOf(balances...), func(r *Route) *string { return &r.Balance }, "round_robin"),
		opt("health_check", (*parser).healthCheck, func(r *Route) **HealthCheck { return &r.HealthCheck }, nil),
		opt("passive_check", (*parser).passiveCheck, func(r *Route) *PassiveCheck { return &r.PassiveCheck }, PassiveCheck{
			Failures:   DefaultPassiveFailures,
			Backoff:    DefaultBackoff,
			MaxBackoff: DefaultMaxBackoff,
		}),
		opt("retries", intRange(0, maxRetries), func(r *Route) *int { return &r.Retries }, DefaultRetries),
		opt("connect_timeout", (*parser).duration, func(r *Route) *time.Duration { return &r.ConnectTimeout }, DefaultConnectTimeout),
		// Absent, connect_budget is worked out from connect_timeout and
		// retries once the route is decoded: see routeDefaults.
		opt("connect_budget", (*parser).duration, func(r *Route) *time.Duration { return &r.ConnectBudget }, 0),
		opt("when_all_down", oneOf(whenAllDown...), func(r *Route) *string { return &r.WhenAllDown }, "fail"),
		opt("idle_timeout", (*parser).durationOrNever, func(r *Route) *time.Duration { return &r.IdleTimeout }, DefaultIdleTimeout),
		opt("half_close_timeout", (*parser).durationOrNever, func(r *Route) *time.Duration { return &r.HalfCloseTimeout }, DefaultHalfCloseTimeout),
		opt("max_connections", (*parser).count, func(r *Route) *int { return &r.MaxConnections }, 0),
		opt("responses", (*parser).count, func(r *Route) *int { return &r.Responses }, 0),
		opt("max_flows", intRange(1, MaxMaxFlows), func(r *Route) *int { return &r.MaxFlows }, 0),
		opt("filters", (*parser).filters, func(r *Route) *[]Filter { return &r.Filters }, nil),
		// Rules across the routes that share an address follow the route
		// list: see checkShared.
		opt("match", (*parser).match, func(r *Route) **Match { return &r.Match }, nil),
		opt("peek_timeout", (*parser).edgeTimeout, func(r *Route) *time.Duration { return &r.PeekTimeout }, DefaultPeekTimeout),
		opt("proxy_protocol", (*parser).proxyProtocol, func(r *Route) **ProxyProtocol { return &r.ProxyProtocol }, nil),
		opt("send_proxy", oneOf(routeSendProxy...), func(r *Route) *string { return &r.SendProxy }, ""),
		opt("allow", (*parser).prefixes, func(r *Route) *[]netip.Prefix { return &r.Allow }, nil),
		opt("deny", (*parser).prefixes, func(r *Route) *[]netip.Prefix { return &r.Deny }, nil),
		opt("limits", (*parser).limits, func(r *Route) **Limits { return &r.Limits }, nil),
		opt("tls", (*parser).tlsServer, func(r *Route) **TLSServer { return &r.TLS }, nil),
		opt("upstream_tls", (*parser).upstreamTLS, func(r *Route) **UpstreamTLS { return &r.UpstreamTLS }, nil),
		opt("handshake_timeout", (*parser).handshakeTimeout, func(r *Route) *time.Duration { return &r.HandshakeTimeout }, DefaultHandshakeTimeout),
	}
	// address and srv are optional each, but exactly one is required:
	// checked by upstreams. An absent weight is set there too, as it
	// depends on which was given.
	upstreamFields = []field[Upstream]{
		opt("address", (*parser).upstreamAddress, func(u *Upstream) *string { return &u.Address }, ""),
		opt("srv", (*parser).srvName, func(u *Upstream) *string { return &u.SRV }, ""),
		opt("weight", intRange(1, maxWeight), func(u *Upstream) *int { return &u.Weight }, 0),
		opt("backup", (*parser).boolean, func(u *Upstream) *bool { return &u.Backup }, false),
		opt("max_connections", (*parser).count, func(u *Upstream) *int { return &u.MaxConnections }, 0),
		opt("drain", (*parser).boolean, func(u *Upstream) *bool { return &u.Drain }, false),
		opt("send_proxy", oneOf(upstreamSendProxy...), func(u *Upstream) *string { return &u.SendProxy }, ""),
		opt("upstream_tls", (*parser).upstreamTLS, func(u *Upstream) **UpstreamTLS { return &u.UpstreamTLS }, nil),
	}
	healthCheckFields = []field[HealthCheck]{
		opt("interval", (*parser).duration, func(h *HealthCheck) *time.Duration { return &h.Interval }, DefaultCheckInterval),
		opt("timeout", (*parser).duration, func(h *HealthCheck) *time.Duration { return &h.Timeout }, DefaultCheckTimeout),
		opt("rise", intRange(1, maxRiseFall), func(h *HealthCheck) *int { return &h.Rise }, DefaultRise),
		opt("fall", intRange(1, maxRiseFall), func(h *HealthCheck) *int { return &h.Fall }, DefaultFall),
		opt("port", (*parser).checkPort, func(h *HealthCheck) *uint16 { return &h.Port }, 0),
		opt("send", (*parser).bytes, func(h *HealthCheck) *string { return &h.Send }, ""),
		opt("expect", (*parser).expect, func(h *HealthCheck) *string { return &h.Expect }, ""),
		opt("expect_regexp", (*parser).expectRegexp, func(h *HealthCheck) *string { return &h.ExpectRegexp }, ""),
		opt("send_proxy", oneOf(checkSendProxy...), func(h *HealthCheck) *string { return &h.SendProxy }, "auto"),
		opt("tls", (*parser).boolean, func(h *HealthCheck) *bool { return &h.TLS }, false),
	}
	passiveCheckFields = []field[PassiveCheck]{
		opt("failures", (*parser).count, func(c *PassiveCheck) *int { return &c.Failures }, DefaultPassiveFailures),
		opt("backoff", (*parser).duration, func(c *PassiveCheck) *time.Duration { return &c.Backoff }, DefaultBackoff),
		opt("max_backoff", (*parser).duration, func(c *PassiveCheck) *time.Duration { return &c.MaxBackoff }, DefaultMaxBackoff),
	}
	// A match must name something: checked by match.
	matchFields = []field[Match]{
		opt("sni", (*parser).serverNames, func(m *Match) *[]string { return &m.SNI }, nil),
		opt("alpn", (*parser).protocols, func(m *Match) *[]string { return &m.ALPN }, nil),
		opt("source", (*parser).prefixes, func(m *Match) *[]netip.Prefix { return &m.Source }, nil),
		opt("default", (*parser).boolean, func(m *Match) *bool { return &m.Default }, false),
	}
	proxyProtocolFields = []field[ProxyProtocol]{
		opt("accept", oneOf(proxyAccepts...), func(pp *ProxyProtocol) *string { return &pp.Accept }, "any"),
		req("trusted", (*parser).trusted, func(pp *ProxyProtocol) *[]netip.Prefix { return &pp.Trusted }),
		opt("required", (*parser).boolean, func(pp *ProxyProtocol) *bool { return &pp.Required }, false),
		opt("timeout", (*parser).edgeTimeout, func(pp *ProxyProtocol) *time.Duration { return &pp.Timeout }, DefaultProxyTimeout),
	}
	// The same at the top level and in a route; one of the two is needed:
	// checked by limits.
	// certificates needs at least one pair, each both cert and key,
	// loaded together: see tlsServer and certificates.
	tlsServerFields = []field[TLSServer]{
		req("certificates", (*parser).certificates, func(t *TLSServer) *[]CertPair { return &t.Certificates }),
		opt("min_version", oneOf(tlsVersions...), func(t *TLSServer) *string { return &t.MinVersion }, DefaultTLSMinVersion),
		opt("cipher_suites", (*parser).cipherSuites, func(t *TLSServer) *[]string { return &t.CipherSuites }, nil),
		opt("alpn", (*parser).protocols, func(t *TLSServer) *[]string { return &t.ALPN }, nil),
		opt("client_auth", (*parser).clientAuth, func(t *TLSServer) **ClientAuth { return &t.ClientAuth }, nil),
	}
	certPairFields = []field[CertPair]{
		req("cert", (*parser).path, func(c *CertPair) *string { return &c.Cert }),
		req("key", (*parser).path, func(c *CertPair) *string { return &c.Key }),
	}
	clientAuthFields = []field[ClientAuth]{
		req("ca", (*parser).caFile, func(c *ClientAuth) *string { return &c.CA }),
		opt("required", (*parser).boolean, func(c *ClientAuth) *bool { return &c.Required }, false),
	}
	// cert and key come both or neither, and load together: see
	// upstreamTLS.
	upstreamTLSFields = []field[UpstreamTLS]{
		opt("server_name", (*parser).upstreamServerName, func(u *UpstreamTLS) *string { return &u.ServerName }, ""),
		opt("ca", (*parser).caFile, func(u *UpstreamTLS) *string { return &u.CA }, ""),
		opt("cert", (*parser).path, func(u *UpstreamTLS) *string { return &u.Cert }, ""),
		opt("key", (*parser).path, func(u *UpstreamTLS) *string { return &u.Key }, ""),
		opt("alpn", (*parser).protocols, func(u *UpstreamTLS) *[]string { return &u.ALPN }, nil),
		opt("insecure_skip_verify", (*parser).boolean, func(u *UpstreamTLS) *bool { return &u.InsecureSkipVerify }, false),
	}
	limitsFields = []field[Limits]{
		opt("accept_rate", (*parser).acceptRate, func(l *Limits) **Rate { return &l.AcceptRate }, nil),
		opt("per_client", (*parser).perClient, func(l *Limits) **PerClient { return &l.PerClient }, nil),
	}
	// An absent burst is one second's worth: set by acceptRate.
	rateFields = []field[Rate]{
		req("rate", (*parser).rate, func(r *Rate) *float64 { return &r.PerSecond }),
		opt("burst", intRange(1, maxBurst), func(r *Rate) *int { return &r.Burst }, 0),
	}
	// rate and burst are written flat beside the other keys (rate: 20/s,
	// burst: 40) and fill PerClient.Rate; perClient checks that burst
	// has a rate and that something is limited.
	perClientFields = []field[PerClient]{
		opt("max_connections", (*parser).count, func(c *PerClient) *int { return &c.MaxConnections }, 0),
		{key: "rate", decode: perClientRate},
		{key: "burst", decode: perClientBurst},
		opt("ipv4_prefix", intRange(1, 32), func(c *PerClient) *int { return &c.IPv4Prefix }, DefaultIPv4Prefix),
		opt("ipv6_prefix", intRange(1, 128), func(c *PerClient) *int { return &c.IPv6Prefix }, DefaultIPv6Prefix),
		opt("max_tracked", intRange(1, MaxMaxTracked), func(c *PerClient) *int { return &c.MaxTracked }, DefaultMaxTracked),
	}
)

// maxFileSize bounds what Load reads. A configuration is kilobytes; 1 MiB
// holds thousands of routes. The YAML parser allocates up to about 100
// times a file's size, so the bound keeps a wrong path (/dev/zero) or a
// runaway generated file from costing a running proxy gigabytes on reload.
const maxFileSize = 1 << 20

// Load reads and validates the configuration file at path. If the file
// cannot be read, the error names it; if its content is at fault, the
// error is Errors. Either way no Config is returned, and a caller that is
// running a configuration should keep it.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s: larger than %d MiB, not a configuration file", path, maxFileSize>>20)
	}
	return Parse(path, data)
}

// Parse validates data as a configuration file; file names it in errors
// and in Config.File. Unlike Load, it does not bound the size of data. It returns the configuration with defaults filled
// in, or nil and Errors listing every problem found, in file order. An
// empty file, or one of only comments, is the error "no routes" at 1:1, so
// every Error has a line and a column.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file}
	root := p.load(data, "no routes: the file is empty")
	var cfg Config
	if root != nil {
		p.config(root, &cfg)
	}
	if len(p.errs) > 0 {
		return nil, p.result()
	}
	cfg.File = file
	return &cfg, nil
}
