package udp

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/chain"
	"github.com/pierproxy/pier/internal/nonblock"
	"github.com/pierproxy/pier/internal/pool"
	"github.com/pierproxy/pier/internal/route"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// batch is how many datagrams one recvmmsg or sendmmsg moves, and
// bufSize each one's buffer: 64 KiB holds the largest datagram IPv4 or
// IPv6 carries without jumbograms (65507 and 65527 bytes of payload).
const (
	batch   = 8
	bufSize = 64 << 10
)

// Budgets of one turn of the loop: a busy client or member cannot starve
// the others; what is left is still readable at the next epoll_wait (the
// sockets are level-triggered).
const (
	listenBudget = 8 * batch // datagrams from clients per turn
	replyBudget  = 8 * batch // datagrams from one member per turn
	maxEvents    = 128
)

// The epoll entries of a socket's goroutine carry a flow's slot in Fd and
// its generation in Pad; these slots are the goroutine's own.
const (
	listenSlot = -1
	wakeSlot   = -2
)

// A socket is one of a listen address's SO_REUSEPORT sockets and the
// goroutine that serves it: every flow of the clients the kernel hashes
// to it lives here, and only this goroutine touches them.
type socket struct {
	s      *Server
	ln     *listener
	idx    int // among the listener's sockets; the stats shard
	fd     int
	family int // of fd: AF_INET, or AF_INET6 (dual-stack when bound to ::)
	epfd   int
	wake   int // eventfd that stop writes
	c      *counters
	done   chan struct{} // closed when run has returned
	// delayed is the bytes the socket's flows hold in their delay
	// queues, within maxDelayedPerSocket.
	delayed int

	mu      sync.Mutex
	closing bool

	start time.Time     // the goroutine's clock starts here
	now   time.Duration // since start, read once per turn
	wall  time.Time     // time.Now() of the turn

	flows  map[netip.AddrPort]*flow
	slots  []*flow // by slot, the epoll entry's Fd
	free   []int32
	gen    uint32
	timers timers
	ending []*flow // flows to end once the replies sent are counted

	events [maxEvents]unix.EpollEvent

	// Datagrams from clients: recvmmsg into in*.
	inMsgs  [batch]unix.Mmsghdr
	inIov   [batch]unix.Iovec
	inNames [batch]sockaddr
	inBufs  [batch][]byte

	// Replies on their way to clients: recvmmsg from members into out*,
	// sendmmsg from the listener socket; outFlow[i] is slot i's flow.
	outMsgs [batch]unix.Mmsghdr
	outIov  [batch]unix.Iovec
	outBufs [batch][]byte
	outFlow [batch]*flow
	nout    int

	// filterBufs are what filter.RunDatagrams alternates between, for
	// every filtered flow of the socket: their arenas are the socket's,
	// not each flow's.
	filterBufs [2]filter.DatagramOut
}

// newSocket prepares a goroutine for the bound socket fd; it runs once
// run is started.
func newSocket(s *Server, ln *listener, idx, fd int) (*socket, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("udp: getsockname: %w", err)
	}
	family := unix.AF_INET6
	if _, ok := sa.(*unix.SockaddrInet4); ok {
		family = unix.AF_INET
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("udp: epoll_create: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("udp: eventfd: %w", err)
	}
	k := &socket{s: s, ln: ln, idx: idx, fd: fd, family: family, epfd: epfd, wake: wake,
		c: new(counters), done: make(chan struct{}), start: time.Now(), flows: make(map[netip.AddrPort]*flow)}
	for _, e := range []struct {
		fd   int
		slot int32
	}{{wake, wakeSlot}, {fd, listenSlot}} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: e.slot}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, e.fd, &ev); err != nil {
			unix.Close(epfd)
			unix.Close(wake)
			return nil, fmt.Errorf("udp: epoll_ctl: %w", err)
		}
	}
	for i := range batch {
		k.inBufs[i] = make([]byte, bufSize)
		k.outBufs[i] = make([]byte, bufSize)
	}
	return k, nil
}

// closeUnstarted closes a socket whose goroutine never ran (Apply failed
// on another address).
func (k *socket) closeUnstarted() {
	unix.Close(k.fd)
	unix.Close(k.wake)
	unix.Close(k.epfd)
	close(k.done)
}

