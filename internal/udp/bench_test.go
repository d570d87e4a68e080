package udp_test

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/pool"
)

// BenchmarkIdleFlowCost measures what an idle flow costs pier: heap bytes
// (everything the flow keeps: its struct with its record, the flow
// table's and timer heap's share, its pool attempt) and descriptors (its
// connected upstream socket). Clients are raw sockets made before the
// baseline, so that neither their descriptors nor Go's heap count.
//
//	go test -run - -bench IdleFlowCost -benchtime 1x ./internal/udp/
func BenchmarkIdleFlowCost(b *testing.B) {
	const flows = 2000
	m := newMember(b, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	s := server(b, recs, udpRoute(b, "r", "127.0.0.1:0", pool.RoundRobin, m.addr))
	to := addr(b, s, "r")
	dst := &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
	var heap, fds float64
	for b.Loop() {
		b.StopTimer()
		clients := make([]int, flows)
		for i := range clients {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: int64(wait.Seconds())})
			clients[i] = fd
		}
		heap0, fds0 := heapInUse(), openFDs(b)
		b.StartTimer()
		buf := make([]byte, 64)
		for _, fd := range clients {
			if err := unix.Sendto(fd, []byte("hello"), 0, dst); err != nil {
				b.Fatal(err)
			}
			if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if s.Live() != flows {
			b.Fatalf("live %d, want %d", s.Live(), flows)
		}
		heap = float64(heapInUse()-heap0) / flows
		fds = float64(openFDs(b)-fds0) / flows
		for _, fd := range clients {
			unix.Close(fd)
		}
		// The next round's clients are new addresses: end these flows.
		apply(b, s)
		for range flows {
			recs.next(b)
		}
		apply(b, s, udpRoute(b, "r", to.String(), pool.RoundRobin, m.addr))
		b.StartTimer()
	}
	b.ReportMetric(heap, "heap-bytes/flow")
	b.ReportMetric(fds, "fds/flow")
}

// heapInUse is the live heap after two collections.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func openFDs(b *testing.B) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	return len(ents)
}

// BenchmarkRequestResponse is one client's 64-byte exchanges with an echo
// member through pier, one at a time: the round trip's latency.
func BenchmarkRequestResponse(b *testing.B) {
	m := newMember(b, "udp4", "127.0.0.1:0", echo)
	recs := newRecords()
	s := server(b, recs, udpRoute(b, "r", "127.0.0.1:0", pool.RoundRobin, m.addr))
	c := client(b, "", addr(b, s, "r"))
	d := make([]byte, 64)
	buf := make([]byte, 128)
	for b.Loop() {
		if _, err := c.Write(d); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlowSocket prices the choice of a connected upstream socket per
// flow against one shared socket per member: what a flow's own socket
// costs to set up and tear down (socket, connect, epoll_ctl ADD, close),
// the system calls a shared socket would save at each flow's start and
// end. A shared socket would instead cost a map lookup per reply to find
// its client, and would not receive the ICMP errors (port unreachable)
// that end a flow and feed passive health checks: a connected socket only
// gets them. Report the ns/op beside BenchmarkRequestResponse's cost per
// query.
//
//	go test -run - -bench FlowSocket ./internal/udp/
func BenchmarkFlowSocket(b *testing.B) {
	m := newMember(b, "udp4", "127.0.0.1:0", echo)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(epfd)
	to := &unix.SockaddrInet4{Port: int(m.addr.Port()), Addr: m.addr.Addr().As4()}
	for b.Loop() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Connect(fd, to); err != nil {
			b.Fatal(err)
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			b.Fatal(err)
		}
		unix.Close(fd)
	}
}
