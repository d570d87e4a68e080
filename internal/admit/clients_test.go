package admit

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// v4 returns the IPv4 address 10.x.y.z for n.
func v4(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 10<<24|n&0xffffff)
	return netip.AddrFrom4(b)
}

// TestClientsMaxConnections pins MaxConns: the next connection past it is
// refused, a release frees a place, and a count refusal spends no token.
func TestClientsMaxConnections(t *testing.T) {
	c := NewClients(ClientLimits{MaxConns: 3, PerSecond: 1, Burst: 4})
	a := ip("192.0.2.1")
	var held []Ticket
	for i := range 3 {
		tk, v := c.Admit(a, t0)
		if v != Admitted {
			t.Fatalf("connection %d: %v", i+1, v)
		}
		held = append(held, tk)
	}
	for range 5 {
		if _, v := c.Admit(a, t0); v != TooManyConns {
			t.Fatalf("4th live connection: %v, want too_many_conns", v)
		}
	}
	if _, v := c.Admit(ip("192.0.2.2"), t0); v != Admitted {
		t.Errorf("another client: %v", v)
	}
	c.Release(held[0])
	if _, v := c.Admit(a, t0); v != Admitted {
		t.Fatalf("after a release: %v, want admitted (refusals spent no token: 1 left of 4)", v)
	}
	if _, v := c.Admit(a, t0); v != TooManyConns {
		t.Errorf("at the cap again: %v", v)
	}
}

// TestClientsRateBurst pins the bucket: Burst connections at once, then
// PerSecond a second; a rate refusal is not a live session.
func TestClientsRateBurst(t *testing.T) {
	c := NewClients(ClientLimits{PerSecond: 10, Burst: 4})
	a := ip("2001:db8::1")
	for i := range 4 {
		tk, v := c.Admit(a, t0)
		if v != Admitted {
			t.Fatalf("burst connection %d: %v", i+1, v)
		}
		c.Release(tk)
	}
	if _, v := c.Admit(a, t0); v != TooFast {
		t.Fatalf("past the burst: %v, want too_fast", v)
	}
	if _, v := c.Admit(a, t0.Add(99*time.Millisecond)); v != TooFast {
		t.Errorf("99 ms later (0.99 token): %v", v)
	}
	if _, v := c.Admit(a, t0.Add(100*time.Millisecond)); v != Admitted {
		t.Errorf("100 ms later (one token at 10/s): %v", v)
	}
	if _, v := c.Admit(ip("2001:db8:0:1::1"), t0); v != Admitted {
		t.Error("another /64 has its own bucket")
	}
	if top := c.Top(10); len(top) != 2 || top[0].Live != 1 || top[0].Prefix.String() != "2001:db8::/64" {
		t.Errorf("Top = %+v", top)
	}
}

