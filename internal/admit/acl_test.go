package admit

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func prefixes(t testing.TB, list ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range list {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestACLDenyWins pins the order of the lists: an address in both is
// denied, a non-empty allow list refuses what it does not hold, and an
// empty one allows everything not denied.
func TestACLDenyWins(t *testing.T) {
	acl := NewACL(prefixes(t, "10.0.0.0/8", "2001:db8::/32"), prefixes(t, "10.6.6.0/24", "2001:db8:bad::/48"))
	for _, c := range []struct {
		ip   string
		want bool
	}{
		{"10.1.2.3", true},
		{"10.6.6.6", false},  // in both: deny wins
		{"10.6.7.0", true},   // just past the deny
		{"10.6.5.255", true}, // just before it
		{"11.0.0.0", false},  // not in allow
		{"9.255.255.255", false},
		{"2001:db8::1", true},
		{"2001:db8:bad::1", false},
		{"2001:db9::", false},
		{"::1", false},
	} {
		if got := acl.Allows(ip(c.ip)); got != c.want {
			t.Errorf("Allows(%s) = %v, want %v", c.ip, got, c.want)
		}
	}
	denyOnly := NewACL(nil, prefixes(t, "192.0.2.0/24"))
	if !denyOnly.Allows(ip("198.51.100.1")) || !denyOnly.Allows(ip("::1")) || denyOnly.Allows(ip("192.0.2.9")) {
		t.Error("deny-only list: must allow everything but its own")
	}
	v4Only := NewACL(prefixes(t, "0.0.0.0/0"), nil)
	if v4Only.Allows(ip("::1")) || !v4Only.Allows(ip("203.0.113.7")) {
		t.Error("allow 0.0.0.0/0 must allow every IPv4 address and no IPv6 one")
	}
	var none *ACL
	if !none.Allows(ip("1.2.3.4")) || none.Contains(ip("1.2.3.4")) {
		t.Error("nil ACL: allows all, contains none")
	}
	if !acl.Contains(ip("10.6.6.6")) || acl.Contains(ip("11.0.0.1")) {
		t.Error("Contains reads the allow list only")
	}
}

// TestACLv4MappedMatchesV4 pins that a dual-stack listener's
// ::ffff:a.b.c.d is an IPv4 client, for address and for prefix, and that
// IPv6 lists do not catch it by accident.
func TestACLv4MappedMatchesV4(t *testing.T) {
	acl := NewACL(prefixes(t, "127.0.0.0/8"), prefixes(t, "::ffff:127.9.0.0/112"))
	if !acl.Allows(ip("::ffff:127.0.0.1")) {
		t.Error("::ffff:127.0.0.1 is 127.0.0.1: allowed by 127.0.0.0/8")
	}
	if acl.Allows(ip("127.9.1.1")) || acl.Allows(ip("::ffff:127.9.1.1")) {
		t.Error("the mapped deny ::ffff:127.9.0.0/112 is 127.9.0.0/16")
	}
	v6 := NewACL(prefixes(t, "::/0"), nil)
	if v6.Allows(ip("::ffff:10.0.0.1")) || !v6.Allows(ip("2001:db8::1")) {
		t.Error("::/0 holds the IPv6 addresses, not IPv4 clients in the mapped form")
	}
	if !NewACL(prefixes(t, "fe80::/10"), nil).Allows(ip("fe80::1%eth0")) {
		t.Error("a zone must not keep an address out of its prefix")
	}
}

// TestACLMergesAndEdges checks merged, adjacent and nested ranges at the
// edges of both families' spaces.
func TestACLMergesAndEdges(t *testing.T) {
	acl := NewACL(prefixes(t, "10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/24", "255.255.255.255/32", "0.0.0.0/32",
		"::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "2001:db8::/64", "2001:db8:0:1::/64", "2001:db8::/127"), nil)
	if n := len(acl.allow.v4); n != 3 {
		t.Errorf("%d IPv4 spans, want 3 (10.0.0.0/24 merged)", n)
	}
	if n := len(acl.allow.v6); n != 3 {
		t.Errorf("%d IPv6 spans, want 3 (the /64s merged)", n)
	}
	for s, want := range map[string]bool{
		"0.0.0.0": true, "0.0.0.1": false, "255.255.255.255": true, "255.255.255.254": false,
		"10.0.0.255": true, "10.0.1.0": false, "::": true, "::1": false,
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true, "2001:db8:0:1:ffff:ffff:ffff:ffff": true,
		"2001:db8:0:2::": false,
	} {
		if got := acl.Allows(ip(s)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", s, got, want)
		}
	}
}

// bruteAllows is the ACL's definition, one prefix at a time.
func bruteAllows(allow, deny []netip.Prefix, a netip.Addr) bool {
	in := func(list []netip.Prefix) bool {
		for _, p := range list {
			if p, ok := normalize(p); ok && p.Contains(a.Unmap().WithZone("")) {
				return true
			}
		}
		return false
	}
	return !in(deny) && (len(allow) == 0 || in(allow))
}

// probes are the addresses worth asking about for a list: each prefix's
// first and last address and their neighbours.
func probes(list []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range list {
		p, ok := normalize(p)
		if !ok {
			continue
		}
		first := p.Addr()
		b := first.AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		last, _ := netip.AddrFromSlice(b)
		out = append(out, first, first.Prev(), last, last.Next())
		if first.Is4() {
			out = append(out, netip.AddrFrom16(first.As16()))
		}
	}
	return out
}

func parseList(s string) []netip.Prefix {
	var list []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(f)); err == nil {
			list = append(list, p)
		}
	}
	return list
}

// FuzzACL parses two CIDR lists (bad entries skipped, as NewACL skips
// invalid prefixes) and checks the ACL against a prefix-by-prefix scan,
// at the edges of every prefix and at one more address from the fuzzer.
func FuzzACL(f *testing.F) {
	f.Add("10.0.0.0/8,2001:db8::/32", "10.6.6.0/24", []byte{10, 6, 6, 1})
	f.Add("", "::ffff:1.2.3.0/120,0.0.0.0/0", []byte{1, 2, 3, 4})
	f.Add("::/0,0.0.0.0/0", "ffff::/16,255.255.255.255/32", make([]byte, 16))
	f.Add("10.0.0.1/8,10.0.0.128/25,10.0.1.0/24", "", []byte{10, 0, 0, 255})
	f.Add("fe80::/10", "fe80::/64", []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, allowText, denyText string, raw []byte) {
		allow, deny := parseList(allowText), parseList(denyText)
		acl := NewACL(allow, deny)
		addrs := append(probes(allow), probes(deny)...)
		if a, ok := netip.AddrFromSlice(raw); ok {
			addrs = append(addrs, a)
		}
		for _, a := range addrs {
			if !a.IsValid() {
				continue
			}
			if got, want := acl.Allows(a), bruteAllows(allow, deny, a); got != want {
				t.Fatalf("allow %v deny %v: Allows(%v) = %v, the scan says %v", allow, deny, a, got, want)
			}
			if got, want := acl.Contains(a), len(allow) > 0 && bruteAllows(allow, nil, a); got != want {
				t.Fatalf("allow %v: Contains(%v) = %v, the scan says %v", allow, a, got, want)
			}
		}
	})
}

// FuzzACLDense builds many prefixes from raw bytes (5 or 17 bytes each:
// bits, then the address), so lists of dozens of overlapping prefixes
// are tried, as text rarely gets to.
func FuzzACLDense(f *testing.F) {
	f.Add([]byte{8, 10, 0, 0, 0, 24, 10, 6, 6, 0, 32, 10, 6, 6, 6, 0, 0, 0, 0, 0}, uint8(1))
	f.Add([]byte{64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 128, 0, 0, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, raw []byte, split uint8) {
		var list []netip.Prefix
		for len(raw) > 0 {
			bits := int(raw[0])
			raw = raw[1:]
			n := 4
			if bits&0x80 != 0 && len(raw) >= 16 {
				n, bits = 16, bits&0x7f
			}
			if len(raw) < n {
				break
			}
			a, _ := netip.AddrFromSlice(raw[:n])
			raw = raw[n:]
			list = append(list, netip.PrefixFrom(a, min(bits, a.BitLen())))
		}
		k := int(split) % (len(list) + 1)
		allow, deny := list[:k], list[k:]
		acl := NewACL(allow, deny)
		for _, a := range append(probes(allow), probes(deny)...) {
			if a.IsValid() && acl.Allows(a) != bruteAllows(allow, deny, a) {
				t.Fatalf("allow %v deny %v: Allows(%v) = %v", allow, deny, a, acl.Allows(a))
			}
		}
	})
}

// thousandDenies is what bench/run's pier-acl column configures: 1000
// /24s in 10.0.0.0/8, none holding 127.0.0.1, with 127.0.0.0/8 allowed.
func thousandDenies() (allow, deny []netip.Prefix) {
	for i := range 1000 {
		deny = append(deny, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/250, (i%250)+1)))
	}
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, deny
}

