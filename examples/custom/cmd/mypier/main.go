// Command mypier is the whole pier command with one more filter: every
// command, flag and config key pier has, and --mask.
package main

import (
	"github.com/pierproxy/pier/command"

	_ "example.com/pier-custom/mask" // registers "mask"
)

func main() { command.Main() }
