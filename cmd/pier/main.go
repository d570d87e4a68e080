// Command pier is a TCP proxy: a port forwarder, an L4 load balancer and a
// traffic lens in one binary. Its whole command line lives in package
// command, so that a program with filters of its own can be pier too.
package main

import "github.com/pierproxy/pier/command"

func main() { command.Main() }
