package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	_ "github.com/pierproxy/pier/filter/builtin" // the built-in filters
)

const forwardExamples = `  pier forward :9090 smtp.example.com:25
      every client on port 9090 gets its own connection to smtp.example.com:25
  pier forward 127.0.0.1:6000 10.0.0.5:6000 10.0.0.6:6000 -idle-timeout 10m
      two upstreams, used in turn; flags may stand before or after the addresses
  pier forward :9090 db.internal:5432 --dump hex --pcap db.pcap --latency 100ms
      print every chunk as a hex dump, record a pcap, delay what the upstream sends by 100ms
  pier forward :9090 db.internal:5432 --latency delay=100ms,jitter=10ms,direction=upstream
      a filter flag takes its main option alone, or a list of option=value
  pier forward :9090 db.internal:5432 -pidfile /run/pier.pid
      kill -TERM $(cat /run/pier.pid) stops it
  pier forward :9090 db.internal:5432 -admin 127.0.0.1:9901
      serve the admin API and Prometheus metrics: curl http://127.0.0.1:9901/metrics
  pier forward :443 app.internal:8080 -tls-cert cert.pem -tls-key key.pem
      terminate TLS: clients handshake with pier, the upstream gets plaintext
  pier forward :5432 db.internal:5432 -upstream-tls -upstream-ca ca.pem
      originate TLS: pier connects to the upstream over TLS, verified against ca.pem
  pier forward -udp :53 10.0.0.2:53 10.0.0.3:53 -responses 1 -balance hash
      forward DNS over UDP to two resolvers; each query's flow ends with its answer
`

// runForward is 'pier forward': one route from the command line. Its
// flags and arguments become a config.Config through the parser a file
// goes through (config.FromCommandLine), so each takes the values the
// file's field takes, with the same defaults and the same errors.
func runForward(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newForwardFlags()
	fs, s, pidfile, lf := f.fs, &f.settings, f.pidfile, &f.log
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return fs.usage(errors.New("forward: need a listen address and at least one upstream"))
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fs.usage(err)
	}
	defer lf.closeLog()
	cfg, err := config.FromCommandLine("forward", s.list)
	if err != nil {
		return fs.usage(err)
	}
	err = serve(ctx, cfg, lf.appOptions(log), *pidfile)
	lf.logDropped(log)
	return err
}

// registerFilterFlags adds a flag per registered filter (slow_close as
// -slow-close; parse adds -slow_close). Each use adds the filter to the
// chain, in command-line order. The value is the filter's main option
// (its FlagKey), or a list of option=value separated by commas; an
// option given twice is a list. config reads it as a file's filters:
// entry.
func registerFilterFlags(fs *flagSet, into *settings) {
	for _, name := range filter.Names() {
		spec, _ := filter.Lookup(name)
		flagName := strings.ReplaceAll(name, "_", "-")
		usage := spec.Short
		if spec.FlagKey != "" {
			usage += fmt.Sprintf(" (value: %s, or option=value,...)", spec.FlagKey)
		} else {
			usage += " (value: option=value,...)"
		}
		fs.Func(flagName, usage, func(v string) error {
			into.add("filter", name, v, "flag -"+flagName)
			return nil
		})
	}
}

// shortDuration writes d as a person would in a flag: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// protocolFlag is -udp: alone, or -udp=true, it sets the route's
// protocol to udp; -udp=false to tcp.
type protocolFlag struct{ settingFlag }

func (f *protocolFlag) IsBoolFlag() bool { return true }

func (f *protocolFlag) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	if b {
		return f.settingFlag.Set(config.UDP)
	}
	return f.settingFlag.Set(config.TCP)
}

// forwardFlags are the flags of 'pier forward', and what they collect.
type forwardFlags struct {
	fs       *flagSet
	settings settings
	pidfile  *string
	log      logFlags
}

