package command

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/app"
	"github.com/pierproxy/pier/internal/asynclog"
)

// logCloseTimeout bounds the flush of the log at exit: with a log reader
// that stopped reading, pier still exits within its grace period plus
// this, and the lines still queued are lost.
const logCloseTimeout = time.Second

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	format string
	level  string

	// levelVar is the level of the loggers open makes, which the admin
	// API may change while pier runs.
	levelVar slog.LevelVar

	opened []*asynclog.Handler // what logger opened, for closeLog
}

func (lf *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&lf.format, "log-format", "auto", "log format: text, json, or auto (text on a terminal, json otherwise)")
	fs.StringVar(&lf.level, "log-level", "info", "log level: debug, info, warn or error")
}

// logger builds the one logger the command hands to every component. It
// never blocks its caller (see open); closeLog flushes it at exit.
func (lf *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	log, _, err := lf.open(w)
	return log, err
}

// open builds the one logger the command hands to every component, and
// the function that flushes and closes it at exit, within its context.
//
// The logger writes to w through a bounded queue served by one goroutine
// (package asynclog), so a relay loop that logs a session's end never waits
// for w: when the queue is full, the line is dropped, counted, and the log
// says "access log: dropped N records" once it can write again.
//
// The schema (docs/logging.md): in json, every duration is a number of
// seconds; in text, a Go duration (1.5s), and a value with line breaks (a
// config error) is written as its own indented lines under the record.
func (lf *logFlags) open(w io.Writer) (*slog.Logger, func(context.Context) error, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lf.level)); err != nil {
		return nil, nil, usageError{fmt.Errorf("-log-level: %q is not debug, info, warn or error", lf.level)}
	}
	lf.levelVar.Set(level)
	format := strings.ToLower(lf.format)
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			format = "text"
		}
	}
	var h *asynclog.Handler
	switch format {
	case "text":
		h = asynclog.NewText(w, &slog.HandlerOptions{Level: &lf.levelVar})
	case "json":
		opts := &slog.HandlerOptions{Level: &lf.levelVar, ReplaceAttr: durationAsSeconds}
		h = asynclog.New(w, func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) },
			asynclog.Options{})
	default:
		return nil, nil, usageError{fmt.Errorf("-log-format: %q is not text, json or auto", lf.format)}
	}
	lf.opened = append(lf.opened, h)
	return slog.New(h), h.Close, nil
}

// closeLog writes what the loggers from logger and open still hold and
// ends their writers, within logCloseTimeout. The error says how many
// lines were lost; it is for a test, since the log's own writer is stuck
// when it happens, and stderr with it.
func (lf *logFlags) closeLog() error {
	ctx, cancel := context.WithTimeout(context.Background(), logCloseTimeout)
	defer cancel()
	var first error
	for _, h := range lf.opened {
		if err := h.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// dropped returns how many log records the loggers from logger and open
// dropped because the log's queue was full (a log reader that stopped
// reading): access log records and others. For the exit summary.
func (lf *logFlags) dropped() (access, other uint64) {
	for _, h := range lf.opened {
		a, o := h.Dropped()
		access, other = access+a, other+o
	}
	return access, other
}

// appOptions are the options app.Start takes from the log flags.
func (lf *logFlags) appOptions(log *slog.Logger) app.Options {
	return app.Options{Log: log, Loops: relayLoops, Level: &lf.levelVar, LogDropped: lf.dropped}
}

// logDropped adds to the exit summary how many records the log dropped
// while pier ran, if any did.
func (lf *logFlags) logDropped(log *slog.Logger) {
	if access, other := lf.dropped(); access+other > 0 {
		log.Warn("log records dropped while pier ran", "access_log", access, "other", other)
	}
}

// durationAsSeconds is the json schema's rule for durations: a number of
// seconds, as Prometheus and most log tools take them, not slog's default
// integer nanoseconds.
func durationAsSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
