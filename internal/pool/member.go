package pool

import (
	"crypto/tls"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pierproxy/pier/internal/health"
)

// A Member is one address sessions may be sent to: a configured address,
// or one of the addresses a configured name expands to.
type Member struct {
	// Addr is where the member is dialed.
	Addr netip.AddrPort
	// Name is what the configuration called it: host:port, or the SRV
	// name it came from, for logs.
	Name string
	// Weight is the member's share of sessions, 1..MaxWeight: the
	// steering's, or FileWeight.
	Weight int
	// FileWeight is the configuration's weight (or the SRV record's).
	FileWeight int
	// Tier orders members for failover: a session goes to the lowest
	// tier with a member that can take it. Primaries are tier 0 (or an SRV
	// priority's rank); backups come after every primary.
	Tier int
	// Backup: configured as a backup.
	Backup bool
	// MaxConns caps the member's live sessions; 0 means no cap.
	MaxConns int
	// Drain: no new sessions, still health checked. Disabled: no new
	// sessions, not health checked. Each is the configuration's or the
	// steering's (see Steering).
	Drain, Disabled bool
	// SendProxy is the PROXY version written to the member before any
	// client byte (peek.V1, peek.V2; 0 none): its Spec's, or the route's.
	SendProxy uint8
	// TLS is how TLS is originated to the member: its Spec's client's
	// configuration, or the route's (Config.UpstreamTLS), for its
	// configured host:port (an SRV member: its target's). Nil: plain TCP.
	TLS *tls.Config

	h   *Health
	v   *verdict
	key uint64 // the member's hash, for the hash balancer
}

// Active returns the member's live sessions.
func (m *Member) Active() int64 { return m.h.active.Load() }

// Health is what a route knows of one address from its sessions: how
// many are live, and the passive check's ejection. An address listed twice
// (by two names) shares one Health; a reload keeps it for addresses that
// stay, whatever else changed, so live sessions keep counting.
type Health struct {
	active   atomic.Int64
	ejectEnd atomic.Int64 // unix nanos: ejected by the passive check until then

	// Events, for the metrics: failed dials (whether the passive check
	// is on or not) and active check results. Kept here rather than in
	// the verdict, which a changed check replaces, so that they only
	// ever grow while the address stays.
	connectFailures, checksPassed, checksFailed atomic.Uint64

	mu      sync.Mutex
	fails   int           // consecutive dial failures
	backoff time.Duration // the next ejection's length
	ejected bool          // an ejection was logged and has not been lifted
}

// A verdict is the active check's word on one address, under one check
// configuration: a reload keeps it only if the check stays the same, and
// a pool's checker writes only its own verdicts, so a reload that fails
// or changes the check leaves the running pool's verdicts alone.
type verdict struct {
	down atomic.Bool

	mu    sync.Mutex
	state *health.State // rise and fall
	why   string        // the last failure, for the log when it comes up
	// lastErr is the last result's error text, "" if it passed: what the
	// admin API shows, up or down.
	lastErr string
}

// usable reports whether m may take a new session at now (unix nanos):
// not draining or disabled, not down, not ejected, below its cap. With
// anyHealth, the health verdicts are ignored (when_all_down: try_all).
func (m *Member) usable(now int64, anyHealth bool) bool {
	if m.Drain || m.Disabled {
		return false
	}
	if m.MaxConns > 0 && m.h.active.Load() >= int64(m.MaxConns) {
		return false
	}
	if anyHealth {
		return true
	}
	return !m.v.down.Load() && now >= m.h.ejectEnd.Load()
}
