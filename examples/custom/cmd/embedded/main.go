// Command embedded runs pier inside a program of its own: one route,
// built in code, from a local port to the upstream given as its argument,
// with the mask filter on it. It prints the address it listens on and
// serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pierproxy/pier"
	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"

	_ "example.com/pier-custom/mask" // registers "mask"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: embedded UPSTREAM")
	}
	cfg := &config.Config{
		GracePeriod: 5 * time.Second,
		Routes: []config.Route{{
			Name:        "masked",
			Listen:      []string{"127.0.0.1:0"},
			Upstreams:   []config.Upstream{{Address: args[0]}},
			IdleTimeout: time.Hour, // zero would be: never
			Filters: []config.Filter{{
				Name:    "mask",
				Options: map[string]filter.Value{"char": {Text: "*"}},
			}},
		}},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// No Log: pier's own logger, text to stderr through a queue that never
	// makes a session wait.
	p, err := pier.Start(cfg, pier.Options{})
	if err != nil {
		return err
	}
	fmt.Println("listening on", p.Addrs("masked")[0])
	<-ctx.Done()
	return p.Shutdown(context.Background())
}
