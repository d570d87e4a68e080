package config

import (
	"errors"
	"testing"
)

// FuzzParse: whatever the bytes, Parse returns a valid configuration or
// positioned errors; it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		good,
		"grace_period: 1s\n" + good,
		"routes:\n  - name: r\n    listen: [':1', '[::1]:2']\n    upstreams: [{address: 'h:1'}, {address: '10.0.0.1:2'}]\n    max_connections: 5\n",
		"routes: [\n",
		"routes: *a\n",
		"a: &a [*a]\n",
		"routes:\n  - &r {name: r, listen: [':1'], upstreams: [{address: 'h:1'}]}\n  - *r\n",
		"",
		"~",
		"- 1\n",
		"routes: {<<: {}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v is not Errors", err)
			}
			if cfg != nil {
				t.Fatal("config returned with errors")
			}
			return
		}
		if len(cfg.Routes) == 0 {
			t.Fatal("valid config without routes")
		}
		for _, r := range cfg.Routes {
			if r.Name == "" || len(r.Listen) == 0 || len(r.Upstreams) == 0 || r.ConnectTimeout <= 0 || r.IdleTimeout <= 0 {
				t.Fatalf("invalid route accepted: %+v", r)
			}
			for _, u := range r.Upstreams {
				if checkUpstream(u.Address) != nil {
					t.Fatalf("bad upstream accepted: %q", u.Address)
				}
			}
		}
	})
}
