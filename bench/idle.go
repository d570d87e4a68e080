package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// IdleConfig says how many connections Idle holds and on which process it
// measures their cost. Zero fields take the defaults.
type IdleConfig struct {
	Addr  string
	Conns int // connections held open at once; 0 means 3000
	PID   int // the proxy: this process and all its descendants are measured
	// Settle is how long to wait after the last echo before measuring, so
	// work the proxy defers (a worker's buffers, a runtime's stacks) is
	// counted; 0 means 500ms.
	Settle time.Duration
	// TLS, if set, makes every connection a TLS session with this client
	// configuration: handshaken, one byte echoed, then left idle.
	TLS *tls.Config
}

func (c IdleConfig) conns() int {
	if c.Conns <= 0 {
		return 3000
	}
	return c.Conns
}

func (c IdleConfig) settle() time.Duration {
	if c.Settle <= 0 {
		return 500 * time.Millisecond
	}
	return c.Settle
}

// idleDialers is how many connections Idle opens at once: enough to be
// quick, few enough to stay under any listen backlog.
const idleDialers = 32

// Idle measures what an idle proxied connection costs the proxy: it reads
// the resident memory and open descriptors of cfg.PID and its children,
// opens cfg.Conns connections that each send one byte and read its echo (so
// the proxy holds both legs), measures again, and closes them all.
func Idle(ctx context.Context, cfg IdleConfig) (Result, error) {
	n := cfg.conns()
	res := Result{Test: "idle", Conns: n}
	if cfg.PID <= 0 {
		return res, errors.New("idle: no proxy process to measure")
	}
	before, err := measureTree(cfg.PID)
	if err != nil {
		return res, err
	}
	start := time.Now()
	conns, err := openIdle(ctx, cfg.Addr, cfg.TLS, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return res, fmt.Errorf("after %d of %d connections: %w", len(conns), n, err)
	}
	res.Elapsed = time.Since(start).Seconds()
	select {
	case <-time.After(cfg.settle()):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	after, err := measureTree(cfg.PID)
	if err != nil {
		return res, err
	}
	res.Procs = after.procs
	res.RSSBefore, res.RSSAfter = before.rssKB, after.rssKB
	res.FDBefore, res.FDAfter = before.fds, after.fds
	res.KBPerConn = float64(after.rssKB-before.rssKB) / float64(n)
	res.FDPerConn = float64(after.fds-before.fds) / float64(n)
	return res, nil
}

// openIdle opens n connections to addr, each having sent one byte and read
// its echo. On error it returns the connections it has, for closing.
func openIdle(ctx context.Context, addr string, conf *tls.Config, n int) ([]net.Conn, error) {
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, n)
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range idleDialers {
		wg.Go(func() {
			for range next {
				c, err := idleOnce(ctx, addr, conf)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for range n {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return conns, firstErr
}

// idleOnce opens one connection through the proxy and makes sure both of
// its legs exist by a one-byte round trip.
func idleOnce(ctx context.Context, addr string, conf *tls.Config) (net.Conn, error) {
	c, err := dialConn(ctx, addr, conf)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(opTimeout))
	b := []byte{'i'}
	_, err = c.Write(b)
	if err == nil {
		_, err = io.ReadFull(c, b)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