// stop asks the goroutine to end its flows and return. Never waits.
func (k *socket) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closing {
		return
	}
	k.closing = true
	var one = [8]byte{1}
	unix.Write(k.wake, one[:])
}

func (k *socket) stopping() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closing
}

// run serves the socket until stop.
func (k *socket) run() {
	// As a relay loop does: the goroutine keeps its thread, which the
	// kernel wakes from epoll_wait directly.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer k.shutdown()
	for {
		k.tick()
		n, err := k.wait()
		if err != nil {
			k.s.log.Error("udp socket stopped", "addr", k.ln.addr.String(), "error", err)
			return
		}
		k.tick()
		for i := range n {
			k.dispatch(&k.events[i])
		}
		k.flush()
		if k.stopping() {
			return
		}
		k.expire()
		k.flush()
	}
}

func (k *socket) tick() {
	k.wall = time.Now()
	k.now = k.wall.Sub(k.start)
}

// wait returns the next events, waiting no longer than the next timer.
func (k *socket) wait() (int, error) {
	timeout := -1
	if f := k.timers.next(); f != nil {
		// epoll_wait counts milliseconds: round up, so that a timer is
		// never checked before it is due.
		timeout = int(max(f.due-time.Since(k.start)+time.Millisecond-1, 0) / time.Millisecond)
	}
	if timeout == 0 {
		n, err := nonblock.EpollPoll(k.epfd, k.events[:])
		if err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("udp: epoll_wait: %w", err)
		}
		return n, nil
	}
	for {
		n, err := unix.EpollWait(k.epfd, k.events[:], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("udp: epoll_wait: %w", err)
		}
		return n, nil
	}
}

func (k *socket) dispatch(ev *unix.EpollEvent) {
	switch ev.Fd {
	case wakeSlot:
		var buf [8]byte
		unix.Read(k.wake, buf[:])
		return
	case listenSlot:
		k.receive()
		return
	}
	if int(ev.Fd) >= len(k.slots) {
		return
	}
	f := k.slots[ev.Fd]
	if f == nil || f.gen != uint32(ev.Pad) {
		return // ended earlier in this batch
	}
	k.replies(f)
}

// shutdown ends every flow and closes the socket's descriptors.
func (k *socket) shutdown() {
	k.flush()
	for _, f := range k.slots {
		if f != nil {
			k.end(f, session.Shutdown, nil)
		}
	}
	unix.Close(k.fd)
	// closing, set under mu, keeps a later stop from writing to the
	// closed eventfd (or a descriptor that reused its number) when run
	// returned for an error rather than for stop.
	k.mu.Lock()
	k.closing = true
	unix.Close(k.wake)
	k.mu.Unlock()
	unix.Close(k.epfd)
	close(k.done)
}

// receive takes the datagrams clients sent, a batch at a time.
func (k *socket) receive() {
	for got := 0; got < listenBudget; {
		for i := range batch {
			k.inIov[i] = unix.Iovec{Base: unsafe.SliceData(k.inBufs[i]), Len: bufSize}
			k.inMsgs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
				Name: &k.inNames[i].b[0], Namelen: uint32(len(k.inNames[i].b)),
				Iov: &k.inIov[i], Iovlen: 1,
			}}
		}
		n, err := recvmmsg(k.fd, k.inMsgs[:])
		if err != nil {
			// EAGAIN: drained. Anything else (an ICMP error queued on
			// the listener by a reply that failed) is not a flow's: look
			// again next turn.
			return
		}
		for i := range n {
			k.fromClient(i)
		}
		got += n
		if n < batch {
			return
		}
	}
}

// fromClient forwards datagram i of the batch received.
func (k *socket) fromClient(i int) {
	m := &k.inMsgs[i]
	name := &k.inNames[i]
	name.n = m.Hdr.Namelen
	key := addrPort(&name.b)
	if !key.IsValid() {
		return
	}
	f := k.flows[key]
	if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
		// Larger than 64 KiB (an IPv6 jumbogram): counted, never
		// passed on cut short.
		k.c.tooBig.Add(1)
		if f != nil {
			f.udp.Dropped++
		}
		return
	}
	if f == nil {
		if f = k.open(key, name); f == nil {
			return
		}
	}
	k.toUpstream(f, k.inBufs[i][:m.Len])
}

