package dump

import "io"

// gatherSize is the most a gatherWriter holds: a batch of small blocks
// (a 64-byte chunk makes a block of about 400 bytes in hex) goes out in
// one write(2) instead of one each, and a block this size or larger goes
// out alone, unbuffered.
const gatherSize = 64 << 10

// A gatherWriter gathers the blocks the Output writes in one batch and
// writes them in one Write when the Output flushes it (after every batch),
// or when the next block would not fit. It never splits a block between
// two Writes, so a block lands whole even in a file another filter appends
// to at the same time (O_APPEND). Only the Output's goroutine uses it.
type gatherWriter struct {
	w   io.Writer
	buf []byte
	// failed says the last write to w failed: blocks then go straight to
	// w until one is written, so that the Output sees each one's failure
	// rather than a success of buffering followed by a failed flush, and
	// logs one failure, not one per batch.
	failed bool
}

func (g *gatherWriter) Write(block []byte) (int, error) {
	var flushErr error
	if len(g.buf)+len(block) > gatherSize {
		flushErr = g.Flush()
	}
	if g.failed || len(block) >= gatherSize {
		n, err := g.w.Write(block)
		g.failed = err != nil
		if err == nil {
			err = flushErr // what was held is lost: say so
		}
		return n, err
	}
	if g.buf == nil {
		g.buf = make([]byte, 0, gatherSize) // only for a dump that writes
	}
	g.buf = append(g.buf, block...)
	return len(block), nil // a failed flush made g.failed: not here
}

// Flush writes what is held, in one Write. What a failed write held is
// lost, as an unbuffered write's bytes would be.
func (g *gatherWriter) Flush() error {
	if len(g.buf) == 0 {
		return nil
	}
	_, err := g.w.Write(g.buf)
	g.buf = g.buf[:0]
	g.failed = err != nil
	return err
}
