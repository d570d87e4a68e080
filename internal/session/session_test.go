package session

import (
	"net/netip"
	"strings"
	"testing"
)

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
	// The access log and the metrics spell the reasons so.
	for r, want := range map[Reason]string{
		Admin: "admin", Denied: "denied", NoRoute: "no_route", ProxyUntrusted: "proxy_untrusted",
		ProxyError: "proxy_error", ClientLimit: "client_limit", RateLimit: "rate_limit",
	} {
		if got := r.String(); got != want {
			t.Errorf("reason %d = %q, want %q", r, got, want)
		}
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
	// Peeking sits just past the states the route counts index.
	if got := Peeking.String(); got != "peeking" {
		t.Errorf("Peeking = %q, want peeking", got)
	}
	if got := State(Peeking + 1).String(); got != "unknown" {
		t.Errorf("one past Peeking = %q, want unknown", got)
	}
}

// TestEdgeAttrs pins that a record's edge adds its set fields to the
// access log line, in order, and a nil edge adds nothing.
func TestEdgeAttrs(t *testing.T) {
	r := &Record{Route: "db"}
	plain := len(r.Attrs())
	r.Edge = &Edge{
		Peer: netip.MustParseAddrPort("127.0.0.1:4000"), Proxy: "v2", SNI: "db.example.com",
		ALPN: []string{"h2", "http/1.1"}, Matched: "sni:db.example.com", Authority: "db.example.com",
		UniqueID: "7", ProxyALPN: "h2", SSLVersion: "TLSv1.3", SSLCN: "client", Limit: "client_rate", Suppressed: 3,
	}
	var keys []string
	for _, a := range r.Attrs()[plain:] {
		keys = append(keys, a.Key+"="+a.Value.String())
	}
	want := "peer=127.0.0.1:4000 proxy=v2 sni=db.example.com alpn=h2,http/1.1 match=sni:db.example.com " +
		"tlv_authority=db.example.com tlv_unique_id=7 tlv_alpn=h2 tlv_ssl_version=TLSv1.3 tlv_ssl_cn=client " +
		"limit=client_rate suppressed=3"
	if got := strings.Join(keys, " "); got != want {
		t.Errorf("edge attrs = %q, want %q", got, want)
	}
	r.Edge = &Edge{SNI: "a.example.com"}
	if got := len(r.Attrs()) - plain; got != 1 {
		t.Errorf("an edge with only sni adds %d attrs, want 1", got)
	}
}
