package admit

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"
	"golang.org/x/time/rate"
)

// ClientLimits are the per-client limits of one scope (pier's top level or
// one route).
type ClientLimits struct {
	MaxConns   int     // live sessions per client; 0: no cap
	PerSecond  float64 // new connections a second per client; 0: no rate
	Burst      int     // the rate's bucket size (≥ 1 when PerSecond > 0; less is taken as 1)
	V4Bits     int     // IPv4 clients are grouped by this prefix length (1..32); 0: 32
	V6Bits     int     // IPv6 clients by this one (1..128); 0: 64
	MaxTracked int     // most clients tracked at once (≥ 1); 0: 65536
}

// The defaults of ClientLimits' zero fields (config's defaults too).
const (
	defaultV4Bits     = 32
	defaultV6Bits     = 64
	defaultMaxTracked = 65536
)

// resolved returns l with its zero fields set to the defaults and its
// prefix lengths within their family's range.
func (l ClientLimits) resolved() ClientLimits {
	if l.V4Bits <= 0 {
		l.V4Bits = defaultV4Bits
	}
	if l.V6Bits <= 0 {
		l.V6Bits = defaultV6Bits
	}
	l.V4Bits, l.V6Bits = min(l.V4Bits, 32), min(l.V6Bits, 128)
	if l.MaxTracked <= 0 {
		l.MaxTracked = defaultMaxTracked
	}
	l.Burst = max(l.Burst, 1)
	return l
}

// Verdict is what Admit decided.
type Verdict uint8

// The verdicts of Admit.
const (
	Admitted     Verdict = iota // take the client (and Release its Ticket at the end)
	TooManyConns                // the client is at MaxConns: client_limit
	TooFast                     // the client's rate is spent: rate_limit
)

var verdictNames = [...]string{
	Admitted:     "admitted",
	TooManyConns: "too_many_conns",
	TooFast:      "too_fast",
}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}

// A Ticket is a client's place, given back by Release when its session
// ends. The zero Ticket holds nothing (an untracked client, a nil table).
type Ticket struct {
	shard uint8
	slot  int32
	gen   uint32 // the entry's generation when admitted; never 0 in a real ticket
}

// Clients tracks clients (grouped by prefix) of one scope: their live
// sessions and their connection rate. Its size is bounded by MaxTracked:
// the least recently active client with no live session (active: admitted,
// refused or its last session ended) is evicted to make room; a client with
// live sessions is never evicted, and when every tracked client has some,
// a new client is admitted untracked (and counted). A nil *Clients admits
// everyone and tracks no one. Safe for concurrent use: the table is split
// into up to 64 shards, each under its own lock, held for one map lookup
// and a few field updates, so loops contend only when two admit clients of
// one shard at the same instant. Nothing blocks beyond that lock.
type Clients struct {
	cfg atomic.Pointer[clientConfig]
	tab atomic.Pointer[clientTable]
	// gens numbers entries as they are filled, across the tables Set
	// starts, so a Ticket of an evicted entry or of a replaced table
	// never matches the entry now in its slot.
	gens      atomic.Uint32
	evicted   atomic.Uint64
	untracked atomic.Uint64
}

// clientConfig is the limits in force and their version: an entry whose
// limiter was tuned under an older version retunes it when next seen.
type clientConfig struct {
	ClientLimits
	version uint32
}

// clientTable is the tracked clients under one choice of prefix lengths
// and size.
type clientTable struct {
	v4Bits, v6Bits int
	shardShift     uint // 64 - log2(len(shards)); 64 for one shard
	seed           uint64
	shards         []clientShard
}

// minPerShard keeps small tables in few shards, so that their bound and
// their eviction order stay close to exact (a shard evicts only among its
// own clients; one shard is a true least-recently-active table).
const minPerShard = 256

// maxShards bounds the shards (a Ticket holds the index in a byte).
const maxShards = 64

type clientShard struct {
	mu    sync.Mutex
	index map[[16]byte]int32 // masked address (IPv4 in the mapped form) → slab slot
	slab  []clientEntry
	// head and tail are the idle list: the entries with no live session,
	// most recently active first. Eviction takes the tail. -1: empty.
	head, tail int32
	max        int32 // most entries this shard holds
	_          cpu.CacheLinePad
}

