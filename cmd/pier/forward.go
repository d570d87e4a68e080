package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pierproxy/pier/config"
)

const forwardExamples = `  pier forward :9090 smtp.example.com:25
      every client on port 9090 gets its own connection to smtp.example.com:25
  pier forward 127.0.0.1:6000 10.0.0.5:6000 10.0.0.6:6000 -idle-timeout 10m
      two upstreams, used in turn; flags may stand before or after the addresses
`

// runForward is 'pier forward': one route from the command line.
func runForward(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("forward", "pier forward [flags] LISTEN UPSTREAM [UPSTREAM...]", forwardExamples, stderr)
	r := config.Route{Name: "forward"}
	fs.DurationVar(&r.ConnectTimeout, "connect-timeout", config.DefaultConnectTimeout, "dial timeout per attempt")
	fs.DurationVar(&r.IdleTimeout, "idle-timeout", config.DefaultIdleTimeout, "end a session after no byte moved either way for this long (0: never)")
	fs.DurationVar(&r.HalfCloseTimeout, "half-close-timeout", config.DefaultHalfCloseTimeout, "once one side has finished, end the session if the other has not within this long (0: never)")
	fs.IntVar(&r.MaxConnections, "max-connections", 0, "close new clients at once beyond this many live sessions (0: no limit)")
	grace := fs.Duration("grace", config.DefaultGracePeriod, "on SIGTERM or SIGINT, let live sessions finish for this long")
	var lf logFlags
	lf.register(fs)
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
	for _, u := range pos[1:] {
		r.Upstreams = append(r.Upstreams, config.Upstream{Address: u})
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	cfg := &config.Config{GracePeriod: *grace, Routes: []config.Route{r}}
	return serve(ctx, cfg, "", log)
}
