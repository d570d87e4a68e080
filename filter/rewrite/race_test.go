//go:build race

package rewrite

// The race detector makes sync.Pool drop items at random, so regexp's
// pooled matchers are allocated again: allocation counts mean nothing.
func init() { raceEnabled = true }
