package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrCorrupt means the bytes that came back are not the bytes that were
// sent: changed, lost, repeated or too many. A proxy that causes it is
// broken, whatever its speed.
var ErrCorrupt = errors.New("bench: echoed bytes differ from the bytes sent")

// BulkConfig says how much Bulk sends. Zero fields take the defaults.
type BulkConfig struct {
	Streams int           // parallel connections; 0 means 4
	Bytes   int64         // sent and read back on each stream, over all rounds; 0 means 256 MiB
	Rounds  int           // turns each target takes (see interleave); 0 means 1
	Timeout time.Duration // for one round of one target; 0 means 2 minutes
}

func (c BulkConfig) streams() int {
	if c.Streams <= 0 {
		return 4
	}
	return c.Streams
}

func (c BulkConfig) bytes() int64 {
	if c.Bytes <= 0 {
		return 256 << 20
	}
	return c.Bytes
}

func (c BulkConfig) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 2 * time.Minute
	}
	return c.Timeout
}

// Bulk sends pseudorandom data on cfg.Streams connections at once to each
// target in turn, reads the echo back while it sends, and compares every
// byte with what was sent. Each stream carries cfg.Bytes each way, split
// over cfg.Rounds rounds. MBps is the bytes sent (= bytes received) over
// the time the target's rounds took, in 10^6 bytes per second. A target
// whose echo differs fails with ErrCorrupt in its Error. A TLS target's
// streams handshake first (inside the timed round: 4 handshakes against
// megabytes) and do not half-close: the reader reads exactly the bytes
// sent, so a proxy's handling of close_notify is not what is measured.
func Bulk(ctx context.Context, cfg BulkConfig, targets []Target) []Result {
	n, rounds := cfg.streams(), max(cfg.Rounds, 1)
	per := (cfg.bytes() + int64(rounds) - 1) / int64(rounds) // rounded up: at least cfg.Bytes in all
	results := newResults(targets, Result{Test: "bulk", Streams: n, MiB: per * int64(rounds) >> 20})
	elapsed := make([]time.Duration, len(targets))
	interleave(ctx, results, rounds, func(i int) error {
		d, err := bulkRound(ctx, targets[i].Addr, targets[i].TLS, n, per, cfg.timeout())
		elapsed[i] += d
		return err
	})
	for i := range results {
		results[i].Elapsed = elapsed[i].Seconds()
		if results[i].Error == "" {
			results[i].MBps = float64(int64(n*rounds)*per) / results[i].Elapsed / 1e6
		}
	}
	return results
}

// bulkRound runs n streams of per bytes each way to addr at once and
// returns how long they took together.
func bulkRound(ctx context.Context, addr string, conf *tls.Config, n int, per int64, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	pat := pattern()
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() { errs[i] = bulkStream(ctx, addr, conf, pat, streamOffset(i), per, deadline) })
	}
	wg.Wait()
	d := time.Since(start)
	for i, err := range errs {
		if err != nil {
			return d, fmt.Errorf("stream %d: %w", i, err)
		}
	}
	return d, nil
}

// bulkStream is one connection of Bulk: a writer goroutine sends n bytes
// of pat from off, then half-closes; this goroutine reads to EOF and checks.
// Over TLS (conf set) the writer does not half-close and the reader stops
// after n bytes.
func bulkStream(ctx context.Context, addr string, conf *tls.Config, pat []byte, off int, n int64, deadline time.Time) error {
	c, err := dialConn(ctx, addr, conf)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	werr := make(chan error, 1)
	go func() {
		err := sendPattern(c, pat, off, n)
		if err == nil && conf == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	var r io.Reader = c
	if conf != nil {
		r = io.LimitReader(c, n)
	}
	if err := verifyPattern(r, pat, off, n); err != nil {
		c.Close() // unblocks the writer
		<-werr
		return err
	}
	return <-werr
}

// patternLen is the length of the pattern Bulk streams cycle through. It is
// odd, so a lost, repeated or reordered chunk of any power-of-two buffer
// size lines up with different bytes and fails the comparison.
const patternLen = 16<<20 + 4093

var (
	patternOnce sync.Once
	patternBuf  []byte
)

// pattern returns the bytes every stream cycles through: patternLen bytes
// from a fixed-seed ChaCha8, made once, so sending costs no generation and
// checking is a bytes.Equal against memory.
func pattern() []byte {
	patternOnce.Do(func() {
		patternBuf = make([]byte, patternLen)
		rand.NewChaCha8([32]byte{'p', 'i', 'e', 'r'}).Read(patternBuf)
	})
	return patternBuf
}

// streamOffset starts each stream at a different place in the pattern, so a
// proxy that crossed two streams is caught too.
func streamOffset(i int) int { return (i * 1_000_003) % patternLen }

// chunk is the most sendPattern writes and verifyPattern reads at once.
const chunk = 256 << 10

// sendPattern writes n bytes of the cyclic pattern starting at off.
func sendPattern(w io.Writer, pat []byte, off int, n int64) error {
	for n > 0 {
		m := min(int64(chunk), int64(len(pat)-off), n)
		if _, err := w.Write(pat[off : off+int(m)]); err != nil {
			return err
		}
		n -= m
		off = (off + int(m)) % len(pat)
	}
	return nil
}

// verifyPattern reads r to EOF and checks it is exactly n bytes of the
// cyclic pattern starting at off.
func verifyPattern(r io.Reader, pat []byte, off int, n int64) error {
	buf := make([]byte, chunk)
	var got int64
	for {
		k, err := r.Read(buf)
		if int64(k) > n-got {
			return fmt.Errorf("%w: more than the %d bytes sent", ErrCorrupt, n)
		}
		for b := buf[:k]; len(b) > 0; {
			m := min(len(b), len(pat)-off)
			if !bytes.Equal(b[:m], pat[off:off+m]) {
				i := firstDiff(b[:m], pat[off:off+m])
				return fmt.Errorf("%w: byte %d is %#02x, sent %#02x", ErrCorrupt, got+int64(i), b[i], pat[off+i])
			}
			b, got, off = b[m:], got+int64(m), (off+m)%len(pat)
		}
		if err == io.EOF {
			if got != n {
				return fmt.Errorf("%w: %d of %d bytes came back", ErrCorrupt, got, n)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", got, n, err)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}
