package proxy

import (
	"context"
	"slices"

	"github.com/pierproxy/pier/internal/relay"
)

// Listing and ending live sessions, for the admin API: each asks every
// loop (relay.Loop.List, End, EndMatching), which answers on its own
// turn, and waits for the answers until ctx is done. A loop that has not
// answered by then is left out and the answer says partial: a stuck loop
// must not hang the admin API, and its late answer goes to a buffered
// channel nobody reads any more.

// listReply is one loop's answer to List.
type listReply struct {
	page    []relay.SessionInfo
	matched int
}

// Sessions pages the live sessions matching m with ID > after, in ID
// order, at most limit; matched counts every match (whatever its ID) on
// the loops that answered; partial reports a loop that did not answer
// before ctx ended. Pass the last ID of a page as after for the next.
func (s *Server) Sessions(ctx context.Context, m relay.Match, after uint64, limit int) (page []relay.SessionInfo, matched int, partial bool) {
	limit = max(limit, 0)
	replies := make(chan listReply, len(s.loops))
	asked := 0
	for _, l := range s.loops {
		if l.List(m, after, limit, func(p []relay.SessionInfo, n int) { replies <- listReply{p, n} }) {
			asked++
		}
	}
	for range asked {
		select {
		case r := <-replies:
			page = append(page, r.page...)
			matched += r.matched
		case <-ctx.Done():
			partial = true
		}
		if partial {
			break
		}
	}
	slices.SortFunc(page, func(a, b relay.SessionInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	if len(page) > limit {
		page = page[:limit]
	}
	return page, matched, partial
}

// EndSession ends the session with that id (reason=admin): reset=false
// sends FIN both ways then closes; reset=true resets both sides. found
// says a loop held it; partial, when it was not found, that a loop did
// not answer before ctx ended (it may hold it, and may still end it).
func (s *Server) EndSession(ctx context.Context, id uint64, reset bool) (found, partial bool) {
	replies := make(chan bool, len(s.loops))
	asked := 0
	for _, l := range s.loops {
		if l.End(id, reset, func(f bool) { replies <- f }) {
			asked++
		}
	}
	for range asked {
		select {
		case f := <-replies:
			if f {
				return true, false
			}
		case <-ctx.Done():
			return false, true
		}
	}
	return false, false
}

// EndSessions ends every live session matching m (reason=admin), as
// EndSession does, and returns how many the loops that answered before
// ctx ended held; partial reports a loop that did not (it still ends its
// matches when it gets to them).
func (s *Server) EndSessions(ctx context.Context, m relay.Match, reset bool) (n int, partial bool) {
	replies := make(chan int, len(s.loops))
	asked := 0
	for _, l := range s.loops {
		if l.EndMatching(m, reset, func(k int) { replies <- k }) {
			asked++
		}
	}
	for range asked {
		select {
		case k := <-replies:
			n += k
		case <-ctx.Done():
			return n, true
		}
	}
	return n, false
}
