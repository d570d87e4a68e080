//go:build race

package dump

// The race detector makes sync.Pool drop items at random, so the pooled
// block buffers are allocated again: allocation counts mean nothing.
func init() { raceEnabled = true }
