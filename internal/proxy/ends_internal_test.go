package proxy

import (
	"testing"

	"github.com/pierproxy/pier/internal/session"
)

// A loop remembers only its last recentEnds sessions, the newest first.
func TestEndRingKeepsTheNewest(t *testing.T) {
	var e endRing
	for i := range recentEnds + 10 {
		e.add(&session.Record{ID: uint64(i + 1), Reason: session.Done})
	}
	got := e.match(EndsMatch{}, recentEnds+100)
	if len(got) != recentEnds || got[0].ID != recentEnds+10 || got[len(got)-1].ID != 11 {
		t.Fatalf("kept %d, newest %d, oldest %d", len(got), got[0].ID, got[len(got)-1].ID)
	}
	if got := e.match(EndsMatch{Reason: session.ConnectFailed}, 10); len(got) != 0 {
		t.Fatalf("%d ends of a reason none had", len(got))
	}
}