// BenchmarkACL1000 is one admission check against 1000 denied CIDRs,
// for an allowed client (the full search, as bench/run's pier-acl does).
func BenchmarkACL1000(b *testing.B) {
	allow, deny := thousandDenies()
	acl := NewACL(allow, deny)
	v4, v6 := ip("127.0.0.1"), ip("::ffff:127.0.0.1")
	b.ReportAllocs()
	b.Run("v4", func(b *testing.B) {
		for b.Loop() {
			if !acl.Allows(v4) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("mapped", func(b *testing.B) {
		for b.Loop() {
			if !acl.Allows(v6) {
				b.Fatal("denied")
			}
		}
	})
	var deny6 []netip.Prefix
	for i := range 1000 {
		var a [16]byte
		binary.BigEndian.PutUint32(a[:], 0x20010db8)
		binary.BigEndian.PutUint16(a[4:], uint16(i))
		deny6 = append(deny6, netip.PrefixFrom(netip.AddrFrom16(a), 48))
	}
	acl6 := NewACL(nil, deny6)
	c6 := ip("2001:db9::1")
	b.Run("v6", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !acl6.Allows(c6) {
				b.Fatal("denied")
			}
		}
	})
}

// TestACLAllocatesNothing pins the hot path: a check allocates nothing.
func TestACLAllocatesNothing(t *testing.T) {
	allow, deny := thousandDenies()
	acl := NewACL(allow, deny)
	a := ip("::ffff:127.0.0.1")
	if n := testing.AllocsPerRun(100, func() { acl.Allows(a) }); n != 0 {
		t.Errorf("Allows allocates %v times", n)
	}
}
