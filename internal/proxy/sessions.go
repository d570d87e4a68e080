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
// order, at most limit: ListSessions by ID.
func (s *Server) Sessions(ctx context.Context, m relay.Match, after uint64, limit int) (page []relay.SessionInfo, matched int, partial bool) {
	return s.ListSessions(ctx, m, relay.Paging{Order: relay.ByID, Cursor: after, Limit: limit})
}

// ListSessions pages the live sessions matching m as p says, in p.Order:
// by ID, those after p.Cursor (pass a page's last ID for the next); by
// age, newest first, those before p.Cursor (0: from the newest; pass a
// page's last ID for the next); by bytes, each way summed, heaviest
// first, the p.Limit after the p.Offset heaviest. Each loop keeps its
// own first p.Offset+p.Limit; merged and sorted here, they hold the
// page. Bytes change while loops are read, so pages by bytes may overlap
// or skip a session. matched counts every match on the loops that
// answered; partial reports a loop that did not answer before ctx ended.
func (s *Server) ListSessions(ctx context.Context, m relay.Match, p relay.Paging) (page []relay.SessionInfo, matched int, partial bool) {
	p.Limit, p.Offset = max(p.Limit, 0), max(p.Offset, 0)
	if p.Order != relay.ByBytes {
		p.Offset = 0
	}
	replies := make(chan listReply, len(s.loops))
	asked := 0
	for _, l := range s.loops {
		if l.List(m, p, func(p []relay.SessionInfo, n int) { replies <- listReply{p, n} }) {
			asked++
		}
	}
	partial = collect(ctx, replies, asked, func(r listReply) bool {
		page = append(page, r.page...)
		matched += r.matched
		return false
	})
	slices.SortFunc(page, func(a, b relay.SessionInfo) int { return p.Order.Compare(&a, &b) })
	page = page[min(p.Offset, len(page)):]
	if len(page) > p.Limit {
		page = page[:p.Limit]
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
	partial = collect(ctx, replies, asked, func(f bool) bool {
		found = f
		return f
	})
	return found, partial
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
	partial = collect(ctx, replies, asked, func(k int) bool {
		n += k
		return false
	})
	return n, partial
}

// collect takes the replies of the asked loops, each passed to take,
// until take reports it has what it needs or ctx ends: then partial is
// true, and the replies still to come go into the channel's buffer,
// which has room for every loop's.
func collect[T any](ctx context.Context, replies <-chan T, asked int, take func(T) (enough bool)) (partial bool) {
	for range asked {
		select {
		case r := <-replies:
			if take(r) {
				return false
			}
		case <-ctx.Done():
			return true
		}
	}
	return false
}
