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
//	pier run -config pier.yaml              # the daemon
//	pier check -config pier.yaml            # validate a config file
//
// Exit codes: 0 clean stop, 1 runtime failure, 2 usage or config error.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
func Main() {
	os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

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
  pier run [-config pier.yaml]                         run from a config file
  pier check [-config pier.yaml]                       validate a config file
  pier version                                         print the version

Run 'pier COMMAND -h' for a command's flags and examples.
`

// run is pier's whole command line: it parses args, runs the command and
// returns the exit code. It writes only to stdout and stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "forward":
		err = runForward(ctx, rest, stdout, stderr)
	case "run":
		err = runDaemon(ctx, rest, stdout, stderr)
	case "check":
		err = runCheck(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "pier %s\n", Version)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "pier: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "pier: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "pier: %v\n", err)
		return exitRuntime
	}
}
