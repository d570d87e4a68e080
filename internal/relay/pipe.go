package relay

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// pipeSize is the capacity asked of each splice pipe: 1 MiB, Linux's
// default fs.pipe-max-size. A larger pipe moves more bytes per pair of
// splice calls (bulk throughput measured 1.5 times that of a 64 KiB pipe
// here); its pages are taken only while bytes are in it, and a pipe is
// held only while bytes are in flight.
var pipeSize = 1 << 20 // a variable only so a test can ask for short pipes

// maxFreePipes bounds the pipes a loop keeps for reuse. Beyond it a released
// pipe is closed, so a burst of bulk transfers does not leave descriptors
// behind, nor hold much of the user's pipe budget (fs.pipe-user-pages-soft,
// 64 MiB by default, counts a pipe's capacity whether or not it is full).
const maxFreePipes = 8

// A pipe is the kernel buffer splice(2) moves bytes through: socket to
// pipe, pipe to socket, without a copy to user space.
type pipe struct {
	r, w int
	size int // capacity in bytes
}

// pipe2 is pipe2(2); a variable only so that a test can make it fail as it
// does for a process out of descriptors.
var pipe2 = unix.Pipe2

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	p := &pipe{r: fds[0], w: fds[1]}
	// A larger pipe is an optimisation: the one the kernel gave still
	// works when a limit refuses (fs.pipe-max-size, or a user past
	// fs.pipe-user-pages-soft, whose pipes shrink to two pages).
	unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize)
	n, err := unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0)
	if err != nil || n <= 0 {
		p.close()
		return nil, fmt.Errorf("relay: pipe size: %v", err)
	}
	p.size = n
	return p, nil
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// getPipe returns an empty pipe from the loop's free list or a new one.
func (l *Loop) getPipe() (*pipe, error) {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p, nil
	}
	p, err := newPipe()
	if err == nil {
		l.fds.Add(2)
	}
	return p, err
}

// putPipe takes back a pipe. Only an empty pipe may be reused; one that
// still holds bytes from a dead session is closed.
func (l *Loop) putPipe(p *pipe, empty bool) {
	if empty && len(l.pipes) < maxFreePipes {
		l.pipes = append(l.pipes, p)
		return
	}
	p.close()
	l.fds.Add(-2)
}
