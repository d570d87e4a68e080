package app

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/relay"
	"github.com/pierproxy/pier/internal/session"
)

// Sessions pages the live sessions in the query's order; a loop that
// does not answer before ctx ends makes the page partial rather than
// late.
func (c control) Sessions(ctx context.Context, q admin.SessionQuery) (admin.SessionPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	// One more than the page: whether it is there says if a next page is.
	p := paging(q)
	p.Limit = limit + 1
	page, matched, partial := c.d.srv.ListSessions(ctx, match(q), p)
	more := len(page) > limit
	if more {
		page = page[:limit]
	}
	out := admin.SessionPage{Matched: matched, Partial: partial, Sessions: make([]admin.Session, 0, len(page))}
	now := time.Now()
	for _, s := range page {
		v := admin.Session{
			ID: s.ID, Route: s.Route, Client: s.Client.String(), Upstream: s.Upstream,
			AgeSeconds:      now.Sub(s.Start).Seconds(),
			BytesToUpstream: s.ToUpstream, BytesToClient: s.ToClient,
			State: s.State.String(), Filters: s.Filters,
		}
		if s.Dialed.IsValid() {
			v.Dialed = s.Dialed.String()
		}
		sessionEdge(&v, &s.Edge)
		v.TLS = sessionTLS(&s.TLS)
		out.Sessions = append(out.Sessions, v)
	}
	if more {
		switch p.Order {
		case relay.ByBytes:
			out.Next = uint64(q.Offset + limit)
		default: // the last ID: after it by ID, before it by age
			out.Next = page[len(page)-1].ID
		}
	}
	return out, nil
}

// paging is q's order and cursor, as the relay loops page.
func paging(q admin.SessionQuery) relay.Paging {
	switch q.Sort {
	case admin.SortAge:
		return relay.Paging{Order: relay.ByAge, Cursor: q.Before}
	case admin.SortBytes:
		return relay.Paging{Order: relay.ByBytes, Offset: q.Offset}
	}
	return relay.Paging{Order: relay.ByID, Cursor: q.After}
}

func match(q admin.SessionQuery) relay.Match {
	return relay.Match{Route: q.Route, Member: q.Member, Client: q.Client}
}

// EndSession ends one live session (reason=admin).
func (c control) EndSession(ctx context.Context, id uint64, mode string) error {
	reset, err := endMode(mode)
	if err != nil {
		return err
	}
	found, partial := c.d.srv.EndSession(ctx, id, reset)
	switch {
	case found:
		c.d.log.Info("session ended through the admin API", "id", id, "mode", mode)
		return nil
	case partial:
		return admin.ErrPartial
	}
	return fmt.Errorf("session %d: %w", id, admin.ErrNotFound)
}

// EndSessions ends every live session q matches (reason=admin).
func (c control) EndSessions(ctx context.Context, q admin.SessionQuery, mode string) (int, error) {
	reset, err := endMode(mode)
	if err != nil {
		return 0, err
	}
	n, partial := c.d.srv.EndSessions(ctx, match(q), reset)
	c.d.log.Info("sessions ended through the admin API", "route", q.Route, "member", q.Member, "client", q.Client, "mode", mode, "ended", n)
	if partial {
		return n, admin.ErrPartial
	}
	return n, nil
}

func endMode(mode string) (reset bool, err error) {
	switch mode {
	case "", "close":
		return false, nil
	case "reset":
		return true, nil
	}
	return false, &admin.Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("mode %q is not close or reset", mode),
		Problems: []admin.Problem{{Field: "mode", Message: "close or reset"}}}
}

// endRoute ends a route's live sessions, for the Toxiproxy server's
// disable and delete.
func (d *Daemon) endRoute(ctx context.Context, route string, reset bool) (int, error) {
	n, partial := d.srv.EndSessions(ctx, relay.Match{Route: route}, reset)
	if partial {
		return n, fmt.Errorf("route %s: a relay loop did not answer in time; %d sessions ended", route, n)
	}
	return n, nil
}

// sessionTLS is the admin API's view of a session's TLS; nil without any.
func sessionTLS(t *session.TLS) *admin.SessionTLS {
	if t.Client == nil && t.Upstream == nil && t.Truncated == "" {
		return nil
	}
	side := func(h *session.TLSHandshake) *admin.TLSHandshake {
		if h == nil {
			return nil
		}
		return &admin.TLSHandshake{Version: h.Version, Cipher: h.Cipher, SNI: h.ServerName, ALPN: h.ALPN, Peer: h.PeerSubject, Resumed: h.Resumed}
	}
	return &admin.SessionTLS{Client: side(t.Client), Upstream: side(t.Upstream), Truncated: t.Truncated}
}
