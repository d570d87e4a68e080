package command

import (
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/config"
)

// -udp makes the route a udp route with its defaults (idle timeout 30s,
// max_flows 65536); -responses and -max-flows set its fields; -udp=false
// is tcp, as no flag is.
func TestForwardUDPFlags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		protocol  string
		idle      time.Duration
		responses int
		maxFlows  int
	}{
		{"tcp", nil, config.TCP, config.DefaultIdleTimeout, 0, 0},
		{"udp", []string{"-udp"}, config.UDP, config.DefaultUDPIdleTimeout, 0, config.DefaultMaxFlows},
		{"udp after the addresses", []string{"-responses", "1", "-udp", "-max-flows", "10", "-idle-timeout", "2s"}, config.UDP, 2 * time.Second, 1, 10},
		{"udp spelled as a file", []string{"-udp=true", "-max_flows", "7"}, config.UDP, config.DefaultUDPIdleTimeout, 0, 7},
		{"udp off", []string{"-udp=false"}, config.TCP, config.DefaultIdleTimeout, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := forwardConfig(t, append([]string{"127.0.0.1:0", "10.0.0.1:53", "10.0.0.2:53"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Routes[0]
			if r.Protocol != tc.protocol || r.IdleTimeout != tc.idle || r.Responses != tc.responses || r.MaxFlows != tc.maxFlows || len(r.Upstreams) != 2 {
				t.Errorf("route: protocol %q idle %v responses %d max_flows %d upstreams %d, want %q %v %d %d 2",
					r.Protocol, r.IdleTimeout, r.Responses, r.MaxFlows, len(r.Upstreams), tc.protocol, tc.idle, tc.responses, tc.maxFlows)
			}
		})
	}
}

// What a udp route refuses is refused at its flag, in the file's words,
// and so are the udp flags without -udp.
func TestForwardUDPFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"max connections", []string{"-udp", "-max-connections", "5"}, "flag -max-connections: not on a udp route: use max_flows to cap the route's flows"},
		{"retries", []string{"-retries", "1", "-udp"}, "flag -retries: not on a udp route: a flow's member is chosen once"},
		{"connect timeout", []string{"-udp", "-connect-timeout", "1s"}, "flag -connect-timeout: not on a udp route: connecting a datagram socket sends nothing"},
		{"half close", []string{"-udp", "-half-close-timeout", "1s"}, "flag -half-close-timeout: not on a udp route: a flow has no half-close"},
		{"send proxy", []string{"-udp", "-send-proxy", "v2"}, "flag -send-proxy: not on a udp route: a PROXY header is written at the start of a TCP stream"},
		{"accept proxy", []string{"-udp", "-accept-proxy", "10.0.0.0/8"}, "flag -accept-proxy: proxy_protocol: not on a udp route"},
		{"upstream tls", []string{"-udp", "-upstream-tls"}, "flag -upstream-tls: not on a udp route: pier originates TLS over TCP only (no DTLS)"},
		{"tls", []string{"-udp", "-tls-cert", fwdCert, "-tls-key", fwdKey}, "not on a udp route: pier terminates TLS over TCP only (no DTLS)"},
		{"idle timeout never", []string{"-udp", "-idle-timeout", "0"}, "flag -idle-timeout: 0 (never) is refused on a udp route"},
		{"max flows zero", []string{"-udp", "-max-flows", "0"}, `flag -max-flows: "0" is not a whole number from 1 to 1048576`},
		{"responses without udp", []string{"-responses", "1"}, "flag -responses: only on a udp route (protocol: udp)"},
		{"max flows without udp", []string{"-max-flows", "9"}, "flag -max-flows: only on a udp route (protocol: udp)"},
		{"bad udp value", []string{"-udp=maybe"}, "udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := forwardConfig(t, append([]string{"127.0.0.1:0", "h:53"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}
