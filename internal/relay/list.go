package relay

import (
	"net/netip"
	"time"

	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/session"
)

// Listing and ending live sessions for the admin API. A session's fields
// are the loop's alone, so every look goes through post: a walk over the
// loop's slots, walkChunk slots per posted turn, which posts itself again
// for the next chunk. A turn of the loop is then held up by at most
// walkChunk comparisons and copies (~40µs; a listing by bytes that keeps
// 11,000, each session heavier than the last, ~160µs), and the sessions
// between two chunks keep moving. There is no index by id, route or
// bytes: the walk costs the hot path nothing, and a listing is rare.

// walkChunk is how many slots one posted turn of a walk looks at.
const walkChunk = 1024

// Match selects live sessions. A zero field matches every session.
type Match struct {
	Route  string       // the route's name
	Member string       // the member picked, as configured: Record.Upstream
	Client netip.Prefix // the client's address is in it
}

func (m *Match) matches(r *session.Record) bool {
	return (m.Route == "" || m.Route == r.Route) &&
		(m.Member == "" || m.Member == r.Upstream) &&
		(!m.Client.IsValid() || m.Client.Contains(r.Client.Addr().Unmap()))
}

// SessionInfo is what a listing tells of one live session.
type SessionInfo struct {
	ID         uint64
	Route      string
	Upstream   string         // the member picked, as configured
	Client     netip.AddrPort // the client's address
	Dialed     netip.AddrPort // the address dialed (the last try's), once known
	Start      time.Time      // when the client was accepted
	ToUpstream int64          // bytes delivered to the upstream so far
	ToClient   int64          // bytes delivered to the client so far
	State      session.State
	// Filters names the filters of the set the session runs, in order;
	// nil when it runs none. Sessions of one set share the slice: read it,
	// do not change it.
	Filters []string
	// Edge is what the session's first bytes said (a PROXY header, a
	// ClientHello) and which match chose its route; zero when its
	// listener reads none. A copy: the record's own is written at finish.
	Edge session.Edge
	// TLS is what the session's handshakes settled so far; zero when it
	// has no TLS, or has not finished a handshake yet.
	TLS session.TLS
}

// walk runs visit on the loop for every live session, walkChunk slots per
// posted turn, until visit says stop; then done runs, on the loop. It
// reports false, and runs neither, when the loop has been closed. A loop
// closed during the walk cuts it short: done still runs, with what was
// seen.
func (l *Loop) walk(visit func(*conn) (stop bool), done func()) bool {
	return l.post(func() { l.walkFrom(0, visit, done) })
}

func (l *Loop) walkFrom(i int, visit func(*conn) bool, done func()) {
	end := min(i+walkChunk, len(l.slots))
	for ; i < end; i++ {
		if c := l.slots[i]; c != nil && c.state != closed && visit(c) {
			done()
			return
		}
	}
	if end >= len(l.slots) || !l.post(func() { l.walkFrom(end, visit, done) }) {
		done()
	}
}

// Order is the order a listing pages live sessions in.
type Order uint8

const (
	// ByID is ascending ID, oldest first: IDs grow as clients are
	// accepted. A page is the sessions after a cursor ID, so a session is
	// on at most one page while sessions come and go.
	ByID Order = iota
	// ByAge is descending ID, newest first, paged before a cursor ID.
	ByAge
	// ByBytes is most bytes first, both ways summed, then ascending ID.
	// It pages by offset over a set whose bytes change between two reads:
	// pages may overlap or skip a session.
	ByBytes
)

// Paging says which matching sessions a listing keeps.
type Paging struct {
	Order Order
	// Cursor is, for ByID, the ID the page starts after (0: the first
	// page); for ByAge, the ID it starts before (0: the newest first).
	// ByBytes has none.
	Cursor uint64
	// Offset is, for ByBytes, how many of the heaviest the caller skips:
	// a loop keeps its Offset+Limit heaviest, since any of them may be on
	// the page once every loop's are merged. ByID and ByAge have none.
	Offset int
	Limit  int
}

// keep is how many sessions a loop keeps for p.
func (p Paging) keep() int {
	k := max(p.Limit, 0)
	if p.Order == ByBytes && k > 0 {
		k += max(p.Offset, 0)
	}
	return k
}

// eligible reports whether a session with that ID is past p's cursor.
func (p Paging) eligible(id uint64) bool {
	switch p.Order {
	case ByID:
		return id > p.Cursor
	case ByAge:
		return p.Cursor == 0 || id < p.Cursor
	}
	return true
}