// toUpstream passes a client's datagram d on to f's member, through its
// filters if it has some.
func (k *socket) toUpstream(f *flow, d []byte) {
	if !k.takeUpFilters(f) {
		return
	}
	if ff := f.filt; ff != nil && len(ff.up) > 0 {
		k.filtered(f, ff.up, &ff.upQ, d, (*socket).sendUp)
		return
	}
	k.sendUp(f, d)
}

// sendUp sends d on f's upstream socket. It reports false when the flow
// ended (its member is unreachable).
func (k *socket) sendUp(f *flow, d []byte) bool {
	err := send(f.fd, d)
	if err == nil {
		n := int64(len(d))
		f.rec.ToUpstream += n
		f.udp.ToUpstream++
		f.last = k.now
		f.shard.AddBytes(n, 0)
		k.c.dgUp.Add(1)
		k.c.bytesUp.Add(uint64(n))
		return true
	}
	f.udp.Dropped++
	switch err {
	case unix.EMSGSIZE:
		k.c.tooBig.Add(1)
	case unix.EAGAIN, unix.ENOBUFS:
		k.c.queueFull.Add(1)
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH:
		// An ICMP error of an earlier datagram, reported on this send.
		k.c.otherDrop.Add(1)
		k.end(f, session.Unreachable, err)
		return false
	default:
		k.c.otherDrop.Add(1)
	}
	return true
}

// replies reads what f's member sent, into the batch of replies to send.
func (k *socket) replies(f *flow) {
	if !k.takeUpFilters(f) {
		return
	}
	if ff := f.filt; ff != nil && len(ff.down) > 0 {
		k.repliesFiltered(f)
		return
	}
	for got := 0; got < replyBudget; {
		want := batch - k.nout
		if want == 0 {
			k.flush()
			if f.ended {
				return
			}
			continue
		}
		if f.responses > 0 {
			// Replies past what the flow's queries are owed are not
			// read: the flow ends with the last one.
			left := int(f.owed() - f.udp.ToClient - int64(f.queued))
			if left <= 0 {
				return
			}
			want = min(want, left)
		}
		want = min(want, replyBudget-got)
		for i := k.nout; i < k.nout+want; i++ {
			k.outIov[i] = unix.Iovec{Base: unsafe.SliceData(k.outBufs[i]), Len: bufSize}
			k.outMsgs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{Iov: &k.outIov[i], Iovlen: 1}}
		}
		n, err := recvmmsg(f.fd, k.outMsgs[k.nout:k.nout+want])
		if err != nil {
			k.upstreamError(f, err)
			return
		}
		k.answered(f, n)
		w := k.nout
		for j := k.nout; j < k.nout+n; j++ {
			m := &k.outMsgs[j]
			if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
				k.c.tooBig.Add(1)
				f.udp.Dropped++
				continue
			}
			if j != w {
				k.outBufs[j], k.outBufs[w] = k.outBufs[w], k.outBufs[j]
				k.outMsgs[w].Len = m.Len
			}
			k.outFlow[w] = f
			w++
		}
		f.queued += w - k.nout
		k.nout = w
		got += n
		if n < want {
			return
		}
	}
}

// repliesFiltered reads what f's member sent into the socket's receive
// buffers (free outside receive) and runs each datagram through f's
// filters; what they pass on joins the batch of replies, now or at its
// time.
func (k *socket) repliesFiltered(f *flow) {
	ff := f.filt
	for got := 0; got < replyBudget && !f.ended; {
		want := min(batch, replyBudget-got)
		for i := range want {
			k.inIov[i] = unix.Iovec{Base: unsafe.SliceData(k.inBufs[i]), Len: bufSize}
			k.inMsgs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{Iov: &k.inIov[i], Iovlen: 1}}
		}
		n, err := recvmmsg(f.fd, k.inMsgs[:want])
		if err != nil {
			k.upstreamError(f, err)
			return
		}
		k.answered(f, n)
		for i := range n {
			if f.ended {
				return
			}
			if k.inMsgs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				k.c.tooBig.Add(1)
				f.udp.Dropped++
				continue
			}
			k.filtered(f, ff.down, &ff.downQ, k.inBufs[i][:k.inMsgs[i].Len], (*socket).queueReply)
		}
		got += n
		if n < want {
			return
		}
	}
}

