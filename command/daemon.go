package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/app"
)

const runExamples = `  pier run /etc/pier/pier.yaml -pidfile /run/pier.pid
      serve the routes of a config file; SIGHUP reloads it, SIGTERM drains and stops:
      kill -HUP $(cat /run/pier.pid)
  pier run -config pier.yaml -log-format json
      the file may also be given with -config
`

const checkExamples = `  pier check pier.yaml
      print every error as file:line:col: message and exit 2, or exit 0 if the file is good
  pier check -preview http://127.0.0.1:9901 pier.yaml
      and list what a reload of it would change in the running pier: listeners, routes,
      members and filters, with the live sessions each change touches
`

// configPath returns the config file of run or check: an argument, or
// -config, or pier.yaml.
func configPath(fs *flagSet, flagPath string, pos []string) (string, error) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "config" })
	switch {
	case len(pos) > 1:
		return "", fs.usage(fmt.Errorf("%s: want one config file, got %d arguments", fs.Name(), len(pos)))
	case len(pos) == 1 && given:
		return "", fs.usage(fmt.Errorf("%s: the config file is given twice, as -config %s and as %s: give it once", fs.Name(), flagPath, pos[0]))
	case len(pos) == 1:
		return pos[0], nil
	}
	return flagPath, nil
}

// runDaemon is 'pier run'.
func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "pier run [flags] [FILE]", runExamples)
	path := fs.String("config", "pier.yaml", "the configuration `file`; or give it as the argument")
	pidfile := fs.String("pidfile", "", "write pier's process id to this `file` once listening; removed on exit")
	var lf logFlags
	lf.register(fs.FlagSet)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	file, err := configPath(fs, *path, pos)
	if err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fs.usage(err)
	}
	defer lf.closeLog()
	cfg, err := config.Load(file)
	if err != nil {
		return usageError{err}
	}
	opts := lf.appOptions(log)
	opts.ConfigFile = file
	err = serve(ctx, cfg, opts, *pidfile)
	lf.logDropped(log)
	return err
}

// runCheck is 'pier check'.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "pier check [-preview http://ADMIN [-token-file FILE]] [FILE]", checkExamples)
	path := fs.String("config", "pier.yaml", "the configuration `file`; or give it as the argument")
	preview := fs.String("preview", "", "also ask the running pier whose admin API is at this `URL` what loading the file would change")
	tokenFile := fs.String("token-file", "", "the admin API's bearer token, in this `file`, for -preview")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	file, err := configPath(fs, *path, pos)
	if err != nil {
		return err
	}
	cfg, err := config.Load(file)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stdout, "%s: ok, %d routes\n", file, len(cfg.Routes))
	if *preview == "" {
		if *tokenFile != "" {
			return fs.usage(errors.New("-token-file: needs -preview"))
		}
		return nil
	}
	return printPreview(stdout, file, *preview, *tokenFile)
}

// serve runs cfg until ctx is done or a signal says stop. SIGHUP reloads
// path, if the config came from a file; a bad file is logged and the
// running config stays. SIGTERM or SIGINT drains: listeners close, live
// sessions get the grace period, and a second signal cuts it short. With
// pidfile set, pier's process id is written there once every listener is
// open, and the file removed on the way out.
func serve(ctx context.Context, cfg *config.Config, opts app.Options, pidfile string) (err error) {
	log := opts.Log
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if pidfile != "" {
		if err := checkPidfile(pidfile); err != nil {
			return err
		}
	}
	d, err := app.Start(cfg, opts)
	if _, ok := errors.AsType[config.Errors](err); ok {
		// What only starting could find wrong in the configuration (a
		// filter's file that cannot be opened) is a config error too.
		return usageError{err}
	}
	if err != nil {
		return err
	}
	if pidfile != "" {
		if err := writePidfile(pidfile); err != nil {
			d.Stop(context.Background())
			return err
		}
		defer removePidfile(pidfile, log)
		log.Info("pid file written", "file", pidfile, "pid", os.Getpid())
	}
	for {
		select {
		case <-ctx.Done():
			return cutIsClean(d.Stop(context.Background()))
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(d, log)
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
			return cutIsClean(err)
		}
	}
}

// cutIsClean returns nil for a stop whose grace period ran out or that a
// second signal cut short: the stop that was asked for, logged as such,
// not a failure.
func cutIsClean(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func reload(d *app.Daemon, log *slog.Logger) {
	err := d.ReloadFile()
	if errors.Is(err, app.ErrNoFile) {
		log.Warn("SIGHUP ignored: no config file to reload")
		return
	}
	if err != nil {
		log.Error("reload failed, keeping the running configuration", "file", d.ConfigFile(), "error", err)
	}
}

// checkPidfile refuses a pid file that names a live process other than
// this one: a second pier started with the first one's -pidfile would
// otherwise take the file over, and 'kill $(cat FILE)' would no longer
// reach the first. A file naming no live process is left over from a
// pier that did not exit cleanly, and is overwritten.
func checkPidfile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("-pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return nil
	}
	// Signal 0 checks that the process exists; EPERM says it does, as
	// someone else's.
	if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("-pidfile %s: process %d, which it names, is running: stop that pier first, or remove the file if the process is not pier", path, pid)
	}
	return nil
}

// writePidfile writes this process's id to path, whole or not at all: a
// reader never sees half a number.
func writePidfile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("-pidfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("-pidfile: %w", err)
	}
	return nil
}

// removePidfile removes the pid file if it still names this process.
func removePidfile(path string, log *slog.Logger) {
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("could not remove the pid file", "file", path, "error", err)
	}
}