// Compare orders a before b as o lists them: negative when a comes first.
// Sessions of equal bytes come in ID order, so that ByBytes is a total
// order and two loops' pages merge the same way every time.
func (o Order) Compare(a, b *SessionInfo) int {
	switch o {
	case ByAge:
		return cmpUint(b.ID, a.ID)
	case ByBytes:
		if ab, bb := a.ToUpstream+a.ToClient, b.ToUpstream+b.ToClient; ab != bb {
			if ab > bb {
				return -1
			}
			return 1
		}
	}
	return cmpUint(a.ID, b.ID)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// List pages the loop's live sessions that match m as p says: of those
// past p's cursor, the first p.keep() in p.Order, in no particular order;
// matched counts every session that matches m, wherever it stands. reply
// gets them on the loop's goroutine, once, and must not block (hand them
// to a buffered channel). List reports false, and reply never runs, when
// the loop has been closed. The page is allocated here, on the caller's
// goroutine, as large as it may grow: as many as it keeps, or as the loop
// holds sessions (with room for those that begin meanwhile), whichever is
// fewer, so a deep page of an idle loop costs nothing; the walk allocates
// nothing per session (but when more sessions began than the room), and a
// session the page cannot take costs one comparison.
func (l *Loop) List(m Match, p Paging, reply func(page []SessionInfo, matched int)) bool {
	keep := p.keep()
	page := make([]SessionInfo, 0, min(keep, int(l.Live())+listRoom))
	matched := 0
	var names namesCache
	var probe SessionInfo // the candidate, read without its names
	return l.walk(func(c *conn) bool {
		r := c.p.Record
		if !m.matches(r) {
			return false
		}
		matched++
		if keep == 0 || !p.eligible(r.ID) {
			return false
		}
		if len(page) < keep {
			page = append(page, c.sessionInfo(&names))
			siftUp(page, p.Order, len(page)-1)
			return false
		}
		probe.ID, probe.ToUpstream, probe.ToClient = r.ID, c.toUpstream.bytes, c.toClient.bytes
		if p.Order.Compare(&probe, &page[0]) < 0 {
			page[0] = c.sessionInfo(&names)
			siftDown(page, p.Order, 0)
		}
		return false
	}, func() { reply(page, matched) })
}

// listRoom is the room a page leaves for sessions that begin between
// List's call and its walk.
const listRoom = 64

// End ends the session with that ID, with session.Admin (see endAdmin).
// reply tells, on the loop, whether the loop held it. End reports false,
// and reply never runs, when the loop has been closed.
func (l *Loop) End(id uint64, reset bool, reply func(found bool)) bool {
	found := false
	return l.walk(func(c *conn) bool {
		if c.p.Record.ID != id {
			return false
		}
		found = true
		c.endAdmin(reset)
		return true
	}, func() { reply(found) })
}

// EndMatching ends every session that matches m, with session.Admin (see
// endAdmin); reply gets how many, on the loop. It reports false, and reply
// never runs, when the loop has been closed.
func (l *Loop) EndMatching(m Match, reset bool, reply func(n int)) bool {
	n := 0
	return l.walk(func(c *conn) bool {
		if m.matches(c.p.Record) {
			n++
			c.endAdmin(reset)
		}
		return false
	}, func() { reply(n) })
}

// endAdmin ends a session an operator asked to end. reset resets both
// sides (SO_LINGER 0, then close). Otherwise both sides get a FIN
// (shutdown for writing) and then the close: a peer reads EOF, but Linux
// answers a RST to a peer whose bytes pier had not read yet, and bytes in
// pier's pipes or filters are dropped either way.
func (c *conn) endAdmin(reset bool) {
	if !reset {
		for _, s := range [...]*side{&c.client, &c.upstream} {
			if s.fd >= 0 {
				shutdownWR(s.fd)
			}
		}
	}
	c.finish(session.Admin, nil, reset)
}

// sessionInfo copies what a listing tells of c.
func (c *conn) sessionInfo(names *namesCache) SessionInfo {
	r := c.p.Record
	var edge session.Edge
	if r.Edge != nil {
		edge = *r.Edge
	}
	var tlsInfo session.TLS
	if r.TLS != nil {
		tlsInfo = *r.TLS
	}
	return SessionInfo{
		Edge:       edge,
		TLS:        tlsInfo,
		ID:         r.ID,
		Route:      r.Route,
		Upstream:   r.Upstream,
		Client:     r.Client,
		Dialed:     r.Dialed,
		Start:      r.Start,
		ToUpstream: c.toUpstream.bytes,
		ToClient:   c.toClient.bytes,
		State:      c.mstate,
		Filters:    names.of(c.filters),
	}
}

// namesCache holds the filter names of the sets one listing met, so that
// the sessions of a set share one slice: an allocation per set, not per
// session. Almost always one set, or none.
type namesCache struct {
	set   *chain.Set
	names []string
	more  map[*chain.Set][]string
}

func (n *namesCache) of(s *chain.Set) []string {
	if s == nil || len(s.Filters) == 0 {
		return nil
	}
	if s == n.set {
		return n.names
	}
	if names, ok := n.more[s]; ok {
		return names
	}
	names := make([]string, len(s.Filters))
	for i, f := range s.Filters {
		names[i] = f.Name
	}
	if n.set == nil {
		n.set, n.names = s, names
	} else {
		if n.more == nil {
			n.more = make(map[*chain.Set][]string)
		}
		n.more[s] = names
	}
	return names
}

// siftUp and siftDown keep page a heap whose root, page[0], comes last
// in order o: the one to drop when a session that comes before it is met.
func siftUp(page []SessionInfo, o Order, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if o.Compare(&page[parent], &page[i]) >= 0 {
			return
		}
		page[parent], page[i] = page[i], page[parent]
		i = parent
	}
}

func siftDown(page []SessionInfo, o Order, i int) {
	for {
		last := i
		if l := 2*i + 1; l < len(page) && o.Compare(&page[l], &page[last]) > 0 {
			last = l
		}
		if r := 2*i + 2; r < len(page) && o.Compare(&page[r], &page[last]) > 0 {
			last = r
		}
		if last == i {
			return
		}
		page[i], page[last] = page[last], page[i]
		i = last
	}
}
