package stats

import (
	"slices"
	"testing"
)

// TestListenerNames pins the label values the metrics use for the edge's
// counters.
func TestListenerNames(t *testing.T) {
	var got []string
	for i := range ListenerRefusal(NumListenerRefusals) {
		got = append(got, i.String())
	}
	if want := []string{"denied", "no_route", "proxy_untrusted", "proxy_error", "rate_limit", "client_limit"}; !slices.Equal(got, want) {
		t.Errorf("listener refusals %q, want %q", got, want)
	}
	got = nil
	for i := range PeekResult(NumPeekResults) {
		got = append(got, i.String())
	}
	if want := []string{"tls", "not_tls", "timeout", "too_large", "closed"}; !slices.Equal(got, want) {
		t.Errorf("peek results %q, want %q", got, want)
	}
	got = nil
	for i := range HeaderResult(NumHeaderResults) {
		got = append(got, i.String())
	}
	if want := []string{"v1", "v2", "local", "absent"}; !slices.Equal(got, want) {
		t.Errorf("header results %q, want %q", got, want)
	}
}

// TestListenerTotalsSumLoops pins that a listener's counts are summed over
// its loops' shards, and that a nil listener or shard counts nothing.
func TestListenerTotalsSumLoops(t *testing.T) {
	l := NewListener(2)
	for loop := range 2 {
		sh := l.Shard(loop)
		sh.Refuse(ListenerDenied)
		sh.Peek(PeekTLS)
		sh.Header(HeaderLocal)
		sh.EnterPeeking()
	}
	l.Shard(1).LeavePeeking()
	tot := l.Totals()
	if tot.Refused[ListenerDenied] != 2 || tot.Peeks[PeekTLS] != 2 || tot.Headers[HeaderLocal] != 2 || tot.Peeking != 1 {
		t.Errorf("totals %+v", tot)
	}
	var nl *Listener
	nl.Shard(0).Refuse(ListenerNoRoute)
	if l.Shard(2) != nil || nl.Totals() != (ListenerTotals{}) {
		t.Error("a nil listener or a loop beyond it counted")
	}
}

// TestMatchesCountByKey pins the per-key counts of a route's matches.
func TestMatchesCountByKey(t *testing.T) {
	m := NewMatches([]string{"sni:a.example.com", "default"}, 2)
	m.Shard(0).Add(1)
	m.Shard(1).Add(1)
	m.Shard(1).Add(0)
	m.Shard(0).Add(-1) // no match key: not counted
	m.Shard(0).Add(2)
	if got := m.Totals(); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("totals %v, want [1 2]", got)
	}
	var nm *Matches
	nm.Shard(0).Add(0)
	if nm.Totals() != nil || nm.Keys() != nil {
		t.Error("a nil Matches counted")
	}
}