// TestClientsPrefixGrouping pins the keys: IPv4 by V4Bits, IPv6 by
// V6Bits, the IPv4-mapped form as IPv4.
func TestClientsPrefixGrouping(t *testing.T) {
	c := NewClients(ClientLimits{MaxConns: 1, V4Bits: 24, V6Bits: 64})
	for _, g := range [][2]string{
		{"198.51.100.7", "::ffff:198.51.100.200"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
	} {
		if _, v := c.Admit(ip(g[0]), t0); v != Admitted {
			t.Fatalf("%s: %v", g[0], v)
		}
		if _, v := c.Admit(ip(g[1]), t0); v != TooManyConns {
			t.Errorf("%s after %s (one prefix): %v", g[1], g[0], v)
		}
	}
	for _, other := range []string{"198.51.101.7", "2001:db8:1:3::1"} {
		if _, v := c.Admit(ip(other), t0); v != Admitted {
			t.Errorf("%s is another prefix: %v", other, v)
		}
	}
	d := NewClients(ClientLimits{MaxConns: 1}) // defaults: /32 and /64
	d.Admit(ip("203.0.113.1"), t0)
	if _, v := d.Admit(ip("203.0.113.2"), t0); v != Admitted {
		t.Error("default IPv4 prefix is /32")
	}
	d.Admit(ip("2001:db8::1"), t0)
	if _, v := d.Admit(ip("2001:db8::2"), t0); v != TooManyConns {
		t.Error("default IPv6 prefix is /64")
	}
}

// TestClientsEvictsLeastRecentlySeen fills a table and checks that the
// client evicted is the least recently active idle one.
func TestClientsEvictsLeastRecentlySeen(t *testing.T) {
	c := NewClients(ClientLimits{MaxConns: 1, MaxTracked: 3})
	for n := range uint32(3) {
		tk, _ := c.Admit(v4(n), t0)
		c.Release(tk)
	}
	// Touch client 0: client 1 is now the least recently active.
	tk, _ := c.Admit(v4(0), t0)
	c.Release(tk)
	c.Admit(v4(3), t0) // evicts 1
	if st := c.Stats(); st.Tracked != 3 || st.Evicted != 1 {
		t.Fatalf("stats %+v, want 3 tracked, 1 evicted", st)
	}
	seen := map[netip.Addr]bool{}
	for _, ci := range c.Top(10) {
		seen[ci.Prefix.Addr()] = true
	}
	if seen[v4(1)] || !seen[v4(0)] || !seen[v4(2)] || !seen[v4(3)] {
		t.Errorf("tracked %v: want 0, 2, 3 (1 evicted)", seen)
	}
}

// TestClientsNeverEvictsLive fills a table with live clients: a new one is
// admitted untracked (counted), and the live ones keep their counts.
func TestClientsNeverEvictsLive(t *testing.T) {
	c := NewClients(ClientLimits{MaxConns: 1, MaxTracked: 2})
	c.Admit(v4(1), t0)
	c.Admit(v4(2), t0)
	for range 3 {
		tk, v := c.Admit(v4(3), t0)
		if v != Admitted || tk != (Ticket{}) {
			t.Fatalf("a new client in a full live table: %v %+v, want admitted untracked", v, tk)
		}
	}
	if st := c.Stats(); st.Untracked != 3 || st.Evicted != 0 || st.Tracked != 2 {
		t.Errorf("stats %+v", st)
	}
	for _, n := range []uint32{1, 2} {
		if _, v := c.Admit(v4(n), t0); v != TooManyConns {
			t.Errorf("client %d lost its live count: %v", n, v)
		}
	}
}

// TestStaleTicketIgnored releases a ticket whose entry was evicted and
// reused by another client: the new client's count must not move.
func TestStaleTicketIgnored(t *testing.T) {
	c := NewClients(ClientLimits{MaxConns: 1, MaxTracked: 1})
	old, _ := c.Admit(v4(1), t0)
	c.Release(old)
	fresh, v := c.Admit(v4(2), t0) // evicts 1, takes its slot
	if v != Admitted || fresh.slot != old.slot {
		t.Fatalf("%v %+v %+v", v, fresh, old)
	}
	c.Release(old)
	if _, v := c.Admit(v4(2), t0); v != TooManyConns {
		t.Errorf("the stale ticket freed the new client's place: %v", v)
	}
	c.Release(Ticket{}) // the zero ticket holds nothing
	var none *Clients
	if tk, v := none.Admit(v4(1), t0); v != Admitted || tk != (Ticket{}) {
		t.Error("nil Clients admits, untracked")
	}
	none.Release(fresh)
}

// TestClientsSetKeepsState pins reloads: new limits keep live counts and
// tokens; new prefix lengths start a new table whose tickets the old
// table's do not disturb.
func TestClientsSetKeepsState(t *testing.T) {
	c := NewClients(ClientLimits{MaxConns: 2, PerSecond: 1, Burst: 2})
	a := ip("192.0.2.9")
	tk, _ := c.Admit(a, t0)
	c.Admit(a, t0)
	if !c.Set(ClientLimits{MaxConns: 3, PerSecond: 1, Burst: 3}) {
		t.Fatal("same prefixes and size: the table must be kept")
	}
	// 2 live, bucket empty (2 of 2 spent): the count allows a third, the
	// rate does not until a second has passed.
	if _, v := c.Admit(a, t0); v != TooFast {
		t.Errorf("tokens were not kept over Set: %v", v)
	}
	if _, v := c.Admit(a, t0.Add(time.Second)); v != Admitted {
		t.Errorf("third connection under MaxConns 3: %v", v)
	}
	if c.Set(ClientLimits{MaxConns: 3, PerSecond: 1, Burst: 3, V4Bits: 24}) {
		t.Fatal("new prefix length: the table must start anew")
	}
	if st := c.Stats(); st.Tracked != 0 {
		t.Errorf("%d tracked after a new table", st.Tracked)
	}
	n, _ := c.Admit(a, t0)
	c.Release(tk) // old table's ticket
	if top := c.Top(1); len(top) != 1 || top[0].Live != 1 || top[0].Prefix.String() != "192.0.2.0/24" {
		t.Errorf("after an old ticket's release: %+v", top)
	}
	c.Release(n)
	if top := c.Top(1); top[0].Live != 0 {
		t.Errorf("live %d after release", top[0].Live)
	}
}

// TestClientsEvictedLimiterStartsFull pins the reuse of an evicted slot's
// limiter: the client that takes the slot gets a full bucket.
func TestClientsEvictedLimiterStartsFull(t *testing.T) {
	c := NewClients(ClientLimits{PerSecond: 0.001, Burst: 3, MaxTracked: 1})
	for range 3 { // client 1 spends its bucket and goes idle
		tk, _ := c.Admit(v4(1), t0)
		c.Release(tk)
	}
	for i := range 3 { // client 2 evicts it and takes its slot and limiter
		if _, v := c.Admit(v4(2), t0); v != Admitted {
			t.Fatalf("connection %d of a new client: %v", i+1, v)
		}
	}
}

// TestClientsConcurrent admits and releases from several goroutines (as
// relay loops do) under -race: no client ever holds more than MaxConns,
// nothing is untracked while the table has idle clients to evict, and
// every count returns to zero.
func TestClientsConcurrent(t *testing.T) {
	const maxConns, workers, clients = 3, 4, 500
	c := NewClients(ClientLimits{MaxConns: maxConns, PerSecond: 1e6, Burst: 1e6, MaxTracked: 256})
	var live [clients]atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			type held struct {
				tk Ticket
				n  int
			}
			var mine []held
			for i := range 20000 {
				n := (i*7 + w*131) % clients
				if i%3 == 0 {
					n %= 20 // a few hot clients, to hit MaxConns
				}
				tk, v := c.Admit(v4(uint32(n)), time.Now())
				if v == Admitted {
					if k := live[n].Add(1); k > maxConns {
						t.Errorf("client %d holds %d > %d", n, k, maxConns)
						return
					}
					mine = append(mine, held{tk, n})
				}
				if len(mine) > 8 || (len(mine) > 0 && i%2 == 0) {
					h := mine[0]
					mine = mine[1:]
					live[h.n].Add(-1)
					c.Release(h.tk)
				}
				if i%1000 == 0 {
					c.Stats()
				}
			}
			for _, h := range mine {
				live[h.n].Add(-1)
				c.Release(h.tk)
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if st.Untracked != 0 || st.Evicted == 0 || st.Tracked > 256 {
		t.Errorf("stats %+v: want 0 untracked, some evicted, ≤ 256 tracked", st)
	}
	for _, ci := range c.Top(1000) {
		if ci.Live != 0 {
			t.Errorf("%v: %d live after every release", ci.Prefix, ci.Live)
		}
	}
}

// TestTrackedClientCost measures what one tracked client costs (slab
// entry, map slot, rate limiter) over 100k distinct clients in a
// 65536-client table at its size bound, and fails above 256 bytes.
func TestTrackedClientCost(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~16 MB")
	}
	const n = 65536
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	c := NewClients(ClientLimits{MaxConns: 100, PerSecond: 20, Burst: 40, MaxTracked: n})
	for i := range uint32(100_000) {
		tk, _ := c.Admit(v4(i), t0)
		c.Release(tk)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	st := c.Stats()
	per := float64(int64(ms.HeapAlloc)-int64(before)) / float64(st.Tracked)
	runtime.KeepAlive(c)
	t.Logf("%d clients tracked (%d evicted): %.0f bytes each (with a rate limiter)", st.Tracked, st.Evicted, per)
	if st.Tracked > n || st.Tracked < n*9/10 {
		t.Errorf("%d tracked of a %d bound", st.Tracked, n)
	}
	if per > 256 {
		t.Errorf("%.0f bytes per tracked client, want ≤ 256", per)
	}
}

// TestClientsAdmitAllocatesNothing pins the hot path: admitting and
// releasing a known client allocates nothing.
func TestClientsAdmitAllocatesNothing(t *testing.T) {
	c := NewClients(ClientLimits{MaxConns: 10, PerSecond: 1e9, Burst: 1e9})
	a := ip("::ffff:192.0.2.1")
	now := time.Now()
	c.Admit(a, now)
	if n := testing.AllocsPerRun(1000, func() {
		tk, _ := c.Admit(a, now)
		c.Release(tk)
	}); n != 0 {
		t.Errorf("Admit+Release of a known client allocates %v times", n)
	}
}

// BenchmarkClientsAdmit is Admit+Release of a known client, with a rate
// and a count, one goroutine and in parallel (distinct clients, as loops
// see them).
func BenchmarkClientsAdmit(b *testing.B) {
	c := NewClients(ClientLimits{MaxConns: 1000, PerSecond: 1e9, Burst: 1e9})
	now := time.Now()
	b.Run("one", func(b *testing.B) {
		a := ip("192.0.2.1")
		b.ReportAllocs()
		for b.Loop() {
			tk, _ := c.Admit(a, now)
			c.Release(tk)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			base := next.Add(1) << 12
			i := uint32(0)
			for pb.Next() {
				tk, _ := c.Admit(v4(base+i%4096), now)
				c.Release(tk)
				i++
			}
		})
	})
	b.Run("new-clients", func(b *testing.B) {
		d := NewClients(ClientLimits{MaxConns: 1000, PerSecond: 10, Burst: 10, MaxTracked: 4096})
		i := uint32(0)
		b.ReportAllocs()
		for b.Loop() {
			tk, _ := d.Admit(v4(i), now)
			d.Release(tk)
			i++
		}
	})
}
