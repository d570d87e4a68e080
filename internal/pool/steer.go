package pool

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// Steering overrides a configured member's drain, disable and weight at
// run time (the admin API's member steering). A nil field leaves the
// configuration's value.
//
// Drain and Disabled both keep new sessions off the member; live sessions
// are never ended by steering. A draining member is still health checked
// (HAProxy's drain); a disabled one is not (HAProxy's maint): its probes
// stop, and its last verdict is kept for when it is enabled again.
type Steering struct {
	Drain, Disabled *bool
	// Weight replaces the member's share, 1..MaxWeight; to stop new
	// sessions, drain it instead.
	Weight *int
}

// MaxWeight is the largest weight, as in the configuration.
const MaxWeight = 1000

// IsZero reports whether s overrides nothing.
func (s Steering) IsZero() bool { return s.Drain == nil && s.Disabled == nil && s.Weight == nil }

// With returns s with the fields change sets replaced by change's; its nil
// fields leave s's. It is for a caller that takes changes (a PATCH) and
// keeps the whole override, since Steer replaces the whole override.
func (s Steering) With(change Steering) Steering {
	out := s.clone()
	c := change.clone()
	if c.Drain != nil {
		out.Drain = c.Drain
	}
	if c.Disabled != nil {
		out.Disabled = c.Disabled
	}
	if c.Weight != nil {
		out.Weight = c.Weight
	}
	return out
}

// clone copies s's values, so that the caller's pointers are not shared
// with the pool.
func (s Steering) clone() Steering {
	var c Steering
	if s.Drain != nil {
		c.Drain = new(*s.Drain)
	}
	if s.Disabled != nil {
		c.Disabled = new(*s.Disabled)
	}
	if s.Weight != nil {
		c.Weight = new(*s.Weight)
	}
	return c
}

func (s Steering) check() error {
	if s.Weight == nil {
		return nil
	}
	switch w := *s.Weight; {
	case w == 0:
		return errors.New("pool: weight 0: a member's weight is 1..1000; to stop new sessions, drain it")
	case w < 1 || w > MaxWeight:
		return fmt.Errorf("pool: weight %d: a member's weight is 1..1000", w)
	}
	return nil
}

// ErrNoMember is returned by Steer for a name the pool's configuration
// does not list: the caller named a member that is not (or no longer)
// there.
var ErrNoMember = errors.New("pool: no such member")

// Steer sets the run-time override of the configured member named member
// (its Spec.Name(): host:port, or the SRV name) to s, replacing the one it
// had: a nil field clears that override. It applies to every address the
// name expands to, now and after the name's lookups change them. New
// sessions follow at once; live ones are left alone. The smooth round
// robin starts its turns afresh, as after any change of the members.
//
// The override lasts as long as the pool: a pool made by a reload gets
// the ones it keeps through Config.Steering.
func (p *Pool) Steer(member string, s Steering) error {
	if err := s.check(); err != nil {
		return err
	}
	p.setMu.Lock()
	defer p.setMu.Unlock()
	p.mu.Lock()
	found := false
	for i := range p.cfg.Members {
		if p.cfg.Members[i].Name() == member {
			found = true
			break
		}
	}
	if !found {
		p.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoMember, member)
	}
	if s.IsZero() {
		delete(p.steering, member)
	} else {
		p.steering[member] = s.clone()
	}
	addrs := p.rebuild()
	k := p.checker
	p.mu.Unlock()
	if k != nil {
		// Outside mu: Set waits for reports under way, which take it.
		k.Set(addrs)
	}
	return nil
}

// Steering returns the pool's run-time overrides, by member name.
func (p *Pool) Steering() map[string]Steering {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Steering, len(p.steering))
	for name, s := range p.steering {
		out[name] = s.clone()
	}
	return out
}

// steeringFrom copies a configuration's overrides, checking them.
func steeringFrom(in map[string]Steering) (map[string]Steering, error) {
	out := make(map[string]Steering, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		s := in[name]
		if err := s.check(); err != nil {
			return nil, fmt.Errorf("member %s: %w", name, err)
		}
		if !s.IsZero() {
			out[name] = s.clone()
		}
	}
	return out, nil
}

// MemberStatus is one member address as the pool sees it now.
type MemberStatus struct {
	// Name is the configured name the address comes from; Addr, the
	// address.
	Name string
	Addr netip.AddrPort
	// Tier orders failover (see Member.Tier); Backup says the member is
	// configured as a backup.
	Tier   int
	Backup bool
	// Weight is the share in force; FileWeight, the configuration's
	// (or the SRV record's).
	Weight, FileWeight int
	// Drain and Disabled are in force (the configuration's, or the
	// steering's). Down: the active check found it down. Ejected: the
	// passive check ejected it, until EjectedUntil.
	Drain, Disabled, Down, Ejected bool
	EjectedUntil                   time.Time
	// LastCheckError is the last active check's error: "" when it passed,
	// or none has run under the check in force.
	LastCheckError string
	// Active is the route's live sessions on the address, those that
	// began on the pools before a reload included.
	Active int64
	// ConnectFailures counts failed dials to the address, pier's own
	// failures not included, whether the passive check is on or not;
	// ChecksPassed and ChecksFailed count active check results. They
	// count from when the address joined the route and survive reloads.
	ConnectFailures, ChecksPassed, ChecksFailed uint64
	// Steering is the run-time override of the member's name; the zero
	// value if none.
	Steering Steering
}

// Status returns the pool's members now, in pick order (tier, then
// address). An address two names list appears once for each.
func (p *Pool) Status() []MemberStatus {
	p.mu.Lock()
	steering := make(map[string]Steering, len(p.steering))
	for name, s := range p.steering {
		steering[name] = s.clone()
	}
	p.mu.Unlock()
	now := time.Now().UnixNano()
	members := p.set.Load().members
	out := make([]MemberStatus, 0, len(members))
	for _, m := range members {
		st := MemberStatus{
			Name: m.Name, Addr: m.Addr, Tier: m.Tier, Backup: m.Backup,
			Weight: m.Weight, FileWeight: m.FileWeight,
			Drain: m.Drain, Disabled: m.Disabled, Down: m.v.down.Load(),
			Active:          m.h.active.Load(),
			ConnectFailures: m.h.connectFailures.Load(),
			ChecksPassed:    m.h.checksPassed.Load(),
			ChecksFailed:    m.h.checksFailed.Load(),
			Steering:        steering[m.Name].clone(),
		}
		if end := m.h.ejectEnd.Load(); now < end {
			st.Ejected, st.EjectedUntil = true, time.Unix(0, end)
		}
		m.v.mu.Lock()
		st.LastCheckError = m.v.lastErr
		m.v.mu.Unlock()
		out = append(out, st)
	}
	return out
}