// upstreamError ends f for an error its upstream socket reported, unless
// it only says that nothing is waiting.
func (k *socket) upstreamError(f *flow, err error) {
	switch err {
	case unix.EAGAIN:
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH:
		k.end(f, session.Unreachable, err)
	default:
		k.end(f, session.UpstreamReset, err)
	}
}

// answered notes that f's member sent n datagrams: at the first, the
// member is alive, and the passive check's failures of it start over, as
// after a TCP connect.
func (k *socket) answered(f *flow, n int) {
	if !f.answered && n > 0 {
		f.answered = true
		f.a.Connected()
	}
}

// queueReply copies d into the batch of replies to f's client. It reports
// false when the flow ended (a flush ended it: its responses were
// delivered). A reply past the route's responses is dropped.
func (k *socket) queueReply(f *flow, d []byte) bool {
	if f.responses > 0 && f.udp.ToClient+int64(f.queued) >= f.owed() {
		f.udp.Dropped++ // a filter made more replies than the queries are owed
		k.c.filterDrop.Add(1)
		return true
	}
	if k.nout == batch {
		k.flush()
		if f.ended {
			return false
		}
	}
	k.outMsgs[k.nout].Len = uint32(copy(k.outBufs[k.nout], d))
	k.outFlow[k.nout] = f
	k.nout++
	f.queued++
	return true
}

// flush sends the replies batched so far to their clients from the
// listener socket, counts each delivered, and ends the flows that got
// their responses.
func (k *socket) flush() {
	for i := range k.nout {
		f := k.outFlow[i]
		k.outIov[i] = unix.Iovec{Base: unsafe.SliceData(k.outBufs[i]), Len: uint64(k.outMsgs[i].Len)}
		k.outMsgs[i].Hdr = unix.Msghdr{Name: &f.sa.b[0], Namelen: f.sa.n, Iov: &k.outIov[i], Iovlen: 1}
	}
	for i := 0; i < k.nout; {
		n, err := sendmmsg(k.fd, k.outMsgs[i:k.nout])
		if err != nil {
			// The datagram at i failed alone: drop and count it, and
			// send the rest.
			f := k.outFlow[i]
			f.queued--
			f.udp.Dropped++
			switch err {
			case unix.EMSGSIZE:
				k.c.tooBig.Add(1)
			case unix.EAGAIN, unix.ENOBUFS:
				k.c.queueFull.Add(1)
			default:
				k.c.otherDrop.Add(1)
			}
			i++
			continue
		}
		for j := i; j < i+n; j++ {
			f := k.outFlow[j]
			size := int64(k.outIov[j].Len)
			f.queued--
			f.rec.ToClient += size
			f.udp.ToClient++
			f.last = k.now
			f.shard.AddBytes(0, size)
			k.c.dgDown.Add(1)
			k.c.bytesDown.Add(uint64(size))
			if f.responses > 0 && f.udp.ToClient >= f.owed() && !f.ending {
				f.ending = true
				k.ending = append(k.ending, f)
			}
		}
		i += n
	}
	clear(k.outFlow[:k.nout])
	k.nout = 0
	for i, f := range k.ending {
		k.end(f, session.Responses, nil)
		k.ending[i] = nil
	}
	k.ending = k.ending[:0]
}

// expire passes on the delayed datagrams whose time has come and ends
// the flows idle past their timeout.
func (k *socket) expire() {
	for {
		f := k.timers.next()
		if f == nil || f.due > k.now {
			return
		}
		k.release(f)
		if f.ended {
			continue
		}
		if due, idle := f.nextDue(); due > k.now || !idle {
			k.timers.schedule(f, max(due, k.now+time.Microsecond))
			continue
		}
		k.end(f, session.IdleTimeout, nil)
	}
}

// A flow is one client's datagrams on one listener, to one member.
type flow struct {
	key                     netip.AddrPort // the client as received: the flow table's key
	sa                      sockaddr       // the client's raw address, for sendmmsg
	fd                      int            // the connected upstream socket
	slot                    int32
	gen                     uint32
	heap                    int32 // index in the timer heap; -1 none
	queued                  int   // replies batched, not yet sent
	responses               int
	answered, ending, ended bool
	aborted                 bool         // closed before it began (abort)
	filt                    *flowFilters // nil: no filters
	set                     *chain.Set   // the filter set filt came from

	due, last, idle time.Duration // timer; last datagram delivered either way; the route's idle timeout

	rt    *route.Route
	a     *pool.Attempt
	h     *route.Held
	count *flowCount
	shard *stats.Shard
	rec   session.Record
	udp   session.UDP
}

