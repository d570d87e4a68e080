//go:build !race

package config

// slowdown is how much slower the race detector makes a walk of the
// node tree: time bounds in tests are multiplied by it.
const slowdown = 1
