package discover

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/pierproxy/pier/internal/testutil/dnstest"
)

// systemOn is System with its queries sent to s: Go's own resolver, as
// System uses it, with the server of resolv.conf replaced.
func systemOn(s *dnstest.Server) Resolver {
	return system{&net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr())
		},
	}}
}

func TestSystemHostAndSRV(t *testing.T) {
	s := dnstest.New(t)
	s.SetA("db.example", 60, ip("2001:db8::1"), ip("192.0.2.1"))
	s.SetSRV("_db._tcp.example", 60,
		dnstest.SRV{Priority: 1, Weight: 10, Port: 5432, Target: "db.example"},
		dnstest.SRV{Priority: 2, Weight: 20, Port: 5432, Target: "gone.example"},
	)
	r := systemOn(s)

	// Names end in a dot so that no search domain of the machine applies.
	got, ttl, err := r.Host(testCtx(t), "db.example.", 80)
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, got, []Endpoint{ep("192.0.2.1", 80, "db.example"), ep("2001:db8::1", 80, "db.example")})
	if ttl != 0 {
		t.Errorf("TTL %v, want 0: the system resolver does not tell", ttl)
	}

	got, _, err = r.SRV(testCtx(t), "_db._tcp.example.")
	if err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, got, []Endpoint{srvEp("192.0.2.1", 5432, 1, 10, "db.example"), srvEp("2001:db8::1", 5432, 1, 10, "db.example")})

	_, _, err = r.Host(testCtx(t), "nope.example.", 80)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
}
