// Package builtin registers pier's built-in filters: dump, pcap, rewrite,
// the faults latency, bandwidth, slicer, reset, timeout, limit and
// slow_close, and the datagram faults loss, duplicate and reorder (udp
// routes only). Import it for its side effect, as the pier command does:
//
//	import _ "github.com/pierproxy/pier/filter/builtin"
package builtin

import (
	_ "github.com/pierproxy/pier/filter/dump"
	_ "github.com/pierproxy/pier/filter/fault"
	_ "github.com/pierproxy/pier/filter/netem"
	_ "github.com/pierproxy/pier/filter/pcap"
	_ "github.com/pierproxy/pier/filter/rewrite"
)
