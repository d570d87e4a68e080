package admit

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// An ACL is an immutable set of allowed and denied address ranges: sorted,
// merged ranges per family, searched in O(log n) without allocating (1000
// CIDRs: at most 10 comparisons per list). A nil *ACL allows everyone and
// contains no one.
type ACL struct {
	allow, deny ranges
	// hasAllow: the allow list was given (non-empty), so an address must
	// be in it, whatever its family.
	hasAllow bool
}

// ranges are a list's prefixes as disjoint, non-adjacent, sorted closed
// intervals, one slice per family.
type ranges struct {
	v4 []span4
	v6 []span6
}

type span4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as a number (hi is the first 8 bytes).
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

type span6 struct{ lo, hi u128 }

// NewACL builds an ACL. Deny wins; a non-empty allow list must then
// contain the address. IPv4-mapped IPv6 addresses are matched as IPv4,
// and so are prefixes written in the mapped form (::ffff:10.0.0.0/104 is
// 10.0.0.0/8). Host bits of a prefix are ignored; invalid prefixes are
// skipped (config refuses both before this).
func NewACL(allow, deny []netip.Prefix) *ACL {
	return &ACL{allow: newRanges(allow), deny: newRanges(deny), hasAllow: len(allow) > 0}
}

// Allows reports whether ip may connect: not denied, and allowed when an
// allow list is set. A nil ACL allows everyone. ip is unmapped first.
func (a *ACL) Allows(ip netip.Addr) bool {
	if a == nil {
		return true
	}
	ip = ip.Unmap()
	if a.deny.contains(ip) {
		return false
	}
	return !a.hasAllow || a.allow.contains(ip)
}

// Contains reports whether ip is in the allow list (for trusted lists,
// which have no deny). A nil ACL contains no one. ip is unmapped first.
func (a *ACL) Contains(ip netip.Addr) bool {
	if a == nil {
		return false
	}
	return a.allow.contains(ip.Unmap())
}

// normalize turns a prefix in the IPv4-mapped form into IPv4, masks host
// bits and drops the zone; ok is false for an invalid prefix.
func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return p, false
	}
	addr, bits := p.Addr().WithZone(""), p.Bits()
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	return netip.PrefixFrom(addr, bits).Masked(), true
}

func newRanges(list []netip.Prefix) ranges {
	var r ranges
	for _, p := range list {
		p, ok := normalize(p)
		if !ok {
			continue
		}
		if p.Addr().Is4() {
			lo := binary.BigEndian.Uint32(p.Addr().AsSlice())
			hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
			r.v4 = append(r.v4, span4{lo, hi})
			continue
		}
		b := p.Addr().As16()
		lo := u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
		hi := lo
		switch host := 128 - p.Bits(); {
		case host >= 64:
			hi.lo = ^uint64(0)
			hi.hi |= uint64(1)<<(host-64) - 1 // host-64 == 64: shifts to 0, minus 1: all ones
		default:
			hi.lo |= uint64(1)<<host - 1
		}
		r.v6 = append(r.v6, span6{lo, hi})
	}
	slices.SortFunc(r.v4, func(a, b span4) int { return cmp.Compare(a.lo, b.lo) })
	slices.SortFunc(r.v6, func(a, b span6) int { return a.lo.cmp(b.lo) })
	// Merge overlapping and adjacent spans, so the search below finds at
	// most one candidate: the last span starting at or before the address.
	var v4 []span4
	for _, s := range r.v4 {
		if n := len(v4); n > 0 && (s.lo <= v4[n-1].hi || v4[n-1].hi != ^uint32(0) && s.lo == v4[n-1].hi+1) {
			v4[n-1].hi = max(v4[n-1].hi, s.hi)
			continue
		}
		v4 = append(v4, s)
	}
	var v6 []span6
	for _, s := range r.v6 {
		if n := len(v6); n > 0 {
			last := &v6[n-1]
			if !last.hi.less(s.lo) || last.hi != (u128{^uint64(0), ^uint64(0)}) && s.lo == last.hi.next() {
				if last.hi.less(s.hi) {
					last.hi = s.hi
				}
				continue
			}
		}
		v6 = append(v6, s)
	}
	r.v4, r.v6 = slices.Clip(v4), slices.Clip(v6)
	return r
}

func (a u128) next() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

// contains reports whether ip (already unmapped) is in one of the spans:
// a binary search for the last span whose lo ≤ ip, then one comparison.
func (r *ranges) contains(ip netip.Addr) bool {
	if ip.Is4() {
		b := ip.As4()
		x := binary.BigEndian.Uint32(b[:])
		s := r.v4
		lo, hi := 0, len(s) // find the first span with lo > x
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if s[m].lo <= x {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo > 0 && x <= s[lo-1].hi
	}
	if !ip.Is6() {
		return false
	}
	b := ip.As16()
	x := u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	s := r.v6
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !x.less(s[m].lo) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && !s[lo-1].hi.less(x)
}