// owed is how many replies the flow's client is owed with responses set:
// responses for each datagram delivered to the member, as nginx's
// proxy_responses counts them (a resolver's A and AAAA queries from one
// socket get both answers). The flow ends once they are delivered.
func (f *flow) owed() int64 { return int64(f.responses) * f.udp.ToUpstream }

// open admits a new flow from client key (raw address sa) and connects its
// upstream socket; nil when the datagram is refused or cannot be sent.
func (k *socket) open(key netip.AddrPort, sa *sockaddr) *flow {
	cur := k.s.cur.Load()
	t := cur.t
	g := t.Group(k.ln.key)
	if g == nil {
		return nil // the listener is closing in a reload
	}
	// admit, top level, then the route's: before anything is made for
	// the flow, so that a flood of refused datagrams (spoofed sources, a
	// denied network) costs no allocation beyond the refusal.
	client := netip.AddrPortFrom(key.Addr().Unmap(), key.Port())
	ip := client.Addr()
	h, ref := t.Global().Admit(ip, k.wall, true, true)
	if ref != nil {
		k.refuse(g.Routes[0], client, ref)
		return nil
	}
	// route: a udp address has one route (no match).
	rt, mk := g.Choose(ip, nil)
	if rt == nil {
		h.Release()
		k.refuse(g.Routes[0], client, &route.Refusal{Reason: session.NoRoute})
		return nil
	}
	// allow/deny, rate, per-client table, max_flows.
	count := cur.counts[rt.Name]
	if count == nil {
		count = new(flowCount) // not a udp route of the table: cannot happen
	}
	if ref := rt.Admit(ip, k.wall, &h, count); ref != nil {
		h.Release()
		k.refuse(rt, client, ref)
		return nil
	}
	f := &flow{key: key, sa: *sa, fd: -1, heap: -1}
	rec := &f.rec
	rec.ID = k.s.ids.Add(1)
	rec.Client = client
	rec.Listener = k.ln.addr
	rec.Start = k.wall
	rec.UDP = &f.udp
	rec.Route = rt.Name
	if mk >= 0 {
		edge(rec).Matched = rt.KeyName(mk)
		rt.Matches.Shard(k.idx).Add(mk)
	}
	f.rt, f.h, f.count = rt, h, count
	if rt.Limit != nil {
		// The route's live count, as its TCP sessions keep it: the
		// metrics, the admin API and the dashboard read it. Its maximum
		// is max_flows' (count), so this never refuses.
		rt.Limit.Acquire()
	}
	f.shard = k.shard(rt)
	f.shard.Start()
	k.s.live.Add(1)
	// pick: hash balancing hashes the client's address.
	f.a = rt.Pool.Pick(rec.Client.Addr())
	if f.a == nil {
		k.c.noUpstream.Add(1)
		k.c.otherDrop.Add(1)
		f.udp.Dropped++
		k.abort(f, session.NoUpstream, nil)
		return nil
	}
	m := f.a.Member()
	rec.Upstream, rec.Dialed = m.Name, m.Addr
	rec.Tries = 1
	// The upstream socket, connected: the kernel hands it the member's
	// replies and its ICMP errors.
	family := unix.AF_INET6
	if m.Addr.Addr().Unmap().Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		k.c.otherDrop.Add(1)
		f.udp.Dropped++
		k.abort(f, session.LocalError, fmt.Errorf("udp: socket: %w", err))
		return nil
	}
	f.fd = fd
	to := makeSockaddr(m.Addr, family)
	if err := connect(fd, &to); err != nil {
		k.c.otherDrop.Add(1)
		f.udp.Dropped++
		reason := session.Unreachable
		if err != unix.ENETUNREACH && err != unix.EHOSTUNREACH {
			reason = session.LocalError
		}
		err = fmt.Errorf("udp: connect %s: %w", m.Addr, err)
		if reason == session.Unreachable {
			f.a.Failed(err) // the member's, as an ICMP error later would be
		}
		k.abort(f, reason, err)
		return nil
	}
	k.allocSlot(f)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: f.slot, Pad: int32(f.gen)}
	if err := unix.EpollCtl(k.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		k.freeSlot(f)
		k.c.otherDrop.Add(1)
		f.udp.Dropped++
		k.abort(f, session.LocalError, fmt.Errorf("udp: epoll_ctl: %w", err))
		return nil
	}
	f.responses = rt.Responses
	f.idle = rt.IdleTimeout
	if f.idle <= 0 {
		f.idle = DefaultIdleTimeout
	}
	f.last = k.now
	f.shard.Enter(session.Open)
	k.flows[key] = f
	k.timers.schedule(f, k.now+f.idle)
	if err := k.startFilters(f); err != nil {
		k.end(f, session.FilterError, err)
		return nil
	}
	return f
}

