package health

import "testing"

// A verdict changes only after rise (fall) consecutive results against it,
// and Observe reports exactly the results that changed it.
func TestStateChangesAfterConsecutiveResults(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rise, fall int
		up         bool
		results    string // + success, - failure
		verdicts   string // U or D after each result
	}{
		{"a new member starts up and falls after fall failures", 2, 3, true, "---", "UUD"},
		{"a success between failures resets the count", 2, 3, true, "--+---", "UUUUUD"},
		{"successes keep an up member up", 2, 3, true, "++++", "UUUU"},
		{"a member that starts down rises after rise successes", 2, 3, false, "++", "DU"},
		{"a failure between successes resets the count", 3, 2, false, "++-+++", "DDDDDU"},
		{"the count starts afresh after a change", 2, 2, true, "--+-++", "UDDDDU"},
		{"rise and fall of 1 follow every result", 1, 1, true, "-+-+", "DUDU"},
		{"rise and fall below 1 count as 1", 0, -1, true, "-+", "DU"},
		{"failures keep a down member down", 2, 2, false, "----", "DDDD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState(tc.rise, tc.fall, tc.up)
			if s.Up() != tc.up {
				t.Fatalf("initial Up() = %v, want %v", s.Up(), tc.up)
			}
			prev := tc.up
			for i, r := range tc.results {
				changed := s.Observe(r == '+')
				want := tc.verdicts[i] == 'U'
				if s.Up() != want || changed != (want != prev) {
					t.Fatalf("after %q: Up() = %v, changed = %v; want %v, %v", tc.results[:i+1], s.Up(), changed, want, want != prev)
				}
				prev = want
			}
		})
	}
}
