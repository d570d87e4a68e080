package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// CPSConfig says how hard CPS opens connections. Zero fields take the defaults.
type CPSConfig struct {
	Workers  int           // concurrent workers; 0 means 32
	Duration time.Duration // per target, over all rounds; 0 means 10s
	Rounds   int           // turns each target takes (see interleave); 0 means 1
	MaxOps   int64         // most connections in one round; 0 means 10 million
}

func (c CPSConfig) workers() int {
	if c.Workers <= 0 {
		return 32
	}
	return c.Workers
}

func (c CPSConfig) duration() time.Duration {
	if c.Duration <= 0 {
		return 10 * time.Second
	}
	return c.Duration
}

func (c CPSConfig) maxOps() int64 {
	if c.MaxOps <= 0 {
		return 10_000_000
	}
	return c.MaxOps
}

// opTimeout bounds one connection of CPS or one request of RR, so a proxy
// that stalls costs an error, not a hung benchmark.
const opTimeout = 5 * time.Second

// CPS runs cfg.Workers workers against each target in turn; each worker,
// over and over: connects, sends 64 bytes (after the target's Hello, in
// the same write, when it has one), half-closes, reads the echo to EOF,
// checks it and closes. PerSec counts the connections that completed;
// Errors the ones that did not. A target fails only when not one
// connection of a round completed. For a target with a PID, CPUusPerOp is
// its process tree's CPU time over the rounds per completed connection.
func CPS(ctx context.Context, cfg CPSConfig, targets []Target) []Result {
	rounds := max(cfg.Rounds, 1)
	results := newResults(targets, Result{Test: "cps", Workers: cfg.workers(), Seconds: cfg.duration().Seconds()})
	interleave(ctx, results, rounds, func(i int) error {
		r := &results[i]
		cpu := startCPU(targets[i].PID)
		ok, failed, elapsed, firstErr := cpsRound(ctx, targets[i].Addr, targets[i].Hello, r.Workers, perRound(cfg.duration(), rounds), cfg.maxOps())
		cpu.end(r)
		r.Ops += ok
		r.Errors += failed
		r.Elapsed += elapsed.Seconds()
		if firstErr != nil && r.FirstError == "" {
			r.FirstError = firstErr.Error()
		}
		if ok == 0 {
			return fmt.Errorf("no connection completed: %v", firstErr)
		}
		return nil
	})
	for i := range results {
		if results[i].Error == "" {
			results[i].PerSec = float64(results[i].Ops) / results[i].Elapsed
			finishCPU(&results[i])
		}
	}
	return results
}

// cpsRound is one round of CPS on one target.
func cpsRound(ctx context.Context, addr string, hello []byte, workers int, dur time.Duration, maxOps int64) (ok, failed int64, elapsed time.Duration, firstErr error) {
	var (
		nOK, nFailed, started atomic.Int64
		once                  sync.Once
		wg                    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(dur)
	for w := range workers {
		wg.Go(func() {
			// out is the hello, then the 64 bytes of this connection.
			out := append(append([]byte(nil), hello...), make([]byte, 64)...)
			msg := out[len(hello):]
			buf := make([]byte, len(out)+64)
			for i := 0; time.Now().Before(end) && started.Add(1) <= maxOps && ctx.Err() == nil; i++ {
				copy(msg, fmt.Sprintf("cps worker %d op %d ", w, i))
				if err := cpsOnce(ctx, addr, out, buf); err != nil {
					nFailed.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				nOK.Add(1)
			}
		})
	}
	wg.Wait()
	return nOK.Load(), nFailed.Load(), time.Since(start), firstErr
}

// cpsOnce is one connection of CPS: msg is every byte it sends, and
// expects back.
func cpsOnce(ctx context.Context, addr string, msg, buf []byte) error {
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(opTimeout))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	n, err := io.ReadFull(c, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		// The echo ended, as it should, before filling buf.
	case err != nil:
		return err
	default:
		return fmt.Errorf("%w: more than the %d bytes sent", ErrCorrupt, len(msg))
	}
	if !bytes.Equal(buf[:n], msg) {
		return fmt.Errorf("%w: got %d bytes, sent %d", ErrCorrupt, n, len(msg))
	}
	return nil
}
