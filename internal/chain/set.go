package chain

import (
	"runtime/debug"
	"slices"
	"sync/atomic"

	"github.com/pierproxy/pier/filter"
)

// A Named is a configured filter and the name it was configured by, for
// logs and errors.
type Named struct {
	Name   string
	Filter filter.Filter
}

// A Set is a route's filters, listed from the client's side toward the
// upstream's: the bytes the client sends meet them in order, the bytes the
// upstream sends in reverse. So a filter sees both directions at the same
// place, like a stack: a pcap listed first records exactly what the client
// sent and received, whatever the filters after it do.
type Set struct {
	Filters []Named
}

// Chains makes both directions' chains for a session. A direction no
// filter takes part in gets nil, and takes the splice path.
//
// A panic in a Filter's Streams does not escape: both chains then start
// with a stage whose first Process returns it as an *Error (with the
// panic and its stack), so the session ends with filter_error the way a
// panic in Process ends it, and the Streams already made are closed with
// their chains.
func (s *Set) Chains(sess *filter.Session) (toUpstream, toClient *Chain) {
	if s == nil || len(s.Filters) == 0 {
		return nil, nil
	}
	var up, down []Stage
	for _, f := range s.Filters {
		u, d, perr := streams(f, sess)
		if perr != nil {
			failed := Stage{Name: f.Name, Stream: failedStream{perr}}
			slices.Reverse(down)
			return New(sess, filter.ToUpstream, append([]Stage{failed}, up...)),
				New(sess, filter.ToClient, append([]Stage{failed}, down...))
		}
		if u != nil {
			up = append(up, Stage{Name: f.Name, Stream: u})
		}
		if d != nil {
			down = append(down, Stage{Name: f.Name, Stream: d})
		}
	}
	slices.Reverse(down)
	if len(up) > 0 {
		toUpstream = New(sess, filter.ToUpstream, up)
	}
	if len(down) > 0 {
		toClient = New(sess, filter.ToClient, down)
	}
	return toUpstream, toClient
}

// streams calls f's Streams, turning a panic into an Error.
func streams(f Named, sess *filter.Session) (toUpstream, toClient filter.Stream, err *Error) {
	defer func() {
		if p := recover(); p != nil {
			toUpstream, toClient = nil, nil
			err = &Error{Filter: f.Name, Panic: p, Stack: debug.Stack()}
		}
	}()
	toUpstream, toClient = f.Filter.Streams(sess)
	return toUpstream, toClient, nil
}

// A failedStream stands for a Filter whose Streams panicked: it fails its
// session at its first call, which comes at once (a stage is called when
// it takes up its session).
type failedStream struct{ err *Error }

func (s failedStream) Process(*filter.Batch) error { return s.err }

// InForce holds a route's filter set in force, shared by the route's live
// sessions: storing a new Set reaches every one of them at its next chunk
// boundary. An idle session has none until a byte moves, so whoever
// stores also tells the relay loops (proxy.Server.FiltersChanged), which
// give the route's sessions a turn at once. The zero InForce holds no
// filters.
type InForce struct {
	p atomic.Pointer[Set]
}

// Load returns the set in force, or nil.
func (l *InForce) Load() *Set {
	if l == nil {
		return nil
	}
	return l.p.Load()
}

// Store puts s in force. A nil or empty s removes every filter.
func (l *InForce) Store(s *Set) { l.p.Store(s) }
