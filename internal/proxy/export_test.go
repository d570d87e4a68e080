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
	s.watch = func(l *relay.Loop, fd int, ready func(*relay.Loop)) <-chan error {
		calls++
		if calls-1 == n {
			res := make(chan error, 1)
			res <- err
			return res
		}
		return l.Watch(fd, ready)
	}
}

// Loops returns how many relay loops the server runs.
func Loops(s *Server) int { return len(s.loops) }

// DescriptorsPerSession is what the descriptor reserve counts per session.
const DescriptorsPerSession = descriptorsPerSession

// Descriptors returns the descriptors the server's loops hold for
// sessions.
func Descriptors(s *Server) int64 {
	var n int64
	for _, l := range s.loops {
		n += l.Descriptors()
	}
	return n
}

// LoopSessions returns each loop's live sessions.
func LoopSessions(s *Server) []int64 {
	var n []int64
	for _, l := range s.loops {
		n = append(n, l.Live())
	}
	return n
}
