package proxy

import (
	"time"

	"github.com/pierproxy/pier/internal/relay"
)

// SetDrainBound shortens how long Shutdown waits once ctx is done, for a
// test, and returns the old bound.
func SetDrainBound(d time.Duration) time.Duration {
	old := drainBound
	drainBound = d
	return old
}

// FailWatch makes the server's n-th loop Watch (counting from 0, across
// Apply calls) fail with err, for a test.
func FailWatch(s *Server, n int, err error) {
	calls := 0
	s.watch = func(l *relay.Loop, fd int, ready func(*relay.Loop)) error {
		calls++
		if calls-1 == n {
			return err
		}
		return l.Watch(fd, ready)
	}
}

// Loops returns how many relay loops the server runs.
func Loops(s *Server) int { return len(s.loops) }
