package relay

import (
	"golang.org/x/sys/unix"
)

// pipeSize is the capacity asked of each splice pipe. A larger pipe moves
// more bytes per pair of splice calls on bulk transfers; it costs nothing
// while empty, and a pipe is held only while bytes are in flight.
const pipeSize = 256 << 10

// maxFreePipes bounds the pipes a loop keeps for reuse. Beyond it a released
// pipe is closed, so a burst of bulk transfers does not leave descriptors
// behind.
const maxFreePipes = 32

// A pipe is the kernel buffer splice(2) moves bytes through: socket to
// pipe, pipe to socket, without a copy to user space.
type pipe struct {
	r, w int
	size int // capacity in bytes
}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	p := &pipe{r: fds[0], w: fds[1], size: 64 << 10}
	// A larger pipe is an optimisation: the default 64 KiB one still works
	// when the system limit (fs.pipe-max-size) refuses.
	if n, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		p.size = n
	}
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
	return newPipe()
}

// putPipe takes back a pipe. Only an empty pipe may be reused; one that
// still holds bytes from a dead session is closed.
func (l *Loop) putPipe(p *pipe, empty bool) {
	if empty && len(l.pipes) < maxFreePipes {
		l.pipes = append(l.pipes, p)
		return
	}
	p.close()
}
