//go:build race

package config

// slowdown is how much slower the race detector makes a walk of the
// node tree (0.3s becomes 3 to 7s on TestAliasExpansionBounded under load): time
// bounds in tests are multiplied by it.
const slowdown = 4
