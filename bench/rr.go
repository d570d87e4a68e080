package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// RRConfig says how RR runs. Zero fields take the defaults.
type RRConfig struct {
	Clients  int           // persistent connections, each with one request in flight; 0 means 1
	Duration time.Duration // per target, over all rounds; 0 means 10s
	Rounds   int           // turns each target takes (see interleave); 0 means 1
	MaxOps   int64         // most requests per client in one round; 0 means 10 million
}

func (c RRConfig) clients() int { return max(c.Clients, 1) }

func (c RRConfig) duration() time.Duration {
	if c.Duration <= 0 {
		return 10 * time.Second
	}
	return c.Duration
}

func (c RRConfig) maxOps() int64 {
	if c.MaxOps <= 0 {
		return 10_000_000
	}
	return c.MaxOps
}

// rrSize is the size of a request and of its reply.
const rrSize = 64

// RR opens cfg.Clients connections to each target in turn and on each
// (after the target's Hello, sent and its echo read back and checked,
// untimed) sends a 64-byte request and waits for its 64-byte echo before sending the
// next. PerSec is requests completed per second over all clients; P50us
// and P99us are latency percentiles, from write to full reply, over every
// request of every round. A client whose connection fails counts one error
// and stops for that round; a target fails when a round completes nothing.
// For a target with a PID, CPUusPerOp is its process tree's CPU time over
// the rounds per completed request.
func RR(ctx context.Context, cfg RRConfig, targets []Target) []Result {
	rounds := max(cfg.Rounds, 1)
	results := newResults(targets, Result{Test: "rr", Workers: cfg.clients(), Seconds: cfg.duration().Seconds()})
	lats := make([][]time.Duration, len(targets))
	interleave(ctx, results, rounds, func(i int) error {
		r := &results[i]
		cpu := startCPU(targets[i].PID)
		l, errs, elapsed := rrRound(ctx, targets[i], r.Workers, perRound(cfg.duration(), rounds), cfg.maxOps())
		cpu.end(r)
		lats[i] = append(lats[i], l...)
		r.Elapsed += elapsed.Seconds()
		for _, err := range errs {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = err.Error()
			}
		}
		if len(l) == 0 {
			return fmt.Errorf("no request completed: %s", r.FirstError)
		}
		return nil
	})
	for i := range results {
		r := &results[i]
		r.Ops = int64(len(lats[i]))
		if r.Error != "" {
			continue
		}
		slices.Sort(lats[i])
		r.PerSec = float64(r.Ops) / r.Elapsed
		r.P50us = percentile(lats[i], 0.50)
		r.P99us = percentile(lats[i], 0.99)
		finishCPU(r)
	}
	return results
}

// rrRound is one round of RR on one target: the latencies of every
// request that completed, and the errors that stopped clients early.
func rrRound(ctx context.Context, tg Target, clients int, dur time.Duration, maxOps int64) ([]time.Duration, []error, time.Duration) {
	lats := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for i := range clients {
		wg.Go(func() { lats[i], errs[i] = rrClient(ctx, tg, i, end, maxOps) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	return slices.Concat(lats...), failed, elapsed
}

// rrClient is one connection of RR. It returns the latency of every
// request that completed, and why it stopped early, if it did. A TLS
// target's connection handshakes first, untimed.
func rrClient(ctx context.Context, tg Target, id int, end time.Time, maxOps int64) ([]time.Duration, error) {
	lats := make([]time.Duration, 0, 1<<14)
	c, err := dialConn(ctx, tg.Addr, tg.TLS)
	if err != nil {
		return lats, err
	}
	defer c.Close()
	if len(tg.Hello) > 0 {
		if err := sendHello(c, tg.Hello); err != nil {
			return lats, err
		}
	}
	req := make([]byte, rrSize)
	reply := make([]byte, rrSize)
	binary.LittleEndian.PutUint64(req, uint64(id))
	for i := int64(0); i < maxOps && ctx.Err() == nil; i++ {
		t0 := time.Now()
		// The first request always runs: a client whose setup (dial, a
		// Hello's round trip through a busy proxy) ran past the round's
		// end still completes one, so the round is not counted as failed.
		if i > 0 && !t0.Before(end) {
			break
		}
		c.SetDeadline(t0.Add(opTimeout))
		binary.LittleEndian.PutUint64(req[8:], uint64(i))
		if _, err := c.Write(req); err != nil {
			return lats, err
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			return lats, err
		}
		if !bytes.Equal(req, reply) {
			return lats, fmt.Errorf("%w: reply %d differs from its request", ErrCorrupt, i)
		}
		lats = append(lats, time.Since(t0))
	}
	return lats, nil
}

// sendHello writes hello on c and reads its echo back, checked.
func sendHello(c net.Conn, hello []byte) error {
	c.SetDeadline(time.Now().Add(opTimeout))
	if _, err := c.Write(hello); err != nil {
		return err
	}
	back := make([]byte, len(hello))
	if _, err := io.ReadFull(c, back); err != nil {
		return fmt.Errorf("reading the echo of the ClientHello: %w", err)
	}
	if !bytes.Equal(back, hello) {
		return fmt.Errorf("%w: the ClientHello came back changed", ErrCorrupt)
	}
	return nil
}

// percentile returns the q-quantile of sorted, in microseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Microsecond)
}
