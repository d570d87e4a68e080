// Command pier is a TCP proxy: a port forwarder, an L4 load balancer and a
// traffic lens in one binary.
//
//	pier forward :9090 db.internal:5432     # the one-liner
//	pier run -config pier.yaml              # the daemon
//	pier check -config pier.yaml            # validate a config file
//
// Exit codes: 0 clean stop, 1 runtime failure, 2 usage or config error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
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
		fmt.Fprintf(stdout, "pier %s\n", version)
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
