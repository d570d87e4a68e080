// Package command is the whole pier command line, importable: cmd/pier is
// a main that calls Main, and a program of a user's own can do the same
// with its own filters registered, the way CoreDNS and Caddy take plugins.
// Every filter registered by the time Main runs gets its command-line flag
// (pier forward --NAME) and its name in config files:
//
//	package main
//
//	import (
//		"github.com/pierproxy/pier/command"
//		_ "example.com/myfilter" // calls filter.Register in its init
//	)
//
//	func main() { command.Main() }
//
// The commands:
//
//	pier forward :9090 db.internal:5432     # the one-liner
//	pier run pier.yaml                      # the daemon (or -config pier.yaml)
//	pier check pier.yaml                    # validate a config file
//	pier help forward                       # a command's flags and examples
//
// Exit codes: 0 clean stop, 1 runtime failure, 2 usage or config error.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/pierproxy/pier/config"
)

// Version is what 'pier version' prints. Set it at build time with
// -ldflags "-X github.com/pierproxy/pier/command.Version=...", or from
// the main of a program that embeds pier.
var Version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// Main runs the pier command with the process's arguments and exits with
// its exit code. It does not return.
//
// Main also sets the process's scheduling: one relay loop per P that Go
// gave the process (GOMAXPROCS: the CPUs, or a container's CPU limit), and
// one P more beside them, unless the GOMAXPROCS environment variable says
// otherwise. The loops hold their Ps while they relay; the spare one runs
// everything else (log writers, health checks, reloads, the runtime's own
// work) without waiting for a loop to block, and keeps Go's scheduler from
// taking a blocked loop's P away and handing it back on every wake-up.
// On two CPUs that made 0.9 context switches per short connection
// instead of 1.46. (Setting GOMAXPROCS stops the runtime
// following a container's limit if it changes while pier runs.)
func Main() {
	if os.Getenv("GOMAXPROCS") == "" {
		relayLoops = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(relayLoops + 1)
	}
	os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// relayLoops is how many relay loops 'pier run' and 'pier forward' start,
// set by Main; zero (Run called without Main) means one per P.
var relayLoops int

// Run runs the pier command with args (without the program name), writing
// only to stdout and stderr, and returns the exit code. It returns when the
// command ends: for run and forward, after a signal or when ctx is done.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr)
}

// usageError marks errors that are the caller's: bad flags, arguments or
// configuration. run maps them to exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

const usage = `pier: a TCP proxy

Usage:
  pier forward [flags] LISTEN UPSTREAM [UPSTREAM...]   forward one port
  pier run [flags] [pier.yaml]                         run from a config file
  pier check [pier.yaml]                               validate a config file
  pier toxiproxy [-host H] [-port P] [-config FILE]    serve Toxiproxy's API (a drop-in for toxiproxy-server)
  pier version                                         print the version
  pier help [COMMAND]                                  this, or a command's flags and examples

Flags may stand before the command: pier -log-level debug forward ...
Run 'pier help COMMAND' or 'pier COMMAND -h' for a command's flags and examples.
`

// commands are pier's commands, by name.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"forward": runForward,
	"run":     runDaemon,
	"check": func(_ context.Context, args []string, stdout, stderr io.Writer) error {
		return runCheck(args, stdout, stderr)
	},
	"toxiproxy": runToxiproxy,
	"version":   func(_ context.Context, args []string, stdout, _ io.Writer) error { return runVersion(args, stdout) },
}

// run is pier's whole command line: it parses args, runs the command and
// returns the exit code. It writes only to stdout and stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name, args := splitCommand(args)
	var err error
	switch cmd := commands[name]; {
	case name == "" && len(args) == 0:
		fmt.Fprint(stderr, usage)
		return exitUsage
	case name == "" && slices.ContainsFunc(args, isHelp):
		fmt.Fprint(stdout, usage)
		return exitOK
	case name == "" && slices.ContainsFunc(args, isVersion):
		err = runVersion(nil, stdout)
	case name == "":
		err = usageError{fmt.Errorf("no command after the flags %s", strings.Join(args, " "))}
	case name == "help" && len(args) == 0:
		fmt.Fprint(stdout, usage)
		return exitOK
	case name == "help" && commands[args[0]] != nil && len(args) == 1:
		err = commands[args[0]](ctx, []string{"-h"}, stdout, stderr)
	case name == "help" && len(args) == 1:
		err = usageError{fmt.Errorf("help: unknown command %q (commands: check, forward, run, toxiproxy, version)", args[0])}
	case name == "help":
		err = usageError{fmt.Errorf("help: want one command, got %q", args)}
	case cmd != nil:
		err = cmd(ctx, args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "pier: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	var errs config.Errors
	var h hint
	switch {
	case err == nil || errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &errs):
		// One error a line, as it stands: file:line:col: or flag -name:.
		fmt.Fprintln(stderr, errs.Error())
	default:
		fmt.Fprintf(stderr, "pier: %v\n", err)
	}
	if errors.As(err, &h) {
		fmt.Fprintf(stderr, "see 'pier %s -h'\n", h.cmd)
	}
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitRuntime
}

// splitCommand finds the command's name in args and returns it with the
// rest: the flags that stood before it, then those after, so that 'pier
// -log-level debug forward ...' is 'pier forward -log-level debug ...'.
// A flag before the name is taken to carry its value as the next
// argument, unless written -flag=value or it is -h or -version. name is
// empty if there is none.
func splitCommand(args []string) (name string, rest []string) {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" && args[i] != "--" {
		if !strings.Contains(args[i], "=") && !isHelp(args[i]) && !isVersion(args[i]) {
			i++ // the flag's value
		}
		i++
	}
	if i >= len(args) || args[i] == "--" {
		return "", args
	}
	return args[i], append(slices.Clip(args[:i]), args[i+1:]...)
}

func isHelp(a string) bool    { return a == "-h" || a == "-help" || a == "--help" || a == "--h" }
func isVersion(a string) bool { return a == "-version" || a == "--version" }

const versionExamples = `  pier version
      prints pier dev, or the version pier was built with
`

// runVersion is 'pier version'.
func runVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version", "pier version", versionExamples)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fs.usage(fmt.Errorf("version: unexpected argument %q", pos[0]))
	}
	fmt.Fprintf(stdout, "pier %s\n", Version)
	return nil
}
