package command

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/app"
)

const runExamples = `  pier run -config /etc/pier/pier.yaml
      serve the routes of a config file; SIGHUP reloads it, SIGTERM drains and stops
  pier run -config pier.yaml -log-format json
`

const checkExamples = `  pier check -config pier.yaml
      print every error as file:line:col: message and exit 2, or exit 0 if the file is good
`

// runDaemon is 'pier run'.
func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "pier run [-config FILE] [flags]", runExamples, stderr)
	path := fs.String("config", "pier.yaml", "the configuration file")
	var lf logFlags
	lf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("run: unexpected argument %q", pos[0])}
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return usageError{err}
	}
	return serve(ctx, cfg, *path, log)
}

// runCheck is 'pier check'.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "pier check [-config FILE]", checkExamples, stderr)
	path := fs.String("config", "pier.yaml", "the configuration file")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("check: unexpected argument %q", pos[0])}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stdout, "%s: ok, %d routes\n", *path, len(cfg.Routes))
	return nil
}

// serve runs cfg until ctx is done or a signal says stop. SIGHUP reloads
// path, if the config came from a file; a bad file is logged and the
// running config stays. SIGTERM or SIGINT drains: listeners close, live
// sessions get the grace period, and a second signal cuts it short.
func serve(ctx context.Context, cfg *config.Config, path string, log *slog.Logger) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	d, err := app.Start(cfg, log)
	if err != nil {
		return err
	}
	for _, r := range cfg.Routes {
		for _, a := range d.Addrs(r.Name) {
			log.Info("listening", "route", r.Name, "addr", a.String())
		}
	}
	for {
		select {
		case <-ctx.Done():
			return d.Stop(context.Background())
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(d, path, log)
				continue
			}
			log.Info("stopping", "signal", sig.String(), "grace_period", d.Config().GracePeriod, "live", d.Live())
			stopCtx, cut := context.WithCancel(context.Background())
			go func() {
				select {
				case sig := <-sigs:
					log.Warn("second signal, ending live sessions now", "signal", sig.String())
					cut()
				case <-stopCtx.Done():
				}
			}()
			err := d.Stop(stopCtx)
			cut()
			return err
		}
	}
}

func reload(d *app.Daemon, path string, log *slog.Logger) {
	if path == "" {
		log.Warn("SIGHUP ignored: no config file to reload")
		return
	}
	cfg, err := config.Load(path)
	if err == nil {
		err = d.Reload(cfg)
	}
	if err != nil {
		log.Error("reload failed, keeping the running configuration", "file", path, "error", err)
		return
	}
	for _, r := range cfg.Routes {
		for _, a := range d.Addrs(r.Name) {
			log.Info("listening", "route", r.Name, "addr", a.String())
		}
	}
}