// clientEntry is one tracked client: 64 bytes in the slab, plus its
// limiter (80 bytes, only when a rate is set) and its map slot.
type clientEntry struct {
	key      [16]byte
	lim      *rate.Limiter // kept with the slot when the entry is reused
	lastSeen int64         // Unix ns of its last Admit
	live     int32
	gen      uint32
	prev     int32 // idle list links; -1: none
	next     int32
	version  uint32 // the clientConfig version lim is tuned to
}

// NewClients returns an empty table under l.
func NewClients(l ClientLimits) *Clients {
	c := &Clients{}
	l = l.resolved()
	c.cfg.Store(&clientConfig{ClientLimits: l, version: 1})
	c.tab.Store(newClientTable(l))
	return c
}

func newClientTable(l ClientLimits) *clientTable {
	n := 1
	for n < maxShards && l.MaxTracked/(n*2) >= minPerShard {
		n *= 2
	}
	t := &clientTable{v4Bits: l.V4Bits, v6Bits: l.V6Bits, seed: rand.Uint64(), shards: make([]clientShard, n)}
	t.shardShift = 64
	for m := n; m > 1; m /= 2 {
		t.shardShift--
	}
	per := int32((l.MaxTracked + n - 1) / n)
	for i := range t.shards {
		s := &t.shards[i]
		s.index = make(map[[16]byte]int32)
		s.head, s.tail, s.max = -1, -1, per
	}
	return t
}

// Set applies new limits (a reload). It keeps the tracked clients, and
// reports kept, unless the prefix lengths or MaxTracked changed; then the
// table starts empty (tickets of the old one are ignored by Release).
// Rates are retuned as each client is next seen, keeping its tokens.
func (c *Clients) Set(l ClientLimits) (kept bool) {
	if c == nil {
		return false
	}
	l = l.resolved()
	old := c.cfg.Load()
	c.cfg.Store(&clientConfig{ClientLimits: l, version: old.version + 1})
	if old.V4Bits == l.V4Bits && old.V6Bits == l.V6Bits && old.MaxTracked == l.MaxTracked {
		return true
	}
	c.tab.Store(newClientTable(l))
	return false
}

// key is ip masked to the table's prefix length for its family, as 16
// bytes (IPv4 in the IPv4-mapped form); ok is false for an invalid ip.
func (t *clientTable) key(ip netip.Addr) (k [16]byte, ok bool) {
	if !ip.IsValid() {
		return k, false
	}
	ip = ip.Unmap()
	bits := t.v6Bits
	if ip.Is4() {
		bits = 96 + t.v4Bits
	}
	k = ip.As16()
	if bits < 128 {
		k[bits/8] &= ^byte(0xff >> (bits % 8))
		clear(k[bits/8+1:])
	}
	return k, true
}

// shard picks a key's shard by a seeded multiply-shift hash.
func (t *clientTable) shard(k *[16]byte) int {
	h := (binary.LittleEndian.Uint64(k[:8]) ^ t.seed) * 0x9e3779b97f4a7c15
	h = (h ^ binary.LittleEndian.Uint64(k[8:])) * 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return int(h >> t.shardShift)
}

// Admit counts a new connection from ip at now. A count refusal spends no
// token. A nil Clients admits with the zero Ticket.
func (c *Clients) Admit(ip netip.Addr, now time.Time) (Ticket, Verdict) {
	if c == nil {
		return Ticket{}, Admitted
	}
	cfg, t := c.cfg.Load(), c.tab.Load()
	k, ok := t.key(ip)
	if !ok {
		return Ticket{}, Admitted
	}
	si := t.shard(&k)
	s := &t.shards[si]
	s.mu.Lock()
	i, found := s.index[k]
	if !found {
		if i = c.insert(s, k, cfg); i < 0 {
			s.mu.Unlock()
			c.untracked.Add(1)
			return Ticket{}, Admitted
		}
	}
	e := &s.slab[i]
	// The entry's times never go back: rate.Limiter takes an earlier
	// time as its new last and credits the interval again at the next
	// later one, so a late caller's earlier time would refill the bucket.
	if ns := now.UnixNano(); ns < e.lastSeen {
		now = time.Unix(0, e.lastSeen)
	} else {
		e.lastSeen = ns
	}
	if cfg.MaxConns > 0 && int(e.live) >= cfg.MaxConns {
		s.mu.Unlock()
		return Ticket{}, TooManyConns
	}
	if cfg.PerSecond > 0 {
		switch {
		case e.lim == nil:
			e.lim = rate.NewLimiter(rate.Limit(cfg.PerSecond), cfg.Burst)
		case e.version != cfg.version:
			e.lim.SetLimitAt(now, rate.Limit(cfg.PerSecond))
			e.lim.SetBurstAt(now, cfg.Burst)
		}
		e.version = cfg.version
		if !e.lim.AllowN(now, 1) {
			if e.live == 0 {
				s.unlink(i)
				s.pushFront(i)
			}
			s.mu.Unlock()
			return Ticket{}, TooFast
		}
	}
	if e.live == 0 {
		s.unlink(i)
	}
	e.live++
	tk := Ticket{shard: uint8(si), slot: i, gen: e.gen}
	s.mu.Unlock()
	return tk, Admitted
}

