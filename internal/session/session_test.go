package session

import "testing"

// TestReasonNamesDistinct pins that every reason has a name of its own:
// the access log and the metrics label sessions by it, and two reasons
// under one name (or "unknown") would merge counts that mean different
// things.
func TestReasonNamesDistinct(t *testing.T) {
	seen := make(map[string]Reason)
	for r := range Reason(NumReasons) {
		name := r.String()
		if name == "" || name == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("reasons %d and %d share the name %q", other, r, name)
		}
		seen[name] = r
	}
	if got := Admin.String(); got != "admin" {
		t.Errorf("Admin = %q, want admin", got)
	}
	if got := Reason(NumReasons).String(); got != "unknown" {
		t.Errorf("one past the last reason = %q, want unknown", got)
	}
}

// TestStateNamesDistinct pins the same for the states of a live session.
func TestStateNamesDistinct(t *testing.T) {
	want := []string{"connecting", "open", "half_closed_client", "half_closed_upstream"}
	if NumStates != len(want) {
		t.Fatalf("NumStates = %d, want %d", NumStates, len(want))
	}
	seen := make(map[string]State)
	for s := range State(NumStates) {
		name := s.String()
		if name != want[s] {
			t.Errorf("state %d = %q, want %q", s, name, want[s])
		}
		if other, ok := seen[name]; ok {
			t.Errorf("states %d and %d share the name %q", other, s, name)
		}
		seen[name] = s
	}
	if got := State(NumStates).String(); got != "unknown" {
		t.Errorf("one past the last state = %q, want unknown", got)
	}
}