// newForwardFlags registers the flags of 'pier forward'. The arguments
// join the settings where they stand among the flags, so that errors
// come in command-line order.
func newForwardFlags() *forwardFlags {
	f := &forwardFlags{fs: newFlagSet("forward", "pier forward [flags] LISTEN UPSTREAM [UPSTREAM...]", forwardExamples)}
	fs, s := f.fs, &f.settings
	s.setting(fs, "connect-timeout", "connect_timeout", shortDuration(config.DefaultConnectTimeout), "bound on one dial to an upstream, a `duration` more than 0")
	s.setting(fs, "idle-timeout", "idle_timeout", shortDuration(config.DefaultIdleTimeout), "end a session after no byte moved either way for this `duration` (0: never)")
	s.setting(fs, "half-close-timeout", "half_close_timeout", shortDuration(config.DefaultHalfCloseTimeout), "once one side has finished, end the session if the other has not within this `duration` (0: never)")
	s.setting(fs, "max-connections", "max_connections", "0", "close new clients at once beyond this `number` of live sessions (0: no limit)")
	fs.Var(&protocolFlag{settingFlag{key: "protocol", name: "udp", into: s}}, "udp", "forward UDP datagrams instead of TCP streams: a flow per client address, ended after -idle-timeout (default 30s with -udp) or -responses")
	s.setting(fs, "responses", "responses", "0", "with -udp, the `number` of replies each datagram from the client is owed; a flow ends once all are delivered (1 for DNS; 0: no such end)")
	s.setting(fs, "max-flows", "max_flows", fmt.Sprint(config.DefaultMaxFlows), "with -udp, drop datagrams that would open a flow beyond this `number` of live flows, 1 to 1048576")
	s.setting(fs, "balance", "balance", "round_robin", "how an upstream is chosen, a `policy`: round_robin, least_conn, random or hash (on the client's address)")
	s.setting(fs, "retries", "retries", fmt.Sprint(config.DefaultRetries), "after a failed connect, try up to this `number` of other upstreams, 0 to 100")
	s.setting(fs, "grace", "grace_period", shortDuration(config.DefaultGracePeriod), "on SIGTERM or SIGINT, let live sessions finish for this `duration`, more than 0")
	s.setting(fs, "allow", "allow", "", "accept clients only from this `CIDR` (repeatable; deny wins)")
	s.setting(fs, "deny", "deny", "", "refuse clients from this `CIDR` at once (repeatable)")
	s.setting(fs, "accept-proxy", "accept_proxy", "", "believe a PROXY header (v1 or v2) from this `CIDR` (repeatable): its client address replaces the peer's")
	s.setting(fs, "send-proxy", "send_proxy", "", "send a PROXY header of this `version` (v1 or v2) to the upstream before any client byte")
	s.setting(fs, "tls-cert", "tls_cert", "", "terminate TLS from clients with the certificate in this PEM `file` (needs -tls-key)")
	s.setting(fs, "tls-key", "tls_key", "", "the private key of -tls-cert, a PEM `file`")
	s.boolSetting(fs, "upstream-tls", "upstream_tls", "connect to the upstreams over TLS, verifying their certificates (the system's roots unless -upstream-ca)")
	s.setting(fs, "upstream-ca", "upstream_ca", "", "verify upstream certificates against the CA bundle in this PEM `file` (implies -upstream-tls)")
	s.setting(fs, "upstream-server-name", "upstream_server_name", "", "the server `name` sent to upstreams and verified in their certificates (implies -upstream-tls; default: the upstream's host name)")
	s.boolSetting(fs, "upstream-insecure", "upstream_insecure", "accept any upstream certificate, unverified (implies -upstream-tls; pier warns at start)")
	s.setting(fs, "handshake-timeout", "handshake_timeout", shortDuration(config.DefaultHandshakeTimeout), "bound on each TLS handshake, with a client or an upstream, a `duration` up to 5m")
	s.setting(fs, "admin", "admin", "", "serve the admin API and metrics on this `address` (host:port; loopback unless -admin-token-file is set)")
	s.setting(fs, "admin-token-file", "admin_token_file", "", "require the bearer token in this `file` on every admin request")
	f.pidfile = fs.String("pidfile", "", "write pier's process id to this `file` once listening; removed on exit")
	f.log.register(fs.FlagSet)
	registerFilterFlags(fs, s)
	fs.arg = func(i int, a string) {
		key := "upstream"
		if i == 0 {
			key = "listen"
		}
		s.add(key, "", a, fmt.Sprintf("argument %d", i+1))
	}
	return f
}