// shard is the route's counters this socket writes: its index's, or
// shard 0's when the route has fewer shards than the address has sockets
// (the atomics stay right, only shared).
func (k *socket) shard(rt *route.Route) *stats.Shard {
	if sh := rt.Stats.Shard(k.idx); sh != nil {
		return sh
	}
	return rt.Stats.Shard(0)
}

// refuse counts a datagram that could not open a flow and hands its
// record to Finish (rate-limited).
func (k *socket) refuse(rt *route.Route, client netip.AddrPort, r *route.Refusal) {
	k.c.refused.Add(1)
	if r.Route != nil {
		k.shard(r.Route).Refuse(routeRefusal[r.Reason])
	}
	suppressed, ok := k.s.refusalLogged()
	if !ok {
		return // counted; its record is not even made
	}
	rec := &session.Record{ID: k.s.ids.Add(1), Route: rt.Name, Client: client, Listener: k.ln.addr,
		Start: k.wall, Reason: r.Reason}
	if r.Route != nil {
		rec.Route = r.Route.Name
	}
	if r.Limit != "" {
		edge(rec).Limit = r.Limit
	}
	if suppressed > 0 {
		edge(rec).Suppressed = suppressed
	}
	k.s.finish(rt, rec)
}

// end ends a live flow: its replies batched go out first.
func (k *socket) end(f *flow, reason session.Reason, err error) {
	if f.ended {
		return
	}
	f.ended = true
	if f.queued > 0 {
		k.flush()
	}
	delete(k.flows, f.key)
	k.timers.remove(f)
	k.freeSlot(f)
	f.shard.Leave(session.Open)
	if reason == session.Unreachable {
		f.a.Failed(err)
	}
	k.close(f, reason, err)
}

// close finishes a flow that holds no slot: closes its upstream socket,
// gives back what it held, counts it and calls Finish.
// abort closes a flow that could not begin (no member, no socket): its
// record is a refusal's, rate-limited like one, since every datagram of
// its client would fail the same way and would otherwise be a log line.
func (k *socket) abort(f *flow, reason session.Reason, err error) {
	f.aborted = true
	k.close(f, reason, err)
}

func (k *socket) close(f *flow, reason session.Reason, err error) {
	f.ended = true
	if f.fd >= 0 {
		nonblock.Close(f.fd) // also leaves the epoll set
		f.fd = -1
	}
	k.closeFilters(f, reason, err)
	f.rec.Reason, f.rec.Err = reason, err
	f.rec.Duration = time.Since(f.rec.Start)
	if f.a != nil {
		f.a.Done()
	}
	f.h.Release()
	f.count.release()
	if f.rt.Limit != nil {
		f.rt.Limit.Release()
	}
	f.shard.End(&f.rec)
	k.c.flows.Add(1)
	k.s.live.Add(-1)
	if f.aborted {
		k.s.finishRefusal(f.rt, &f.rec)
		return
	}
	k.s.finishFlow(f.rt, &f.rec)
}

func (k *socket) allocSlot(f *flow) {
	k.gen++
	f.gen = k.gen
	if n := len(k.free); n > 0 {
		f.slot = k.free[n-1]
		k.free = k.free[:n-1]
	} else {
		f.slot = int32(len(k.slots))
		k.slots = append(k.slots, nil)
	}
	k.slots[f.slot] = f
}

func (k *socket) freeSlot(f *flow) {
	if f.slot < 0 || int(f.slot) >= len(k.slots) || k.slots[f.slot] != f {
		return
	}
	k.slots[f.slot] = nil
	k.free = append(k.free, f.slot)
	f.slot = -1
}