// insert makes room for k in s (the lock held), evicting the least
// recently active idle entry when s is full, and returns its slot, on the
// idle list; -1 when every entry of s has live sessions.
func (c *Clients) insert(s *clientShard, k [16]byte, cfg *clientConfig) int32 {
	var i int32
	switch {
	case int32(len(s.slab)) < s.max:
		if len(s.slab) == cap(s.slab) {
			// Grow by doubling up to the shard's bound, never past it.
			want := min(max(2*len(s.slab), 16), int(s.max))
			s.slab = slices.Grow(s.slab, want-len(s.slab))
		}
		i = int32(len(s.slab))
		s.slab = append(s.slab, clientEntry{})
	case s.tail >= 0:
		i = s.tail
		s.unlink(i)
		delete(s.index, s.slab[i].key)
		c.evicted.Add(1)
	default:
		return -1
	}
	gen := c.gens.Add(1)
	if gen == 0 { // 0 marks the empty Ticket
		gen = c.gens.Add(1)
	}
	e := &s.slab[i]
	lim := e.lim
	*e = clientEntry{key: k, gen: gen, prev: -1, next: -1, version: cfg.version}
	if lim != nil && cfg.PerSecond > 0 {
		// Reuse the slot's limiter, full: with its last update at the
		// zero time, the next AllowN refills it to the burst.
		lim.SetBurstAt(time.Time{}, cfg.Burst)
		lim.SetLimitAt(time.Time{}, rate.Limit(cfg.PerSecond))
		e.lim = lim
	}
	s.index[k] = i
	s.pushFront(i)
	return i
}

// pushFront puts idle entry i at the head of the idle list.
func (s *clientShard) pushFront(i int32) {
	e := &s.slab[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.slab[s.head].prev = i
	} else {
		s.tail = i
	}
	s.head = i
}

