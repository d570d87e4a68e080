package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pierproxy/pier/bench"
)

// runUDPEcho serves the UDP echo upstream on ADDR until interrupted: a
// socket per CPU with SO_REUSEPORT, batched reads and writes.
func runUDPEcho(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("udpecho", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sockets := fs.Int("sockets", 0, "sockets on ADDR (SO_REUSEPORT), a goroutine each; 0: one per CPU")
	pos, err := parse(fs, args, 1, "[-sockets N] ADDR")
	if err != nil {
		return err
	}
	conns, err := bench.ListenUDPEcho(pos[0], *sockets)
	if err != nil {
		return err
	}
	return bench.UDPEcho(ctx, conns)
}

// waitUDP is wait -udp: datagrams to addr until one comes back, the
// deadline passes, or the process that should be forwarding has exited.
func waitUDP(ctx context.Context, addr string, pid int) error {
	if pid <= 0 {
		return bench.WaitUDP(ctx, addr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for alive(pid) {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		cancel()
	}()
	err := bench.WaitUDP(ctx, addr)
	cancel()
	<-gone
	if err != nil && !alive(pid) {
		return fmt.Errorf("process %d exited before %s echoed a datagram", pid, addr)
	}
	return err
}

// runUDPLoad runs udprate or udprr on every COLUMN=ADDR target, taking
// turns, and prints one result line per target.
func runUDPLoad(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 5, "turns each target takes, so drift spreads over all of them")
	dur := fs.Duration("duration", 10*time.Second, "per target, over all rounds")
	size := fs.Int("size", 64, "datagram bytes (16 to 65507)")
	pids := columnPIDs{}
	fs.Var(pids, "pid", "`COLUMN=PID`: read the CPU time of that column's proxy and its children around every round (repeatable)")
	var (
		flowsN, window, clients *int
		testName                *string
		pace                    *float64
		timeout                 *time.Duration
	)
	if cmd == "udprate" {
		testName = fs.String("test", "udp", "the test name of the result lines: udp, or udploss for a paced run")
		flowsN = fs.Int("flows", 1, "client sockets, each a flow at the proxy")
		window = fs.Int("window", 64, "closed loop: datagrams in flight over all flows")
		pace = fs.Float64("pace", 0, "datagrams/s over all flows, open loop (0: closed loop with -window)")
	} else {
		clients = fs.Int("clients", 1, "concurrent clients, a query in flight each, each query from a new socket")
		timeout = fs.Duration("timeout", time.Second, "a query unanswered this long is lost")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pierbench %s [flags] COLUMN=ADDR...\n", cmd)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	var targets []bench.Target
	for _, a := range fs.Args() {
		col, addr, ok := strings.Cut(a, "=")
		if !ok || col == "" || addr == "" {
			fs.Usage()
			return errUsage
		}
		targets = append(targets, bench.Target{Column: col, Addr: addr, PID: pids[col]})
		delete(pids, col)
	}
	if len(targets) == 0 {
		fs.Usage()
		return errUsage
	}
	if len(pids) > 0 {
		fmt.Fprintf(stderr, "pierbench %s: -pid %s: no such target\n", cmd, pids)
		return errUsage
	}
	var results []bench.Result
	if cmd == "udprate" {
		results = bench.UDPRate(ctx, bench.UDPRateConfig{Test: *testName, Size: *size, Flows: *flowsN, Window: *window,
			Pace: *pace, Duration: *dur, Rounds: *rounds}, targets)
	} else {
		results = bench.UDPRR(ctx, bench.UDPRRConfig{Clients: *clients, Size: *size, Duration: *dur, Rounds: *rounds, Timeout: *timeout}, targets)
	}
	var failed []string
	for _, r := range results {
		if err := r.WriteJSON(stdout); err != nil {
			return err
		}
		if r.Error != "" {
			failed = append(failed, r.Column+": "+r.Error)
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// runUDPIdle measures one proxy process with UDPIdle and prints its
// result line.
func runUDPIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udpidle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	column := fs.String("column", "", "column name the result is for")
	flows := fs.Int("flows", 3000, "flows to hold open")
	pid := fs.Int("pid", 0, "proxy process to measure, with its children")
	dialers := fs.Int("dialers", 32, "flows opened at once (socat: 1)")
	pos, err := parse(fs, args, 1, "[flags] ADDR")
	if err != nil {
		return err
	}
	res, err := bench.UDPIdle(ctx, bench.UDPIdleConfig{Addr: pos[0], Flows: *flows, PID: *pid, Dialers: *dialers})
	res.Column = *column
	if err != nil {
		res.Error = err.Error()
	}
	if werr := res.WriteJSON(stdout); werr != nil {
		return werr
	}
	return err
}

// runUDPPace prints the paced rate of the loss load and the column it
// came from: -share of what -column carried on -test (bench.UDPPace).
func runUDPPace(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udppace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	column := fs.String("column", "nginx", "the column whose rate sets the pace")
	test := fs.String("test", "udp/64/1000", "the row: udp/SIZE/FLOWS")
	share := fs.Float64("share", 0.5, "the share of that rate to pace at")
	pos, err := parse(fs, args, 1, "[flags] RESULTS.jsonl")
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	results, err := bench.ReadResults(f)
	if err != nil {
		return err
	}
	rate, from, err := bench.UDPPace(results, *column, *test, *share)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%.0f %s\n", rate, from)
	return err
}
