package command

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	_ "github.com/pierproxy/pier/filter/builtin" // the built-in filters
	"github.com/pierproxy/pier/internal/pool"
)

const forwardExamples = `  pier forward :9090 smtp.example.com:25
      every client on port 9090 gets its own connection to smtp.example.com:25
  pier forward 127.0.0.1:6000 10.0.0.5:6000 10.0.0.6:6000 -idle-timeout 10m
      two upstreams, used in turn; flags may stand before or after the addresses
  pier forward :9090 db.internal:5432 --dump hex --pcap db.pcap --latency 100ms
      print every chunk as a hex dump, record a pcap, delay what the upstream sends by 100ms
  pier forward :9090 db.internal:5432 --latency delay=100ms,jitter=10ms,direction=upstream
      a filter flag takes its main option alone, or a list of option=value
`

// runForward is 'pier forward': one route from the command line.
func runForward(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("forward", "pier forward [flags] LISTEN UPSTREAM [UPSTREAM...]", forwardExamples, stderr)
	r := config.Route{
		Name: "forward",
		PassiveCheck: config.PassiveCheck{
			Failures:   config.DefaultPassiveFailures,
			Backoff:    config.DefaultBackoff,
			MaxBackoff: config.DefaultMaxBackoff,
		},
	}
	fs.DurationVar(&r.ConnectTimeout, "connect-timeout", config.DefaultConnectTimeout, "dial timeout per attempt")
	fs.DurationVar(&r.IdleTimeout, "idle-timeout", config.DefaultIdleTimeout, "end a session after no byte moved either way for this long (0: never)")
	fs.DurationVar(&r.HalfCloseTimeout, "half-close-timeout", config.DefaultHalfCloseTimeout, "once one side has finished, end the session if the other has not within this long (0: never)")
	fs.IntVar(&r.MaxConnections, "max-connections", 0, "close new clients at once beyond this many live sessions (0: no limit)")
	fs.StringVar(&r.Balance, "balance", "round_robin", "how an upstream is chosen: round_robin, least_conn, random or hash (on the client's address)")
	fs.IntVar(&r.Retries, "retries", config.DefaultRetries, "after a failed connect, try up to this many other upstreams")
	grace := fs.Duration("grace", config.DefaultGracePeriod, "on SIGTERM or SIGINT, let live sessions finish for this long")
	var lf logFlags
	lf.register(fs)
	registerFilterFlags(fs, &r.Filters)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		fs.Usage()
		return usageError{fmt.Errorf("forward: need a listen address and at least one upstream")}
	}
	for i, a := range pos {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return usageError{fmt.Errorf("forward: %q: %v", a, err)}
		}
		if i > 0 && host == "" {
			return usageError{fmt.Errorf("forward: upstream %q has no host", a)}
		}
	}
	for _, d := range []time.Duration{r.ConnectTimeout, r.IdleTimeout, r.HalfCloseTimeout, *grace} {
		if d < 0 {
			return usageError{fmt.Errorf("forward: durations may not be negative")}
		}
	}
	r.Listen = pos[:1]
	if _, err := pool.ParseBalance(r.Balance); err != nil {
		return usageError{fmt.Errorf("forward: -balance: want round_robin, least_conn, random or hash")}
	}
	if r.Retries < 0 {
		return usageError{fmt.Errorf("forward: -retries may not be negative")}
	}
	for _, u := range pos[1:] {
		r.Upstreams = append(r.Upstreams, config.Upstream{Address: u, Weight: 1})
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	cfg := &config.Config{GracePeriod: *grace, Routes: []config.Route{r}}
	return serve(ctx, cfg, "", log)
}

// registerFilterFlags adds a flag per registered filter (slow_close as
// -slow-close). Each use adds the filter to the chain, in command-line
// order. The value is the filter's main option (its FlagKey), or a list
// of option=value separated by commas; an option given twice is a list.
func registerFilterFlags(fs *flag.FlagSet, into *[]config.Filter) {
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
			f, err := parseFilterFlag(spec, v)
			if err != nil {
				return err
			}
			*into = append(*into, f)
			return nil
		})
	}
}

// parseFilterFlag turns one filter flag's value into its configuration,
// and checks it.
func parseFilterFlag(spec filter.Spec, v string) (config.Filter, error) {
	f := config.Filter{Name: spec.Name, Options: map[string]filter.Value{}}
	switch {
	case v == "":
		// --pass '': the filter with its defaults.
	case !strings.Contains(v, "="):
		if spec.FlagKey == "" {
			return f, fmt.Errorf("want option=value,... (one option alone needs the filter to name its main option)")
		}
		f.Options[spec.FlagKey] = filter.Value{Text: v}
	default:
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return f, fmt.Errorf("%q: want option=value", kv)
			}
			if old, dup := f.Options[k]; dup {
				if !old.IsList {
					old = filter.Value{IsList: true, List: []string{old.Text}}
				}
				old.List = append(old.List, val)
				f.Options[k] = old
				continue
			}
			f.Options[k] = filter.Value{Text: val}
		}
	}
	if _, err := spec.New(f.NewOptions().CheckOnly()); err != nil {
		return f, err
	}
	return f, nil
}