// unlink takes entry i off the idle list (it must be on it).
func (s *clientShard) unlink(i int32) {
	e := &s.slab[i]
	if e.prev >= 0 {
		s.slab[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.slab[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

// Release gives back the place t holds; call it once per admitted
// session. Any goroutine may call it; a zero or stale Ticket (its table
// was replaced by Set) is ignored.
func (c *Clients) Release(t Ticket) {
	if c == nil || t.gen == 0 {
		return
	}
	tab := c.tab.Load()
	if int(t.shard) >= len(tab.shards) {
		return
	}
	s := &tab.shards[t.shard]
	s.mu.Lock()
	if int(t.slot) < len(s.slab) {
		if e := &s.slab[t.slot]; e.gen == t.gen && e.live > 0 {
			if e.live--; e.live == 0 {
				s.pushFront(t.slot)
			}
		}
	}
	s.mu.Unlock()
}

// ClientStats are a table's counts.
type ClientStats struct {
	Tracked   int    // clients in the table now
	Evicted   uint64 // clients dropped to make room
	Untracked uint64 // clients admitted untracked: the table was full of live clients
}

// Stats returns the table's counts. A nil Clients has none. It locks one
// shard at a time, briefly.
func (c *Clients) Stats() ClientStats {
	if c == nil {
		return ClientStats{}
	}
	st := ClientStats{Evicted: c.evicted.Load(), Untracked: c.untracked.Load()}
	tab := c.tab.Load()
	for i := range tab.shards {
		s := &tab.shards[i]
		s.mu.Lock()
		st.Tracked += len(s.index)
		s.mu.Unlock()
	}
	return st
}

// ClientInfo is one tracked client, for the admin API.
type ClientInfo struct {
	Prefix   netip.Prefix // the client's address masked to V4Bits/V6Bits
	Live     int          // its live sessions
	Tokens   float64      // its rate bucket's tokens now; 0 when no rate
	LastSeen time.Time    // its last Admit
}

// Top returns up to n clients with the most live sessions (then the most
// recently seen). It is a snapshot taken a chunk at a time, not at one
// instant: it holds a shard's lock for at most topChunk entries' copy
// (microseconds), so an Admit on a relay loop never waits on it for
// long, and it allocates for n clients, not for the table. Call it off
// the relay loops all the same.
func (c *Clients) Top(n int) []ClientInfo {
	if c == nil || n <= 0 {
		return nil
	}
	tab, cfg := c.tab.Load(), c.cfg.Load()
	var (
		chunk = make([]topCandidate, 0, topChunk)
		best  = make(topHeap, 0, min(n, topPrealloc))
	)
	for i := range tab.shards {
		s := &tab.shards[i]
		for from := 0; ; from += topChunk {
			chunk = chunk[:0]
			s.mu.Lock()
			slab := s.slab[min(from, len(s.slab)):min(from+topChunk, len(s.slab))]
			for j := range slab {
				if e := &slab[j]; e.gen != 0 {
					chunk = append(chunk, topCandidate{key: e.key, live: e.live, lastSeen: e.lastSeen, lim: e.lim})
				}
			}
			more := from+topChunk < len(s.slab)
			s.mu.Unlock()
			if topHeld != nil {
				topHeld(len(slab))
			}
			for _, cand := range chunk {
				best.offer(cand, n)
			}
			if !more {
				break
			}
		}
	}
	slices.SortFunc(best, func(a, b topCandidate) int { return -a.rank(b) })
	now := time.Now()
	out := make([]ClientInfo, len(best))
	for i, cand := range best {
		a := netip.AddrFrom16(cand.key)
		bits := tab.v6Bits
		if a.Is4In6() {
			a, bits = a.Unmap(), tab.v4Bits
		}
		out[i] = ClientInfo{Prefix: netip.PrefixFrom(a, bits), Live: int(cand.live), LastSeen: time.Unix(0, cand.lastSeen)}
		if cand.lim != nil && cfg.PerSecond > 0 {
			// Off the shard lock: a Limiter has its own. Should the slot
			// have been reused since, this is its new client's bucket; a
			// snapshot taken in chunks is approximate anyway.
			out[i].Tokens = cand.lim.TokensAt(now)
		}
	}
	return out
}

// topChunk is how many slab entries Top copies under one hold of a
// shard's lock; topPrealloc bounds what it allocates up front for a large
// n (the table may hold far fewer clients).
const (
	topChunk    = 64
	topPrealloc = 1024
)

// topHeld, set only by tests, is told after each hold of a shard's lock
// how many slab entries Top looked at under it.
var topHeld func(entries int)

// topCandidate is what Top copies of an entry under the shard's lock.
type topCandidate struct {
	key      [16]byte
	live     int32
	lastSeen int64
	lim      *rate.Limiter
}

// rank orders candidates: > 0 when a ranks above b (more live sessions,
// then seen more recently).
func (a topCandidate) rank(b topCandidate) int {
	if c := cmp.Compare(a.live, b.live); c != 0 {
		return c
	}
	return cmp.Compare(a.lastSeen, b.lastSeen)
}

// topHeap keeps the best n candidates seen: a min-heap by rank, its root
// the one to drop first.
type topHeap []topCandidate

// offer adds c when fewer than n are kept, or in place of the lowest
// when c ranks above it.
func (h *topHeap) offer(c topCandidate, n int) {
	if len(*h) < n {
		*h = append(*h, c)
		for i := len(*h) - 1; i > 0; {
			parent := (i - 1) / 2
			if (*h)[parent].rank((*h)[i]) <= 0 {
				break
			}
			(*h)[parent], (*h)[i] = (*h)[i], (*h)[parent]
			i = parent
		}
		return
	}
	if c.rank((*h)[0]) <= 0 {
		return
	}
	(*h)[0] = c
	for i := 0; ; {
		low, l, r := i, 2*i+1, 2*i+2
		if l < len(*h) && (*h)[l].rank((*h)[low]) < 0 {
			low = l
		}
		if r < len(*h) && (*h)[r].rank((*h)[low]) < 0 {
			low = r
		}
		if low == i {
			return
		}
		(*h)[i], (*h)[low] = (*h)[low], (*h)[i]
		i = low
	}
}
