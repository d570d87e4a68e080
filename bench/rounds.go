package bench

import (
	"context"
	"crypto/tls"
	"time"
)

// Target is one column of the table: its name and the address its load
// goes to (the proxy, or the echo itself for the direct column).
type Target struct {
	Column string
	Addr   string
	// PID is the proxy's process, whose CPU time (with its descendants')
	// CPS and RR read around each round; 0 (direct) means none is read.
	PID int
	// Hello, if set, is sent first on every connection of CPS and RR (a
	// TLS ClientHello, from ClientHello, for a column that routes by SNI);
	// the echo sends it back and the load reads it back, checked, before
	// its own bytes.
	Hello []byte
	// TLS, if set, makes Bulk, RR and Handshakes speak TLS to the target
	// with this client configuration (bench/tls): each connection
	// handshakes first, untimed in Bulk and RR.
	TLS *tls.Config
}

// interleave runs round(i) for every target i, then again, rounds times
// in all: round 1 of every target, round 2 of every target, and so on. A
// loaded 2-core machine drifts (CPU frequency, which core the scheduler
// picks, a vCPU waking from halt); taking turns spreads that drift over
// every column instead of handing it all to whichever ran at the wrong
// moment. A target whose round fails gets the error in its Result and sits
// out the remaining rounds.
func interleave(ctx context.Context, results []Result, rounds int, round func(i int) error) {
	for range max(rounds, 1) {
		for i := range results {
			if results[i].Error != "" || ctx.Err() != nil {
				continue
			}
			if err := round(i); err != nil {
				results[i].Error = err.Error()
			}
		}
	}
	if err := ctx.Err(); err != nil {
		for i := range results {
			if results[i].Error == "" {
				results[i].Error = err.Error()
			}
		}
	}
}

// newResults returns one Result per target, with its column and test set
// and the parameters in proto.
func newResults(targets []Target, proto Result) []Result {
	out := make([]Result, len(targets))
	for i, t := range targets {
		out[i] = proto
		out[i].Column = t.Column
	}
	return out
}

// perRound splits a total duration over rounds.
func perRound(total time.Duration, rounds int) time.Duration {
	return total / time.Duration(max(rounds, 1))
}
