// Package session holds the record of one proxied connection: who connected,
// where it went, how many bytes moved each way, how long it lasted and why it
// ended. Every stage of the data path may fill in part of a Record; the proxy
// package hands the finished Record to the access log and the totals.
//
// session imports nothing of pier's, so every stage can depend on it.
package session

import (
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Reason says why a session ended. The zero value, NotEnded, is no end at
// all: a session that has not ended yet, or a part of one (a filter chain
// swapped out, a filter's wake-up) that stops without ending it.
type Reason uint8

// The reasons a session ends, in the words the access log uses.
const (
	NotEnded           Reason = iota // no end: the session goes on
	Done                             // both sides sent FIN and every byte was delivered
	ClientReset                      // the client reset the connection or a write to it failed
	UpstreamReset                    // the upstream reset the connection or a write to it failed
	IdleTimeout                      // no byte moved either way for the route's idle timeout
	HalfCloseTimeout                 // one side finished and the other did not within the half-close timeout
	ConnectTimeout                   // the upstream did not accept within the connect timeout
	ConnectFailed                    // the upstream refused or was unreachable
	LocalError                       // pier itself ran out of something (ports, descriptors, memory)
	Limit                            // admission refused the client: its route was at max_connections
	Shutdown                         // pier stopped and the grace period ran out
	FilterReset                      // a filter reset the session (the reset fault)
	FilterClose                      // a filter closed the session (the limit and timeout faults)
	FilterError                      // a filter failed or panicked
	NoUpstream                       // no member of the pool could take the session
	Admin                            // an operator ended it through the admin API
	Denied                           // an allow/deny list refused the client's address
	NoRoute                          // no route on the shared address matched the client (and none is the default)
	ProxyUntrusted                   // a PROXY header came from a socket address outside the trusted list
	ProxyError                       // a PROXY header was malformed, of a version not accepted, required and missing, or late
	ClientLimit                      // the client (its address or prefix) was at its max_connections
	RateLimit                        // an accept rate (global, route or the client's) was spent
	TLSHandshakeFailed               // a TLS handshake (the client's, terminated, or the upstream's, originated) failed or timed out
	Responses                        // a UDP flow got the replies its route waits for (responses: N) and ended
	Unreachable                      // a UDP flow's member answered with ICMP port (or host) unreachable

	// NumReasons is one past the last reason, for arrays indexed by Reason.
	NumReasons = iota
)

var reasonNames = [...]string{
	NotEnded:           "not_ended",
	Done:               "done",
	ClientReset:        "client_reset",
	UpstreamReset:      "upstream_reset",
	IdleTimeout:        "idle_timeout",
	HalfCloseTimeout:   "half_close_timeout",
	ConnectTimeout:     "connect_timeout",
	ConnectFailed:      "connect_failed",
	LocalError:         "local_error",
	Limit:              "limit",
	Shutdown:           "shutdown",
	FilterReset:        "filter_reset",
	FilterClose:        "filter_close",
	FilterError:        "filter_error",
	NoUpstream:         "no_upstream",
	Admin:              "admin",
	Denied:             "denied",
	NoRoute:            "no_route",
	ProxyUntrusted:     "proxy_untrusted",
	ProxyError:         "proxy_error",
	ClientLimit:        "client_limit",
	RateLimit:          "rate_limit",
	TLSHandshakeFailed: "tls_handshake_failed",
	Responses:          "responses",
	Unreachable:        "upstream_unreachable",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// State says what a live session is doing, for the admin API and the
// metrics: it is not kept in the Record, which describes a session that
// has ended.
type State uint8

// The states of a live session, in the words the admin API and the
// metrics use.
const (
	Connecting         State = iota // dialing its upstream
	Open                            // both sides open
	HalfClosedClient                // the client finished sending (its FIN), the upstream still sends
	HalfClosedUpstream              // the upstream finished sending, the client still sends

	// NumStates is one past the last state, for arrays indexed by State.
	NumStates = iota
)

// Peeking is a session still reading its first bytes (a PROXY header, a
// TLS ClientHello) before its route is chosen. It sits past NumStates on
// purpose: no route has such a session yet, so the per-route counts
// indexed by State never hold it; only the admin list shows it.
const Peeking State = NumStates

var stateNames = [...]string{
	Connecting:         "connecting",
	Open:               "open",
	HalfClosedClient:   "half_closed_client",
	HalfClosedUpstream: "half_closed_upstream",
	Peeking:            "peeking",
}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Record is what pier knows about one session. The proxy package creates it
// when a client is accepted; the relay fills in the rest and finishes it.
type Record struct {
	ID       uint64         // unique within the process, in accept order
	Route    string         // name of the route that took the client
	Client   netip.AddrPort // the client's address as seen by pier
	Listener netip.AddrPort // the local address the client connected to
	Upstream string         // the member picked, as configured (host:port)
	Dialed   netip.AddrPort // the address actually dialed, once known
	Tries    int            // how many members were dialed
	Start    time.Time      // when the client was accepted

	ToUpstream int64         // bytes delivered to the upstream
	ToClient   int64         // bytes delivered to the client
	Duration   time.Duration // from accept to close
	Reason     Reason        // why it ended
	Err        error         // the error behind Reason, if any

	// Edge is what the listener's edge learned before the route was
	// chosen: a PROXY header, a ClientHello, the match, a limit. Nil for
	// a session on a plain listener (8 bytes of idle cost).
	Edge *Edge
	// TLS is what the session's TLS handshakes settled: the client's on
	// a route that terminates TLS, the upstream's on one that originates
	// it. Nil when pier did neither.
	TLS *TLS
	// UDP is a UDP flow's datagram counts; nil for a TCP session. A
	// flow's ToUpstream and ToClient are its datagrams' payload bytes.
	UDP *UDP
}

// UDP is what a UDP flow moved, in datagrams.
type UDP struct {
	ToUpstream, ToClient int64 // datagrams delivered each way
	// Dropped counts datagrams not delivered: larger than the path
	// allows (EMSGSIZE), a full socket or filter queue, a filter's loss.
	Dropped int64
}

// TLS is a session's TLS, as pier terminated or originated it.
type TLS struct {
	// Client is the handshake with the client (pier the server); nil when
	// the route does not terminate TLS.
	Client *TLSHandshake
	// Upstream is the handshake with the member (pier the client); nil
	// when the route does not originate TLS.
	Upstream *TLSHandshake
	// Truncated names the side whose stream ended with a TCP FIN and no
	// close_notify: "client" or "upstream"; "" none. The FIN is passed
	// on all the same.
	Truncated string
}

// TLSHandshake is what one completed handshake settled.
type TLSHandshake struct {
	Version string // "TLS 1.3"
	Cipher  string // the IANA name of the cipher suite
	// ServerName is the SNI: the client's (verified by the certificate
	// chosen for it) or the one pier sent.
	ServerName string
	ALPN       string // the protocol negotiated; "" none
	// PeerSubject is the subject of the peer's verified certificate: the
	// client's certificate on a route that asks for one, the member's.
	PeerSubject string
	Resumed     bool // the handshake resumed an earlier session
}

// Edge is what pier learned about a client at the edge, before dialing.
// Every field is optional: zero means unknown or not applicable.
type Edge struct {
	// Peer is the socket's address when a PROXY header replaced Client.
	Peer netip.AddrPort
	// Proxy is the header received: "v1", "v2" or "local" (v2 LOCAL or
	// v1 UNKNOWN: the real endpoints stand); "" none.
	Proxy string
	// ProxyVersion is the received header's version, 1 or 2, a local
	// one's included; 0 none. For filters (filter.ProxyInfo), not logged.
	ProxyVersion uint8
	// SNI and ALPN are the TLS ClientHello's server name and protocols.
	SNI  string
	ALPN []string
	// Matched is the match key that chose the route: "sni:*.example.com",
	// "alpn:h2", "source:10.0.0.0/8" or "default".
	Matched string
	// TLVs of a v2 header: PP2_TYPE_AUTHORITY, UNIQUE_ID (as received,
	// printable or hex), ALPN, and the SSL TLV's version and client CN.
	Authority, UniqueID, ProxyALPN, SSLVersion, SSLCN string
	// SSL reports that a v2 header carried the SSL TLV; SSLCipher and
	// SSLVerified are its cipher and whether the client's certificate
	// was verified. For filters (filter.SSLInfo), not logged.
	SSL         bool
	SSLCipher   string
	SSLVerified bool
	// Limit names the limit that refused the client: "global_rate",
	// "route_rate", "client_connections", "client_rate", the last two
	// prefixed "global_" for the top-level table.
	Limit string
	// Suppressed counts refusal log lines skipped (rate-limited) since
	// the last one written; this line carries the count.
	Suppressed uint64
}

// maxALPNAttr bounds the alpn attribute: a client may offer many
// protocols, the log line should not grow with them.
const maxALPNAttr = 128

// Attrs renders the record as the attributes of one access log line.
func (r *Record) Attrs() []slog.Attr {
	attrs := []slog.Attr{
		slog.Uint64("id", r.ID),
		slog.String("route", r.Route),
		slog.String("client", r.Client.String()),
		slog.String("upstream", r.Upstream),
	}
	if r.Dialed.IsValid() {
		attrs = append(attrs, slog.String("dialed", r.Dialed.String()))
	}
	if r.Tries > 1 {
		attrs = append(attrs, slog.Int("tries", r.Tries))
	}
	attrs = append(attrs,
		slog.Int64("bytes_to_upstream", r.ToUpstream),
		slog.Int64("bytes_to_client", r.ToClient),
		slog.Duration("duration", r.Duration),
		slog.String("reason", r.Reason.String()),
	)
	if r.Err != nil {
		attrs = append(attrs, slog.String("error", r.Err.Error()))
	}
	if e := r.Edge; e != nil {
		attrs = e.appendAttrs(attrs)
	}
	if t := r.TLS; t != nil {
		attrs = t.appendAttrs(attrs)
	}
	if u := r.UDP; u != nil {
		attrs = append(attrs, slog.String("protocol", "udp"),
			slog.Int64("datagrams_to_upstream", u.ToUpstream), slog.Int64("datagrams_to_client", u.ToClient))
		if u.Dropped > 0 {
			attrs = append(attrs, slog.Int64("datagrams_dropped", u.Dropped))
		}
	}
	return attrs
}

// appendAttrs appends the TLS attributes that are set: tls_* for the
// client's handshake, upstream_tls_* for the member's.
func (t *TLS) appendAttrs(attrs []slog.Attr) []slog.Attr {
	side := func(prefix string, h *TLSHandshake) {
		if h == nil {
			return
		}
		attrs = append(attrs, slog.String(prefix+"version", h.Version), slog.String(prefix+"cipher", h.Cipher))
		if h.ServerName != "" {
			attrs = append(attrs, slog.String(prefix+"sni", h.ServerName))
		}
		if h.ALPN != "" {
			attrs = append(attrs, slog.String(prefix+"alpn", h.ALPN))
		}
		if h.PeerSubject != "" {
			attrs = append(attrs, slog.String(prefix+"peer", h.PeerSubject))
		}
		if h.Resumed {
			attrs = append(attrs, slog.Bool(prefix+"resumed", true))
		}
	}
	side("tls_", t.Client)
	side("upstream_tls_", t.Upstream)
	if t.Truncated != "" {
		attrs = append(attrs, slog.String("tls_truncated", t.Truncated))
	}
	return attrs
}

// appendAttrs appends the edge's attributes that are set, in a fixed
// order.
func (e *Edge) appendAttrs(attrs []slog.Attr) []slog.Attr {
	str := func(key, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(key, v))
		}
	}
	if e.Peer.IsValid() {
		attrs = append(attrs, slog.String("peer", e.Peer.String()))
	}
	str("proxy", e.Proxy)
	str("sni", e.SNI)
	if len(e.ALPN) > 0 {
		alpn := strings.Join(e.ALPN, ",")
		if len(alpn) > maxALPNAttr {
			alpn = alpn[:maxALPNAttr]
		}
		attrs = append(attrs, slog.String("alpn", alpn))
	}
	str("match", e.Matched)
	str("tlv_authority", e.Authority)
	str("tlv_unique_id", e.UniqueID)
	str("tlv_alpn", e.ProxyALPN)
	str("tlv_ssl_version", e.SSLVersion)
	str("tlv_ssl_cn", e.SSLCN)
	str("limit", e.Limit)
	if e.Suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", e.Suppressed))
	}
	return attrs
}
