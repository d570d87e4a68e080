package config_test

import (
	"errors"
	"fmt"

	"github.com/pierproxy/pier/config"
)

func ExampleParse() {
	cfg, err := config.Parse("pier.yaml", []byte(`
routes:
  - name: smtp
    listen: [":9090"]
    upstreams:
      - address: mail1.internal:25
    idle_timeout: 10m
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	r := cfg.Routes[0]
	fmt.Println(r.Name, r.Listen, r.Upstreams[0].Address, r.IdleTimeout, r.ConnectTimeout, cfg.GracePeriod)
	// Output: smtp [:9090] mail1.internal:25 10m0s 5s 30s
}

func ExampleErrors() {
	_, err := config.Parse("pier.yaml", []byte(`
routes:
  - name: smtp
    listen: [":9090"]
    upstreams:
      - address: mail1.internal
    idle_timeout: 10 minutes
  - name: smtp
    listen: ["localhost:9090"]
    upstreams: [{address: mail2.internal:25}]
    colour: blue
`))
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Println(e)
		}
	}
	// Output:
	// pier.yaml:6:18: address: "mail1.internal": missing port: want host:port
	// pier.yaml:7:19: idle_timeout: "10 minutes" is not a duration (like 300ms, 5s, 1m30s, 2h)
	// pier.yaml:8:11: name: route "smtp" is already defined at line 3
	// pier.yaml:9:14: listen: "localhost:9090" overlaps ":9090" of route "smtp" (line 4); write the same address in both routes, each with a match, to share it
	// pier.yaml:11:5: route: unknown field "colour" (known: name, listen, protocol, upstreams, balance, health_check, passive_check, retries, connect_timeout, connect_budget, when_all_down, idle_timeout, half_close_timeout, max_connections, responses, max_flows, filters, match, peek_timeout, proxy_protocol, send_proxy, allow, deny, limits, tls, upstream_tls, handshake_timeout)
}
