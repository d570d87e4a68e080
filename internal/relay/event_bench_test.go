package relay

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/stats"
)

// The loop's cost per event, without TCP, a dial or a proxy process: a
// running Loop (Run on its own goroutine, waiting in epoll_wait as in
// pier) relays sessions whose client and upstream are socket pairs, and
// each request is one 64-byte message client → loop → upstream and its
// echo upstream → loop → client: two readiness events for the loop, each a
// read and a write. ns/op and allocs/op are per request (b.N requests in
// all), and count the test's own side too (four system calls per request
// on the socket pairs' other ends), so compare them across commits, not
// with bench/run's CPU µs/req. allocs/op counts every goroutine's, the
// loop's included: a steady session should allocate nothing per request.
//
//	go test -run XXX -bench LoopEcho -benchtime 2000x ./internal/relay/
//	go test -run XXX -bench LoopEcho -count 10 ./internal/relay/ | benchstat -

// BenchmarkLoopEcho1 is one session: each request waits for the one before,
// so the loop wakes from epoll_wait for every event.
func BenchmarkLoopEcho1(b *testing.B) { benchmarkLoopEcho(b, 1) }

// BenchmarkLoopEcho16 is 16 sessions on one loop, each with one request in
// flight, as in bench/run's 16-client row: the loop may find several
// events in one epoll_wait.
func BenchmarkLoopEcho16(b *testing.B) { benchmarkLoopEcho(b, 16) }

// benchStats counts the benchmarks' sessions.
var benchStats = stats.NewRoute("bench", 1)

// echoMsgSize is the size of a request and of its echo, as in bench/run.
const echoMsgSize = 64

func benchmarkLoopEcho(b *testing.B, sessions int) {
	l, stop := startLoop(b)
	ended := make(chan *session.Record, sessions)
	var pairs []echoPair
	defer func() {
		stop()
		for range pairs {
			<-ended // the loop's shutdown has ended every session
		}
		for _, p := range pairs {
			p.client.Close()
			p.upstream.Close()
		}
	}()
	for range sessions {
		pairs = append(pairs, startEchoPair(b, l, ended))
	}
	// One request each before the clock starts: the sessions' first
	// events (the sockets' initial writability) are not the steady state.
	for _, p := range pairs {
		if err := p.exchange(1); err != nil {
			b.Fatal(err)
		}
	}

	b.ReportAllocs()
	b.SetBytes(2 * echoMsgSize) // each request crosses the loop twice
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make([]error, sessions)
	for i, p := range pairs {
		// b.N requests in all, spread over the sessions.
		n := b.N / sessions
		if i < b.N%sessions {
			n++
		}
		wg.Go(func() { errs[i] = p.exchange(n) })
	}
	wg.Wait()
	b.StopTimer()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("session %d: %v", i, err)
		}
	}
}

// echoPair is the test's ends of one session's socket pairs: it is both
// the session's client and its upstream, which echoes.
type echoPair struct {
	client, upstream net.Conn
	req, got         []byte
}

// startEchoPair starts a relaying session on the running loop l between two
// socket pairs, as the loop has a session once its upstream has
// connected, and returns the test's ends. Done sends the record to ended.
func startEchoPair(b *testing.B, l *Loop, ended chan<- *session.Record) echoPair {
	b.Helper()
	clientFd, client := benchSocketPair(b)
	upFd, upstream := benchSocketPair(b)
	added := make(chan error, 1)
	posted := l.post(func() {
		l.nextGen = (l.nextGen + 1) & (1<<30 - 1)
		c := &conn{l: l, gen: l.nextGen, heapIdx: -1, state: relaying}
		// Counted as pier counts a route's sessions, so that the
		// benchmark includes what counting costs per event.
		c.p = &Params{Record: &session.Record{Start: time.Now()}, Done: func(r *session.Record) { ended <- r },
			Stats: benchStats.Shard(0)}
		c.mstate = session.Open
		c.p.Stats.Enter(session.Open)
		c.client = side{fd: clientFd}
		c.upstream = side{fd: upFd}
		c.toUpstream = flow{src: &c.client, dst: &c.upstream}
		c.toClient = flow{src: &c.upstream, dst: &c.client}
		c.startedWall = c.p.Record.Start
		c.lastActive = l.now
		l.allocSlot(c)
		l.live.Add(1)
		l.fds.Add(2)
		err := l.add(c, clientSide, clientFd)
		if err == nil {
			err = l.add(c, upstreamSide, upFd)
		}
		if err != nil {
			c.finish(session.LocalError, err, false)
		}
		added <- err
	})
	if !posted {
		b.Fatal("loop closed")
	}
	select {
	case err := <-added:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		b.Fatal("the loop did not take the session")
	}
	return echoPair{client: client, upstream: upstream, req: make([]byte, echoMsgSize), got: make([]byte, echoMsgSize)}
}

// exchange sends n requests one after the other: each is written by the
// client, read and echoed by the upstream, and read back by the client.
func (p echoPair) exchange(n int) error {
	deadline := time.Now().Add(time.Minute)
	p.client.SetDeadline(deadline)
	p.upstream.SetDeadline(deadline)
	for i := range n {
		p.req[0] = byte(i)
		if _, err := p.client.Write(p.req); err != nil {
			return err
		}
		if _, err := io.ReadFull(p.upstream, p.got); err != nil {
			return err
		}
		if _, err := p.upstream.Write(p.got); err != nil {
			return err
		}
		if _, err := io.ReadFull(p.client, p.got); err != nil {
			return err
		}
		if p.got[0] != byte(i) {
			return fmt.Errorf("reply %d carries request %d's mark", i, p.got[0])
		}
	}
	return nil
}

// benchSocketPair returns the loop's end of a socket pair (non-blocking)
// and the test's, as a net.Conn on Go's poller, so that 16 sessions' ends
// wait without 16 threads.
func benchSocketPair(b *testing.B) (int, net.Conn) {
	b.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		b.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "peer")
	peer, err := net.FileConn(f) // a dup: f is closed below
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		b.Fatal(err)
	}
	return fds[0], peer
}
