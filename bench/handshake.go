package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// HandshakeConfig says how Handshakes runs. Zero fields take the defaults.
type HandshakeConfig struct {
	Test     string        // the Result's test name, e.g. hs-ecdsa; "" means hs
	Workers  int           // concurrent workers; 0 means 32
	Duration time.Duration // per target, over all rounds; 0 means 10s
	Rounds   int           // turns each target takes (see interleave); 0 means 1
	MaxOps   int64         // most handshakes in one round; 0 means 10 million
	// Resume gives each worker a client session cache (TLS 1.3 tickets)
	// and counts only the handshakes that resumed; without it resumption
	// is off and every handshake is a full one.
	Resume bool
}

func (c HandshakeConfig) test() string {
	if c.Test == "" {
		return "hs"
	}
	return c.Test
}

func (c HandshakeConfig) cps() CPSConfig {
	return CPSConfig{Workers: c.Workers, Duration: c.Duration, Rounds: c.Rounds, MaxOps: c.MaxOps}
}

// hsSize is the small echo each handshake's connection carries.
const hsSize = 64

// errNotResumed marks a handshake of a resuming load that was a full one.
var errNotResumed = errors.New("bench: the handshake did not resume")

// Handshakes measures TLS handshakes per second through each target in
// turn (its Target.TLS is the client configuration): cfg.Workers workers,
// each looping: connect, handshake, send 64 bytes, read their echo, check
// it, close. Without cfg.Resume every handshake is full (no session
// cache; one that resumed anyway is an error). With it, each worker first
// makes one full handshake, untimed, to get a ticket, and then counts in
// Ops only the handshakes whose ConnectionState says DidResume; the rest
// complete but count in NotResumed. For a target with a PID, CPUusPerOp is
// its process tree's CPU time over the timed windows per counted handshake.
// Result.TLS says what the first handshake negotiated.
func Handshakes(ctx context.Context, cfg HandshakeConfig, targets []Target) []Result {
	cc := cfg.cps()
	rounds := max(cfg.Rounds, 1)
	results := newResults(targets, Result{Test: cfg.test(), Workers: cc.workers(), Seconds: cc.duration().Seconds()})
	for i, tg := range targets {
		if tg.TLS == nil {
			results[i].Error = "bench: a handshake target needs a TLS client configuration"
		}
	}
	interleave(ctx, results, rounds, func(i int) error {
		r := &results[i]
		confs, err := workerConfigs(ctx, targets[i], r.Workers, cfg.Resume)
		if err != nil {
			return err
		}
		cpu := startCPU(targets[i].PID)
		st := hsRound(ctx, targets[i].Addr, confs, cfg.Resume, perRound(cc.duration(), rounds), cc.maxOps())
		cpu.end(r)
		r.Ops += st.ok
		r.NotResumed += st.notResumed
		r.Errors += st.failed
		r.Elapsed += st.elapsed.Seconds()
		if r.TLS == "" {
			r.TLS = st.negotiated
		}
		if st.firstErr != nil && r.FirstError == "" {
			r.FirstError = st.firstErr.Error()
		}
		if st.ok == 0 {
			if st.notResumed > 0 {
				return fmt.Errorf("no handshake resumed (%d full ones)", st.notResumed)
			}
			return fmt.Errorf("no handshake completed: %v", st.firstErr)
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

// workerConfigs returns a client configuration per worker. Resuming, each
// has its own one-entry session cache (no lock shared between workers),
// filled by one full handshake now, before the timed window; otherwise
// all share tg.TLS with resumption off.
func workerConfigs(ctx context.Context, tg Target, workers int, resume bool) ([]*tls.Config, error) {
	confs := make([]*tls.Config, workers)
	if !resume {
		conf := tg.TLS.Clone()
		conf.ClientSessionCache = nil
		conf.SessionTicketsDisabled = true
		for w := range confs {
			confs[w] = conf
		}
		return confs, nil
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range confs {
		confs[w] = tg.TLS.Clone()
		confs[w].ClientSessionCache = tls.NewLRUClientSessionCache(1)
		confs[w].SessionTicketsDisabled = false
		wg.Go(func() {
			_, err := hsOnce(ctx, tg.Addr, confs[w], make([]byte, hsSize), make([]byte, hsSize))
			if err != nil {
				errs[w] = fmt.Errorf("the first, full handshake of worker %d: %w", w, err)
			}
		})
	}
	wg.Wait()
	return confs, errors.Join(errs...)
}

// hsStats is what one round of Handshakes counted.
type hsStats struct {
	ok, notResumed, failed int64
	elapsed                time.Duration
	firstErr               error
	negotiated             string
}

// hsRound is one round of Handshakes on one target: a worker per config.
func hsRound(ctx context.Context, addr string, confs []*tls.Config, resume bool, dur time.Duration, maxOps int64) hsStats {
	var (
		nOK, nFull, nFailed, started atomic.Int64
		errOnce, tlsOnce             sync.Once
		firstErr                     error
		negotiated                   string
		wg                           sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(dur)
	for w, conf := range confs {
		wg.Go(func() {
			msg := make([]byte, hsSize)
			buf := make([]byte, hsSize)
			for i := 0; time.Now().Before(end) && started.Add(1) <= maxOps && ctx.Err() == nil; i++ {
				copy(msg, fmt.Sprintf("hs worker %d op %d ", w, i))
				cs, err := hsOnce(ctx, addr, conf, msg, buf)
				if err == nil && cs.DidResume != resume {
					if resume {
						nFull.Add(1)
						continue
					}
					err = errors.New("bench: a handshake resumed with resumption off")
				}
				if err != nil {
					nFailed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				tlsOnce.Do(func() { negotiated = describeTLS(cs) })
				nOK.Add(1)
			}
		})
	}
	wg.Wait()
	return hsStats{ok: nOK.Load(), notResumed: nFull.Load(), failed: nFailed.Load(), elapsed: time.Since(start), firstErr: firstErr, negotiated: negotiated}
}

// hsOnce is one connection of Handshakes: connect, handshake, msg out and
// back through the proxy and its upstream, close.
func hsOnce(ctx context.Context, addr string, conf *tls.Config, msg, buf []byte) (tls.ConnectionState, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	tc, err := handshake(ctx, c, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	tc.SetDeadline(time.Now().Add(opTimeout))
	if _, err := tc.Write(msg); err != nil {
		return tls.ConnectionState{}, err
	}
	// The read also takes in the server's TLS 1.3 session tickets, which
	// come before the echo: a resuming worker's next handshake uses them.
	if _, err := io.ReadFull(tc, buf); err != nil {
		return tls.ConnectionState{}, err
	}
	if !bytes.Equal(buf, msg) {
		return tls.ConnectionState{}, fmt.Errorf("%w: the echo of a handshake's %d bytes differs", ErrCorrupt, len(msg))
	}
	cs := tc.ConnectionState()
	// close_notify then FIN, as a polite client ends; the proxy's side of
	// it is part of the cost per handshake.
	tc.Close()
	return cs, nil
}
