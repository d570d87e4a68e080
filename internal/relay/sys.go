package relay

import (
	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/nonblock"
)

// The system calls the flow engine makes, retried on EINTR (a signal
// delivered to the loop's thread must not look like an error of the
// peer). They go through package nonblock, which skips Go's scheduler
// bookkeeping: each of them returns at once.

func read(fd int, b []byte) (int, error) {
	for {
		n, err := nonblock.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

func write(fd int, b []byte) (int, error) {
	for {
		n, err := nonblock.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

func splice(from, to, n int) (int, error) {
	for {
		m, err := nonblock.Splice(from, to, n)
		if err == unix.EINTR {
			continue
		}
		return m, err
	}
}

// closeFD closes a session's socket or pipe end. Close never fails in a
// way the loop could act on: the descriptor is gone either way.
func closeFD(fd int) { nonblock.Close(fd) }

// shutdownWR passes a FIN on. The peer may already be gone; what matters
// is that our side has nothing more to send. A variable only so that a
// test can count the calls.
var shutdownWR = func(fd int) { nonblock.Shutdown(fd, unix.SHUT_WR) }
